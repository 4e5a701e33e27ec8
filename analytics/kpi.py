"""The KPI wall's figures: headline numbers with their change since last month, and sparklines.

Monthly series (customers with a balance, active, new and churned customers; AUM, deposits, loans)
are aggregated in SQL from ``customer_monthly`` and ``customers`` by the refresh's ``aggregates``
stage and stored per run in ``kpi_monthly``; run-level figures (average CLV, predicted churn, value
at risk, cross-sell potential, risk mix, data quality) come from the run's metrics, with their
change taken against the previous successful run. Everything here is an aggregate: no customer-level row.

Definitions (per month ``m``):

``customers``   customers with a positive AUM or a loan balance in ``m``
``active``      customers with at least one customer-initiated transaction in ``m``
``new``         customers whose ``open_date`` falls in ``m``
``churned``     customers with a positive AUM in the month before ``m`` and zero AUM, zero loans and
                no transaction in ``m`` (the month they left)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from analytics.schema import kpi_monthly, refresh_runs, run_metrics
from analytics.store import read_frame

SERIES = ("customers", "active", "new", "churned", "aum", "deposits", "loans")
MONTHS = 13  # a year of change plus the month before it


def _month_back(month: date, n: int) -> date:
    y, m = divmod(month.year * 12 + month.month - 1 - n, 12)
    return date(y, m + 1, 1)


def monthly_series(engine: Engine, as_of_month: date, months: int = MONTHS) -> pd.DataFrame:
    """The KPI series for the ``months`` months up to ``as_of_month``: one row per month."""
    first = _month_back(as_of_month, months - 1)
    sums = read_frame(engine, """
        SELECT month,
               SUM(CASE WHEN aum > 0 OR loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(CASE WHEN txn_count > 0 THEN 1 ELSE 0 END) AS active,
               SUM(aum) AS aum, SUM(deposit_balance) AS deposits, SUM(loan_balance) AS loans
        FROM customer_monthly WHERE month >= :first AND month <= :last
        GROUP BY month ORDER BY month
    """, {"first": first, "last": as_of_month})
    # The month each customer left: one bound query per month (the store's month arithmetic differs
    # between SQLite and PostgreSQL, so the previous month is computed here).
    churned = {}
    month = first
    while month <= as_of_month:
        churned[month] = int(read_frame(engine, """
            SELECT COUNT(*) AS n FROM customer_monthly cur
            JOIN customer_monthly prev ON prev.customer_id = cur.customer_id AND prev.month = :prev
            WHERE cur.month = :cur AND prev.aum > 0 AND cur.aum = 0 AND cur.loan_balance = 0
              AND cur.txn_count = 0
        """, {"prev": _month_back(month, 1), "cur": month})["n"].iloc[0])
        month = _month_back(month, -1)
    opened = read_frame(engine, "SELECT open_date FROM customers WHERE open_date >= :first",
                        {"first": first})
    frame = sums.copy()
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    new = pd.to_datetime(opened["open_date"]).dt.to_period("M").dt.to_timestamp().dt.date.value_counts()
    frame["new"] = frame["month"].map(new).fillna(0).astype(int)
    frame["churned"] = frame["month"].map(churned).fillna(0).astype(int)
    return frame[["month", *SERIES]]


def write_monthly_series(ctx) -> None:
    """Store the run's monthly KPI series in ``kpi_monthly`` (part of the refresh's ``aggregates``
    stage); nothing without activity data."""
    if ctx.as_of_month is None:
        return
    series = monthly_series(ctx.engine, ctx.as_of_month)
    rows = [{"run_id": ctx.run_id, "month": r.month, "metric": name, "value": float(getattr(r, name))}
            for r in series.itertuples(index=False) for name in SERIES]
    with ctx.engine.begin() as conn:
        conn.execute(delete(kpi_monthly).where(kpi_monthly.c.run_id == ctx.run_id))
        if rows:
            conn.execute(insert(kpi_monthly), rows)
    ctx.row_counts["kpi_monthly"] = len(rows)


@dataclass(frozen=True)
class Card:
    """One KPI tile: a value, its change against the previous period, and a sparkline."""

    key: str
    value: float | None
    previous: float | None
    spark: tuple[float, ...] = ()
    kind: str = "count"  # count, money, rate

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


def _run_metric_history(engine: Engine, run_id: int, names: tuple[str, ...]) -> pd.DataFrame:
    """Values of run metrics over the successful runs up to ``run_id``, oldest first."""
    stmt = (select(run_metrics.c.run_id, run_metrics.c.name, run_metrics.c.value)
            .join(refresh_runs, refresh_runs.c.run_id == run_metrics.c.run_id)
            .where(refresh_runs.c.status == "succeeded", run_metrics.c.run_id <= run_id,
                   run_metrics.c.name.in_(names)))
    frame = read_frame(engine, stmt)
    if frame.empty:
        return pd.DataFrame(columns=list(names))
    return frame.pivot_table(index="run_id", columns="name", values="value", aggfunc="last").sort_index()


# Run-level cards: key -> (run metric, or a ratio derived below, and its kind)
RUN_CARDS = {
    "avg_clv": ("avg_clv", "money"),  # 3-year margin CLV per customer
    "churn_rate": ("churn_rate", "rate"),  # expected churners / active customers, next horizon
    "value_at_risk": ("churn.value_at_risk_total", "money"),
    "cross_sell_potential": ("cross_sell.next_best_expected_value_total", "money"),
    "risk_mix": ("risk.r4_r5_share", "rate"),  # share of asset balances in R4-R5 products
    "dq_overall": ("dq_overall", "rate"),
}
_RAW = ("clv_margin_3y_total", "segments.customers", "churn.expected_churners", "churn.customers_active",
        "churn.value_at_risk_total", "cross_sell.next_best_expected_value_total", "risk.r4_r5_share",
        "dq_overall")


def cards(engine: Engine, run_id: int) -> dict[str, Card]:
    """Every KPI tile of a run, keyed by name."""
    series = read_frame(engine, select(kpi_monthly.c.month, kpi_monthly.c.metric, kpi_monthly.c.value)
                        .where(kpi_monthly.c.run_id == run_id))
    out: dict[str, Card] = {}
    if not series.empty:
        wide = series.pivot_table(index="month", columns="metric", values="value").sort_index()
        for name in SERIES:
            if name in wide.columns:
                values = wide[name].astype(float).tolist()
                out[name] = Card(name, values[-1], values[-2] if len(values) > 1 else None, tuple(values),
                                 "money" if name in ("aum", "deposits", "loans") else "count")
    history = _run_metric_history(engine, run_id, _RAW)
    for derived, (num, den) in {"avg_clv": ("clv_margin_3y_total", "segments.customers"),
                                "churn_rate": ("churn.expected_churners", "churn.customers_active")}.items():
        if {num, den} <= set(history.columns):
            history[derived] = history[num] / history[den].where(history[den] > 0)
    for key, (metric, kind) in RUN_CARDS.items():
        if metric in history.columns:
            values = history[metric].dropna().astype(float).tolist()
            if values:
                out[key] = Card(key, values[-1], values[-2] if len(values) > 1 else None, tuple(values), kind)
    return out
