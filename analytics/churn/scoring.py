"""Scoring today's customers, partition by partition (:mod:`analytics.partitions`).

After :func:`analytics.churn.stage.churn_stage` has fitted the final model on its bounded sample and
the reason coder's reference values, :func:`score_partitions` scores every customer open at the run's
month: each partition reads its own customers' features (those the run's ``customer_features``
stage stored) and states, computes their probability, reasons and value at risk, and writes its
``churn_scores`` rows under the (unpublished) run id, a block of customers at a time. What a
partition computes for a customer does not depend on which other customers are in it, so the rows
are the same whatever the partition count, the block size or the executor (tested).

A :class:`ScoringJob` holds everything a partition needs and is picklable (the store URL, never an
engine; the reason coder's reference values, not the coder), so it runs on a process pool or a Dask
worker as well as in the refresh's process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import delete, text

from analytics.churn.labels import cutoff_states
from analytics.churn.model import ChurnModel
from analytics.churn.reasons import MatrixModel, ReasonCoder, encode
from analytics.features import read_features
from analytics.partitions import Partition, PartitionRange, id_ranges, pause_if_asked, run_partitions
from analytics.store import bulk_insert, make_engine, read_frame

log = logging.getLogger(__name__)

# Customers read, scored and written at a time by a partition (the reason coder predicts a block's
# rows again once per reason group, 13 groups). At a million customers, blocks of 100,000 took the
# stage's scoring to 1,500 MiB and blocks of 50,000 to 1,221 MiB, in no more time.
SCORE_BLOCK_ROWS = 50_000
# Customer ids per DELETE when a block replaces what an earlier attempt wrote.
_IDS_PER_DELETE = 5000
REASONS = ["reason_1", "reason_2", "reason_3"]
PAUSE_POINT = "partition:churn:writing"


@dataclass(frozen=True)
class ScoringJob:
    """What every partition of one run's scoring needs (picklable)."""

    url: str
    run_id: int
    as_of: date
    horizon_months: int
    inactive_rate: float
    model: ChurnModel
    reference: dict
    reference_columns: tuple[str, ...]
    partitions: int
    chunk_rows: int = 50_000
    block_rows: int = SCORE_BLOCK_ROWS

    def coder(self) -> ReasonCoder:
        """The fitted reason coder, rebuilt from its reference values."""
        coder = ReasonCoder()
        coder.reference_ = dict(self.reference)
        coder.columns_ = list(self.reference_columns)
        coder.groups_ = coder._resolve(coder.columns_)
        return coder


def _values(engine, run_id: int, ids: pd.Index, part) -> pd.Series:
    """:func:`analytics.churn.stage.customer_value` for the customers of a filter ``part`` (``ids``): the run's margin CLV
    when the run has segments, else the margin of the open holdings over the horizon."""
    from analytics import lifecycle

    column = f"clv_margin_{lifecycle.clv_horizon_years()}y"
    has_segments = read_frame(engine, text("SELECT 1 AS x FROM customer_segments WHERE run_id = :run_id LIMIT 1"),
                              {"run_id": int(run_id)})
    if not has_segments.empty:
        only, params = part.sql("customer_id", engine)
        frame = read_frame(engine, text(f"SELECT customer_id, {column} AS clv FROM customer_segments "
                                        f"WHERE run_id = :run_id AND {only}"), {"run_id": int(run_id), **params})
        return pd.to_numeric(frame.set_index("customer_id")["clv"], errors="coerce").reindex(ids).fillna(0.0)
    margin = lifecycle.customer_annual_margin(engine, customers=part).reindex(ids).fillna(0.0)
    return pd.Series(lifecycle.margin_clv(margin, 1.0, discount_rate=lifecycle.clv_discount_rate(),
                                          years=lifecycle.clv_horizon_years()), index=ids)


def _score_block(job: ScoringJob, model: MatrixModel, coder: ReasonCoder, features: pd.DataFrame,
                 states: pd.Series, value: pd.Series) -> pd.DataFrame:
    """The ``churn_scores`` rows of one block of customers (``features``' rows, in their order)."""
    states = states.reindex(features.index).astype(object).fillna("closed")
    is_active = states.to_numpy() == "active"
    active = features.index[is_active]
    probability = pd.Series(np.nan, index=features.index)
    reasons = pd.DataFrame(index=features.index, columns=REASONS, dtype=object)
    if len(active):
        chunk = features.loc[active]
        p = model.predict(model.prepare(chunk))
        probability.loc[active] = p
        reasons.loc[active, REASONS] = coder.explain(model, chunk, base=p)[REASONS]
    inactive = states.index[states.to_numpy() == "inactive"]
    closed = states.index[states.to_numpy() == "closed"]
    probability.loc[inactive] = job.inactive_rate
    probability.loc[closed] = 1.0
    idle = features.loc[inactive, "months_since_last_txn"].astype(float)
    reasons.loc[inactive, "reason_1"] = [encode("no_transactions", months=int(round(m))) for m in idle]
    reasons.loc[closed, "reason_1"] = encode("all_products_closed")
    value = value.reindex(features.index).fillna(0.0)
    return pd.DataFrame({
        "run_id": job.run_id, "customer_id": features.index.to_numpy(),
        "churn_state": states.to_numpy(), "churn_probability": probability.to_numpy(dtype=float),
        "clv": value.to_numpy(dtype=float), "value_at_risk": (probability * value).to_numpy(dtype=float),
        "reason_1": reasons["reason_1"].to_numpy(), "reason_2": reasons["reason_2"].to_numpy(),
        "reason_3": reasons["reason_3"].to_numpy(),
    })


