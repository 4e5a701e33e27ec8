"""The refresh stage ``aggregates``: every count and total of a run, after the per-customer stages.

It runs last, so it sums each customer's final figures: the margin CLV of the ``clv_margin`` stage
(``customer_clv_margin``), not the lifecycle-stage CLV ``customer_segments`` keeps for the churn
stage. It writes only its own tables and metrics:

* the headline counts of the store (customers by status, products, branches, open holdings, AUM,
  deposits and loans of the run's month) in ``run_metrics``, for the Overview page;
* ``segment_summary``: counts and money totals of the segmented customers by one dimension
  (:func:`summarise`), and ``segment_cube``, the same split by the pages' filter cells
  (:func:`analytics.segment_explorer.cube_rows`), and ``segment_cube_filters``, the cube split by one
  risk or demographic attribute at a time (:func:`analytics.segment_explorer.attribute_rows`);
* ``cohort_retention`` (:func:`analytics.lifecycle.load_cohort_retention`);
* ``kpi_monthly``, the KPI wall's monthly series (:func:`analytics.kpi.write_monthly_series`);
* the run's margin totals (``annual_margin_total``, ``clv_margin_<H>y_total`` and the headline
  horizon's ``clv_margin_total``) and the customers per RFM segment, value tier, lifecycle stage
  and tag, in ``run_metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import text

from analytics import kpi, lifecycle
from analytics.access import Viewer
from analytics.features import month_end
from analytics.runs import Laps, RefreshContext, get_run_metrics
from analytics.schema import cohort_retention, segment_cube, segment_cube_filters, segment_summary
from analytics.segment_explorer import (
    attribute_rows,
    cube_rows,
    customer_attributes,
    segmented_customers,
    tag_names_of,
)
from analytics.segmentation import RFM_SEGMENTS, VALUE_TIERS
from analytics.store import bulk_insert

log = logging.getLogger(__name__)

#: The per-customer money columns summed into ``segment_summary``'s ``<column>_total`` columns.
SUMMARY_TOTALS = ("aum", "annual_margin", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y")
#: The dimensions whose customer counts are also run metrics (``<dimension>.<value>``).
COUNTED_DIMENSIONS = ("rfm_segment", "value_tier", "lifecycle_stage", "tag")


def summarise(frame: pd.DataFrame, dimension: str, keys: pd.Series, order: Sequence[str] | None = None
              ) -> pd.DataFrame:
    """Counts and money totals of ``frame`` grouped by ``keys``, as ``segment_summary`` rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per customer with the :data:`SUMMARY_TOTALS` columns.
    dimension : str
        The rows' ``dimension``.
    keys : pandas.Series
        Each customer's value of the dimension, in ``frame``'s row order.
    order : sequence of str, optional
        The values' display order (``sort_order``); values outside it come last. Without it the
        values are sorted.

    Returns
    -------
    pandas.DataFrame
        ``dimension``, ``value``, ``customers``, ``<column>_total`` per :data:`SUMMARY_TOTALS` and
        ``sort_order``: one row per value present.
    """
    grouped = frame[list(SUMMARY_TOTALS)].groupby(keys.to_numpy(), observed=True, sort=True)
    out = grouped.sum().rename(columns={c: f"{c}_total" for c in SUMMARY_TOTALS})
    out.insert(0, "customers", grouped.size())
    out.index = out.index.astype(str)
    if order is not None:
        rank = {str(v): i for i, v in enumerate(order)}
        out["sort_order"] = [rank.get(v, len(rank)) for v in out.index]
    else:
        out["sort_order"] = np.arange(len(out))
    out = out.rename_axis("value").reset_index()
    out.insert(0, "dimension", dimension)
    return out


def tag_flags(tags_text: pd.Series, tag_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Whether each customer carries each tag, from the comma-separated ``customer_segments.tags``."""
    # Customers share few tag combinations: test each distinct text once, then spread.
    combos, texts = pd.factorize(tags_text.fillna("").astype(str))
    fenced = pd.Series("," + texts.astype(str) + ",")
    return {n: fenced.str.contains(f",{n},", regex=False).to_numpy(dtype=bool)[combos] for n in tag_names}


