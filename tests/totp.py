"""What a test's authenticator app does: enrol a user for two-factor login through the real
enrolment path (analytics.mfa) and give the code a login needs next.

A code is never accepted twice and only a later time-step is accepted after an earlier one, so a
test that logs one user in many times within 30 s runs out of codes (the current step and the next,
the skew allows). The authenticator then enrols the user again, as `users mfa-reset` and a new
enrolment would: a fresh secret whose first code is spent, leaving the next step free. It never
waits for the clock and nothing in the product is bypassed.
"""

from __future__ import annotations

import datetime as dt

import pyotp
from sqlalchemy import select

from analytics import mfa
from analytics.schema import user_mfa
from analytics.store import make_engine


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * mfa.STEP_SECONDS)


def enrol(engine, username: str) -> list[str]:
    """Enrol ``username`` (a new secret confirmed with its first code); the recovery codes."""
    mfa.reset(engine, username)
    secret = mfa.begin_enrolment(engine, username).secret
    codes = mfa.confirm_enrolment(engine, username, code_at(secret, mfa.step_of(_now())))
    assert codes is not None, "the fresh secret's own code was refused"
    return codes


def first_code(secret: str) -> str:
    """The code of the current step for a secret just shown at enrolment (nothing spent yet)."""
    return code_at(secret, mfa.step_of(_now()))


def next_code(url_or_engine, username: str) -> str:
    """A code the app will accept for ``username`` now: the current step, else the next one, both
    later than the last step used; when both are spent, after enrolling the user again."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    with engine.connect() as conn:
        row = conn.execute(select(user_mfa).where(user_mfa.c.username == username)).first()
    if row is None or row.confirmed_at is None:
        raise AssertionError(f"{username} is not enrolled: read the key the enrolment form shows")
    secret = mfa.decrypt_secret(username, row.secret_enc)
    current = mfa.step_of(_now())
    for step in (current, current + 1):
        if row.last_step is None or step > row.last_step:
            return code_at(secret, step)
    enrol(engine, username)
    return next_code(engine, username)
