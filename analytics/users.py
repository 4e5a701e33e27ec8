"""Dashboard users, their passwords and roles, login with lockout, and the server-side session registry.

Users live in the store's ``users`` table; passwords are bcrypt hashes and never leave this module
except in :func:`credentials_for_authenticator`, which hands them to streamlit-authenticator.

Login messages (deliberately uniform, following OWASP's authentication guidance): every failed
login says ``"Wrong username or password."`` — for an unknown user, a wrong password, a locked
account and a disabled account alike — and every attempt costs exactly one bcrypt check (against a
dummy hash when there is no usable real one), so neither the message nor the time tells an attacker
whether a username exists. We do not say "locked" even after a correct password: that would turn
the lockout into an oracle (keep guessing while locked and watch for the message to change). The
true cause is in :attr:`AuthResult.event` and :attr:`AuthResult.reason`, for the audit log and an
admin, never for the login form; the login page should state the policy statically ("after 5
failed attempts an account is locked for 30 minutes").

Lockout: after ``LOGIN_MAX_FAILED_ATTEMPTS`` consecutive failures the account is locked for
``LOGIN_LOCKOUT_MINUTES``; attempts while locked are refused without checking the password and do
not extend the lock. When the window has passed the counter starts again from zero; a successful
login, :func:`unlock_user` or :func:`reset_password` also reset it.

Times are naive UTC (the columns are ``DateTime`` without zone); every function that depends on the
clock takes ``now=`` so tests need no sleeping.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

import bcrypt
import pandas as pd
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from analytics import audit, mfa, settings
from analytics.access import ROLES, normalise_roles
from analytics.clock import naive_utc
from analytics.errors import AnalyticsError
from analytics.schema import user_preferences, user_sessions, users

# bcrypt work factor for new hashes. Tests monkeypatch this down to 4; 12 costs ~0.2 s a hash.
BCRYPT_ROUNDS = 12
MIN_PASSWORD_CHARS = 12
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent.parent / "data" / "common_passwords.txt"
# bcrypt only reads 72 bytes, and bcrypt 5 refuses longer input rather than truncating silently.
MAX_PASSWORD_BYTES = 72

WRONG_CREDENTIALS = "Wrong username or password."
WRONG_CODE = "Wrong or already used code."
MFA_NOT_CONFIGURED = ("Two-factor login is not configured: {problem} This account needs a code, so it "
                      "cannot log in until an administrator sets MFA_KEY.")

# streamlit-authenticator lower-cases usernames, so we store them lower-case.
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")

SESSION_END_REASONS = ("logout", "timeout", "revoked")

# Accounts holding only these roles drive a big screen (the KPI wall): their sessions do not idle
# out, since nobody touches a wall that is meant to stay on. They still end on logout, when the
# account is disabled, and when its roles change.
KIOSK_ROLES = frozenset({"display"})



def _setting(name: str) -> int:
    return int(settings.get(name))


class UserError(AnalyticsError):
    """A user-management request cannot be done (the message says why)."""


class UserExistsError(UserError):
    """A user with that username already exists."""


class UnknownUserError(UserError):
    """No user with that username."""


class UsernameError(UserError, ValueError):
    """A username that breaks the naming rule (a ValueError too, as callers expect); the message
    never quotes what was typed (it may be a password typed into the wrong box)."""


class PasswordPolicyError(UserError, ValueError):
    """A new password does not meet the password policy."""


@dataclass(frozen=True)
class User:
    """A user as the app sees it: never the password hash."""

    username: str
    display_name: str
    email: str | None
    roles: tuple[str, ...]
    disabled: bool
    failed_attempts: int
    locked_until: dt.datetime | None
    password_changed_at: dt.datetime
    created_at: dt.datetime

    def is_locked(self, now: dt.datetime | None = None) -> bool:
        """True while the lockout window is running."""
        return self.locked_until is not None and self.locked_until > _utc(now)


@dataclass(frozen=True)
class AuthResult:
    """The outcome of :func:`authenticate`.

    Attributes
    ----------
    ok : bool
        True if the user may log in.
    username : str
        The normalised username that was tried (also on failure, for the audit log).
    roles : tuple of str
        The user's roles; empty on failure.
    display_name : str or None
        Shown in the app; None on failure.
    message : str
        What the login form may show. The same for every failure.
    event : str
        The audit event to record: ``login_ok``, ``login_failed`` or ``login_locked``.
    reason : str or None
        The real cause of a failure, for the audit log only (``unknown user``, ``wrong password``,
        ``disabled``, ``locked``, ``locked after N failed attempts``).
    """

    ok: bool
    username: str
    roles: tuple[str, ...]
    display_name: str | None
    message: str
    event: str
    reason: str | None = None


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

_utc = naive_utc  # now as naive UTC (analytics.clock)


def normalise_username(username: str) -> str:
    """Lower-case and strip ``username``; raise :class:`UsernameError` (a ValueError) unless it is
    2-64 of ``a-z 0-9 . _ -``."""
    name = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise UsernameError(
            "A username is 2 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def _roles_text(roles: str | Iterable[str]) -> str:
    names = normalise_roles(roles)
    if not names:
        raise ValueError("Give a user at least one role.")
    return ",".join(names)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (:data:`COMMON_PASSWORDS_FILE`), lower case."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_common_password(password: str) -> bool:
    """True when ``password`` is on the bundled list, ignoring case and spaces, also with digits or
    symbols added at the end ("Password123456!"), or is one character repeated."""
    text = (password or "").strip().lower()
    squeezed = "".join(text.split())
    listed = common_passwords()
    if text in listed or squeezed in listed or len(set(squeezed)) <= 1:
        return True
    stem = squeezed.rstrip("0123456789!@#$%^&*()-_=+.,?~")
    # Only a stem of 6 or more characters: "bank" + digits is weak, but also a prefix of real words.
    return len(stem) >= 6 and stem in listed


def check_password_policy(password: str, username: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` meets the policy.

    At least :data:`MIN_PASSWORD_CHARS` characters, at most :data:`MAX_PASSWORD_BYTES` bytes of
    UTF-8 (bcrypt's limit), not only spaces, not the username, and not a common password
    (:func:`is_common_password`, against a list bundled with the product: no network).
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise PasswordPolicyError(f"A password needs at least {MIN_PASSWORD_CHARS} characters.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise PasswordPolicyError(f"A password may be at most {MAX_PASSWORD_BYTES} bytes long.")
    if not password.strip():
        raise PasswordPolicyError("A password cannot be only spaces.")
    if username and password.strip().lower() == username.strip().lower():
        raise PasswordPolicyError("A password cannot be the username.")
    if is_common_password(password):
        raise PasswordPolicyError("That password is on the list of common passwords; choose another.")


def hash_password(password: str) -> str:
    """bcrypt hash of ``password`` with :data:`BCRYPT_ROUNDS` rounds, as text."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    # Same cost as real hashes, so checking against it takes as long as a real check.
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds))


