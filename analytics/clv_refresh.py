"""Refresh stages for customer lifetime value: transactional CLV (BG/NBD + Gamma-Gamma) per customer,
and the margin CLV re-based on the churn model's retention (issue 4).

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

Margin CLV retention
    ``apply_churn_retention`` replaces the lifecycle-stage retention of the ``segments`` stage with
    each scored customer's own: ``(1 - churn_probability) ** (12 / horizon_months)``.
"""

from __future__ import annotations

import logging
import warnings
from datetime import date

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sqlalchemy import Column, Date, Float, MetaData, String, Table, bindparam, text

from analytics import lifecycle
from analytics.clv import BetaGeoModel, GammaGammaModel
from analytics.runs import Laps
from analytics.schema import customer_clv_txn, segment_summary
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


def monthly_rfm_summary(engine, as_of_month: date, months: int = CLV_TXN_WINDOW_MONTHS) -> pd.DataFrame:
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
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months!r}")
    as_of = date(as_of_month.year, as_of_month.month, 1)
    start = _shift_months(as_of, -(months - 1))
    # Aggregated in SQL so only one row per customer crosses to Python; the first active month's
    # amount comes from a join on the (customer_id, month) primary key, to leave it out of the mean.
    stmt = text("""
        WITH agg AS (
            SELECT customer_id, MIN(month) AS first_month, MAX(month) AS last_month,
                   COUNT(*) AS active_months, SUM(txn_amount) AS amount_total
            FROM customer_monthly
            WHERE txn_count > 0 AND month >= :start AND month <= :as_of
            GROUP BY customer_id
        )
        SELECT agg.customer_id, agg.first_month, agg.last_month, agg.active_months,
               agg.amount_total, m.txn_amount AS first_amount
        FROM agg JOIN customer_monthly m
          ON m.customer_id = agg.customer_id AND m.month = agg.first_month
    """).bindparams(bindparam("start", type_=Date), bindparam("as_of", type_=Date))
    raw = read_frame(engine, stmt, {"start": start, "as_of": as_of})
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


def clv_stage(ctx) -> None:
    """The refresh stage ``clv_txn``: BG/NBD + Gamma-Gamma on monthly activity, one row per customer
    in ``customer_clv_txn``, fitted parameters and totals in ``run_metrics`` (``clv_txn.*``).

    A store where the models cannot be fitted (no activity, no repeat customers, a failed fit)
    records ``clv_txn.skipped`` with the reason and writes no rows, instead of failing the refresh.
    """
    if ctx.as_of_month is None:
        ctx.put_metrics({"clv_txn.skipped": "no activity data", "clv_txn.customers": 0})
        return
    lap = Laps()
    monthly_discount = _monthly_rate(lifecycle.clv_discount_rate())
    summary = monthly_rfm_summary(ctx.engine, ctx.as_of_month)
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
    lap("score")

    # Every customer gets a row: those with no active month in the window score 0.
    with ctx.engine.connect() as conn:
        ids = pd.Index(conn.execute(text("SELECT customer_id FROM customers")).scalars().all(),
                       name="customer_id")
    rows = rows.reindex(ids.union(rows.index))
    idle = rows["p_alive"].isna()
    rows.loc[idle, ["p_alive", "expected_purchases_12m", "clv_txn_12m", "monetary_value"]] = 0.0
    rows = rows.reset_index().assign(run_id=ctx.run_id)
    with ctx.engine.begin() as conn:
        bulk_insert(ctx.engine, customer_clv_txn, rows, conn=conn)
    lap("write")

    ctx.row_counts["customer_clv_txn"] = len(rows)
    for name, seconds in lap.seconds.items():
        ctx.metrics[f"clv_txn_seconds.{name}"] = seconds
    ctx.put_metrics({
        **{f"clv_txn.{k}": v for k, v in {**bg.params_, **gg.params_}.items()},
        "clv_txn.total_12m": float(rows["clv_txn_12m"].sum()),
        "clv_txn.customers": len(rows),
        "clv_txn.modelled_customers": int((~idle).sum()),
        "clv_txn.monthly_discount_rate": monthly_discount,
        **penalties,
    })
    log.info("clv_txn: %d customers, timings %s", len(rows), lap.seconds)


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
    from analytics.churn import churn_settings

    return int(churn_settings()["horizon_months"])


_tmp_metadata = MetaData()
# Per-connection scratch table for the one-statement UPDATE (TEMPORARY: invisible to other sessions
# and gone when the connection closes).
_tmp_retention = Table(
    "tmp_clv_retention", _tmp_metadata,
    Column("customer_id", String(20), primary_key=True),
    Column("retention_rate", Float, nullable=False),
    Column("clv_margin_1y", Float, nullable=False),
    Column("clv_margin_3y", Float, nullable=False),
    Column("clv_margin_5y", Float, nullable=False),
    prefixes=["TEMPORARY"],
)


