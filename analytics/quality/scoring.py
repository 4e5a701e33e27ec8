"""Scores from per-rule counts: per dimension and overall, for every scope.

The pass rate of a rule is ``(checked - failed) / checked`` (undefined, and left out, when it
checked nothing). A dimension's score is the mean of its rules' pass rates weighted by severity; the
overall score is the mean of the dimension scores weighted by dimension (a dimension with nothing
checked is left out and the rest re-weighted).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.quality.rules import DEFAULT_DIMENSION_WEIGHTS, DEFAULT_SEVERITY_WEIGHTS, DIMENSIONS


def _score_rows(frame: pd.DataFrame, dimension_weights: Mapping[str, float],
                severity_weights: Mapping[str, float]) -> list[dict]:
    """Dimension and overall scores of one scope from its rules' (dimension, severity, checked, failed)."""
    f = frame[frame["checked"] > 0]
    rows = []
    dim_scores: dict[str, float] = {}
    for dim in DIMENSIONS:
        g = f[f["dimension"] == dim]
        if g.empty:
            continue
        w = np.array([severity_weights[s] for s in g["severity"]], dtype=float)
        rate = 1.0 - g["failed"].to_numpy(dtype=float) / g["checked"].to_numpy(dtype=float)
        dim_scores[dim] = float((w * rate).sum() / w.sum())
        rows.append({"dimension": dim, "score": dim_scores[dim],
                     "checked": int(g["checked"].sum()), "failed": int(g["failed"].sum())})
    if dim_scores:
        total = sum(dimension_weights[d] for d in dim_scores)
        overall = sum(dimension_weights[d] * s for d, s in dim_scores.items()) / total
        rows.append({"dimension": "overall", "score": overall,
                     "checked": int(f["checked"].sum()), "failed": int(f["failed"].sum())})
    return rows


def compute_scores(results: pd.DataFrame, breakdown: pd.DataFrame | None = None, *,
                   dimension_weights: Mapping[str, float] | None = None,
                   severity_weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Scores per scope and dimension from per-rule counts.

    Parameters
    ----------
    results : DataFrame
        One row per rule with rule, table_name, dimension, severity, checked, failed.
    breakdown : DataFrame, optional
        rule, scope, scope_value, checked, failed (per branch / channel).
    dimension_weights, severity_weights : mapping, optional
        Default :data:`DEFAULT_DIMENSION_WEIGHTS` and :data:`DEFAULT_SEVERITY_WEIGHTS`.

    Returns
    -------
    DataFrame
        scope (overall, table, branch, channel), scope_value ("" for overall), dimension (the five
        dimensions and "overall"), score in [0, 1], checked, failed. Dimensions with nothing
        checked in a scope have no row.
    """
    dw = dict(dimension_weights or DEFAULT_DIMENSION_WEIGHTS)
    sw = dict(severity_weights or DEFAULT_SEVERITY_WEIGHTS)
    out: list[dict] = []

    def add(scope: str, value: str, frame: pd.DataFrame) -> None:
        for row in _score_rows(frame, dw, sw):
            out.append({"scope": scope, "scope_value": value, **row})

    add("overall", "", results)
    for table_name, frame in results.groupby("table_name", sort=True):
        add("table", str(table_name), frame)
    if breakdown is not None and not breakdown.empty:
        meta = results[["rule", "dimension", "severity"]]
        merged = breakdown.merge(meta, on="rule", how="inner")
        for (scope, value), frame in merged.groupby(["scope", "scope_value"], sort=True):
            add(str(scope), str(value), frame)
    return pd.DataFrame(out, columns=["scope", "scope_value", "dimension", "score", "checked", "failed"])
