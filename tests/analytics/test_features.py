"""Customer features: hand-computed values, point-in-time safety (the future never leaks in), and
the documented conventions, on SQLite and PostgreSQL."""

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from analytics.features import (
    FEATURE_COLUMNS,
    PCT_CAP,
    FeatureError,
    add_months,
    customer_features,
    month_end,
    product_columns,
    relative_change,
)
from analytics.schema import branches, contacts, customer_monthly, customers, holdings, products
from analytics.store import bulk_insert
from tests.analytics import store_rows

AS_OF = date(2026, 10, 1)


def _monthly(customer_id, rows):
    """rows: (month, aum, txn_count) -> customer_monthly rows with simple other columns."""
    return [{"customer_id": customer_id, "month": m, "aum": aum, "deposit_balance": aum, "loan_balance": 0.0,
             "txn_count": txns, "txn_amount": 10.0 * txns, "digital_logins": txns} for m, aum, txns in rows]


def _customer(customer_id, open_date, **extra):
    row = {"customer_id": customer_id, "branch_id": "BR001", "open_date": open_date, "status": "active",
           "marketing_consent": True, "birth_date": date(1990, 11, 1), "gender": "F"}
    return row | extra


def fill_detailed(engine, *, future: bool = False) -> None:
    """A store whose features at 2026-10 are worked out by hand in the tests below.

    ``future=True`` adds rows dated after October 2026 (activity, holdings, contacts, a customer
    opened later) and changes nothing before it: the features at 2026-10 must not move.
    """
    bulk_insert(engine, branches, store_rows.BRANCHES)
    bulk_insert(engine, products, store_rows.PRODUCTS)
    people = [
        # D1: 13 months of history, AUM growing 100 a month from 1000 (2025-10) to 2200 (2026-10).
        _customer("D1", date(2020, 1, 15), birth_date=date(1990, 10, 31), id_expiry_date=date(2026, 11, 20),
                  risk_assessed_at=date(2026, 1, 1), risk_tolerance="C3"),
        # D2: last transaction in 2026-06 (4 months before), AUM halved in the last quarter.
        _customer("D2", date(2025, 12, 10), birth_date=date(1990, 11, 1), id_expiry_date=date(2026, 10, 1)),
        # D3: opened in the as-of month, no transaction yet.
        _customer("D3", date(2026, 10, 20), birth_date=None),
    ]
    if future:
        people.append(_customer("D4", date(2026, 11, 3)))
    bulk_insert(engine, customers, pd.DataFrame(people))
    months = [add_months(date(2025, 10, 1), k) for k in range(13)]  # 2025-10 .. 2026-10
    monthly = _monthly("D1", [(m, 1000.0 + 100 * k, 2) for k, m in enumerate(months)])
    d2 = [(add_months(date(2025, 12, 1), k), 4000.0, 5 if k <= 6 else 0) for k in range(8)]  # 2025-12 .. 2026-07
    d2 += [(date(2026, 8, 1), 2000.0, 0), (date(2026, 9, 1), 2000.0, 0), (date(2026, 10, 1), 2000.0, 0)]
    monthly += _monthly("D2", d2)
    monthly += _monthly("D3", [(date(2026, 10, 1), 500.0, 0)])
    if future:
        monthly += _monthly("D1", [(date(2026, 11, 1), 99999.0, 50), (date(2026, 12, 1), 0.0, 0)])
        monthly += _monthly("D2", [(date(2026, 11, 1), 0.0, 9)])
        monthly += _monthly("D4", [(date(2026, 11, 1), 7.0, 1)])
    bulk_insert(engine, customer_monthly, pd.DataFrame(monthly))
    hold = [
        {"holding_id": 1, "customer_id": "D1", "product_id": "P01", "opened_on": date(2020, 1, 15),
         "closed_on": None, "balance": 2200.0},
        {"holding_id": 2, "customer_id": "D1", "product_id": "P02", "opened_on": date(2021, 5, 1),
         "closed_on": date(2026, 10, 31), "balance": 0.0},  # closed on the as-of month's last day
        {"holding_id": 3, "customer_id": "D2", "product_id": "P02", "opened_on": date(2025, 12, 10),
         "closed_on": date(2026, 11, 15), "balance": 0.0},  # still open at the end of October
    ]
    if future:
        hold.append({"holding_id": 4, "customer_id": "D1", "product_id": "P02", "opened_on": date(2026, 11, 1),
                     "closed_on": None, "balance": 1.0})
    bulk_insert(engine, holdings, pd.DataFrame(hold))
    touch = [
        ("D1", datetime(2026, 8, 1, 0, 0), "complaint", False),  # first instant of the 3-month window
        ("D1", datetime(2026, 7, 31, 23, 59), "complaint", True),  # just before it: 6-month window only
        ("D1", datetime(2025, 11, 1, 9, 0), "complaint", True),  # 12-month window only
        ("D1", datetime(2025, 10, 31, 9, 0), "complaint", True),  # outside every window
        ("D2", datetime(2026, 10, 31, 23, 0), "marketing", None),
        ("D2", datetime(2026, 9, 2, 10, 0), "service", True),
    ]
    if future:
        touch += [("D1", datetime(2026, 11, 1, 0, 0), "complaint", False),
                  ("D2", datetime(2027, 1, 1, 0, 0), "complaint", False)]
    bulk_insert(engine, contacts, pd.DataFrame([
        {"contact_id": i, "customer_id": c, "contacted_at": t, "channel": "phone", "kind": k, "resolved": r}
        for i, (c, t, k, r) in enumerate(touch, start=1)]))


