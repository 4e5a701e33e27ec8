"""The refresh stage ``alerts``: detect, then merge into the standing ``alerts`` table.

The merge keeps one standing alert per customer and kind (``cleared_run`` NULL; see the schema):

* a candidate with a standing alert of the same customer and kind updates that alert's
  ``last_seen_run``, owner and detail; its ``first_seen``, due date and status are kept, so an
  alert a user resolved or dismissed stays closed while the data still shows the condition;
* a candidate without one opens a new alert (status ``new``), with a history row;
* a standing alert the run no longer detects is cleared (``cleared_run``); if it was still open
  the refresh resolves it (``changed_by = 'refresh'``, note "no longer detected"), with a history
  row. If the condition returns, a new alert opens.

All of it is one transaction, though the stage detects and merges a block of customers at a time
(:func:`merge_blocks`). The stage runs last, after every stage it reads (risk, churn), so a
failure earlier in the refresh leaves the alerts untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, insert, select, text, update

from analytics.alerts.detect import CANDIDATE_COLUMNS, detect
from analytics.features import month_end
from analytics.partitions import IdRange, id_ranges
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
    return merge_blocks(engine, run_id, as_of, lambda conn: [(None, candidates)], now=now)[0]


def _merge_block(conn, run_id: int, as_of: date, candidates: pd.DataFrame, customers, now: datetime
                 ) -> tuple[int, int, list[tuple[int, str]]]:
    """Merge the candidates of the customers a filter selects (``customers``; ``None``: all) with
    their standing alerts: those detected again are marked seen by this run, the others opened.
    Returns (opened, seen, the standing alerts not detected again as (alert_id, status))."""
    query = select(alerts.c.alert_id, alerts.c.customer_id, alerts.c.kind, alerts.c.status).where(
        alerts.c.cleared_run.is_(None))
    if customers is not None:
        condition, params = customers.sql("customer_id", None)
        query = query.where(text(condition).bindparams(**params))
    by_key = {(r.customer_id, r.kind): (r.alert_id, r.status) for r in conn.execute(query)}
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
    return len(fresh), len(seen), list(by_key.values())


def merge_blocks(engine: Engine, run_id: int, as_of: date, blocks, *, now: datetime | None = None
                 ) -> tuple[dict[str, int], pd.Series]:
    """:func:`merge` of candidates detected a block of customers at a time, in one transaction.

    ``blocks(conn)`` yields ``(customers, candidates)``: a customer filter and those customers'
    candidates, read on ``conn`` (the merge's transaction) as the merge goes; the filters together
    select every customer (the last may select those no other did, with no candidates). Each block
    is merged with its customers' standing alerts, and those it did not detect again are cleared.
    Returns the counts of :func:`merge` and the candidates detected by kind."""
    now = now or utcnow()
    opened = seen = 0
    unseen: list[tuple[int, str]] = []
    detected = pd.Series(dtype=np.int64)
    with engine.begin() as conn:
        for customers, candidates in blocks(conn):
            block_opened, block_seen, block_unseen = _merge_block(conn, run_id, as_of, candidates, customers, now)
            opened, seen = opened + block_opened, seen + block_seen
            unseen += block_unseen
            detected = detected.add(candidates["kind"].value_counts(), fill_value=0)
        if opened:
            conn.execute(text(
                "INSERT INTO alert_history (alert_id, changed_at, changed_by, from_status, to_status, note, during_run) "
                "SELECT alert_id, :now, :who, NULL, 'new', 'detected', :run FROM alerts "
                "WHERE first_seen_run = :run AND NOT EXISTS (SELECT 1 FROM alert_history h WHERE h.alert_id = alerts.alert_id)"),
                {"now": now, "who": SYSTEM_USER, "run": run_id})
        # Standing alerts this run did not detect again: no longer detected.
        gone = [alert_id for alert_id, _ in unseen]
        still_open = [(alert_id, status) for alert_id, status in unseen if status in OPEN_ALERT_STATUSES]
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
    counts = {"new": opened, "still_standing": seen, "cleared": len(gone), "resolved": len(still_open)}
    return counts, detected.astype(np.int64).sort_index()


@dataclass(frozen=True)
class _Outside:
    """The customer ids outside a range (a filter like :class:`analytics.partitions.IdRange`)."""

    span: IdRange

    def sql(self, column: str, engine) -> tuple[str, dict]:
        condition, params = self.span.sql(column, engine)
        return f"NOT ({condition})", params


#: Customers per block whose alerts are detected and merged together.
BLOCK_ROWS = 250_000


def alerts_stage(ctx, block_rows: int | None = None) -> None:
    """Detect the run's alerts at its reference day and merge them (see :func:`merge`)."""
    if ctx.as_of_month is None:
        log.info("alerts: no activity data, nothing to do")
        ctx.put_metrics({"alerts.new": 0})
        return
    as_of = month_end(ctx.as_of_month)
    ranges = id_ranges(ctx.engine, block_rows or BLOCK_ROWS)

    def blocks(conn):
        for customers in ranges:
            yield customers, detect(conn, ctx.run_id, as_of, customers=customers)
        # Standing alerts of ids outside the ranges (no such customer any more): none detected.
        rest = _Outside(IdRange(ranges[0].low, ranges[-1].high, through=True)) if ranges else None
        yield rest, pd.DataFrame(columns=list(CANDIDATE_COLUMNS))

    counts, detected = merge_blocks(ctx.engine, ctx.run_id, as_of, blocks)
    ctx.row_counts["alerts_new"] = counts["new"]
    metrics: dict[str, float | str | None] = {"alerts.as_of": as_of.isoformat(), "alerts.detected": int(detected.sum()),
                                             **{f"alerts.{k}": v for k, v in counts.items()}}
    for kind, n in detected.items():
        metrics[f"alerts.detected.{kind}"] = int(n)
    ctx.put_metrics(metrics)
    log.info("alerts: %d detected, %s", int(detected.sum()), counts)


__all__ = ["BLOCK_ROWS", "CLEARED_NOTE", "SYSTEM_USER", "alerts_stage", "merge", "merge_blocks"]