def _check_password(password: str, hashed: str | None) -> bool:
    """One bcrypt check; against a dummy hash when ``hashed`` is None (the answer is then False)."""
    pw = (password or "").encode("utf-8")
    # bcrypt 5 raises on more than 72 bytes; check a 72-byte prefix (same cost) and treat the
    # over-long input as wrong, since no stored password can be that long.
    too_long = len(pw) > MAX_PASSWORD_BYTES
    target = hashed.encode("ascii") if hashed else _dummy_hash(BCRYPT_ROUNDS)
    try:
        ok = bcrypt.checkpw(pw[:MAX_PASSWORD_BYTES], target)
    except ValueError:  # a corrupt stored hash: refuse, never crash the login form
        ok = False
    return ok and hashed is not None and not too_long


def _row_to_user(row) -> User:
    return User(
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        roles=tuple(r for r in (row.roles or "").split(",") if r),
        disabled=bool(row.disabled),
        failed_attempts=int(row.failed_attempts or 0),
        locked_until=row.locked_until,
        password_changed_at=row.password_changed_at,
        created_at=row.created_at,
    )


_PUBLIC_COLUMNS = [c for c in users.c if c.name != "password_hash"]


# ---------------------------------------------------------------------------------------------
# User management
# ---------------------------------------------------------------------------------------------

def add_user(engine: Engine, username: str, password: str, roles: str | Iterable[str],
             display_name: str | None = None, email: str | None = None,
             now: dt.datetime | None = None) -> User:
    """Create a user.

    Parameters
    ----------
    engine : Engine
        The store.
    username : str
        Normalised with :func:`normalise_username` (lower case).
    password : str
        Must meet :func:`check_password_policy`; stored only as a bcrypt hash.
    roles : str or iterable of str
        One or more of :data:`analytics.access.ROLES`.
    display_name, email : str, optional
        The display name defaults to the username.

    Returns
    -------
    User

    Raises
    ------
    UserExistsError
        If the username is taken (also by a disabled user: usernames are never reused, so the
        audit log's usernames stay unambiguous).
    ValueError
        For a bad username or an unknown role; :class:`PasswordPolicyError` for a weak password.
    """
    name = normalise_username(username)
    roles_text = _roles_text(roles)
    check_password_policy(password, name)
    now = _utc(now)
    # Hash before the transaction: bcrypt takes a fraction of a second and must not hold a lock.
    row = {
        "username": name,
        "display_name": (display_name or "").strip() or name,
        "email": (email or "").strip() or None,
        "password_hash": hash_password(password),
        "roles": roles_text,
        "disabled": False,
        "failed_attempts": 0,
        "locked_until": None,
        "password_changed_at": now,
        "created_at": now,
    }
    with engine.begin() as conn:
        exists = conn.execute(select(users.c.username).where(users.c.username == name)).first()
        if exists:
            raise UserExistsError(f"User {name!r} already exists. Hint: use set-roles or reset-password.")
        try:
            conn.execute(insert(users).values(**row))
        except IntegrityError:  # lost a race with a concurrent add of the same name
            raise UserExistsError(f"User {name!r} already exists.") from None
    return get_user(engine, name)

