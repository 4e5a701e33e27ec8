"""Refresh stages for customer lifetime value: transactional CLV (BG/NBD + Gamma-Gamma) per customer,
and the bank-margin CLV at the churn model's retention (issue 4).

Transactional CLV
    The store has no transaction log, only monthly activity (``customer_monthly``). Each month with
    ``txn_count > 0`` counts as one purchase period (``freq="M"``), so over the last ``months``
    months up to the run's month:

    - ``frequency`` = active months - 1 (repeat periods),
    - ``recency`` = months from the first to the last active month,
    - ``T`` = months from the first active month to the run's month,
    - ``monetary_value`` = mean ``txn_amount`` of the repeat active months (0 when frequency = 0).

    BG/NBD gives ``p_alive`` and the expected purchase months over the next 12 months, Gamma-Gamma
    the expected amount per active month; ``clv_txn_12m`` is their product month by month,
    discounted at ``CLV_DISCOUNT_RATE`` turned into a monthly rate. It measures transaction
    *volume*, not bank margin: use it to rank engagement, and the margin CLV for value.
    Customers with no active month in the window are outside the model's population (it needs a
    first purchase): they get ``p_alive`` 0 and a CLV of 0, with NULL frequency, recency and T.

Margin CLV
    :func:`clv_margin_stage` (the ``clv_margin`` stage, after ``churn``) writes the margin CLV every
    page shows, ``customer_clv_margin``: each customer the churn model scored at their own retention,
    ``(1 - churn_probability) ** (12 / horizon_months)``, every other one at the lifecycle stage's
    retention of the ``segments`` stage. ``customer_segments`` keeps the lifecycle-stage CLV, which
    the churn stage values churn risk with.
"""

from __future__ import annotations

import logging
import warnings
from datetime import date

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sqlalchemy import Date, bindparam, text

from analytics import lifecycle
from analytics.churn import churn_settings
from analytics.clv import BetaGeoModel, GammaGammaModel
from analytics.partitions import id_ranges
from analytics.runs import Laps
from analytics.schema import customer_clv_margin, customer_clv_txn
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

#: Months of activity the transactional model looks back over.
CLV_TXN_WINDOW_MONTHS = 24
#: Horizon of ``clv_txn_12m`` and ``expected_purchases_12m``, months.
CLV_TXN_HORIZON_MONTHS = 12
#: BG/NBD is fitted on at most this many customers (a seeded sample); scoring covers everyone.
CLV_TXN_FIT_SAMPLE = 200_000
CLV_TXN_RANDOM_STATE = 0

TOTALS_DIMENSIONS = ("rfm_segment", "value_tier", "branch_id")


def _shift_months(month: date, months: int) -> date:
    index = month.year * 12 + (month.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)


def _month_index(values: pd.Series) -> np.ndarray:
    """Months since year 0 of each date (SQLite returns ISO text, PostgreSQL dates)."""
    dates = pd.to_datetime(values.astype(str).str[:10])
    return (dates.dt.year * 12 + dates.dt.month - 1).to_numpy(dtype=np.int64)


