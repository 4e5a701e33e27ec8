"""Freshness of the published run: age, a failed refresh after it, imports after it."""

import datetime as dt

from sqlalchemy import insert, update

from analytics import run_status
from analytics.schema import current_run, load_batches, refresh_runs
from analytics.store import init_schema, make_engine

T0 = dt.datetime(2026, 11, 1, 6, 0)


def _store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/f.db", create_dir=True)
    init_schema(engine)
    return engine


def _run(engine, run_id, status, finished, stage=None):
    with engine.begin() as conn:
        conn.execute(insert(refresh_runs).values(run_id=run_id, started_at=finished - dt.timedelta(minutes=5),
                                                 finished_at=finished, status=status, stage=stage))


def _publish(engine, run_id):
    with engine.begin() as conn:
        if conn.execute(update(current_run).where(current_run.c.id == 1).values(run_id=run_id)).rowcount == 0:
            conn.execute(insert(current_run).values(id=1, run_id=run_id, published_at=T0))


def test_no_run_is_not_stale(tmp_path):
    f = run_status.freshness(_store(tmp_path), now=T0)
    assert f.run_id is None and not f.stale and f.failed_run is None and f.loads_since == 0


def test_age_against_the_setting(tmp_path, monkeypatch):
    engine = _store(tmp_path)
    _run(engine, 1, "succeeded", T0)
    _publish(engine, 1)
    monkeypatch.setenv("DATA_STALE_HOURS", "36")
    assert not run_status.freshness(engine, now=T0 + dt.timedelta(hours=36)).stale
    late = run_status.freshness(engine, now=T0 + dt.timedelta(hours=36, minutes=1))
    assert late.stale and round(late.age_hours, 2) == 36.02


def test_a_failed_refresh_after_the_published_run_and_new_imports_are_reported(tmp_path):
    engine = _store(tmp_path)
    _run(engine, 1, "failed", T0 - dt.timedelta(days=1), stage="segments")  # before: not reported
    _run(engine, 2, "succeeded", T0)
    _publish(engine, 2)
    assert run_status.freshness(engine, now=T0).failed_run is None
    _run(engine, 3, "failed", T0 + dt.timedelta(hours=1), stage="churn")
    with engine.begin() as conn:
        for i, at in enumerate([T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)]):
            conn.execute(insert(load_batches).values(loaded_at=at, table_name="customers", source_file=f"f{i}.csv",
                                                     file_sha256=str(i) * 64, rows_read=1, rows_loaded=1,
                                                     rows_rejected=0))
    f = run_status.freshness(engine, now=T0 + dt.timedelta(hours=3))
    assert f.failed_run["run_id"] == 3 and f.failed_run["stage"] == "churn"
    assert f.loads_since == 1
