"""The batch refresh: one run computes every analytic and publishes it atomically.

A run is recorded in ``refresh_runs`` (id, start, end, status, stage, row counts, metrics). Each
stage writes its results under the run's id into run-keyed result tables; nothing a reader looks at
changes while it does, because readers only ever read the run that ``current_run`` points to.
Publishing moves that single pointer and marks the run ``succeeded`` in one transaction, so a reader
sees the previous complete run or the new complete one, never a mix.

A failed refresh is marked ``failed`` and its partial results are deleted; a refresh killed outright
(power cut, ``kill -9``) cannot mark itself, so the next refresh marks every abandoned ``running`` run
as failed before it starts. Either way the previous run stays current.

**Crash testing.** ``REFRESH_PAUSE_AT=<point>`` (test-only fault injection, read in
:func:`_pause_point` and nowhere else) makes the refresh write the marker file named by
``REFRESH_PAUSE_MARKER`` and sleep when it reaches ``<point>``, so ``tests/reliability`` can kill it
there with SIGKILL. The points, in order (:func:`pause_points`):

* ``stage:<name>:writing``: inside stage ``<name>``'s first transaction, its rows written and the
  ``COMMIT`` not yet sent;
* ``stage:<name>:after``: stage ``<name>`` committed its results, later stages not started;
* ``publish:before-commit``: inside the publish transaction, the pointer moved, not committed;
* ``publish:after-commit``: right after the publish committed, before old results are pruned.

A name that is not a point stops the refresh before it starts. Production never sets these.

Later analytics plug in by adding a :class:`Stage` to :data:`STAGES`. What pages read about runs
(:func:`freshness`, :func:`status`) lives in :mod:`analytics.run_status` and is re-exported here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, event, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from analytics import churn, clv_refresh, cross_sell, partitions, quality, risk, settings
from analytics.aggregates import aggregates_stage
from analytics.alerts.stage import alerts_stage
from analytics.campaigns.stage import campaigns_stage
from analytics.churn.labels import feature_cutoffs as churn_feature_cutoffs
from analytics.clock import naive_utc
from analytics.cross_sell.stage import feature_cutoffs as cross_sell_feature_cutoffs
from analytics.errors import RefreshError, StoreError, StoreNotInitialisedError, describe
from analytics.features_stage import features_stage_for
from analytics.run_status import Freshness, freshness, status
from analytics.runs import RefreshContext, Stage, release_memory, utcnow
from analytics.schema import (
    current_run,
    customer_feature_products,
    customer_feature_sets,
    customer_features,
    customer_monthly,
    metadata,
    refresh_runs,
)
from analytics.segmentation.stage import feature_cutoffs as segments_feature_cutoffs
from analytics.segmentation.stage import segments_stage
from analytics.store import check_columns, check_store, init_schema

log = logging.getLogger(__name__)

# A run still 'running' this long after it started, on another host, is taken as abandoned.
ABANDONED_AFTER = timedelta(hours=12)

# Called around every stage: ``hook(stage_name, "before" | "after")``. Benchmarks measure memory
# with it and tests pause a refresh with it; production passes none.
StageHook = Callable[[str, str], None]


# The stages that read per-customer features, each by the one function that says at which cut-offs
# (first days of months, from the run's month). The customer_features stage builds and stores the
# union of them once; each stage reads its own through the same function, so the two cannot drift.
FEATURE_CUTOFFS = (segments_feature_cutoffs, cross_sell_feature_cutoffs, churn_feature_cutoffs)


# Every stage, in the order it runs. Each writes only its own result tables and run metrics: the
# per-customer stages first, then the margin CLV (it needs the churn scores), then the aggregates
# (they sum the final per-customer figures). tests/analytics/test_refresh.py checks the ownership.
STAGES: list[Stage] = [
    Stage("data_quality", quality.run_stage),
    # every feature frame the later stages read, built once and stored under the run
    Stage("customer_features", features_stage_for(FEATURE_CUTOFFS)),
    Stage("segments", segments_stage),
    Stage("clv_txn", clv_refresh.clv_stage),
    Stage("cross_sell", cross_sell.cross_sell_stage),
    Stage("campaigns", campaigns_stage),  # measures every campaign's conversions (campaign_outcomes)
    Stage("risk", risk.risk_stage),
    # after segments: it values churn risk at customer_segments' lifecycle-stage CLV
    Stage("churn", churn.churn_stage),
    Stage("clv_margin", clv_refresh.clv_margin_stage),
    Stage("aggregates", aggregates_stage),
    # last: it reads risk and churn, and writes the standing alerts table, not run-keyed results
    Stage("alerts", alerts_stage),
]


PAUSE_ENV = "REFRESH_PAUSE_AT"
PAUSE_MARKER_ENV = "REFRESH_PAUSE_MARKER"
# A paused refresh waits this long for its kill, then goes on (a test that died must not leave a
# refresh holding the store forever).
PAUSE_SECONDS = 600


def pause_points() -> list[str]:
    """Every point ``REFRESH_PAUSE_AT`` may name, in the order a refresh passes them."""
    points = [p for stage in STAGES for p in (f"stage:{stage.name}:writing", f"stage:{stage.name}:after")]
    # Inside a partition's write (analytics.partitions), in whichever process or worker runs partition 0.
    return [*points, *partitions.PAUSE_POINTS, "publish:before-commit", "publish:after-commit"]


def _pause_point() -> str | None:
    """The test-only pause point from the environment (None in production)."""
    point = os.environ.get(PAUSE_ENV)
    if point and point not in pause_points():
        raise RefreshError(f"{PAUSE_ENV}={point} names no pause point; see analytics/refresh.py.")
    return point or None


def _pause(point: str) -> None:
    marker = Path(os.environ.get(PAUSE_MARKER_ENV) or f"refresh-paused-{os.getpid()}")
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{os.getpid()} {point}\n", encoding="ascii")
    os.replace(tmp, marker)  # the test reads a whole line or no file
    log.warning("refresh paused at %s (%s)", point, PAUSE_ENV)
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)


def _read_only(exc: DBAPIError) -> bool:
    text_ = str(exc.orig).lower()
    return any(s in text_ for s in ("readonly database", "read-only", "read only", "permission denied"))


# How each driver says the store's disk is full: sqlite3's SQLITE_FULL ("database or disk is full"),
# PostgreSQL's class 53100 (psycopg's DiskFull, "No space left on device"); an OSError with ENOSPC
# when the refresh writes a file of its own. None of them quotes a row.
_DISK_FULL = ("database or disk is full", "sqlite_full", "no space left on device", "diskfull")


def _disk_full(exc: BaseException) -> str | None:
    """The driver's or the OS's name for a full disk anywhere in ``exc``'s chain, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return "ENOSPC"
        original = getattr(exc, "orig", None)
        for candidate in (original, exc):
            if candidate is None:
                continue
            text_ = f"{type(candidate).__name__} {getattr(candidate, 'sqlite_errorname', '')} {candidate}".lower()
            if any(s in text_ for s in _DISK_FULL):
                return getattr(candidate, "sqlite_errorname", None) or type(candidate).__name__
        exc = exc.__cause__ or exc.__context__
    return None


