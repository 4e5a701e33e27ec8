"""Lifecycle stages, stage retention, margin CLV and cohort retention, against hand-computed answers."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analytics.errors import ConfigError
from analytics.lifecycle import (
    DEFAULT_STAGE_RETENTION,
    LIFECYCLE_STAGES,
    clv_discount_rate,
    clv_horizon_years,
    cohort_retention,
    customer_annual_margin,
    lifecycle_stage,
    load_cohort_retention,
    margin_clv,
    observed_stage_retention,
    retention_matrix,
    stage_retention,
    value_bands,
)
from analytics.schema import branches, customer_monthly, customers
from analytics.store import bulk_insert
from tests.analytics import store_rows

# ---------------------------------------------------------------------------------------------
# Lifecycle stage: one row a case
# ---------------------------------------------------------------------------------------------

STAGE_CASES = [
    # status,   tenure, months inactive, AUM trend, expected
    ("closed", 100, 0, 0.5, "churned"),
    ("dormant", 100, 0, 0.0, "dormant"),
    ("active", 100, 6, 0.0, "dormant"),  # exactly 6 months without a transaction
    ("active", 3, 6, 0.0, "dormant"),  # never transacted in six months: dormant before new
    ("active", 6, 5, 0.0, "new"),
    ("active", 0, 0, 10.0, "new"),
    ("active", 7, 0, -0.2, "declining"),  # -20 % exactly
    ("active", 100, 0, -0.5, "declining"),
    ("active", 7, 0, -0.19, "growing"),  # young relationship, not declining
    ("active", 36, 0, 0.0, "growing"),
    ("active", 37, 0, 0.0, "mature"),
    ("active", 37, 0, 0.2, "growing"),  # +20 % exactly
    ("active", 200, 5, 0.19, "mature"),
    (None, 200, 0, np.nan, "mature"),  # unknown status, trend missing counts as flat
]


@pytest.mark.parametrize(("status", "tenure", "inactive", "trend", "expected"), STAGE_CASES)
def test_lifecycle_stage_rules(status, tenure, inactive, trend, expected):
    frame = pd.DataFrame({"status": [status], "tenure_months": [tenure], "months_since_last_txn": [inactive],
                          "aum_trend": [trend]}, index=["c"])
    assert lifecycle_stage(frame).iloc[0] == expected


def test_without_status_only_activity_counts():
    frame = pd.DataFrame({"tenure_months": [100.0, 100.0], "months_since_last_txn": [0.0, 8.0],
                          "aum_trend": [0.0, 0.0]}, index=["a", "b"])
    stages = lifecycle_stage(frame)
    assert stages.tolist() == ["mature", "dormant"]
    assert list(stages.cat.categories) == list(LIFECYCLE_STAGES)


# ---------------------------------------------------------------------------------------------
# Margin CLV
# ---------------------------------------------------------------------------------------------

def test_margin_clv_known_answer():
    # Margin 1,000 a year, retention 0.9, discount 10 %, 3 years.
    expected = sum(1000 * 0.9 ** t / 1.1 ** t for t in range(1, 4))
    assert margin_clv([1000.0], [0.9], discount_rate=0.10, years=3)[0] == pytest.approx(expected)
    # 818.18 + 669.42 + 547.71 (q = 0.9 / 1.1 = 0.8182 per year)
    assert expected == pytest.approx(2035.312, abs=1e-3)


@pytest.mark.parametrize(("years", "retention", "rate", "expected"), [
    (1, 1.0, 0.0, 1000.0),
    (5, 1.0, 0.0, 5000.0),
    (1, 0.5, 0.0, 500.0),
    (3, 0.0, 0.08, 0.0),
    (5, 0.9, 0.08, sum(1000 * (0.9 / 1.08) ** t for t in range(1, 6))),
])
def test_margin_clv_table(years, retention, rate, expected):
    assert margin_clv(np.array([1000.0]), retention, discount_rate=rate, years=years)[0] == pytest.approx(expected)


def test_clv_grows_with_the_horizon_and_is_never_negative_for_positive_margins():
    rng = np.random.default_rng(0)
    margin = rng.lognormal(5, 2, 1000)
    retention = rng.random(1000)
    one, three, five = (margin_clv(margin, retention, discount_rate=0.08, years=y) for y in (1, 3, 5))
    assert (one >= 0).all() and (one <= three).all() and (three <= five).all()
    assert (five <= margin * 5).all()


def test_clv_settings(monkeypatch):
    assert clv_discount_rate() == 0.08 and clv_horizon_years() == 3
    monkeypatch.setenv("CLV_HORIZON_YEARS", "4")
    with pytest.raises(ConfigError, match="CLV_HORIZON_YEARS"):
        clv_horizon_years()
    monkeypatch.setenv("CLV_DISCOUNT_RATE", "1.5")
    with pytest.raises(ConfigError, match="CLV_DISCOUNT_RATE"):
        clv_discount_rate()


def test_annual_margin_of_the_tiny_store(engine):
    store_rows.fill(engine)
    margin = customer_annual_margin(engine)
    # C1: demand deposit 1,000.50 at 1.5 % plus mortgage 250,000 at 1.2 %; C2's only holding is closed.
    assert margin.to_dict() == pytest.approx({"C000000001": 1000.5 * 0.015 + 250000 * 0.012})


# ---------------------------------------------------------------------------------------------
# Stage retention
# ---------------------------------------------------------------------------------------------

def test_stage_retention_by_hand():
    then = pd.Series(["mature"] * 40 + ["declining"] * 30 + ["new"] * 5 + ["churned"] * 31,
                     index=[f"c{i}" for i in range(106)])
    retained = pd.Series(True, index=then.index)
    retained.iloc[36:40] = False  # 36 of 40 mature customers stayed
    retained.iloc[40:55] = False  # 15 of 30 declining customers stayed
    table = stage_retention(then, retained, months=12)
    assert table.loc["mature", "annual_retention"] == pytest.approx(0.9)
    assert table.loc["declining", "annual_retention"] == pytest.approx(0.5)
    assert table.loc["new", "source"] == "default"  # 5 customers: too few to trust
    assert table.loc["new", "annual_retention"] == DEFAULT_STAGE_RETENTION["new"]
    assert table.loc["churned", "annual_retention"] == 0.0
    assert table.loc["growing", "customers"] == 0 and table.loc["growing", "source"] == "default"
    # Half a year: 0.9 kept over 6 months is 0.81 a year.
    half = stage_retention(then, retained, months=6)
    assert half.loc["mature", "annual_retention"] == pytest.approx(0.81)


def test_customers_missing_now_count_as_lost():
    then = pd.Series(["mature"] * 30, index=[f"c{i}" for i in range(30)])
    retained = pd.Series(True, index=[f"c{i}" for i in range(15)])
    assert stage_retention(then, retained).loc["mature", "annual_retention"] == pytest.approx(0.5)


def test_short_history_falls_back_to_defaults(engine):
    store_rows.fill(engine)
    stages = pd.Series(["mature", "dormant", "new"], index=["C000000001", "C000000002", "C000000003"])
    table = observed_stage_retention(engine, date(2026, 10, 1), stages)
    assert (table["source"].drop("churned") == "default").all()
    assert table["annual_retention"].to_dict() == DEFAULT_STAGE_RETENTION


# ---------------------------------------------------------------------------------------------
# Cohort retention
# ---------------------------------------------------------------------------------------------

COHORT_CUSTOMERS = pd.DataFrame({
    "customer_id": ["a", "b", "c", "d", "e", "old"],
    "open_date": [date(2026, 1, 5), date(2026, 1, 20), date(2026, 1, 31), date(2026, 2, 10), date(2026, 2, 11),
                  date(2020, 1, 1)],
})
COHORT_ACTIVITY = pd.DataFrame(
    [("a", "2026-01-01", 2), ("b", "2026-01-01", 1), ("c", "2026-01-01", 0), ("old", "2026-01-01", 5),
     ("a", "2026-02-01", 1), ("b", "2026-02-01", 0), ("c", "2026-02-01", 3), ("d", "2026-02-01", 1),
     ("e", "2026-02-01", 1), ("a", "2026-03-01", 0), ("b", "2026-03-01", 0), ("c", "2026-03-01", 4),
     ("d", "2026-03-01", 0), ("e", "2026-03-01", 2), ("old", "2026-03-01", 1)],
    columns=["customer_id", "month", "txn_count"],
)
# Worked by hand: January cohort {a, b, c} active 2/3, 2/3, 1/3; February cohort {d, e} 2/2, 1/2.
# The 2020 customer opened before the activity data starts: no cohort.
COHORT_EXPECTED = pd.DataFrame(
    {0: [2 / 3, 1.0], 1: [2 / 3, 0.5], 2: [1 / 3, np.nan]},
    index=pd.DatetimeIndex(["2026-01-01", "2026-02-01"], name="cohort_month"),
)


def test_cohort_matrix_of_a_tiny_frame():
    cohorts = cohort_retention(COHORT_CUSTOMERS, COHORT_ACTIVITY)
    matrix = retention_matrix(cohorts)
    matrix.columns.name = None
    pd.testing.assert_frame_equal(matrix, COHORT_EXPECTED, check_freq=False)
    jan = cohorts[cohorts["cohort_month"] == "2026-01-01"]
    assert jan["cohort_size"].tolist() == [3, 3, 3]
    assert jan["active_customers"].tolist() == [2, 2, 1]


def test_cohorts_computed_in_the_database_match(engine):
    bulk_insert(engine, branches, store_rows.BRANCHES)
    bulk_insert(engine, customers, COHORT_CUSTOMERS.assign(branch_id="BR001", status="active",
                                                           marketing_consent=True))
    activity = COHORT_ACTIVITY.assign(month=pd.to_datetime(COHORT_ACTIVITY["month"]).dt.date, aum=0.0,
                                      deposit_balance=0.0, loan_balance=0.0, txn_amount=0.0, digital_logins=0)
    bulk_insert(engine, customer_monthly, activity)
    in_db = load_cohort_retention(engine, date(2026, 3, 1))
    in_memory = cohort_retention(COHORT_CUSTOMERS, COHORT_ACTIVITY)
    pd.testing.assert_frame_equal(in_db, in_memory, check_dtype=False)
    # An as-of month before the last one ignores later activity.
    feb = retention_matrix(load_cohort_retention(engine, date(2026, 2, 1)))
    assert feb.shape == (2, 2) and feb.loc["2026-01-01", 1] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------
# Value bands for the CLV histogram
# ---------------------------------------------------------------------------------------------

def test_value_bands():
    bands = value_bands([0, 5, 10, 15, 999, 1000, 2000, -3])
    counts = dict(zip(bands["value"], bands["customers"], strict=True))
    assert counts == {"< 0": 1, "0–10": 2, "10–20": 2, "20–50": 0, "50–100": 0, "100–200": 0, "200–500": 0,
                      "500–1k": 1, "1k–2k": 1, "2k–5k": 1}
    assert bands["customers"].sum() == 8
    assert bands["sort_order"].is_monotonic_increasing
