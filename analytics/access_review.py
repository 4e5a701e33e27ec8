"""Periodic access review: who holds which permission, and a recorded sign-off.

The report lists every account with its roles, scope, two-factor status, last login, last activity,
consecutive failed logins and days since its password changed, and flags

* **dormant** accounts: no login within ``ACCESS_REVIEW_DORMANT_DAYS`` (an account that never
  logged in counts from its creation);
* **roles granted since the last review**: the roles an account holds now that it did not hold at
  the last sign-off. Each sign-off (``users review --sign-off``, or the Admin page) records in the
  audit log, as an ``access_review`` entry, the reviewer, the time and every account's roles at that
  moment; the next report compares against it. Before the first sign-off every role counts as
  granted since the last review (none was ever reviewed).

Logins and activity come from the server-side session registry (``user_sessions``: one row per
login, ``last_seen_at`` moved on every rerun).
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
from sqlalchemy import Engine, func, select

from analytics import audit, mfa, scopes, settings, users
from analytics.clock import naive_utc
from analytics.schema import user_sessions

COLUMNS = ["username", "display_name", "roles", "scope", "disabled", "mfa", "mfa_required", "last_login",
           "last_activity", "failed_logins", "days_since_password_change", "dormant", "roles_granted_since_review"]


_utc = naive_utc  # now as naive UTC (analytics.clock)


def last_review(engine: Engine) -> dict | None:
    """The last sign-off: ``{"at", "reviewer", "roles": {username: [roles]}}``, or None."""
    entries = audit.query(engine, event="access_review", limit=1)
    if entries.empty:
        return None
    entry = entries.iloc[0]
    params = json.loads(entry["parameters"] or "{}")
    roles = {a["user"]: list(a.get("roles") or []) for a in params.get("accounts", []) if "user" in a}
    return {"at": entry["at_utc"], "reviewer": entry["username"], "roles": roles}


def report(engine: Engine, now: dt.datetime | None = None, lang: str = "en") -> pd.DataFrame:
    """One row per account (disabled ones too: they still hold roles), sorted by username.

    Columns: :data:`COLUMNS`. ``mfa`` is ``enrolled``, ``pending`` or ``none``; ``last_login`` and
    ``last_activity`` are naive UTC or None; ``roles_granted_since_review`` is comma-separated;
    ``scope`` is in words of ``lang`` (:func:`analytics.scopes.scope_words`).
    """
    now = _utc(now)
    dormant_days = int(settings.get("ACCESS_REVIEW_DORMANT_DAYS"))
    if dormant_days < 1:
        raise ValueError(f"ACCESS_REVIEW_DORMANT_DAYS must be at least 1, not {dormant_days}.")
    accounts = users.list_users(engine, now=now)
    with engine.connect() as conn:
        seen = {r.username: (r.login, r.last) for r in conn.execute(
            select(user_sessions.c.username, func.max(user_sessions.c.created_at).label("login"),
                   func.max(user_sessions.c.last_seen_at).label("last")).group_by(user_sessions.c.username))}
    states = mfa.statuses(engine)
    review = last_review(engine)
    records = []
    for row in accounts.itertuples(index=False):
        roles = [r for r in row.roles.split(",") if r]
        last_login, last_activity = seen.get(row.username, (None, None))
        since = last_login or row.created_at
        previous = set(review["roles"].get(row.username, [])) if review else set()
        records.append({
            "username": row.username, "display_name": row.display_name, "roles": row.roles,
            "scope": scopes.scope_words(scopes.get_scope(engine, row.username), lang), "disabled": bool(row.disabled),
            "mfa": states.get(row.username, "none"), "mfa_required": users.mfa_required(roles),
            "last_login": last_login, "last_activity": last_activity,
            "failed_logins": int(row.failed_attempts),
            "days_since_password_change": (now - row.password_changed_at).days,
            "dormant": (now - since) > dt.timedelta(days=dormant_days),
            "roles_granted_since_review": ",".join(r for r in roles if r not in previous),
        })
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def sign_off(engine: Engine, reviewer: str, *, roles: tuple[str, ...] = (), session_id: str | None = None,
             client_address: str | None = None, now: dt.datetime | None = None) -> int:
    """Record that ``reviewer`` reviewed every account now; the audit entry's ``seq``.

    The entry holds each account's roles (the next review's baseline) and the counts of dormant
    accounts and of new role grants that were signed off.
    """
    frame = report(engine, now=now)
    accounts = [{"user": u, "roles": [r for r in rs.split(",") if r]}
                for u, rs in zip(frame["username"], frame["roles"], strict=True)]
    return audit.append(
        engine, "access_review", username=reviewer, roles=roles, session_id=session_id,
        client_address=client_address,
        target={"accounts": len(frame), "dormant": int(frame["dormant"].sum()),
                "new_grants": int((frame["roles_granted_since_review"] != "").sum())},
        parameters={"action": "sign-off", "accounts": accounts},
    )


__all__ = ["COLUMNS", "last_review", "report", "sign_off"]