def apply_churn_retention(ctx) -> None:
    """The refresh stage ``clv_retention``: re-base the margin CLV of this run's scored customers
    on the churn model's retention, and rebuild this run's ``segment_summary`` totals and
    ``segment_cube`` rows.

    Leaves the lifecycle-stage retention (and records ``clv.retention_source`` =
    ``"lifecycle_stage"``) when the churn stage scored nobody in this run.
    """
    lap = Laps()
    discount = lifecycle.clv_discount_rate()
    scored = read_frame(ctx.engine, """
        SELECT s.customer_id, s.annual_margin, c.churn_probability
        FROM customer_segments s JOIN churn_scores c
          ON c.run_id = s.run_id AND c.customer_id = s.customer_id
        WHERE s.run_id = :run_id
    """, {"run_id": ctx.run_id})
    lap("read")
    if scored.empty:
        ctx.put_metrics({"clv.retention_source": "lifecycle_stage", "clv.retention_customers": 0})
        return
    horizon = _horizon_months(ctx)
    margin = scored["annual_margin"].to_numpy(dtype=float)
    new = pd.DataFrame({"customer_id": scored["customer_id"].astype(str),
                        "retention_rate": churn_retention(scored["churn_probability"], horizon)})
    for years in lifecycle.CLV_HORIZONS_YEARS:
        new[f"clv_margin_{years}y"] = lifecycle.margin_clv(margin, new["retention_rate"],
                                                           discount_rate=discount, years=years)
    lap("compute")

    sets = ", ".join(f"{c} = t.{c}" for c in new.columns if c != "customer_id")
    with ctx.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS tmp_clv_retention"))  # left by a failed run on this connection
        _tmp_retention.create(conn)
        bulk_insert(ctx.engine, _tmp_retention, new, conn=conn)
        # UPDATE ... FROM: PostgreSQL, and SQLite since 3.33; one statement joined on the primary key.
        updated = conn.execute(text(
            f"UPDATE customer_segments SET {sets} FROM tmp_clv_retention AS t "
            "WHERE customer_segments.run_id = :run_id AND customer_segments.customer_id = t.customer_id"
        ), {"run_id": ctx.run_id}).rowcount
        _tmp_retention.drop(conn)
        lap("update")
        out = _run_segments(conn, ctx.run_id)
        totals = _rebuild_segment_summary(conn, ctx.run_id, out)
        lap("summary")
        cube_rows = _rebuild_cube(conn, ctx.run_id, out, ctx.as_of_month.year)
        lap("cube")
        for name, value in totals.items():
            conn.execute(text("UPDATE run_metrics SET value = :value WHERE run_id = :run_id AND name = :name"),
                         {"value": value, "run_id": ctx.run_id, "name": name})

    for name, seconds in lap.seconds.items():
        ctx.metrics[f"clv_retention_seconds.{name}"] = seconds
    if cube_rows is not None:
        ctx.row_counts["segment_cube"] = cube_rows
    ctx.put_metrics({"clv.retention_source": "churn_model", "clv.retention_customers": int(updated),
                     "clv.retention_horizon_months": horizon,
                     "clv.retention_mean": float(new["retention_rate"].mean())})
    log.info("clv_retention: %d customers re-based on churn retention, timings %s", updated, lap.seconds)


def _run_segments(conn, run_id: int) -> pd.DataFrame:
    """This run's ``customer_segments`` rows with each customer's branch and birth year: what the
    summary and the cube are rebuilt from."""
    from analytics.segment_explorer import BIRTH_YEAR_SQL

    return pd.read_sql(text(
        "SELECT s.rfm_segment, s.rfm_r, s.rfm_f, s.value_tier, s.cluster_name, s.lifecycle_stage, "
        "s.tags, s.aum, s.annual_margin, s.clv_margin_1y, s.clv_margin_3y, s.clv_margin_5y, "
        "COALESCE(c.branch_id, '(missing)') AS branch_id, "
        f"{BIRTH_YEAR_SQL.format(col='c.birth_date')} AS birth_year "
        "FROM customer_segments s LEFT JOIN customers c ON c.customer_id = s.customer_id "
        "WHERE s.run_id = :run_id"), conn, params={"run_id": run_id})


def _run_tag_names(conn, run_id: int) -> list[str]:
    return pd.read_sql(text("SELECT value FROM segment_summary WHERE run_id = :run_id AND dimension = 'tag' "
                            "ORDER BY sort_order"), conn, params={"run_id": run_id})["value"].tolist()


