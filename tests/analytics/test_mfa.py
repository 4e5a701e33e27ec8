"""Two-factor login: RFC 6238 known answers, skew, replay, recovery codes, encryption of secrets."""

from __future__ import annotations

import base64
import datetime as dt

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from analytics import mfa, users
from analytics.schema import user_mfa, user_mfa_recovery

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
PASSWORD = "correct horse battery"
# RFC 6238 appendix B: the SHA-1 seed is the ASCII text "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.fixture(autouse=True)
def _keys(monkeypatch, tmp_path):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    # A fresh PostgreSQL schema per test: its audit chain starts again, so a fresh checkpoint too.
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    monkeypatch.setenv("MFA_KEY", "k" * 40)


def _code(secret: str, when: dt.datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(when + dt.timedelta(seconds=30 * steps))


def _enrolled(engine, name="alice", roles=("compliance",)) -> str:
    users.add_user(engine, name, PASSWORD, list(roles), now=T0)
    secret = mfa.begin_enrolment(engine, name, now=T0).secret
    assert mfa.confirm_enrolment(engine, name, _code(secret, T0), now=T0) is not None
    return secret


@pytest.mark.parametrize("unix_time, eight_digits", [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"),
])
def test_rfc6238_known_answers_are_matched_at_their_step(unix_time, eight_digits):
    when = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=unix_time)
    # Six digits are the last six of the published eight (the same HOTP value mod 10^6).
    assert mfa._matching_step(RFC_SECRET, eight_digits[-6:], when) == unix_time // 30
    assert mfa.step_of(when) == unix_time // 30


@pytest.mark.parametrize("key, problem", [
    (None, "MFA_KEY is not set."), ("", "MFA_KEY is not set."),
    ("changeme", "MFA_KEY is a default or example value."),
    ("x" * 31, "MFA_KEY is shorter than 32 bytes."), ("x" * 32, None), ("码" * 11, None),
])
def test_key_rules_are_those_of_the_cookie_key(key, problem):
    assert mfa.key_problem(key) == problem


def test_a_secret_is_stored_encrypted_and_bound_to_its_user(engine):
    users.add_user(engine, "alice", PASSWORD, ["admin"], now=T0)
    enrolment = mfa.begin_enrolment(engine, "alice", now=T0)
    with engine.connect() as conn:
        stored = conn.execute(select(user_mfa.c.secret_enc)).scalar_one()
    assert enrolment.secret not in stored and stored.startswith("v1:")
    assert mfa.decrypt_secret("alice", stored) == enrolment.secret
    with pytest.raises(mfa.MfaKeyError, match="cannot be decrypted"):
        mfa.decrypt_secret("bob", stored)  # copied onto another user's row
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    with pytest.raises(mfa.MfaKeyError):
        mfa.decrypt_secret("alice", tampered)
    assert enrolment.uri.startswith("otpauth://totp/") and f"secret={enrolment.secret}" in enrolment.uri


def test_another_key_cannot_open_the_secret_and_the_error_names_mfa_key(engine, monkeypatch):
    users.add_user(engine, "alice", PASSWORD, ["admin"], now=T0)
    mfa.begin_enrolment(engine, "alice", now=T0)
    monkeypatch.setenv("MFA_KEY", "z" * 40)
    with pytest.raises(mfa.MfaKeyError, match="MFA_KEY"):
        mfa.begin_enrolment(engine, "alice", now=T0)
    monkeypatch.delenv("MFA_KEY")
    with pytest.raises(mfa.MfaKeyError, match="MFA_KEY is not set"):
        mfa.check_key()


