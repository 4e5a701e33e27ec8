"""AppTest: the Worklist page for each allowed role (relationship manager: their portfolio, every
kind; risk: the risk kinds, bank-wide), in both languages, and a status change made on the page:
saved, recorded in the history and audited; a resolution without a note refused with one message."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from analytics import access, audit, scopes, users
from analytics.refresh import run_refresh
from analytics.store import init_schema, make_engine
from tests.analytics import store_rows
from tests.app.conftest import PASSWORD, login, new_app
from tests.app.pagekit import set_lang, tables, traces


@pytest.fixture
def store(tmp_path):
    """The 3-customer store with two portfolios, refreshed once: each customer has no risk
    assessment on record, so each has one 'assessment expired or expiring' alert."""
    url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET relationship_manager = CASE customer_id WHEN 'C000000001' "
                          "THEN 'rm_li' ELSE 'rm_wang' END"))
    run_refresh(engine)
    users.add_user(engine, "wang", PASSWORD, ["relationship_manager"])
    scopes.set_scope(engine, "wang", portfolios=["rm_wang"])
    users.add_user(engine, "risky", PASSWORD, ["risk"])
    yield url, engine
    engine.dispose()


def _open(monkeypatch, url, username, lang="en"):
    at = login(new_app(monkeypatch, url), username)
    assert not at.exception
    set_lang(at, lang)
    at.switch_page("app_pages/worklist.py").run()
    assert not at.exception, at.exception
    return at


def _list(at):
    frames = tables(at)
    assert frames, "no table shown"
    return frames[0]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_relationship_manager_sees_their_portfolio_masked(monkeypatch, store, lang):
    url, engine = store
    at = _open(monkeypatch, url, "wang", lang)
    rows = _list(at)
    assert sorted(rows["customer_id"]) == ["C000000002", "C000000003"]
    assert set(rows["owner"]) == {"rm_wang"}
    assert not rows["name"].isin(store_rows.CUSTOMERS["name"]).any()
    expected_kind = "风险评估已过期或即将过期" if lang == "zh" else "risk assessment expired or expiring"
    assert set(rows["kind"]) == {expected_kind}
    [bars] = [t for t in traces(at, "bar") if list(t["y"]) == [2]]  # two new alerts in the one run
    assert len(bars["x"]) == 1


def test_risk_sees_the_risk_kinds_bank_wide(monkeypatch, store):
    url, _ = store
    at = _open(monkeypatch, url, "risky")
    rows = _list(at)
    assert sorted(rows["customer_id"]) == ["C000000001", "C000000002", "C000000003"]
    kind_filter = at.multiselect(key="wl_kind")
    assert set(kind_filter.options) >= {"suitability mismatch", "abnormal balance drop"}
    assert not {"birthday (care)", "high churn value at risk"} & set(kind_filter.options)


def _save(at, alert_index: int, status: str, note: str):
    at.selectbox(key="wl_alert").set_value(int(_list(at)["alert_id"].iloc[alert_index]))
    at.selectbox(key="wl_to").set_value(status)
    at.text_area(key="wl_note").input(note)
    next(b for b in at.button if b.label == "Save").click()
    at.run()
    assert not at.exception, at.exception


def test_a_status_change_on_the_page_is_saved_recorded_and_audited(monkeypatch, store):
    url, engine = store
    at = _open(monkeypatch, url, "wang")
    alert_id = int(_list(at)["alert_id"].iloc[0])
    _save(at, 0, "resolved", "")  # no note: refused, nothing changed
    assert any("outcome note is required" in e.value for e in at.error)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM alerts WHERE alert_id = :a"), {"a": alert_id}).scalar() == "new"
    _save(at, 0, "contacted", "called; wants a branch appointment")
    assert any(f"Alert {alert_id}: new → contacted" in s.value for s in at.success)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, outcome_note FROM alerts WHERE alert_id = :a"), {"a": alert_id}).one()
        steps = conn.execute(text("SELECT changed_by, to_status FROM alert_history WHERE alert_id = :a "
                                  "ORDER BY history_id"), {"a": alert_id}).all()
    assert tuple(row) == ("contacted", "called; wants a branch appointment")
    assert [tuple(s) for s in steps] == [("refresh", "new"), ("wang", "contacted")]
    entries = audit.query(engine, event="alert_change")
    assert list(entries["username"]) == ["wang"]


def test_only_the_allowed_roles_have_the_page():
    assert access.PAGE_ACCESS["worklist"] == {"relationship_manager", "risk"}
    for role in access.ROLES:
        assert access.can_view_page([role], "worklist") == (role in ("relationship_manager", "risk"))