def get_user(engine: Engine, username: str) -> User | None:
    """The user, or None if there is none by that name."""
    try:
        name = normalise_username(username)
    except ValueError:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(*_PUBLIC_COLUMNS).where(users.c.username == name)).first()
    return _row_to_user(row) if row else None


def list_users(engine: Engine, now: dt.datetime | None = None) -> pd.DataFrame:
    """All users as a frame for the admin page, sorted by username; never the password hashes.

    Columns: username, display_name, email, roles (comma-separated), disabled, locked (bool at
    ``now``), failed_attempts, locked_until, password_changed_at, created_at.
    """
    now = _utc(now)
    with engine.connect() as conn:
        rows = conn.execute(select(*_PUBLIC_COLUMNS).order_by(users.c.username)).all()
    records = []
    for row in rows:
        user = _row_to_user(row)
        records.append({
            "username": user.username, "display_name": user.display_name, "email": user.email,
            "roles": ",".join(user.roles), "disabled": user.disabled, "locked": user.is_locked(now),
            "failed_attempts": user.failed_attempts, "locked_until": user.locked_until,
            "password_changed_at": user.password_changed_at, "created_at": user.created_at,
        })
    columns = ["username", "display_name", "email", "roles", "disabled", "locked", "failed_attempts",
               "locked_until", "password_changed_at", "created_at"]
    return pd.DataFrame.from_records(records, columns=columns)


def _update_user(engine: Engine, username: str, end_sessions: bool, now: dt.datetime | None,
                 **values) -> User:
    name = normalise_username(username)
    with engine.begin() as conn:
        n = conn.execute(update(users).where(users.c.username == name).values(**values)).rowcount
        if n == 0:
            raise UnknownUserError(f"No user {name!r}. Hint: list users with `python -m analytics users`.")
        if end_sessions:
            _end_user_sessions(conn, name, "revoked", _utc(now))
    return get_user(engine, name)


def disable_user(engine: Engine, username: str, now: dt.datetime | None = None) -> User:
    """Disable a user and end their live sessions (reason ``revoked``). The row is kept for the audit trail."""
    return _update_user(engine, username, True, now, disabled=True)


def enable_user(engine: Engine, username: str) -> User:
    """Re-enable a disabled user."""
    return _update_user(engine, username, False, None, disabled=False, failed_attempts=0, locked_until=None)


def unlock_user(engine: Engine, username: str) -> User:
    """Lift a lockout now (an admin did it after checking with the user)."""
    return _update_user(engine, username, False, None, failed_attempts=0, locked_until=None)


def set_roles(engine: Engine, username: str, roles: str | Iterable[str],
              now: dt.datetime | None = None) -> User:
    """Replace a user's roles and end their live sessions, so the new roles apply at the next login.

    Raises ValueError for an unknown role or an empty list.
    """
    return _update_user(engine, username, True, now, roles=_roles_text(roles))


def reset_password(engine: Engine, username: str, password: str, now: dt.datetime | None = None) -> User:
    """Set a new password (policy checked), lift any lockout and end the user's live sessions."""
    name = normalise_username(username)
    check_password_policy(password, name)
    hashed = hash_password(password)  # before the transaction, as in add_user
    return _update_user(engine, name, True, now, password_hash=hashed,
                        password_changed_at=_utc(now), failed_attempts=0, locked_until=None)


# ---------------------------------------------------------------------------------------------
# Login
# ---------------------------------------------------------------------------------------------

def _failed(username: str, reason: str, event: str = "login_failed") -> AuthResult:
    return AuthResult(False, username, (), None, WRONG_CREDENTIALS, event, reason)


def authenticate(engine: Engine, username: str, password: str, now: dt.datetime | None = None, *,
                 reset_failures: bool = True) -> AuthResult:
    """Check a login and apply the lockout policy.

    Returns an :class:`AuthResult`; it never raises for bad credentials. Record
    ``result.event`` in the audit log with ``result.reason``. When the name typed names no
    account, ``result.username`` is ``unknown:`` plus a keyed hash of it
    (:func:`analytics.audit.keyed_ref`), never the text itself: people type passwords into the
    username box, and repeats of one name still correlate.

    ``reset_failures=False`` leaves the failure count as it is after a right password: the login
    sequence passes it when a second factor follows, so a right password cannot wipe the count of
    wrong codes (else an attacker who knows the password gets endless rounds of code guesses).
    """
    now = _utc(now)
    row = None
    try:
        name = normalise_username(username)
    except ValueError:
        # Every account is created through normalise_username, so a name it refuses names no
        # account: it is not looked up (it may hold what the store cannot search for, e.g. NUL).
        name = (username or "").strip().lower()[:64]
    else:
        with engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.username == name)).first()
    if row is None:
        _check_password(password, None)
        return _failed(f"unknown:{audit.keyed_ref(engine, name)}", "unknown user")
    if row.disabled:
        _check_password(password, None)
        return _failed(name, "disabled")
    if row.locked_until is not None and row.locked_until > now:
        _check_password(password, None)
        return _failed(name, "locked", "login_locked")

    if _check_password(password, row.password_hash):
        if reset_failures:
            _reset_failures(engine, name)
        return AuthResult(True, name, tuple(r for r in row.roles.split(",") if r), row.display_name,
                          "", "login_ok")
    return _count_failure(engine, name, row.locked_until, now, "wrong password")