def _disk_full_error(name: str, run_id: int | None, stage: str | None) -> RefreshError:
    where = f"Refresh run {run_id} failed in stage {stage}: " if run_id is not None else "The refresh could not start: "
    return RefreshError(f"{where}the store's disk is full ({name}: database or disk is full). Nothing was "
                        "published; the previous run stays current. Hint: free space on the store's disk, "
                        "then refresh again.")


def result_tables():
    """Every run-keyed result table (a ``run_id`` column), whose rows belong to one run."""
    skip = {"refresh_runs", "current_run", "audit_log"}
    return [t for t in metadata.sorted_tables if "run_id" in t.c and t.name not in skip]


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_abandoned_runs(engine: Engine) -> list[int]:
    """Mark runs left ``running`` by a process that no longer exists as ``failed``; return their ids."""
    host = socket.gethostname()
    now = utcnow()
    abandoned = []
    with engine.begin() as conn:
        rows = conn.execute(
            select(refresh_runs.c.run_id, refresh_runs.c.host, refresh_runs.c.pid, refresh_runs.c.started_at)
            .where(refresh_runs.c.status == "running")
        ).all()
        for run_id, run_host, pid, started in rows:
            dead = (run_host == host and not _pid_alive(pid)) or (run_host != host and now - started > ABANDONED_AFTER)
            if dead:
                abandoned.append(run_id)
                conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == run_id).values(
                    status="failed", finished_at=now,
                    error="abandoned: the refresh process ended before it finished"))
    for run_id in abandoned:
        _delete_results(engine, run_id)
    return abandoned


