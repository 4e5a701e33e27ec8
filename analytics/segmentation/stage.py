"""The refresh stage ``segments``: what segmentation knows about each customer, one row per customer.

It writes only its own tables: ``customer_segments`` (RFM, value tier, cluster, tags, lifecycle
stage, AUM, yearly margin, and the margin CLV at the lifecycle stage's retention),
``cluster_profiles`` and ``cluster_cube`` (both need the fitted clusterer, which only this stage
holds). The margin CLV the pages show is the ``clv_margin`` stage's
(:func:`analytics.clv_refresh.clv_margin_stage`), and every count and total over customers is the
``aggregates`` stage's (:mod:`analytics.aggregates`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from analytics import lifecycle, settings, tags
from analytics.features_stage import feature_array, stage_features
from analytics.partitions import id_ranges
from analytics.runs import Laps
from analytics.schema import cluster_cube, cluster_profiles, customer_segments
from analytics.segment_explorer import (
    BIRTH_YEAR_SQL,
    TAG_NAMES_METRIC,
    cluster_cube_rows,
    combine_cluster_cube,
)
from analytics.segmentation.clusters import NAME_COLUMNS, BehaviourClusterer, cluster_settings
from analytics.segmentation.rfm import RFM_COLUMNS, rfm_boundaries, rfm_table
from analytics.segmentation.tiers import value_tier_thresholds, value_tiers
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

CLUSTER_RANDOM_STATE = 0
#: Customers per block: read, segmented and written together (each block's frames are what the
#: stage holds, besides a narrow array of every customer for the run's statistics).
BLOCK_ROWS = 250_000
#: Run metric holding the run's tag names in rule-file order, comma-separated: the aggregates
#: stage counts every tag, including those nobody carries, from it rather than re-reading the file.


def _tag_text(tag_frame: pd.DataFrame) -> np.ndarray:
    """Comma-separated true tags per row, in column order (vectorised: no per-row Python join)."""
    text_values = np.full(len(tag_frame), "", dtype=object)
    for name in tag_frame.columns:
        mask = tag_frame[name].to_numpy(dtype=bool)
        text_values[mask] = text_values[mask] + (name + ",")
    return np.array([t[:-1] for t in text_values], dtype=object)


def birth_years(engine, customers=None) -> pd.Series:
    """Each customer's birth year (float, NaN when unknown), indexed by ``customer_id``; of the
    customers an id filter selects when ``customers`` is given."""
    only, params = ("", {}) if customers is None else customers.sql("customer_id", engine)
    frame = read_frame(engine, f"SELECT customer_id, {BIRTH_YEAR_SQL.format(col='birth_date')} AS birth_year "
                               f"FROM customers{f' WHERE {only}' if only else ''}", params)
    return frame.set_index("customer_id")["birth_year"].astype(float)


def feature_cutoffs(as_of_month: date) -> list[date]:
    """The cut-offs the segments stage reads features at: the run's month only."""
    return [date(as_of_month.year, as_of_month.month, 1)]


def segment_columns(rules, stored: list[str]) -> list[str]:
    """The feature columns the segments stage reads: RFM, value tier, clusters (with the loan
    holdings a "borrowers" name is checked against), lifecycle stage, the cube's branch and every
    column a tag rule reads. Of ``stored`` (the run's columns), in their order; a narrow frame of
    every customer instead of the whole one."""
    from analytics.segmentation.clusters import CLUSTER_FEATURES, LOAN_CATEGORIES
    from analytics.segmentation.rfm import RFM_FREQUENCY, RFM_MONETARY, RFM_RECENCY, RFM_TIEBREAKS

    wanted = {*CLUSTER_FEATURES, RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values(), "aum_latest",
              "branch_id", "loan_balance_latest", "tenure_months", "months_since_last_txn", "aum_trend",
              *(f"products_{c}" for c in LOAN_CATEGORIES)}
    for rule in rules:
        wanted |= rule.columns
    return [c for c in stored if c in wanted]


def statistics_columns(clusterer: BehaviourClusterer, stored: list[str]) -> list[str]:
    """The feature columns the whole-run statistics read (RFM boundaries, the clusters and their
    names, lifecycle stages): of ``stored``, in their order."""
    features, _ = clusterer._columns()
    wanted = {*RFM_COLUMNS, *features, *NAME_COLUMNS, *lifecycle.STAGE_COLUMNS}
    return [c for c in stored if c in wanted]


