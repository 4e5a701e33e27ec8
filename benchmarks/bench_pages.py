"""Every page at 1M customers (issue 16, item 4): AppTest cold and warm against the in-app floor,
a real-browser figure, and the KPI wall's tick.

Run from the repository root::

    BENCH_1M_URL=sqlite:////path/to/bench.db .venv/bin/python benchmarks/bench_pages.py [--repeats 15]

(``BENCH_PAGE_REPEATS`` sets ``--repeats`` when ``make bench`` runs it.)

``BENCH_1M_URL`` (or ``--url``) names an existing 1M-customer store (SQLite or PostgreSQL); without
it a demo store is built in a temporary folder (``analytics demo --customers 1000000`` then a
refresh, about half an hour). A store whose current run has no ``segment_cube`` rows (refreshed
before the cube existed) is refreshed first. ``--pages`` picks pages (default: every page of
:data:`analytics.access.PAGES`); ``--no-browser`` leaves the browser figures out.

**AppTest.** Each page runs in its own process (so its peak memory is its own), logged in as a user
of the role in :data:`PAGE_ROLES`: the page is opened (``cold_seconds``, empty caches), run once
more to warm up, then run ``--repeats`` times; ``warm_seconds`` is the median. The floor is
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

**Browser.** The dashboard is served (``streamlit run app.py``, file watcher off) on the same store;
Chromium (Debian's, through Playwright, headless) logs in once per role, and for each page clicks its
link in the navigation ``--browser-repeats`` times (5), each time from another page, timing from the
click to the page settled (the app's script state idle, no placeholder left):
``browser_seconds`` is the median, ``browser_runs`` every run; the first click's caches may be cold.

**KPI tick.** The wall's fragment reruns every ``KPI_REFRESH_SECONDS``; its uncached work on the
server is the tiles' figures (:func:`analytics.kpi.cards`) and the store's freshness
(:func:`analytics.run_status.freshness`) for the viewer: ``kpi_tick_server_seconds`` is the median of
``--repeats`` of those reads, done as the fragment does them.

Two-factor login is left out of the bench users (``MFA_REQUIRED_ROLES=display``: the display role is
always exempt, so no role needs it): it is a login cost, not a page's.

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

from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a standalone script: make `analytics` importable

from benchmarks import checkpoints  # noqa: E402

PY = sys.executable
PASSWORD = "bench pages password 1"
# The role each page is opened with: the one that uses it most (every page of access.PAGES).
PAGE_ROLES = {
    "overview": "executive", "kpi_wall": "executive", "segments": "marketing", "lifecycle": "marketing",
    "churn": "marketing", "cross_sell": "marketing", "campaigns": "marketing", "risk": "risk",
    "data_quality": "compliance", "customer_360": "marketing", "worklist": "risk", "approvals": "compliance",
    "audit_log": "compliance", "admin": "admin",
}
PAGES = tuple(PAGE_ROLES)
TARGET_RATIO = 1.5
# The audit key and checkpoint are the store's own (as its refresh used them): a page whose audit
# append is refused (a key or checkpoint of another store) would be timed on an error path.
BENCH_ENV = {"AUTH_COOKIE_KEY": "bench-cookie-key-" + "k" * 32, "MFA_REQUIRED_ROLES": "display",
             "KPI_REFRESH_SECONDS": "60"}


def username(role: str) -> str:
    return f"bench_{role}"



def _timed(at) -> float:
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].message}")
    return seconds


def _logged_in(script: str, role: str = "marketing"):
    """An AppTest of the app, logged in as the bench user of ``role``, on ``script`` (run once: cold)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    at.text_input[0].input(username(role))
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

    role = PAGE_ROLES[page]
    at = _logged_in(f"app_pages/{page}.py", role)
    cold = _timed(at)
    _check_drawn(at, page)
    _timed(at)  # warm-up
    peak = peak_rss_mib()  # before the floor's app below adds its own few MiB
    # The floor page served by the same app in place of the Overview page (the same login gate,
    # navigation and sidebar as the real page), timed run for run with the page so both see the
    # same machine load.
    from app_pages import session

    real = session.page_script
    session.page_script = lambda key: floor if key == "overview" else real(key)
    floor_at = _logged_in(str(floor.relative_to(ROOT)), role)
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
    if page == "kpi_wall":
        out["kpi_tick_server_seconds"], out["kpi_tick_server_runs"] = _kpi_tick(url, repeats)
    out["role"] = role
    out["peak_rss_mib"] = peak
    return out


def _check_drawn(at, page: str) -> None:
    """The page drew itself (its title; the title-less wall its tiles), not a refusal or an error."""
    from analytics import access

    if page == "kpi_wall":
        drawn = any('class="kpi-value' in str(m.value) for m in at.markdown)
    else:
        drawn = any(access.PAGES[page][0] in str(t.value) for t in at.title)
    if not drawn or at.error:
        errors = "; ".join(str(e.value) for e in at.error)
        raise RuntimeError(f"{page} did not draw as {PAGE_ROLES[page]}: {errors or 'no title'}")


