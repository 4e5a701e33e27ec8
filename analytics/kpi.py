"""The KPI wall's figures: headline numbers with their changes on a named basis (month on month
and year on year for a monthly series, since the previous refresh for a run-level figure), their
share of target (:mod:`analytics.targets`), sparklines, and a top/bottom ranking of branches or
regions (:func:`ranking`).

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

from dataclasses import dataclass, replace
from datetime import date

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from analytics.access import Viewer, min_cell_customers
from analytics.runs import get_run_metrics
from analytics.schema import kpi_monthly, refresh_runs, run_metrics
from analytics.store import read_frame
from analytics.targets import Attainment, attainment, read_targets

SERIES = ("customers", "active", "new", "churned", "aum", "deposits", "loans")
MONTHS = 13  # a year of change plus the month before it


def _month_back(month: date, n: int) -> date:
    y, m = divmod(month.year * 12 + month.month - 1 - n, 12)
    return date(y, m + 1, 1)


def monthly_series(engine: Engine, as_of_month: date, months: int = MONTHS, *,
                   viewer: Viewer | None = None) -> pd.DataFrame:
    """The KPI series for the ``months`` months up to ``as_of_month``: one row per month, over the
    customers in ``viewer``'s scope when one is given (else the whole bank)."""
    first = _month_back(as_of_month, months - 1)
    scope, scope_params = ("1 = 1", {}) if viewer is None else viewer.scope_sql("sc")
    # The scope is a condition on the customer's record: a bank-wide series needs no join.
    join = "" if viewer is None or viewer.scope is None else "JOIN customers sc ON sc.customer_id = cm.customer_id"
    sums = read_frame(engine, f"""
        SELECT cm.month AS month,
               SUM(CASE WHEN cm.aum > 0 OR cm.loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(CASE WHEN cm.txn_count > 0 THEN 1 ELSE 0 END) AS active,
               SUM(cm.aum) AS aum, SUM(cm.deposit_balance) AS deposits, SUM(cm.loan_balance) AS loans
        FROM customer_monthly cm {join} WHERE cm.month >= :first AND cm.month <= :last AND {scope}
        GROUP BY cm.month ORDER BY cm.month
    """, {**scope_params, "first": first, "last": as_of_month})
    # The month each customer left: one bound query per month (the store's month arithmetic differs
    # between SQLite and PostgreSQL, so the previous month is computed here).
    churned = {}
    month = first
    while month <= as_of_month:
        churned[month] = int(read_frame(engine, f"""
            SELECT COUNT(*) AS n FROM customer_monthly cur
            JOIN customer_monthly prev ON prev.customer_id = cur.customer_id AND prev.month = :prev
            {join.replace("cm.customer_id", "cur.customer_id")}
            WHERE cur.month = :cur AND prev.aum > 0 AND cur.aum = 0 AND cur.loan_balance = 0
              AND cur.txn_count = 0 AND {scope}
        """, {**scope_params, "prev": _month_back(month, 1), "cur": month})["n"].iloc[0])
        month = _month_back(month, -1)
    opened = read_frame(engine, f"SELECT sc.open_date FROM customers sc WHERE sc.open_date >= :first AND {scope}",
                        {**scope_params, "first": first})
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
    """One KPI tile: a value, its change on a named basis, and a sparkline.

    ``basis`` says what ``previous`` is: ``"month"`` (the month before, for a monthly series; the
    series also carries ``year_ago``, the same month a year earlier) or ``"refresh"`` (the previous
    successful refresh, for a figure of the models). Where a change cannot be computed,
    ``no_change`` (and ``no_year_ago``) name why: ``first_month``, ``first_refresh``, ``no_year_ago``.
    ``target`` is the figure against its target (:mod:`analytics.targets`), when one is set.
    """

    key: str
    value: float | None
    previous: float | None
    spark: tuple[float, ...] = ()
    kind: str = "count"  # count, money, rate
    suppressed: bool = False  # a count under MIN_CELL_CUSTOMERS hidden from an aggregate-only role
    basis: str = "month"  # month (series) or refresh (run-level figures)
    year_ago: float | None = None
    target: Attainment | None = None

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def year_change(self) -> float | None:
        if self.value is None or self.year_ago is None:
            return None
        return self.value - self.year_ago

    @property
    def no_change(self) -> str | None:
        """Why there is no change, or None when there is one (or no value at all)."""
        if self.value is None or self.previous is not None:
            return None
        return "first_month" if self.basis == "month" else "first_refresh"

    @property
    def no_year_ago(self) -> str | None:
        if self.basis != "month" or self.value is None or self.year_ago is not None:
            return None
        return "no_year_ago"


