"""Targets of the KPI wall's monthly series, and how much of a target a figure reached.

A bank states its targets in the ``kpi_targets`` table, loaded like any store table:
``python -m analytics load targets.csv --table kpi_targets``. ``data/kpi_targets.csv`` is an example
set for the 3,000-customer demo; ``setup-demo`` sets a new demo store's targets from its own figures,
whatever its size (:mod:`analytics.demo.targets`), and loads them the same way. One row per KPI,
period and branch:

``kpi``        one of :data:`TARGET_KPIS` (the wall's monthly series)
``period``     a month ``YYYY-MM`` or a year ``YYYY``
``branch_id``  a branch of the store, or ``ALL`` for the bank as a whole
``target``     the figure aimed at, zero or more (a count, or an amount in CNY)

What a target is compared with (:func:`attainment`): for a month, the month's figure. For a year,
a *stock* (customers, active, AUM, deposits, loans) is compared as it stands in the latest month
(a year-end target), and a *flow* (new and churned customers) as the sum of the year's months so far
(year to date). The month's own target wins over the year's. A viewer scoped to branches is shown
the sum of its branches' targets, and only when every one of them has a target for the period: a
partial sum would make the figure look better than it is. A viewer scoped to portfolios has no
target (targets are set per branch, not per relationship manager).

A file row with an unknown KPI (the table's ``IN`` check), a bad period, a negative target or an
unknown branch is rejected to ``load_rejects`` with that reason (:func:`check_rows`), like any
rejected row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from analytics.schema import branches, kpi_targets
from analytics.store import read_frame

TARGET_KPIS = ("customers", "active", "new", "churned", "aum", "deposits", "loans")
FLOWS = ("new", "churned")  # a year's target is for the sum of its months
BANK = "ALL"
# An example targets file, set for the 3,000-customer demo (seed 7 or 42); setup-demo derives its own.
DEMO_FILE = Path(__file__).resolve().parents[1] / "data" / "kpi_targets.csv"
_PERIOD_RE = re.compile(r"\d{4}(?:-(?:0[1-9]|1[0-2]))?")


def check_rows(conn, rows: list[dict]) -> dict[int, list[str]]:
    """The loader's row check of ``kpi_targets``: ``{index: [reason, ...]}`` for the rows of
    ``rows`` (parsed values) with a bad period, a negative target or an unknown branch."""
    known: set[str] | None = None
    out: dict[int, list[str]] = {}
    for i, row in enumerate(rows):
        reasons = []
        period = row.get("period")
        if period is not None and not _PERIOD_RE.fullmatch(str(period).strip()):
            reasons.append("bad period: period (a month YYYY-MM or a year YYYY)")
        target = row.get("target")
        if target is not None and target < 0:
            reasons.append("negative target: target")
        branch = row.get("branch_id")
        if branch is not None and branch != BANK:
            if known is None:
                known = set(conn.execute(select(branches.c.branch_id)).scalars())
            if branch not in known:
                reasons.append(f"unknown branch: branch_id (a branch of the store, or {BANK} for the bank)")
        if reasons:
            out[i] = reasons
    return out


@dataclass(frozen=True)
class Attainment:
    """A figure against its target: ``actual`` of ``target`` for ``period`` (``YYYY-MM`` or ``YYYY``)."""

    actual: float
    target: float
    period: str

    @property
    def share(self) -> float | None:
        """The figure as a share of its target (1.0 = on target); None for a target of zero."""
        return self.actual / self.target if self.target > 0 else None

    @property
    def yearly(self) -> bool:
        return len(self.period) == 4


def read_targets(engine: Engine, as_of_month: date) -> pd.DataFrame:
    """The targets of ``as_of_month``'s month and year: columns kpi, period, branch_id, target."""
    periods = [f"{as_of_month:%Y-%m}", f"{as_of_month:%Y}"]
    return read_frame(engine, select(kpi_targets.c.kpi, kpi_targets.c.period, kpi_targets.c.branch_id,
                                     kpi_targets.c.target).where(kpi_targets.c.period.in_(periods)))


def _target(frame: pd.DataFrame, kpi: str, period: str, branch_ids: frozenset[str] | None) -> float | None:
    rows = frame[(frame["kpi"] == kpi) & (frame["period"] == period)]
    if branch_ids is None:
        rows = rows[rows["branch_id"] == BANK]
        return float(rows["target"].iloc[0]) if len(rows) else None
    rows = rows[rows["branch_id"].isin(branch_ids)]
    if not branch_ids or set(rows["branch_id"]) != set(branch_ids):
        return None  # a branch without a target: no partial sum
    return float(rows["target"].sum())


def attainment(series: pd.DataFrame, targets: pd.DataFrame, as_of_month: date,
               branch_ids: frozenset[str] | None = None) -> dict[str, Attainment]:
    """Each KPI of ``series`` (a :func:`analytics.kpi.monthly_series` frame, ending at
    ``as_of_month``) against its target: the month's if there is one, else the year's.

    ``branch_ids`` None compares with the bank's targets (``ALL``), a set of branches with the sum
    of theirs (see the module docstring)."""
    out: dict[str, Attainment] = {}
    if series.empty or targets.empty:
        return out
    months = pd.to_datetime(series["month"]).dt.date
    current = series[months == as_of_month]
    if current.empty:
        return out
    year_to_date = series[(months <= as_of_month) & (pd.to_datetime(series["month"]).dt.year == as_of_month.year)]
    for kpi in TARGET_KPIS:
        if kpi not in series.columns:
            continue
        for period in (f"{as_of_month:%Y-%m}", f"{as_of_month:%Y}"):
            target = _target(targets, kpi, period, branch_ids)
            if target is None:
                continue
            yearly = len(period) == 4
            actual = (float(year_to_date[kpi].sum()) if yearly and kpi in FLOWS
                      else float(current[kpi].iloc[0]))
            out[kpi] = Attainment(actual, target, period)
            break
    return out


__all__ = ["BANK", "FLOWS", "TARGET_KPIS", "Attainment", "attainment", "check_rows", "read_targets"]
