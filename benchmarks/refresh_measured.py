"""One refresh of the store at ``--db URL``, measured per stage; prints one JSON object.

``stage_seconds`` comes from the run's own metrics; ``stage_peak_rss_mib`` from
:func:`benchmarks.memory.stage_probe`, which the refresh calls around each stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.refresh import run_refresh, status  # noqa: E402
from analytics.store import make_engine  # noqa: E402
from benchmarks.memory import stage_probe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    engine = make_engine(args.db)
    peaks: dict[str, float | None] = {}
    run_refresh(engine, stage_hook=stage_probe(peaks))
    metrics = status(engine)["runs"][0].get("metrics") or {}
    print(json.dumps({"stage_seconds": {k.split(".", 1)[1]: v for k, v in metrics.items()
                                        if k.startswith("stage_seconds.")},
                      "stage_peak_rss_mib": peaks}))


if __name__ == "__main__":
    main()
