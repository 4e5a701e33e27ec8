"""Consent by purpose: which customers agreed to be used for what, and since when.

The ``consents`` table holds one row per grant: customer, purpose (``marketing``, ``profiling``,
``third_party``), ``granted_at`` and, once withdrawn, ``withdrawn_at``. A consent is **live** at
time ``t`` when ``granted_at <= t`` and it is not withdrawn by ``t``.

Readers of contact lists (campaigns, cross-sell, churn early warning, top-CLV) check live consent
in their own SQL (:func:`live_consent_sql`) at the moment the list is read, so a withdrawal takes
effect the next time a list is read, not at the next refresh. Risk and compliance lists do not
check consent: oversight is a legal duty, not marketing.

``customers.marketing_consent`` is the legacy flag of the bank's extract. It is not read for any
decision; :func:`sync_marketing_flags` turns it into ``consents`` rows when customers are loaded
(a true flag for a customer with no marketing consent on record becomes a grant; a false flag
withdraws a live one), so a bank that only has the flag keeps working. A recorded withdrawal is
never undone by a flag: a new grant must come as a ``consents`` row.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, text

from analytics.access import CONSENT_PURPOSES
from analytics.runs import utcnow


def _check_purpose(purpose: str) -> str:
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"Unknown consent purpose {purpose!r}. Known purposes: {', '.join(CONSENT_PURPOSES)}.")
    return purpose


def live_consent_sql(customer_column: str, purpose: str, now: dt.datetime | None = None) -> tuple[str, dict]:
    """A SQL condition true when the customer in ``customer_column`` has a live consent for
    ``purpose`` at ``now`` (default: the current UTC time), with its bound parameters.

    ``customer_column`` is a column reference written by the caller (``c.customer_id``), never
    user input.
    """
    _check_purpose(purpose)
    return (
        "EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = " + customer_column
        + " AND k.purpose = :consent_purpose AND k.granted_at <= :consent_now"
        " AND (k.withdrawn_at IS NULL OR k.withdrawn_at > :consent_now))",
        {"consent_purpose": purpose, "consent_now": now or utcnow()},
    )


def live_consent_condition(customer_id_column, purpose: str, now: dt.datetime | None = None):
    """The SQLAlchemy Core twin of :func:`live_consent_sql`: ``EXISTS`` a live consent for the
    customer in ``customer_id_column`` (a Core column)."""
    from sqlalchemy import and_, exists, or_, select

    from analytics.schema import consents

    _check_purpose(purpose)
    now = now or utcnow()
    k = consents.c
    return exists(select(k.consent_id).where(and_(
        k.customer_id == customer_id_column, k.purpose == purpose, k.granted_at <= now,
        or_(k.withdrawn_at.is_(None), k.withdrawn_at > now))))


def grant(engine: Engine, customer_id: str, purpose: str, at: dt.datetime | None = None) -> None:
    """Record a grant (a no-op when the customer already has a live consent for ``purpose``)."""
    at = at or utcnow()
    live, params = live_consent_sql(":customer_id", purpose, at)
    with engine.begin() as conn:
        if conn.execute(text(f"SELECT {live}"), {**params, "customer_id": str(customer_id)}).scalar():
            return
        conn.execute(text("INSERT INTO consents (customer_id, purpose, granted_at) VALUES (:c, :p, :at)"),
                     {"c": str(customer_id), "p": purpose, "at": at})


def withdraw(engine: Engine, customer_id: str, purpose: str, at: dt.datetime | None = None) -> int:
    """Withdraw every live consent of the customer for ``purpose`` at ``at``; returns how many."""
    _check_purpose(purpose)
    at = at or utcnow()
    with engine.begin() as conn:
        return conn.execute(text(
            "UPDATE consents SET withdrawn_at = :at WHERE customer_id = :c AND purpose = :p "
            "AND granted_at <= :at AND (withdrawn_at IS NULL OR withdrawn_at > :at)"),
            {"at": at, "c": str(customer_id), "p": purpose}).rowcount


def sync_marketing_flags(engine: Engine, at: dt.datetime | None = None, conn=None) -> dict[str, int]:
    """Bring ``consents`` in line with the legacy ``customers.marketing_consent`` flags.

    A customer flagged true with no marketing consent on record (live or withdrawn) gets one granted
    at ``at``; a customer flagged false loses a live one (withdrawn at ``at``). A withdrawal on
    record is not overridden by a stale true flag. Returns the counts
    ``{"granted": n, "withdrawn": m}``. Set-based: two statements, whatever the store's size.
    """
    at = at or utcnow()
    params = {"at": at}

    def run(c) -> dict[str, int]:
        granted = c.execute(text(
            "INSERT INTO consents (customer_id, purpose, granted_at) "
            "SELECT c.customer_id, 'marketing', :at FROM customers c WHERE c.marketing_consent AND NOT EXISTS "
            "(SELECT 1 FROM consents k WHERE k.customer_id = c.customer_id AND k.purpose = 'marketing')"),
            params).rowcount
        withdrawn = c.execute(text(
            "UPDATE consents SET withdrawn_at = :at WHERE purpose = 'marketing' AND granted_at <= :at "
            "AND (withdrawn_at IS NULL OR withdrawn_at > :at) AND customer_id IN "
            "(SELECT customer_id FROM customers WHERE NOT marketing_consent)"), params).rowcount
        return {"granted": int(granted or 0), "withdrawn": int(withdrawn or 0)}

    if conn is not None:
        return run(conn)
    with engine.begin() as c:
        return run(c)


__all__ = ["grant", "live_consent_condition", "live_consent_sql", "sync_marketing_flags", "withdraw"]
