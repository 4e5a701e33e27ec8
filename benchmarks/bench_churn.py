"""Time the refresh's churn stage (and its parts) on a demo store, with peak memory.

Run from the repository root, on a store built beforehand::

    .venv/bin/python -m analytics demo --customers 100000 --db sqlite:////tmp/churn100k.db --quiet
    .venv/bin/python benchmarks/bench_churn.py --db sqlite:////tmp/churn100k.db

The stage runs under a scratch refresh run: first the segments stage (the churn stage reads its
margin CLV, as in a real refresh; ``--no-segments`` skips it and the churn stage falls back to the
holdings' margin), then the churn stage. The scratch run and its rows are deleted afterwards, so
the store's published run is untouched. Prints one JSON object:

``customers``            customers in the store
``segments_seconds``     wall time of the segments stage (null with ``--no-segments``)
``churn_seconds``        wall time of the churn stage
``churn_parts_seconds``  the stage's own breakdown (features and labels per period, fits,
                         evaluation, scoring with reason codes, writing)
``peak_rss_mib``         the process's peak resident memory (store reads, both stages)
``holdout``              the stage's hold-out ROC AUC, PR AUC, Brier score and top-decile lift
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

# a standalone script: make `analytics` importable without installing the project
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, insert, text  # noqa: E402

from analytics.churn import churn_stage, read_churn_metrics  # noqa: E402
from analytics.refresh import latest_activity_month, result_tables
from analytics.runs import RefreshContext, utcnow  # noqa: E402
from analytics.schema import refresh_runs  # noqa: E402
from analytics.store import init_schema, make_engine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="store URL, e.g. sqlite:////tmp/churn100k.db")
    parser.add_argument("--no-segments", action="store_true", help="skip the segments stage (CLV fallback)")
    args = parser.parse_args(argv)

    engine = make_engine(args.db)
    init_schema(engine)
    with engine.connect() as conn:
        customers = conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()
    with engine.begin() as conn:
        run_id = conn.execute(insert(refresh_runs).values(started_at=utcnow(), status="running",
                                                          stage="benchmark")).inserted_primary_key[0]
    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=latest_activity_month(engine))
    try:
        from analytics.features_stage import features_stage_for
        from analytics.refresh import FEATURE_CUTOFFS

        t0 = time.perf_counter()
        features_stage_for(FEATURE_CUTOFFS)(ctx)  # the feature frames the later stages read
        features_seconds = round(time.perf_counter() - t0, 2)
        segments_seconds = None
        if not args.no_segments:
            from analytics.segmentation.stage import segments_stage

            t0 = time.perf_counter()
            segments_stage(ctx)
            segments_seconds = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        churn_stage(ctx)
        churn_seconds = round(time.perf_counter() - t0, 2)
        metrics = read_churn_metrics(engine, run_id)
    finally:
        with engine.begin() as conn:
            for table in reversed(result_tables()):
                conn.execute(delete(table).where(table.c.run_id == run_id))
            conn.execute(delete(refresh_runs).where(refresh_runs.c.run_id == run_id))
    report = {
        "customers": customers,
        "features_seconds": features_seconds,
        "segments_seconds": segments_seconds,
        "churn_seconds": churn_seconds,
        "churn_parts_seconds": {k.split(".", 1)[1]: v for k, v in ctx.metrics.items()
                                if k.startswith("churn_seconds.")},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "holdout": {k: metrics.get(f"churn.{k}") for k in ("holdout_roc_auc", "holdout_pr_auc", "holdout_brier",
                                                           "holdout_base_rate", "top_decile_lift",
                                                           "holdout_customers", "train_customers")},
        "skipped": metrics.get("churn.skipped"),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
