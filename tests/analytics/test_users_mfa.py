"""The login sequence with a second factor: who must use it, enrolment, codes toward the lockout,
replay, recovery codes, reset, and a missing MFA_KEY."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from analytics import audit, mfa, users

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _keys(monkeypatch, tmp_path):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    # A fresh PostgreSQL schema per test: its audit chain starts again, so a fresh checkpoint too.
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    monkeypatch.setenv("MFA_KEY", "k" * 40)
    for name in ("MFA_REQUIRED_ROLES", "LOGIN_MAX_FAILED_ATTEMPTS", "LOGIN_LOCKOUT_MINUTES"):
        monkeypatch.delenv(name, raising=False)


def _code(secret: str, when: dt.datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(when + dt.timedelta(seconds=30 * steps))


def _wrong(secret: str, when: dt.datetime) -> str:
    right = {_code(secret, when, s) for s in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)


def _enrol(engine, name: str, when: dt.datetime = T0) -> tuple[str, tuple[str, ...]]:
    """The real path: password, then the QR's secret, then its first code."""
    first = users.log_in(engine, name, PASSWORD, now=when)
    assert first.next_step == "enrol"
    secret = users.pending_enrolment(engine, name, now=when).secret
    done = users.enrol_and_log_in(engine, name, _code(secret, when), now=when)
    assert done.ok
    return secret, done.recovery_codes


@pytest.mark.parametrize("roles, setting, required", [
    (["compliance"], None, True), (["admin"], None, True), (["marketing"], None, False),
    (["display"], None, False), (["display"], "display,admin", False),  # a kiosk is always exempt
    (["marketing", "admin"], None, True), (["risk"], "risk", True), (["admin"], "risk", False),
])
def test_who_must_use_a_second_factor(monkeypatch, roles, setting, required):
    if setting:
        monkeypatch.setenv("MFA_REQUIRED_ROLES", setting)
    assert users.mfa_required(roles) is required


def test_an_unknown_role_in_the_setting_is_named(monkeypatch):
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "admin,wizard")
    with pytest.raises(ValueError, match="MFA_REQUIRED_ROLES names unknown role.*wizard"):
        users.mfa_required(["admin"])


def test_a_required_role_must_enrol_and_gets_no_session_before_it(engine):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    first = users.log_in(engine, "comp", PASSWORD, now=T0)
    assert (first.ok, first.next_step, first.session_id) == (False, "enrol", None)
    secret = users.pending_enrolment(engine, "comp", now=T0).secret
    done = users.enrol_and_log_in(engine, "comp", _code(secret, T0), now=T0)
    assert done.ok and done.session_id and len(done.recovery_codes) == 10
    assert users.session_user(engine, done.session_id, now=T0) == "comp"
    log = audit.query(engine)
    assert {"mfa_enrol", "login_ok"} <= set(log["event"])
    # Next login: password, then a code of a later step.
    later = T0 + dt.timedelta(minutes=5)
    second = users.log_in(engine, "comp", PASSWORD, now=later)
    assert second.next_step == "code" and not second.ok
    assert users.log_in_code(engine, "comp", _code(secret, later), now=later).ok


def test_an_optional_role_logs_in_with_the_password_alone_until_enrolled(engine):
    users.add_user(engine, "mark", PASSWORD, ["marketing"], now=T0)
    assert users.log_in(engine, "mark", PASSWORD, now=T0).ok
    users.enrol_mfa(engine, "mark", now=T0)  # `users mfa-enrol mark`
    assert users.log_in(engine, "mark", PASSWORD, now=T0).next_step == "enrol"


def test_a_kiosk_is_never_asked_and_cannot_be_enrolled(engine, monkeypatch):
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "display,admin")
    users.add_user(engine, "wall", PASSWORD, ["display"], now=T0)
    assert users.log_in(engine, "wall", PASSWORD, now=T0).ok
    with pytest.raises(users.UserError, match="exempt"):
        users.enrol_mfa(engine, "wall")


