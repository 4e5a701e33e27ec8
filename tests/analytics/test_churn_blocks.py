"""The ``churn`` stage goes through every customer a block at a time (issue 16): the periods'
outcomes, the hold-out's and today's churn by dimension and owner. What it keeps and stores is
what one pass over every customer gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.churn import stage as churn
from analytics.churn.labels import churn_outcomes, churn_settings, feature_cutoffs
from analytics.churn.scoring import read_scores
from analytics.features import read_features
from analytics.partitions import id_ranges
from analytics.refresh import latest_activity_month
from analytics.runs import get_run_metrics
from analytics.store import read_frame


def _latest_run(engine) -> int:
    return int(read_frame(engine, "SELECT max(run_id) AS r FROM refresh_runs WHERE status = 'succeeded'")["r"].iloc[0])


@pytest.mark.parametrize("block_rows", [700, 10**9])
def test_period_outcomes_in_blocks_keep_every_active_customer_and_the_same_sample(demo_engine, block_rows):
    config = churn_settings()
    _, hold_cut, _ = feature_cutoffs(latest_activity_month(demo_engine))
    whole = churn_outcomes(demo_engine, hold_cut, config["horizon_months"], config["aum_drop"])
    period = churn.period_outcomes(demo_engine, hold_cut, config["horizon_months"], config["aum_drop"],
                                   id_ranges(demo_engine, block_rows))
    active = whole.index[whole["churn_state"] == "active"]
    assert [b.decode() for b in period.active] == list(active)
    assert period.churned.tolist() == whole.loc[active, "churned"].tolist()
    inactive = whole[whole["churn_state"] == "inactive"]
    assert (period.inactive, period.inactive_churned) == (len(inactive), int(inactive["churned"].sum()))
    # The sample is the draw the stage made over the index of every active customer.
    size = len(active) // 3
    rows = np.sort(np.random.default_rng(11).choice(len(active), size, replace=False))
    ids, labels = period.sample(size, 11)
    assert list(ids) == list(active[rows])
    assert labels.tolist() == whole.loc[active[rows], "churned"].astype(int).tolist()
    ids, labels = period.sample(len(active) + 5, 11)  # larger than the population: everyone
    assert list(ids) == list(active)


def test_rate_cells_of_blocks_add_up_to_one_call():
    rng = np.random.default_rng(5)
    n = 300
    dims = pd.DataFrame({dim: rng.choice(["a", "b", "c"], n) for dim in churn.RATE_DIMENSIONS},
                        index=[f"C{i:04d}" for i in range(n)])
    p = pd.Series(rng.random(n), index=dims.index)
    var = pd.Series(rng.random(n) * 100, index=dims.index)
    owners = pd.DataFrame({"branch_id": rng.choice(["B1", "B2", None], n),
                           "relationship_manager": rng.choice(["rm1", None], n)}, index=dims.index)
    whole = churn.rate_cells(dims, p, var, owners)
    total = pd.DataFrame(columns=list(churn.RATE_CELL_COLUMNS))
    for start, stop in ((0, 100), (100, 101), (101, n)):
        part = dims.iloc[start:stop]
        total = churn.add_rate_cells(total, churn.rate_cell_sums(part, p, var, owners))
    pd.testing.assert_frame_equal(churn.stored_rate_cells(total), whole, check_dtype=False, check_exact=False,
                                  rtol=1e-12)
    now = churn.now_rates(dims, p)
    parts = churn.add_rates(churn.now_rates(dims.iloc[:120], p), churn.now_rates(dims.iloc[120:], p))
    for dim in churn.RATE_DIMENSIONS:
        pd.testing.assert_frame_equal(parts[dim], now[dim], check_dtype=False, check_exact=False, rtol=1e-12)


def test_the_stage_in_blocks_stores_what_one_pass_gives(blocks_store):
    """A refresh whose churn stage went through blocks of 700 customers stored the churn by
    dimension and owner, and the headline figures, of one pass over every customer."""
    from sqlalchemy import text

    from analytics.store import make_engine

    engine = make_engine(blocks_store["url"])
    try:
        run_id = blocks_store["run_id"]
        config = churn_settings()
        horizon, drop = config["horizon_months"], config["aum_drop"]
        _, hold_cut, as_of = feature_cutoffs(latest_activity_month(engine))
        # One pass: every customer's outcome, dimensions and scores at once.
        outcome = churn_outcomes(engine, hold_cut, horizon, drop)
        active_then = outcome.index[outcome["churn_state"] == "active"]
        assert len(outcome) > 3 * 700  # several blocks
        dims_then = churn._rate_dimensions(read_features(engine, run_id, hold_cut, columns=churn._rate_inputs()))
        holdout = churn.holdout_rates(dims_then.reindex(active_then), outcome.loc[active_then, "churned"])
        scores = read_scores(engine, run_id)
        active = scores.index[scores["churn_state"] == "active"]
        dims_now = churn._rate_dimensions(read_features(engine, run_id, as_of, columns=churn._rate_inputs()))
        dims_now = dims_now.reindex(active)
        probability = scores["churn_probability"].astype(float)
        rates = churn.churn_rates(dims_now, probability.loc[active], holdout)
        owners = read_frame(engine, "SELECT customer_id, branch_id, relationship_manager FROM customers"
                            ).set_index("customer_id")
        cells = churn.rate_cells(dims_now, probability, scores["value_at_risk"], owners)

        stored = read_frame(engine, text("SELECT * FROM churn_rates WHERE run_id = :r ORDER BY dimension, sort_order"),
                            {"r": run_id})[list(rates.columns)]
        pd.testing.assert_frame_equal(stored, rates, check_dtype=False, check_exact=False, rtol=1e-12)
        stored_cells = read_frame(engine, text("SELECT * FROM churn_rate_cells WHERE run_id = :r"), {"r": run_id})
        keys = ["dimension", "value", "branch_id", "relationship_manager"]
        pd.testing.assert_frame_equal(
            stored_cells[list(cells.columns)].fillna({"branch_id": "", "relationship_manager": ""})
            .sort_values(keys).reset_index(drop=True),
            cells.fillna({"branch_id": "", "relationship_manager": ""}).sort_values(keys).reset_index(drop=True),
            check_dtype=False, check_exact=False, rtol=1e-12)
        metrics = get_run_metrics(engine, run_id)
        assert metrics["churn.customers_active"] == len(active)
        assert metrics["churn.customers_closed"] == int((scores["churn_state"] == "closed").sum())
        assert metrics["churn.expected_churners"] == pytest.approx(float(probability.loc[active].sum()), rel=1e-12)
        inactive = outcome[outcome["churn_state"] == "inactive"]
        assert metrics["churn.inactive_churn_rate"] == pytest.approx(float(inactive["churned"].mean()), rel=1e-12)
    finally:
        engine.dispose()
