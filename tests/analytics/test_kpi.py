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


def test_a_scoped_wall_shows_its_own_customers(filled):
    from analytics.access import Scope, Viewer

    run_id = run_refresh(filled)
    br1 = Viewer("e", ("executive",), Scope(branches={"BR001"}))
    s = kpi.monthly_series(filled, date(2026, 10, 1), viewer=br1).set_index("month")
    oct_ = s.loc[date(2026, 10, 1)]
    assert oct_["aum"] == pytest.approx(6000.5 - 0.0) and oct_["churned"] == 0  # C2 (BR002) left, not BR001's
    assert s.loc[date(2026, 9, 1), "aum"] == pytest.approx(900.0)  # C1 only; C2's 10.0 is BR002's
    # Bank-wide cards for a bank-wide viewer equal the stored ones.
    bank = kpi.cards(filled, run_id, Viewer("r", ("risk",)))
    assert bank["aum"].value == kpi.cards(filled, run_id)["aum"].value
    # An aggregate-only viewer sees no count under MIN_CELL_CUSTOMERS: the store has 3 customers.
    walls = kpi.cards(filled, run_id, br1)  # two customers: no figure at all
    assert walls and all(card.value is None and card.suppressed and not card.spark for card in walls.values())
    bank_wall = kpi.cards(filled, run_id, Viewer("d", ("display",)))  # three customers bank-wide
    assert bank_wall["aum"].value is None and bank_wall["customers"].suppressed
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIN_CELL_CUSTOMERS", "2")  # the bank has 2 customers a month: its wall is shown,
        shown = kpi.cards(filled, run_id, Viewer("d", ("display",)))
    assert shown["aum"].value == pytest.approx(6000.5)
    assert shown["churned"].value is None and shown["churned"].suppressed  # but not 1 churned customer
    nobody = kpi.cards(filled, run_id, Viewer("e", ("executive",), Scope()))
    assert all(card.value in (None, 0) for card in nobody.values())
