"""Partitioned per-customer work (issue 16): the partition function, the partition filter of the
readers, and churn scoring by partition on every executor.

* The hash is MD5's first 7 hex digits (hand-computed with ``printf C0000001 | md5sum``), the same in
  Python and in the SQL of both databases.
* Features and cut-off states read with a partition filter are exactly the unfiltered rows of that
  partition's customers.
* Scoring the small demo store gives the same ``churn_scores`` rows in 1 partition in process, 7 in
  process, 7 on a pool of 2 processes, and 3 on a Dask ``LocalCluster`` of 2 worker processes.
* A partition that fails fails the refresh: the run is marked failed, none of its rows are left and
  the previous run stays current.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import insert, select, text

from analytics import partitions
from analytics.churn.labels import churn_features, churn_outcomes, cutoff_states
from analytics.churn.model import ChurnModel
from analytics.churn.reasons import ReasonCoder
from analytics.churn.scoring import ScoringJob, score_partitions
from analytics.errors import RefreshError
from analytics.features import add_months, customer_features, read_features, store_features
from analytics.partitions import (
    DaskCluster,
    InProcess,
    Partition,
    PartitionError,
    ProcessPool,
    executor_from_settings,
    hash_sql,
    partition_hash,
    partition_of,
)
from analytics.refresh import latest_activity_month, pause_points, result_tables
from analytics.runs import utcnow
from analytics.schema import branches, current_run, refresh_runs
from analytics.schema import customers as customers_table
from analytics.store import make_engine
from tests.conftest import copy_store

# (customer id, first 7 hex digits of md5 of its UTF-8 text, as printed by `printf ID | md5sum`)
HASH_CASES = [
    ("C0000001", "da00371"),
    ("C0000002", "4c10fde"),
    ("000123456789012345", "2d5a5e7"),  # an 18-digit id, as text
    ("客户1", "73dffba"),
]


@pytest.mark.parametrize(("customer_id", "hex7"), HASH_CASES)
def test_partition_hash_is_the_first_28_bits_of_md5(customer_id, hex7):
    assert partition_hash(customer_id) == int(hex7, 16)
    assert partition_of(customer_id, 7) == int(hex7, 16) % 7
    assert partition_of(customer_id, 1) == 0


def test_partition_of_hand_computed():
    # 0xda00371 = 228590449 = 7 * 32655778 + 3
    assert partition_hash("C0000001") == 228590449
    assert partition_of("C0000001", 7) == 3
    assert partition_of("C0000001", 2) == 1


@pytest.mark.postgres
def test_sql_hash_equals_python_on_both_databases(engine):
    partitions.prepare_engine(engine)
    expr = hash_sql("CAST(:cid AS text)" if engine.dialect.name == "postgresql" else ":cid", engine.dialect.name)
    with engine.connect() as conn:
        for customer_id, hex7 in HASH_CASES:
            assert conn.execute(text(f"SELECT {expr}"), {"cid": customer_id}).scalar() == int(hex7, 16)


@pytest.mark.postgres
def test_id_ranges_cover_every_customer_once_in_blocks_of_about_the_size(engine):
    ids = [f"C{i:07d}" for i in range(1, 1001)]
    assert partitions.id_ranges(engine, 300) == []  # no customers, no range
    with engine.begin() as conn:
        conn.execute(insert(branches), [{"branch_id": "B1", "name": "One", "city": "Shanghai", "province": "Shanghai"}])
        conn.execute(insert(customers_table), [  # inserted out of order
            {"customer_id": c, "branch_id": "B1", "open_date": date(2020, 1, 1), "status": "active",
             "marketing_consent": False} for c in ids[::-1]])
    ranges = partitions.id_ranges(engine, 300)
    assert len(ranges) == 4 and ranges[0].low == ids[0] and ranges[-1].high == ids[-1]
    assert [r.through for r in ranges] == [False, False, False, True]
    seen = []
    for block in ranges:
        only, params = partitions.and_customers(block, "customer_id", engine)
        with engine.connect() as conn:
            got = conn.execute(text(f"SELECT customer_id FROM customers WHERE 1 = 1{only} ORDER BY customer_id"),
                               params).scalars().all()
        assert 240 <= len(got) <= 260  # 1000 in 4: 250 each
        seen += got
    assert seen == ids  # every customer once, in order
    assert partitions.and_customers(None, "customer_id", engine) == ("", {})  # no filter: every customer
    assert partitions.id_ranges(engine, 5000) == [partitions.IdRange(ids[0], ids[-1], through=True)]
    with pytest.raises(ValueError):
        partitions.id_ranges(engine, 0)


def test_partition_rejects_a_number_outside_the_count():
    with pytest.raises(ValueError):
        Partition(7, 7)
    with pytest.raises(ValueError):
        Partition(0, 0)


@pytest.mark.parametrize(("env", "kind"), [
    ({}, InProcess),
    ({"REFRESH_WORKERS": "2"}, ProcessPool),
    ({"REFRESH_WORKERS": "2", "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786"}, DaskCluster),
])
def test_executor_from_settings(monkeypatch, env, kind):
    for name in ("REFRESH_WORKERS", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert isinstance(executor_from_settings(), kind)


def test_partition_pause_point_is_a_refresh_pause_point():
    assert "partition:churn:writing" in pause_points()


# ---------------------------------------------------------------------------------------------
# Readers with a partition filter
# ---------------------------------------------------------------------------------------------

def test_partition_membership_in_sql_matches_python(demo_engine):
    part = Partition(2, 7)
    condition, params = part.sql("c.customer_id", demo_engine)
    inside = set(pd.read_sql(text(f"SELECT customer_id FROM customers c WHERE {condition}"),
                             demo_engine.connect(), params=params)["customer_id"])
    every = pd.read_sql(text("SELECT customer_id FROM customers"), demo_engine.connect())["customer_id"]
    expected = {c for c in every if partition_of(c, 7) == 2}
    assert inside == expected
    assert 0 < len(inside) < len(every)


def test_features_and_states_of_partitions_are_the_unfiltered_rows(demo_engine):
    month = latest_activity_month(demo_engine)
    full = customer_features(demo_engine, month)
    states = cutoff_states(demo_engine, month, 3)
    parts = [customer_features(demo_engine, month, customers=Partition(p, 2)) for p in range(2)]
    state_parts = [cutoff_states(demo_engine, month, 3, customers=Partition(p, 2)) for p in range(2)]
    for p, frame in enumerate(parts):
        assert len(frame) > 0 and all(partition_of(c, 2) == p for c in frame.index)
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), full)
    pd.testing.assert_series_equal(pd.concat(state_parts).sort_index(), states)


def test_stored_features_of_partitions_are_the_unfiltered_rows(demo_engine):
    # What churn scoring reads: the run's stored features, a partition at a time.
    with demo_engine.connect() as conn:
        run_id = conn.execute(select(current_run.c.run_id)).scalar()
    month = latest_activity_month(demo_engine)
    full = read_features(demo_engine, run_id, month)
    parts = [read_features(demo_engine, run_id, month, customers=Partition(p, 3)) for p in range(3)]
    for p, frame in enumerate(parts):
        assert len(frame) > 0 and all(partition_of(c, 3) == p for c in frame.index)
    pd.testing.assert_frame_equal(pd.concat(parts).sort_index(), full)
    # With a list of ids too: the customers both keep; with no columns: the partition's ids alone.
    some = list(full.index[::5])
    pd.testing.assert_frame_equal(read_features(demo_engine, run_id, month, customer_ids=some, customers=Partition(1, 3)),
                                  full.loc[[c for c in some if partition_of(c, 3) == 1]])
    ids = read_features(demo_engine, run_id, month, columns=[], customers=Partition(2, 3))
    assert ids.shape[1] == 0 and list(ids.index) == list(parts[2].index)


# ---------------------------------------------------------------------------------------------
# Churn scoring by partition
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scoring_store(demo_store_url, tmp_path_factory):
    """A private copy of the demo store with a churn model fitted on a small training sample."""
    url = copy_store(demo_store_url, tmp_path_factory.mktemp("partitions") / "store.db")
    engine = make_engine(url)
    as_of = latest_activity_month(engine)
    cut = add_months(as_of.replace(day=1), -3)
    outcome = churn_outcomes(engine, cut, 3, 0.8)
    active = outcome.index[outcome["churn_state"] == "active"]
    # A small, quick fit: what is tested is that scoring does not depend on how it is split.
    active = active[::3]
    features = churn_features(engine, cut).reindex(active)
    model = ChurnModel(random_state=7, n_folds=2, blend=0.5, calibration="sigmoid", C=1.0).fit(
        features, outcome.loc[active, "churned"].astype(int))
    now = churn_features(engine, as_of)
    coder = ReasonCoder().fit(now.loc[cutoff_states(engine, as_of, 3).reindex(now.index) == "active"])
    stored = customer_features(engine, as_of, with_status=True)
    engine.dispose()
    return {"url": url, "as_of": as_of.replace(day=1), "model": model, "coder": coder, "features": stored}


def _new_run(store: dict) -> int:
    """A run holding the features at ``as_of``, as the ``customer_features`` stage stores them."""
    engine = make_engine(store["url"])
    try:
        with engine.begin() as conn:
            # Not 'running': a later refresh of the store would wait for it.
            run_id = conn.execute(insert(refresh_runs).values(started_at=utcnow(), status="failed",
                                                              error="scoring test run")).inserted_primary_key[0]
            store_features(conn, run_id, store["as_of"], store["features"])
        return run_id
    finally:
        engine.dispose()


def _job(store: dict, run_id: int, count: int, **kwargs) -> ScoringJob:
    coder = store["coder"]
    return ScoringJob(url=store["url"], run_id=run_id, as_of=store["as_of"], horizon_months=3, inactive_rate=0.25,
                      model=store["model"], reference=coder.reference_, reference_columns=tuple(coder.columns_),
                      partitions=count, **kwargs)


def _same(rows: pd.DataFrame, baseline: pd.DataFrame) -> None:
    """The same customers, states and reasons; probabilities and values equal to 1e-12 (a process
    or thread of its own may sum a dot product in another order)."""
    text_columns = ["customer_id", "churn_state", "reason_1", "reason_2", "reason_3"]
    pd.testing.assert_frame_equal(rows[text_columns], baseline[text_columns], check_exact=True)
    pd.testing.assert_frame_equal(rows.drop(columns=text_columns), baseline.drop(columns=text_columns),
                                  check_exact=False, rtol=1e-12, atol=1e-12)


def _rows(url: str, run_id: int) -> pd.DataFrame:
    engine = make_engine(url)
    try:
        frame = pd.read_sql(text("SELECT * FROM churn_scores WHERE run_id = :r ORDER BY customer_id"),
                            engine.connect(), params={"r": run_id})
    finally:
        engine.dispose()
    return frame.drop(columns="run_id")


@pytest.fixture(scope="module")
def baseline(scoring_store):
    run_id = _new_run(scoring_store)
    scored = score_partitions(_job(scoring_store, run_id, 1), InProcess())
    rows = _rows(scoring_store["url"], run_id)
    assert len(rows) == len(scored) > 2000
    assert set(rows["churn_state"]) == {"active", "inactive", "closed"}
    assert rows.loc[rows["churn_state"] != "active", "reason_1"].notna().all()
    assert rows.loc[rows["churn_state"] == "active", "reason_1"].notna().any()
    return rows


@pytest.mark.parametrize(("count", "executor"), [
    (7, InProcess()),
    pytest.param(3, ProcessPool(2), marks=pytest.mark.reliability_long),  # the pool: make reliability
])
def test_scores_are_the_same_whatever_the_partitions_and_executor(scoring_store, baseline, count, executor):
    run_id = _new_run(scoring_store)
    scored = score_partitions(_job(scoring_store, run_id, count), executor)
    rows = _rows(scoring_store["url"], run_id)
    _same(rows, baseline)
    assert list(scored.index) == list(rows["customer_id"])


def test_scores_are_the_same_whatever_the_block_size(scoring_store, baseline):
    # A partition is read, scored and written a block of customers at a time: 2 partitions in
    # blocks of 700 customers (4 blocks each, the last one short) give the same rows as 1 in one block.
    run_id = _new_run(scoring_store)
    scored = score_partitions(_job(scoring_store, run_id, 2, block_rows=700), InProcess())
    assert len(baseline) > 4 * 700
    _same(_rows(scoring_store["url"], run_id), baseline)
    assert list(scored.index) == list(baseline["customer_id"])


def test_scores_read_the_runs_stored_features(scoring_store, baseline):
    # Scoring computes no feature: it reads what the run stored. Changed stored values change the scores.
    run_id = _new_run(scoring_store)
    engine = make_engine(scoring_store["url"])
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE customer_features SET complaints_6m = complaints_6m + 9, "
                              "unresolved_complaints_6m = unresolved_complaints_6m + 9 WHERE run_id = :r"),
                         {"r": run_id})
    finally:
        engine.dispose()
    score_partitions(_job(scoring_store, run_id, 1), InProcess())
    rows = _rows(scoring_store["url"], run_id)
    active = rows["churn_state"] == "active"
    assert (rows.loc[active, "churn_probability"] != baseline.loc[active, "churn_probability"]).any()
    assert rows.loc[active, ["reason_1", "reason_2", "reason_3"]].apply(
        lambda r: r.str.startswith("complaints_6m_unresolved").any(), axis=1).any()


@pytest.fixture(autouse=True)
def _plain_main(monkeypatch):
    """A spawned worker re-runs the parent's ``__main__`` from its file; after an AppTest in this
    session that is app.py, which cannot run outside Streamlit. A worker needs nothing from the
    parent's main module, so the tests give it a bare one (no file, no spec: nothing to re-run)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def _on_dask(store: dict, count: int, **cluster_args) -> pd.DataFrame:
    from dask.distributed import LocalCluster

    run_id = _new_run(store)
    with LocalCluster(dashboard_address=None, **cluster_args) as cluster:
        score_partitions(_job(store, run_id, count), DaskCluster(cluster.scheduler_address))
    return _rows(store["url"], run_id)