def _delete_results(engine: Engine, run_id: int) -> None:
    with engine.begin() as conn:
        for table in reversed(result_tables()):
            conn.execute(delete(table).where(table.c.run_id == run_id))


def _running_elsewhere(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            select(refresh_runs.c.run_id).where(refresh_runs.c.status == "running")
        ).scalars().first()


def latest_activity_month(engine: Engine) -> date:
    """The last month present in ``customer_monthly`` (the month the run describes)."""
    not_a_date = StoreError("customer_monthly.month holds text that is not a date (expected YYYY-MM-DD). "
                            "Hint: fix the rows, or reload the table with `python -m analytics load`, "
                            "which rejects such rows.")
    try:
        with engine.connect() as conn:
            value = conn.execute(select(func.max(customer_monthly.c.month))).scalar()
    except ValueError:  # SQLite keeps any text in a DATE column; reading it back as a date fails
        raise not_a_date from None
    if value is None:
        raise StoreNotInitialisedError("customer_monthly is empty: a refresh needs at least one month of "
                                       "balances and activity. Hint: load it with `python -m analytics load "
                                       "--table customer_monthly FILE`.")
    if isinstance(value, str):  # SQLite returns text from an aggregate over a DATE column
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            raise not_a_date from None
    if isinstance(value, datetime):
        value = value.date()
    return value


def _check_activity_month(as_of_month: date | None, today: date) -> None:
    """Refuse a store whose latest activity month is after the current month: the run would describe
    that month, and every recency, tenure and freshness figure would be measured from it."""
    if as_of_month is not None and (as_of_month.year, as_of_month.month) > (today.year, today.month):
        raise StoreError(f"customer_monthly has rows for {as_of_month:%Y-%m}, after the current month "
                         f"({today:%Y-%m}). Hint: remove or correct the future-dated rows, then refresh.")


