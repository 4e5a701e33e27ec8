"""The refresh stage ``churn`` (:func:`churn_stage`): train on one period, evaluate on the next, refit
on both, score every customer and write the run's churn tables, as described in
:mod:`analytics.churn` (*Training, hold-out and scoring*); with the value a churn would lose
(:func:`customer_value`) and churn by branch, value tier, lifecycle stage and RFM segment
(:func:`churn_rates`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

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
from analytics.churn.reasons import ReasonCoder, ReferenceCounter
from analytics.churn.scoring import ScoringJob, read_scores, run_scoring
from analytics.evaluation import calibration_table, holdout_metrics, lift_table, permutation_importance_table
from analytics.features import FEATURE_COLUMNS, add_months, to_datetime
from analytics.features_stage import stage_features
from analytics.partitions import id_ranges, partition_count
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
# Customers per block where the stage goes through every customer (outcomes, rates by dimension).
BLOCK_ROWS = 250_000


def _owners(engine: Engine, block) -> pd.DataFrame:
    """``branch_id`` and ``relationship_manager`` of the customers of a block of ids."""
    condition, params = block.sql("customer_id", engine)
    return read_frame(engine, text(f"SELECT customer_id, branch_id, relationship_manager FROM customers "
                                   f"WHERE {condition}"), params).set_index("customer_id")


def _rate_inputs() -> list[str]:
    """The feature columns :func:`_rate_dimensions` reads (a narrow frame of every customer)."""
    from analytics.segmentation.rfm import RFM_FREQUENCY, RFM_MONETARY, RFM_RECENCY, RFM_TIEBREAKS

    return sorted({"branch_id", "aum_latest", "tenure_months", "months_since_last_txn", "aum_trend",
                   RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values()})


# Customers per read when the reason coder learns its reference over every active customer (every
# feature column of a block is read at once).
REFERENCE_BLOCK_ROWS = 50_000
# Rows of the hold-out sample the reference's bins are cut from.
REFERENCE_EDGE_ROWS = 50_000


def _reason_coder(ctx: RefreshContext, cutoff, horizon: int, counter: ReferenceCounter) -> ReasonCoder:
    """The reason coder fitted on the features at ``cutoff`` of the customers active then, read
    :data:`REFERENCE_BLOCK_ROWS` customers at a time, twice (:class:`ReasonCoder` reference values
    by :class:`~analytics.churn.reasons.ReferenceCounter`): exactly the whole frame's reference, but
    no column of every customer is held. ``counter``: a new counter of the columns at ``cutoff``."""
    from analytics.features_stage import feature_blocks

    blocks = id_ranges(ctx.engine, REFERENCE_BLOCK_ROWS)
    active: list[np.ndarray] = []
    for block, frame in feature_blocks(ctx, cutoff, blocks):
        states = cutoff_states(ctx.engine, cutoff, horizon, customers=block).reindex(frame.index).fillna("closed")
        active.append(states.to_numpy() == "active")
        counter.first(frame[active[-1]])
    for (_, frame), is_active in zip(feature_blocks(ctx, cutoff, blocks), active, strict=True):
        if len(frame) != len(is_active):
            raise RuntimeError("churn: the run's features changed while they were read")
        counter.second(frame[is_active])
    return ReasonCoder.from_reference(counter.reference(), counter.columns)


def _rate_dimensions(features: pd.DataFrame, boundaries: dict | None = None,
                     positions: np.ndarray | None = None) -> pd.DataFrame:
    """Branch, value tier, lifecycle stage and RFM segment of every customer of a feature frame,
    by the same rules as the segments stage (computed here so a past cut-off gets them too).
    ``boundaries`` and ``positions``: the frame is a block of the run's customers, scored on RFM
    as all of them are (see :func:`analytics.segmentation.rfm.rfm_table`)."""
    from analytics.lifecycle import lifecycle_stage
    from analytics.segmentation import rfm_table, value_tiers

    return pd.DataFrame({
        "branch_id": features["branch_id"].astype(object).fillna("(missing)"),
        "value_tier": value_tiers(features["aum_latest"]).astype(str),
        "lifecycle_stage": lifecycle_stage(features).astype(str),
        "rfm_segment": rfm_table(features, boundaries, positions)["rfm_segment"].astype(str),
    }, index=features.index)


def _dimension_blocks(ctx: RefreshContext, cutoff, blocks: list):
    """Each block of ``blocks`` with its customers' :func:`_rate_dimensions` at ``cutoff`` (every
    customer the run stored features for there, RFM ranked over all of them): ``(block, dims)``."""
    from analytics.features_stage import feature_blocks
    from analytics.segmentation.stage import run_rfm_boundaries

    boundaries, sizes = run_rfm_boundaries(ctx, cutoff, blocks)
    offset = 0
    for (block, narrow), size in zip(feature_blocks(ctx, cutoff, blocks, columns=_rate_inputs()), sizes,
                                     strict=True):
        if len(narrow) != size:
            raise RuntimeError("churn: the run's features changed while they were read")
        yield block, _rate_dimensions(narrow, boundaries, np.arange(offset, offset + size))
        offset += size


@dataclass
class Period:
    """The customers active at a period's cut-off (their ids in ascending order, UTF-8 encoded: a
    tenth of a text object each) and whether each churned, with the inactive customers' count
    and churners: what the stage keeps of every customer's outcome."""

    active: np.ndarray
    churned: np.ndarray
    inactive: int
    inactive_churned: int

    def sample(self, size: int, seed: int) -> tuple[pd.Index, np.ndarray]:
        """At most ``size`` active customers drawn at random (the same draw as over the index of
        every active customer) and their labels."""
        n = len(self.active)
        rows = np.sort(np.random.default_rng(seed).choice(n, size, replace=False)) if n > size else np.arange(n)
        ids = pd.Index([b.decode("utf-8") for b in self.active[rows]], dtype=object, name="customer_id")
        return ids, self.churned[rows].astype(int)


