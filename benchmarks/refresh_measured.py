"""One refresh of the store at ``--db URL``, measured per stage; prints one JSON object.

``stage_seconds`` comes from the run's own metrics; ``stage_peak_rss_mib`` from
:func:`benchmarks.memory.stage_probe`, which the refresh calls around each stage. With
``--dask-workers N`` the refresh's partitions run on a Dask ``LocalCluster`` of N worker processes
(one thread each), through ``DASK_SCHEDULER_ADDRESS`` as a real cluster would be named, and
``dask_worker_peak_rss_mib`` is each worker's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.refresh import run_refresh, status  # noqa: E402
from analytics.store import make_engine  # noqa: E402
from benchmarks.memory import stage_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--dask-workers", type=int, default=0)
    args = parser.parse_args()
    engine = make_engine(args.db)
    peaks: dict[str, float | None] = {}
    out: dict = {}
    if args.dask_workers:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            os.environ["DASK_SCHEDULER_ADDRESS"] = cluster.scheduler_address
            run_refresh(engine, stage_hook=stage_probe(peaks))
            worker_kib = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            out["dask_worker_peak_rss_mib"] = {w: round(k / 1024, 1) for w, k in sorted(worker_kib.items())}
    else:
        run_refresh(engine, stage_hook=stage_probe(peaks))
    metrics = status(engine)["runs"][0].get("metrics") or {}
    print(json.dumps({"stage_seconds": {k.split(".", 1)[1]: v for k, v in metrics.items()
                                        if k.startswith("stage_seconds.")},
                      "stage_peak_rss_mib": peaks, **out}))


if __name__ == "__main__":
    main()
