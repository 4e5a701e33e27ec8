"""Features once per run: the refresh's customer_features stage stores the frame of every declared
cut-off, later stages read it back identical to customer_features(), and the SQL pushdown agrees
with a plain-pandas reference computed from the raw rows of the demo store."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, insert, select

from analytics import demo
from analytics.features import (
    FEATURE_COLUMNS,
    FeatureError,
    add_months,
    customer_features,
    product_columns,
    read_features,
    stored_cutoffs,
)
from analytics.features_stage import features_stage_for, needed_cutoffs
from analytics.refresh import FEATURE_CUTOFFS, STAGES, latest_activity_month, result_tables
from analytics.runs import RefreshContext, current_run_id, utcnow
from analytics.schema import (
    FEATURE_CATEGORICAL_COLUMNS,
    FEATURE_NUMERIC_COLUMNS,
    customer_feature_products,
    customer_feature_sets,
    refresh_runs,
)
from analytics.schema import customer_features as feature_rows
from analytics.store import read_frame


def _assert_same(stored: pd.DataFrame, computed: pd.DataFrame) -> None:
    # Exact: the stored values are the computed floats, written and read back without rounding.
    pd.testing.assert_frame_equal(stored, computed, check_exact=True)


def test_stored_columns_are_the_documented_features():
    stored = set(FEATURE_CATEGORICAL_COLUMNS) | set(FEATURE_NUMERIC_COLUMNS) | {"marketing_consent"}
    assert stored == set(FEATURE_COLUMNS)
    assert {c.name for c in feature_rows.c} == stored | {"run_id", "cutoff", "customer_id", "status"}


def test_the_stage_comes_first_after_data_quality_and_its_tables_are_run_results():
    assert [s.name for s in STAGES][:2] == ["data_quality", "customer_features"]
    # run-keyed: a failed run's rows are deleted and old runs' pruned with every other result
    assert {"customer_features", "customer_feature_sets", "customer_feature_products"} <= {
        t.name for t in result_tables()}


def test_cutoffs_are_the_union_of_what_the_stages_declare(monkeypatch):
    monkeypatch.setenv("CROSS_SELL_HORIZON_MONTHS", "3")
    monkeypatch.setenv("CHURN_HORIZON_MONTHS", "2")
    # segments: 2026-10; cross-sell: 2026-07 and 2026-10; churn: 2026-06, 2026-08 and 2026-10
    assert needed_cutoffs(date(2026, 10, 1), FEATURE_CUTOFFS) == [
        date(2026, 6, 1), date(2026, 7, 1), date(2026, 8, 1), date(2026, 10, 1)]
    # the defaults (both horizons 3 months): cross-sell's training month is churn's hold-out cut-off
    monkeypatch.setenv("CHURN_HORIZON_MONTHS", "3")
    assert needed_cutoffs(date(2026, 10, 15), FEATURE_CUTOFFS) == [
        date(2026, 4, 1), date(2026, 7, 1), date(2026, 10, 1)]


def test_the_refresh_stored_every_cutoff_and_reads_back_what_customer_features_builds(demo_engine):
    run_id = current_run_id(demo_engine)
    as_of = latest_activity_month(demo_engine)
    cutoffs = stored_cutoffs(demo_engine, run_id)
    assert cutoffs == needed_cutoffs(as_of, FEATURE_CUTOFFS)
    assert len(cutoffs) == 3
    for cutoff in cutoffs:
        computed = customer_features(demo_engine, cutoff, with_status=True)
        assert len(computed) > 1000 and product_columns(computed)
        _assert_same(read_features(demo_engine, run_id, cutoff, with_status=True), computed)
        # without status: customer_features(with_status=False) is the same frame without that column
        _assert_same(read_features(demo_engine, run_id, cutoff), computed.drop(columns="status"))


def test_a_partition_reads_only_its_customers(demo_engine):
    run_id = current_run_id(demo_engine)
    as_of = latest_activity_month(demo_engine)
    whole = read_features(demo_engine, run_id, as_of, with_status=True)
    some = list(whole.index[::7]) + ["NO-SUCH-CUSTOMER"]
    part = read_features(demo_engine, run_id, as_of, with_status=True, customer_ids=some)
    _assert_same(part, whole.loc[whole.index[::7]])
    assert read_features(demo_engine, run_id, as_of, customer_ids=[]).empty


def test_a_narrow_read_is_the_whole_frames_columns(demo_engine):
    run_id = current_run_id(demo_engine)
    as_of = latest_activity_month(demo_engine)
    whole = read_features(demo_engine, run_id, as_of, with_status=True)
    product = next(c for c in whole.columns if c.startswith("products_") and whole[c].gt(0).any())
    wanted = ["aum_latest", "branch_id", product, "marketing_consent"]
    narrow = read_features(demo_engine, run_id, as_of, with_status=True, columns=wanted)
    assert list(narrow.columns) == [c for c in whole.columns if c in wanted] + ["status"]
    _assert_same(narrow, whole[list(narrow.columns)])
    some = list(whole.index[::11])
    _assert_same(read_features(demo_engine, run_id, as_of, customer_ids=some, columns=["aum_latest"]),
                 whole.loc[some, ["aum_latest"]])
    assert list(read_features(demo_engine, run_id, as_of, columns=[]).index) == list(whole.index)
    with pytest.raises(FeatureError, match="No stored feature column no_such_column"):
        read_features(demo_engine, run_id, as_of, columns=["no_such_column"])


def test_a_cutoff_no_stage_declared_is_refused(demo_engine):
    run_id = current_run_id(demo_engine)
    with pytest.raises(FeatureError, match="stored no customer features at 2001-01"):
        read_features(demo_engine, run_id, date(2001, 1, 1))


def _pushdown_reference(engine, m0: date) -> pd.DataFrame:
    """A few features computed in plain pandas from the raw rows, the slow obvious way."""
    monthly = read_frame(engine, "SELECT customer_id, month, aum, txn_count, digital_logins FROM customer_monthly")
    monthly["month"] = pd.to_datetime(monthly["month"].astype(str).str.slice(0, 10))
    ts = pd.Timestamp(m0)
    last3 = monthly[(monthly["month"] > ts - pd.DateOffset(months=3)) & (monthly["month"] <= ts)]
    last12 = monthly[(monthly["month"] > ts - pd.DateOffset(months=12)) & (monthly["month"] <= ts)]
    out = pd.DataFrame({
        "aum_latest": monthly[monthly["month"] == ts].groupby("customer_id")["aum"].sum(),
        "txn_count_3m": last3.groupby("customer_id")["txn_count"].sum(),
        "digital_logins_12m": last12.groupby("customer_id")["digital_logins"].sum(),
        "aum_avg_12m": last12.groupby("customer_id")["aum"].sum() / 12,
        "active_months_12m": last12[last12["txn_count"] > 0].groupby("customer_id").size(),
    })
    end = pd.Timestamp(add_months(m0, 1)) - pd.Timedelta(days=1)
    held = read_frame(engine, "SELECT h.customer_id, h.opened_on, h.closed_on, p.category, p.balance_side "
                              "FROM holdings h JOIN products p ON p.product_id = h.product_id")
    opened = pd.to_datetime(held["opened_on"].astype(str).str.slice(0, 10))
    closed = pd.to_datetime(held["closed_on"].astype(str).str.slice(0, 10), errors="coerce")
    held = held[(opened <= end) & (closed.isna() | (closed > end))]
    out = out.join(held.groupby("customer_id").size().rename("open_products"), how="outer")
    out = out.join(held[held["balance_side"] == "liability"].groupby("customer_id").size()
                   .rename("open_liability_products"), how="outer")
    out = out.join(held.groupby("customer_id")["category"].nunique().rename("open_product_categories"), how="outer")
    out = out.join(held.pivot_table(index="customer_id", columns="category", values="balance_side", aggfunc="size")
                   .rename(columns=lambda c: f"products_{c}"), how="outer")
    contacts = read_frame(engine, "SELECT customer_id, contacted_at, kind FROM contacts")
    at = pd.to_datetime(contacts["contacted_at"].astype(str).str.slice(0, 19))
    six = contacts[(at >= pd.Timestamp(add_months(m0, -5))) & (at < pd.Timestamp(add_months(m0, 1)))]
    out = out.join(six[six["kind"] == "complaint"].groupby("customer_id").size().rename("complaints_6m"), how="outer")
    out = out.join(six[six["kind"] == "marketing"].groupby("customer_id").size().rename("marketing_contacts_6m"),
                   how="outer")
    return out.astype(float)


def test_the_pushed_down_features_equal_a_pandas_reference_on_the_demo_store(demo_engine):
    run_id = current_run_id(demo_engine)
    m0 = latest_activity_month(demo_engine)
    stored = read_features(demo_engine, run_id, m0)
    reference = _pushdown_reference(demo_engine, m0).reindex(stored.index).fillna(0.0)
    assert set(product_columns(stored)) >= set(c for c in reference.columns if c.startswith("products_"))
    for column in reference.columns:
        assert reference[column].sum() > 0, column  # each compared column has something to compare
        np.testing.assert_allclose(stored[column].to_numpy(), reference[column].to_numpy(), rtol=1e-9,
                                   err_msg=column)


@pytest.mark.parametrize("block_rows", [10**9, 70])
def test_stage_stores_what_customer_features_builds_on_both_dialects(engine, block_rows, monkeypatch):
    # One block, and blocks of 70 customers (ranges of ids; the last one short): the same rows.
    from analytics import features_stage

    monkeypatch.setattr(features_stage, "BUILD_BLOCK_ROWS", block_rows)
    demo.generate(engine, customers=300, months=15, seed=11, progress=False)
    as_of = latest_activity_month(engine)
    with engine.begin() as conn:
        run_id = conn.execute(insert(refresh_runs).values(started_at=utcnow(), status="running")
                              ).inserted_primary_key[0]
    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=as_of)
    features_stage_for(FEATURE_CUTOFFS)(ctx)
    cutoffs = stored_cutoffs(engine, run_id)
    assert cutoffs == needed_cutoffs(as_of, FEATURE_CUTOFFS) and len(cutoffs) == 3
    rows = 0
    for cutoff in cutoffs:
        computed = customer_features(engine, cutoff, with_status=True)
        assert len(computed) > 100
        _assert_same(read_features(engine, run_id, cutoff, with_status=True), computed)
        rows += len(computed)
        with engine.connect() as conn:
            assert conn.execute(select(customer_feature_sets.c.customers).where(
                customer_feature_sets.c.run_id == run_id, customer_feature_sets.c.cutoff == cutoff)).scalar() \
                == len(computed)
    with engine.connect() as conn:
        sets = conn.execute(select(func.count()).select_from(customer_feature_sets)).scalar()
        long = conn.execute(select(func.count()).select_from(customer_feature_products)).scalar()
    assert sets == 3 and long > 0
    assert ctx.row_counts["customer_features"] == rows
