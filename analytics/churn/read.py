"""What the pages read of a run's churn results: the early-warning list and the hold-out tables and
metrics the churn stage stored. Rows are chosen by run through :mod:`analytics.runs`; nothing here
needs the model.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine

from analytics.access import Viewer, release, require_rows
from analytics.churn.labels import RATE_DIMENSIONS
from analytics.consent import live_consent_sql
from analytics.runs import read_run_table, run_clause
from analytics.store import read_frame

EARLY_WARNING_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "segment", "value_tier",
                         "lifecycle_stage", "churn_probability", "clv", "value_at_risk", "reason_1", "reason_2",
                         "reason_3")


def early_warning(engine: Engine, run_id: int | None = None, *, viewer: Viewer, branch_id: str | None = None,
                  segment: str | None = None, relationship_manager: str | None = None,
                  value_tier: str | None = None, limit: int = 500) -> tuple[pd.DataFrame, dict[str, int]]:
    """Active customers ranked by value at risk (churn probability × CLV), with reason codes: a
    contact list, so only customers in ``viewer``'s scope with a live marketing consent, released
    for the viewer; the others are counted, not listed.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int, optional
        The refresh run; default the published one.
    branch_id, segment, relationship_manager, value_tier : str, optional
        Filters (exact match): ``segment`` is the RFM segment (``customer_segments.rfm_segment``).
    limit : int
        Most rows returned (1 .. 100,000).

    Returns
    -------
    (pandas.DataFrame, dict)
        :data:`EARLY_WARNING_COLUMNS` (ids and non-personal columns only, released for the
        viewer). ``segment``, ``value_tier`` and ``lifecycle_stage`` are empty when the run has no
        segments. Ordered by value at risk, then probability, then id. And ``{"consent": n}``: how
        many customers the filters select in scope that have no live marketing consent.
    """
    require_rows(viewer)
    limit = int(limit)
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be between 1 and 100000, got {limit}")
    where, params = run_clause("s", run_id)
    clauses = [where, "s.churn_state = 'active'"]
    filters = {"branch_id": ("c.branch_id", branch_id), "segment": ("g.rfm_segment", segment),
               "relationship_manager": ("c.relationship_manager", relationship_manager),
               "value_tier": ("g.value_tier", value_tier)}
    for name, (column, value) in filters.items():
        if value is not None:
            clauses.append(f"{column} = :{name}")  # column names from the fixed map above only
            params[name] = str(value)
    scope, scope_params = viewer.scope_sql("c")
    consent, consent_params = live_consent_sql("s.customer_id", "marketing")
    clauses.append(scope)
    params.update(scope_params)
    params.update(consent_params)
    joins = """FROM churn_scores s
        JOIN customers c ON c.customer_id = s.customer_id
        LEFT JOIN customer_segments g ON g.run_id = s.run_id AND g.customer_id = s.customer_id"""
    where = " AND ".join(clauses)
    sql = f"""
        SELECT s.customer_id, c.branch_id, c.relationship_manager, g.rfm_segment AS segment, g.value_tier,
               g.lifecycle_stage, s.churn_probability, s.clv, s.value_at_risk, s.reason_1, s.reason_2, s.reason_3
        {joins}
        WHERE {where} AND {consent}
        ORDER BY s.value_at_risk DESC, s.churn_probability DESC, s.customer_id
        LIMIT :limit
    """
    frame = read_frame(engine, sql, {**params, "limit": limit})
    left_out = read_frame(engine, f"SELECT COUNT(*) AS n {joins} WHERE {where} AND NOT {consent}", params)
    return release(frame[list(EARLY_WARNING_COLUMNS)], viewer), {"consent": int(left_out["n"].iloc[0])}


def _scope_cells(engine: Engine, run_id: int | None, dimension: str, viewer: Viewer) -> pd.DataFrame | None:
    """The run's ``churn_rate_cells`` of ``dimension`` whose owner is in ``viewer``'s scope; None
    when the run stored none (a run from before the table existed)."""
    cells = read_run_table(engine, "churn_rate_cells", run_id, "value, branch_id, relationship_manager",
                           where="dimension = :dimension", params={"dimension": dimension})
    if cells.empty:
        any_cell = read_run_table(engine, "churn_rate_cells", run_id, "dimension")
        if any_cell.empty:
            return None
    return cells[viewer.in_scope(cells["branch_id"], cells["relationship_manager"])]


def scope_churn(engine: Engine, run_id: int | None = None, *, viewer: Viewer) -> dict[str, float | None]:
    """The churn headline of ``viewer``'s scope: ``customers_active``, ``expected_churners`` (the
    sum of their churn probabilities) and ``value_at_risk_total``, from the run's cells of active
    customers by owner (their branch and relationship manager as at the run).

    For a bank-wide viewer these equal the run's ``churn.customers_active``,
    ``churn.expected_churners`` and ``churn.value_at_risk_total``. Aggregates only: no consent
    filter (nobody is contacted), no customer rows. All None for a run without cells."""
    cells = _scope_cells(engine, run_id, "branch_id", viewer)
    if cells is None:
        return dict.fromkeys(("customers_active", "expected_churners", "value_at_risk_total"))
    return {"customers_active": float(cells["customers"].sum()),
            "expected_churners": float(cells["expected_churners"].sum()),
            "value_at_risk_total": float(cells["value_at_risk"].sum())}


def scope_churn_rates(engine: Engine, dimension: str, run_id: int | None = None, *, viewer: Viewer
                      ) -> pd.DataFrame:
    """Predicted churn by ``dimension`` over ``viewer``'s scope: ``value``, ``customers`` (active
    customers), ``mean_probability`` and ``expected_churners``, in the shape of the stored
    ``churn_rates`` rows (the hold-out columns are the bank's and are left out). Summed from the
    run's cells, so for a bank-wide viewer the figures equal the stored ones; empty for a run
    without cells."""
    if dimension not in RATE_DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(RATE_DIMENSIONS)}, not {dimension!r}")
    cells = _scope_cells(engine, run_id, dimension, viewer)
    columns = ["dimension", "value", "sort_order", "customers", "mean_probability", "expected_churners"]
    if cells is None or cells.empty:
        return pd.DataFrame(columns=columns)
    out = (cells.groupby("value", sort=True)[["customers", "expected_churners"]].sum().reset_index())
    out["customers"] = out["customers"].astype(float)
    out["mean_probability"] = out["expected_churners"] / out["customers"]
    out["dimension"] = dimension
    out["sort_order"] = range(len(out))
    return out[columns]


def read_churn_lift(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out lift/capture table of a run (default: the published run)."""
    return read_run_table(engine, "churn_lift", run_id, "decile")


def read_churn_calibration(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out calibration table of a run."""
    return read_run_table(engine, "churn_calibration", run_id, "bin")


def read_churn_importance(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out permutation importance of a run, most important first."""
    return read_run_table(engine, "churn_importance", run_id, "rank")


def read_churn_rates(engine: Engine, dimension: str, run_id: int | None = None) -> pd.DataFrame:
    """Churn by one of :data:`RATE_DIMENSIONS` for a run (see :func:`churn_rates`)."""
    if dimension not in RATE_DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(RATE_DIMENSIONS)}, not {dimension!r}")
    return read_run_table(engine, "churn_rates", run_id, "sort_order", where="dimension = :dimension",
                          params={"dimension": dimension})


def read_churn_metrics(engine: Engine, run_id: int | None = None) -> dict[str, float | str | None]:
    """The ``churn.*`` run metrics (hold-out ROC AUC, PR AUC, Brier, top-decile lift, ...)."""
    where, params = run_clause("run_metrics", run_id)
    frame = read_frame(engine, f"SELECT name, value, text_value FROM run_metrics WHERE {where} "
                               "AND name LIKE 'churn.%'", params)
    return {n: (t if t is not None and not pd.isna(t) else v)
            for n, v, t in zip(frame["name"], frame["value"], frame["text_value"], strict=True)}


__all__ = ["EARLY_WARNING_COLUMNS", "early_warning", "read_churn_calibration", "read_churn_importance",
           "read_churn_lift", "read_churn_metrics", "read_churn_rates", "scope_churn", "scope_churn_rates"]
