"""Four-eyes approval: unmasking a field, and any export above ``EXPORT_APPROVAL_ROWS`` rows, need a
second person.

A request (:func:`request_unmask`, :func:`request_export`) is a row of ``approval_requests``: who,
what (the field and the customer, or the export's definition, its row count and the SHA-256 of the
file), why, and a status:

``pending``   waiting for a decision; it expires ``APPROVAL_TTL_HOURS`` after it was made
``approved``  a user with the approving role (:data:`APPROVER_ROLE`), never the requester, said
              yes with a comment; the requester may use it **once** within ``APPROVAL_TTL_HOURS``
              of the approval (:func:`consume_unmask` shows the value, :func:`consume_export`
              returns the file)
``rejected``  said no, with a comment
``expired``   not decided, or not used, in time (:func:`expire_due`)

**Bound to what was asked.** On approval, ``approval_mac`` = HMAC-SHA256(audit key, the request's
id, kind, requester, definition, row count, file hash, reason, decision and expiry) is stored. A use
recomputes it, and for an export also the file's SHA-256, so a request changed after its approval
(another customer or field, another definition, a longer expiry, a swapped file) is refused. The
single-use marker ``used_at`` is set by a conditional UPDATE (only one of two concurrent uses
wins), and a use is also refused when the audit log already holds an unmask or export naming the
approval, so clearing ``used_at`` in the database does not buy a second use.

**Exports.** The file is built, released for the requester by the data layer, when the request is
made: the approver decides on exactly those bytes. Its manifest (:mod:`analytics.export_manifests`)
is recorded then, and the request names it. The file is kept in the request until it is downloaded,
rejected or expires, then cleared.

Every step is audited: ``approval_request``, ``approval_decision``, ``approval_expire``,
``approval_refused``; a use writes the ``unmask`` or ``export`` entry naming ``approval_id``.
Refusals raise :class:`ApprovalRefused` (or :class:`analytics.access.AccessDenied` for a role
that may not act) with one line naming the problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, and_, func, insert, or_, select, update

from analytics import access, audit, customer360, export_manifests, exports, settings
from analytics.access import Viewer
from analytics.errors import AnalyticsError
from analytics.runs import utcnow
from analytics.schema import approval_requests, audit_log
from analytics.store import read_frame

APPROVER_ROLE = "compliance"
KINDS = ("unmask", "export")
STATUSES = ("pending", "approved", "rejected", "expired")
FORMATS = ("csv", "xlsx")
MAX_COMMENT_CHARS = 500

LIST_COLUMNS = ("request_id", "kind", "requested_by", "requested_at", "definition", "rows", "reason", "status",
                "expires_at", "decided_by", "decided_at", "comment", "used_at", "manifest_id")


class ApprovalRefused(AnalyticsError):
    """A request cannot be made, decided or used as asked (one line says why)."""


@dataclass(frozen=True)
class ApprovedFile:
    """An approved export, fetched once: its bytes, file name, MIME type, rows and SHA-256."""

    request_id: int
    data: bytes
    file_name: str
    mime: str
    rows: int
    sha256: str


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def ttl_hours() -> int:
    """``APPROVAL_TTL_HOURS`` (at least one)."""
    hours = int(settings.get("APPROVAL_TTL_HOURS"))
    if hours < 1:
        raise ApprovalRefused(f"APPROVAL_TTL_HOURS={hours} must be at least 1.")
    return hours


def ttl() -> dt.timedelta:
    """``APPROVAL_TTL_HOURS`` as a timedelta."""
    return dt.timedelta(hours=ttl_hours())


def needs_approval(rows: int) -> bool:
    """True when an export of ``rows`` rows must be approved first (more than ``EXPORT_APPROVAL_ROWS``)."""
    return int(rows) > int(settings.get("EXPORT_APPROVAL_ROWS"))


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _iso(value) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=None).isoformat(timespec="seconds")


def _mac(engine: Engine, row: Mapping) -> str:
    """The HMAC that binds an approval to exactly what was requested and decided."""
    bound = {
        "request_id": int(row["request_id"]), "kind": row["kind"], "requested_by": row["requested_by"],
        "requested_at": _iso(row["requested_at"]), "definition": row["definition"],
        "rows": None if row["rows"] is None else int(row["rows"]), "file_sha256": row["file_sha256"],
        "reason": row["reason"], "manifest_id": row["manifest_id"], "decided_by": row["decided_by"],
        "decided_at": _iso(row["decided_at"]), "expires_at": _iso(row["expires_at"]),
    }
    msg = ("approval-v1:" + _canonical(bound)).encode("utf-8")
    return hmac.new(audit.audit_key(engine), msg, hashlib.sha256).hexdigest()


def _row(engine: Engine, request_id) -> dict:
    try:
        rid = int(request_id)
    except (TypeError, ValueError):
        raise ApprovalRefused(f"{request_id!r} is not a request number.", key="errors.approval.not_a_number") from None
    with engine.connect() as conn:
        row = conn.execute(select(approval_requests).where(approval_requests.c.request_id == rid)).mappings().first()
    if row is None:
        raise ApprovalRefused(f"No request #{rid}.", key="errors.approval.no_request", id=rid)
    return dict(row)


def get(engine: Engine, request_id: int) -> dict:
    """One request as a dict (every column but the file itself)."""
    row = _row(engine, request_id)
    row.pop("payload", None)
    return row


def _clean_reason(reason: str | None) -> str:
    cleaned = (reason or "").strip()
    if len(cleaned) < access.MIN_UNMASK_REASON_CHARS:
        raise ApprovalRefused(f"Give a reason of at least {access.MIN_UNMASK_REASON_CHARS} characters "
                              "(the approver reads it; it is written to the audit log).", key="errors.reason_too_short",
                              n=access.MIN_UNMASK_REASON_CHARS)
    # A reason is free text: an email, an ID or a phone number typed into it is masked.
    return audit.scrub_text(cleaned)


def _audit(engine: Engine, event: str, viewer: Viewer | None, *, session_id=None, client_address=None, **fields):
    audit.append(engine, event, username=viewer.username if viewer else None,
                 roles=viewer.roles if viewer else (), session_id=session_id, client_address=client_address,
                 **fields)


def _refuse(engine: Engine, viewer: Viewer, row: dict | None, problem: str, message: str, *, session_id=None,
            client_address=None):
    target = {"approval_id": int(row["request_id"]), "kind": row["kind"]} if row else {}
    _audit(engine, "approval_refused", viewer, session_id=session_id, client_address=client_address,
           target={**target, "problem": problem})
    raise ApprovalRefused(message, key=f"errors.approval.{problem}", id=row["request_id"] if row else "")


def _insert(engine: Engine, values: dict) -> int:
    with engine.begin() as conn:
        result = conn.execute(insert(approval_requests).values(**values))
        return int(result.inserted_primary_key[0])


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

def request_unmask(engine: Engine, customer_id: str, field: str, *, viewer: Viewer, reason: str,
                   session_id: str | None = None, client_address: str | None = None,
                   now: dt.datetime | None = None) -> int:
    """Ask to see one personal field of one customer in ``viewer``'s scope; returns the request number.

    Only a role that may unmask can ask, with a reason of at least ``MIN_UNMASK_REASON_CHARS``
    characters; the customer must be in the viewer's scope (else "No customer X", audited).
    """
    cleaned = access.check_unmask(viewer.roles, field, reason)
    if field == "account_number":
        raise access.AccessDenied("Unmask an account number from the holdings list, one account at a time.")
    cid = customer360.visible_id(engine, customer_id, viewer=viewer)
    now = now or utcnow()
    rid = _insert(engine, {"kind": "unmask", "requested_by": viewer.username, "requested_at": now,
                           "definition": _canonical({"customer_id": cid, "field": field}),
                           "reason": audit.scrub_text(cleaned), "status": "pending", "expires_at": now + ttl()})
    _audit(engine, "approval_request", viewer, session_id=session_id, client_address=client_address,
           target={"approval_id": rid, "kind": "unmask", "customer_ids": [cid], "fields": [field]}, reason=cleaned)
    return rid


def request_export(engine: Engine, frame: pd.DataFrame, *, viewer: Viewer, stem: str, fmt: str,
                   context: Mapping | None, reason: str, session_id: str | None = None,
                   client_address: str | None = None, now: dt.datetime | None = None) -> int:
    """Ask to download ``frame`` (already released for ``viewer`` by the data layer) as CSV or Excel.

    The file is built now (``EXPORT_MAX_ROWS`` applies) and kept with the request, with its
    definition (file name, format, the page's filters), row count and SHA-256; its manifest is
    recorded now and named by the request. Returns the request number.
    """
    if fmt not in FORMATS:
        raise ApprovalRefused(f"Unknown export format {fmt!r}; use csv or xlsx.", key="errors.approval.format")
    cleaned = _clean_reason(reason)
    export = (exports.to_excel if fmt == "xlsx" else exports.to_csv)(frame, stem)
    manifest_id = None
    customers = None
    if "customer_id" in frame.columns:
        ids = frame["customer_id"].astype(str)
        customers = int(ids.nunique())
        manifest_id = export_manifests.record(engine, username=viewer.username, file_sha256=export.sha256,
                                              rows=export.rows, customer_ids=ids)
    definition = {"file_name": export.file_name, "format": fmt, "mime": export.mime,
                  "context": audit.safe_parameters(context or {}), "customers": customers}
    now = now or utcnow()
    rid = _insert(engine, {"kind": "export", "requested_by": viewer.username, "requested_at": now,
                           "definition": _canonical(definition), "rows": export.rows, "file_sha256": export.sha256,
                           "payload": export.data, "reason": cleaned, "status": "pending",
                           "expires_at": now + ttl(), "manifest_id": manifest_id})
    target = {"approval_id": rid, "kind": "export", "export": export.file_name, "rows": export.rows,
              "sha256": export.sha256}
    if manifest_id:
        target.update(manifest_id=manifest_id, customers=customers)
    _audit(engine, "approval_request", viewer, session_id=session_id, client_address=client_address,
           target=target, parameters=context or {}, reason=cleaned)
    return rid


# ---------------------------------------------------------------------------------------------
# Decisions and expiry
# ---------------------------------------------------------------------------------------------

def expire_due(engine: Engine, *, now: dt.datetime | None = None) -> list[int]:
    """Mark every pending or approved-but-unused request past its expiry as ``expired`` (its file
    is cleared), audit each, and return their numbers."""
    now = now or utcnow()
    r = approval_requests.c
    due = and_(r.status.in_(("pending", "approved")), r.used_at.is_(None), r.expires_at <= now)
    with engine.begin() as conn:
        rows = conn.execute(select(r.request_id, r.kind).where(due).order_by(r.request_id)).all()
        if rows:
            conn.execute(update(approval_requests).where(due, r.request_id.in_([x.request_id for x in rows]))
                         .values(status="expired", payload=None))
    for x in rows:
        audit.append(engine, "approval_expire", target={"approval_id": int(x.request_id), "kind": x.kind})
    return [int(x.request_id) for x in rows]


def _decide(engine: Engine, request_id, decision: str, *, approver: Viewer, comment: str,
            session_id=None, client_address=None, now=None) -> None:
    now = now or utcnow()
    expire_due(engine, now=now)
    row = _row(engine, request_id)
    ctx = {"session_id": session_id, "client_address": client_address}
    if APPROVER_ROLE not in access.normalise_roles(approver.roles):
        _refuse(engine, approver, row, "not_approver",
                f"Only the {APPROVER_ROLE} role may approve or reject requests.", **ctx)
    if row["requested_by"] == approver.username:
        _refuse(engine, approver, row, "self_approval",
                f"You cannot decide your own request #{row['request_id']}: a second person must.", **ctx)
    if row["status"] != "pending":
        _refuse(engine, approver, row, "not_pending",
                f"Request #{row['request_id']} is {row['status']}: only a pending request can be decided.", **ctx)
    cleaned = (comment or "").strip()
    if not cleaned:
        raise ApprovalRefused("Write a comment for the decision (it is kept with the request and audited).",
                              key="errors.approval.comment_required")
    if len(cleaned) > MAX_COMMENT_CHARS:
        raise ApprovalRefused(f"The comment is longer than {MAX_COMMENT_CHARS} characters.",
                              key="errors.approval.comment_too_long", n=MAX_COMMENT_CHARS)
    cleaned = audit.scrub_text(cleaned)
    values = {"status": decision, "decided_by": approver.username, "decided_at": now, "comment": cleaned}
    if decision == "approved":
        values["expires_at"] = now + ttl()
        values["approval_mac"] = _mac(engine, {**row, **values})
    else:
        values["payload"] = None
    r = approval_requests.c
    with engine.begin() as conn:
        done = conn.execute(update(approval_requests)
                            .where(r.request_id == row["request_id"], r.status == "pending").values(**values)).rowcount
    if done != 1:  # decided by someone else in between
        raise ApprovalRefused(f"Request #{row['request_id']} was decided by someone else meanwhile.",
                              key="errors.approval.decided_meanwhile", id=row["request_id"])
    _audit(engine, "approval_decision", approver, target={"approval_id": int(row["request_id"]), "kind": row["kind"],
                                                          "decision": decision, "requested_by": row["requested_by"]},
           reason=cleaned, **ctx)


def approve(engine: Engine, request_id: int, *, approver: Viewer, comment: str, session_id: str | None = None,
            client_address: str | None = None, now: dt.datetime | None = None) -> None:
    """Approve a pending request: ``approver`` holds the approving role and is not the requester."""
    _decide(engine, request_id, "approved", approver=approver, comment=comment, session_id=session_id,
            client_address=client_address, now=now)


def reject(engine: Engine, request_id: int, *, approver: Viewer, comment: str, session_id: str | None = None,
           client_address: str | None = None, now: dt.datetime | None = None) -> None:
    """Reject a pending request (its export file is cleared)."""
    _decide(engine, request_id, "rejected", approver=approver, comment=comment, session_id=session_id,
            client_address=client_address, now=now)


# ---------------------------------------------------------------------------------------------
# Use (once)
# ---------------------------------------------------------------------------------------------

def _used_in_audit(engine: Engine, request_id: int) -> bool:
    """True when the audit log already holds an unmask or export made with this approval."""
    a = audit_log.c
    pattern = f'"approval_id":{int(request_id)}'
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(audit_log).where(
            a.event.in_(("unmask", "export")),
            or_(a.target.like(f"%{pattern},%"), a.target.like(f"%{pattern}}}%")))).scalar()
    return bool(n)


def _usable(engine: Engine, request_id, kind: str, viewer: Viewer, now: dt.datetime, ctx: dict) -> dict:
    """The request, checked: the viewer's own, of ``kind``, approved, unexpired, unused, untampered."""
    expire_due(engine, now=now)
    row = _row(engine, request_id)
    rid = row["request_id"]
    if row["requested_by"] != viewer.username:
        _refuse(engine, viewer, row, "not_requester",
                f"Request #{rid} is not yours: only the requester can use an approval.", **ctx)
    if row["kind"] != kind:
        _refuse(engine, viewer, row, "wrong_kind", f"Request #{rid} is an {row['kind']} request, not {kind}.", **ctx)
    if row["status"] == "expired":
        _refuse(engine, viewer, row, "expired",
                f"Approval #{rid} has expired (APPROVAL_TTL_HOURS={int(settings.get('APPROVAL_TTL_HOURS'))}); "
                "make a new request.", **ctx)
    if row["status"] != "approved":
        _refuse(engine, viewer, row, "not_approved", f"Request #{rid} is {row['status']}, not approved.", **ctx)
    if row["used_at"] is not None or _used_in_audit(engine, rid):
        _refuse(engine, viewer, row, "used", f"Approval #{rid} was already used: an approval is good for one use.",
                **ctx)
    mac = row["approval_mac"] or ""
    if not hmac.compare_digest(mac, _mac(engine, row)):
        _refuse(engine, viewer, row, "tampered",
                f"Approval #{rid} does not match what was approved (the request was changed afterwards): refused.",
                **ctx)
    if kind == "export" and (row["payload"] is None
                             or hashlib.sha256(row["payload"]).hexdigest() != row["file_sha256"]):
        _refuse(engine, viewer, row, "tampered",
                f"Approval #{rid} does not match what was approved (the file was changed afterwards): refused.",
                **ctx)
    if pd.Timestamp(row["expires_at"]) <= pd.Timestamp(now):  # expire_due has just run; a guard for clock edges
        _refuse(engine, viewer, row, "expired", f"Approval #{rid} has expired; make a new request.", **ctx)
    return row


def _mark_used(engine: Engine, row: dict, viewer: Viewer, now: dt.datetime, ctx: dict) -> None:
    r = approval_requests.c
    with engine.begin() as conn:
        done = conn.execute(update(approval_requests)
                            .where(r.request_id == row["request_id"], r.status == "approved", r.used_at.is_(None),
                                   r.expires_at > now)
                            .values(used_at=now, payload=None)).rowcount
    if done != 1:
        _refuse(engine, viewer, row, "used",
                f"Approval #{row['request_id']} was already used: an approval is good for one use.", **ctx)


def consume_unmask(engine: Engine, request_id: int, *, viewer: Viewer, session_id: str | None = None,
                   client_address: str | None = None, now: dt.datetime | None = None) -> tuple[str, str, str | None]:
    """Use an approved unmask once: returns (customer id, field, value).

    The customer must still be in the requester's scope and the role may still unmask; the
    ``unmask`` audit entry (naming the approval) is written before the value is returned.
    """
    now = now or utcnow()
    ctx = {"session_id": session_id, "client_address": client_address}
    row = _usable(engine, request_id, "unmask", viewer, now, ctx)
    what = json.loads(row["definition"])
    _mark_used(engine, row, viewer, now, ctx)
    value = customer360.unmask_field(engine, what["customer_id"], what["field"], viewer=viewer, reason=row["reason"],
                                     approval_id=int(row["request_id"]), **ctx)
    return what["customer_id"], what["field"], value


def consume_export(engine: Engine, request_id: int, *, viewer: Viewer, session_id: str | None = None,
                   client_address: str | None = None, now: dt.datetime | None = None) -> ApprovedFile:
    """Use an approved export once: the file exactly as requested; the ``export`` audit entry names
    the approval and the manifest. The stored copy is cleared."""
    now = now or utcnow()
    ctx = {"session_id": session_id, "client_address": client_address}
    row = _usable(engine, request_id, "export", viewer, now, ctx)
    what = json.loads(row["definition"])
    data = bytes(row["payload"])
    _mark_used(engine, row, viewer, now, ctx)
    target = {"approval_id": int(row["request_id"]), "export": what["file_name"], "rows": int(row["rows"]),
              "sha256": row["file_sha256"]}
    if row["manifest_id"]:
        target.update(manifest_id=row["manifest_id"], customers=what.get("customers"))
    _audit(engine, "export", viewer, target=target, parameters=what.get("context") or {}, **ctx)
    return ApprovedFile(int(row["request_id"]), data, what["file_name"], what["mime"], int(row["rows"]),
                        row["file_sha256"])


# ---------------------------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------------------------

def _list(engine: Engine, *conditions) -> pd.DataFrame:
    r = approval_requests.c
    frame = read_frame(engine, select(*[r[c] for c in LIST_COLUMNS]).where(*conditions)
                       .order_by(r.request_id.desc()))
    return frame


def pending(engine: Engine, *, approver: Viewer) -> pd.DataFrame:
    """Pending requests an approver may decide (not their own), newest first.

    Raises AccessDenied for a viewer without the approving role.
    """
    if APPROVER_ROLE not in access.normalise_roles(approver.roles):
        raise access.AccessDenied(f"Only the {APPROVER_ROLE} role may see pending requests.")
    r = approval_requests.c
    return _list(engine, r.status == "pending", r.requested_by != approver.username)


def requests_of(engine: Engine, *, viewer: Viewer) -> pd.DataFrame:
    """The viewer's own requests, newest first."""
    return _list(engine, approval_requests.c.requested_by == viewer.username)


def usable_ids(requests: pd.DataFrame) -> list[int]:
    """Request numbers of a :func:`requests_of` frame that are approved and not yet used."""
    if requests.empty:
        return []
    ok = (requests["status"] == "approved") & requests["used_at"].isna()
    return [int(x) for x in requests.loc[ok, "request_id"]]


def can_approve(roles) -> bool:
    """True if the roles include the approving role."""
    return APPROVER_ROLE in access.normalise_roles(roles)


# ---------------------------------------------------------------------------------------------
# Command line: `python -m analytics approvals expire|list`
# ---------------------------------------------------------------------------------------------

def run_command(engine: Engine, action: str, out=print) -> int:
    """``expire``: expire every request past its time (for a scheduler, so a stored export file
    does not wait for someone to open the Approvals page); ``list``: the open requests."""
    if action == "expire":
        done = expire_due(engine)
        out(f"{len(done)} request(s) expired" + (f": {', '.join(f'#{i}' for i in done)}" if done else ""))
        return 0
    r = approval_requests.c
    frame = _list(engine, r.status.in_(("pending", "approved")), r.used_at.is_(None))
    if frame.empty:
        out("no open request")
    for row in frame.itertuples(index=False):
        out(f"#{row.request_id}  {row.kind:<6}  {row.status:<8}  by {row.requested_by}  "
            f"requested {row.requested_at}  expires {row.expires_at}")
    return 0


__all__ = ["APPROVER_ROLE", "ApprovalRefused", "ApprovedFile", "approve", "can_approve", "consume_export",
           "consume_unmask", "expire_due", "get", "needs_approval", "pending", "reject", "request_export",
           "request_unmask", "requests_of", "run_command", "ttl", "ttl_hours", "usable_ids"]
