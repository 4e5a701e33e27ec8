"""What the Worklist page and the digest read of the alerts, and the one way to change a status.

Who sees which alerts (:data:`KIND_ACCESS`): a relationship manager sees every kind of alert of the
customers in their scope (their portfolio); risk sees the risk kinds (:data:`RISK_KINDS`) bank-wide,
or within its scope when it has one. Other roles have no worklist. Rows are scoped in SQL through the
viewer (:meth:`analytics.access.Viewer.scope_sql`) and released for the viewer
(:func:`analytics.access.release`: personal fields masked). Birthday alerts are care contacts: a
customer whose marketing consent is no longer live when the list is read is left out and counted.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine, insert, select, update

from analytics import audit
from analytics.access import AccessDenied, Viewer, release, require_rows
from analytics.consent import live_consent_sql
from analytics.errors import AnalyticsError
from analytics.i18n import label
from analytics.runs import utcnow
from analytics.schema import (
    ALERT_KINDS,
    ALERT_STATUSES,
    OPEN_ALERT_STATUSES,
    alert_history,
    alerts,
    current_run,
)
from analytics.store import read_frame

RISK_KINDS: tuple[str, ...] = ("suitability_mismatch", "assessment_expiring", "balance_drop", "id_expiring",
                               "complaint_unresolved")
# role -> the alert kinds it works on; a multi-role user gets the union.
KIND_ACCESS: dict[str, tuple[str, ...]] = {
    "relationship_manager": ALERT_KINDS,
    "risk": RISK_KINDS,
}
# Allowed status changes: an open alert may be worked on; a closed one stays closed (the next
# detection opens a new alert if the condition returns).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("contacted", "resolved", "dismissed"),
    "contacted": ("resolved", "dismissed"),
    "resolved": (),
    "dismissed": (),
}
MAX_NOTE_CHARS = 1000

WORKLIST_COLUMNS = ("alert_id", "customer_id", "name", "branch_id", "owner", "kind", "status", "due_date",
                    "overdue", "first_seen", "detail", "outcome_note")


class AlertError(AnalyticsError):
    """A status change that cannot be made (unknown alert, not allowed, missing note)."""


def kinds_for(viewer: Viewer) -> tuple[str, ...]:
    """The alert kinds ``viewer`` works on (empty: no worklist)."""
    allowed = {k for role in viewer.roles for k in KIND_ACCESS.get(role, ())}
    return tuple(k for k in ALERT_KINDS if k in allowed)


def _require_kinds(viewer: Viewer) -> tuple[str, ...]:
    require_rows(viewer)
    kinds = kinds_for(viewer)
    if not kinds:
        raise AccessDenied("Your role has no alert worklist.")
    return kinds


def _in(prefix: str, values) -> tuple[str, dict]:
    names = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return "(" + ", ".join(f":{n}" for n in names) + ")", names


def _where(viewer: Viewer, kinds, statuses, owner: str | None) -> tuple[str, dict]:
    kinds_sql, params = _in("kind", kinds)
    clauses = [f"a.kind IN {kinds_sql}"]
    if statuses:
        status_sql, status_params = _in("status", statuses)
        clauses.append(f"a.status IN {status_sql}")
        params.update(status_params)
    if owner is not None:
        clauses.append("a.owner = :owner")
        params["owner"] = str(owner)
    scope, scope_params = viewer.scope_sql("c")
    clauses.append(scope)
    params.update(scope_params)
    return " AND ".join(clauses), params


def worklist(engine: Engine, *, viewer: Viewer, statuses: tuple[str, ...] | None = OPEN_ALERT_STATUSES,
             kinds: tuple[str, ...] | None = None, owner: str | None = None, today: date | None = None,
             overdue_only: bool = False, new_in_run: int | None = None,
             limit: int = 1000) -> tuple[pd.DataFrame, dict[str, int]]:
    """The alerts ``viewer`` works on, most overdue first.

    Parameters
    ----------
    statuses : tuple of str, optional
        Keep these statuses (default the open ones; None or empty: all).
    kinds : tuple of str, optional
        Keep these kinds (within :func:`kinds_for`; default all of them).
    owner : str, optional
        Keep one relationship manager's alerts.
    today : date, optional
        The day ``overdue`` is judged on (an open alert due before it); default today (UTC).
    overdue_only, new_in_run :
        Keep only overdue alerts, or (when both are given) alerts that are overdue or first seen in
        run ``new_in_run``: the digest's selection.

    Returns
    -------
    (pandas.DataFrame, dict)
        :data:`WORKLIST_COLUMNS`, released for the viewer, and ``{"consent": n}``: birthday alerts
        the filters select whose customer no longer has a live marketing consent (left out).
    """
    allowed = _require_kinds(viewer)
    chosen = tuple(k for k in (kinds or allowed) if k in allowed)
    unknown = set(statuses or ()) - set(ALERT_STATUSES)
    if unknown:
        raise ValueError(f"Unknown alert status {sorted(unknown)[0]!r}. Known: {', '.join(ALERT_STATUSES)}.")
    limit = int(limit)
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be between 1 and 100000, got {limit}")
    empty = pd.DataFrame(columns=list(WORKLIST_COLUMNS))
    if not chosen:
        return release(empty, viewer), {"consent": 0}
    today = today or utcnow().date()
    where, params = _where(viewer, chosen, statuses, owner)
    params["today"] = today
    open_sql, open_params = _in("open", OPEN_ALERT_STATUSES)
    params.update(open_params)
    overdue = f"(a.status IN {open_sql} AND a.due_date < :today)"
    if overdue_only and new_in_run is not None:
        where += f" AND ({overdue} OR a.first_seen_run = :new_run)"
        params["new_run"] = int(new_in_run)
    elif overdue_only:
        where += f" AND {overdue}"
    elif new_in_run is not None:
        where += " AND a.first_seen_run = :new_run"
        params["new_run"] = int(new_in_run)
    consent, consent_params = live_consent_sql("a.customer_id", "marketing")
    params.update(consent_params)
    care = f"(a.kind <> 'birthday' OR {consent})"
    joins = "FROM alerts a JOIN customers c ON c.customer_id = a.customer_id"
    # The overdue alerts by due date, then the others by due date: two reads that each walk
    # ix_alerts_due and stop at the limit, where one ORDER BY on the overdue flag first sorted every
    # alert of the chosen kinds (0.34 s for the risk worklist at a million customers).
    listed = f"""
        SELECT a.alert_id, a.customer_id, c.name, c.branch_id, a.owner, a.kind, a.status, a.due_date,
               CASE WHEN {overdue} THEN 1 ELSE 0 END AS overdue, a.first_seen, a.detail, a.outcome_note
        {joins} WHERE {where} AND {care} AND {{part}}
        ORDER BY a.due_date, a.alert_id
        LIMIT :limit"""
    frame = read_frame(engine, listed.format(part=overdue), {**params, "limit": limit})
    if len(frame) < limit:
        # Not overdue: with only open statuses listed, due today or later (a range of the index).
        rest = ("a.due_date >= :today" if statuses and set(statuses) <= set(OPEN_ALERT_STATUSES)
                else f"(CASE WHEN {overdue} THEN 1 ELSE 0 END) = 0")
        more = read_frame(engine, listed.format(part=rest), {**params, "limit": limit - len(frame)})
        frame = pd.concat([frame, more], ignore_index=True) if len(frame) and len(more) else (
            more if len(more) else frame)
    # Only birthday alerts are left out for consent: without that kind chosen there is none to count
    # (the count walked every open alert of the chosen kinds).
    left_out = (int(read_frame(engine, f"SELECT COUNT(*) AS n {joins} WHERE {where} AND NOT {care}",
                               params)["n"].iloc[0]) if "birthday" in chosen else 0)
    frame["overdue"] = frame["overdue"].astype(bool)
    for col in ("due_date", "first_seen"):
        frame[col] = pd.to_datetime(frame[col]).dt.date
    return release(frame[list(WORKLIST_COLUMNS)], viewer), {"consent": left_out}


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """Headline counts of a :func:`worklist` frame: rows, overdue, and status ``new``."""
    return {"shown": len(frame), "overdue": int(frame["overdue"].astype(bool).sum()) if len(frame) else 0,
            "new": int((frame["status"] == "new").sum()) if len(frame) else 0}


def labelled(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The frame with ``kind`` and ``status`` in words of ``lang`` (for display; exports keep codes)."""
    out = frame.copy()
    for col, family in (("kind", "alert_kind"), ("status", "alert_status")):
        if col in out.columns:
            out[col] = [label(family, v, lang) for v in out[col]]
    return out


