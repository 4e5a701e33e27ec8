"""`make bench`: speed and memory figures, written to benchmarks/results.json.

Each benchmark runs in its own subprocess so its peak memory (max RSS) is its own. Results are
merged into results.json by name, so one benchmark can be re-run alone:

    .venv/bin/python benchmarks/run.py demo_100k

Scaling runs (issue 16): ``refresh_<size>_<database>`` refreshes a cached demo store of that size
once and records the time and the peak RSS of the whole refresh and of each stage; ``_dask`` runs
the refresh's partitions on a Dask ``LocalCluster`` of ``BENCH_DASK_WORKERS`` (default 2) worker
processes. Which run is set by

* ``BENCH_SIZES`` (default ``100k,1m``; ``3m`` or any number of customers also works),
* ``BENCH_DBS`` (default ``sqlite``; ``postgresql`` needs ``CUSTOMER_STORE_BENCH_PG_URL``, a server
  where the benchmark may create its databases ``bench_<customers>``),
* ``BENCH_DASK`` (``1``: also the Dask run of each size on each database, its work split in
  ``BENCH_DASK_PARTITIONS`` partitions, default 8).

The stores are kept between runs (SQLite in ``benchmarks/stores/``, git-ignored; PostgreSQL in the
``bench_<customers>`` databases) and built only when absent or of another size, so a second
``make bench`` measures the refresh without rebuilding; ``BENCH_REBUILD=1`` rebuilds them. A store is
refreshed again on every run, as a bank's store is night after night.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `benchmarks` importable when run as a script

from benchmarks import checkpoints  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results.json"
PY = sys.executable



def _peak_rss_mib(cmd: list[str]) -> tuple[dict, float]:
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure each in a fresh runner.
    wrapper = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); "
               "print(json.dumps({'rc': r.returncode, "
               "'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-c", wrapper, *cmd], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    last = json.loads(lines[-1])
    if last["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    # A measured command may print its own JSON object just before the wrapper's.
    own = json.loads(lines[-2]) if len(lines) > 1 and lines[-2].startswith("{") else {}
    return {"seconds": round(seconds, 2), **own}, round(last["maxrss_kib"] / 1024, 1)


def bench_demo(customers: int) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        timing, rss = _peak_rss_mib([PY, "-m", "analytics", "demo", "--customers", str(customers),
                                     "--db", url, "--quiet"])
        db_mib = round(Path(f"{tmp}/bench.db").stat().st_size / 2**20, 1)
        refresh, refresh_rss = _peak_rss_mib([PY, str(ROOT / "benchmarks" / "refresh_measured.py"), "--db", url])
    stages = refresh.get("stage_seconds", {})
    stage_rss = refresh.get("stage_peak_rss_mib", {})
    return {"customers": customers, "generate_seconds": timing["seconds"], "generate_peak_rss_mib": rss,
            "store_size_mib": db_mib, "refresh_seconds": refresh["seconds"], "refresh_peak_rss_mib": refresh_rss,
            "refresh_stage_seconds": stages, "refresh_stage_peak_rss_mib": stage_rss}


STORES = ROOT / "benchmarks" / "stores"
SIZE_WORDS = {"100k": 100_000, "1m": 1_000_000, "3m": 3_000_000}


def _customers(word: str) -> int:
    word = word.strip().lower()
    return SIZE_WORDS.get(word) or int(word.replace("_", ""))


def _size_word(customers: int) -> str:
    return next((w for w, n in SIZE_WORDS.items() if n == customers), str(customers))


def _store_url(customers: int, database: str) -> str:
    """The cached store's URL (its PostgreSQL database is created when absent)."""
    if database == "sqlite":
        STORES.mkdir(exist_ok=True)
        return f"sqlite:///{STORES}/bench_{customers}.db"
    if database != "postgresql":
        raise SystemExit(f"BENCH_DBS: unknown database {database!r} (sqlite or postgresql)")
    base = os.environ.get("CUSTOMER_STORE_BENCH_PG_URL")
    if not base:
        raise SystemExit("BENCH_DBS names postgresql: set CUSTOMER_STORE_BENCH_PG_URL to a server where the "
                         "benchmark may create databases (postgresql+psycopg://USER@HOST:PORT/postgres)")
    if not os.environ.get("AUDIT_HMAC_KEY"):  # a shared database needs one: the bench keeps its own
        STORES.mkdir(exist_ok=True)
        key_file = STORES / "bench-audit-hmac.key"
        if not key_file.exists():
            import secrets

            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(48))
        os.environ["AUDIT_HMAC_KEY"] = key_file.read_text().strip()
    from analytics.store import database_on_server

    return database_on_server(base, f"bench_{customers}")


