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
from analytics.partitions import id_ranges
from analytics.runs import Laps, RefreshContext, get_run_metrics, release_memory
from analytics.schema import cohort_retention, segment_cube, segment_cube_filters, segment_summary
from analytics.segment_explorer import (
    SUMMARY_COLUMNS,
    add_up_cells,
    attribute_rows,
    cube_rows,
    customer_attributes,
    segmented_clv_edges,
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
#: The ``segment_summary`` dimensions whose ``sort_order`` is their values' sorted order (the others
#: have a display order of their own).
SORTED_BY_VALUE = ("rfm_rf", "branch_id")
#: Customers the stage reads and sums at a time, a range of ids: it holds one block of customer
#: rows and the run's sums so far, so its memory does not grow with the number of customers.
BLOCK_ROWS = 250_000


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


def segment_summary_rows(customers: pd.DataFrame, tag_names: Sequence[str], *,
                         clv_edges: dict[int, np.ndarray] | None = None,
                         cluster_order: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``segment_summary`` rows of a run from its segmented customers.

    Parameters
    ----------
    customers : pandas.DataFrame
        One row per customer (:func:`segmented_customers`): ``rfm_segment``, ``rfm_r``, ``rfm_f``,
        ``value_tier``, ``cluster``, ``cluster_name``, ``lifecycle_stage``, ``branch_id``, ``tags``
        and the :data:`SUMMARY_TOTALS` columns.
    tag_names : sequence of str
        Every tag of the run in rule-file order; a tag nobody carries gets a row of zeros.
    clv_edges : dict of int to numpy.ndarray, optional
        Each horizon's CLV band edges (default: those of ``customers``' values).
    cluster_order : sequence of str, optional
        The cluster names in cluster-number order (default: those of ``customers``). With the two,
        a block of a run's customers is summed on the whole run's bands and orders, and
        :func:`combine_summary_rows` adds the blocks up.

    Returns
    -------
    pandas.DataFrame
        Dimensions ``rfm_segment``, ``rfm_rf`` (``"<R><F>"``), ``value_tier``, ``cluster`` (by
        name, in cluster-number order), ``lifecycle_stage``, ``branch_id`` (``(missing)`` for none),
        ``tag`` and ``clv_band_<H>y`` (1-2-5 bands of the H-year CLV).
    """
    c = customers
    if cluster_order is None:
        cluster_order = c[["cluster", "cluster_name"]].drop_duplicates().sort_values("cluster")["cluster_name"].tolist()
    parts = [
        summarise(c, "rfm_segment", c["rfm_segment"], RFM_SEGMENTS),
        summarise(c, "rfm_rf", c["rfm_r"].astype(int).astype(str) + c["rfm_f"].astype(int).astype(str)),
        summarise(c, "value_tier", c["value_tier"], VALUE_TIERS),
        summarise(c, "cluster", c["cluster_name"], list(cluster_order)),
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
        edges = lifecycle.band_edges(values) if clv_edges is None else clv_edges[years]
        position, labels = lifecycle.assign_bands(values, edges)
        parts.append(summarise(c, f"clv_band_{years}y", pd.Series(np.asarray(labels, dtype=object)[position]),
                               labels))
    return pd.concat(parts, ignore_index=True)


def combine_summary_rows(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``segment_summary`` rows of blocks of customers (:func:`segment_summary_rows` of each,
    on the whole run's CLV bands and cluster order) added up: the rows of all the customers, as one
    call on them gives, to the rounding of the sums. The dimensions ordered by their values
    (:data:`SORTED_BY_VALUE`) are ranked again over every block's values."""
    rows = pd.concat(parts, ignore_index=True)
    totals = [f"{c}_total" for c in SUMMARY_TOTALS]
    grouped = rows.groupby(["dimension", "value"], sort=False)
    out = grouped[["customers", *totals]].sum()
    out["sort_order"] = grouped["sort_order"].first()
    out = out.reset_index()
    for dimension in SORTED_BY_VALUE:
        at = np.flatnonzero(out["dimension"].to_numpy() == dimension)
        rank = np.empty(len(at), dtype=np.int64)
        rank[np.argsort(out["value"].to_numpy()[at].astype(str), kind="stable")] = np.arange(len(at))
        out.loc[at, "sort_order"] = rank
    return out[list(parts[0].columns)]


def combine_cells(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """``segment_cube`` (or ``segment_cube_filters``) rows of two sets of customers added up: one
    row per dimension, value and cell (and filter), with their counts and sums added."""
    return add_up_cells(total, part, SUMMARY_COLUMNS)


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
    summed = _sum_blocks(ctx, lap)
    summary, cube, by_attribute, money = summed if summed is not None else (None, None, None, {})
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
        "annual_margin_total": money["annual_margin"],
        "clv_margin_total": money[f"clv_margin_{headline_years}y"],
    }
    for years in lifecycle.CLV_HORIZONS_YEARS:
        metrics[f"clv_margin_{years}y_total"] = money[f"clv_margin_{years}y"]
    for dimension in COUNTED_DIMENSIONS:
        part = summary[summary["dimension"] == dimension]
        for value, count in zip(part["value"], part["customers"], strict=True):
            metrics[f"{dimension}.{value}"] = int(count)
    ctx.put_metrics(metrics)
    log.info("aggregates: %d customers summed, timings %s", int(summary[summary["dimension"] == "value_tier"]
                                                                 ["customers"].sum()), lap.seconds)


def _sum_blocks(ctx: RefreshContext, lap: Laps, block_rows: int | None = None):
    """``segment_summary``, ``segment_cube`` and ``segment_cube_filters`` rows of the run's segmented
    customers and their money totals, read and summed :data:`BLOCK_ROWS` customers at a time
    (ranges of ids); ``None`` when the run segmented nobody.

    Every block is cut on the whole run's CLV bands and cluster order, read first in the database,
    so the added-up blocks are the rows one pass over every customer gives (to the rounding of the
    sums; ``tests/analytics/test_aggregates_blocks.py``)."""
    engine, run_id = ctx.engine, ctx.run_id
    edges = segmented_clv_edges(engine, run_id)
    with engine.connect() as conn:
        cluster_order = [name for _, name in conn.execute(text(
            "SELECT DISTINCT s.cluster, s.cluster_name FROM customer_segments s "
            "JOIN customer_clv_margin m ON m.run_id = s.run_id AND m.customer_id = s.customer_id "
            "WHERE s.run_id = :run_id ORDER BY s.cluster"), {"run_id": int(run_id)}).all()]
    if not cluster_order:
        return None
    tag_names = tag_names_of(get_run_metrics(engine, run_id))
    as_of_year, as_of_end = ctx.as_of_month.year, month_end(ctx.as_of_month)
    summaries, cube, by_attribute = [], None, None
    money = dict.fromkeys(("annual_margin", *(f"clv_margin_{y}y" for y in lifecycle.CLV_HORIZONS_YEARS)), 0.0)
    for block in id_ranges(engine, block_rows or BLOCK_ROWS):
        customers = segmented_customers(engine, run_id, customers=block)
        lap("read")
        if customers.empty:
            continue
        summaries.append(segment_summary_rows(customers, tag_names, clv_edges=edges, cluster_order=cluster_order))
        for column in money:
            money[column] += float(customers[column].sum())
        lap("summary")
        cube = combine_cells(cube, cube_rows(customers, as_of_year=as_of_year, tag_names=tag_names,
                                             clv_edges=edges))
        lap("cube")
        attributes = customer_attributes(engine, as_of_end, customers=block)
        by_attribute = combine_cells(by_attribute, attribute_rows(
            customers.merge(attributes, on="customer_id", how="left"), as_of_year=as_of_year,
            tag_names=tag_names, clv_edges=edges))
        del customers, attributes
        release_memory()  # the next block then starts from what the sums hold, not this block's heap
        lap("cube_filters")
    if not summaries:
        return None
    return combine_summary_rows(summaries), cube, by_attribute, money


__all__ = ["BLOCK_ROWS", "COUNTED_DIMENSIONS", "SORTED_BY_VALUE", "SUMMARY_TOTALS", "aggregates_stage",
           "combine_cells", "combine_summary_rows", "headline_counts", "headline_figures", "segment_summary_rows",
           "segmented_customers", "summarise", "tag_flags"]
