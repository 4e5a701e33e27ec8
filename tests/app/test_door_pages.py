"""The one door, through the pages: scoped users see only their customers; aggregate-only roles see
no small cell; contact lists leave out customers without consent; Customer 360 hides other scopes.

On the session's demo store (3,000 customers). A relationship manager and a branch-scoped marketing
user are created with scopes from the store; every customer id a page shows or offers for export
must be theirs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from analytics import audit, scopes, users
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, capture_exports, login, new_app

ROOT = Path(__file__).resolve().parents[2]


def _busiest(engine, column: str) -> str:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {column} FROM customers WHERE {column} IS NOT NULL GROUP BY {column} "
                                 "ORDER BY COUNT(*) DESC, 1 LIMIT 1")).scalar()


def _scoped_user(engine, username: str, role: str, **scope) -> None:
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    scopes.set_scope(engine, username, **scope)


def _customer_ids(at) -> set[str]:
    ids = set()
    for frame in at.dataframe:
        value = frame.value
        if isinstance(value, pd.DataFrame) and "customer_id" in value.columns:
            ids |= set(value["customer_id"].astype(str))
    return ids


@pytest.mark.parametrize("case", ["relationship_manager", "scoped_marketing"])
def test_a_scoped_user_sees_only_their_customers_everywhere(monkeypatch, demo_store_url, case):
    engine = make_engine(demo_store_url)
    if case == "relationship_manager":
        portfolio = _busiest(engine, "relationship_manager")
        _scoped_user(engine, "door_rm", "relationship_manager", portfolios=[portfolio])
        username, where, params = "door_rm", "relationship_manager = :v", {"v": portfolio}
    else:
        branch = _busiest(engine, "branch_id")
        _scoped_user(engine, "door_mkt", "marketing", branches=[branch])
        username, where, params = "door_mkt", "branch_id = :v", {"v": branch}
    with engine.connect() as conn:
        mine = set(conn.execute(text(f"SELECT customer_id FROM customers WHERE {where}"), params).scalars())
        outsider = conn.execute(text(f"SELECT MIN(customer_id) FROM customers WHERE NOT ({where})"), params).scalar()
    exported = capture_exports(monkeypatch)
    at = login(new_app(monkeypatch, demo_store_url), username)
    pages = [info["script_path"] for info in at._registered_pages.values() if info.get("script_path")]
    seen = set()
    for script in pages:
        at.switch_page(str(Path(script).relative_to(ROOT))).run()
        assert not at.exception, script
        if script.endswith("segments.py"):
            at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
        if not script.endswith("customer_360.py"):
            assert any("scope" in i.value.lower() for i in at.info), f"{script} does not say it is scoped"
        seen |= _customer_ids(at)
    assert seen, "no customer list was shown"
    assert seen <= mine, f"{case} saw customers outside the scope: {sorted(seen - mine)[:3]}"
    for frame in exported:
        if "customer_id" in frame.columns:
            assert set(frame["customer_id"].astype(str)) <= mine
    # Customer 360: an outsider reads "not found", like a missing customer, and is audited.
    at.switch_page("app_pages/customer_360.py").run()
    at.text_input[0].input(outsider)
    at.button[0].click()
    at.run()
    outside = [w.value for w in at.warning]
    at.text_input[0].input("C999999999")  # nobody's id
    at.button[0].click()
    at.run()
    assert not at.dataframe and outside == [w.value for w in at.warning] == ["No customer matches."]
    denied = audit.query(engine, user=username, event="access_denied")
    assert any(outsider in (t or "") for t in denied["target"])


def test_an_executive_sees_no_small_cohort_or_churn_rate(monkeypatch, demo_store_url):
    """Cohorts and churn-rate values of fewer than MIN_CELL_CUSTOMERS customers are left out of the
    Lifecycle and Churn charts for an aggregate-only role."""
    import json
    import re

    engine = make_engine(demo_store_url)
    if users.get_user(engine, "door_cells") is None:
        users.add_user(engine, "door_cells", PASSWORD, ["executive"])
    with engine.connect() as conn:
        cohort_sizes = sorted(set(conn.execute(text(
            "SELECT cohort_size FROM cohort_retention WHERE run_id = (SELECT run_id FROM current_run)")).scalars()))
        rate_sizes = sorted(conn.execute(text(
            "SELECT customers FROM churn_rates WHERE run_id = (SELECT run_id FROM current_run) "
            "AND dimension = 'rfm_segment' AND customers > 0")).scalars())
    # A threshold between the store's own cohort sizes, so some cohorts are shown and some are not.
    k = cohort_sizes[len(cohort_sizes) // 2]
    assert cohort_sizes[0] < k
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", str(k))
    at = login(new_app(monkeypatch, demo_store_url), "door_cells")
    at.switch_page("app_pages/lifecycle.py").run()
    assert not at.exception
    heatmaps = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if any(t.get("type") == "heatmap" for t in json.loads(c.proto.spec)["data"])]
    sizes = [int(m.replace(",", "")) for fig in heatmaps for trace in fig["data"] for label in trace.get("y", [])
             for m in re.findall(r"\(([\d,]+)\)", str(label))]
    assert sizes and min(sizes) >= k
    at.switch_page("app_pages/churn.py").run()
    assert not at.exception
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    labels = [x for trace in bars[0]["data"] for x in trace.get("x", []) or []]
    assert len(labels) == sum(1 for n in rate_sizes if n >= k)


def test_a_scoped_users_churn_and_cross_sell_headlines_are_their_scopes(monkeypatch, demo_store_url):
    """The headline figures above the lists are the scope's own, not the bank's: the same numbers as
    the readers give for the scope, and different from the bank's."""
    from analytics import churn, cross_sell, formatting
    from analytics.access import Scope, Viewer
    from analytics.runs import current_run_id, get_run_metrics

    engine = make_engine(demo_store_url)
    branch = _busiest(engine, "branch_id")
    _scoped_user(engine, "door_mkt", "marketing", branches=[branch])
    run_id = current_run_id(engine)
    viewer = Viewer("door_mkt", ("marketing",), Scope(branches={branch}))
    mine = churn.scope_churn(engine, run_id, viewer=viewer)
    offers, _ = cross_sell.scope_offers(engine, run_id, viewer=viewer)
    bank = get_run_metrics(engine, run_id)
    assert mine["customers_active"] < bank["churn.customers_active"]

    at = login(new_app(monkeypatch, demo_store_url), "door_mkt")
    at.switch_page("app_pages/churn.py").run(timeout=60)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Expected churners"] == formatting.count(mine["expected_churners"], "en")
    assert shown["Value at risk"] == formatting.amount(mine["value_at_risk_total"], "en")
    assert shown["Expected churners"] != formatting.count(bank["churn.expected_churners"], "en")
    at.switch_page("app_pages/cross_sell.py").run(timeout=60)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Customers scored"] == formatting.count(offers["customers_scored"], "en")
    assert shown["Customers scored"] != formatting.count(bank["cross_sell.customers_scored"], "en")
    assert any("your customers" in c.value for c in at.caption)
