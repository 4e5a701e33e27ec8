"""One refresh of the store at ``--db URL`` with pyinstrument sampling the named stages.

Writes ``<stage>.txt`` (the call tree, wall time, with the CPU time in its header) and
``<stage>.html`` per profiled stage into ``--out``, and prints one JSON object: the run's own
``stage_seconds`` and step timings, and each stage's peak RSS (:func:`benchmarks.memory.stage_probe`).
Profile before optimising: ``python benchmarks/profile_refresh.py --db sqlite:////tmp/bank100k.db``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyinstrument import Profiler  # noqa: E402

from analytics.refresh import run_refresh, status  # noqa: E402
from analytics.store import make_engine  # noqa: E402
from benchmarks.memory import stage_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", default="profile-refresh", help="folder for the profiles")
    parser.add_argument("--stages", default="customer_features,segments,cross_sell,churn",
                        help="comma-separated stages to profile")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.stages.split(","))
    peaks: dict[str, float | None] = {}
    probe = stage_probe(peaks)
    running: dict[str, Profiler] = {}

    def hook(stage: str, when: str) -> None:
        probe(stage, when)
        if stage not in wanted:
            return
        if when == "before":
            running[stage] = Profiler(interval=0.005)
            running[stage].start()
        else:
            profiler = running.pop(stage)
            profiler.stop()
            (out / f"{stage}.txt").write_text(profiler.output_text(unicode=False, color=False))
            (out / f"{stage}.html").write_text(profiler.output_html())

    engine = make_engine(args.db)
    t0 = time.perf_counter()
    run_refresh(engine, stage_hook=hook)
    seconds = round(time.perf_counter() - t0, 1)
    metrics = status(engine)["runs"][0].get("metrics") or {}

    def group(prefix: str) -> dict:
        return {k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith(prefix + ".")}

    result = {"refresh_seconds": seconds, "stage_seconds": group("stage_seconds"),
              "features_seconds": group("features_seconds"), "segments_seconds": group("segments_seconds"),
              "cross_sell_seconds": group("cross_sell_seconds"), "churn_seconds": group("churn_seconds"),
              "stage_peak_rss_mib": peaks}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