def monthly_rfm_summary(engine, as_of_month: date, months: int = CLV_TXN_WINDOW_MONTHS, *,
                        customers=None) -> pd.DataFrame:
    """BG/NBD inputs per customer from monthly activity, one purchase period per active month.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The store.
    as_of_month : datetime.date
        The last month of the window (the run's month); later months are ignored.
    months : int, default 24
        Window length: months ``as_of_month - months + 1`` to ``as_of_month``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (customers with at least one active month in the window), with
        ``frequency``, ``recency``, ``T`` (months) and ``monetary_value`` (CNY per repeat month).
        ``customers`` (a filter such as :class:`analytics.partitions.IdRange`): those customers only.
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months!r}")
    as_of = date(as_of_month.year, as_of_month.month, 1)
    start = _shift_months(as_of, -(months - 1))
    # Aggregated in SQL so only one row per customer crosses to Python; the first active month's
    # amount comes from a join on the (customer_id, month) primary key, to leave it out of the mean.
    only, params = ("", {}) if customers is None else customers.sql("customer_id", engine)
    stmt = text(f"""
        WITH agg AS (
            SELECT customer_id, MIN(month) AS first_month, MAX(month) AS last_month,
                   COUNT(*) AS active_months, SUM(txn_amount) AS amount_total
            FROM customer_monthly
            WHERE txn_count > 0 AND month >= :start AND month <= :as_of{f" AND {only}" if only else ""}
            GROUP BY customer_id
        )
        SELECT agg.customer_id, agg.first_month, agg.last_month, agg.active_months,
               agg.amount_total, m.txn_amount AS first_amount
        FROM agg JOIN customer_monthly m
          ON m.customer_id = agg.customer_id AND m.month = agg.first_month
    """).bindparams(bindparam("start", type_=Date), bindparam("as_of", type_=Date))
    raw = read_frame(engine, stmt, {"start": start, "as_of": as_of, **params})
    out = pd.DataFrame(index=pd.Index(raw["customer_id"].astype(str), name="customer_id"))
    if raw.empty:
        return out.assign(frequency=[], recency=[], T=[], monetary_value=[]).astype(float)
    first = _month_index(raw["first_month"])
    last = _month_index(raw["last_month"])
    as_of_index = as_of.year * 12 + as_of.month - 1
    frequency = raw["active_months"].to_numpy(dtype=float) - 1.0
    repeat_amount = raw["amount_total"].to_numpy(dtype=float) - raw["first_amount"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary = np.where(frequency > 0, repeat_amount / np.maximum(frequency, 1.0), 0.0)
    out["frequency"] = frequency
    out["recency"] = (last - first).astype(float)
    out["T"] = (as_of_index - first).astype(float)
    out["monetary_value"] = monetary
    return out


def _monthly_rate(yearly: float) -> float:
    return (1.0 + yearly) ** (1.0 / 12.0) - 1.0


#: Penalties tried in turn until a fit converges to finite predictions. Monthly activity is a
#: panel where most customers are active nearly every month: the purchase rate sits at its ceiling
#: of one a month with almost no spread, so the unpenalised BG/NBD drives r and alpha to infinity
#: (ABNORMAL line search, NaN expected purchases); a small L2 penalty keeps them finite.
CLV_TXN_PENALTIES = (0.0, 0.001, 0.01, 0.1)


def _fit_first_converged(model_class, fit_args, check=None):
    """``model_class(penalizer_coef=p).fit(*fit_args)`` for each penalty ``p`` in turn; the first
    fit with no ConvergenceWarning, finite parameters and (if given) ``check(model)`` true wins.

    Returns
    -------
    (model, penalty)

    Raises
    ------
    ValueError
        When no penalty gives such a fit.
    """
    last = "no penalty tried"
    for penalty in CLV_TXN_PENALTIES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = model_class(penalizer_coef=penalty).fit(*fit_args)
        failed = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        bad = [k for k, v in model.params_.items() if not np.isfinite(v)]
        if failed:
            last = failed[0]
        elif bad:
            last = f"parameters not finite: {', '.join(bad)}"
        elif check is not None and not check(model):
            last = "predictions not finite"
        else:
            return model, penalty
    raise ValueError(f"{model_class.__name__} fit failed with every penalty {CLV_TXN_PENALTIES}: {last}")


def _fit_models(summary: pd.DataFrame) -> tuple[BetaGeoModel, GammaGammaModel, dict[str, float]]:
    """BG/NBD on a seeded sample of at most CLV_TXN_FIT_SAMPLE customers; Gamma-Gamma on the
    repeat customers with a positive mean amount. Raises ValueError when a fit is impossible."""
    fit_rows = summary
    if len(summary) > CLV_TXN_FIT_SAMPLE:
        fit_rows = summary.sample(n=CLV_TXN_FIT_SAMPLE, random_state=CLV_TXN_RANDOM_STATE)
    if not (fit_rows["frequency"] > 0).any():
        raise ValueError("no customer has a repeat active month in the window")
    if not (fit_rows["T"] > 0).any():
        raise ValueError("every customer's first active month is the run's month (T = 0)")
    f, r, t = (fit_rows[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))

    def finite_predictions(model) -> bool:
        # a converged fit can still sit where the hypergeometric terms overflow
        with np.errstate(all="ignore"):
            expected = model.conditional_expected_purchases(CLV_TXN_HORIZON_MONTHS, f, r, t)
            alive = model.probability_alive(f, r, t)
        return bool(np.isfinite(expected).all() and np.isfinite(alive).all())

    bg, bg_penalty = _fit_first_converged(BetaGeoModel, (f, r, t), finite_predictions)
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if repeat.empty:
        raise ValueError("no repeat customer has a positive transaction amount")
    gg, gg_penalty = _fit_first_converged(GammaGammaModel, (repeat["frequency"], repeat["monetary_value"]))
    if gg.params_["q"] <= 1:
        raise ValueError(f"Gamma-Gamma q = {gg.params_['q']:.3g} <= 1: the mean spend is infinite")
    return bg, gg, {"clv_txn.bg_penalizer": bg_penalty, "clv_txn.gg_penalizer": gg_penalty}


def clv_stage(ctx, block_rows: int | None = None) -> None:
    """The refresh stage ``clv_txn``: BG/NBD + Gamma-Gamma on monthly activity, one row per customer
    in ``customer_clv_txn``, fitted parameters and totals in ``run_metrics`` (``clv_txn.*``).

    A store where the models cannot be fitted (no activity, no repeat customers, a failed fit)
    records ``clv_txn.skipped`` with the reason and writes no rows, instead of failing the refresh.

    The customers' summaries are read :data:`BLOCK_ROWS` at a time (ranges of ids) and kept as four
    numbers each for the fits; then each block is scored and written.
    """
    if ctx.as_of_month is None:
        ctx.put_metrics({"clv_txn.skipped": "no activity data", "clv_txn.customers": 0})
        return
    lap = Laps()
    engine = ctx.engine
    monthly_discount = _monthly_rate(lifecycle.clv_discount_rate())
    ranges = id_ranges(engine, block_rows or BLOCK_ROWS)
    summary, ids, sizes = _summaries(engine, ctx.as_of_month, ranges)
    lap("summary")
    if summary.empty:
        ctx.put_metrics({"clv_txn.skipped": "no active month in the window", "clv_txn.customers": 0})
        return
    try:
        bg, gg, penalties = _fit_models(summary)
    except (ValueError, ArithmeticError, RuntimeError, np.linalg.LinAlgError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("clv_txn: skipped, %s", reason)
        ctx.put_metrics({"clv_txn.skipped": reason, "clv_txn.customers": 0})
        return
    lap("fit")

    # Every customer gets a row, a block of ids at a time: those with no active month in the
    # window score 0.
    customers = modelled = 0
    total = 0.0
    offset = 0
    for block, size in zip(ranges, sizes, strict=True):
        part = summary.iloc[offset:offset + size].set_axis(
            pd.Index([i.decode("utf-8") for i in ids[offset:offset + size]], dtype=object, name="customer_id"))
        offset += size
        rows = _scored(part, bg, gg, monthly_discount)
        only, params = block.sql("customer_id", engine)
        block_ids = read_frame(engine, f"SELECT customer_id FROM customers WHERE {only}", params)["customer_id"]
        rows = rows.reindex(pd.Index(block_ids.astype(str), name="customer_id").union(rows.index))
        idle = rows["p_alive"].isna()
        rows.loc[idle, ["p_alive", "expected_purchases_12m", "clv_txn_12m", "monetary_value"]] = 0.0
        rows = rows.reset_index().assign(run_id=ctx.run_id)
        with engine.begin() as conn:
            bulk_insert(engine, customer_clv_txn, rows, conn=conn)
        customers += len(rows)
        modelled += int((~idle).sum())
        total += float(rows["clv_txn_12m"].sum())
        del rows, part
    lap("write")

    ctx.row_counts["customer_clv_txn"] = customers
    for name, seconds in lap.seconds.items():
        ctx.metrics[f"clv_txn_seconds.{name}"] = seconds
    ctx.put_metrics({
        **{f"clv_txn.{k}": v for k, v in {**bg.params_, **gg.params_}.items()},
        "clv_txn.total_12m": total,
        "clv_txn.customers": customers,
        "clv_txn.modelled_customers": modelled,
        "clv_txn.monthly_discount_rate": monthly_discount,
        **penalties,
    })
    log.info("clv_txn: %d customers, timings %s", customers, lap.seconds)


def _summaries(engine, as_of_month: date, ranges: list) -> tuple[pd.DataFrame, np.ndarray, list[int]]:
    """:func:`monthly_rfm_summary` of every customer, a range of ids at a time, in ascending order
    of ids: the four values as one frame without ids, the ids (UTF-8 bytes, a tenth of a text
    object each) and each range's customers."""
    parts, ids, sizes = [], [], []
    for block in ranges:
        part = monthly_rfm_summary(engine, as_of_month, customers=block).sort_index()
        parts.append(part.to_numpy(dtype=float))
        ids.append(np.char.encode(part.index.to_numpy(dtype=str), "utf-8") if len(part) else np.array([], "S1"))
        sizes.append(len(part))
    columns = ["frequency", "recency", "T", "monetary_value"]
    if not parts:
        return pd.DataFrame(columns=columns, dtype=float), np.array([], "S1"), []
    summary = pd.DataFrame(np.concatenate(parts), columns=columns)
    width = max(i.dtype.itemsize for i in ids)
    return summary, np.concatenate([i.astype(f"S{width}") for i in ids]), sizes