def _reset_failures(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.username == name).values(failed_attempts=0, locked_until=None))


def _count_failure(engine: Engine, name: str, locked_until: dt.datetime | None, now: dt.datetime,
                   reason: str, message: str = WRONG_CREDENTIALS) -> AuthResult:
    """Count one failed attempt (a wrong password or a wrong or reused code) and lock the account
    once there are ``LOGIN_MAX_FAILED_ATTEMPTS``."""
    max_attempts = _setting("LOGIN_MAX_FAILED_ATTEMPTS")
    lock_minutes = _setting("LOGIN_LOCKOUT_MINUTES")
    with engine.begin() as conn:
        # An expired lock starts a fresh count; otherwise count this failure atomically, so two
        # concurrent wrong guesses both count.
        expired = locked_until is not None and locked_until <= now
        new_count = 1 if expired else users.c.failed_attempts + 1
        conn.execute(update(users).where(users.c.username == name)
                     .values(failed_attempts=new_count, locked_until=None))
        count = conn.execute(select(users.c.failed_attempts).where(users.c.username == name)).scalar_one()
        if count >= max_attempts:
            conn.execute(update(users).where(users.c.username == name)
                         .values(locked_until=now + dt.timedelta(minutes=lock_minutes)))
            why = f"locked after {count} failed attempts"
            if reason != "wrong password":
                why += f" (last: {reason})"
            return AuthResult(False, name, (), None, message, "login_locked", why)
    return AuthResult(False, name, (), None, message, "login_failed", reason)


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------

def start_session(engine: Engine, username: str, now: dt.datetime | None = None) -> str:
    """Register a new login session for ``username`` and return its id (unguessable, URL-safe).

    Keep the id server-side (``st.session_state``), never in a URL or a log: :mod:`analytics.audit`
    stores only a digest of it.
    """
    name = normalise_username(username)
    now = _utc(now)
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(user_sessions).values(
            session_id=session_id, username=name, created_at=now, last_seen_at=now,
            ended_at=None, end_reason=None,
        ))
    return session_id