@dataclass
class RunStatistics:
    """What every block of the segments stage needs from every customer of the run: the RFM
    boundaries, the fitted clusterer (its ``labels_`` in ascending order of ids), each lifecycle
    stage's retention, and the customers of each block (to check the blocks read the same)."""

    rfm: dict
    clusterer: BehaviourClusterer
    retention: pd.DataFrame
    block_sizes: list[int]


def run_statistics(ctx, now: date, blocks: list, clusterer: BehaviourClusterer, lap: Laps) -> RunStatistics | None:
    """Read the run's features a block at a time, only the columns the statistics need, into one
    array of every customer (no ids: rows in ascending order of ids), count each lifecycle stage's
    retention a block at a time, then find the RFM boundaries and fit the clusters on it."""
    engine = ctx.engine
    stored = list(stage_features(ctx, now, customer_ids=[]).columns)
    columns = statistics_columns(clusterer, stored)
    window = lifecycle.retention_lookback(engine, ctx.as_of_month)
    counts = []

    def count_stages(block, frame: pd.DataFrame) -> None:
        if window is not None:
            counts.append(lifecycle.stage_counts_then(engine, window[0], lifecycle.lifecycle_stage(frame),
                                                      customers=block))

    values, sizes = feature_array(ctx, now, blocks, columns, with_status=True, each_block=count_stages)
    if not len(values):
        return None
    lap("statistics_read")
    retention = (lifecycle.default_stage_retention() if window is None
                 else lifecycle.retention_from_counts(sum(counts[1:], counts[0]), months=window[1]))
    frame = pd.DataFrame(values, columns=columns, copy=False)
    boundaries = rfm_boundaries(frame)
    lap("rfm")
    clusterer.fit(frame)
    lap("clusters")
    return RunStatistics(boundaries, clusterer, retention, sizes)


def run_rfm_boundaries(ctx, cutoff, blocks: list) -> tuple[dict, list[int]]:
    """The RFM quintile boundaries of every customer the run stored features for at ``cutoff``
    (:func:`analytics.segmentation.rfm.rfm_boundaries`), read a block at a time into one narrow
    array, and each block's customers: with them a stage scores RFM a block at a time (the rows of
    block ``i`` are at positions ``sum(sizes[:i])`` onwards)."""
    values, sizes = feature_array(ctx, cutoff, blocks, RFM_COLUMNS)
    return rfm_boundaries(pd.DataFrame(values, columns=list(RFM_COLUMNS), copy=False)), sizes


