"""The refresh stage ``churn`` (:func:`churn_stage`): train on one period, evaluate on the next, refit
on both, score every customer and write the run's churn tables, as described in
:mod:`analytics.churn` (*Training, hold-out and scoring*); with the value a churn would lose
(:func:`customer_value`) and churn by branch, value tier, lifecycle stage and RFM segment
(:func:`churn_rates`).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from analytics import settings
from analytics.churn.labels import (
    RATE_DIMENSIONS,
    churn_outcomes,
    churn_settings,
    cutoff_states,
    feature_cutoffs,
)
from analytics.churn.model import ChurnModel
from analytics.churn.reasons import ReasonCoder
from analytics.churn.scoring import ScoringJob, score_partitions
from analytics.evaluation import calibration_table, holdout_metrics, lift_table, permutation_importance_table
from analytics.features import FEATURE_COLUMNS, add_months, to_datetime
from analytics.features_stage import stage_features
from analytics.partitions import partition_count
from analytics.runs import Laps, RefreshContext, release_memory
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

RANDOM_STATE = 20240501
# Fewer churners (or non-churners) than this in the training period: no model is fitted.
MIN_CLASS_ROWS = 10
IMPORTANCE_TOP = 20
# Rows of the hold-out the permutation importance is measured on: enough to rank the top features
# (the AUC of 10,000 rows moves by ~0.005 between samples), and a 20k sample cost 25 s at 100k customers.
IMPORTANCE_ROWS = 10_000


def _sample(index: pd.Index, size: int, seed: int) -> pd.Index:
    if len(index) <= size:
        return index
    rows = np.sort(np.random.default_rng(seed).choice(len(index), size, replace=False))
    return index[rows]


def _rate_inputs() -> list[str]:
    """The feature columns :func:`_rate_dimensions` reads (a narrow frame of every customer)."""
    from analytics.segmentation.rfm import RFM_FREQUENCY, RFM_MONETARY, RFM_RECENCY, RFM_TIEBREAKS

    return sorted({"branch_id", "aum_latest", "tenure_months", "months_since_last_txn", "aum_trend",
                   RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values()})


# Feature columns per read when the reason coder learns its reference over every active customer.
REFERENCE_BLOCK_COLUMNS = 16


def _fit_reason_coder(ctx: RefreshContext, cutoff, customer_ids: pd.Index) -> ReasonCoder:
    """The reason coder fitted on ``customer_ids``' features at ``cutoff``, read a block of columns
    at a time: the reference (a median or mode per column) is exactly the whole frame's, but no
    more than :data:`REFERENCE_BLOCK_COLUMNS` columns of every customer are held at once."""
    names = list(stage_features(ctx, cutoff, customer_ids=[]).columns)
    reference: dict = {}
    for start in range(0, len(names), REFERENCE_BLOCK_COLUMNS):
        block = stage_features(ctx, cutoff, columns=names[start:start + REFERENCE_BLOCK_COLUMNS])
        reference |= ReasonCoder().fit(block.reindex(customer_ids)).reference_
        del block
    return ReasonCoder.from_reference(reference, names)


def _rate_dimensions(features: pd.DataFrame) -> pd.DataFrame:
    """Branch, value tier, lifecycle stage and RFM segment of every customer of a feature frame,
    by the same rules as the segments stage (computed here so a past cut-off gets them too)."""
    from analytics.lifecycle import lifecycle_stage
    from analytics.segmentation import rfm_table, value_tiers

    return pd.DataFrame({
        "branch_id": features["branch_id"].astype(object).fillna("(missing)"),
        "value_tier": value_tiers(features["aum_latest"]).astype(str),
        "lifecycle_stage": lifecycle_stage(features).astype(str),
        "rfm_segment": rfm_table(features)["rfm_segment"].astype(str),
    }, index=features.index)


def holdout_rates(dims_then: pd.DataFrame, churned_then: pd.Series) -> dict[str, pd.DataFrame]:
    """The hold-out half of :func:`churn_rates`: per dimension, the hold-out period's active
    customers (grouped by their dimensions at its cut-off) and how many churned. Small: the stage
    counts them before scoring and lets the customers' rows go."""
    return {dim: pd.DataFrame({"value": dims_then[dim], "y": churned_then.astype(float)}).groupby("value")["y"].agg(
                holdout_customers="size", holdout_churners="sum")
            for dim in RATE_DIMENSIONS}


