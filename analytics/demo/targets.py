"""KPI targets for a demo store of any size, derived from the store's own figures.

A fixed targets file fits one store only: set for 3,000 customers, it shows a 20,000-customer demo at
about 700 % of target. :func:`demo_targets` sets each target from the store's as-of month (and the
12 months before it) with a stretch a bank might set, so the KPI wall shows plausible shares of
target whatever ``--customers`` was. ``setup-demo`` writes them to ``data/demo-kpi-targets.csv``
(git-ignored) and loads that file through the loader, exactly as a bank loads its own with
``python -m analytics load FILE --table kpi_targets`` (edit the file and load it again to try other
targets). ``data/kpi_targets.csv`` stays as the format's example, set for the 3,000-customer demo.

The rows, 14 + 4 per branch (the shape of ``data/kpi_targets.csv``):

============================  ==========================================================================
target                         value (``x`` the as-of month's figure, ``f`` the mean of the 12 months
                               before it)
============================  ==========================================================================
stock, the month, ``ALL``      ``x * 1.02``: just ahead of where the bank stands (98 % of target)
stock, the year, ``ALL``       ``x * 1.05``: the year-end target, still 5 % to grow
new, the month / the year      ``f * 1.10`` / ``12 * f * 1.10``: 10 % more new customers (the year's
                               target is for the whole year; the wall compares it year to date)
churned, the month / the year  ``f * 0.90`` / ``12 * f * 0.90``: 10 % fewer leavers (a ceiling)
stock, the year, a branch      ``x * s``, ``s`` drawn per branch from 1.00-1.12 with the seed: some
                               branches near their target, some behind
============================  ==========================================================================

Stocks are customers, active, AUM, deposits and loans; counts are rounded to whole customers and
amounts to whole yuan. Targets are never negative; a branch with no customer in the as-of month
gets none.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from analytics import kpi
from analytics.store import read_frame
from analytics.targets import BANK, FLOWS, TARGET_KPIS

STOCKS = tuple(k for k in TARGET_KPIS if k not in FLOWS)
BRANCH_KPIS = ("customers", "aum", "deposits", "loans")  # per-branch yearly targets, as in the example file
MONTH_STRETCH = 1.02
YEAR_STRETCH = 1.05
NEW_STRETCH = 1.10
CHURN_STRETCH = 0.90
BRANCH_STRETCH = (1.00, 1.12)
COLUMNS = ["kpi", "period", "branch_id", "target"]


def _round(value: float) -> float:
    """Whole customers, whole yuan, never negative."""
    return float(max(round(value), 0))


def demo_targets(engine: Engine, as_of_month: date, *, seed: int = 42) -> pd.DataFrame:
    """The demo's KPI targets for ``as_of_month`` (its month and its year), bank-wide and per branch.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        A store with ``customer_monthly`` rows up to ``as_of_month`` (no refresh needed).
    as_of_month : datetime.date
        The first day of the store's latest activity month.
    seed : int
        Seeds the per-branch stretch: the same store and seed give the same targets.

    Returns
    -------
    pandas.DataFrame
        Columns kpi, period (``YYYY-MM`` or ``YYYY``), branch_id (``ALL`` or a branch), target.
    """
    series = kpi.monthly_series(engine, as_of_month, months=13)
    months = pd.to_datetime(series["month"]).dt.date
    now = series[months == as_of_month]
    before = series[months < as_of_month]
    month, year = f"{as_of_month:%Y-%m}", f"{as_of_month:%Y}"
    rows = []
    for name in TARGET_KPIS:
        if name in STOCKS:
            x = float(now[name].iloc[0]) if len(now) else 0.0
            month_target, year_target = x * MONTH_STRETCH, x * YEAR_STRETCH
        else:
            f = float(before[name].mean()) if len(before) else 0.0
            stretch = NEW_STRETCH if name == "new" else CHURN_STRETCH
            month_target, year_target = f * stretch, 12 * f * stretch
        rows.append((name, month, BANK, _round(month_target)))
        rows.append((name, year, BANK, _round(year_target)))
    by_branch = read_frame(engine, """
        SELECT c.branch_id AS branch_id,
               SUM(CASE WHEN cm.aum > 0 OR cm.loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(cm.aum) AS aum, SUM(cm.deposit_balance) AS deposits, SUM(cm.loan_balance) AS loans
        FROM customer_monthly cm JOIN customers c ON c.customer_id = cm.customer_id
        WHERE cm.month = :m GROUP BY c.branch_id ORDER BY c.branch_id
    """, {"m": as_of_month})
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    stretch = rng.uniform(*BRANCH_STRETCH, len(by_branch))
    for (_, row), s in zip(by_branch.iterrows(), stretch, strict=True):
        for name in BRANCH_KPIS:
            rows.append((name, year, str(row["branch_id"]), _round(float(row[name] or 0.0) * s)))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_targets_file(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as a targets CSV the loader reads (``load FILE --table kpi_targets``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for r in frame.itertuples(index=False):
            out.writerow([r.kpi, r.period, r.branch_id, f"{r.target:.0f}"])
    return path


__all__ = ["BRANCH_KPIS", "demo_targets", "write_targets_file"]
