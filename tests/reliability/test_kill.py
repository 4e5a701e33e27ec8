"""Crash safety of the refresh (issue 17): SIGKILL at a pause point, then check that

* the previous run is fully readable (every result table's rows of it unchanged) and still current;
* the killed run is marked failed, at the latest by the next start, and its results deleted;
* the next refresh succeeds and is published.

The fast cases run in ``make test`` (:func:`kill_in_turn`): on SQLite, one kill during the first
stage's staging write, one inside the publish transaction and one right after its commit; on
PostgreSQL, one during the staging write. ``make reliability`` runs the long ones: a kill at every pause point (each
stage's write and end, publish before and after commit) on both databases, each through ``python -m
analytics refresh`` in a new interpreter.
"""

from __future__ import annotations

import pytest

from analytics import demo
from analytics.refresh import pause_points, run_refresh
from analytics.store import make_engine
from tests.conftest import DEMO_CUSTOMERS, DEMO_MONTHS, copy_store
from tests.reliability.harness import (
    current,
    kill_refresh_at,
    newest_run,
    results_only,
    rows_of,
    run_row,
    snapshot,
)


def kill_and_recover(url: str, point: str, tmp_path, *, mode: str = "fork") -> dict:
    """Kill a refresh at ``point`` and check everything a crash must leave; return the figures."""
    engine = make_engine(url)
    try:
        previous = current(engine)
        assert previous is not None
        before = snapshot(engine, previous)
        assert sum(n for n, _ in before.values()) > 0

        kill_refresh_at(url, point, tmp_path, mode=mode)
        killed = newest_run(engine)
        assert killed > previous
        published = point == "publish:after-commit"
        if published:
            # The commit happened: the killed run is complete and current, the previous kept intact.
            assert current(engine) == killed
            assert run_row(engine, killed)["status"] == "succeeded"
            assert all(n > 0 for n, _ in snapshot(engine, killed).values() if n) and rows_of(engine, killed) > 0
        else:
            assert current(engine) == previous
            assert run_row(engine, killed)["status"] == "running"  # it could not mark itself
        assert snapshot(engine, previous) == before

        # The next start marks the killed run failed and deletes its rows; the next run succeeds.
        new = run_refresh(engine)
        assert new > killed and current(engine) == new
        assert run_row(engine, new)["status"] == "succeeded" and rows_of(engine, new) > 0
        if not published:
            row = run_row(engine, killed)
            assert row["status"] == "failed" and row["error"].startswith("abandoned"), row
            assert rows_of(engine, killed) == 0
        # Still kept (REFRESH_KEEP_RUNS), except its stored features: every refresh keeps the current
        # run's alone (analytics/features_stage.py).
        assert results_only(snapshot(engine, previous)) == results_only(before)
        return {"previous": previous, "killed": killed, "new": new}
    finally:
        engine.dispose()


def kill_in_turn(url: str, points: list[str], tmp_path) -> dict:
    """The fast form: one store, one kill per point in turn, each next refresh's start marking the
    killed one failed, and one refresh that runs to the end after the last kill."""
    engine = make_engine(url)
    seen = {}
    try:
        for point in points:
            previous = current(engine)
            before = snapshot(engine, previous)
            abandoned = newest_run(engine) if run_row(engine, newest_run(engine))["status"] == "running" else None
            kill_refresh_at(url, point, tmp_path)
            killed = newest_run(engine)
            seen[point] = killed
            if abandoned is not None:  # the killed refresh's start marked the one killed before it
                row = run_row(engine, abandoned)
                assert row["status"] == "failed" and row["error"].startswith("abandoned"), row
                assert rows_of(engine, abandoned) == 0
            if point == "stage:data_quality:writing":
                # Known answer: the first stage writes its three tables in its first transaction,
                # so a kill before that COMMIT leaves the run without a single result row.
                assert rows_of(engine, killed) == 0
            if point == "publish:after-commit":
                assert current(engine) == killed and run_row(engine, killed)["status"] == "succeeded"
                assert rows_of(engine, killed) > 0
            else:
                assert current(engine) == previous and run_row(engine, killed)["status"] == "running"
            assert snapshot(engine, previous) == before  # fully readable, unchanged
        new = run_refresh(engine)
        assert current(engine) == new and run_row(engine, new)["status"] == "succeeded"
        return seen
    finally:
        engine.dispose()


def test_sqlite_kills_during_staging_write_publish_and_after_commit(small_sqlite_url, tmp_path):
    kill_in_turn(small_sqlite_url, ["stage:data_quality:writing", "publish:before-commit",
                                    "publish:after-commit"], tmp_path)


@pytest.mark.postgres
def test_postgresql_kill_during_a_staging_write(small_pg_url, tmp_path):
    kill_in_turn(small_pg_url, ["stage:data_quality:writing"], tmp_path)


def test_every_point_is_reachable_and_unknown_points_are_refused(monkeypatch, sqlite_engine):
    points = pause_points()
    assert points[:2] == ["stage:data_quality:writing", "stage:data_quality:after"]
    assert points[-2:] == ["publish:before-commit", "publish:after-commit"]
    monkeypatch.setenv("REFRESH_PAUSE_AT", "publish:sometime")
    from analytics.errors import RefreshError

    with pytest.raises(RefreshError, match="names no pause point"):
        run_refresh(sqlite_engine)


@pytest.mark.reliability_long
@pytest.mark.parametrize("point", pause_points())
def test_kill_at_every_point(small_url, tmp_path, point, request):
    if point.startswith("partition:"):
        # The small store's 300 customers are too few for the churn model (the stage skips, saying
        # so), so no partition is ever scored: this point takes a store of the demo's size.
        if small_url.startswith("sqlite"):
            small_url = copy_store(request.getfixturevalue("demo_store_url"), tmp_path / "demo.db")
        else:  # the same server's store, rebuilt at the demo's size and refreshed once
            engine = make_engine(small_url)
            try:
                demo.generate(engine, customers=DEMO_CUSTOMERS, months=DEMO_MONTHS, seed=7, progress=False)
                run_refresh(engine)
            finally:
                engine.dispose()
    kill_and_recover(small_url, point, tmp_path, mode="exec")