def score_partition(job: ScoringJob, partition: int) -> dict:
    """Score and write one partition's ``churn_scores`` rows; return its counts by state.

    The partition's customers are those the run stored features for at ``as_of`` (the
    ``customer_features`` stage; nothing is computed again). They are read, scored and written
    about :data:`SCORE_BLOCK_ROWS` at a time (a range of ids holding that many of the partition's
    customers: :class:`~analytics.partitions.PartitionRange`), in order of id, each block in a
    transaction of its own that first deletes what an earlier attempt wrote for the same customers:
    what the partition holds in memory is one block's features, states and values, however many
    customers it has.
    """
    from analytics.schema import churn_scores

    part = Partition(partition, job.partitions)
    engine = make_engine(job.url)
    try:
        model, coder = MatrixModel.of(job.model), job.coder()
        counts = dict.fromkeys(("active", "inactive", "closed"), 0)
        customers = 0
        # Ranges of ids holding about block_rows of this partition's customers each.
        for ids in id_ranges(engine, job.block_rows * job.partitions):
            only = PartitionRange(part, ids)
            features = read_features(engine, job.run_id, job.as_of, customers=only)
            if features.empty:
                continue
            block = features.index
            states = cutoff_states(engine, job.as_of, job.horizon_months, customers=only)
            value = _values(engine, job.run_id, block, only)
            scores = _score_block(job, model, coder, features, states, value)
            del features, states, value
            for state, n in scores["churn_state"].value_counts().items():
                counts[state] += int(n)
            with engine.begin() as conn:
                # A rerun of this partition (a Dask worker died after a commit) replaces its own rows.
                for first in range(0, len(block), _IDS_PER_DELETE):
                    conn.execute(delete(churn_scores).where(churn_scores.c.run_id == job.run_id).where(
                        churn_scores.c.customer_id.in_([str(i) for i in block[first:first + _IDS_PER_DELETE]])))
                for first in range(0, len(scores), job.chunk_rows):
                    bulk_insert(engine, churn_scores, scores.iloc[first:first + job.chunk_rows], conn=conn)
                if customers == 0:
                    pause_if_asked(PAUSE_POINT, partition)
            customers += len(block)
            del scores
        log.info("churn: partition %d of %d scored, %d customers", partition, job.partitions, customers)
        return {"partition": partition, "customers": customers, **counts}
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Task:
    """``job`` bound as a picklable callable of the partition number (a lambda does not pickle)."""

    job: ScoringJob

    def __call__(self, partition: int) -> dict:
        return score_partition(self.job, partition)


def run_scoring(job: ScoringJob, executor=None) -> dict[str, int]:
    """Score every partition of ``job`` on ``executor`` (default: the settings') and check the run's
    ``churn_scores`` hold one row per customer the partitions scored; return the customers by state.

    Raises
    ------
    analytics.partitions.PartitionError
        When a partition fails (the refresh then fails the run; nothing is published).
    """
    counts = run_partitions(_Task(job), job.partitions, executor)
    engine = make_engine(job.url)
    try:
        with engine.connect() as conn:
            stored = int(conn.execute(text("SELECT count(*) FROM churn_scores WHERE run_id = :run_id"),
                                      {"run_id": int(job.run_id)}).scalar() or 0)
    finally:
        engine.dispose()
    expected = sum(c["customers"] for c in counts)
    if stored != expected:  # a partition's rows went missing or were doubled: never publish that
        raise RuntimeError(f"churn_scores holds {stored} rows of run {job.run_id}; the partitions wrote "
                           f"{expected}")
    return {state: sum(c[state] for c in counts) for state in ("active", "inactive", "closed")}


def read_scores(engine, run_id: int, customers=None) -> pd.DataFrame:
    """``churn_state``, ``churn_probability`` and ``value_at_risk`` of the run's scored customers
    by ``customer_id`` (sorted); of the customers a filter selects when ``customers`` is given."""
    only, params = ("", {}) if customers is None else customers.sql("customer_id", engine)
    return read_frame(engine, text("SELECT customer_id, churn_state, churn_probability, value_at_risk "
                                   f"FROM churn_scores WHERE run_id = :run_id{f' AND {only}' if only else ''} "
                                   "ORDER BY customer_id"), {"run_id": int(run_id), **params}).set_index("customer_id")


def score_partitions(job: ScoringJob, executor=None) -> pd.DataFrame:
    """:func:`run_scoring`, then every customer's scores read back (:func:`read_scores`)."""
    run_scoring(job, executor)
    engine = make_engine(job.url)
    try:
        return read_scores(engine, job.run_id)
    finally:
        engine.dispose()


__all__ = ["SCORE_BLOCK_ROWS", "ScoringJob", "read_scores", "run_scoring", "score_partition", "score_partitions"]