def churn_rates(dims_now: pd.DataFrame, probability: pd.Series, holdout: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Churn by branch, value tier, lifecycle stage and RFM segment.

    ``customers``/``mean_probability``/``expected_churners``: today's active customers and their
    predicted probabilities; ``holdout_*``: the hold-out period's counts (:func:`holdout_rates`)
    and the share who churned.
    """
    rows = []
    for dim in RATE_DIMENSIONS:
        now = pd.DataFrame({"value": dims_now[dim], "p": probability}).groupby("value")["p"].agg(
            customers="size", mean_probability="mean", expected_churners="sum")
        table = now.join(holdout[dim], how="outer").reset_index()
        table["dimension"] = dim
        rows.append(table)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    for col in ("customers", "holdout_customers", "holdout_churners", "expected_churners"):
        out[col] = out[col].fillna(0.0)
    out["holdout_churn_rate"] = np.where(out["holdout_customers"] > 0,
                                         out["holdout_churners"] / out["holdout_customers"].where(
                                             out["holdout_customers"] > 0, 1), np.nan)
    out = out.sort_values(["dimension", "value"]).reset_index(drop=True)
    out["sort_order"] = out.groupby("dimension").cumcount()
    return out[["dimension", "value", "sort_order", "customers", "mean_probability", "expected_churners",
                "holdout_customers", "holdout_churners", "holdout_churn_rate"]]


def rate_cells(dims_now: pd.DataFrame, probability: pd.Series, value_at_risk: pd.Series,
               owners: pd.DataFrame) -> pd.DataFrame:
    """The ``churn_rate_cells`` rows: today's active customers counted by each of
    :data:`RATE_DIMENSIONS`' values and by owner (``owners``: ``branch_id`` and
    ``relationship_manager`` by customer id), with their expected churners and value at risk.

    Summed over every owner, a value's ``customers`` and ``expected_churners`` are the
    ``churn_rates`` row's; summed over one dimension's values, they are the run's headline."""
    owner = owners.reindex(dims_now.index)
    base = pd.DataFrame({"branch_id": owner["branch_id"].astype(object),
                         "relationship_manager": owner["relationship_manager"].astype(object).fillna(""),
                         "p": probability.reindex(dims_now.index).astype(float),
                         "var": value_at_risk.reindex(dims_now.index).astype(float)}, index=dims_now.index)
    base["branch_id"] = base["branch_id"].fillna("")
    parts = []
    for dim in RATE_DIMENSIONS:
        cells = (base.assign(value=dims_now[dim].astype(str))
                 .groupby(["value", "branch_id", "relationship_manager"], sort=True)
                 .agg(customers=("p", "size"), expected_churners=("p", "sum"), value_at_risk=("var", "sum"))
                 .reset_index())
        parts.append(cells.assign(dimension=dim))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for col in ("branch_id", "relationship_manager"):  # "" was only for grouping
        out[col] = out[col].replace("", None)
    return out[["dimension", "value", "branch_id", "relationship_manager", "customers", "expected_churners",
                "value_at_risk"]]


def customer_value(engine: Engine, run_id: int | None, customer_ids: pd.Index) -> pd.Series:
    """The value a churn would lose, per customer: the margin CLV of the segments stage when this
    run has one (``customer_segments.clv_margin_<CLV_HORIZON_YEARS>y``), else the yearly margin of
    the open holdings (``sum(balance * annual_margin)``) over the same horizon, discounted at
    ``CLV_DISCOUNT_RATE``, as if the customer stays."""
    from analytics import lifecycle

    years = lifecycle.clv_horizon_years()
    column = f"clv_margin_{years}y"
    frame = pd.DataFrame()
    if run_id is not None:
        frame = read_frame(engine, text(f"SELECT customer_id, {column} AS clv FROM customer_segments "
                                        "WHERE run_id = :run_id"), {"run_id": int(run_id)})
    if not frame.empty:
        return pd.to_numeric(frame.set_index("customer_id")["clv"], errors="coerce").reindex(customer_ids).fillna(0.0)
    margin = lifecycle.customer_annual_margin(engine).reindex(customer_ids).fillna(0.0)
    return pd.Series(lifecycle.margin_clv(margin, 1.0, discount_rate=lifecycle.clv_discount_rate(), years=years),
                     index=customer_ids)


