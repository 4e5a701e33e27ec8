"""Peak memory and time of the churn stage alone, for a partition count and executor.

    python benchmarks/partition_memory.py --db sqlite:////tmp/store100k/bank.db --partitions 8 [--workers 2]

Runs the churn stage once in this process under a new run that is never published (its rows are
deleted afterwards), and prints one JSON line: seconds, the peak RSS of this process and the largest
peak RSS of any worker process it waited for (``ru_maxrss``, MB). Run it in a fresh interpreter
per measurement: ``ru_maxrss`` only grows. Not part of ``make bench``'s results file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    os.environ["REFRESH_PARTITIONS"] = str(args.partitions)
    os.environ["REFRESH_WORKERS"] = str(args.workers)

    from sqlalchemy import insert

    from analytics import churn
    from analytics.refresh import _delete_results, latest_activity_month
    from analytics.runs import RefreshContext, utcnow
    from analytics.schema import refresh_runs
    from analytics.store import make_engine

    engine = make_engine(args.db)
    with engine.begin() as conn:
        run_id = conn.execute(insert(refresh_runs).values(started_at=utcnow(), status="failed",
                                                          error="benchmark run, never published")
                              ).inserted_primary_key[0]
    ctx = RefreshContext(engine=engine, run_id=run_id, as_of_month=latest_activity_month(engine))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        churn.churn_stage(ctx)
    finally:
        seconds = time.perf_counter() - started
        _delete_results(engine, run_id)
    print(json.dumps({
        "partitions": args.partitions, "workers": args.workers, "seconds": round(seconds, 1),
        "rows": ctx.row_counts.get("churn_scores"),
        "rss_before_mb": round(base), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "score_seconds": ctx.metrics.get("churn_seconds.score"),
    }))


if __name__ == "__main__":
    main()