def _scored(summary: pd.DataFrame, bg: BetaGeoModel, gg: GammaGammaModel, monthly_discount: float) -> pd.DataFrame:
    """The summary's rows with ``p_alive``, ``expected_purchases_12m`` and ``clv_txn_12m`` (and the
    spend clipped at 0)."""
    f, r, t, m = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T", "monetary_value"))
    m = np.clip(m, 0.0, None)  # a net refund month must not make spend negative
    rows = summary.copy()
    rows["monetary_value"] = m
    rows["p_alive"] = np.clip(np.asarray(bg.probability_alive(f, r, t), dtype=float), 0.0, 1.0)
    rows["expected_purchases_12m"] = np.asarray(
        bg.conditional_expected_purchases(CLV_TXN_HORIZON_MONTHS, f, r, t), dtype=float)
    # customer_lifetime_value works in months with a monthly discount rate; freq="M" says T is in
    # months too, so one month is one model time unit.
    rows["clv_txn_12m"] = np.clip(np.asarray(gg.customer_lifetime_value(
        bg, f, r, t, m, time=CLV_TXN_HORIZON_MONTHS, discount_rate=monthly_discount, freq="M"),
        dtype=float), 0.0, None)
    return rows


def clv_txn_totals(engine, run_id: int | None, by: str) -> pd.DataFrame:
    """Transactional CLV totals of a run by ``rfm_segment``, ``value_tier`` or ``branch_id``.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int or None
        The run; None for the published run.
    by : {"rfm_segment", "value_tier", "branch_id"}

    Returns
    -------
    pandas.DataFrame
        ``value``, ``customers``, ``clv_txn_12m_total``, ordered by value.
    """
    if by not in TOTALS_DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(TOTALS_DIMENSIONS)}, got {by!r}")
    # `by` is from the allow-list above, so it may be spelt into the SQL; the run is bound.
    if by == "branch_id":
        join = "LEFT JOIN customers d ON d.customer_id = c.customer_id"
    else:
        join = "LEFT JOIN customer_segments d ON d.run_id = c.run_id AND d.customer_id = c.customer_id"
    if run_id is None:
        where, params = "c.run_id = (SELECT run_id FROM current_run WHERE id = 1)", {}
    else:
        where, params = "c.run_id = :run_id", {"run_id": int(run_id)}
    sql = (f"SELECT COALESCE(d.{by}, '(missing)') AS value, COUNT(*) AS customers, "
           f"COALESCE(SUM(c.clv_txn_12m), 0) AS clv_txn_12m_total "
           f"FROM customer_clv_txn c {join} WHERE {where} "
           f"GROUP BY COALESCE(d.{by}, '(missing)') ORDER BY value")
    frame = read_frame(engine, sql, params)
    frame["customers"] = frame["customers"].astype(int)
    frame["clv_txn_12m_total"] = frame["clv_txn_12m_total"].astype(float)
    return frame