def period_outcomes(engine: Engine, cutoff, horizon: int, drop: float, blocks: list,
                    each_block=None) -> Period:
    """:func:`analytics.churn.labels.churn_outcomes` at ``cutoff``, a block of customers at a time;
    ``each_block(block, outcomes)`` sees each block's outcomes."""
    active, churned = [], []
    inactive = inactive_churned = 0
    last = None
    for block in blocks:
        outcome = churn_outcomes(engine, cutoff, horizon, drop, customers=block)
        state = outcome["churn_state"].to_numpy()
        ids = np.char.encode(outcome.index.to_numpy(dtype=str), "utf-8") if len(outcome) else np.array([], "S1")
        if len(ids):
            if last is not None and not ids[0] > last:
                raise RuntimeError("churn: the blocks of customer ids are not in ascending order")
            last = ids[-1]
        is_active = state == "active"
        active.append(ids[is_active])
        churned.append(outcome["churned"].to_numpy(dtype=bool)[is_active])
        is_inactive = state == "inactive"
        inactive += int(is_inactive.sum())
        inactive_churned += int(outcome["churned"].to_numpy(dtype=bool)[is_inactive].sum())
        if each_block is not None:
            each_block(block, outcome)
    width = max((a.dtype.itemsize for a in active), default=1)
    return Period(np.concatenate([a.astype(f"S{width}") for a in active]) if active else np.array([], "S1"),
                  np.concatenate(churned) if churned else np.array([], bool), inactive, inactive_churned)


def holdout_rates(dims_then: pd.DataFrame, churned_then: pd.Series) -> dict[str, pd.DataFrame]:
    """The hold-out half of :func:`churn_rates`: per dimension, the hold-out period's active
    customers (grouped by their dimensions at its cut-off) and how many churned. Small: the stage
    counts them before scoring and lets the customers' rows go."""
    return {dim: pd.DataFrame({"value": dims_then[dim], "y": churned_then.astype(float)}).groupby("value")["y"].agg(
                holdout_customers="size", holdout_churners="sum")
            for dim in RATE_DIMENSIONS}


def now_rates(dims_now: pd.DataFrame, probability: pd.Series) -> dict[str, pd.DataFrame]:
    """The today half of :func:`churn_rates`: per dimension, today's active customers and the sum
    of their probabilities by value. Sums of two sets of customers add up (:func:`add_rates`)."""
    return {dim: pd.DataFrame({"value": dims_now[dim], "p": probability}).groupby("value")["p"].agg(
                customers="size", expected_churners="sum")
            for dim in RATE_DIMENSIONS}