def test_enrolment_confirms_with_a_right_code_and_gives_ten_hashed_recovery_codes(engine):
    users.add_user(engine, "alice", PASSWORD, ["admin"], now=T0)
    secret = mfa.begin_enrolment(engine, "alice", now=T0).secret
    assert mfa.status(engine, "alice") == "pending"
    # A pending enrolment is shown again, not replaced (the user may have scanned it already).
    assert mfa.begin_enrolment(engine, "alice", now=T0).secret == secret
    assert mfa.confirm_enrolment(engine, "alice", "000000" if _code(secret, T0) != "000000" else "111111",
                                 now=T0) is None
    assert mfa.status(engine, "alice") == "pending"
    codes = mfa.confirm_enrolment(engine, "alice", _code(secret, T0), now=T0)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 19 and c.count("-") == 3 for c in codes)
    assert mfa.status(engine, "alice") == "enrolled"
    with engine.connect() as conn:
        stored = [r.code_hash for r in conn.execute(select(user_mfa_recovery))]
    clear = {c.replace("-", "") for c in codes} | set(codes)
    assert len(stored) == 10 and not set(stored) & clear
    with pytest.raises(mfa.MfaError, match="already enrolled"):
        mfa.begin_enrolment(engine, "alice", now=T0)


@pytest.mark.parametrize("offset, accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_a_code_one_step_either_side_is_accepted_and_two_steps_are_not(engine, offset, accepted):
    secret = _enrolled(engine)
    later = T0 + dt.timedelta(minutes=10)
    result = mfa.check_code(engine, "alice", _code(secret, later, offset), now=later)
    assert result.ok is accepted
    assert result.reason == (None if accepted else "wrong code")


def test_a_code_is_never_accepted_twice_nor_an_older_one_after_a_newer(engine):
    secret = _enrolled(engine)
    later = T0 + dt.timedelta(minutes=10)
    code = _code(secret, later)
    assert mfa.check_code(engine, "alice", code, now=later).ok
    assert mfa.check_code(engine, "alice", code, now=later) == mfa.CodeCheck(False, "reused code")
    # Still inside the skew window a few seconds later: the same code is still refused.
    assert not mfa.check_code(engine, "alice", code, now=later + dt.timedelta(seconds=25)).ok
    # A newer code (next step) goes; then the older one (previous step) does not.
    assert mfa.check_code(engine, "alice", _code(secret, later, 1), now=later).ok
    assert mfa.check_code(engine, "alice", _code(secret, later, -1), now=later).reason == "reused code"
    # The enrolment's own first code was spent at enrolment.
    assert mfa.check_code(engine, "alice", _code(secret, T0), now=T0).reason == "reused code"


def test_recovery_codes_work_once_each(engine):
    users.add_user(engine, "alice", PASSWORD, ["admin"], now=T0)
    secret = mfa.begin_enrolment(engine, "alice", now=T0).secret
    codes = mfa.confirm_enrolment(engine, "alice", _code(secret, T0), now=T0)
    assert mfa.recovery_codes_left(engine, "alice") == 10
    first = mfa.check_code(engine, "alice", codes[0].upper().replace("-", " "), now=T0)
    assert first == mfa.CodeCheck(True, recovery=True)
    assert mfa.check_code(engine, "alice", codes[0], now=T0).reason == "used recovery code"
    assert mfa.check_code(engine, "alice", "abcd-efgh-ijkl-mnop", now=T0).reason == "wrong code"
    assert mfa.recovery_codes_left(engine, "alice") == 9


def test_reset_forgets_secret_and_recovery_codes(engine):
    _enrolled(engine)
    assert mfa.reset(engine, "alice") is True
    assert mfa.status(engine, "alice") == "none"
    assert mfa.recovery_codes_left(engine, "alice") == 0
    assert mfa.check_code(engine, "alice", "123456", now=T0).reason == "not enrolled"
    assert mfa.reset(engine, "alice") is False


@settings(max_examples=40, deadline=None)
@given(seconds=st.integers(min_value=300, max_value=4_000_000_000), offset=st.integers(min_value=-4, max_value=4))
def test_property_a_code_matches_iff_within_one_step(seconds, offset):
    when = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    code = _code(RFC_SECRET, when, offset)
    found = mfa._matching_step(RFC_SECRET, code, when)
    if abs(offset) <= 1:
        assert found is not None and _code(RFC_SECRET, when, found - mfa.step_of(when)) == code
    elif found is not None:  # only when another step in the window happens to have the same code
        assert _code(RFC_SECRET, when, found - mfa.step_of(when)) == code


def test_qr_code_is_a_png_and_a_terminal_drawing():
    uri = mfa.provisioning_uri("alice", RFC_SECRET)
    assert mfa.qr_png(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "█" in mfa.qr_text(uri)
