"""Crash safety of the partitioned refresh (issues 16 and 17): SIGKILL a worker while it is inside
its partition's write transaction (``REFRESH_PAUSE_AT=partition:churn:writing``: partition 0 has
written its ``churn_scores`` rows, ``COMMIT`` not sent).

A process-pool worker:

* the refresh itself sees the broken pool, marks its run failed and deletes the run's rows;
* the previous run is fully readable, unchanged and still current;
* the next refresh succeeds and is published.

A Dask worker (a ``LocalCluster`` of 2 worker processes): Dask restarts the worker and reruns the
partition on a live one, the rerun's transaction replaces whatever the killed attempt left (its
uncommitted rows were rolled back with its connection), and the run is published with every
customer scored exactly once; the previous run stays readable until then.

Long (two refreshes of the demo store each): ``make reliability``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from analytics.refresh import PAUSE_ENV, PAUSE_MARKER_ENV, run_refresh
from analytics.store import make_engine
from tests.conftest import copy_store
from tests.reliability.harness import (
    MARKER_WAIT_SECONDS,
    ROOT,
    current,
    newest_run,
    results_only,
    rows_of,
    run_row,
    snapshot,
)

POINT = "partition:churn:writing"


def _refresh_until_a_worker_pauses(url: str, env: dict, marker, log) -> tuple[subprocess.Popen, int]:
    """Start ``python -m analytics refresh`` on ``url``; wait until a worker (not the refresh's own
    process) pauses at :data:`POINT`; return the refresh and that worker's pid."""
    refresh = subprocess.Popen([sys.executable, "-m", "analytics", "refresh", "--quiet", "--db", url],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + MARKER_WAIT_SECONDS
    while not marker.exists():
        assert refresh.poll() is None, f"the refresh ended before a worker reached {POINT}"
        if time.monotonic() > deadline:
            refresh.kill()
            raise AssertionError(f"no worker reached {POINT}")
        time.sleep(0.05)
    worker_pid, point = marker.read_text().split()
    assert point == POINT and int(worker_pid) != refresh.pid  # the pause is in a worker
    return refresh, int(worker_pid)


@pytest.mark.reliability_long
def test_sigkill_of_a_pool_worker_fails_the_run_and_the_next_refresh_succeeds(demo_store_url, tmp_path):
    url = copy_store(demo_store_url, tmp_path / "store.db")
    engine = make_engine(url)
    try:
        previous = current(engine)
        assert previous is not None
        before = snapshot(engine, previous)

        marker = tmp_path / "paused"
        env = {**os.environ, PAUSE_ENV: POINT, PAUSE_MARKER_ENV: str(marker),
               "REFRESH_PARTITIONS": "3", "REFRESH_WORKERS": "2"}
        env.pop("DASK_SCHEDULER_ADDRESS", None)
        with (tmp_path / "refresh.log").open("w") as log:
            refresh, worker_pid = _refresh_until_a_worker_pauses(url, env, marker, log)
            killed_run = newest_run(engine)
            assert rows_of(engine, killed_run) > 0  # earlier stages staged their rows
            os.kill(worker_pid, signal.SIGKILL)
            code = refresh.wait(timeout=MARKER_WAIT_SECONDS)
        output = (tmp_path / "refresh.log").read_text()
        assert code != 0, output
        assert "Partition" in output and "failed" in output, output

        # The refresh marked its own run failed (not left for the next start) and deleted its rows.
        row = run_row(engine, killed_run)
        assert row["status"] == "failed" and not row["error"].startswith("abandoned"), row
        assert rows_of(engine, killed_run) == 0
        assert current(engine) == previous
        assert snapshot(engine, previous) == before

        new = run_refresh(engine)
        assert new > killed_run and current(engine) == new
        assert run_row(engine, new)["status"] == "succeeded" and rows_of(engine, new) > 0
        # The previous run's results stay as they were; only its stored features go, as every
        # refresh keeps the current run's alone (analytics/features_stage.py).
        assert results_only(snapshot(engine, previous)) == results_only(before)
    finally:
        engine.dispose()


@pytest.mark.reliability_long
def test_sigkill_of_a_dask_worker_reruns_its_partition_and_the_run_is_complete(demo_store_url, tmp_path, monkeypatch):
    from dask.distributed import LocalCluster
    from sqlalchemy import text

    url = copy_store(demo_store_url, tmp_path / "store.db")
    engine = make_engine(url)
    marker = tmp_path / "paused"
    # The workers take the pause from their own environment, set before they start.
    monkeypatch.setenv(PAUSE_ENV, POINT)
    monkeypatch.setenv(PAUSE_MARKER_ENV, str(marker))
    try:
        previous = current(engine)
        before = snapshot(engine, previous)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            env = {**os.environ, "REFRESH_PARTITIONS": "3", "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}
            env.pop("REFRESH_WORKERS", None)
            with (tmp_path / "refresh.log").open("w") as log:
                refresh, worker_pid = _refresh_until_a_worker_pauses(url, env, marker, log)
                assert current(engine) == previous and snapshot(engine, previous) == before
                os.kill(worker_pid, signal.SIGKILL)
                code = refresh.wait(timeout=MARKER_WAIT_SECONDS)
        output = (tmp_path / "refresh.log").read_text()
        assert code == 0, output
        new = current(engine)
        assert new is not None and new > previous and run_row(engine, new)["status"] == "succeeded"
        with engine.connect() as conn:
            scored, distinct = conn.execute(text(
                "SELECT count(*), count(DISTINCT customer_id) FROM churn_scores WHERE run_id = :r"), {"r": new}).one()
            before_count = conn.execute(text("SELECT count(*) FROM churn_scores WHERE run_id = :r"),
                                        {"r": previous}).scalar()
        # Every customer once: the killed attempt left nothing, the rerun wrote partition 0 whole.
        assert scored == distinct == before_count > 0
    finally:
        engine.dispose()