@pytest.fixture
def detailed(engine):
    fill_detailed(engine)
    return engine


def test_hand_computed_features(detailed):
    f = customer_features(detailed, AS_OF)
    assert list(f.index) == ["D1", "D2", "D3"]
    d1, d2, d3 = f.loc["D1"], f.loc["D2"], f.loc["D3"]
    # Balances: D1 is 2200 now, 1900 three months ago, 1600 six, 1000 twelve.
    assert d1["aum_latest"] == 2200.0
    assert d1["aum_change_3m"] == 300.0
    assert d1["aum_change_pct_3m"] == pytest.approx(300 / 1900)
    assert d1["aum_change_pct_6m"] == pytest.approx(600 / 1600)
    assert d1["aum_change_12m"] == 1200.0
    assert d1["aum_avg_3m"] == pytest.approx((2000 + 2100 + 2200) / 3)
    assert d1["aum_avg_12m"] == pytest.approx(sum(1100 + 100 * k for k in range(12)) / 12)
    assert d1["aum_trend"] == pytest.approx((2000 + 2100 + 2200) / (1700 + 1800 + 1900) - 1)
    assert d1["txn_count_3m"] == 6 and d1["txn_count_12m"] == 24 and d1["txn_amount_12m"] == 240
    assert d1["txn_count_trend"] == 0.0
    assert d1["active_months_12m"] == 12 and d1["months_since_last_txn"] == 0
    # D2: 4000 until July, then 2000; last transaction in 2026-06; opened 2025-12.
    assert d2["aum_trend"] == pytest.approx(6000 / 12000 - 1)
    assert d2["aum_change_pct_12m"] == PCT_CAP  # no balance 12 months ago: capped, not infinite
    assert d2["months_since_last_txn"] == 4
    assert d2["txn_count_3m"] == 0 and d2["txn_count_trend"] == -1.0
    assert d2["active_months_12m"] == 7
    assert d2["tenure_months"] == 10
    # D3 opened this month and never transacted: recency counts from opening.
    assert d3["tenure_months"] == 0 and d3["months_since_last_txn"] == 0
    assert np.isnan(d3["age"])
    # Age on 2026-10-31: D1 turned 36 that day, D2 is still 35.
    assert d1["age"] == 36 and d2["age"] == 35
    assert d1["days_to_id_expiry"] == 20 and d2["days_to_id_expiry"] == -30
    assert d1["risk_assessment_age_days"] == (date(2026, 10, 31) - date(2026, 1, 1)).days
    assert np.isnan(d2["risk_assessment_age_days"])
    # Holdings open at the end of October: D1's mortgage closed on 10-31 is gone; D2's is open.
    assert d1["open_products"] == 1 and d1["products_demand_deposit"] == 1 and d1["products_mortgage"] == 0
    assert d2["open_products"] == 1 and d2["products_mortgage"] == 1 and d2["open_liability_products"] == 1
    assert d3["open_products"] == 0
    # Contacts: windows start on the first day of the month, 2 / 5 / 11 months before October.
    assert (d1["complaints_3m"], d1["complaints_6m"], d1["complaints_12m"]) == (1, 2, 3)
    assert d1["unresolved_complaints_6m"] == 1
    assert d2["contacts_6m"] == 2 and d2["marketing_contacts_6m"] == 1 and d2["complaints_12m"] == 0


