"""The refresh stage ``alerts``: detect, then merge into the standing ``alerts`` table.

The merge keeps one open alert per customer and kind (status ``new`` or ``contacted``):

* a candidate with an open alert of the same customer and kind updates that alert's
  ``last_seen_run``, owner and detail; its ``first_seen``, due date and status are kept;
* a candidate without one opens a new alert (status ``new``), with a history row;
* an open alert the run no longer detects is resolved by the refresh (``changed_by = 'refresh'``,
  note "no longer detected"), with a history row; if the condition returns, a new alert opens.

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


def merge(engine: Engine, run_id: int, as_of: date, candidates: pd.DataFrame, *,
          now: datetime | None = None) -> dict[str, int]:
    """Merge one run's candidates (:func:`analytics.alerts.detect.detect`) into ``alerts``.

    Returns the counts ``{"new": n, "still_open": m, "cleared": k}``.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        open_rows = conn.execute(select(alerts.c.alert_id, alerts.c.customer_id, alerts.c.kind)
                                 .where(alerts.c.status.in_(OPEN_ALERT_STATUSES))).all()
        open_by_key = {(r.customer_id, r.kind): r.alert_id for r in open_rows}
        seen, fresh = [], []
        for c in candidates.itertuples(index=False):
            owner = None if c.owner is None or pd.isna(c.owner) else str(c.owner)
            alert_id = open_by_key.pop((c.customer_id, c.kind), None)
            if alert_id is not None:
                seen.append({"a_id": alert_id, "a_owner": owner, "a_detail": c.detail})
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
        gone = list(open_by_key.values())
        if gone:
            current = {r.alert_id: r.status for r in conn.execute(
                select(alerts.c.alert_id, alerts.c.status).where(alerts.c.alert_id.in_(gone)))}
            conn.execute(insert(alert_history), [
                {"alert_id": a, "changed_at": now, "changed_by": SYSTEM_USER, "from_status": current[a],
                 "to_status": "resolved", "note": CLEARED_NOTE, "during_run": run_id} for a in gone])
            conn.execute(update(alerts).where(alerts.c.alert_id.in_(gone)).values(
                status="resolved", closed_at=now, updated_at=now))
            conn.execute(update(alerts).where(alerts.c.alert_id.in_(gone), alerts.c.outcome_note.is_(None))
                         .values(outcome_note=CLEARED_NOTE))
    return {"new": len(fresh), "still_open": len(seen), "cleared": len(gone)}


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
