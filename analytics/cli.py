"""Command-line interface: ``python -m analytics COMMAND [options]``.

Every command takes ``--db URL`` (else ``CUSTOMER_STORE_URL``, else ``sqlite:///data/bank.db``).
Errors print one line on stderr and exit non-zero; no tracebacks for expected failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from analytics import settings
from analytics.errors import AnalyticsError
from analytics.store import redact_url


def _engine(args, *, create_dir: bool = False):
    from analytics.store import init_schema, make_engine

    engine = make_engine(args.db, create_dir=create_dir)
    init_schema(engine)
    return engine


def cmd_demo(args) -> int:
    from analytics import demo

    engine = _engine(args, create_dir=True)
    summary = demo.generate(engine, customers=args.customers, months=args.months, seed=args.seed,
                            progress=not args.quiet)
    counts = summary.get("row_counts", summary)
    print("demo store built: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int)))
    return 0


def cmd_load(args) -> int:
    from analytics import loader

    engine = _engine(args)
    report = loader.load_files(engine, args.files, args.table)
    for line in report.summary_lines():
        print(line)
    return 0


def cmd_refresh(args) -> int:
    from analytics.refresh import run_refresh

    engine = _engine(args)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=100, desc="refresh", unit="%", file=sys.stderr, leave=False)

    def progress(stage: str, fraction: float) -> None:
        if bar is not None:
            bar.set_description(f"refresh: {stage}")
            bar.n = round(fraction * 100)
            bar.refresh()

    try:
        run_id = run_refresh(engine, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"refresh run {run_id} published")
    return 0


def cmd_status(args) -> int:
    from analytics.refresh import status

    engine = _engine(args)
    info = status(engine, limit=args.limit)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, default=str, indent=2))
        return 0
    print(f"current run: {info['current_run'] or 'none (run `python -m analytics refresh`)'}"
          + (f", published {info['published_at']} UTC" if info["published_at"] else ""))
    for run in info["runs"]:
        line = f"  run {run['run_id']:>4}  {run['status']:<9}  started {run['started_at']}"
        if run["finished_at"]:
            line += f"  finished {run['finished_at']}"
        if run["status"] == "failed" and run.get("error"):
            line += f"  ({run['error'][:120]})"
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analytics", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", metavar="URL", help="store URL (default: CUSTOMER_STORE_URL or sqlite:///data/bank.db)")
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "Build a realistic demo store (replaces the store tables).")
    p.add_argument("--customers", type=int, default=20000, metavar="N")
    p.add_argument("--months", type=int, default=24, metavar="M")
    p.add_argument("--seed", type=int, default=42, metavar="S")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("load", cmd_load, "Import CSV or Parquet files into a store table, with validation.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--table", required=True, metavar="T")

    p = add("refresh", cmd_refresh, "Compute every analytic and publish the results as one run.")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("status", cmd_status, "Show the current refresh run and recent runs.")
    p.add_argument("--json", action="store_true", help="print a JSON object (current_run, runs)")
    p.add_argument("--limit", type=int, default=10)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AnalyticsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # The driver's message may hold a URL with a password: show the class and a redacted hint only.
        print(f"error: the store failed ({type(exc).__name__}); check that {redact_url(args.db or settings.get('CUSTOMER_STORE_URL'))} "
              "is reachable and has the expected schema", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