def _series_card(name: str, months: list, values: list[float], as_of: date | None = None,
                 target: Attainment | None = None) -> Card:
    """A monthly series' card: the latest month, the month before, the same month a year earlier."""
    as_of = as_of or months[-1]
    year_ago = None
    for month, value in zip(months, values, strict=True):
        if month == _month_back(as_of, 12):
            year_ago = value
    return Card(name, values[-1], values[-2] if len(values) > 1 else None, tuple(values),
                "money" if name in ("aum", "deposits", "loans") else "count", year_ago=year_ago, target=target)


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
# The data-quality rates the guidance names (完整率, 准确率, 鲜活率): card key -> dimension.
DQ_RATES = {"dq_completeness": "completeness", "dq_accuracy": "validity", "dq_freshness": "timeliness"}
_RAW = ("clv_margin_3y_total", "segments.customers", "churn.expected_churners", "churn.customers_active",
        "churn.value_at_risk_total", "cross_sell.next_best_expected_value_total", "risk.r4_r5_share",
        "dq_overall")


def cards(engine: Engine, run_id: int, viewer: Viewer | None = None) -> dict[str, Card]:
    """Every KPI tile of a run, keyed by name, as ``viewer`` may see them.

    A bank-wide viewer gets the run's stored series and run metrics, against the bank's targets. A
    scoped one gets its own customers' figures, computed when read (:func:`scoped_cards`). For an
    aggregate-only viewer a count tile under ``MIN_CELL_CUSTOMERS`` (say, 3 customers churned) shows
    no number, nor a change or a share of target that would give it away.
    """
    out = _bank_cards(engine, run_id) if viewer is None or viewer.scope is None else scoped_cards(
        engine, run_id, viewer)
    if viewer is not None and viewer.aggregate_only:
        k = min_cell_customers()
        population = out.get("customers")
        if population is not None and population.value is not None and population.value < k:
            # A scope of fewer than K customers: every figure of it (sums and rates too) comes
            # from fewer than K customers, so none is shown.
            return {key: Card(key, None, None, (), card.kind, suppressed=True, basis=card.basis)
                    for key, card in out.items()}

        def hide(v):
            return None if v is not None and 0 < v < k else v

        for key, card in list(out.items()):
            if card.kind == "count":
                small = card.value is not None and 0 < card.value < k
                target = card.target
                if small or (target is not None and 0 < target.actual < k):
                    target = None
                out[key] = replace(card, value=None if small else card.value, previous=hide(card.previous),
                                   year_ago=hide(card.year_ago), target=target,
                                   spark=tuple(v if not 0 < v < k else float("nan") for v in card.spark),
                                   suppressed=small)
    return out


def _previous_run(engine: Engine, run_id: int) -> int | None:
    """The successful refresh before ``run_id``, if any."""
    ids = read_frame(engine, select(refresh_runs.c.run_id).where(
        refresh_runs.c.status == "succeeded", refresh_runs.c.run_id < run_id)
        .order_by(refresh_runs.c.run_id.desc()).limit(1))["run_id"].tolist()
    return int(ids[0]) if ids else None


def _scoped_run_figures(engine: Engine, run_id: int, viewer: Viewer) -> dict[str, float | None]:
    """The run-level figures of one run over ``viewer``'s customers (None where the run kept no rows)."""
    scope, params = viewer.scope_sql("c")
    params = {**params, "r": int(run_id)}
    figures = read_frame(engine, f"""
        SELECT (SELECT AVG(m.clv_margin_3y) FROM customer_clv_margin m JOIN customers c ON c.customer_id = m.customer_id
                WHERE m.run_id = :r AND {scope}) AS avg_clv,
               (SELECT SUM(s.churn_probability) FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id
                WHERE s.run_id = :r AND s.churn_state = 'active' AND {scope}) AS expected_churners,
               (SELECT COUNT(*) FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id
                WHERE s.run_id = :r AND s.churn_state = 'active' AND {scope}) AS active,
               (SELECT SUM(s.value_at_risk) FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id
                WHERE s.run_id = :r AND s.churn_state = 'active' AND {scope}) AS value_at_risk,
               (SELECT SUM(x.next_best_expected_value) FROM cross_sell_customer x
                JOIN customers c ON c.customer_id = x.customer_id WHERE x.run_id = :r AND {scope}) AS potential
    """, params).iloc[0]
    active = float(figures["active"] or 0)
    values = {"avg_clv": figures["avg_clv"],
              "churn_rate": (float(figures["expected_churners"] or 0) / active) if active else None,
              "value_at_risk": figures["value_at_risk"], "cross_sell_potential": figures["potential"]}
    return {key: None if value is None or pd.isna(value) else float(value) for key, value in values.items()}


