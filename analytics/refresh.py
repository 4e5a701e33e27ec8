"""The batch refresh: one run computes every analytic and publishes it atomically.

A run is recorded in ``refresh_runs`` (id, start, end, status, stage, row counts, metrics). Each
stage writes its results under the run's id into run-keyed result tables; nothing a reader looks at
changes while it does, because readers only ever read the run that ``current_run`` points to.
Publishing moves that single pointer and marks the run ``succeeded`` in one transaction, so a reader
sees the previous complete run or the new complete one, never a mix.

A failed refresh is marked ``failed`` and its partial results are deleted; a refresh killed outright
(power cut, ``kill -9``) cannot mark itself, so the next refresh marks every abandoned ``running`` run
as failed before it starts. Either way the previous run stays current.

Later analytics plug in by adding a :class:`Stage` to :data:`STAGES`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, text, update

from analytics import settings
from analytics.errors import RefreshError
from analytics.runs import RefreshContext, Stage, utcnow
from analytics.schema import current_run, customer_monthly, metadata, refresh_runs
from analytics.store import check_store, init_schema

log = logging.getLogger(__name__)

# A run still 'running' this long after it started, on another host, is taken as abandoned.
ABANDONED_AFTER = timedelta(hours=12)

# Called around every stage: ``hook(stage_name, "before" | "after")``. Benchmarks measure memory
# with it and tests pause a refresh with it; production passes none.
StageHook = Callable[[str, str], None]


def _summary_stage(ctx: RefreshContext) -> None:
    """Headline counts for the Overview page, from the latest activity month."""
    with ctx.engine.connect() as conn:
        q = conn.execute
        customers_total = q(text("SELECT COUNT(*) FROM customers")).scalar_one()
        by_status = dict(q(text("SELECT status, COUNT(*) FROM customers GROUP BY status")).all())
        products_total = q(text("SELECT COUNT(*) FROM products")).scalar_one()
        branches_total = q(text("SELECT COUNT(*) FROM branches")).scalar_one()
        holdings_open = q(text("SELECT COUNT(*) FROM holdings WHERE closed_on IS NULL")).scalar_one()
        totals = q(
            text("SELECT COALESCE(SUM(aum), 0), COALESCE(SUM(deposit_balance), 0), "
                 "COALESCE(SUM(loan_balance), 0), COUNT(*) FROM customer_monthly WHERE month = :m"),
            {"m": ctx.as_of_month},
        ).one()
    ctx.row_counts.update({"customers": customers_total, "products": products_total,
                           "branches": branches_total, "open_holdings": holdings_open})
    ctx.put_metrics({
        "customers_total": customers_total,
        "customers_active": by_status.get("active", 0),
        "customers_dormant": by_status.get("dormant", 0),
        "customers_closed": by_status.get("closed", 0),
        "products_total": products_total,
        "branches_total": branches_total,
        "holdings_open": holdings_open,
        "aum_total": totals[0],
        "deposits_total": totals[1],
        "loans_total": totals[2],
        "as_of_month": ctx.as_of_month.isoformat() if ctx.as_of_month else None,
    })


STAGES: list[Stage] = [Stage("summary", _summary_stage)]


def _data_quality_stage(ctx: RefreshContext) -> None:
    """Data-quality rules, scores and breakdowns (issue 6); imported here so a broken rule file
    fails this stage with its message, not every import of the refresh module."""
    from analytics.quality import run_stage

    run_stage(ctx)


STAGES.append(Stage("data_quality", _data_quality_stage))


def _segments_stage(ctx: RefreshContext) -> None:
    """RFM, value tiers, clusters, tags, lifecycle stages, margin CLV and cohorts (issue 4);
    imported here so readers of the refresh module (the app) do not pay for scikit-learn."""
    from analytics.segmentation import segments_stage

    segments_stage(ctx)


STAGES.append(Stage("segments", _segments_stage))


def _clv_txn_stage(ctx: RefreshContext) -> None:
    """Transactional CLV (BG/NBD + Gamma-Gamma on monthly activity) per customer (issue 4)."""
    from analytics.clv_refresh import clv_stage

    clv_stage(ctx)


STAGES.append(Stage("clv_txn", _clv_txn_stage))


def _cross_sell_stage(ctx: RefreshContext) -> None:
    """Association rules, propensities and next-best products with their guards (issue 5)."""
    from analytics.cross_sell import cross_sell_stage

    cross_sell_stage(ctx)


def _risk_stage(ctx: RefreshContext) -> None:
    """Risk flags: suitability, expired assessments, abnormal drops, concentration (issue 5)."""
    from analytics.risk import risk_stage

    risk_stage(ctx)


STAGES.append(Stage("cross_sell", _cross_sell_stage))
STAGES.append(Stage("risk", _risk_stage))


def _churn_stage(ctx: RefreshContext) -> None:
    """Churn model, hold-out metrics, scores, reason codes and value at risk (issue 5); after the
    segments stage, whose margin CLV it uses for the value at risk."""
    from analytics.churn import churn_stage

    churn_stage(ctx)


STAGES.append(Stage("churn", _churn_stage))


def _clv_retention_stage(ctx: RefreshContext) -> None:
    """Margin CLV re-based on the churn model's retention (issue 4); after the churn stage, whose
    scores it uses, so churn's value at risk still uses the lifecycle-stage CLV."""
    from analytics.clv_refresh import apply_churn_retention

    apply_churn_retention(ctx)


