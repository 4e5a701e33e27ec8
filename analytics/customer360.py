"""Customer 360: one customer's profile, holdings, balances, contacts and scores, masked for the role.

Everything here takes the viewer and returns data already released for it
(:func:`analytics.access.release`: personal fields masked, exact balances banded for roles that
may not see them): a page never holds a raw personal value. A customer outside the viewer's scope
reads "No customer X", exactly like a customer that does not exist, and the attempt is audited as
``access_denied``. The one way to a raw value is :func:`unmask_field`, which only roles that may
unmask can use, with a written reason, and which writes an ``unmask`` entry to the audit log
*before* the value is returned.

Lookup (:func:`find`) is by customer id, resident ID number or mobile number, and by exact match
only: a partial or wildcard search would let a masked role fish for the hidden values (the policy's
"no inference" rule), so ``%`` and ``_`` are ordinary characters and only spaces are dropped. Name
plus branch (:func:`candidates`) lists at most :data:`MAX_CANDIDATES` customers, names masked for
the role. Each lookup is audited with the kind of key, never the value typed; a customer outside
the viewer's scope is not found, exactly like one that does not exist.
"""

from __future__ import annotations

import re

import pandas as pd
from sqlalchemy import Engine, inspect, select

from analytics import access, audit
from analytics.access import Viewer
from analytics.consent import live_consent_condition
from analytics.errors import AnalyticsError
from analytics.schema import contacts, customer_monthly, customers, holdings, products
from analytics.store import read_frame

CUSTOMER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,20}$")

PROFILE_COLUMNS = (
    "customer_id", "name", "gender", "birth_date", "id_type", "id_number", "id_expiry_date", "phone",
    "email", "address", "city", "province", "branch_id", "relationship_manager", "customer_type",
    "occupation", "income_band", "onboarding_channel", "open_date", "risk_tolerance", "risk_assessed_at",
    "credit_grade", "status", "marketing_consent", "updated_at",
)


class CustomerNotFound(AnalyticsError):
    """No customer with that id."""


def _check_id(customer_id: str) -> str:
    cid = (customer_id or "").strip()
    if not CUSTOMER_ID_PATTERN.match(cid):
        raise CustomerNotFound("Enter a customer id (letters and digits, e.g. C100000123).", key="errors.enter_customer_id")
    return cid


def _visible(engine: Engine, customer_id: str, viewer: Viewer) -> str:
    """The checked id of a customer that exists and is in ``viewer``'s scope.

    Raises :class:`CustomerNotFound` otherwise, with the same words for both cases (a scoped user
    must not learn that a customer exists elsewhere); an out-of-scope attempt is audited as
    ``access_denied`` first.
    """
    access.require_rows(viewer)
    cid = _check_id(customer_id)
    with engine.connect() as conn:
        row = conn.execute(select(customers.c.customer_id, viewer.scope_condition(customers).label("in_scope"))
                           .where(customers.c.customer_id == cid)).first()
    if row is not None and not row.in_scope:
        audit.append(engine, "access_denied", username=viewer.username, roles=viewer.roles,
                     target={"customer_ids": [cid], "page": "customer_360"},
                     reason="customer outside the user's scope")
    if row is None or not row.in_scope:
        raise CustomerNotFound(f"No customer {cid}.", key="errors.no_customer", id=cid)
    return cid


# Kinds of key a customer is looked up by, and the customers column each one matches.
LOOKUP_KEYS: dict[str, str] = {"customer_id": "customer_id", "id_number": "id_number", "mobile": "phone"}
MAX_CANDIDATES = 20
CANDIDATE_COLUMNS = ("customer_id", "name", "branch_id", "gender", "status")
_SPACES = re.compile(r"\s+")


def normalise_key(value) -> str:
    """``value`` without its spaces (``138 0013 8000`` → ``13800138000``); nothing else changes."""
    return _SPACES.sub("", str(value or ""))


def _audit_lookup(engine: Engine, viewer: Viewer, kind: str, matches: int, **where) -> None:
    # The kind of key and how many customers matched: never the value typed.
    audit.append(engine, "filter", username=viewer.username, roles=viewer.roles,
                 target={"page": "customer_360", "lookup": kind, "matches": int(matches)}, **where)