def segments_stage(ctx, block_rows: int | None = None) -> None:
    """The refresh stage ``segments``: features at the run's month, RFM, value tiers, clusters,
    tags, lifecycle stages and the lifecycle-stage margin CLV, written under ``ctx.run_id``.

    Writes ``customer_segments`` (one row per customer), ``cluster_profiles`` and ``cluster_cube``
    (each cluster's standardised features summed by the pages' filter cells), and puts its metrics
    (customers segmented, cluster k and silhouette, the retention of each lifecycle stage and its
    source, the run's tag names) in ``run_metrics``.

    The work goes through the customers :data:`BLOCK_ROWS` at a time (ranges of ids): first the
    statistics of the whole run (:func:`run_statistics`: RFM boundaries, clusters, stage retention)
    from a narrow array of every customer (19 floats each, the only thing that grows with the
    store), then each block's rows, written as they are made, and its cluster cube cells, added
    up. The rows are those one pass over every customer gives.

    ``customer_segments.retention_rate`` and ``clv_margin_<H>y`` hold the lifecycle stage's
    retention and the CLV at it: the churn stage values churn risk with them, before the
    ``clv_margin`` stage re-bases each scored customer's CLV on the churn model.
    """
    if ctx.as_of_month is None:
        log.info("segments: no activity data, nothing to segment")
        ctx.put_metrics({"segments.customers": 0})
        return
    lap = Laps()
    timings = lap.seconds

    # Read every setting first, so a bad value fails before minutes of work.
    thresholds = value_tier_thresholds()
    # A cluster is named "affluent savers" only when most members reach the affluent tier.
    clusterer = BehaviourClusterer(random_state=CLUSTER_RANDOM_STATE, affluent_aum=thresholds[0], **cluster_settings())
    discount = lifecycle.clv_discount_rate()
    rules = tags.load_tag_rules()
    chunk = int(settings.get("LOAD_CHUNK_ROWS"))

    engine = ctx.engine
    (now,) = feature_cutoffs(ctx.as_of_month)
    blocks = id_ranges(engine, block_rows or BLOCK_ROWS)
    stats = run_statistics(ctx, now, blocks, clusterer, lap)
    if stats is None:
        ctx.put_metrics({"segments.customers": 0})
        return
    retention = stats.retention
    stored = list(stage_features(ctx, now, customer_ids=[]).columns)
    columns = segment_columns(rules, stored)
    row_columns = [c.name for c in customer_segments.columns]
    cube, offset = None, 0
    for block, size in zip(blocks, stats.block_sizes, strict=True):
        if not size:
            continue
        features = stage_features(ctx, now, with_status=True, columns=columns, customers=block)
        if len(features) != size:
            raise RuntimeError("segments: the run's features changed while they were read")
        out = rfm_table(features, stats.rfm, np.arange(offset, offset + size))
        out["aum"] = features["aum_latest"]
        out["value_tier"] = value_tiers(features["aum_latest"], thresholds).astype(str)
        labels = clusterer.labels_[offset:offset + size]
        out["cluster"] = labels
        out["cluster_name"] = pd.Series(labels, index=out.index).map(clusterer.names_)
        out["tags"] = _tag_text(tags.evaluate_tags(features, rules))
        stages = lifecycle.lifecycle_stage(features)
        out["lifecycle_stage"] = stages.astype(str)
        margin = lifecycle.customer_annual_margin(engine, customers=block).reindex(out.index).fillna(0.0)
        out["annual_margin"] = margin
        out["retention_rate"] = stages.astype(str).map(retention["annual_retention"]).astype(float).fillna(0.0)
        for years in lifecycle.CLV_HORIZONS_YEARS:
            out[f"clv_margin_{years}y"] = lifecycle.margin_clv(margin, out["retention_rate"],
                                                               discount_rate=discount, years=years)
        cells = out[["value_tier", "cluster_name"]].assign(
            branch_id=features["branch_id"].reindex(out.index).to_numpy(),
            birth_year=birth_years(engine, customers=block).reindex(out.index).to_numpy())
        cube = combine_cluster_cube(cube, cluster_cube_rows(
            cells, clusterer.standardised(features).reindex(out.index), as_of_year=ctx.as_of_month.year))
        del features, cells
        rows = out.reset_index()
        rows.insert(0, "run_id", ctx.run_id)
        rows = rows[row_columns]
        with engine.begin() as conn:
            for start in range(0, len(rows), chunk):
                bulk_insert(engine, customer_segments, rows.iloc[start:start + chunk], conn=conn)
        offset += size
        del out, rows
    lap("blocks")

    profiles = clusterer.profiles_
    profile_rows = pd.DataFrame({
        "cluster": profiles.index.astype(int),
        "cluster_name": profiles["name"].to_numpy(),
        "customers": profiles["customers"].astype(int).to_numpy(),
        "share": profiles["share"].astype(float).to_numpy(),
        "sets_apart": profiles["sets_apart"].to_numpy(),
        "profile": [
            {c: (None if pd.isna(v) else round(float(v), 6)) for c, v in row.items()
             if c.startswith(("median_", "z_"))}
            for _, row in profiles.iterrows()
        ],
    })
    with engine.begin() as conn:
        bulk_insert(engine, cluster_cube, cube.assign(run_id=ctx.run_id), conn=conn)
        # JSON goes through SQLAlchemy (bulk_insert writes plain values, not JSON documents).
        conn.execute(cluster_profiles.insert(), [{"run_id": ctx.run_id, **r}
                                                  for r in profile_rows.to_dict("records")])
    lap("write")

    ctx.row_counts.update({"customer_segments": offset, "cluster_cube": len(cube),
                           "cluster_profiles": len(profile_rows)})
    for name, seconds in timings.items():
        ctx.metrics[f"segments_seconds.{name}"] = seconds
    metrics: dict[str, float | str | None] = {
        "segments.customers": offset,
        TAG_NAMES_METRIC: ",".join(rule.name for rule in rules),
        "clusters.k": clusterer.n_clusters_,
        "clusters.silhouette": clusterer.silhouette_by_k_.get(clusterer.n_clusters_),
    }
    for stage, row in retention.iterrows():
        metrics[f"lifecycle_retention.{stage}"] = float(row["annual_retention"])
        metrics[f"lifecycle_retention_source.{stage}"] = str(row["source"])
    ctx.put_metrics(metrics)
    log.info("segments: %d customers, %d clusters, timings %s", offset, clusterer.n_clusters_, timings)


__all__ = ["BLOCK_ROWS", "CLUSTER_RANDOM_STATE", "TAG_NAMES_METRIC", "RunStatistics", "birth_years",
           "feature_cutoffs", "run_rfm_boundaries", "run_statistics", "segment_columns", "segments_stage", "statistics_columns"]