def churn_stage(ctx: RefreshContext) -> None:
    """The refresh stage ``churn``: train, evaluate on the hold-out, score every customer, write.

    Writes ``churn_scores`` (every customer open at the run's month), ``churn_lift``,
    ``churn_calibration``, ``churn_importance``, ``churn_rates`` and ``churn_rate_cells`` under ``ctx.run_id``, and puts
    the hold-out metrics (``churn.holdout_roc_auc``, ``churn.holdout_pr_auc``,
    ``churn.holdout_brier``, ``churn.top_decile_lift``, ...) in ``run_metrics``. With too little
    history for the two cut-offs it writes nothing and records ``churn.skipped`` with the reason.
    """
    from analytics.schema import (
        churn_calibration,
        churn_importance,
        churn_lift,
        churn_rate_cells,
    )
    from analytics.schema import churn_rates as rates_table

    if ctx.as_of_month is None:
        ctx.put_metrics({"churn.skipped": "no activity data"})
        return
    config = churn_settings()
    horizon, drop, sample_size = config["horizon_months"], config["aum_drop"], config["sample_size"]
    chunk_rows = int(settings.get("LOAD_CHUNK_ROWS"))
    train_cut, hold_cut, as_of = feature_cutoffs(ctx.as_of_month)
    first = read_frame(ctx.engine, "SELECT MIN(month) AS first FROM customer_monthly")["first"].iloc[0]
    first = to_datetime(pd.Series([str(first)[:10]])).iloc[0].date()
    if add_months(train_cut, -(horizon - 1)) < first:
        reason = (f"needs activity from {add_months(train_cut, -(horizon - 1)):%Y-%m} "
                  f"(two {horizon}-month periods before {as_of:%Y-%m}); the store starts at {first:%Y-%m}")
        log.info("churn: skipped, %s", reason)
        ctx.put_metrics({"churn.skipped": reason})
        return
    lap = Laps()
    timings = lap.seconds

    # --- training period: features at A - 2H, outcome over the next H months -----------------
    outcome_train = churn_outcomes(ctx.engine, train_cut, horizon, drop)
    active_train = outcome_train.index[outcome_train["churn_state"] == "active"]
    rows_train = _sample(active_train, sample_size, RANDOM_STATE)
    # Only the sample is read (every customer's frame is half a gigabyte at a million).
    features_train = stage_features(ctx, train_cut, customer_ids=rows_train).reindex(rows_train)
    y_train = outcome_train.loc[rows_train, "churned"].to_numpy(dtype=int)
    del outcome_train  # every customer's outcome: only the sample's labels are used
    lap("train_data")
    if min(y_train.sum(), len(y_train) - y_train.sum()) < MIN_CLASS_ROWS:
        # A tiny or unusual store: say why in the run rather than failing the whole refresh.
        reason = (f"{int(y_train.sum())} churners and {int(len(y_train) - y_train.sum())} non-churners among "
                  f"customers active at {train_cut:%Y-%m}; at least {MIN_CLASS_ROWS} of each are needed")
        log.info("churn: skipped, %s", reason)
        ctx.put_metrics({"churn.skipped": reason})
        return

    # --- hold-out period: features at A - H, outcome over A - H + 1 .. A ----------------------
    outcome_hold = churn_outcomes(ctx.engine, hold_cut, horizon, drop)
    active_hold = outcome_hold.index[outcome_hold["churn_state"] == "active"]
    # The dimensions rank every customer (RFM quintiles): a narrow frame of the columns they need.
    dims_then = _rate_dimensions(stage_features(ctx, hold_cut, columns=_rate_inputs())).reindex(active_hold)
    churned_then = outcome_hold.loc[active_hold, "churned"]
    inactive_hold = outcome_hold[outcome_hold["churn_state"] == "inactive"]
    inactive_rate = float(inactive_hold["churned"].mean()) if len(inactive_hold) else 1.0
    rows_hold = _sample(active_hold, sample_size, RANDOM_STATE + 1)
    features_hold = stage_features(ctx, hold_cut, customer_ids=rows_hold).reindex(rows_hold)
    y_hold = outcome_hold.loc[rows_hold, "churned"].to_numpy(dtype=int)
    holdout = holdout_rates(dims_then, churned_then)
    del outcome_hold, inactive_hold, dims_then, churned_then  # every customer's rows: only their counts are kept
    lap("holdout_data")

    model = ChurnModel(random_state=RANDOM_STATE).fit(features_train, y_train)
    lap("fit_train")
    p_hold = model.predict_proba(features_hold)[:, 1]
    metrics = holdout_metrics(y_hold, p_hold)
    lift = lift_table(y_hold, p_hold)
    calibration = calibration_table(y_hold, p_hold)
    importance = (permutation_importance_table(model, features_hold, y_hold, random_state=RANDOM_STATE,
                                               max_rows=IMPORTANCE_ROWS, top=IMPORTANCE_TOP)
                  if 0 < y_hold.sum() < len(y_hold) else pd.DataFrame(columns=["feature", "importance_mean",
                                                                              "importance_std", "rank"]))
    importance["description"] = importance["feature"].map(lambda c: FEATURE_COLUMNS.get(c, c))
    lap("evaluate")

    # --- final model on both periods, scoring today's customers -------------------------------
    # Both samples are random already: pool them and keep at most sample_size rows.
    both = pd.concat([features_train, features_hold], ignore_index=True)
    y_both = np.concatenate([y_train, y_hold])
    del features_train, features_hold
    if len(both) > sample_size:
        keep = np.sort(np.random.default_rng(RANDOM_STATE + 2).choice(len(both), sample_size, replace=False))
        both, y_both = both.iloc[keep], y_both[keep]
    final = ChurnModel(random_state=RANDOM_STATE).fit(both, y_both)
    del both
    lap("fit_final")

    narrow_now = stage_features(ctx, as_of, columns=_rate_inputs())
    states = cutoff_states(ctx.engine, as_of, horizon).reindex(narrow_now.index).fillna("closed")
    active_now = narrow_now.index[states.to_numpy() == "active"]
    dims_now = _rate_dimensions(narrow_now).reindex(active_now)
    del narrow_now, states
    coder = _fit_reason_coder(ctx, as_of, active_now)
    release_memory()  # scoring's blocks start from what the fits and the reference let go
    lap("score_data")

    # Score and write every customer partition by partition (analytics/churn/scoring.py): the
    # churn_scores rows are written there, under this unpublished run.
    job = ScoringJob(url=ctx.engine.url.render_as_string(hide_password=False), run_id=ctx.run_id, as_of=as_of,
                     horizon_months=horizon, inactive_rate=inactive_rate, model=final,
                     reference=coder.reference_, reference_columns=tuple(coder.columns_),
                     partitions=partition_count(), chunk_rows=chunk_rows)
    scores = score_partitions(job)
    probability = scores["churn_probability"].astype(float)
    inactive = scores.index[scores["churn_state"].to_numpy() == "inactive"]
    closed = scores.index[scores["churn_state"].to_numpy() == "closed"]
    lap("score")

    rates = churn_rates(dims_now, probability.loc[active_now], holdout)
    owners = read_frame(ctx.engine, text("SELECT customer_id, branch_id, relationship_manager FROM customers")
                        ).set_index("customer_id")
    cells = rate_cells(dims_now, probability, scores["value_at_risk"], owners)
    with ctx.engine.begin() as conn:
        bulk_insert(ctx.engine, churn_lift, lift.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_calibration, calibration.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_importance, importance.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, rates_table, rates.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_rate_cells, cells.assign(run_id=ctx.run_id), conn=conn)
    lap("write")

    ctx.row_counts.update({"churn_scores": len(scores), "churn_lift": len(lift),
                           "churn_calibration": len(calibration), "churn_importance": len(importance),
                           "churn_rates": len(rates), "churn_rate_cells": len(cells)})
    for name, seconds in timings.items():
        ctx.metrics[f"churn_seconds.{name}"] = seconds
    top_lift = float(lift["lift"].iloc[0]) if len(lift) else float("nan")
    values: dict[str, float | str | None] = {
        f"churn.holdout_{k}": (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()
    }
    values |= {
        "churn.top_decile_lift": None if np.isnan(top_lift) else top_lift,
        "churn.top_decile_capture": float(lift["capture"].iloc[0]) if len(lift) else None,
        "churn.as_of_month": as_of.isoformat(),
        "churn.horizon_months": horizon,
        "churn.aum_drop": drop,
        "churn.train_cutoff": train_cut.isoformat(),
        "churn.holdout_cutoff": hold_cut.isoformat(),
        "churn.train_customers": len(y_train),
        "churn.train_base_rate": float(y_train.mean()),
        "churn.final_customers": len(y_both),
        "churn.model_weight_gbm": model.weight_,
        "churn.model_calibration": model.calibration_,
        "churn.final_weight_gbm": final.weight_,
        "churn.final_calibration": final.calibration_,
        # Which candidate the inner cross-validation chose (trees, logistic regression or a blend):
        # JSON {"kind", "trees", "C", "weight", "cv_auc"}.
        "churn.model_candidate": json.dumps(model.candidate_, sort_keys=True),
        "churn.final_candidate": json.dumps(final.candidate_, sort_keys=True),
        "churn.inactive_churn_rate": inactive_rate,
        "churn.customers_active": len(active_now),
        "churn.customers_inactive": len(inactive),
        "churn.customers_closed": len(closed),
        "churn.expected_churners": float(probability.loc[active_now].sum()),
        "churn.value_at_risk_total": float(scores.loc[scores["churn_state"] == "active", "value_at_risk"].sum()),
        "churn.partitions": job.partitions,
    }
    ctx.put_metrics(values)
    log.info("churn: %d customers scored, hold-out AUC %.3f, timings %s", len(scores), metrics["roc_auc"], timings)


__all__ = ["churn_rates", "churn_stage", "customer_value", "holdout_rates", "rate_cells"]
