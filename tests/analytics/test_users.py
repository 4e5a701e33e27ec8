"""Users, login with lockout, sessions with idle timeout, and the CLI/authenticator helpers."""

from __future__ import annotations

import datetime as dt
import io

import bcrypt
import pytest
from sqlalchemy import select

from analytics import users
from analytics.schema import user_sessions
from analytics.store import init_schema, make_engine
from analytics.users import (
    WRONG_CREDENTIALS,
    PasswordPolicyError,
    UnknownUserError,
    UserExistsError,
    add_user,
    authenticate,
    credentials_for_authenticator,
    disable_user,
    enable_user,
    end_session,
    get_user,
    list_users,
    read_password_from_stdin_or_prompt,
    reset_password,
    session_is_live,
    set_roles,
    start_session,
    touch_session,
    unlock_user,
)

T0 = dt.datetime(2026, 3, 1, 9, 0, 0)
PASSWORD = "correct horse battery"
OTHER = "another long passphrase"


@pytest.fixture(autouse=True)
def _fast_bcrypt_and_default_policy(monkeypatch, tmp_path):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    # An unknown name is recorded as a keyed hash: the key must come from here, not data/.
    monkeypatch.setenv("AUDIT_HMAC_KEY", "u" * 40)
    monkeypatch.setenv("AUDIT_KEY_FILE", str(tmp_path / "audit.key"))
    for name in ("LOGIN_MAX_FAILED_ATTEMPTS", "LOGIN_LOCKOUT_MINUTES", "SESSION_IDLE_MINUTES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path}/t.db", create_dir=True)
    init_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def alice(engine):
    return add_user(engine, "Alice", PASSWORD, ["marketing"], display_name="Alice Wang",
                    email="alice@bank.example", now=T0)


# ---------------------------------------------------------------------------------------------
# Managing users
# ---------------------------------------------------------------------------------------------

def test_add_and_get_user(engine, alice):
    assert alice.username == "alice"  # lower-cased, as streamlit-authenticator does
    assert alice.roles == ("marketing",)
    assert alice.display_name == "Alice Wang"
    assert not alice.disabled and alice.failed_attempts == 0
    assert get_user(engine, "ALICE") == alice
    assert get_user(engine, "nobody") is None


def test_duplicate_username_is_refused_whatever_its_case(engine, alice):
    with pytest.raises(UserExistsError, match="'alice' already exists"):
        add_user(engine, "alice", OTHER, ["risk"])
    with pytest.raises(UserExistsError):
        add_user(engine, " ALICE ", OTHER, ["risk"])


@pytest.mark.parametrize("username, password, roles, error, match", [
    ("bob", PASSWORD, ["superuser"], ValueError, "Unknown role"),
    ("bob", PASSWORD, [], ValueError, "at least one role"),
    ("bob", "short", ["risk"], PasswordPolicyError, "at least 12"),
    ("bob", "x" * 73, ["risk"], PasswordPolicyError, "72 bytes"),
    ("bob", "密" * 25, ["risk"], PasswordPolicyError, "72 bytes"),  # 25 chars, 75 bytes
    ("bob", " " * 14, ["risk"], PasswordPolicyError, "only spaces"),
    ("bobbybobbybob", "BobbyBobbyBob", ["risk"], PasswordPolicyError, "username"),
    ("b", PASSWORD, ["risk"], ValueError, "username"),
    ("bob smith", PASSWORD, ["risk"], ValueError, "username"),
])
def test_add_user_validates(engine, username, password, roles, error, match):
    with pytest.raises(error, match=match):
        add_user(engine, username, password, roles)
    assert list_users(engine).empty


def test_list_users_never_returns_hashes(engine, alice):
    add_user(engine, "bob", OTHER, "risk,compliance")
    frame = list_users(engine)
    assert frame["username"].tolist() == ["alice", "bob"]
    assert frame.loc[1, "roles"] == "risk,compliance"
    assert "password_hash" not in frame.columns
    assert not frame.astype(str).apply(lambda col: col.str.startswith("$2")).any().any()