def _in_scope(engine: Engine, condition, viewer: Viewer, kind: str) -> list[str]:
    """Ids of the customers meeting ``condition`` that ``viewer`` may see, at most
    ``MAX_CANDIDATES`` (sorted); an out-of-scope match is audited as ``access_denied``."""
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.customer_id, viewer.scope_condition(customers).label("in_scope"))
                            .where(condition).order_by(customers.c.customer_id).limit(MAX_CANDIDATES * 5)).all()
    hidden = [r.customer_id for r in rows if not r.in_scope]
    if hidden:
        audit.append(engine, "access_denied", username=viewer.username, roles=viewer.roles,
                     target={"customer_ids": hidden[:MAX_CANDIDATES], "page": "customer_360", "lookup": kind},
                     reason="customer outside the user's scope")
    return [r.customer_id for r in rows if r.in_scope][:MAX_CANDIDATES]


def _frame_of(engine: Engine, ids: list[str], *, viewer: Viewer) -> pd.DataFrame:
    frame = read_frame(engine, select(*[customers.c[c] for c in CANDIDATE_COLUMNS])
                       .where(customers.c.customer_id.in_(ids or [""])).order_by(customers.c.customer_id))
    return access.release(frame, viewer)


def find(engine: Engine, kind: str, value: str, *, viewer: Viewer, session_id: str | None = None,
         client_address: str | None = None) -> pd.DataFrame:
    """The customers in ``viewer``'s scope whose ``kind`` of key (:data:`LOOKUP_KEYS`) equals
    ``value`` exactly, spaces aside: a frame of :data:`CANDIDATE_COLUMNS`, released for the viewer
    (usually one row; a resident ID or mobile on file twice gives both). Empty when there is none,
    or none the viewer may see: the two read the same. Audited with ``kind``, not ``value``.
    """
    access.require_rows(viewer)
    if kind not in LOOKUP_KEYS:
        raise ValueError(f"Look up by one of {', '.join(LOOKUP_KEYS)}, not {kind!r}.")
    key = normalise_key(value)
    ids: list[str] = []
    if key and len(key) <= 32:  # the longest key stored (String(32)); longer cannot match
        ids = _in_scope(engine, customers.c[LOOKUP_KEYS[kind]] == key, viewer, kind)
    _audit_lookup(engine, viewer, kind, len(ids), session_id=session_id, client_address=client_address)
    return _frame_of(engine, ids, viewer=viewer)


def candidates(engine: Engine, name: str, branch_id: str, *, viewer: Viewer, session_id: str | None = None,
               client_address: str | None = None) -> pd.DataFrame:
    """The customers in ``viewer``'s scope at ``branch_id`` whose full name is exactly ``name``
    (spaces at either end dropped): at most :data:`MAX_CANDIDATES`, names masked for the role.
    Audited as a ``name_branch`` lookup, with neither value."""
    access.require_rows(viewer)
    name, branch = str(name or "").strip(), normalise_key(branch_id)
    ids: list[str] = []
    if name and branch:
        ids = _in_scope(engine, (customers.c.name == name) & (customers.c.branch_id == branch), viewer,
                        "name_branch")
    _audit_lookup(engine, viewer, "name_branch", len(ids), session_id=session_id, client_address=client_address)
    return _frame_of(engine, ids, viewer=viewer)


def visible_id(engine: Engine, customer_id: str, *, viewer: Viewer) -> str:
    """The checked id of a customer that exists and is in ``viewer``'s scope (else
    :class:`CustomerNotFound`, an out-of-scope attempt audited): for an unmask request."""
    return _visible(engine, customer_id, viewer)


def profile(engine: Engine, customer_id: str, *, viewer: Viewer) -> pd.DataFrame:
    """The customer's record as a one-row frame, released for ``viewer``; ``marketing_consent`` is
    the live marketing consent now (from ``consents``)."""
    cid = _visible(engine, customer_id, viewer)
    columns = [customers.c[c] for c in PROFILE_COLUMNS if c != "marketing_consent"]
    frame = read_frame(engine, select(*columns, live_consent_condition(customers.c.customer_id, "marketing")
                                      .label("marketing_consent"))
                       .where(customers.c.customer_id == cid))
    return access.release(frame[list(PROFILE_COLUMNS)], viewer)


def holdings_of(engine: Engine, customer_id: str, *, viewer: Viewer) -> pd.DataFrame:
    """The customer's holdings with product details, released for ``viewer`` (account numbers
    masked; balances banded for roles without exact balances)."""
    cid = _visible(engine, customer_id, viewer)
    stmt = (select(holdings.c.customer_id, holdings.c.account_number, products.c.name.label("product_name"),
                   products.c.category, products.c.risk_level, holdings.c.opened_on, holdings.c.closed_on,
                   holdings.c.balance)
            .join(products, products.c.product_id == holdings.c.product_id)
            .where(holdings.c.customer_id == cid).order_by(holdings.c.opened_on))
    return access.release(read_frame(engine, stmt), viewer)