def _branch_ids(viewer: Viewer | None) -> frozenset[str] | None:
    """The branches whose targets add up to ``viewer``'s (None: the bank's); an empty set when
    targets do not apply (a portfolio scope)."""
    if viewer is None or viewer.scope is None:
        return None
    return frozenset() if viewer.scope.portfolios else frozenset(viewer.scope.branches)


def scoped_cards(engine: Engine, run_id: int, viewer: Viewer) -> dict[str, Card]:
    """The tiles over ``viewer``'s customers: the monthly series computed from the store (against
    the sum of its branches' targets), and the run-level tiles from the run's per-customer results
    of those customers, with their change since the previous refresh when that run's results are
    still kept. Data quality and the R4/R5 share are bank-level figures the run keeps no
    per-customer split of: they are left out for a scoped viewer."""
    as_of = get_run_metrics(engine, run_id).get("as_of_month")
    out: dict[str, Card] = {}
    if as_of:
        month = date.fromisoformat(str(as_of)[:10])
        series = monthly_series(engine, month, viewer=viewer)
        reached = attainment(series, read_targets(engine, month), month, _branch_ids(viewer))
        for name in SERIES:
            values = series[name].astype(float).tolist()
            if values:
                out[name] = _series_card(name, list(series["month"]), values, month, reached.get(name))
    now = _scoped_run_figures(engine, run_id, viewer)
    prev_run = _previous_run(engine, run_id)
    before = _scoped_run_figures(engine, prev_run, viewer) if prev_run is not None else {}
    for key, value in now.items():
        if value is not None:
            previous = before.get(key)
            out[key] = Card(key, value, previous, () if previous is None else (previous, value),
                            RUN_CARDS[key][1], basis="refresh")
    return out


def _bank_cards(engine: Engine, run_id: int) -> dict[str, Card]:
    series = read_frame(engine, select(kpi_monthly.c.month, kpi_monthly.c.metric, kpi_monthly.c.value)
                        .where(kpi_monthly.c.run_id == run_id))
    out: dict[str, Card] = {}
    if not series.empty:
        wide = series.pivot_table(index="month", columns="metric", values="value").sort_index()
        months = [pd.Timestamp(m).date() for m in wide.index]
        frame = wide.reset_index()
        frame["month"] = months
        reached = attainment(frame, read_targets(engine, months[-1]), months[-1])
        for name in SERIES:
            if name in wide.columns:
                out[name] = _series_card(name, months, wide[name].astype(float).tolist(), months[-1],
                                         reached.get(name))
    history = _run_metric_history(engine, run_id, _RAW)
    for derived, (num, den) in {"avg_clv": ("clv_margin_3y_total", "segments.customers"),
                                "churn_rate": ("churn.expected_churners", "churn.customers_active")}.items():
        if {num, den} <= set(history.columns):
            history[derived] = history[num] / history[den].where(history[den] > 0)
    for key, (metric, kind) in RUN_CARDS.items():
        if metric in history.columns:
            values = history[metric].dropna().astype(float).tolist()
            if values:
                out[key] = Card(key, values[-1], values[-2] if len(values) > 1 else None, tuple(values), kind,
                                basis="refresh")
    # The three rates the guidance names, as the Data quality page shows them (same scores).
    from analytics.quality import score_change

    change = score_change(engine, run_id).set_index("dimension")
    for key, dimension in DQ_RATES.items():
        if dimension in change.index and not pd.isna(change.at[dimension, "score"]):
            before = change.at[dimension, "previous_score"]
            out[key] = Card(key, float(change.at[dimension, "score"]), None if pd.isna(before) else float(before),
                            (), "rate", basis="refresh")
    return out