# ---------------------------------------------------------------------------------------------
# Margin CLV with the churn model's retention
# ---------------------------------------------------------------------------------------------

def churn_retention(churn_probability, horizon_months: int) -> np.ndarray:
    """Annual retention from a churn probability over ``horizon_months``:
    ``(1 - p) ** (12 / horizon_months)``, clipped to [0, 1]."""
    p = np.clip(np.asarray(churn_probability, dtype=float), 0.0, 1.0)
    return np.clip((1.0 - p) ** (12.0 / float(horizon_months)), 0.0, 1.0)


def _horizon_months(ctx) -> int:
    """The horizon the churn stage of this run used (its metric), else the setting."""
    with ctx.engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM run_metrics WHERE run_id = :run AND name = :name"),
                             {"run": ctx.run_id, "name": "churn.horizon_months"}).scalar()
    if value is not None:
        return int(value)
    return int(churn_settings()["horizon_months"])


#: Customers per block of the ``clv_margin`` stage (read, re-based and written together).
BLOCK_ROWS = 250_000


def clv_margin_stage(ctx, block_rows: int | None = None) -> None:
    """The refresh stage ``clv_margin``: the bank-margin CLV of every customer the ``segments``
    stage wrote, in ``customer_clv_margin``.

    A customer the ``churn`` stage scored gets the churn model's retention,
    :func:`churn_retention` of its churn probability over the churn horizon, and the CLV at it; any
    other keeps the retention and CLV of their lifecycle stage from ``customer_segments``
    (``retention_source`` says which). Puts the CLV's settings and where the retention came from
    (``clv.retention_source`` is ``"churn_model"`` when anyone was scored, else
    ``"lifecycle_stage"``) in ``run_metrics``; the totals are the ``aggregates`` stage's.
    """
    lap = Laps()
    discount = lifecycle.clv_discount_rate()
    headline_years = lifecycle.clv_horizon_years()
    known: dict[str, int] = {}

    def horizon() -> int:  # the churn horizon, read once and only when someone was scored
        if "months" not in known:
            known["months"] = _horizon_months(ctx)
        return known["months"]

    customers = scored_customers = 0
    retention_sum = 0.0
    for block in id_ranges(ctx.engine, block_rows or BLOCK_ROWS):
        out, retention = margin_clv_rows(ctx.engine, ctx.run_id, block, discount, horizon)
        if retention is not None:
            scored_customers += len(retention)
            retention_sum += float(retention.sum())
        customers += len(out)
        with ctx.engine.begin() as conn:
            bulk_insert(ctx.engine, customer_clv_margin, out.assign(run_id=ctx.run_id), conn=conn)
        del out
        lap("blocks")
    metrics: dict[str, float | str | None] = {
        "clv.retention_source": "churn_model" if scored_customers else "lifecycle_stage",
        "clv.retention_customers": scored_customers,
    }
    if scored_customers:
        metrics.update({"clv.retention_horizon_months": horizon(),
                        "clv.retention_mean": retention_sum / scored_customers})
    if not customers:
        ctx.put_metrics(metrics)
        return

    ctx.row_counts["customer_clv_margin"] = customers
    for name, seconds in lap.seconds.items():
        ctx.metrics[f"clv_margin_seconds.{name}"] = seconds
    ctx.put_metrics({**metrics, "clv.discount_rate": discount, "clv.horizon_years": headline_years})
    log.info("clv_margin: %d customers, %d on the churn model's retention, timings %s",
             customers, scored_customers, lap.seconds)


