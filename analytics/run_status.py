"""How current the published results are, and the recent refresh runs: what the pages and the
``status`` command read about runs.

Kept apart from :mod:`analytics.refresh`, which imports every stage (and with them scikit-learn), so
a page that only shows freshness or the run list does not load the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from analytics import settings
from analytics.runs import utcnow
from analytics.schema import current_run, load_batches, refresh_runs
from analytics.store import init_schema


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


__all__ = ["Freshness", "freshness", "status"]
