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
from datetime import date

import numpy as np
import pandas as pd

from analytics import lifecycle, settings, tags
from analytics.features_stage import stage_features
from analytics.runs import Laps
from analytics.schema import cluster_cube, cluster_profiles, customer_segments
from analytics.segment_explorer import BIRTH_YEAR_SQL, TAG_NAMES_METRIC, cluster_cube_rows
from analytics.segmentation.clusters import BehaviourClusterer, cluster_settings
from analytics.segmentation.rfm import rfm_table
from analytics.segmentation.tiers import value_tier_thresholds, value_tiers
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

CLUSTER_RANDOM_STATE = 0
#: Run metric holding the run's tag names in rule-file order, comma-separated: the aggregates
#: stage counts every tag, including those nobody carries, from it rather than re-reading the file.


def _tag_text(tag_frame: pd.DataFrame) -> np.ndarray:
    """Comma-separated true tags per row, in column order (vectorised: no per-row Python join)."""
    text_values = np.full(len(tag_frame), "", dtype=object)
    for name in tag_frame.columns:
        mask = tag_frame[name].to_numpy(dtype=bool)
        text_values[mask] = text_values[mask] + (name + ",")
    return np.array([t[:-1] for t in text_values], dtype=object)


def birth_years(engine) -> pd.Series:
    """Each customer's birth year (float, NaN when unknown), indexed by ``customer_id``."""
    frame = read_frame(engine, f"SELECT customer_id, {BIRTH_YEAR_SQL.format(col='birth_date')} AS birth_year "
                               "FROM customers")
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


def segments_stage(ctx) -> None:
    """The refresh stage ``segments``: features at the run's month, RFM, value tiers, clusters,
    tags, lifecycle stages and the lifecycle-stage margin CLV, written under ``ctx.run_id``.

    Writes ``customer_segments`` (one row per customer), ``cluster_profiles`` and ``cluster_cube``
    (each cluster's standardised features summed by the pages' filter cells), in chunks of
    ``LOAD_CHUNK_ROWS`` rows within one transaction, and puts its metrics (customers segmented,
    cluster k and silhouette, the retention of each lifecycle stage and its source, the run's tag
    names) in ``run_metrics``.

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

    (now,) = feature_cutoffs(ctx.as_of_month)
    stored = list(stage_features(ctx, now, customer_ids=[]).columns)
    features = stage_features(ctx, now, with_status=True, columns=segment_columns(rules, stored))
    lap("features")
    if features.empty:
        ctx.put_metrics({"segments.customers": 0})
        return
    out = rfm_table(features)
    lap("rfm")
    out["aum"] = features["aum_latest"]
    out["value_tier"] = value_tiers(features["aum_latest"], thresholds).astype(str)
    clusterer.fit(features)
    out["cluster"] = clusterer.labels_
    out["cluster_name"] = pd.Series(clusterer.labels_, index=out.index).map(clusterer.names_)
    lap("clusters")
    tag_frame = tags.evaluate_tags(features, rules)
    out["tags"] = _tag_text(tag_frame)
    lap("tags")
    stages = lifecycle.lifecycle_stage(features)
    out["lifecycle_stage"] = stages.astype(str)
    retention = lifecycle.observed_stage_retention(ctx.engine, ctx.as_of_month, stages)
    lap("stage_retention")
    margin = lifecycle.customer_annual_margin(ctx.engine).reindex(out.index).fillna(0.0)
    out["annual_margin"] = margin
    out["retention_rate"] = stages.astype(str).map(retention["annual_retention"]).astype(float).fillna(0.0)
    for years in lifecycle.CLV_HORIZONS_YEARS:
        out[f"clv_margin_{years}y"] = lifecycle.margin_clv(margin, out["retention_rate"],
                                                           discount_rate=discount, years=years)
    lap("clv")

    cells = out[["value_tier", "cluster_name"]].assign(
        branch_id=features["branch_id"].reindex(out.index).to_numpy(),
        birth_year=birth_years(ctx.engine).reindex(out.index).to_numpy())
    clusters_by_cell = cluster_cube_rows(cells, clusterer.standardised(features).reindex(out.index),
                                         as_of_year=ctx.as_of_month.year)
    lap("cluster_cube")

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

    rows = out.reset_index()
    rows.insert(0, "run_id", ctx.run_id)
    columns = [c.name for c in customer_segments.columns]
    rows = rows[columns]
    with ctx.engine.begin() as conn:
        for start in range(0, len(rows), chunk):
            bulk_insert(ctx.engine, customer_segments, rows.iloc[start:start + chunk], conn=conn)
        bulk_insert(ctx.engine, cluster_cube, clusters_by_cell.assign(run_id=ctx.run_id), conn=conn)
        # JSON goes through SQLAlchemy (bulk_insert writes plain values, not JSON documents).
        conn.execute(cluster_profiles.insert(), [{"run_id": ctx.run_id, **r}
                                                  for r in profile_rows.to_dict("records")])
    lap("write")

    ctx.row_counts.update({"customer_segments": len(rows), "cluster_cube": len(clusters_by_cell),
                           "cluster_profiles": len(profile_rows)})
    for name, seconds in timings.items():
        ctx.metrics[f"segments_seconds.{name}"] = seconds
    metrics: dict[str, float | str | None] = {
        "segments.customers": len(out),
        TAG_NAMES_METRIC: ",".join(tag_frame.columns),
        "clusters.k": clusterer.n_clusters_,
        "clusters.silhouette": clusterer.silhouette_by_k_.get(clusterer.n_clusters_),
    }
    for stage, row in retention.iterrows():
        metrics[f"lifecycle_retention.{stage}"] = float(row["annual_retention"])
        metrics[f"lifecycle_retention_source.{stage}"] = str(row["source"])
    ctx.put_metrics(metrics)
    log.info("segments: %d customers, %d clusters, timings %s", len(out), clusterer.n_clusters_, timings)


__all__ = ["CLUSTER_RANDOM_STATE", "TAG_NAMES_METRIC", "birth_years", "feature_cutoffs", "segment_columns",
           "segments_stage"]