def _end_user_sessions(conn, username: str, reason: str, now: dt.datetime) -> int:
    return conn.execute(
        update(user_sessions)
        .where(user_sessions.c.username == username, user_sessions.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    ).rowcount


def end_session(engine: Engine, session_id: str, reason: str = "logout", now: dt.datetime | None = None) -> bool:
    """End a session; True if it was live. ``reason`` is one of ``logout``, ``timeout``, ``revoked``."""
    if reason not in SESSION_END_REASONS:
        raise ValueError(f"Unknown session end reason {reason!r}; use one of {', '.join(SESSION_END_REASONS)}.")
    with engine.begin() as conn:
        n = conn.execute(
            update(user_sessions)
            .where(user_sessions.c.session_id == session_id, user_sessions.c.ended_at.is_(None))
            .values(ended_at=_utc(now), end_reason=reason)
        ).rowcount
    return n > 0


def end_user_sessions(engine: Engine, username: str, reason: str = "revoked",
                      now: dt.datetime | None = None) -> int:
    """End every live session of ``username``; returns how many were ended."""
    if reason not in SESSION_END_REASONS:
        raise ValueError(f"Unknown session end reason {reason!r}; use one of {', '.join(SESSION_END_REASONS)}.")
    with engine.begin() as conn:
        return _end_user_sessions(conn, normalise_username(username), reason, _utc(now))


def _live_row(conn, session_id: str):
    return conn.execute(
        select(user_sessions.c.username, user_sessions.c.last_seen_at, users.c.disabled, users.c.roles)
        .join(users, users.c.username == user_sessions.c.username)
        .where(user_sessions.c.session_id == session_id, user_sessions.c.ended_at.is_(None))
    ).first()


def _idle_limit() -> dt.timedelta:
    return dt.timedelta(minutes=_setting("SESSION_IDLE_MINUTES"))


def _roles_of(text: str | None) -> tuple[str, ...]:
    return tuple(r for r in (text or "").split(",") if r)


def is_kiosk(roles: Iterable[str] | None) -> bool:
    """True for an account that sees the KPI wall alone (only :data:`KIOSK_ROLES`): its sessions
    do not idle out."""
    names = set(roles or ())
    return bool(names) and names <= KIOSK_ROLES


def _idle_too_long(row, now: dt.datetime) -> bool:
    return not is_kiosk(_roles_of(row.roles)) and now - row.last_seen_at > _idle_limit()


def session_is_live(engine: Engine, session_id: str | None, now: dt.datetime | None = None) -> bool:
    """True if the session exists, has not ended, is not idle too long and its user is enabled.

    Read-only: it neither extends nor ends the session (see :func:`touch_session`). A kiosk
    account's session (:func:`is_kiosk`) is never idle too long.
    """
    if not session_id:
        return False
    with engine.connect() as conn:
        row = _live_row(conn, session_id)
    return bool(row) and not row.disabled and not _idle_too_long(row, _utc(now))


def session_user(engine: Engine, session_id: str | None, now: dt.datetime | None = None) -> str | None:
    """The username of a live session, or None (unknown, ended, idle too long, or user disabled).

    The app uses it to honour a re-authentication cookie only while the session it names is live,
    so a cookie copied before logout no longer logs anyone in.
    """
    if not session_id:
        return None
    with engine.connect() as conn:
        row = _live_row(conn, session_id)
    if not row or row.disabled or _idle_too_long(row, _utc(now)):
        return None
    return row.username


@dataclass(frozen=True)
class SessionCheck:
    """The outcome of :func:`check_session`.

    Attributes
    ----------
    live : bool
        True while the session may go on showing data.
    reason : str or None
        Why it may not: ``ended`` (unknown, or ended earlier: logout, revocation), ``timeout`` (idle
        too long), ``revoked`` (the user is disabled), ``roles_changed`` (the store's roles differ
        from the ones the app granted at login). None when live.
    """

    live: bool
    reason: str | None = None


def check_session(engine: Engine, session_id: str | None, *, roles: Iterable[str] | None = None,
                  touch: bool = True, now: dt.datetime | None = None) -> SessionCheck:
    """Check a login session against the store; the app calls it on every rerun and on every tick
    of an auto-refreshing fragment, so a revocation stops the data at the next one.

    A session idle longer than ``SESSION_IDLE_MINUTES`` (unless it is a kiosk's, see
    :func:`is_kiosk`) is ended now with reason ``timeout``; one whose user was disabled, or whose
    roles no longer match ``roles``, with reason ``revoked``.

    Parameters
    ----------
    roles : iterable of str, optional
        The roles the app granted at login. :func:`set_roles` ends the sessions already; this also
        catches a change made any other way.
    touch : bool
        True for a user's own action (a rerun), which resets the idle clock. An automatic refresh
        (the KPI wall's tick) passes False: it is no sign of anyone at the screen, and would keep an
        abandoned session alive forever.
    """
    if not session_id:
        return SessionCheck(False, "ended")
    now = _utc(now)
    with engine.begin() as conn:
        row = _live_row(conn, session_id)
        if row is None:
            return SessionCheck(False, "ended")
        reason = None
        if row.disabled:
            reason = "revoked"
        # Compared as stored, not validated, so a role name this code does not know cannot make the
        # check itself raise on every rerun.
        elif roles is not None and set(roles) != set(_roles_of(row.roles)):
            reason = "roles_changed"
        elif _idle_too_long(row, now):
            reason = "timeout"
        if reason:
            conn.execute(update(user_sessions).where(user_sessions.c.session_id == session_id)
                         .values(ended_at=now, end_reason="timeout" if reason == "timeout" else "revoked"))
            return SessionCheck(False, reason)
        if touch:
            # Only forward: a late rerun carrying an older clock must not move last_seen back.
            conn.execute(update(user_sessions)
                         .where(user_sessions.c.session_id == session_id, user_sessions.c.last_seen_at < now)
                         .values(last_seen_at=now))
    return SessionCheck(True)


def touch_session(engine: Engine, session_id: str | None, now: dt.datetime | None = None) -> bool:
    """Record activity on a session; call it on every rerun of the app.

    Returns
    -------
    bool
        True if the session is live (its idle clock is reset). False if it is unknown or ended;
        a session idle longer than ``SESSION_IDLE_MINUTES`` is ended now with reason ``timeout``,
        one whose user was disabled with reason ``revoked``. On False the app logs the user out
        (and records a ``timeout`` audit event). See :func:`check_session`.
    """
    return check_session(engine, session_id, now=now).live


# ---------------------------------------------------------------------------------------------
# The login sequence (the app's login form and re-authentication cookie call these)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    """The outcome of :func:`log_in`, :func:`log_in_code`, :func:`enrol_and_log_in` or
    :func:`resume_session`: who is logged in, under which server-side session; or, when ``ok`` is
    False, the one message the login form may show.

    ``next_step`` is set when the password was right and a second factor must follow: ``code``
    (ask for a TOTP or recovery code, :func:`log_in_code`) or ``enrol`` (show the QR code of a new
    secret and ask for its first code, :func:`enrol_and_log_in`). ``failure`` names the kind of
    failure for the form (``wrong_credentials``, ``wrong_code``, ``locked``, ``mfa_not_configured``).
    ``recovery_codes`` holds the ten new recovery codes after an enrolment, to show once.
    """

    ok: bool
    username: str | None
    display_name: str | None = None
    roles: tuple[str, ...] = ()
    session_id: str | None = None
    message: str = ""
    next_step: str | None = None
    failure: str | None = None
    recovery_codes: tuple[str, ...] = ()


def mfa_required_roles() -> frozenset[str]:
    """The roles of ``MFA_REQUIRED_ROLES``; ValueError naming the setting for an unknown role."""
    names = {r.strip().lower() for r in str(settings.get("MFA_REQUIRED_ROLES") or "").split(",") if r.strip()}
    unknown = sorted(names - set(ROLES))
    if unknown:
        raise ValueError(f"MFA_REQUIRED_ROLES names unknown role(s) {', '.join(unknown)}; "
                         f"use some of {', '.join(ROLES)}.")
    return frozenset(names)


def mfa_required(roles: Iterable[str] | None) -> bool:
    """True when an account with ``roles`` must log in with a second factor.

    Kiosk accounts (:func:`is_kiosk`, the display role alone) are exempt whatever the setting: a
    wall screen is left logged in for days with nobody at it to type a code, and it sees
    aggregates only, with small cells suppressed.
    """
    return not is_kiosk(roles) and bool(set(roles or ()) & mfa_required_roles())


def second_factor_step(engine: Engine, username: str, roles: Iterable[str]) -> str | None:
    """What must follow a right password: ``code`` (enrolled), ``enrol`` (a pending enrolment, or
    none yet for a role that requires one), or None (no second factor; kiosks never)."""
    roles = tuple(roles)
    if is_kiosk(roles):
        return None
    state = mfa.status(engine, username)
    if state == "enrolled":
        return "code"
    if state == "pending" or mfa_required(roles):
        return "enrol"
    return None


def _start_login(engine: Engine, name: str, roles: tuple[str, ...], display_name: str | None, *,
                 client_address: str | None, now: dt.datetime | None, second_factor: str | None = None,
                 recovery_codes: tuple[str, ...] = ()) -> Login:
    session_id = start_session(engine, name, now=now)
    try:
        audit.append_or_pass(engine, "login_ok", username=name, roles=roles, session_id=session_id,
                     client_address=client_address,
                     parameters={"second_factor": second_factor} if second_factor else None)
    except Exception:
        end_session(engine, session_id, "revoked", now=now)
        raise
    return Login(True, name, display_name or name, roles, session_id, recovery_codes=recovery_codes)


def log_in(engine: Engine, username: str, password: str, *, client_address: str | None = None,
           now: dt.datetime | None = None) -> Login:
    """The login sequence: check the password (with lockout), start a server-side session, audit.

    Every attempt is audited (``login_ok``, ``login_failed`` or ``login_locked`` with the real
    cause); the returned message is the same for every failure. A login that cannot be audited does
    not happen: its session is ended and the audit error raised.

    When a second factor must follow (:func:`second_factor_step`) no session starts: the result has
    ``ok=False`` and ``next_step`` set, and the failure count is left alone until the code is right.
    The caller keeps the username server-side and calls :func:`log_in_code` or
    :func:`enrol_and_log_in` next. When ``MFA_KEY`` is unusable such an account cannot log in, and
    the message names the setting.
    """
    result = authenticate(engine, username, password, now=now, reset_failures=False)
    if not result.ok:
        audit.append_or_pass(engine, result.event, username=result.username, client_address=client_address,
                     reason=result.reason)
        return Login(False, result.username, message=result.message, failure="wrong_credentials")
    step = second_factor_step(engine, result.username, result.roles)
    if step is not None:
        problem = mfa.key_problem(settings.get("MFA_KEY"))
        if problem:
            audit.append_or_pass(engine, "login_failed", username=result.username, client_address=client_address,
                         reason=f"second factor needed but {problem}")
            return Login(False, result.username, message=MFA_NOT_CONFIGURED.format(problem=problem),
                         failure="mfa_not_configured")
        return Login(False, result.username, result.display_name or result.username, result.roles,
                     next_step=step)
    _reset_failures(engine, result.username)
    return _start_login(engine, result.username, result.roles, result.display_name,
                        client_address=client_address, now=now)


def _second_factor_gate(engine: Engine, username: str, client_address: str | None,
                        now: dt.datetime) -> tuple[object | None, Login | None]:
    """The user's row, or the refusal of a code attempt (unknown, disabled or locked account)."""
    name = normalise_username(username)
    with engine.connect() as conn:
        row = conn.execute(select(*_PUBLIC_COLUMNS).where(users.c.username == name)).first()
    if row is None or row.disabled:
        audit.append_or_pass(engine, "login_failed", username=name, client_address=client_address,
                     reason="second factor for a missing or disabled account")
        return None, Login(False, name, message=WRONG_CODE, failure="locked")
    if row.locked_until is not None and row.locked_until > now:
        audit.append_or_pass(engine, "login_locked", username=name, client_address=client_address,
                     reason="locked (second factor)")
        return None, Login(False, name, message=WRONG_CODE, failure="locked")
    return row, None


def _code_failed(engine: Engine, row, reason: str, client_address: str | None, now: dt.datetime) -> Login:
    result = _count_failure(engine, row.username, row.locked_until, now, reason, WRONG_CODE)
    audit.append_or_pass(engine, result.event, username=row.username, client_address=client_address, reason=result.reason)
    return Login(False, row.username, message=WRONG_CODE,
                 failure="locked" if result.event == "login_locked" else "wrong_code")


def _key_failed(engine: Engine, name: str, exc: Exception, client_address: str | None) -> Login:
    audit.append_or_pass(engine, "login_failed", username=name, client_address=client_address,
                 reason=f"second factor unusable: {type(exc).__name__}")
    return Login(False, name, message=str(exc), failure="mfa_not_configured")


def log_in_code(engine: Engine, username: str, code: str, *, client_address: str | None = None,
                now: dt.datetime | None = None) -> Login:
    """The second step of the login of an enrolled user: a TOTP code, or a recovery code.

    Call it only for a username whose password :func:`log_in` accepted with ``next_step="code"``
    (the caller keeps that server-side). A wrong or reused code counts as a failed login toward the
    same lockout as a wrong password; a locked account is refused without checking the code.
    """
    now = _utc(now)
    row, refused = _second_factor_gate(engine, username, client_address, now)
    if refused:
        return refused
    try:
        check = mfa.check_code(engine, row.username, code, now=now)
    except mfa.MfaKeyError as exc:
        return _key_failed(engine, row.username, exc, client_address)
    if not check.ok:
        return _code_failed(engine, row, check.reason or "wrong code", client_address, now)
    _reset_failures(engine, row.username)
    return _start_login(engine, row.username, _roles_of(row.roles), row.display_name, client_address=client_address,
                        now=now, second_factor="recovery code" if check.recovery else "totp")


def enrol_and_log_in(engine: Engine, username: str, code: str, *, client_address: str | None = None,
                     now: dt.datetime | None = None) -> Login:
    """Confirm a pending enrolment with its first code, then log in; the ten recovery codes come
    back in ``recovery_codes`` (shown once). Same preconditions and lockout as :func:`log_in_code`.
    """
    now = _utc(now)
    row, refused = _second_factor_gate(engine, username, client_address, now)
    if refused:
        return refused
    try:
        codes = mfa.confirm_enrolment(engine, row.username, code, now=now)
    except mfa.MfaKeyError as exc:
        return _key_failed(engine, row.username, exc, client_address)
    except mfa.MfaError:
        return _code_failed(engine, row, "no pending enrolment", client_address, now)
    if codes is None:
        return _code_failed(engine, row, "wrong code (enrolment)", client_address, now)
    audit.append(engine, "mfa_enrol", username=row.username, target={"user": row.username},
                 client_address=client_address, parameters={"action": "confirm"})
    _reset_failures(engine, row.username)
    return _start_login(engine, row.username, _roles_of(row.roles), row.display_name, client_address=client_address,
                        now=now, second_factor="totp (enrolment)", recovery_codes=tuple(codes))


def pending_enrolment(engine: Engine, username: str, now: dt.datetime | None = None) -> mfa.Enrolment:
    """The secret a user in the ``enrol`` step scans: their pending one, or a new one."""
    return mfa.begin_enrolment(engine, normalise_username(username), now=now)


def reset_mfa(engine: Engine, username: str, now: dt.datetime | None = None) -> bool:
    """Forget a user's second factor (a lost phone) and end their sessions; they enrol again at the
    next login when their roles require it. The caller audits it (``mfa_reset``)."""
    name = normalise_username(username)
    if get_user(engine, name) is None:
        raise UnknownUserError(f"No user {name!r}. Hint: list users with `python -m analytics users`.")
    had = mfa.reset(engine, name)
    end_user_sessions(engine, name, "revoked", now=now)
    return had


def enrol_mfa(engine: Engine, username: str, now: dt.datetime | None = None) -> mfa.Enrolment:
    """Start (or show again) a pending enrolment for a user, for ``users mfa-enrol``; the user
    confirms it with a first code at their next login, and gets the recovery codes then."""
    user = get_user(engine, username)
    if user is None:
        raise UnknownUserError(f"No user {normalise_username(username)!r}. "
                               "Hint: list users with `python -m analytics users`.")
    if is_kiosk(user.roles):
        raise UserError(f"{user.username!r} is a kiosk (display) account, which is exempt from two-factor login.")
    return mfa.begin_enrolment(engine, user.username, now=now)


def resume_session(engine: Engine, username: str | None, session_id: str | None, *,
                   client_address: str | None = None, now: dt.datetime | None = None) -> Login:
    """Re-authenticate from a login cookie naming ``username`` and ``session_id``: only while that
    server-side session is live and belongs to that user (a cookie copied before a logout, a
    timeout or a revocation logs nobody in; the attempt is audited as ``access_denied``)."""
    name = session_user(engine, session_id, now=now)
    user = get_user(engine, name) if name is not None and name == username else None
    # A session that predates a requirement to enrol (MFA_REQUIRED_ROLES changed) is not resumed.
    if user is not None and second_factor_step(engine, user.username, user.roles) == "enrol":
        user = None
    if user is None or not touch_session(engine, session_id, now=now):
        audit.append_or_pass(engine, "access_denied", username=username, client_address=client_address,
                     reason="re-authentication cookie names no live session")
        return Login(False, username)
    return Login(True, user.username, user.display_name, user.roles, session_id)


def log_out(engine: Engine, username: str, roles: Iterable[str], session_id: str | None, *,
            client_address: str | None = None, now: dt.datetime | None = None) -> None:
    """End the session (reason ``logout``) and audit it."""
    if session_id:
        end_session(engine, session_id, "logout", now=now)
    audit.append_or_pass(engine, "logout", username=username, roles=tuple(roles), session_id=session_id,
                 client_address=client_address)


def recheck_session(engine: Engine, username: str, roles: Iterable[str], session_id: str | None, *,
                    touch: bool = True, client_address: str | None = None,
                    now: dt.datetime | None = None) -> SessionCheck:
    """:func:`check_session` for a logged-in user of the app, auditing the end of the session: a
    ``timeout`` when it idled out, an ``access_denied`` when it had been ended or revoked."""
    roles = tuple(roles)
    result = check_session(engine, session_id, roles=roles, touch=touch, now=now)
    if not result.live:
        event = "timeout" if result.reason == "timeout" else "access_denied"
        audit.append_or_pass(engine, event, username=username, roles=roles, session_id=session_id,
                     client_address=client_address, reason=f"session {result.reason}")
    return result


# ---------------------------------------------------------------------------------------------
# CLI and streamlit-authenticator helpers
# ---------------------------------------------------------------------------------------------

def read_password_from_stdin_or_prompt(stdin: IO[str] | None = None,
                                       prompt_fn: Callable[[str], str] | None = None) -> str:
    """Read a new password for the CLI, twice, and check it.

    From an interactive terminal the password is asked twice with ``prompt_fn`` (``getpass``: no
    echo). When stdin is not a terminal (a script or a pipe) its first line is the password and
    its second line the confirmation. A password is never taken from a command-line argument,
    where ``ps`` and the shell history would show it.

    Raises
    ------
    PasswordPolicyError
        If the two entries differ, one is missing, or the password breaks the policy.
    """
    stdin = stdin if stdin is not None else sys.stdin
    prompt_fn = prompt_fn or getpass.getpass
    if stdin.isatty():
        first = prompt_fn("New password: ")
        second = prompt_fn("Repeat the password: ")
    else:
        # Strip only the line ending: spaces may be part of a password.
        first = stdin.readline().rstrip("\r\n")
        second = stdin.readline().rstrip("\r\n")
        if not first or not second:
            raise PasswordPolicyError("Give the password on the first line of stdin and again on the second.")
    if first != second:
        raise PasswordPolicyError("The two passwords differ.")
    check_password_policy(first)
    return first


def credentials_for_authenticator(engine: Engine, now: dt.datetime | None = None) -> dict:
    """Users in the shape streamlit-authenticator 0.4.2 takes as ``credentials``.

    ``{"usernames": {username: {"name", "email", "password" (bcrypt hash), "roles": [...],
    "logged_in": False}}}``. Disabled and currently locked users are left out, so the library
    can neither log them in nor honour an old re-authentication cookie of theirs. Pass
    ``auto_hash=False`` to ``stauth.Authenticate``: the passwords are already hashes.
    """
    now = _utc(now)
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.username)).all()
    out: dict = {}
    for row in rows:
        if row.disabled or (row.locked_until is not None and row.locked_until > now):
            continue
        out[row.username] = {
            "name": row.display_name,
            "email": row.email,
            "password": row.password_hash,
            "roles": [r for r in row.roles.split(",") if r],
            "logged_in": False,
        }
    return {"usernames": out}