def _rebuild_cube(conn, run_id: int, out: pd.DataFrame, as_of_year: int) -> int | None:
    """Replace this run's ``segment_cube`` rows with ones built from the re-based CLV (every CLV
    total and band changes); returns the row count, or None when the run has no segments."""
    from analytics.schema import segment_cube
    from analytics.segment_explorer import cube_rows

    if out.empty:
        return None
    cube = cube_rows(out, as_of_year=as_of_year, tag_names=_run_tag_names(conn, run_id))
    conn.execute(text("DELETE FROM segment_cube WHERE run_id = :run_id"), {"run_id": run_id})
    bulk_insert(None, segment_cube, cube.assign(run_id=run_id), conn=conn)
    return len(cube)


def _rebuild_segment_summary(conn, run_id: int, out: pd.DataFrame) -> dict[str, float]:
    """Recompute this run's ``segment_summary`` rows from the updated ``customer_segments`` rows ``out``
    (from :func:`_run_segments`).

    Counts, AUM and margin totals do not change, but every CLV total does, and so does each
    customer's CLV band: the rows are rebuilt with segmentation's own grouping, keeping the sort
    order each (dimension, value) had. Returns the new run-level CLV totals (run_metrics names).
    """
    from analytics.segmentation import SUMMARY_TOTALS, _summary

    old = pd.read_sql(text("SELECT dimension, value, sort_order FROM segment_summary WHERE run_id = :run_id"),
                      conn, params={"run_id": run_id})
    if out.empty or old.empty:
        return {}
    keys = {
        "rfm_segment": out["rfm_segment"],
        "rfm_rf": out["rfm_r"].astype(int).astype(str) + out["rfm_f"].astype(int).astype(str),
        "value_tier": out["value_tier"],
        "cluster": out["cluster_name"],
        "lifecycle_stage": out["lifecycle_stage"],
        "branch_id": out["branch_id"],
    }
    parts = [_summary(out, dimension, key) for dimension, key in keys.items()
             if dimension in set(old["dimension"])]
    # Tags: a customer counts under every tag it carries.
    tag_names = old.loc[old["dimension"] == "tag", "value"].tolist()
    if tag_names:
        exploded = out[list(SUMMARY_TOTALS)].assign(tag=out["tags"].fillna("").str.split(",")).explode("tag")
        exploded = exploded[exploded["tag"].isin(tag_names)]
        tag_part = _summary(exploded, "tag", exploded["tag"])
        missing = [n for n in tag_names if n not in set(tag_part["value"])]
        if missing:  # tags nobody carries keep their zero row
            tag_part = pd.concat([tag_part, pd.DataFrame({
                "dimension": "tag", "value": missing, "customers": 0, "sort_order": 0,
                **{f"{c}_total": 0.0 for c in SUMMARY_TOTALS}})], ignore_index=True)
        parts.append(tag_part)
    summary = pd.concat(parts, ignore_index=True)
    order = old.set_index(["dimension", "value"])["sort_order"]
    position = pd.MultiIndex.from_frame(summary[["dimension", "value"]])
    summary["sort_order"] = order.reindex(position).fillna(summary["sort_order"]).to_numpy().astype(int)
    # CLV bands: the customers in each band change with the values, so rebuild them whole, in
    # band order (the same edges rule as segmentation).
    for years in lifecycle.CLV_HORIZONS_YEARS:
        values = out[f"clv_margin_{years}y"].to_numpy()
        position, labels = lifecycle.assign_bands(values, lifecycle.band_edges(values))
        summary = pd.concat([summary, _summary(out, f"clv_band_{years}y",
                                               pd.Series(np.asarray(labels, dtype=object)[position]), labels)],
                            ignore_index=True)
    # Only the dimensions rebuilt here are replaced; any other keeps its rows.
    conn.execute(text("DELETE FROM segment_summary WHERE run_id = :run_id AND dimension IN :dims")
                 .bindparams(bindparam("dims", expanding=True)),
                 {"run_id": run_id, "dims": sorted(set(summary["dimension"]))})
    bulk_insert(None, segment_summary, summary.assign(run_id=run_id), conn=conn)
    totals = {f"clv_margin_{y}y_total": float(out[f"clv_margin_{y}y"].sum()) for y in lifecycle.CLV_HORIZONS_YEARS}
    totals["clv_margin_total"] = float(out[f"clv_margin_{lifecycle.clv_horizon_years()}y"].sum())
    return totals


__all__ = ["apply_churn_retention", "churn_retention", "clv_stage", "clv_txn_totals", "monthly_rfm_summary"]
