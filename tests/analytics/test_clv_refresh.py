"""Transactional CLV and margin CLV refresh stages (analytics/clv_refresh.py): the monthly BG/NBD
summary and the retention arithmetic worked out by hand, on both dialects, and the stages'
invariants on the refreshed demo store."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analytics import clv_refresh
from analytics.clv_refresh import (
    churn_retention,
    clv_margin_stage,
    clv_stage,
    clv_txn_totals,
    monthly_rfm_summary,
)
from analytics.refresh import STAGES
from analytics.runs import RefreshContext, current_run_id, get_run_metrics, utcnow
from analytics.schema import churn_scores, customer_monthly, customer_segments, refresh_runs
from analytics.store import bulk_insert, read_frame
from tests.analytics import store_rows


def _new_run(engine) -> int:
    with engine.begin() as conn:
        return conn.execute(refresh_runs.insert().values(started_at=utcnow(), status="running")
                            ).inserted_primary_key[0]


def _month(customer_id: str, month: date, txn_count: int, txn_amount: float) -> dict:
    return {"customer_id": customer_id, "month": month, "aum": 0.0, "deposit_balance": 0.0, "loan_balance": 0.0,
            "txn_count": txn_count, "txn_amount": txn_amount, "digital_logins": 0}


@pytest.fixture
def monthly_store(engine):
    """store_rows' 3 customers (every month 3 txns, 100 CNY) plus C1's earlier months:
    2026-06 active (50), 2026-07 idle, 2026-08 active (300); 2026-09/10 active (100 each).
    C2 is active 2026-09 and 2026-10; C3 only in 2026-10."""
    store_rows.fill(engine)
    bulk_insert(engine, customer_monthly, pd.DataFrame([
        _month("C000000001", date(2026, 6, 1), 2, 50.0),
        _month("C000000001", date(2026, 7, 1), 0, 0.0),
        _month("C000000001", date(2026, 8, 1), 1, 300.0),
    ]))
    return engine


# (as_of, window months, customer -> (frequency, recency, T, monetary_value)), worked out by hand
SUMMARY_CASES = [
    (date(2026, 10, 1), 24, {"C000000001": (3, 4, 4, (300 + 100 + 100) / 3), "C000000002": (1, 1, 1, 100.0),
                             "C000000003": (0, 0, 0, 0.0)}),
    # window 2026-08..10: C1's June purchase falls out, August becomes the first
    (date(2026, 10, 1), 3, {"C000000001": (2, 2, 2, 100.0), "C000000002": (1, 1, 1, 100.0),
                            "C000000003": (0, 0, 0, 0.0)}),
    # as of 2026-09: October is ignored, C3 has no active month yet
    (date(2026, 9, 1), 24, {"C000000001": (2, 3, 3, (300 + 100) / 2), "C000000002": (0, 0, 0, 0.0)}),
]


@pytest.mark.parametrize(("as_of", "months", "expected"), SUMMARY_CASES)
def test_monthly_rfm_summary_by_hand(monthly_store, as_of, months, expected):
    summary = monthly_rfm_summary(monthly_store, as_of, months=months)
    assert sorted(summary.index) == sorted(expected)
    for customer, (f, r, t, m) in expected.items():
        row = summary.loc[customer]
        assert (row["frequency"], row["recency"], row["T"]) == (f, r, t), customer
        assert row["monetary_value"] == pytest.approx(m), customer


def test_monthly_rfm_summary_of_an_empty_window(monthly_store):
    summary = monthly_rfm_summary(monthly_store, date(2020, 1, 1))
    assert summary.empty and list(summary.columns) == ["frequency", "recency", "T", "monetary_value"]


def test_clv_stage_on_a_degenerate_store_is_skipped_with_its_reason(monthly_store):
    # a run month before any activity: nothing to fit, and the refresh must go on
    ctx = RefreshContext(engine=monthly_store, run_id=_new_run(monthly_store), as_of_month=date(2020, 1, 1))
    clv_stage(ctx)
    metrics = get_run_metrics(monthly_store, ctx.run_id)
    assert metrics["clv_txn.skipped"] == "no active month in the window"
    assert metrics["clv_txn.customers"] == 0


def test_fit_failure_is_recorded_not_raised(monthly_store, monkeypatch):
    def boom(summary):
        raise ValueError("no customer has a repeat active month in the window")

    monkeypatch.setattr(clv_refresh, "_fit_models", boom)
    ctx = RefreshContext(engine=monthly_store, run_id=_new_run(monthly_store), as_of_month=date(2026, 10, 1))
    clv_stage(ctx)
    assert "no customer has a repeat" in get_run_metrics(monthly_store, ctx.run_id)["clv_txn.skipped"]
    assert read_frame(monthly_store, "SELECT COUNT(*) AS n FROM customer_clv_txn")["n"].iloc[0] == 0


def test_clv_txn_totals_rejects_an_unknown_dimension(monthly_store):
    with pytest.raises(ValueError, match="by must be one of"):
        clv_txn_totals(monthly_store, 1, "name; DROP TABLE customers")


# ---------------------------------------------------------------------------------------------
# churn-based retention, by hand
# ---------------------------------------------------------------------------------------------

def test_churn_retention_by_hand():
    # 10 % churn over 3 months -> 0.9 retained per quarter -> 0.9**4 a year
    assert churn_retention(0.1, 3) == pytest.approx(0.9 ** 4)
    assert churn_retention([0.0, 1.0, 1.5, -0.2], 12).tolist() == [1.0, 0.0, 0.0, 1.0]


def _segment_row(run_id: int, customer_id: str, annual_margin: float) -> dict:
    return {"run_id": run_id, "customer_id": customer_id, "rfm_recency_months": 0.0, "rfm_frequency": 1.0,
            "rfm_monetary": 1.0, "rfm_r": 3, "rfm_f": 3, "rfm_m": 3, "rfm_score": "333",
            "rfm_segment": "Need attention", "aum": 1000.0, "value_tier": "mass", "cluster": 0,
            "cluster_name": "c0", "lifecycle_stage": "mature", "annual_margin": annual_margin,
            "retention_rate": 0.5, "clv_margin_1y": 1.0, "clv_margin_3y": 1.0, "clv_margin_5y": 1.0,
            "tags": "salary_account"}


@pytest.mark.parametrize("block_rows", [None, 1])  # one block, or each customer a block of their own
def test_clv_margin_stage_by_hand(engine, monkeypatch, block_rows):
    monkeypatch.setenv("CLV_DISCOUNT_RATE", "0.08")
    monkeypatch.setenv("CHURN_HORIZON_MONTHS", "3")
    store_rows.fill(engine)
    run_id = _new_run(engine)
    bulk_insert(engine, customer_segments, pd.DataFrame([_segment_row(run_id, "C000000001", 1000.0),
                                                         _segment_row(run_id, "C000000002", 500.0)]))
    # only C1 is scored: C2 keeps the lifecycle retention and CLV
    bulk_insert(engine, churn_scores, pd.DataFrame([{
        "run_id": run_id, "customer_id": "C000000001", "churn_state": "active", "churn_probability": 0.1,
        "clv": 0.0, "value_at_risk": 0.0}]))
    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=date(2026, 10, 1))
    clv_margin_stage(ctx, block_rows=block_rows)

    r, d = 0.9 ** 4, 0.08
    expected = {years: sum(1000 * r ** t / (1 + d) ** t for t in range(1, years + 1)) for years in (1, 3, 5)}
    rows = read_frame(engine, "SELECT * FROM customer_clv_margin WHERE run_id = :r", {"r": run_id}
                      ).set_index("customer_id")
    assert rows.loc["C000000001", "retention_rate"] == pytest.approx(r)
    assert rows.loc["C000000001", "retention_source"] == "churn_model"
    for years, value in expected.items():
        assert rows.loc["C000000001", f"clv_margin_{years}y"] == pytest.approx(value)
    assert rows.loc["C000000002", ["retention_rate", "clv_margin_3y", "retention_source"]].tolist() == [
        0.5, 1.0, "lifecycle_stage"]
    # the segments stage's rows are left as they were
    segments = read_frame(engine, "SELECT retention_rate, clv_margin_3y FROM customer_segments")
    assert segments.to_numpy().tolist() == [[0.5, 1.0], [0.5, 1.0]]
    metrics = get_run_metrics(engine, run_id)
    assert metrics["clv.retention_source"] == "churn_model"
    assert metrics["clv.retention_customers"] == 1
    assert metrics["clv.retention_horizon_months"] == 3
    assert metrics["clv.retention_mean"] == pytest.approx(r)


def test_clv_margin_stage_without_scores_keeps_lifecycle_retention(engine):
    store_rows.fill(engine)
    run_id = _new_run(engine)
    bulk_insert(engine, customer_segments, pd.DataFrame([_segment_row(run_id, "C000000001", 1000.0)]))
    clv_margin_stage(RefreshContext(engine=engine, run_id=run_id, as_of_month=date(2026, 10, 1)))
    row = read_frame(engine, "SELECT retention_rate, clv_margin_3y, retention_source FROM customer_clv_margin").iloc[0]
    assert row.tolist() == [0.5, 1.0, "lifecycle_stage"]
    assert get_run_metrics(engine, run_id)["clv.retention_source"] == "lifecycle_stage"


# ---------------------------------------------------------------------------------------------
# the demo store, refreshed once per session
# ---------------------------------------------------------------------------------------------

def test_stages_run_in_order():
    names = [s.name for s in STAGES]
    assert names.index("segments") + 1 == names.index("clv_txn")
    assert names.index("churn") + 1 == names.index("clv_margin")
    # the aggregates are the last run-keyed results; the alerts stage, which writes no run-keyed
    # table, runs after every stage it reads
    assert names[-2:] == ["aggregates", "alerts"]


def test_demo_every_segmented_customer_has_a_transactional_clv(demo_engine):
    run_id = current_run_id(demo_engine)
    seg = read_frame(demo_engine, "SELECT customer_id FROM customer_segments WHERE run_id = :r", {"r": run_id})
    txn = read_frame(demo_engine, "SELECT * FROM customer_clv_txn WHERE run_id = :r", {"r": run_id})
    assert set(seg["customer_id"]) <= set(txn["customer_id"])
    assert txn["p_alive"].between(0, 1).all()
    assert (txn["clv_txn_12m"] >= 0).all() and np.isfinite(txn["clv_txn_12m"]).all()
    assert (txn["expected_purchases_12m"] >= 0).all()
    modelled = txn["frequency"].notna()
    assert modelled.mean() > 0.9
    assert (txn.loc[modelled, "recency"] <= txn.loc[modelled, "T"]).all()
    metrics = get_run_metrics(demo_engine, run_id)
    assert "clv_txn.skipped" not in metrics
    for name in ("r", "alpha", "a", "b", "p", "q", "gamma"):
        assert metrics[f"clv_txn.{name}"] > 0, name
    assert metrics["clv_txn.customers"] == len(txn)
    assert metrics["clv_txn.total_12m"] == pytest.approx(txn["clv_txn_12m"].sum())


def test_the_transactional_clv_in_blocks_equals_one_block(demo_engine, blocks_store):
    """A refresh that read and scored blocks of 700 customers (the fits on every customer's summary,
    kept as four numbers each) stored the rows and figures of one block, which are one pass's."""
    from analytics.store import make_engine

    query = "SELECT * FROM customer_clv_txn WHERE run_id = :r ORDER BY customer_id"
    whole = read_frame(demo_engine, query, {"r": current_run_id(demo_engine)}).drop(columns="run_id")
    before = get_run_metrics(demo_engine, current_run_id(demo_engine))
    engine = make_engine(blocks_store["url"])
    try:
        blocks = read_frame(engine, query, {"r": blocks_store["run_id"]}).drop(columns="run_id")
        after = get_run_metrics(engine, blocks_store["run_id"])
    finally:
        engine.dispose()
    assert len(whole) > 3 * 700
    pd.testing.assert_frame_equal(blocks, whole, check_exact=False, rtol=1e-9)
    for name in ("r", "alpha", "a", "b", "p", "q", "gamma", "customers", "modelled_customers"):
        assert after[f"clv_txn.{name}"] == before[f"clv_txn.{name}"], name
    assert after["clv_txn.total_12m"] == pytest.approx(before["clv_txn.total_12m"], rel=1e-12)