def segment_summary_rows(customers: pd.DataFrame, tag_names: Sequence[str]) -> pd.DataFrame:
    """The ``segment_summary`` rows of a run from its segmented customers.

    Parameters
    ----------
    customers : pandas.DataFrame
        One row per customer (:func:`segmented_customers`): ``rfm_segment``, ``rfm_r``, ``rfm_f``,
        ``value_tier``, ``cluster``, ``cluster_name``, ``lifecycle_stage``, ``branch_id``, ``tags``
        and the :data:`SUMMARY_TOTALS` columns.
    tag_names : sequence of str
        Every tag of the run in rule-file order; a tag nobody carries gets a row of zeros.

    Returns
    -------
    pandas.DataFrame
        Dimensions ``rfm_segment``, ``rfm_rf`` (``"<R><F>"``), ``value_tier``, ``cluster`` (by
        name, in cluster-number order), ``lifecycle_stage``, ``branch_id`` (``(missing)`` for none),
        ``tag`` and ``clv_band_<H>y`` (1-2-5 bands of the H-year CLV).
    """
    c = customers
    clusters = c[["cluster", "cluster_name"]].drop_duplicates().sort_values("cluster")["cluster_name"]
    parts = [
        summarise(c, "rfm_segment", c["rfm_segment"], RFM_SEGMENTS),
        summarise(c, "rfm_rf", c["rfm_r"].astype(int).astype(str) + c["rfm_f"].astype(int).astype(str)),
        summarise(c, "value_tier", c["value_tier"], VALUE_TIERS),
        summarise(c, "cluster", c["cluster_name"], clusters.tolist()),
        summarise(c, "lifecycle_stage", c["lifecycle_stage"], lifecycle.LIFECYCLE_STAGES),
        summarise(c, "branch_id", c["branch_id"].fillna("(missing)")),
    ]
    flags = tag_flags(c["tags"], tag_names)
    tag_rows = [{"dimension": "tag", "value": name, "sort_order": position, "customers": int(flags[name].sum()),
                 **{f"{col}_total": float(c[col].to_numpy()[flags[name]].sum()) for col in SUMMARY_TOTALS}}
                for position, name in enumerate(tag_names)]
    parts.append(pd.DataFrame(tag_rows))
    for years in lifecycle.CLV_HORIZONS_YEARS:
        values = c[f"clv_margin_{years}y"].to_numpy()
        position, labels = lifecycle.assign_bands(values, lifecycle.band_edges(values))
        parts.append(summarise(c, f"clv_band_{years}y", pd.Series(np.asarray(labels, dtype=object)[position]),
                               labels))
    return pd.concat(parts, ignore_index=True)


def headline_figures(engine, as_of_month, viewer: Viewer | None = None) -> dict:
    """Headline counts of the store (the Overview page's figures) at ``as_of_month``, over the
    customers in ``viewer``'s scope when one is given (else the whole bank)."""
    scoped = viewer is not None and viewer.scope is not None
    scope, params = viewer.scope_sql("c") if scoped else ("1 = 1", {})
    with engine.connect() as conn:
        def one(sql: str, extra: dict | None = None):
            return conn.execute(text(sql), {**params, **(extra or {})})

        by_status = dict(one(f"SELECT c.status, COUNT(*) FROM customers c WHERE {scope} GROUP BY c.status").all())
        products_total = one("SELECT COUNT(*) FROM products").scalar_one()
        branches_total = (one(f"SELECT COUNT(DISTINCT c.branch_id) FROM customers c WHERE {scope}").scalar_one()
                          if scoped else one("SELECT COUNT(*) FROM branches").scalar_one())
        join = "JOIN customers c ON c.customer_id = x.customer_id" if scoped else ""
        holdings_open = one(f"SELECT COUNT(*) FROM holdings x {join} WHERE x.closed_on IS NULL AND {scope}"
                            ).scalar_one()
        totals = one(f"SELECT COALESCE(SUM(x.aum), 0), COALESCE(SUM(x.deposit_balance), 0), "
                     f"COALESCE(SUM(x.loan_balance), 0) FROM customer_monthly x {join} "
                     f"WHERE x.month = :m AND {scope}", {"m": as_of_month}).one()
    return {
        "customers_total": int(sum(by_status.values())),
        "customers_active": by_status.get("active", 0),
        "customers_dormant": by_status.get("dormant", 0),
        "customers_closed": by_status.get("closed", 0),
        "products_total": products_total,
        "branches_total": branches_total,
        "holdings_open": holdings_open,
        "aum_total": totals[0],
        "deposits_total": totals[1],
        "loans_total": totals[2],
    }


