"""Warm page times of Segments, Lifecycle and Churn at 1M customers against the floor of issue #7.

Run from the repository root::

    BENCH_1M_URL=sqlite:////path/to/bench.db .venv/bin/python benchmarks/bench_pages.py [--repeats 15]

``BENCH_1M_URL`` (or ``--url``) names an existing 1M-customer store; without it a demo store is
built in a temporary folder (``analytics demo --customers 1000000`` then a refresh, about half an
hour). A store whose current run has no ``segment_cube`` rows (refreshed before the cube existed)
is refreshed first.

Each page runs in its own process (so its peak memory is its own) under Streamlit's AppTest, logged
in as a marketing user: the page is opened (``cold_seconds``, empty caches), run once more to warm
up, then run ``--repeats`` times; ``warm_seconds`` is the median. The floor is
``benchmarks/floor_page.py`` (4 charts, 6 metrics, a 1,000-row table from constant in-memory data),
served by the same app in place of the Overview page (the same login gate, navigation and sidebar
as the real page, which a bare script does not pay) and run alternately with the page, so both see
the same machine load: ``floor_in_app_seconds``, and ``ratio`` = page / floor, target at most 1.5.
``floor`` is the bare floor script alone, for reference (``ratio_to_bare_floor``). ``peak_rss_mib``
is the page process's peak resident memory after the warm-up (Linux VmHWM: AppTest, Streamlit and
the page's caches).

Also timed, once each, first runs after a widget change (caches cold for the new state):
``filter_seconds`` (Segments and Lifecycle: a value tier; Churn: a branch) and, on Segments,
``tag_query_seconds`` (a tag expression: counts, the first campaign page and the export list in SQL) and
``tag_warm_seconds`` (the same page again).

Prints one JSON object (``benchmarks/run.py pages_1m`` merges it into results.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a standalone script: make `analytics` importable

PY = sys.executable
USERNAME = "bench_marketing"
PASSWORD = "bench pages password 1"
PAGES = ("segments", "lifecycle", "churn")
TARGET_RATIO = 1.5



def _timed(at) -> float:
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].message}")
    return seconds


def _logged_in(script: str):
    """An AppTest of the app, logged in as the bench user, on ``script`` (run once: cold)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.text_input[0].input(USERNAME)
    at.text_input[1].input(PASSWORD)
    at.button[0].click()
    at.run()
    at.switch_page(script)
    return at


def _worker(page: str, url: str, repeats: int) -> dict:
    """Time one page (or the bare floor) in this process; see the module docstring."""
    from streamlit.testing.v1 import AppTest

    from benchmarks.memory import peak_rss_mib

    os.environ["CUSTOMER_STORE_URL"] = url
    floor = ROOT / "benchmarks" / "floor_page.py"
    if page == "floor":
        at = AppTest.from_file(str(floor), default_timeout=600)
        cold = _timed(at)
        _timed(at)  # warm-up
        warm = [_timed(at) for _ in range(repeats)]
        return {"cold_seconds": round(cold, 3), "warm_seconds": round(statistics.median(warm), 3),
                "warm_runs": [round(s, 3) for s in warm], "peak_rss_mib": peak_rss_mib()}

    at = _logged_in(f"app_pages/{page}.py")
    cold = _timed(at)
    _timed(at)  # warm-up
    peak = peak_rss_mib()  # before the floor's app below adds its own few MiB
    # The floor page served by the same app in place of the Overview page (the same login gate,
    # navigation and sidebar as the real page), timed run for run with the page so both see the
    # same machine load.
    from app_pages import session

    real = session.page_script
    session.page_script = lambda key: floor if key == "overview" else real(key)
    floor_at = _logged_in(str(floor.relative_to(ROOT)))
    _timed(floor_at)
    _timed(floor_at)  # warm-up
    warm, floor_warm = [], []
    for _ in range(repeats):
        floor_warm.append(_timed(floor_at))
        warm.append(_timed(at))
    out = {"cold_seconds": round(cold, 3), "warm_seconds": round(statistics.median(warm), 3),
           "warm_runs": [round(s, 3) for s in warm],
           "floor_in_app_seconds": round(statistics.median(floor_warm), 3),
           "floor_in_app_runs": [round(s, 3) for s in floor_warm]}
    out["ratio"] = round(out["warm_seconds"] / out["floor_in_app_seconds"], 2)
    if page in ("segments", "lifecycle"):
        at.multiselect(key=f"{page}_t").select("wealth")
        out["filter_seconds"] = round(_timed(at), 3)
        at.multiselect(key=f"{page}_t").unselect("wealth")
        _timed(at)
    if page == "churn":
        branch = at.selectbox[0].options[1]
        at.selectbox[0].select(branch)
        out["filter_seconds"] = round(_timed(at), 3)
    if page == "segments":
        at.text_input(key="tag_expr").input("mortgage_holder and not frequent_complainer")
        out["tag_query_seconds"] = round(_timed(at), 3)
        out["tag_warm_seconds"] = round(_timed(at), 3)
    out["peak_rss_mib"] = peak
    return out


