"""The ``risk`` stage flags its customers a block at a time (issue 16): the balance-drop thresholds
from every customer's AUM of the two months, then each block's flags and mismatched holdings,
written as they are made, and the branch sums added up. What it stores is what one pass over
every customer gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics import risk, settings
from analytics.features import month_end
from analytics.refresh import latest_activity_month
from analytics.runs import get_run_metrics
from analytics.segmentation import value_tier_thresholds
from analytics.store import read_frame


def test_thresholds_then_flags_are_balance_drops():
    rng = np.random.default_rng(2)
    index = pd.Index([f"C{i:04d}" for i in range(500)])
    before = pd.Series(rng.lognormal(11, 1.5, 500), index=index).where(rng.random(500) > 0.1)
    # Most balances move a little; one in twenty falls by half or more.
    factor = np.where(rng.random(500) < 0.05, rng.uniform(0.0, 0.5, 500), rng.normal(1.0, 0.03, 500))
    now = pd.Series(before.fillna(0).to_numpy() * factor, index=index)
    whole, tiers = risk.balance_drops(before, now, z=2.0, min_pct=0.3, min_aum=10_000.0)
    b, n = before.fillna(0).to_numpy(), now.to_numpy()
    again = risk.drop_thresholds(b, n, z=2.0, min_aum=10_000.0)
    pd.testing.assert_frame_equal(again, tiers)
    parts = [risk.flag_drops(b[a:c], n[a:c], again, index=index[a:c], min_pct=0.3, min_aum=10_000.0)
             for a, c in ((0, 170), (170, 171), (171, 500))]
    got = pd.concat(parts)
    pd.testing.assert_frame_equal(got.drop(columns="reason"), whole.drop(columns="reason"))

    def text(values):
        return [v if isinstance(v, str) else None for v in values]

    assert text(got["reason"]) == text(whole["reason"])
    assert whole["balance_drop"].any()


def _one_pass(engine, as_of_month):
    """The stage's rows as one pass over every customer makes them."""
    as_of = month_end(as_of_month)
    thresholds = value_tier_thresholds()
    people = risk._customers(engine, as_of)
    aum = risk._monthly_aum(engine, as_of_month).reindex(people.index)
    assets = risk._asset_balances(engine, as_of).reindex(people.index).fillna(0.0)
    mismatches = risk.suitability_mismatches(risk.risky_holdings(engine, as_of), people)
    expired, missing = risk.assessment_status(people["risk_tolerance"], people["risk_assessed_at"], as_of,
                                              int(settings.get("RISK_ASSESSMENT_VALID_DAYS")))
    drops, _ = risk.balance_drops(aum["aum_before"], aum["aum_now"].fillna(0.0), thresholds=thresholds,
                                  **risk.drop_settings())
    flags = risk.customer_flags(people, aum["aum_now"].fillna(0.0).to_numpy(), mismatches, expired, missing, drops,
                                thresholds)
    by_branch = risk.branch_sums(flags, expired, missing, assets)
    summary = risk.suitability_summary(mismatches, people.index[assets["r4_r5_holdings"].to_numpy() > 0])
    return flags, mismatches, by_branch, summary, drops


def test_the_stage_in_blocks_stores_what_one_pass_gives(blocks_store):
    """A refresh whose risk stage went through blocks of 700 customers stored the one-pass flags,
    mismatched holdings, branch sums and headline figures."""
    from sqlalchemy import text

    from analytics.store import make_engine

    engine = make_engine(blocks_store["url"])
    try:
        run_id = blocks_store["run_id"]
        flags, mismatches, by_branch, summary, drops = _one_pass(engine, latest_activity_month(engine))
        assert len(flags) > 3 * 700 and len(mismatches) and drops["balance_drop"].any()
        stored = read_frame(engine, text("SELECT * FROM risk_flags WHERE run_id = :r ORDER BY customer_id"),
                            {"r": run_id})[list(flags.columns)]
        pd.testing.assert_frame_equal(stored, flags.reset_index(drop=True), check_dtype=False)
        stored = read_frame(engine, text("SELECT * FROM risk_mismatches WHERE run_id = :r ORDER BY holding_id"),
                            {"r": run_id})
        expected = mismatches.sort_values("holding_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(stored[list(stored.columns.drop("run_id"))],
                                      expected[list(stored.columns.drop("run_id"))], check_dtype=False)
        stored = read_frame(engine, text("SELECT * FROM risk_branch_summary WHERE run_id = :r ORDER BY branch_id"),
                            {"r": run_id})
        pd.testing.assert_frame_equal(stored[list(by_branch.columns)], by_branch, check_dtype=False,
                                      check_exact=False, rtol=1e-12)
        metrics = get_run_metrics(engine, run_id)
        assert metrics["risk.customers"] == len(flags)
        assert metrics["risk.suitability_mismatch_customers"] == summary["mismatch_customers"]
        assert metrics["risk.r4_r5_mismatch_rate"] == pytest.approx(summary["r4_r5_mismatch_rate"], rel=1e-12)
        assert metrics["risk.balance_drops"] == int(drops["balance_drop"].sum())
        assert metrics["risk.mismatch_balance"] == pytest.approx(float(mismatches["balance"].sum()), rel=1e-12)
    finally:
        engine.dispose()