def trend(engine: Engine, *, viewer: Viewer, runs: int = 12) -> pd.DataFrame:
    """New and resolved alerts per refresh run, over the viewer's alerts (scope and kinds).

    ``new``: alerts first seen in the run. ``resolved``: changes to ``resolved`` made while the run
    was current (by a user) or by the run itself (no longer detected). ``dismissed`` likewise.
    Returns columns ``run_id, new, resolved, dismissed`` for the last ``runs`` runs that have any,
    oldest first.
    """
    kinds = _require_kinds(viewer)
    where, params = _where(viewer, kinds, None, None)
    joins = "FROM alerts a JOIN customers c ON c.customer_id = a.customer_id"
    new = read_frame(engine, f"SELECT a.first_seen_run AS run_id, COUNT(*) AS n {joins} WHERE {where} "
                             "GROUP BY a.first_seen_run", params)
    closed = read_frame(engine, f"""
        SELECT h.during_run AS run_id, h.to_status, COUNT(*) AS n
        FROM alert_history h JOIN alerts a ON a.alert_id = h.alert_id JOIN customers c ON c.customer_id = a.customer_id
        WHERE {where} AND h.to_status IN ('resolved', 'dismissed') AND h.during_run IS NOT NULL
        GROUP BY h.during_run, h.to_status""", params)
    out = pd.DataFrame({"new": new.set_index("run_id")["n"]}) if not new.empty else pd.DataFrame(columns=["new"])
    for status in ("resolved", "dismissed"):
        part = closed[closed["to_status"] == status].set_index("run_id")["n"]
        out = out.join(part.rename(status), how="outer") if not out.empty else pd.DataFrame({status: part})
    out = out.reindex(columns=["new", "resolved", "dismissed"]).fillna(0).astype(int)
    out.index = out.index.astype(int)
    out = out.sort_index().tail(int(runs))
    return out.rename_axis("run_id").reset_index()


