"""The login sequence and the session checks of analytics.users, without Streamlit: password check,
server-side session and audit in one call; cookie re-authentication only against a live session;
the check every rerun and every KPI-wall tick makes (idle clock, revocation, role change, kiosk)."""

from __future__ import annotations

import datetime as dt

import pytest

from analytics import audit, users

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _keys(monkeypatch, tmp_path):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    monkeypatch.setenv("AUDIT_HMAC_KEY", "a" * 40)
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    for name in ("LOGIN_MAX_FAILED_ATTEMPTS", "LOGIN_LOCKOUT_MINUTES", "SESSION_IDLE_MINUTES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def engine(request):
    """A store on SQLite and on PostgreSQL (tests/conftest.py), with a marketing and a display user."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    eng = request.getfixturevalue(name)
    users.add_user(eng, "alice", PASSWORD, ["marketing"], display_name="Alice Wang", now=T0)
    users.add_user(eng, "wall", PASSWORD, ["display"], now=T0)
    return eng


def pytest_generate_tests(metafunc):
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


def events(engine) -> list[str]:
    return audit.query(engine)["event"].tolist()[::-1]  # oldest first


def test_log_in_starts_a_session_and_audits_it(engine):
    login = users.log_in(engine, "Alice", PASSWORD, client_address="10.0.0.1", now=T0)
    assert login.ok and login.username == "alice" and login.display_name == "Alice Wang"
    assert login.roles == ("marketing",)
    assert users.session_user(engine, login.session_id, now=T0) == "alice"
    entry = audit.query(engine, event="login_ok").iloc[0]
    assert entry["username"] == "alice" and entry["client_address"] == "10.0.0.1"


@pytest.mark.parametrize("username, password, event", [
    ("alice", "wrong password!!", "login_failed"), ("nobody", "wrong password!!", "login_failed")])
def test_a_failed_login_has_one_message_and_is_audited(engine, username, password, event):
    login = users.log_in(engine, username, password, now=T0)
    assert not login.ok and login.session_id is None and login.message == users.WRONG_CREDENTIALS
    assert events(engine) == [event]


def test_a_login_that_cannot_be_audited_does_not_happen(engine, monkeypatch):
    def broken(*_a, **_k):
        raise audit.AnalyticsError("audit log unavailable")

    monkeypatch.setattr(audit, "append", lambda engine_, event, **k: broken() if event == "login_ok" else None)
    with pytest.raises(audit.AnalyticsError):
        users.log_in(engine, "alice", PASSWORD, now=T0)
    with engine.connect() as conn:
        live = conn.execute(users.user_sessions.select().where(users.user_sessions.c.ended_at.is_(None))).all()
    assert live == []


def test_resume_session_only_while_the_cookie_names_a_live_session_of_that_user(engine):
    login = users.log_in(engine, "alice", PASSWORD, now=T0)
    later = T0 + dt.timedelta(minutes=5)
    resumed = users.resume_session(engine, "alice", login.session_id, now=later)
    assert resumed.ok and resumed.roles == ("marketing",) and resumed.session_id == login.session_id
    assert not users.resume_session(engine, "wall", login.session_id, now=later).ok  # another user's name
    users.log_out(engine, "alice", ["marketing"], login.session_id, now=later)
    assert not users.resume_session(engine, "alice", login.session_id, now=later).ok
    assert events(engine)[-3:] == ["access_denied", "logout", "access_denied"]


def test_check_session_touch_resets_the_idle_clock_a_tick_does_not(engine):
    sid = users.start_session(engine, "alice", now=T0)
    assert users.check_session(engine, sid, touch=False, now=T0 + dt.timedelta(minutes=10)).live
    # The tick did not count as activity: 16 idle minutes since the login end the session.
    assert users.check_session(engine, sid, touch=False, now=T0 + dt.timedelta(minutes=16)) == \
        users.SessionCheck(False, "timeout")
    sid = users.start_session(engine, "alice", now=T0)
    assert users.check_session(engine, sid, touch=True, now=T0 + dt.timedelta(minutes=10)).live
    assert users.check_session(engine, sid, touch=False, now=T0 + dt.timedelta(minutes=16)).live


@pytest.mark.parametrize("change, reason", [
    (lambda e: users.disable_user(e, "alice", now=T0), "ended"),  # disable ends the sessions itself
    (lambda e: users.set_roles(e, "alice", ["risk"], now=T0), "ended"),
    (lambda e: users.end_user_sessions(e, "alice", "logout", now=T0), "ended"),
])
def test_a_revocation_ends_the_session_at_the_next_check(engine, change, reason):
    sid = users.start_session(engine, "alice", now=T0)
    change(engine)
    assert users.check_session(engine, sid, roles=["marketing"], touch=False, now=T0) == users.SessionCheck(False, reason)


def test_roles_that_differ_from_the_granted_ones_end_the_session(engine):
    from sqlalchemy import update

    from analytics.schema import users as users_table

    sid = users.start_session(engine, "alice", now=T0)
    assert users.check_session(engine, sid, roles=["marketing"], now=T0).live
    with engine.begin() as conn:  # a change that did not go through set_roles
        conn.execute(update(users_table).values(roles="marketing,compliance"))
    assert users.check_session(engine, sid, roles=["marketing"], now=T0) == users.SessionCheck(False, "roles_changed")
    assert not users.session_is_live(engine, sid, now=T0)


def test_a_disabled_user_s_session_is_revoked_even_if_still_open(engine):
    from sqlalchemy import update

    from analytics.schema import users as users_table

    sid = users.start_session(engine, "alice", now=T0)
    with engine.begin() as conn:
        conn.execute(update(users_table).values(disabled=True))
    assert users.check_session(engine, sid, now=T0) == users.SessionCheck(False, "revoked")


def test_a_kiosk_session_does_not_idle_out_but_ends_on_revocation(engine):
    assert users.is_kiosk(["display"]) and not users.is_kiosk(["display", "executive"]) and not users.is_kiosk([])
    sid = users.start_session(engine, "wall", now=T0)
    much_later = T0 + dt.timedelta(days=2)
    assert users.check_session(engine, sid, roles=["display"], touch=False, now=much_later).live
    assert users.session_user(engine, sid, now=much_later) == "wall"  # a reload re-authenticates too
    assert users.touch_session(engine, sid, now=much_later)
    users.disable_user(engine, "wall", now=much_later)
    assert not users.check_session(engine, sid, roles=["display"], touch=False, now=much_later).live


def test_recheck_session_audits_how_a_session_ended(engine):
    idle = users.start_session(engine, "alice", now=T0)
    result = users.recheck_session(engine, "alice", ["marketing"], idle, touch=False, now=T0 + dt.timedelta(hours=1))
    assert result.reason == "timeout"
    revoked = users.start_session(engine, "alice", now=T0)
    users.disable_user(engine, "alice", now=T0)
    assert not users.recheck_session(engine, "alice", ["marketing"], revoked, now=T0).live
    assert events(engine) == ["timeout", "access_denied"]
    assert users.recheck_session(engine, "wall", ["display"], users.start_session(engine, "wall", now=T0),
                                 now=T0).live
    assert events(engine) == ["timeout", "access_denied"]  # a live session is not audited