@pytest.mark.parametrize("by", ["rfm_segment", "value_tier", "branch_id"])
def test_demo_clv_txn_totals_add_up(demo_engine, by):
    run_id = current_run_id(demo_engine)
    totals = clv_txn_totals(demo_engine, run_id, by)
    txn = read_frame(demo_engine, "SELECT clv_txn_12m FROM customer_clv_txn WHERE run_id = :r", {"r": run_id})
    assert totals["customers"].sum() == len(txn)
    assert totals["clv_txn_12m_total"].sum() == pytest.approx(txn["clv_txn_12m"].sum())
    assert totals["value"].is_unique
    assert clv_txn_totals(demo_engine, None, by).equals(totals)


def test_demo_margin_clv_uses_churn_retention(demo_engine):
    run_id = current_run_id(demo_engine)
    metrics = get_run_metrics(demo_engine, run_id)
    assert metrics["clv.retention_source"] == "churn_model"
    horizon = int(metrics["churn.horizon_months"])
    rows = read_frame(demo_engine, """
        SELECT m.customer_id, m.retention_rate, m.retention_source, m.clv_margin_3y, c.churn_probability
        FROM customer_clv_margin m JOIN churn_scores c ON c.run_id = m.run_id AND c.customer_id = m.customer_id
        WHERE m.run_id = :r""", {"r": run_id})
    assert len(rows) > 0
    expected = churn_retention(rows["churn_probability"], horizon)
    np.testing.assert_allclose(rows["retention_rate"], expected)
    # the lifecycle-stage CLV would have used one retention per stage: re-based values now differ
    assert rows["retention_rate"].nunique() > 10
    assert (rows["retention_source"] == "churn_model").all()
    assert metrics["clv_margin_3y_total"] == pytest.approx(
        read_frame(demo_engine, "SELECT SUM(clv_margin_3y) AS t FROM customer_clv_margin WHERE run_id = :r",
                   {"r": run_id})["t"].iloc[0])


