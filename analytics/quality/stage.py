"""The refresh's ``data_quality`` stage: evaluate every rule, store results and scores, report metrics."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from analytics.quality.evaluation import QualityResult, as_of_date, evaluate
from analytics.quality.rules import DIMENSIONS, load_rules
from analytics.quality.scoring import compute_scores
from analytics.runs import RefreshContext
from analytics.schema import dq_rule_breakdown, dq_rule_results, dq_scores
from analytics.store import bulk_insert

# run_metrics name -> dimension ("overall" for the overall score). The first four are the figures
# the bank's guidance names: overall, 完整率, 准确率, 鲜活率.
METRIC_DIMENSIONS: dict[str, str] = {
    "dq_overall": "overall",
    "dq_completeness": "completeness",
    "dq_validity": "validity",
    "dq_freshness": "timeliness",
    "dq_consistency": "consistency",
    "dq_uniqueness": "uniqueness",
}


def store_results(engine: Engine, run_id: int, result: QualityResult, scores: pd.DataFrame) -> None:
    """Write a run's rule results, breakdown and scores in one transaction."""
    with engine.begin() as conn:
        for table, frame in ((dq_rule_results, result.rules), (dq_rule_breakdown, result.breakdown),
                             (dq_scores, scores)):
            frame = frame.copy()
            frame.insert(0, "run_id", run_id)
            bulk_insert(engine, table, frame, conn=conn)


def run_stage(ctx: RefreshContext) -> None:
    """The refresh's ``data_quality`` stage: evaluate every rule, store results and scores.

    Parameters
    ----------
    ctx : analytics.runs.RefreshContext
    """
    ruleset = load_rules()
    as_of = as_of_date(ctx.as_of_month)
    result = evaluate(ctx.engine, ruleset, as_of=as_of)
    scores = compute_scores(result.rules, result.breakdown, dimension_weights=ruleset.dimension_weights,
                            severity_weights=ruleset.severity_weights)
    store_results(ctx.engine, ctx.run_id, result, scores)
    overall = scores[scores["scope"] == "overall"].set_index("dimension")["score"]
    values: dict[str, float | str | None] = {
        name: (float(overall[dim]) if dim in overall.index else None) for name, dim in METRIC_DIMENSIONS.items()
    }
    values["dq_as_of"] = as_of.isoformat()
    values["dq_rules_failing"] = float((result.rules["failed"] > 0).sum())
    ctx.put_metrics(values)
    # Also in the run record, which outlives result pruning (REFRESH_KEEP_RUNS): the trend needs it.
    for dim in ("overall", *DIMENSIONS):
        if dim in overall.index:
            ctx.metrics[f"dq.{dim}"] = float(overall[dim])
    for table_name, secs in result.seconds.items():
        ctx.metrics[f"dq_seconds.{table_name}"] = secs
    ctx.row_counts["dq_rules"] = len(ruleset.rules)
