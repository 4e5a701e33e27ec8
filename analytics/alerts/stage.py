"""The refresh stage ``alerts``: detect, then merge into the standing ``alerts`` table.

The merge keeps one standing alert per customer and kind (``cleared_run`` NULL; see the schema):

* a candidate with a standing alert of the same customer and kind updates that alert's
  ``last_seen_run``, owner and detail; its ``first_seen``, due date and status are kept, so an
  alert a user resolved or dismissed stays closed while the data still shows the condition;
* a candidate without one opens a new alert (status ``new``), with a history row;
* a standing alert the run no longer detects is cleared (``cleared_run``); if it was still open
  the refresh resolves it (``changed_by = 'refresh'``, note "no longer detected"), with a history
  row. If the condition returns, a new alert opens.

All of it is one transaction. The stage runs last, after every stage it reads (risk, churn), so a
failure earlier in the refresh leaves the alerts untouched.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine, bindparam, insert, select, text, update

from analytics.alerts.detect import detect
from analytics.features import month_end
from analytics.runs import utcnow
from analytics.schema import OPEN_ALERT_STATUSES, alert_history, alerts

log = logging.getLogger(__name__)

CLEARED_NOTE = "no longer detected"
SYSTEM_USER = "refresh"


def _chunks(ids: list[int], size: int = 5000):
    # bound-parameter lists stay well under SQLite's variable limit
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def merge(engine: Engine, run_id: int, as_of: date, candidates: pd.DataFrame, *,
          now: datetime | None = None) -> dict[str, int]:
    """Merge one run's candidates (:func:`analytics.alerts.detect.detect`) into ``alerts``.

    Returns the counts ``new`` (opened), ``still_standing`` (detected again), ``cleared`` (no longer
    detected) and ``resolved`` (of the cleared, those the refresh resolved because they were open).
    """
    now = now or utcnow()
    with engine.begin() as conn:
        standing = conn.execute(select(alerts.c.alert_id, alerts.c.customer_id, alerts.c.kind, alerts.c.status)
                                .where(alerts.c.cleared_run.is_(None))).all()
        by_key = {(r.customer_id, r.kind): (r.alert_id, r.status) for r in standing}
        seen, fresh = [], []
        for c in candidates.itertuples(index=False):
            owner = None if c.owner is None or pd.isna(c.owner) else str(c.owner)
            found = by_key.pop((c.customer_id, c.kind), None)
            if found is not None:
                seen.append({"a_id": found[0], "a_owner": owner, "a_detail": c.detail})
            else:
                fresh.append({"customer_id": c.customer_id, "kind": c.kind, "owner": owner, "status": "new",
                              "due_date": c.due_date, "detail": c.detail, "first_seen": as_of,
                              "first_seen_run": run_id, "last_seen_run": run_id, "created_at": now,
                              "updated_at": now})
        if seen:
            conn.execute(update(alerts).where(alerts.c.alert_id == bindparam("a_id")).values(
                last_seen_run=run_id, owner=bindparam("a_owner"), detail=bindparam("a_detail")), seen)
        if fresh:
            conn.execute(insert(alerts), fresh)
            conn.execute(text(
                "INSERT INTO alert_history (alert_id, changed_at, changed_by, from_status, to_status, note, during_run) "
                "SELECT alert_id, :now, :who, NULL, 'new', 'detected', :run FROM alerts "
                "WHERE first_seen_run = :run AND NOT EXISTS (SELECT 1 FROM alert_history h WHERE h.alert_id = alerts.alert_id)"),
                {"now": now, "who": SYSTEM_USER, "run": run_id})
        gone = [alert_id for alert_id, _ in by_key.values()]
        still_open = [(alert_id, status) for alert_id, status in by_key.values() if status in OPEN_ALERT_STATUSES]
        for part in _chunks(gone):
            conn.execute(update(alerts).where(alerts.c.alert_id.in_(part)).values(cleared_run=run_id))
        if still_open:
            conn.execute(insert(alert_history), [
                {"alert_id": a, "changed_at": now, "changed_by": SYSTEM_USER, "from_status": status,
                 "to_status": "resolved", "note": CLEARED_NOTE, "during_run": run_id} for a, status in still_open])
        for part in _chunks([a for a, _ in still_open]):
            conn.execute(update(alerts).where(alerts.c.alert_id.in_(part)).values(
                status="resolved", closed_at=now, updated_at=now))
            conn.execute(update(alerts).where(alerts.c.alert_id.in_(part), alerts.c.outcome_note.is_(None))
                         .values(outcome_note=CLEARED_NOTE))
    return {"new": len(fresh), "still_standing": len(seen), "cleared": len(gone), "resolved": len(still_open)}


def alerts_stage(ctx) -> None:
    """Detect the run's alerts at its reference day and merge them (see :func:`merge`)."""
    if ctx.as_of_month is None:
        log.info("alerts: no activity data, nothing to do")
        ctx.put_metrics({"alerts.new": 0})
        return
    as_of = month_end(ctx.as_of_month)
    candidates = detect(ctx.engine, ctx.run_id, as_of)
    counts = merge(ctx.engine, ctx.run_id, as_of, candidates)
    ctx.row_counts["alerts_new"] = counts["new"]
    metrics: dict[str, float | str | None] = {"alerts.as_of": as_of.isoformat(), "alerts.detected": len(candidates),
                                             **{f"alerts.{k}": v for k, v in counts.items()}}
    for kind, n in candidates["kind"].value_counts().sort_index().items():
        metrics[f"alerts.detected.{kind}"] = int(n)
    ctx.put_metrics(metrics)
    log.info("alerts: %d detected, %s", len(candidates), counts)


__all__ = ["CLEARED_NOTE", "SYSTEM_USER", "alerts_stage", "merge"]