STAGES.append(Stage("clv_retention", _clv_retention_stage))


def _kpi_stage(ctx: RefreshContext) -> None:
    """Monthly KPI series for the KPI wall."""
    from analytics.kpi import kpi_stage

    kpi_stage(ctx)


STAGES.append(Stage("kpi", _kpi_stage))


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


def latest_activity_month(engine: Engine) -> date | None:
    """The last month present in ``customer_monthly`` (the month the run describes)."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(customer_monthly.c.month))).scalar()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns text from an aggregate over a DATE column
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    return value


def run_refresh(engine: Engine, *, progress: Callable[[str, float], None] | None = None,
                stage_hook: StageHook | None = None) -> int:
    """Run every stage and publish the run; return its id.

    Raises
    ------
    RefreshError
        When another refresh is running, or a stage fails (the run is then marked failed, its
        partial results deleted, and the previous run stays current).
    """
    init_schema(engine)
    check_store(engine)
    mark_abandoned_runs(engine)
    other = _running_elsewhere(engine)
    if other is not None:
        raise RefreshError(f"Refresh run {other} is still running; wait for it to finish.")
    with engine.begin() as conn:
        run_id = conn.execute(insert(refresh_runs).values(
            started_at=utcnow(), status="running", host=socket.gethostname(), pid=os.getpid(),
        )).inserted_primary_key[0]
    log.info("refresh run %s started", run_id)
    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=latest_activity_month(engine),
                         progress=progress)
    try:
        for i, stage in enumerate(STAGES):
            with engine.begin() as conn:
                conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == run_id).values(stage=stage.name))
            if progress:
                progress(stage.name, i / len(STAGES))
            if stage_hook:
                stage_hook(stage.name, "before")
            t0 = time.perf_counter()
            stage.run(ctx)
            ctx.metrics[f"stage_seconds.{stage.name}"] = round(time.perf_counter() - t0, 3)
            if stage_hook:
                stage_hook(stage.name, "after")
        _publish(engine, ctx)
    except BaseException as exc:
        # BaseException too: a Ctrl-C mid-run must still leave the run marked failed.
        _fail(engine, run_id, exc)
        if isinstance(exc, Exception) and not isinstance(exc, RefreshError):
            raise RefreshError(f"Refresh run {run_id} failed in stage {_stage_of(engine, run_id)}: "
                               f"{type(exc).__name__}: {exc}") from exc
        raise
    if progress:
        progress("published", 1.0)
    _prune_old_results(engine)
    log.info("refresh run %s published", run_id)
    return run_id


def _stage_of(engine: Engine, run_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(refresh_runs.c.stage).where(refresh_runs.c.run_id == run_id)).scalar()


def _publish(engine: Engine, ctx: RefreshContext) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == ctx.run_id).values(
            status="succeeded", finished_at=now, stage=None,
            row_counts=ctx.row_counts, metrics=ctx.metrics))
        moved = conn.execute(update(current_run).where(current_run.c.id == 1).values(
            run_id=ctx.run_id, published_at=now)).rowcount
        if not moved:
            conn.execute(insert(current_run).values(id=1, run_id=ctx.run_id, published_at=now))


def _fail(engine: Engine, run_id: int, exc: BaseException) -> None:
    try:
        _delete_results(engine, run_id)
        with engine.begin() as conn:
            conn.execute(update(refresh_runs).where(refresh_runs.c.run_id == run_id).values(
                status="failed", finished_at=utcnow(), error=f"{type(exc).__name__}: {exc}"[:2000]))
    except Exception:  # the store itself may be what failed; the next refresh marks the run then
        log.exception("could not mark refresh run %s failed", run_id)


def _prune_old_results(engine: Engine) -> None:
    keep = int(settings.get("REFRESH_KEEP_RUNS"))
    with engine.connect() as conn:
        ids = conn.execute(select(refresh_runs.c.run_id).where(refresh_runs.c.status == "succeeded")
                           .order_by(refresh_runs.c.run_id.desc())).scalars().all()
        current = conn.execute(select(current_run.c.run_id)).scalar()
    for run_id in ids[keep:]:
        if run_id != current:
            _delete_results(engine, run_id)




@dataclass(frozen=True)
class Freshness:
    """How current the published results are, for the pages' stale-data notices.

    ``age_hours``: since the published run finished. ``failed_run``: the newest run that failed
    after it (its id, stage and finish time), if any. ``loads_since``: import batches loaded after
    it (the pages do not show them yet). ``stale``: older than the ``DATA_STALE_HOURS`` setting.
    """

    run_id: int | None
    finished_at: datetime | None
    age_hours: float | None
    stale: bool
    failed_run: dict | None
    loads_since: int


def freshness(engine: Engine, now: datetime | None = None) -> Freshness:
    """Whether the published run is old, has a failed refresh after it, or predates new data."""
    from analytics.schema import load_batches

    now = now or utcnow()
    with engine.connect() as conn:
        run_id = conn.execute(select(current_run.c.run_id).where(current_run.c.id == 1)).scalar()
        if run_id is None:
            return Freshness(None, None, None, False, None, 0)
        finished = conn.execute(select(refresh_runs.c.finished_at).where(refresh_runs.c.run_id == run_id)).scalar()
        failed = conn.execute(
            select(refresh_runs.c.run_id, refresh_runs.c.stage, refresh_runs.c.finished_at)
            .where(refresh_runs.c.status == "failed", refresh_runs.c.run_id > run_id)
            .order_by(refresh_runs.c.run_id.desc()).limit(1)).mappings().first()
        loads = conn.execute(select(func.count()).select_from(load_batches)
                             .where(load_batches.c.loaded_at > finished)).scalar() if finished else 0
    age = (now - finished).total_seconds() / 3600 if finished else None
    limit = float(settings.get("DATA_STALE_HOURS"))
    return Freshness(run_id=run_id, finished_at=finished, age_hours=age,
                     stale=age is not None and age > limit, failed_run=dict(failed) if failed else None,
                     loads_since=int(loads or 0))


def status(engine: Engine, limit: int = 10) -> dict:
    """The current run and the most recent runs, as plain JSON-ready data."""
    init_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(refresh_runs).order_by(refresh_runs.c.run_id.desc()).limit(limit)).mappings().all()
        cur = conn.execute(select(current_run)).mappings().first()

    def plain(row):
        out = {}
        for k, v in dict(row).items():
            out[k] = v.isoformat(sep=" ", timespec="seconds") if isinstance(v, datetime) else v
        return out

    return {
        "current_run": cur["run_id"] if cur else None,
        "published_at": cur["published_at"].isoformat(sep=" ", timespec="seconds") if cur else None,
        "runs": [plain(r) for r in rows],
    }
