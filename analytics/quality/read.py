"""Reading a run's stored data-quality results: rule results, breakdowns, scores and their history."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from analytics.access import Viewer, min_cell_customers
from analytics.quality.evaluation import BREAKDOWNS
from analytics.quality.rules import DIMENSIONS, QualityError
from analytics.runs import resolve_run
from analytics.schema import dq_rule_breakdown, dq_rule_results, dq_scores, refresh_runs
from analytics.store import read_frame


def rule_results(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Per-rule results of a run (default: the current run), in rule-file order.

    Returns
    -------
    DataFrame
        rule, table_name, column_name, kind, dimension, severity, checked, failed, passed, pass_rate,
        as_of, description.
    """
    run_id = resolve_run(engine, run_id, what="data-quality results")
    t = dq_rule_results
    df = read_frame(engine, select(t.c.rule, t.c.table_name, t.c.column_name, t.c.kind, t.c.dimension,
                                   t.c.severity, t.c.checked, t.c.failed, t.c.pass_rate, t.c.as_of,
                                   t.c.definition)
                    .where(t.c.run_id == run_id).order_by(t.c.position))
    df.insert(df.columns.get_loc("failed") + 1, "passed", df["checked"] - df["failed"])
    df["description"] = [json.loads(d).get("description", "") for d in df["definition"]]
    return df.drop(columns=["definition"])


def rule_breakdown(engine: Engine, run_id: int | None = None, *, scope: str = "branch",
                   rule: str | None = None) -> pd.DataFrame:
    """Per-branch (``scope="branch"``) or per-channel counts of each customer rule for a run.

    Returns
    -------
    DataFrame
        rule, scope_value, checked, failed, pass_rate; e.g. filter rule ``customer_id_not_expired``
        and sort by failed to see which branch has the most expired ID documents.
    """
    if scope not in BREAKDOWNS:
        raise QualityError(f"scope must be one of {', '.join(BREAKDOWNS)}.")
    run_id = resolve_run(engine, run_id, what="data-quality results")
    t = dq_rule_breakdown
    stmt = (select(t.c.rule, t.c.scope_value, t.c.checked, t.c.failed)
            .where(t.c.run_id == run_id, t.c.scope == scope).order_by(t.c.rule, t.c.scope_value))
    if rule is not None:
        stmt = stmt.where(t.c.rule == rule)
    df = read_frame(engine, stmt)
    df["pass_rate"] = np.where(df["checked"] > 0, 1 - df["failed"] / df["checked"].where(df["checked"] > 0), np.nan)
    return df


def scores(engine: Engine, run_id: int | None = None, *, scope: str | None = None) -> pd.DataFrame:
    """Stored scores of a run (default: the current run), optionally of one scope."""
    run_id = resolve_run(engine, run_id, what="data-quality results")
    t = dq_scores
    stmt = (select(t.c.scope, t.c.scope_value, t.c.dimension, t.c.score, t.c.checked, t.c.failed)
            .where(t.c.run_id == run_id).order_by(t.c.scope, t.c.scope_value, t.c.dimension))
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    return read_frame(engine, stmt)


def breakdown_for(engine: Engine, run_id: int | None = None, *, scope: str, viewer: Viewer) -> pd.DataFrame:
    """The stored scores by ``scope`` (branch or channel) that ``viewer`` may see, with
    ``customers``: how many customers each cell's rules checked (the most any one customer rule
    checked there).

    A scoped viewer sees its own branches only, and no channel breakdown (a channel spans the
    bank). An aggregate-only viewer sees no cell of fewer than ``MIN_CELL_CUSTOMERS`` customers:
    a score of so few customers is a figure about them.
    """
    if scope not in BREAKDOWNS:
        raise QualityError(f"scope must be one of {', '.join(BREAKDOWNS)}.")
    frame = scores(engine, run_id, scope=scope)
    counts = rule_breakdown(engine, run_id, scope=scope).groupby("scope_value")["checked"].max()
    frame["customers"] = frame["scope_value"].map(counts).fillna(0).astype(int)
    if viewer.scope is not None:
        if scope != "branch":
            return frame.iloc[0:0]
        frame = frame[frame["scope_value"].isin(viewer.scope.branches)]
    if viewer.aggregate_only:
        frame = frame[frame["customers"] >= min_cell_customers()]
    return frame.reset_index(drop=True)


def score_history(engine: Engine, *, scope: str = "overall", scope_value: str = "") -> pd.DataFrame:
    """Scores of every successful run, oldest first, for trend charts.

    Runs whose result rows were pruned (``REFRESH_KEEP_RUNS``) still appear for the overall scope:
    their overall and dimension scores are kept in the run record (``refresh_runs.metrics``).

    Returns
    -------
    DataFrame
        run_id, finished_at, dimension, score; one row per run and dimension.
    """
    with engine.connect() as conn:
        runs = conn.execute(select(refresh_runs.c.run_id, refresh_runs.c.finished_at, refresh_runs.c.metrics)
                            .where(refresh_runs.c.status == "succeeded")
                            .order_by(refresh_runs.c.run_id)).all()
        stored = read_frame(conn, select(dq_scores.c.run_id, dq_scores.c.dimension, dq_scores.c.score)
                            .join(refresh_runs, refresh_runs.c.run_id == dq_scores.c.run_id)
                            .where(refresh_runs.c.status == "succeeded", dq_scores.c.scope == scope,
                                   dq_scores.c.scope_value == scope_value))
    finished = {run_id: at for run_id, at, _ in runs}
    rows = [{"run_id": int(r), "dimension": d, "score": float(s)}
            for r, d, s in zip(stored["run_id"], stored["dimension"], stored["score"], strict=True)]
    have = set(stored["run_id"].astype(int))
    if scope == "overall":
        for run_id, _, metrics in runs:
            if run_id in have or not isinstance(metrics, Mapping):
                continue
            for dim in ("overall", *DIMENSIONS):
                value = metrics.get(f"dq.{dim}")
                if value is not None:
                    rows.append({"run_id": int(run_id), "dimension": dim, "score": float(value)})
    df = pd.DataFrame(rows, columns=["run_id", "dimension", "score"])
    order = {d: i for i, d in enumerate(("overall", *DIMENSIONS))}
    df["_order"] = df["dimension"].map(order)
    df = df.sort_values(["run_id", "_order"]).drop(columns="_order").reset_index(drop=True)
    df.insert(1, "finished_at", pd.to_datetime(pd.Series([finished.get(r) for r in df["run_id"]], dtype=object)))
    return df


def score_change(engine: Engine, run_id: int | None = None, *, scope: str = "overall",
                 scope_value: str = "") -> pd.DataFrame:
    """Each dimension's score in a run (default: current) against the previous successful run.

    Returns
    -------
    DataFrame
        dimension, score, previous_score (NaN when there is no earlier run or it lacks the
        dimension), change (score - previous_score). ``attrs`` holds ``run_id`` and ``previous_run_id``.
    """
    run_id = resolve_run(engine, run_id, what="data-quality results")
    history = score_history(engine, scope=scope, scope_value=scope_value)
    now = history[history["run_id"] == run_id][["dimension", "score"]]
    earlier = history[history["run_id"] < run_id]
    previous_run = int(earlier["run_id"].max()) if not earlier.empty else None
    before = (earlier[earlier["run_id"] == previous_run][["dimension", "score"]]
              .rename(columns={"score": "previous_score"}))
    df = now.merge(before, on="dimension", how="left").reset_index(drop=True)
    df["change"] = df["score"] - df["previous_score"]
    df.attrs.update({"run_id": run_id, "previous_run_id": previous_run})
    return df