def _store_customers(url: str) -> int:
    """Customers in the store at ``url`` (0: no store there yet)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM customers")).scalar() or 0)
    except SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def bench_scaling(customers: int, database: str, dask: bool = False) -> dict:
    """One refresh of the cached ``customers`` store on ``database`` (built first when absent)."""
    url = _store_url(customers, database)
    checkpoints.use_store_checkpoint(url)
    out: dict = {"customers": customers, "database": database,
                 "executor": f"dask LocalCluster ({os.environ.get('BENCH_DASK_WORKERS', '2')} workers)" if dask
                 else "in-process"}
    if os.environ.get("BENCH_REBUILD") == "1" or _store_customers(url) != customers:
        timing, rss = _peak_rss_mib([PY, "-m", "analytics", "demo", "--customers", str(customers),
                                     "--db", url, "--quiet"])
        out |= {"generate_seconds": timing["seconds"], "generate_peak_rss_mib": rss}
    else:
        out["store"] = "cached (built by an earlier run)"
    cmd = [PY, str(ROOT / "benchmarks" / "refresh_measured.py"), "--db", url]
    partitions = os.environ.get("REFRESH_PARTITIONS")
    if dask:
        cmd += ["--dask-workers", os.environ.get("BENCH_DASK_WORKERS", "2")]
        # One partition would leave every worker but one idle: the Dask run splits the work.
        os.environ["REFRESH_PARTITIONS"] = os.environ.get("BENCH_DASK_PARTITIONS", "8")
    try:
        refresh, refresh_rss = _peak_rss_mib(cmd)
    finally:
        if partitions is None:
            os.environ.pop("REFRESH_PARTITIONS", None)
        else:
            os.environ["REFRESH_PARTITIONS"] = partitions
    out["partitions"] = int(os.environ.get("BENCH_DASK_PARTITIONS", "8") if dask else partitions or 1)
    out |= {"refresh_seconds": refresh["seconds"], "refresh_peak_rss_mib": refresh_rss,
            "refresh_stage_seconds": refresh.get("stage_seconds", {}),
            "refresh_stage_peak_rss_mib": refresh.get("stage_peak_rss_mib", {})}
    if dask:
        out["dask_worker_peak_rss_mib"] = refresh.get("dask_worker_peak_rss_mib")
    return _whole_refresh_peak(out)


def scaling_benchmarks() -> dict:
    """``refresh_<size>_<database>[_dask]`` for the sizes and databases the settings name."""
    sizes = [_customers(w) for w in os.environ.get("BENCH_SIZES", "100k,1m").split(",") if w.strip()]
    databases = [d.strip().lower() for d in os.environ.get("BENCH_DBS", "sqlite").split(",") if d.strip()]
    dask_too = os.environ.get("BENCH_DASK") == "1"
    out = {}
    for customers in sizes:
        for database in databases:
            name = f"refresh_{_size_word(customers)}_{database}"
            out[name] = lambda c=customers, d=database: bench_scaling(c, d)
            if dask_too:
                out[name + "_dask"] = lambda c=customers, d=database: bench_scaling(c, d, dask=True)
    return out


def _whole_refresh_peak(result: dict) -> dict:
    # The refresh resets its memory high-water mark before each stage (to measure stages), so the
    # child's ru_maxrss may miss an earlier stage's peak: the refresh's peak is the largest stage peak.
    stage_peaks = [v for v in result.get("refresh_stage_peak_rss_mib", {}).values() if v]
    if stage_peaks:
        result["refresh_peak_rss_mib"] = max(result["refresh_peak_rss_mib"], max(stage_peaks))
    return result


def bench_script(script: str, *args: str) -> dict:
    """Run a benchmark script of this folder that prints one JSON object; return that object."""
    proc = subprocess.run([PY, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


BENCHMARKS = {
    "clv_fit": lambda: bench_script("bench_clv.py"),
    "demo_100k": lambda: _whole_refresh_peak(bench_demo(100_000)),
    "demo_1m": lambda: _whole_refresh_peak(bench_demo(1_000_000)),
    # Warm Segments/Lifecycle/Churn pages at 1M customers against the in-memory floor page; set
    # BENCH_1M_URL to reuse a 1M store (else one is built: about half an hour).
    "pages_1m": lambda: bench_script("bench_pages.py"),
    # A newcomer's wait: `make run` on a clean checkout (packages installed) to the first page after
    # login in Chromium (issues 14 and 16: within 60 s; demo store plus first refresh within 30 s).
    # It works in a fresh clone of HEAD (this checkout's store and files are left alone).
    "first_page": lambda: bench_script("first_page.py"),
}
BENCHMARKS |= scaling_benchmarks()


def main(names: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names or list(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        value = BENCHMARKS[name]()
        value["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        value["machine"] = f"{platform.machine()}, {resource.getpagesize()}-byte pages, Python {platform.python_version()}"
        results[name] = value
        print(json.dumps(value, indent=2), flush=True)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