def _run_worker(page: str, url: str, repeats: int, env: dict) -> dict:
    proc = subprocess.run([PY, __file__, "--worker", page, "--url", url, "--repeats", str(repeats)], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{page} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cli(*args: str) -> None:
    subprocess.run([PY, "-m", "analytics", *args, "--quiet"], cwd=ROOT, check=True)


def _prepare(url: str) -> dict:
    """Make sure the store's current run has cube rows and the bench user exists; return store facts."""
    from sqlalchemy import func, select

    from analytics import users
    from analytics.run_status import status
    from analytics.runs import current_run_id
    from analytics.schema import customer_segments, segment_cube
    from analytics.store import init_schema, make_engine

    engine = make_engine(url)
    init_schema(engine)

    def cube_rows(run_id):
        with engine.connect() as conn:
            return dict(conn.execute(select(segment_cube.c.dimension, func.count()).where(
                segment_cube.c.run_id == run_id).group_by(segment_cube.c.dimension)).all())

    run_id = current_run_id(engine)
    if run_id is None or not cube_rows(run_id):
        print("refreshing the store: its current run has no segment cube", file=sys.stderr, flush=True)
        engine.dispose()
        _cli("refresh", "--db", url)
        run_id = current_run_id(engine)
    if users.get_user(engine, USERNAME) is None:
        users.add_user(engine, USERNAME, PASSWORD, ["marketing"])
    with engine.connect() as conn:
        customers = conn.execute(select(func.count()).select_from(customer_segments)
                                 .where(customer_segments.c.run_id == run_id)).scalar_one()
    # Stage timings are in the run's record (refresh_runs.metrics), not in run_metrics.
    metrics = next((r.get("metrics") or {} for r in status(engine, limit=50)["runs"] if r["run_id"] == run_id), {})
    by_dimension = cube_rows(run_id)
    engine.dispose()
    return {
        "run_id": run_id, "customers": customers, "cube_rows": sum(by_dimension.values()),
        "cube_rows_by_dimension": dict(sorted(by_dimension.items())),
        "segments_stage_seconds": metrics.get("stage_seconds.segments"),
        "clv_margin_stage_seconds": metrics.get("stage_seconds.clv_margin"),
        "aggregates_stage_seconds": metrics.get("stage_seconds.aggregates"),
        "aggregates_cube_seconds": metrics.get("aggregates_seconds.cube"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("BENCH_1M_URL"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--worker", choices=["floor", *PAGES])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.url, args.repeats)))
        return

    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        url = args.url
        built = url is None
        if built:
            url = f"sqlite:///{tmp}/bench.db"
            _cli("demo", "--customers", "1000000", "--db", url)
            _cli("refresh", "--db", url)
        facts = _prepare(url)
        env = {**os.environ, "AUTH_COOKIE_KEY": "bench-cookie-key-" + "k" * 32, "AUDIT_HMAC_KEY": "b" * 40,
               "AUDIT_CHECKPOINT_FILE": f"{tmp}/audit.checkpoint"}
        floor = _run_worker("floor", url, args.repeats, env)
        pages = {}
        for page in PAGES:
            result = _run_worker(page, url, args.repeats, env)
            result["ratio_to_bare_floor"] = round(result["warm_seconds"] / floor["warm_seconds"], 2)
            pages[page] = result
    print(json.dumps({
        **facts, "store": "built by the benchmark" if built else "BENCH_1M_URL", "repeats": args.repeats,
        "floor": floor, "pages": pages, "target_ratio": TARGET_RATIO,
        "worst_ratio": max(p["ratio"] for p in pages.values()),
    }))


if __name__ == "__main__":
    main()