def margin_clv_rows(engine, run_id: int, customers, discount: float, horizon) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The ``customer_clv_margin`` rows of the customers a filter selects (``customers``, e.g. a
    range of ids; ``None``: every one), and the churn model's retention of those it scored (``None``
    when none was). ``horizon()`` gives the churn horizon in months, asked only when needed."""
    clv_columns = [f"clv_margin_{years}y" for years in lifecycle.CLV_HORIZONS_YEARS]
    only, params = ("", {}) if customers is None else customers.sql("s.customer_id", engine)
    # Every segmented customer, with a churn probability where the churn stage scored them.
    rows = read_frame(engine, f"""
        SELECT s.customer_id, s.annual_margin, s.retention_rate, {", ".join(f"s.{c}" for c in clv_columns)},
               c.churn_probability
        FROM customer_segments s LEFT JOIN churn_scores c
          ON c.run_id = s.run_id AND c.customer_id = s.customer_id
        WHERE s.run_id = :run_id{f" AND {only}" if only else ""}
    """, {"run_id": run_id, **params})
    scored = rows["churn_probability"].notna().to_numpy()
    out = pd.DataFrame({"customer_id": rows["customer_id"].astype(str),
                        "retention_rate": rows["retention_rate"].to_numpy(dtype=float),
                        "retention_source": np.where(scored, "churn_model", "lifecycle_stage")})
    for column in clv_columns:
        out[column] = rows[column].to_numpy(dtype=float)
    if not scored.any():
        return out, None
    retention = churn_retention(rows.loc[scored, "churn_probability"], horizon())
    margin = rows.loc[scored, "annual_margin"].to_numpy(dtype=float)
    out.loc[scored, "retention_rate"] = retention
    for years, column in zip(lifecycle.CLV_HORIZONS_YEARS, clv_columns, strict=True):
        out.loc[scored, column] = lifecycle.margin_clv(margin, retention, discount_rate=discount, years=years)
    return out, np.asarray(retention, dtype=float)


__all__ = ["BLOCK_ROWS", "churn_retention", "clv_margin_stage", "margin_clv_rows", "clv_stage", "clv_txn_totals", "monthly_rfm_summary"]