def headline_counts(ctx: RefreshContext) -> None:
    """Headline counts of the store for the Overview page, from the latest activity month."""
    figures = headline_figures(ctx.engine, ctx.as_of_month)
    ctx.row_counts.update({"customers": figures["customers_total"], "products": figures["products_total"],
                           "branches": figures["branches_total"], "open_holdings": figures["holdings_open"]})
    ctx.put_metrics({**figures, "as_of_month": ctx.as_of_month.isoformat() if ctx.as_of_month else None})



def aggregates_stage(ctx: RefreshContext) -> None:
    """The refresh stage ``aggregates``: the run's headline counts, ``segment_summary``,
    ``segment_cube``, ``segment_cube_filters``, ``cohort_retention``, ``kpi_monthly`` and margin totals (see the module
    docstring), under ``ctx.run_id``.

    Runs after every per-customer stage. Without activity data it puts only the headline counts.
    """
    lap = Laps()
    headline_counts(ctx)
    lap("headline")
    if ctx.as_of_month is None:
        return
    customers = segmented_customers(ctx.engine, ctx.run_id)
    lap("read")
    summary = cube = None
    if not customers.empty:
        tag_names = tag_names_of(get_run_metrics(ctx.engine, ctx.run_id))
        summary = segment_summary_rows(customers, tag_names)
        lap("summary")
        cube = cube_rows(customers, as_of_year=ctx.as_of_month.year, tag_names=tag_names)
        lap("cube")
        attributes = customer_attributes(ctx.engine, month_end(ctx.as_of_month))
        by_attribute = attribute_rows(customers.merge(attributes, on="customer_id", how="left"),
                                      as_of_year=ctx.as_of_month.year, tag_names=tag_names)
        lap("cube_filters")
    cohorts = lifecycle.load_cohort_retention(ctx.engine, ctx.as_of_month)
    lap("cohorts")
    with ctx.engine.begin() as conn:
        if summary is not None:
            bulk_insert(ctx.engine, segment_summary, summary.assign(run_id=ctx.run_id), conn=conn)
            bulk_insert(ctx.engine, segment_cube, cube.assign(run_id=ctx.run_id), conn=conn)
            bulk_insert(ctx.engine, segment_cube_filters, by_attribute.assign(run_id=ctx.run_id), conn=conn)
        if not cohorts.empty:
            bulk_insert(ctx.engine, cohort_retention, cohorts.assign(run_id=ctx.run_id), conn=conn)
    lap("write")
    kpi.write_monthly_series(ctx)
    lap("kpi")

    ctx.row_counts["cohort_retention"] = len(cohorts)
    for name, seconds in lap.seconds.items():
        ctx.metrics[f"aggregates_seconds.{name}"] = seconds
    if summary is None:
        return
    ctx.row_counts.update({"segment_summary": len(summary), "segment_cube": len(cube),
                           "segment_cube_filters": len(by_attribute)})
    headline_years = lifecycle.clv_horizon_years()
    metrics: dict[str, float | str | None] = {
        "annual_margin_total": float(customers["annual_margin"].sum()),
        "clv_margin_total": float(customers[f"clv_margin_{headline_years}y"].sum()),
    }
    for years in lifecycle.CLV_HORIZONS_YEARS:
        metrics[f"clv_margin_{years}y_total"] = float(customers[f"clv_margin_{years}y"].sum())
    for dimension in COUNTED_DIMENSIONS:
        part = summary[summary["dimension"] == dimension]
        for value, count in zip(part["value"], part["customers"], strict=True):
            metrics[f"{dimension}.{value}"] = int(count)
    ctx.put_metrics(metrics)
    log.info("aggregates: %d customers summed, timings %s", len(customers), lap.seconds)


__all__ = ["COUNTED_DIMENSIONS", "SUMMARY_TOTALS", "aggregates_stage", "headline_counts", "headline_figures", "segment_summary_rows",
           "segmented_customers", "summarise", "tag_flags"]