def test_set_roles(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    user = set_roles(engine, "alice", ["compliance", "risk"], now=T0)
    assert user.roles == ("risk", "compliance")  # stored in ROLES order
    assert authenticate(engine, "alice", PASSWORD, now=T0).roles == ("risk", "compliance")
    # the old session carried the old roles: it is ended so the new ones apply at the next login
    assert not session_is_live(engine, sid, now=T0)
    with pytest.raises(ValueError):
        set_roles(engine, "alice", ["root"])
    with pytest.raises(UnknownUserError):
        set_roles(engine, "nobody", ["risk"])


def test_disable_and_enable(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    assert disable_user(engine, "alice", now=T0).disabled
    assert not touch_session(engine, sid, now=T0)
    result = authenticate(engine, "alice", PASSWORD, now=T0)
    assert not result.ok and result.message == WRONG_CREDENTIALS and result.reason == "disabled"
    assert enable_user(engine, "alice").disabled is False
    assert authenticate(engine, "alice", PASSWORD, now=T0).ok
    with pytest.raises(UnknownUserError):
        disable_user(engine, "nobody")


def test_reset_password(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    reset_password(engine, "alice", OTHER, now=T0)
    assert not authenticate(engine, "alice", PASSWORD, now=T0).ok
    assert authenticate(engine, "alice", OTHER, now=T0).ok
    assert not session_is_live(engine, sid, now=T0)
    with pytest.raises(PasswordPolicyError):
        reset_password(engine, "alice", "short")


# ---------------------------------------------------------------------------------------------
# Login
# ---------------------------------------------------------------------------------------------

def test_good_login(engine, alice):
    result = authenticate(engine, " Alice ", PASSWORD, now=T0)
    assert result.ok and result.event == "login_ok"
    assert result.username == "alice" and result.roles == ("marketing",)
    assert result.display_name == "Alice Wang"


def test_unknown_user_and_wrong_password_look_the_same(engine, alice, monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(h) or real(pw, h))
    unknown = authenticate(engine, "mallory", PASSWORD, now=T0)
    wrong = authenticate(engine, "alice", "wrong password!", now=T0)
    assert unknown.message == wrong.message == WRONG_CREDENTIALS
    assert unknown.event == wrong.event == "login_failed"
    assert (unknown.ok, unknown.roles, unknown.display_name) == (wrong.ok, wrong.roles, wrong.display_name)
    assert unknown.reason == "unknown user" and wrong.reason == "wrong password"
    # the same work: exactly one bcrypt check each, at the same cost
    assert len(calls) == 2
    assert calls[0][:7] == calls[1][:7] == b"$2b$04$"


def test_over_long_password_is_just_wrong(engine, alice):
    result = authenticate(engine, "alice", PASSWORD + "x" * 100, now=T0)
    assert not result.ok and result.message == WRONG_CREDENTIALS


def test_lockout_after_five_failures_then_unlock_after_the_window(engine, alice):
    for i in range(4):
        r = authenticate(engine, "alice", "wrong password!", now=T0 + dt.timedelta(seconds=i))
        assert r.event == "login_failed"
    fifth = authenticate(engine, "alice", "wrong password!", now=T0 + dt.timedelta(seconds=5))
    assert fifth.event == "login_locked" and fifth.reason == "locked after 5 failed attempts"
    assert get_user(engine, "alice").is_locked(T0 + dt.timedelta(minutes=1))

    # locked: even the right password is refused, with the same message (no oracle)
    during = authenticate(engine, "alice", PASSWORD, now=T0 + dt.timedelta(minutes=29))
    assert not during.ok and during.message == WRONG_CREDENTIALS and during.event == "login_locked"

    after = authenticate(engine, "alice", PASSWORD, now=T0 + dt.timedelta(minutes=31))
    assert after.ok
    assert get_user(engine, "alice").failed_attempts == 0


def test_failures_after_an_expired_lock_count_from_zero(engine, alice):
    for i in range(5):
        authenticate(engine, "alice", "wrong password!", now=T0 + dt.timedelta(seconds=i))
    later = T0 + dt.timedelta(minutes=45)
    r = authenticate(engine, "alice", "wrong password!", now=later)
    assert r.event == "login_failed"
    assert get_user(engine, "alice").failed_attempts == 1
    assert authenticate(engine, "alice", PASSWORD, now=later).ok


def test_success_resets_the_count(engine, alice):
    for _ in range(4):
        authenticate(engine, "alice", "wrong password!", now=T0)
    assert authenticate(engine, "alice", PASSWORD, now=T0).ok
    for _ in range(4):
        assert authenticate(engine, "alice", "wrong password!", now=T0).event == "login_failed"


def test_lockout_policy_comes_from_the_settings(engine, alice, monkeypatch):
    monkeypatch.setenv("LOGIN_MAX_FAILED_ATTEMPTS", "2")
    monkeypatch.setenv("LOGIN_LOCKOUT_MINUTES", "5")
    authenticate(engine, "alice", "wrong password!", now=T0)
    assert authenticate(engine, "alice", "wrong password!", now=T0).event == "login_locked"
    assert not authenticate(engine, "alice", PASSWORD, now=T0 + dt.timedelta(minutes=4)).ok
    assert authenticate(engine, "alice", PASSWORD, now=T0 + dt.timedelta(minutes=6)).ok


def test_unlock_user(engine, alice):
    for _ in range(5):
        authenticate(engine, "alice", "wrong password!", now=T0)
    unlock_user(engine, "alice")
    assert authenticate(engine, "alice", PASSWORD, now=T0).ok


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------

def _session_row(engine, sid):
    with engine.connect() as conn:
        return conn.execute(select(user_sessions).where(user_sessions.c.session_id == sid)).one()


def test_session_idle_timeout(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    assert len(sid) >= 40 and sid != start_session(engine, "alice", now=T0)
    assert touch_session(engine, sid, now=T0 + dt.timedelta(minutes=10))
    assert touch_session(engine, sid, now=T0 + dt.timedelta(minutes=24))  # 14 idle minutes
    assert session_is_live(engine, sid, now=T0 + dt.timedelta(minutes=39))
    assert not session_is_live(engine, sid, now=T0 + dt.timedelta(minutes=40))
    assert not touch_session(engine, sid, now=T0 + dt.timedelta(minutes=40))
    row = _session_row(engine, sid)
    assert row.end_reason == "timeout"
    # ended is ended, even if the clock goes back
    assert not touch_session(engine, sid, now=T0 + dt.timedelta(minutes=25))


def test_touch_never_moves_last_seen_backwards(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    assert touch_session(engine, sid, now=T0 + dt.timedelta(minutes=10))
    assert touch_session(engine, sid, now=T0 + dt.timedelta(minutes=5))
    assert _session_row(engine, sid).last_seen_at == T0 + dt.timedelta(minutes=10)


def test_logout_and_unknown_sessions(engine, alice):
    sid = start_session(engine, "alice", now=T0)
    assert end_session(engine, sid, now=T0)
    assert not end_session(engine, sid)
    assert _session_row(engine, sid).end_reason == "logout"
    assert not session_is_live(engine, sid, now=T0)
    assert not touch_session(engine, "no-such-session", now=T0)
    assert not session_is_live(engine, None)
    with pytest.raises(ValueError):
        end_session(engine, sid, reason="bored")


# ---------------------------------------------------------------------------------------------
# CLI password input and streamlit-authenticator credentials
# ---------------------------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_password_from_a_pipe():
    assert read_password_from_stdin_or_prompt(io.StringIO(f"{PASSWORD}\n{PASSWORD}\n")) == PASSWORD
    # spaces inside and at the ends belong to the password; only the line ending is dropped
    padded = "  spaced  out  pass  "
    assert read_password_from_stdin_or_prompt(io.StringIO(f"{padded}\r\n{padded}\r\n")) == padded


@pytest.mark.parametrize("stdin_text, match", [
    (f"{PASSWORD}\n{OTHER}\n", "differ"),
    (f"{PASSWORD}\n", "second"),
    ("", "first line"),
    ("short\nshort\n", "at least 12"),
])
def test_password_from_a_pipe_errors(stdin_text, match):
    with pytest.raises(PasswordPolicyError, match=match):
        read_password_from_stdin_or_prompt(io.StringIO(stdin_text))


def test_password_from_a_prompt_is_asked_twice():
    prompts = []
    answers = iter([PASSWORD, PASSWORD])

    def prompt(text):
        prompts.append(text)
        return next(answers)

    assert read_password_from_stdin_or_prompt(_Tty(""), prompt) == PASSWORD
    assert len(prompts) == 2
    answers = iter([PASSWORD, OTHER])
    with pytest.raises(PasswordPolicyError, match="differ"):
        read_password_from_stdin_or_prompt(_Tty(""), lambda _t: next(answers))


def test_credentials_for_authenticator(engine, alice):
    from streamlit_authenticator.utilities.hasher import Hasher

    add_user(engine, "bob", OTHER, ["risk", "compliance"], now=T0)
    add_user(engine, "carol", OTHER, ["admin"], now=T0)
    disable_user(engine, "carol")
    for _ in range(5):
        authenticate(engine, "bob", "wrong password!", now=T0)

    creds = credentials_for_authenticator(engine, now=T0 + dt.timedelta(minutes=1))
    assert set(creds) == {"usernames"}
    assert set(creds["usernames"]) == {"alice"}  # carol disabled, bob locked
    entry = creds["usernames"]["alice"]
    assert entry["name"] == "Alice Wang" and entry["email"] == "alice@bank.example"
    assert entry["roles"] == ["marketing"] and entry["logged_in"] is False
    # the library recognises the hash (so auto_hash leaves it alone) and checks it
    assert Hasher.is_hash(entry["password"])
    assert Hasher.check_pw(PASSWORD, entry["password"])

    later = credentials_for_authenticator(engine, now=T0 + dt.timedelta(minutes=31))
    assert set(later["usernames"]) == {"alice", "bob"}
    assert later["usernames"]["bob"]["roles"] == ["risk", "compliance"]


def test_language_preference_round_trip(engine):
    from analytics.store import init_schema

    init_schema(engine)
    users.add_user(engine, "lang_user", "correct horse battery staple", ["marketing"])
    assert users.get_language(engine, "lang_user") is None
    users.set_language(engine, "LANG_USER", "zh")
    assert users.get_language(engine, "lang_user") == "zh"
    users.set_language(engine, "lang_user", "en")
    assert users.get_language(engine, "lang_user") == "en"
    with pytest.raises(users.UserError):
        users.set_language(engine, "lang_user", "fr")
    with pytest.raises(users.UnknownUserError):
        users.set_language(engine, "nobody", "zh")


# ---------------------------------------------------------------------------------------------
# What a failed login leaves in the audit log (issue 12, F5)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def audit_key_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))


def test_a_failed_login_records_an_existing_name(engine, alice, audit_key_env):
    assert authenticate(engine, "Alice", "wrong password!", now=T0).username == "alice"


def test_a_failed_login_never_records_a_name_that_is_no_account(engine, alice, audit_key_env):
    typed = "correct horse battery"  # a password typed into the username box
    first = authenticate(engine, typed, PASSWORD, now=T0)
    again = authenticate(engine, "  Correct Horse Battery ", PASSWORD, now=T0)
    other = authenticate(engine, "mallory", PASSWORD, now=T0)
    assert first.reason == "unknown user" and first.event == "login_failed"
    assert typed not in first.username and "correct" not in first.username
    assert first.username.startswith("unknown:") and len(first.username) == len("unknown:") + 20
    assert first.username == again.username  # repeats correlate
    assert other.username != first.username


def test_the_unknown_name_reference_is_keyed(engine, alice, audit_key_env, monkeypatch):
    before = authenticate(engine, "mallory", PASSWORD, now=T0).username
    monkeypatch.setenv("AUDIT_HMAC_KEY", "v" * 40)
    assert authenticate(engine, "mallory", PASSWORD, now=T0).username != before


def test_the_audit_entry_of_an_unknown_name_holds_no_trace_of_it(engine, alice, audit_key_env):
    from analytics import audit

    result = authenticate(engine, "hunter2-secret-pass", PASSWORD, now=T0)
    audit.append(engine, result.event, username=result.username, reason=result.reason)
    row = audit.query(engine).iloc[0]
    assert "hunter2" not in " ".join(str(v) for v in row.tolist())
    assert row["username"] == result.username