def run_refresh(engine: Engine, *, progress: Callable[[str, float], None] | None = None,
                stage_hook: StageHook | None = None) -> int:
    """Run every stage and publish the run; return its id.

    Raises
    ------
    RefreshError
        When another refresh is running, or a stage fails (the run is then marked failed, its
        partial results deleted, and the previous run stays current).
    """
    pause_at = _pause_point()
    try:
        init_schema(engine)  # the app's own tables; a missing store table is left for check_store to name
        check_store(engine)
        check_columns(engine)
        mark_abandoned_runs(engine)
        other = _running_elsewhere(engine)
        if other is not None:
            raise RefreshError(f"Refresh run {other} is still running; wait for it to finish.")
        as_of_month = latest_activity_month(engine)
        _check_activity_month(as_of_month, naive_utc().date())
        with engine.begin() as conn:
            run_id = conn.execute(insert(refresh_runs).values(
                started_at=utcnow(), status="running", host=socket.gethostname(), pid=os.getpid(),
            )).inserted_primary_key[0]
    except DBAPIError as exc:
        full = _disk_full(exc)
        if full:
            raise _disk_full_error(full, None, None) from None
        if _read_only(exc):
            raise RefreshError(f"The store is read-only for this process ({type(exc.orig).__name__}): a refresh "
                               "must write its results. Nothing was changed; the published run stays current. "
                               "Hint: run the refresh as the writer role or user.") from None
        raise
    log.info("refresh run %s started", run_id)

    def at(point: str) -> None:
        if point == pause_at:
            _pause(point)

    armed = False

    def on_commit(_conn) -> None:
        # Listened to only when pause_at is a stage's 'writing' point; fires in that stage's first
        # commit, before the COMMIT is sent.
        nonlocal armed
        if armed:
            armed = False
            at(pause_at)

    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=as_of_month, progress=progress)
    try:
        for i, stage in enumerate(STAGES):
            with engine.begin() as conn:
                conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == run_id).values(stage=stage.name))
            if progress:
                progress(stage.name, i / len(STAGES))
            if stage_hook:
                stage_hook(stage.name, "before")
            armed = pause_at == f"stage:{stage.name}:writing"
            if armed:
                event.listen(engine, "commit", on_commit)
            t0 = time.perf_counter()
            try:
                stage.run(ctx)
            finally:
                if event.contains(engine, "commit", on_commit):
                    event.remove(engine, "commit", on_commit)
            ctx.metrics[f"stage_seconds.{stage.name}"] = round(time.perf_counter() - t0, 3)
            if stage_hook:
                stage_hook(stage.name, "after")
            release_memory()
            at(f"stage:{stage.name}:after")
        _publish(engine, ctx, at)
    except BaseException as exc:
        # BaseException too: a Ctrl-C mid-run must still leave the run marked failed.
        _fail(engine, run_id, exc)
        full = _disk_full(exc) if isinstance(exc, Exception) else None
        if full:
            raise _disk_full_error(full, run_id, _stage_of(engine, run_id)) from exc
        if isinstance(exc, Exception) and not isinstance(exc, RefreshError):
            raise RefreshError(f"Refresh run {run_id} failed in stage {_stage_of(engine, run_id)}: "
                               f"{describe(exc)}") from exc
        raise
    at("publish:after-commit")
    if progress:
        progress("published", 1.0)
    _prune_old_results(engine)
    log.info("refresh run %s published", run_id)
    return run_id


def _stage_of(engine: Engine, run_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(refresh_runs.c.stage).where(refresh_runs.c.run_id == run_id)).scalar()


def _publish(engine: Engine, ctx: RefreshContext, at: Callable[[str], None] = lambda point: None) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == ctx.run_id).values(
            status="succeeded", finished_at=now, stage=None,
            row_counts=ctx.row_counts, metrics=ctx.metrics))
        moved = conn.execute(update(current_run).where(current_run.c.id == 1).values(
            run_id=ctx.run_id, published_at=now)).rowcount
        if not moved:
            conn.execute(insert(current_run).values(id=1, run_id=ctx.run_id, published_at=now))
        at("publish:before-commit")


def _fail(engine: Engine, run_id: int, exc: BaseException) -> None:
    try:
        _delete_results(engine, run_id)
        full = _disk_full(exc) if isinstance(exc, Exception) else None
        error = f"the store's disk is full ({full})" if full else describe(exc)
        with engine.begin() as conn:
            conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == run_id).values(
                status="failed", finished_at=utcnow(), error=error[:2000]))
    except Exception as again:  # the store itself may be what failed; the next refresh marks the run then
        log.error("could not mark refresh run %s failed: %s", run_id, describe(again))


def _prune_old_results(engine: Engine) -> None:
    keep = int(settings.get("REFRESH_KEEP_RUNS"))
    with engine.connect() as conn:
        ids = conn.execute(select(refresh_runs.c.run_id).where(refresh_runs.c.status == "succeeded")
                           .order_by(refresh_runs.c.run_id.desc())).scalars().all()
        current = conn.execute(select(current_run.c.run_id)).scalar()
    for run_id in ids[keep:]:
        if run_id != current:
            _delete_results(engine, run_id)
    # The stored feature frames are the run's working data (the size of the store again, per run):
    # only the current run keeps them, to show what its scores were computed from.
    with engine.begin() as conn:
        for table in (customer_feature_products, customer_features, customer_feature_sets):
            conn.execute(delete(table).where(table.c.run_id != current))


__all__ = ["ABANDONED_AFTER", "FEATURE_CUTOFFS", "PAUSE_ENV", "PAUSE_MARKER_ENV", "STAGES", "Freshness", "RefreshError", "StageHook", "freshness", "latest_activity_month",
           "mark_abandoned_runs", "pause_points", "result_tables", "run_refresh", "status"]
