"""AppTest: login, lockout message, per-role navigation, page gating, logout, idle timeout, cookie key."""

import datetime as dt

import pytest

from analytics import access, audit, users
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, ROLE_USERS, login, make_store, nav_pages, new_app

BUILT_PAGES = {"overview", "audit_log", "admin", "data_quality", "customer_360", "segments", "lifecycle", "approvals",
               "cross_sell", "risk", "kpi_wall", "churn", "worklist", "campaigns"}


def test_anonymous_sees_only_the_login_page(monkeypatch, store_url):
    at = new_app(monkeypatch, store_url)
    at.run()
    assert not at.exception
    assert nav_pages(at) == {"login"}
    assert len(at.text_input) == 2
    assert not at.metric


def test_wrong_password_and_unknown_user_get_the_same_message(monkeypatch, store_url):
    messages = []
    for username, password in [("user_marketing", "wrong password!!"), ("nobody_here", "wrong password!!")]:
        at = login(new_app(monkeypatch, store_url), username, password)
        assert nav_pages(at) == {"login"}
        messages.append([e.value for e in at.error])
    assert messages[0] == messages[1] == [[users.WRONG_CREDENTIALS][0]]
    events = audit.query(make_engine(store_url))["event"].tolist()
    assert events.count("login_failed") == 2


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_each_role_gets_exactly_its_pages(monkeypatch, store_url, role):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS[role])
    assert not at.exception
    expected = set(access.pages_for([role])) & BUILT_PAGES
    assert nav_pages(at) == expected
    # A page outside the matrix is not registered, so it cannot be switched to.
    for page in set(access.PAGES) - set(access.pages_for([role])):
        assert page not in nav_pages(at)


def test_user_with_several_roles_gets_the_union(monkeypatch, tmp_path):
    url = make_store(tmp_path, roles={})
    users.add_user(make_engine(url), "multi", PASSWORD, ["risk", "compliance"])
    at = login(new_app(monkeypatch, url), "multi")
    assert nav_pages(at) == set(access.pages_for(["risk", "compliance"])) & BUILT_PAGES


def test_overview_after_login_shows_counts_and_audits_the_view(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["executive"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers on file"] == "3"
    assert metrics["Total AUM"] == "CNY 6,000"
    log = audit.query(make_engine(store_url))
    assert {"login_ok", "page_view"} <= set(log["event"])


def test_lockout_after_repeated_failures(monkeypatch, store_url):
    for _ in range(5):
        login(new_app(monkeypatch, store_url), "user_risk", "not the password")
    at = login(new_app(monkeypatch, store_url), "user_risk", PASSWORD)
    assert nav_pages(at) == {"login"}
    assert [e.value for e in at.error] == [users.WRONG_CREDENTIALS]
    assert "login_locked" in set(audit.query(make_engine(store_url))["event"])


def test_logout_ends_the_server_session(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["admin"])
    session_id = at.session_state["ci_session_id"]
    assert users.session_user(make_engine(store_url), session_id) == "user_admin"
    at.sidebar.button[0].click()
    at.run()
    assert nav_pages(at) == {"login"}
    assert users.session_user(make_engine(store_url), session_id) is None


def test_idle_session_must_log_in_again(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
    assert "overview" in nav_pages(at)
    engine = make_engine(store_url)
    # Age the session past the idle limit, as if the user had walked away.
    from sqlalchemy import update

    from analytics.schema import user_sessions
    with engine.begin() as conn:
        conn.execute(update(user_sessions).values(last_seen_at=dt.datetime(2000, 1, 1)))
    at.run()
    assert nav_pages(at) == {"login"}
    assert any("log in again" in e.value for e in at.error)
    assert "timeout" in set(audit.query(engine)["event"])


@pytest.mark.parametrize("key", ["", "some_key", "too-short-key"])
def test_bad_cookie_key_refuses_to_start(monkeypatch, store_url, key):
    monkeypatch.setenv("AUTH_COOKIE_KEY", key)
    at = new_app(monkeypatch, store_url)
    at.run()
    assert not at.exception
    assert any("AUTH_COOKIE_KEY" in e.value for e in at.error)
    assert len(at.text_input) == 0  # no login form: the app does not start


def test_a_page_view_is_audited_once_per_visit_not_per_rerun(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["admin"])
    at.run()
    at.run()
    views = audit.query(make_engine(store_url), event="page_view")
    assert len(views) == 1
    at.switch_page("app_pages/admin.py").run()
    at.switch_page("app_pages/overview.py").run()
    assert len(audit.query(make_engine(store_url), event="page_view")) == 3


def test_a_broken_audit_chain_does_not_lock_everyone_out(monkeypatch, tmp_path, caplog):
    """With the chain broken (here: the checkpoint file lost while the log has entries), logins still
    work, so the officers who must investigate can; the alarm stays raised and the server log names
    each unrecorded event. An export is still never done unrecorded (audit.append refuses it)."""
    import logging
    import os

    checkpoint = tmp_path / "cp.json"
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(checkpoint))
    url = make_store(tmp_path)
    engine = make_engine(url)
    audit.append(engine, "refresh_start", run_id=1)
    os.remove(checkpoint)
    assert not audit.verify(engine).ok
    caplog.set_level(logging.ERROR)
    at = login(new_app(monkeypatch, url), ROLE_USERS["marketing"])
    assert not at.exception and "overview" in nav_pages(at), "the login was refused"
    assert "event login_ok not recorded" in caplog.text
    assert audit.chain_alarm(engine) is not None
    with pytest.raises(audit.AuditChainBroken):
        audit.append_or_pass(engine, "export", username=ROLE_USERS["marketing"])