def add_rates(total: dict[str, pd.DataFrame] | None, part: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Two sets of customers' :func:`now_rates` or :func:`holdout_rates` added up."""
    if total is None:
        return part
    return {dim: total[dim].add(part[dim], fill_value=0).sort_index() for dim in part}


def churn_rates(dims_now: pd.DataFrame, probability: pd.Series, holdout: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Churn by branch, value tier, lifecycle stage and RFM segment.

    ``customers``/``mean_probability``/``expected_churners``: today's active customers and their
    predicted probabilities; ``holdout_*``: the hold-out period's counts (:func:`holdout_rates`)
    and the share who churned.
    """
    return rates_table(now_rates(dims_now, probability), holdout)


def rates_table(now: dict[str, pd.DataFrame], holdout: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`churn_rates` from the counts and sums of today (:func:`now_rates`) and of the
    hold-out (:func:`holdout_rates`), each added up over blocks of customers."""
    rows = []
    for dim in RATE_DIMENSIONS:
        today = now[dim].assign(mean_probability=now[dim]["expected_churners"] / now[dim]["customers"])
        table = today[["customers", "mean_probability", "expected_churners"]].join(
            holdout[dim], how="outer").reset_index()
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


def rate_cell_sums(dims_now: pd.DataFrame, probability: pd.Series, value_at_risk: pd.Series,
                   owners: pd.DataFrame) -> pd.DataFrame:
    """The ``churn_rate_cells`` sums: today's active customers counted by each of
    :data:`RATE_DIMENSIONS`' values and by owner (``owners``: ``branch_id`` and
    ``relationship_manager`` by customer id), with their expected churners and value at risk.

    Summed over every owner, a value's ``customers`` and ``expected_churners`` are the
    ``churn_rates`` row's; summed over one dimension's values, they are the run's headline. A
    missing owner is "" here (to group and add up, :func:`add_rate_cells`); :func:`rate_cells`
    gives the rows with it missing."""
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
    return out[list(RATE_CELL_COLUMNS)]


def rate_cells(dims_now: pd.DataFrame, probability: pd.Series, value_at_risk: pd.Series,
               owners: pd.DataFrame) -> pd.DataFrame:
    """The ``churn_rate_cells`` rows of :func:`rate_cell_sums`, a missing owner missing."""
    return stored_rate_cells(rate_cell_sums(dims_now, probability, value_at_risk, owners))


RATE_CELL_COLUMNS = ("dimension", "value", "branch_id", "relationship_manager", "customers", "expected_churners",
                     "value_at_risk")


def add_rate_cells(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """Two sets of customers' :func:`rate_cell_sums` added up, in the order one call over both gives
    (dimension, then value, branch and relationship manager)."""
    from analytics.segment_explorer import add_up_cells

    both = add_up_cells(total, part, ("customers", "expected_churners", "value_at_risk"))
    dimension = both["dimension"].map({d: i for i, d in enumerate(RATE_DIMENSIONS)})
    return both.assign(_d=dimension).sort_values(["_d", "value", "branch_id", "relationship_manager"],
                                                 kind="stable").drop(columns="_d").reset_index(drop=True)


def stored_rate_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The ``churn_rate_cells`` rows of :func:`rate_cell_sums`: a missing owner is NULL, not "" (which
    is only for grouping)."""
    out = cells.copy()
    for col in ("branch_id", "relationship_manager"):
        out[col] = out[col].replace("", None)
    return out


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


def churn_stage(ctx: RefreshContext, block_rows: int | None = None) -> None:
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
    from analytics.schema import churn_rates as rates_table_schema

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
    # Every customer's outcome is read a block at a time; only the active ids and labels are kept.
    blocks = id_ranges(ctx.engine, block_rows or BLOCK_ROWS)
    train = period_outcomes(ctx.engine, train_cut, horizon, drop, blocks)
    rows_train, y_train = train.sample(sample_size, RANDOM_STATE)
    del train
    # Only the sample is read (every customer's frame is half a gigabyte at a million).
    features_train = stage_features(ctx, train_cut, customer_ids=rows_train).reindex(rows_train)
    lap("train_data")
    if min(y_train.sum(), len(y_train) - y_train.sum()) < MIN_CLASS_ROWS:
        # A tiny or unusual store: say why in the run rather than failing the whole refresh.
        reason = (f"{int(y_train.sum())} churners and {int(len(y_train) - y_train.sum())} non-churners among "
                  f"customers active at {train_cut:%Y-%m}; at least {MIN_CLASS_ROWS} of each are needed")
        log.info("churn: skipped, %s", reason)
        ctx.put_metrics({"churn.skipped": reason})
        return

    # --- hold-out period: features at A - H, outcome over A - H + 1 .. A ----------------------
    # The hold-out's churn by dimension is counted a block at a time, beside its outcomes.
    dimensions_then = _dimension_blocks(ctx, hold_cut, blocks)
    nobody = pd.DataFrame({dim: pd.Series(dtype=object) for dim in RATE_DIMENSIONS})
    holdout = holdout_rates(nobody, pd.Series(dtype=bool))

    def count_holdout(block, outcome: pd.DataFrame) -> None:
        nonlocal holdout
        dims_block, (block_of_dims, dims) = block, next(dimensions_then)
        if block_of_dims is not dims_block:
            raise RuntimeError("churn: the hold-out's blocks went out of step")
        active = outcome.index[outcome["churn_state"].to_numpy() == "active"]
        holdout = add_rates(holdout, holdout_rates(dims.reindex(active), outcome.loc[active, "churned"]))

    hold = period_outcomes(ctx.engine, hold_cut, horizon, drop, blocks, each_block=count_holdout)
    inactive_rate = hold.inactive_churned / hold.inactive if hold.inactive else 1.0
    rows_hold, y_hold = hold.sample(sample_size, RANDOM_STATE + 1)
    del hold
    features_hold = stage_features(ctx, hold_cut, customer_ids=rows_hold).reindex(rows_hold)
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
    # The reason coder's bins are cut at the quantiles of the hold-out sample (its active customers).
    counter = ReferenceCounter(list(stage_features(ctx, as_of, customer_ids=[]).columns),
                               features_hold.iloc[:REFERENCE_EDGE_ROWS])
    del features_train, features_hold
    if len(both) > sample_size:
        keep = np.sort(np.random.default_rng(RANDOM_STATE + 2).choice(len(both), sample_size, replace=False))
        both, y_both = both.iloc[keep], y_both[keep]
    final = ChurnModel(random_state=RANDOM_STATE).fit(both, y_both)
    del both
    lap("fit_final")

    coder = _reason_coder(ctx, as_of, horizon, counter)
    del counter
    release_memory()  # scoring's blocks start from what the fits and the reference let go
    lap("score_data")

    # Score and write every customer partition by partition (analytics/churn/scoring.py): the
    # churn_scores rows are written there, under this unpublished run.
    job = ScoringJob(url=ctx.engine.url.render_as_string(hide_password=False), run_id=ctx.run_id, as_of=as_of,
                     horizon_months=horizon, inactive_rate=inactive_rate, model=final,
                     reference=coder.reference_, reference_columns=tuple(coder.columns_),
                     partitions=partition_count(), chunk_rows=chunk_rows)
    by_state = run_scoring(job)
    lap("score")

    # Today's churn by dimension and owner, a block of scored customers at a time.
    now = now_rates(nobody, pd.Series(dtype=float))
    cells = pd.DataFrame(columns=list(RATE_CELL_COLUMNS))
    expected_churners = value_at_risk = 0.0
    for block, dims in _dimension_blocks(ctx, as_of, blocks):
        scores = read_scores(ctx.engine, ctx.run_id, customers=block)
        active = scores.index[scores["churn_state"].to_numpy() == "active"]
        probability = scores.loc[active, "churn_probability"].astype(float)
        expected_churners += float(probability.sum())
        value_at_risk += float(scores.loc[active, "value_at_risk"].astype(float).sum())
        dims_active = dims.reindex(active)
        now = add_rates(now, now_rates(dims_active, probability))
        cells = add_rate_cells(cells, rate_cell_sums(dims_active, scores["churn_probability"],
                                                     scores["value_at_risk"],
                                                 _owners(ctx.engine, block)))
    rates = rates_table(now, holdout)
    cells = stored_rate_cells(cells)
    scored = sum(by_state.values())
    with ctx.engine.begin() as conn:
        bulk_insert(ctx.engine, churn_lift, lift.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_calibration, calibration.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_importance, importance.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, rates_table_schema, rates.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_rate_cells, cells.assign(run_id=ctx.run_id), conn=conn)
    lap("write")

    ctx.row_counts.update({"churn_scores": scored, "churn_lift": len(lift),
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
        "churn.customers_active": by_state["active"],
        "churn.customers_inactive": by_state["inactive"],
        "churn.customers_closed": by_state["closed"],
        "churn.expected_churners": expected_churners,
        "churn.value_at_risk_total": value_at_risk,
        "churn.partitions": job.partitions,
    }
    ctx.put_metrics(values)
    log.info("churn: %d customers scored, hold-out AUC %.3f, timings %s", scored, metrics["roc_auc"], timings)


__all__ = ["BLOCK_ROWS", "RATE_CELL_COLUMNS", "Period", "add_rate_cells", "add_rates", "churn_rates", "churn_stage",
           "customer_value", "holdout_rates", "now_rates", "period_outcomes", "rate_cell_sums", "rate_cells", "rates_table",
           "stored_rate_cells"]