@pytest.mark.reliability_long
def test_scores_on_a_dask_cluster_are_the_same(scoring_store, baseline):
    # The quick form: the scheduler and one worker thread in this process, through the same Client.
    rows = _on_dask(scoring_store, 3, n_workers=1, processes=False, threads_per_worker=1)
    _same(rows, baseline)


def test_scores_on_a_dask_local_cluster_of_two_processes_are_the_same(scoring_store, baseline):
    # CI's Dask check (issue 16): a LocalCluster of 2 worker processes, 7 partitions.
    rows = _on_dask(scoring_store, 7, n_workers=2, processes=True, threads_per_worker=1)
    _same(rows, baseline)


@pytest.mark.reliability_long
def test_rescoring_a_partition_replaces_its_rows(scoring_store, baseline):
    # What Dask does when a worker dies after its commit: the partition runs again.
    from analytics.churn.scoring import score_partition

    run_id = _new_run(scoring_store)
    job = _job(scoring_store, run_id, 3)
    score_partition(job, 1)
    score_partitions(job, InProcess())
    _same(_rows(scoring_store["url"], run_id), baseline)


def test_a_failing_partition_fails_the_refresh_and_publishes_nothing(scoring_store, monkeypatch):
    from analytics import refresh
    from analytics.churn import scoring
    from analytics.runs import Stage

    url = scoring_store["url"]
    real = scoring.read_features

    def features(engine, run_id, month, **kwargs):
        if getattr(kwargs.get("customers"), "partition", None) == Partition(4, 7):  # its ranges of ids
            raise OSError("disk gone while reading partition 4")
        return real(engine, run_id, month, **kwargs)

    def stage(ctx):
        with ctx.engine.begin() as conn:  # what the customer_features stage stores before churn
            store_features(conn, ctx.run_id, scoring_store["as_of"], scoring_store["features"])
        score_partitions(_job(scoring_store, ctx.run_id, 7), InProcess())

    staged = []
    real_delete = refresh._delete_results

    def delete_results(engine, run_id):
        with engine.connect() as conn:
            staged.append(conn.execute(text("SELECT count(*) FROM churn_scores WHERE run_id = :r"),
                                       {"r": run_id}).scalar())
        real_delete(engine, run_id)

    monkeypatch.setattr(scoring, "read_features", features)
    monkeypatch.setattr(refresh, "STAGES", [Stage("churn", stage)])
    monkeypatch.setattr(refresh, "_delete_results", delete_results)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            before = conn.execute(select(current_run.c.run_id)).scalar()
        assert before is not None
        with pytest.raises(RefreshError, match="Partition 4 failed"):
            refresh.run_refresh(engine)
        with engine.connect() as conn:
            failed = conn.execute(select(refresh_runs.c.run_id, refresh_runs.c.status)
                                  .order_by(refresh_runs.c.run_id.desc())).first()
            assert failed.status == "failed"
            assert conn.execute(select(current_run.c.run_id)).scalar() == before
            for table in result_tables():
                left = conn.execute(select(text("count(*)")).select_from(table)
                                    .where(table.c.run_id == failed.run_id)).scalar()
                assert left == 0, table.name
        # Partitions 0-3 had written their rows before partition 4 failed: the failure path removed them.
        assert staged and staged[0] > 0
    finally:
        engine.dispose()


def test_partition_error_names_the_partition():
    def fail_on_two(p):
        if p == 2:
            raise ValueError("bad row")
        return p

    # Only the error's kind: a message may hold a customer's values (analytics.errors.describe).
    with pytest.raises(PartitionError, match="Partition 2 failed: ValueError"):
        InProcess().run(fail_on_two, range(4))
