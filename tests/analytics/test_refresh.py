"""The refresh: a run is published atomically; a failed or killed run leaves the previous one current."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from analytics import refresh
from analytics.errors import RefreshError, StoreNotInitialisedError
from analytics.refresh import run_refresh, status
from analytics.runs import Stage, current_run_id, get_run_metrics
from analytics.schema import customer_feature_sets, customer_features, refresh_runs, run_metrics
from tests.analytics import store_rows
from tests.conftest import copy_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def filled(engine):
    store_rows.fill(engine)
    return engine


def test_refresh_publishes_headline_counts(filled):
    run_id = run_refresh(filled)
    assert current_run_id(filled) == run_id
    m = get_run_metrics(filled, run_id)
    # Hand-computed from tests/analytics/store_rows.py (latest month 2026-10).
    assert m["customers_total"] == 3
    assert m["customers_active"] == 2
    assert m["customers_dormant"] == 1
    assert m["aum_total"] == pytest.approx(6000.5)
    assert m["loans_total"] == pytest.approx(250000.0)
    assert m["holdings_open"] == 2
    assert m["as_of_month"] == "2026-10-01"
    info = status(filled)
    assert info["current_run"] == run_id
    assert info["runs"][0]["status"] == "succeeded"
    assert info["runs"][0]["row_counts"]["customers"] == 3


def test_freed_memory_is_given_back_after_every_stage(filled, monkeypatch):
    # Each stage's peak is measured from what the stages before it kept: the refresh gives freed
    # memory back to the system between stages (glibc's malloc_trim; a no-op elsewhere).
    calls = []
    monkeypatch.setattr(refresh, "release_memory", lambda: calls.append(len(calls)))
    stages = [Stage("one", lambda ctx: None), Stage("two", lambda ctx: None)]
    monkeypatch.setattr(refresh, "STAGES", stages)
    run_refresh(filled)
    assert len(calls) == 2
    monkeypatch.undo()
    refresh.release_memory()  # runs here (Linux, glibc) without an error


def test_refresh_on_empty_store_says_what_to_do(engine):
    with pytest.raises(StoreNotInitialisedError):
        run_refresh(engine)


def test_failed_stage_keeps_previous_run_and_removes_partial_results(filled, monkeypatch):
    first = run_refresh(filled)

    def broken(ctx):
        ctx.put_metrics({"half_written": 1.0})
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(refresh, "STAGES", [*refresh.STAGES, Stage("broken", broken)])
    with pytest.raises(RefreshError, match="stage broken"):
        run_refresh(filled)
    assert current_run_id(filled) == first
    with filled.connect() as conn:
        runs = dict(conn.execute(select(refresh_runs.c.run_id, refresh_runs.c.status)).all())
        leftover = conn.execute(select(func.count()).select_from(run_metrics)
                                .where(run_metrics.c.run_id != first)).scalar()
    assert runs[first] == "succeeded"
    assert sorted(runs.values()) == ["failed", "succeeded"]
    assert leftover == 0


def test_old_results_are_pruned_but_current_kept(filled, monkeypatch):
    monkeypatch.setenv("REFRESH_KEEP_RUNS", "2")
    ids = [run_refresh(filled) for _ in range(4)]
    with filled.connect() as conn:
        kept = set(conn.execute(select(run_metrics.c.run_id).distinct()).scalars())
        features_of = set(conn.execute(select(customer_features.c.run_id).distinct()).scalars())
        sets_of = set(conn.execute(select(customer_feature_sets.c.run_id).distinct()).scalars())
    assert kept == set(ids[-2:])
    # the stored feature frames, working data as large as the store, stay only with the current run
    assert features_of == sets_of == {ids[-1]}


def test_refresh_killed_mid_run_leaves_previous_run_current(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    from analytics.store import init_schema, make_engine

    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    first = run_refresh(engine)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A refresh that pauses after its first stage (the stage hook), so it can be killed mid-run.
    paused = ("import sys, time; from analytics.refresh import STAGES, run_refresh; "
              "from analytics.store import make_engine; "
              "run_refresh(make_engine(sys.argv[1]), stage_hook=lambda name, when: "
              "time.sleep(600) if (name, when) == (STAGES[0].name, 'after') else None)")
    proc = subprocess.Popen([sys.executable, "-c", paused, url],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Wait until the child has written its first stage's results under its own run id.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                n = conn.execute(text("SELECT COUNT(DISTINCT run_id) FROM run_metrics")).scalar()
            if n == 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("the child refresh never wrote its results")
        # While the child is mid-run, readers still see the first run.
        assert current_run_id(engine) == first
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert current_run_id(engine) == first
    assert status(engine)["runs"][0]["status"] == "running"  # nobody could mark it yet
    # The store is intact: every store table still answers and holds its rows.
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert conn.execute(text("SELECT COUNT(*) FROM customers")).scalar() == 3
    # The next refresh marks the killed run failed, removes its partial results, and publishes.
    third = run_refresh(engine)
    runs = {r["run_id"]: r for r in status(engine)["runs"]}
    assert runs[first + 1]["status"] == "failed"
    assert "abandoned" in runs[first + 1]["error"]
    assert current_run_id(engine) == third
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT DISTINCT run_id FROM run_metrics")).scalars())
    assert first + 1 not in ids


def test_status_cli_json(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    from analytics.store import init_schema, make_engine

    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    run_id = run_refresh(engine)
    out = subprocess.run([sys.executable, "-m", "analytics", "status", "--db", url, "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["current_run"] == run_id
    assert info["runs"][0]["run_id"] == run_id


def test_cli_error_is_one_line_without_traceback(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    out = subprocess.run([sys.executable, "-m", "analytics", "refresh", "--db", url, "--quiet"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and "python -m analytics demo" in out.stderr


def test_each_stage_records_its_time_and_is_announced_to_the_hook(filled):
    calls = []
    run_refresh(filled, stage_hook=lambda name, when: calls.append((name, when)))
    metrics = status(filled)["runs"][0]["metrics"]
    names = [stage.name for stage in refresh.STAGES]
    assert calls == [(name, when) for name in names for when in ("before", "after")]
    for name in names:
        assert metrics[f"stage_seconds.{name}"] >= 0
        assert f"stage_peak_rss_mib.{name}" not in metrics  # memory is the benchmarks' business


def _run_rows(engine) -> tuple[dict[str, int], dict[str, tuple]]:
    """The running run's rows: a fingerprint of each result table's rows (so an UPDATE shows, not
    only an INSERT or DELETE) and every run metric by name."""
    tables, metrics = {}, {}
    with engine.connect() as conn:
        run_id = conn.execute(select(refresh_runs.c.run_id).where(refresh_runs.c.status == "running")).scalar_one()
        for table in refresh.result_tables():
            rows = conn.execute(select(table).where(table.c.run_id == run_id)).all()
            if table.name == "run_metrics":
                metrics = {r.name: (r.value, r.text_value) for r in rows}
            else:
                tables[table.name] = hash(tuple(sorted(repr(tuple(r)) for r in rows)))
    return tables, metrics


def _refresh_recording_writers(engine) -> tuple[int, dict[str, str], dict[str, str]]:
    """Refresh, and return the run id, the stage that wrote each result table's rows of the run and
    the stage that put each run metric, asserting on the way that no table changes in two stages
    and no metric, once put, is changed or removed."""
    writers: dict[str, set[str]] = {}
    metric_owner: dict[str, str] = {}
    changed_metrics: list[tuple[str, str]] = []
    before = {}

    def hook(name, when):
        tables, metrics = _run_rows(engine)
        if when == "before":
            before["tables"], before["metrics"] = tables, metrics
            return
        for table, fingerprint in tables.items():
            if fingerprint != before["tables"][table]:
                writers.setdefault(table, set()).add(name)
        for metric, value in metrics.items():
            if metric not in before["metrics"]:
                metric_owner[metric] = name
            elif value != before["metrics"][metric]:
                changed_metrics.append((metric, name))
        changed_metrics.extend((metric, name) for metric in before["metrics"] if metric not in metrics)

    run_id = run_refresh(engine, stage_hook=hook)
    assert {table: stages for table, stages in writers.items() if len(stages) > 1} == {}
    assert changed_metrics == []
    # every table holding rows of the published run was written by some stage
    with engine.connect() as conn:
        filled_tables = {t.name for t in refresh.result_tables() if t.name != "run_metrics" and conn.execute(
            select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar()}
    assert filled_tables == set(writers)
    return run_id, {table: stages.pop() for table, stages in writers.items()}, metric_owner


def _assert_margin_clv_and_aggregates_owners(owners: dict[str, str], metric_owner: dict[str, str]) -> None:
    assert owners["customer_segments"] == "segments"
    assert owners["customer_clv_margin"] == "clv_margin"
    for table in ("segment_summary", "segment_cube", "kpi_monthly"):
        assert owners[table] == "aggregates", table
    for metric in ("customers_total", "clv_margin_total", "clv_margin_3y_total", "annual_margin_total"):
        assert metric_owner[metric] == "aggregates", metric


def test_each_result_table_and_metric_is_written_by_one_stage(filled):
    """No stage writes another stage's tables: across a refresh, each result table's rows of the
    run change within one stage only, and a run metric, once put, is never changed or removed."""
    _, owners, metric_owner = _refresh_recording_writers(filled)
    _assert_margin_clv_and_aggregates_owners(owners, metric_owner)


@pytest.mark.slow
def test_one_writer_per_table_when_the_churn_model_scores(demo_store_url, tmp_path):
    """The same on a copy of the demo store, where the churn model scores customers and the margin
    CLV is re-based on it (the tiny store is too small to train a churn model)."""

    from analytics.store import make_engine

    engine = make_engine(copy_store(demo_store_url, tmp_path / "demo.db"))
    try:
        run_id, owners, metric_owner = _refresh_recording_writers(engine)
        _assert_margin_clv_and_aggregates_owners(owners, metric_owner)
        assert owners["churn_scores"] == "churn" and owners["cohort_retention"] == "aggregates"
        assert get_run_metrics(engine, run_id)["clv.retention_source"] == "churn_model"
    finally:
        engine.dispose()