def test_features_never_read_the_future(engine):
    fill_detailed(engine)
    before = customer_features(engine, AS_OF, with_status=True)
    with engine.begin() as conn:
        for table in (contacts, holdings, customer_monthly, customers, products, branches):
            conn.execute(table.delete())
    fill_detailed(engine, future=True)
    after = customer_features(engine, AS_OF, with_status=True)
    pd.testing.assert_frame_equal(before, after)


def test_every_documented_column_is_present_and_numeric_columns_are_floats(detailed):
    f = customer_features(detailed, "2026-10-15")
    assert set(FEATURE_COLUMNS) <= set(f.columns)
    assert product_columns(f) == ["products_demand_deposit", "products_mortgage"]
    assert "status" not in f.columns
    numeric = [c for c in f.columns if c not in {"gender", "branch_id", "customer_type", "income_band",
                                                 "onboarding_channel", "risk_tolerance", "credit_grade",
                                                 "marketing_consent"}]
    assert all(pd.api.types.is_float_dtype(f[c]) for c in numeric)


def test_store_rows_features(engine):
    store_rows.fill(engine)
    f = customer_features(engine, AS_OF, with_status=True)
    assert f.loc["C000000001", "aum_latest"] == pytest.approx(1000.5)
    assert f.loc["C000000001", "loan_balance_latest"] == 250000.0
    assert f.loc["C000000001", "tenure_months"] == 11 * 12 + 7
    assert f.loc["C000000001", "age"] == 76
    assert f.loc["C000000002", "open_products"] == 0  # its only holding closed in 2025
    assert f.loc["C000000003", "tenure_months"] == 2
    assert f["status"].tolist() == ["active", "dormant", "active"]


def test_customers_opened_after_the_month_are_left_out(engine):
    store_rows.fill(engine)
    assert list(customer_features(engine, date(2026, 7, 1)).index) == ["C000000001", "C000000002"]


@pytest.mark.parametrize(("now", "before", "expected"), [
    (110.0, 100.0, 0.1),
    (50.0, 100.0, -0.5),
    (0.0, 100.0, -1.0),
    (0.0, 0.0, 0.0),
    (5.0, 0.0, PCT_CAP),
    (5000.0, 1.0, PCT_CAP),  # +499,900 % is clipped
    (-10.0, 100.0, -1.0),
])
def test_relative_change(now, before, expected):
    assert relative_change([now], [before])[0] == pytest.approx(expected)


@pytest.mark.parametrize(("month", "k", "expected"), [
    (date(2026, 10, 1), -12, date(2025, 10, 1)),
    (date(2026, 1, 1), -1, date(2025, 12, 1)),
    (date(2026, 12, 1), 1, date(2027, 1, 1)),
])
def test_add_months(month, k, expected):
    assert add_months(month, k) == expected


def test_month_end():
    assert month_end(date(2024, 2, 1)) == date(2024, 2, 29)
    assert month_end(date(2026, 12, 1)) == date(2026, 12, 31)


def test_short_look_back_is_refused(detailed):
    with pytest.raises(FeatureError, match="at least 12"):
        customer_features(detailed, AS_OF, months_back=6)


def test_longer_look_back_finds_older_transactions(engine):
    fill_detailed(engine)
    # Move D2's activity back: its last transaction becomes 14 months before the as-of month.
    later = date(2027, 8, 1)
    f12 = customer_features(engine, later)
    f24 = customer_features(engine, later, months_back=24)
    assert f12.loc["D2", "months_since_last_txn"] == 13  # beyond the 12-month look-back
    assert f24.loc["D2", "months_since_last_txn"] == 14


def test_lifecycle_inputs_equal_the_full_features(detailed):
    from analytics.features import lifecycle_inputs

    for month in (AS_OF, date(2026, 7, 1), date(2027, 3, 1)):
        full = customer_features(detailed, month)[["tenure_months", "months_since_last_txn", "aum_trend"]]
        pd.testing.assert_frame_equal(lifecycle_inputs(detailed, month), full)