# The figures a ranking panel can rank branches (or regions) on, and whether a high figure is good.
RANK_KPIS = ("aum", "deposits", "loans", "customers", "active", "new")
RANK_LEVELS = ("branch", "region")


def ranking(engine: Engine, as_of_month: date, kpi: str, viewer: Viewer, *, level: str = "branch",
            n: int = 5) -> dict:
    """Top and bottom ``n`` branches (or regions) on ``kpi`` in ``as_of_month``, over the customers
    in ``viewer``'s scope: :func:`rank_units` of :func:`unit_figures`.

    A region is the province of a branch's ``branches.region_code`` (its first two digits, as in
    GB/T 2260), named after the branch's province. A branch or region with fewer customers on file
    (in scope) than ``MIN_CELL_CUSTOMERS`` is not ranked, for every viewer: its figure would come
    from too few customers, and a ranking of tiny units says nothing. Ties keep the unit key order.

    Returns
    -------
    dict
        ``top`` and ``bottom``: DataFrames with columns rank, unit (branch id or region code), name,
        value (best first in ``top``, worst first in ``bottom``; ``bottom`` holds only units not
        already in ``top``); ``ranked``: how many units were ranked; ``left_out``: how many were
        too small to rank.
    """
    if kpi not in RANK_KPIS:
        raise ValueError(f"cannot rank on {kpi!r}: one of {', '.join(RANK_KPIS)}")
    return rank_units(unit_figures(engine, as_of_month, viewer, level=level), kpi, n=n)


def unit_figures(engine: Engine, as_of_month: date, viewer: Viewer, *, level: str = "branch") -> pd.DataFrame:
    """Every :data:`RANK_KPIS` figure of each branch (or region) in ``as_of_month``, over the
    customers in ``viewer``'s scope: one row per unit with ``unit``, ``name``, ``on_file`` (its
    customers on file) and a column per figure. One read of every customer's month: the wall ranks
    on one figure at a time from it (:func:`rank_units`), and at a million customers the read takes
    seconds, where reading it again for each figure made every figure's first turn that slow."""
    if level not in RANK_LEVELS:
        raise ValueError(f"cannot rank by {level!r}: one of {', '.join(RANK_LEVELS)}")
    unit = "b.branch_id" if level == "branch" else "SUBSTR(b.region_code, 1, 2)"
    name = "MIN(b.name)" if level == "branch" else "MIN(b.province)"
    scope, params = viewer.scope_sql("c")
    return read_frame(engine, f"""
        SELECT {unit} AS unit, {name} AS name, COUNT(*) AS on_file,
               SUM(CASE WHEN cm.aum > 0 OR cm.loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(CASE WHEN cm.txn_count > 0 THEN 1 ELSE 0 END) AS active,
               SUM(COALESCE(cm.aum, 0)) AS aum, SUM(COALESCE(cm.deposit_balance, 0)) AS deposits,
               SUM(COALESCE(cm.loan_balance, 0)) AS loans,
               SUM(CASE WHEN c.open_date >= :m AND c.open_date < :next THEN 1 ELSE 0 END) AS new
        FROM customers c JOIN branches b ON b.branch_id = c.branch_id
        LEFT JOIN customer_monthly cm ON cm.customer_id = c.customer_id AND cm.month = :m
        WHERE {unit} IS NOT NULL AND {scope}
        GROUP BY {unit}
    """, {**params, "m": as_of_month, "next": _month_back(as_of_month, -1)})


def rank_units(figures: pd.DataFrame, kpi: str, *, n: int = 5) -> dict:
    """The :func:`ranking` of :func:`unit_figures` ``figures`` on ``kpi``."""
    if kpi not in RANK_KPIS:
        raise ValueError(f"cannot rank on {kpi!r}: one of {', '.join(RANK_KPIS)}")
    k = min_cell_customers()
    small = figures["on_file"].astype(int) < k
    ranked = figures[~small].copy()
    ranked["value"] = ranked[kpi].astype(float)
    ranked = ranked.sort_values(["value", "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)
    ranked["rank"] = range(1, len(ranked) + 1)
    columns = ["rank", "unit", "name", "value"]
    top = ranked.head(n)[columns].reset_index(drop=True)
    rest = ranked.iloc[len(top):]
    bottom = rest.tail(n).iloc[::-1][columns].reset_index(drop=True)
    return {"top": top, "bottom": bottom, "ranked": len(ranked), "left_out": int(small.sum())}