def test_wrong_and_reused_codes_count_toward_the_lockout(engine):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    secret, _ = _enrol(engine, "comp")
    when = T0 + dt.timedelta(minutes=5)
    good = _code(secret, when)
    assert users.log_in_code(engine, "comp", good, now=when).ok
    outcomes = []
    for i in range(4):
        # The right password in between must not wipe the count of wrong codes.
        assert users.log_in(engine, "comp", PASSWORD, now=when).next_step == "code"
        code = good if i % 2 == 0 else _wrong(secret, when)  # reused, wrong, reused, wrong
        outcomes.append(users.log_in_code(engine, "comp", code, now=when).failure)
    assert outcomes == ["wrong_code"] * 4
    assert users.get_user(engine, "comp").failed_attempts == 4
    fifth = users.log_in_code(engine, "comp", _wrong(secret, when), now=when)
    assert (fifth.ok, fifth.failure, fifth.message) == (False, "locked", users.WRONG_CODE)
    assert users.get_user(engine, "comp").is_locked(when)
    # Locked: even the next right code is refused, and so is the password.
    assert users.log_in_code(engine, "comp", _code(secret, when, 1), now=when).failure == "locked"
    assert users.log_in(engine, "comp", PASSWORD, now=when).failure == "wrong_credentials"
    reasons = audit.query(engine, event=["login_failed", "login_locked"])["reason"].tolist()
    assert "reused code" in reasons and "wrong code" in reasons
    assert any(r.startswith("locked after 5 failed attempts") for r in reasons)


def test_a_wrong_first_code_at_enrolment_counts_too(engine):
    users.add_user(engine, "adm", PASSWORD, ["admin"], now=T0)
    users.log_in(engine, "adm", PASSWORD, now=T0)
    secret = users.pending_enrolment(engine, "adm", now=T0).secret
    failed = users.enrol_and_log_in(engine, "adm", _wrong(secret, T0), now=T0)
    assert (failed.ok, failed.failure) == (False, "wrong_code")
    assert users.get_user(engine, "adm").failed_attempts == 1
    assert mfa.status(engine, "adm") == "pending"


def test_a_recovery_code_logs_in_once(engine):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    _, codes = _enrol(engine, "comp")
    assert users.log_in_code(engine, "comp", codes[3], now=T0).ok
    assert users.log_in_code(engine, "comp", codes[3], now=T0).failure == "wrong_code"
    params = audit.query(engine, event="login_ok")["parameters"].tolist()
    assert any("recovery code" in (p or "") for p in params)


def test_without_mfa_key_a_required_role_cannot_log_in_and_is_told_the_setting(engine, monkeypatch):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    users.add_user(engine, "mark", PASSWORD, ["marketing"], now=T0)
    monkeypatch.delenv("MFA_KEY")
    result = users.log_in(engine, "comp", PASSWORD, now=T0)
    assert (result.ok, result.failure, result.session_id) == (False, "mfa_not_configured", None)
    assert "MFA_KEY" in result.message
    assert users.log_in(engine, "mark", PASSWORD, now=T0).ok  # others are not affected
    # A wrong password still gets the uniform message (the key problem is no password oracle).
    assert users.log_in(engine, "comp", "not the password", now=T0).message == users.WRONG_CREDENTIALS


def test_a_changed_mfa_key_refuses_the_code_with_a_message_naming_it(engine, monkeypatch):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    secret, _ = _enrol(engine, "comp")
    monkeypatch.setenv("MFA_KEY", "other" * 10)
    result = users.log_in_code(engine, "comp", _code(secret, T0, 1), now=T0)
    assert result.failure == "mfa_not_configured" and "MFA_KEY" in result.message


def test_reset_ends_sessions_and_requires_a_new_enrolment(engine):
    users.add_user(engine, "comp", PASSWORD, ["compliance"], now=T0)
    secret, _ = _enrol(engine, "comp")
    live = users.log_in_code(engine, "comp", _code(secret, T0, 1), now=T0)
    assert users.reset_mfa(engine, "comp", now=T0) is True
    assert users.session_user(engine, live.session_id, now=T0) is None
    assert users.log_in(engine, "comp", PASSWORD, now=T0).next_step == "enrol"
    with pytest.raises(users.UnknownUserError):
        users.reset_mfa(engine, "nobody")


def test_a_session_of_an_account_that_must_now_enrol_is_not_resumed(engine, monkeypatch):
    users.add_user(engine, "risky", PASSWORD, ["risk"], now=T0)
    login = users.log_in(engine, "risky", PASSWORD, now=T0)
    assert users.resume_session(engine, "risky", login.session_id, now=T0).ok
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "risk")
    assert not users.resume_session(engine, "risky", login.session_id, now=T0).ok