def monthly(engine: Engine, customer_id: str, *, viewer: Viewer) -> pd.DataFrame:
    """The customer's monthly balances and activity, oldest first: exact amounts for roles that
    may see them, bands (``aum_band``, ...) for the others."""
    cid = _visible(engine, customer_id, viewer)
    stmt = (select(customer_monthly.c.month, customer_monthly.c.aum, customer_monthly.c.deposit_balance,
                   customer_monthly.c.loan_balance, customer_monthly.c.txn_count,
                   customer_monthly.c.txn_amount, customer_monthly.c.digital_logins)
            .where(customer_monthly.c.customer_id == cid).order_by(customer_monthly.c.month))
    return access.release(read_frame(engine, stmt), viewer)


def contacts_of(engine: Engine, customer_id: str, *, viewer: Viewer) -> pd.DataFrame:
    """The customer's contacts and complaints, newest first."""
    cid = _visible(engine, customer_id, viewer)
    stmt = (select(contacts.c.contacted_at, contacts.c.channel, contacts.c.kind, contacts.c.category,
                   contacts.c.resolved)
            .where(contacts.c.customer_id == cid).order_by(contacts.c.contacted_at.desc()))
    return access.release(read_frame(engine, stmt), viewer)


# Result tables of a run that hold one row per customer, and the columns a 360 view shows.
SCORE_SOURCES = {
    "customer_segments": ("rfm_segment", "value_tier", "cluster_name", "lifecycle_stage"),
    # the margin CLV pages show (customer_segments keeps the lifecycle-stage one the churn stage used)
    "customer_clv_margin": ("clv_margin_3y",),
    "churn_scores": ("churn_probability", "value_at_risk", "reason_1", "reason_2", "reason_3"),
    "cross_sell_customer": ("next_best_category", "next_best_product_id", "next_best_expected_value",
                            "no_offer_reason"),
    "customer_clv_txn": ("p_alive", "clv_txn_12m"),
}


def scores(engine: Engine, run_id: int | None, customer_id: str, *, viewer: Viewer) -> dict:
    """The customer's analytic results in a run, from whichever result tables exist (model
    outputs, no balances: the same for every role that may open the customer)."""
    cid = _visible(engine, customer_id, viewer)
    out: dict = {}
    if run_id is None:
        return out
    present = set(inspect(engine).get_table_names())
    from analytics.schema import metadata

    for table_name, wanted in SCORE_SOURCES.items():
        if table_name not in present or table_name not in metadata.tables:
            continue
        t = metadata.tables[table_name]
        cols = [t.c[c] for c in wanted if c in t.c]
        if not cols or "customer_id" not in t.c:
            continue
        row = read_frame(engine, select(*cols).where(t.c.run_id == run_id, t.c.customer_id == cid).limit(1))
        if not row.empty:
            out.update({k: v for k, v in row.iloc[0].items() if pd.notna(v)})
    return out


def unmask_field(engine: Engine, customer_id: str, field: str, *, viewer: Viewer, reason: str,
                 session_id: str | None = None, client_address: str | None = None,
                 approval_id: int | None = None) -> str | None:
    """Reveal one personal field of one customer in ``viewer``'s scope, for a role that may unmask,
    with a reason.

    The ``unmask`` audit entry is written first; if it cannot be written, nothing is revealed. The
    app reaches this only through an approved request (:func:`analytics.approvals.consume_unmask`),
    whose number the entry names.
    """
    cleaned = access.check_unmask(viewer.roles, field, reason)
    if field == "account_number":
        raise access.AccessDenied("Unmask an account number from the holdings list, one account at a time.",
                                  key="errors.unmask_account_from_holdings")
    cid = _visible(engine, customer_id, viewer)
    target = {"customer_ids": [cid], "fields": [field]}
    if approval_id is not None:
        target["approval_id"] = int(approval_id)
    audit.append(engine, "unmask", username=viewer.username, roles=viewer.roles, session_id=session_id,
                 client_address=client_address, target=target, reason=cleaned)
    with engine.connect() as conn:
        value = conn.execute(select(customers.c[field]).where(customers.c.customer_id == cid)).scalar()
    return None if value is None else str(value)