def history(engine: Engine, alert_id: int, *, viewer: Viewer) -> pd.DataFrame:
    """The status changes of one alert the viewer may see, oldest first."""
    _visible(engine, int(alert_id), viewer)
    return read_frame(engine, "SELECT changed_at, changed_by, from_status, to_status, note, during_run "
                              "FROM alert_history WHERE alert_id = :a ORDER BY history_id", {"a": int(alert_id)})


def _visible(engine: Engine, alert_id: int, viewer: Viewer) -> dict:
    kinds = _require_kinds(viewer)
    where, params = _where(viewer, kinds, None, None)
    row = read_frame(engine, f"SELECT a.alert_id, a.customer_id, a.kind, a.status FROM alerts a "
                             f"JOIN customers c ON c.customer_id = a.customer_id WHERE a.alert_id = :a AND {where}",
                     {**params, "a": alert_id})
    if row.empty:
        # the same answer for "no such alert" and "not yours": the id reveals nothing
        raise AlertError(f"Alert {alert_id} is not on your worklist.", key="errors.alert.not_yours", id=alert_id)
    return row.iloc[0].to_dict()


def change_status(engine: Engine, alert_id: int, to_status: str, note: str | None = None, *, viewer: Viewer,
                  session_id: str | None = None, client_address: str | None = None) -> dict:
    """Change an alert's status with an outcome note; audited (``alert_change``) and recorded in
    ``alert_history``.

    Resolving or dismissing needs a note (what happened). The note is stored with anything that
    looks like a phone, ID/card number or e-mail masked (:func:`analytics.audit.scrub_text`). The
    audit entry is written first, so no change is ever made unrecorded; the change then applies only
    if the alert still has the status that was audited.

    Raises
    ------
    AlertError
        Unknown or invisible alert, a change :data:`TRANSITIONS` does not allow, a missing or too
        long note, or a status changed by someone else meanwhile.
    """
    alert_id = int(alert_id)
    if to_status not in ALERT_STATUSES:
        raise AlertError(f"Unknown alert status {to_status!r}. Known: {', '.join(ALERT_STATUSES)}.",
                         key="errors.alert.unknown_status")
    note = (note or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise AlertError(f"The outcome note has {len(note)} characters; at most {MAX_NOTE_CHARS}.",
                         key="errors.alert.note_too_long", n=len(note), max=MAX_NOTE_CHARS)
    if to_status in ("resolved", "dismissed") and not note:
        raise AlertError(f"Say what happened: an outcome note is required to mark an alert {to_status}.",
                         key="errors.alert.note_required")
    note = audit.scrub_text(note) if note else None
    row = _visible(engine, alert_id, viewer)
    from_status = row["status"]
    if to_status not in TRANSITIONS[from_status]:
        raise AlertError(f"Alert {alert_id} is {from_status}; it cannot become {to_status}.",
                         key="errors.alert.bad_transition", id=alert_id)
    with engine.connect() as conn:
        run_id = conn.execute(select(current_run.c.run_id).where(current_run.c.id == 1)).scalar()
    audit.append(engine, "alert_change", username=viewer.username, roles=viewer.roles, session_id=session_id,
                 client_address=client_address,
                 target={"alert_id": alert_id, "customer_ids": [row["customer_id"]]},
                 parameters={"kind": row["kind"], "from": from_status, "to": to_status}, reason=note, run_id=run_id)
    now = utcnow()
    closing = to_status in ("resolved", "dismissed")
    with engine.begin() as conn:
        changed = conn.execute(update(alerts).where(alerts.c.alert_id == alert_id, alerts.c.status == from_status)
                               .values(status=to_status, updated_at=now, closed_at=now if closing else None,
                                       **({"outcome_note": note} if note else {}))).rowcount
        if not changed:
            raise AlertError(f"Alert {alert_id} was changed by someone else meanwhile; reload the worklist.",
                             key="errors.alert.changed_meanwhile", id=alert_id)
        conn.execute(insert(alert_history).values(alert_id=alert_id, changed_at=now, changed_by=viewer.username,
                                                  from_status=from_status, to_status=to_status, note=note,
                                                  during_run=run_id))
    return {"alert_id": alert_id, "from": from_status, "to": to_status}


__all__ = ["KIND_ACCESS", "MAX_NOTE_CHARS", "RISK_KINDS", "TRANSITIONS", "WORKLIST_COLUMNS", "AlertError",
           "change_status", "counts", "history", "kinds_for", "labelled", "trend", "worklist"]
