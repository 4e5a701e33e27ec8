"""KPI wall figures: monthly series by hand on a tiny store, cards with change and sparklines."""

from datetime import date

import pytest
from sqlalchemy import text

from analytics import kpi
from analytics.refresh import run_refresh
from tests.analytics import store_rows


@pytest.fixture
def filled(engine):
    store_rows.fill(engine)
    with engine.begin() as conn:
        # C2 leaves in October: balance to zero and no transaction; C3 opens in October.
        conn.execute(text("UPDATE customer_monthly SET txn_count = 0 WHERE customer_id = 'C000000002' "
                          "AND month = :m"), {"m": date(2026, 10, 1)})
        conn.execute(text("UPDATE customers SET open_date = :d WHERE customer_id = 'C000000003'"),
                     {"d": date(2026, 10, 15)})
    return engine


def test_monthly_series_by_hand(filled):
    s = kpi.monthly_series(filled, date(2026, 10, 1)).set_index("month")
    sep, oct_ = s.loc[date(2026, 9, 1)], s.loc[date(2026, 10, 1)]
    assert (sep["customers"], oct_["customers"]) == (2, 2)  # C1, C2 | C1, C3
    assert (sep["active"], oct_["active"]) == (2, 2)
    assert oct_["churned"] == 1 and sep["churned"] == 0
    assert oct_["new"] == 1
    assert oct_["aum"] == pytest.approx(6000.5) and sep["aum"] == pytest.approx(910.0)
    assert oct_["loans"] == pytest.approx(250000.0)


def test_cards_after_refresh(filled):
    run_id = run_refresh(filled)
    cards = kpi.cards(filled, run_id)
    aum = cards["aum"]
    assert aum.value == pytest.approx(6000.5) and aum.previous == pytest.approx(910.0)
    assert aum.change == pytest.approx(5090.5) and len(aum.spark) == 2
    assert cards["churned"].value == 1
    assert 0 <= cards["dq_overall"].value <= 1
    second = run_refresh(filled)
    again = kpi.cards(filled, second)["dq_overall"]
    assert again.previous == pytest.approx(cards["dq_overall"].value) and len(again.spark) == 2