def _kpi_tick(url: str, repeats: int) -> tuple[float, list[float]]:
    """The KPI fragment's uncached reads per tick, as it does them (see the module docstring)."""
    from analytics import kpi, run_status, runs, scopes
    from analytics.store import make_engine

    engine = make_engine(url)
    try:
        viewer = scopes.viewer_for(engine, username("executive"), ["executive"])
        runs_ = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_id = runs.current_run_id(engine)
            kpi.cards(engine, run_id, viewer)
            run_status.freshness(engine)
            runs_.append(round(time.perf_counter() - t0, 3))
        return round(statistics.median(runs_), 3), runs_
    finally:
        engine.dispose()


def _browser(url: str, pages: list[str], repeats: int, env: dict, tmp: str) -> dict:
    """Each page's browser figure (see the module docstring): {page: {browser_seconds, browser_runs}}."""
    from playwright.sync_api import sync_playwright

    from analytics import access

    port = _free_port()
    log = Path(tmp) / "streamlit.log"
    server = subprocess.Popen(
        [PY, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**env, "CUSTOMER_STORE_URL": url}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    out: dict = {}
    try:
        _wait_healthy(base, server, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                              "--disable-background-networking", "--disable-component-update"])
            try:
                for role in dict.fromkeys(PAGE_ROLES[p_] for p_ in pages):
                    context = browser.new_context(viewport={"width": 1920, "height": 1080})
                    page = context.new_page()
                    _browser_login(page, base, username(role))
                    mine = [p_ for p_ in pages if PAGE_ROLES[p_] == role]
                    # Each click comes from another page the role sees (the Approvals page: light).
                    other = "approvals" if "approvals" in access.pages_for(role) else "overview"
                    for key in mine:
                        runs_ = []
                        for _ in range(repeats):
                            start = other if key != other else "overview"
                            _click_nav(page, access.PAGES[start][0])
                            _settled(page)
                            t0 = time.perf_counter()
                            _click_nav(page, access.PAGES[key][0])
                            _settled(page)
                            runs_.append(round(time.perf_counter() - t0, 3))
                            titles = page.locator("h1").all_inner_texts()
                            if key != "kpi_wall" and not any(access.PAGES[key][0] in t for t in titles):
                                raise RuntimeError(f"the browser did not reach {key}: headings {titles}")
                        out[key] = {"browser_seconds": round(statistics.median(runs_), 3), "browser_runs": runs_}
                        print(f"browser {key}: {out[key]['browser_seconds']} s", file=sys.stderr, flush=True)
                    context.close()
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(base: str, server, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("streamlit did not become healthy within 120 s")


def _settled(page, timeout_ms: int = 600_000) -> None:
    """The app's script idle and no placeholder left (the state reads idle for a moment between runs)."""
    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
    page.wait_for_selector(idle, timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms)
    page.wait_for_timeout(100)
    page.wait_for_selector(idle, timeout=timeout_ms)


def _click_nav(page, label: str) -> None:
    """Click a page in the sidebar and wait until the app is on it (its address changed): on a busy
    machine the script state still read idle for a while after the click, and the old page passed
    for the new one."""
    before = page.url
    link = page.locator('[data-testid="stSidebarNav"] a', has_text=label).first
    target = link.evaluate("a => a.href")
    link.click()
    if target != before:
        page.wait_for_function("u => window.location.href === u", arg=target, timeout=600_000)


def _browser_login(page, base: str, user: str) -> None:
    page.goto(base + "/")
    page.get_by_label("Username", exact=True).wait_for(timeout=600_000)
    page.get_by_label("Username", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.locator('[data-testid="stSidebarNav"]').wait_for(timeout=600_000)
    _settled(page)


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
    for role in sorted(set(PAGE_ROLES.values())):
        if users.get_user(engine, username(role)) is None:
            users.add_user(engine, username(role), PASSWORD, [role])
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
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_PAGE_REPEATS", "15")))
    parser.add_argument("--browser-repeats", type=int, default=5)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated page keys (default: every page)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--worker", choices=["floor", *PAGES])
    args = parser.parse_args()
    pages_wanted = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(pages_wanted) - set(PAGES))
    if unknown:
        parser.error(f"unknown page(s) {', '.join(unknown)}: one of {', '.join(PAGES)}")
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
        checkpoints.use_store_checkpoint(url)
        env = {**os.environ, **BENCH_ENV}
        os.environ.update(BENCH_ENV)
        facts = _prepare(url)
        floor = _run_worker("floor", url, args.repeats, env)
        pages = {}
        for page in pages_wanted:
            print(f"apptest {page} ...", file=sys.stderr, flush=True)
            result = _run_worker(page, url, args.repeats, env)
            result["ratio_to_bare_floor"] = round(result["warm_seconds"] / floor["warm_seconds"], 2)
            pages[page] = result
        if not args.no_browser:
            for page, figures in _browser(url, pages_wanted, args.browser_repeats, env, tmp).items():
                pages[page].update(figures)
    print(json.dumps({
        **facts, "store": "built by the benchmark" if built else "BENCH_1M_URL", "database": make_url(url).get_backend_name(),
        "repeats": args.repeats, "browser_repeats": None if args.no_browser else args.browser_repeats,
        "floor": floor, "pages": pages, "target_ratio": TARGET_RATIO,
        "worst_ratio": max(p["ratio"] for p in pages.values()),
    }))


if __name__ == "__main__":
    main()