LANGUAGES = ("en", "zh")


def get_language(engine: Engine, username: str) -> str | None:
    """The UI language the user last chose ("en" or "zh"), or None if they never chose one."""
    with engine.connect() as conn:
        value = conn.execute(select(user_preferences.c.language)
                             .where(user_preferences.c.username == normalise_username(username))).scalar()
    return value if value in LANGUAGES else None


def set_language(engine: Engine, username: str, language: str, now: dt.datetime | None = None) -> None:
    """Remember the user's UI language for their next session (on any browser)."""
    if language not in LANGUAGES:
        raise UserError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    name = normalise_username(username)
    when = _utc(now)
    with engine.begin() as conn:
        if conn.execute(select(users.c.username).where(users.c.username == name)).first() is None:
            raise UnknownUserError(f"no user {name!r}")
        done = conn.execute(update(user_preferences).where(user_preferences.c.username == name)
                            .values(language=language, updated_at=when)).rowcount
        if not done:
            conn.execute(insert(user_preferences).values(username=name, language=language, updated_at=when))


__all__ = [
    "BCRYPT_ROUNDS", "LANGUAGES", "get_language", "set_language", "MAX_PASSWORD_BYTES", "MIN_PASSWORD_CHARS", "SESSION_END_REASONS",
    "WRONG_CREDENTIALS", "AuthResult", "PasswordPolicyError", "UnknownUserError", "User", "UsernameError",
    "UserError", "UserExistsError", "add_user", "authenticate", "check_password_policy",
    "credentials_for_authenticator", "disable_user", "enable_user", "end_session",
    "end_user_sessions", "get_user", "hash_password", "list_users", "normalise_username",
    "read_password_from_stdin_or_prompt", "reset_password", "session_is_live", "set_roles",
    "start_session", "touch_session", "unlock_user", "KIOSK_ROLES", "Login", "SessionCheck", "check_session",
    "is_kiosk", "log_in", "log_out", "recheck_session", "resume_session", "MFA_NOT_CONFIGURED", "WRONG_CODE",
    "enrol_and_log_in", "enrol_mfa", "log_in_code", "mfa_required", "mfa_required_roles", "pending_enrolment",
    "reset_mfa", "second_factor_step",
]