def test_demo_margin_clv_changed_for_scored_and_nonnegative_for_deposit_only(demo_engine):
    """The scored customers' 3-year CLV moved away from the lifecycle-stage value (recomputed from
    the stage retentions in run_metrics), unscored ones kept it, deposit-only customers' is >= 0."""
    from analytics.lifecycle import clv_discount_rate, margin_clv

    run_id = current_run_id(demo_engine)
    seg = read_frame(demo_engine, "SELECT s.customer_id, s.lifecycle_stage, s.annual_margin, m.clv_margin_3y "
                                  "FROM customer_segments s JOIN customer_clv_margin m "
                                  "ON m.run_id = s.run_id AND m.customer_id = s.customer_id "
                                  "WHERE s.run_id = :r", {"r": run_id})
    stage_retention = {k.split(".", 1)[1]: v for k, v in get_run_metrics(demo_engine, run_id).items()
                       if k.startswith("lifecycle_retention.")}
    before = margin_clv(seg["annual_margin"], seg["lifecycle_stage"].map(stage_retention).fillna(0.0),
                        discount_rate=clv_discount_rate(), years=3)
    scored = set(read_frame(demo_engine, "SELECT customer_id FROM churn_scores WHERE run_id = :r",
                            {"r": run_id})["customer_id"])
    is_scored = seg["customer_id"].isin(scored).to_numpy()
    with_margin = is_scored & (seg["annual_margin"].to_numpy() > 0)
    changed = ~np.isclose(seg["clv_margin_3y"].to_numpy(), before)
    assert changed[with_margin].mean() > 0.9
    assert not changed[~is_scored].any()

    deposit_only = read_frame(demo_engine, """
        SELECT h.customer_id FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.closed_on IS NULL GROUP BY h.customer_id
        HAVING SUM(CASE WHEN p.category NOT IN ('demand_deposit', 'time_deposit') THEN 1 ELSE 0 END) = 0
    """)["customer_id"]
    chosen = seg[seg["customer_id"].isin(deposit_only)]
    assert len(chosen) > 0 and (chosen["clv_margin_3y"] >= 0).all()
