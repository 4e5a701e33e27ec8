"""A scoped user's aggregates are their scope's: churn headline and rates, cross-sell headline and
next-best offers, cohort retention. For a bank-wide viewer each equals the run's stored figure, and
the figures of the branches, one scope each, add up to the bank's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics import churn, cross_sell, lifecycle, segmentation
from analytics.access import Scope, Viewer
from analytics.churn.labels import RATE_DIMENSIONS
from analytics.runs import current_run_id, get_run_metrics
from analytics.store import read_frame

BANK = Viewer("bank", ("risk",))


def _branches(engine) -> list[str]:
    return read_frame(engine, "SELECT DISTINCT branch_id FROM customers WHERE branch_id IS NOT NULL "
                              "ORDER BY branch_id")["branch_id"].tolist()


def _by_branch(branch: str) -> Viewer:
    return Viewer("scoped", ("risk",), Scope(branches={branch}))


def test_churn_headline_of_the_bank_is_the_runs_and_branches_add_up(demo_engine):
    run_id = current_run_id(demo_engine)
    m = churn.read_churn_metrics(demo_engine, run_id)
    bank = churn.scope_churn(demo_engine, run_id, viewer=BANK)
    assert bank["customers_active"] == m["churn.customers_active"] > 0
    assert bank["expected_churners"] == pytest.approx(m["churn.expected_churners"])
    assert bank["value_at_risk_total"] == pytest.approx(m["churn.value_at_risk_total"])
    parts = [churn.scope_churn(demo_engine, run_id, viewer=_by_branch(b)) for b in _branches(demo_engine)]
    assert sum(p["customers_active"] for p in parts) == bank["customers_active"]
    assert sum(p["expected_churners"] for p in parts) == pytest.approx(bank["expected_churners"])
    assert all(0 < p["customers_active"] < bank["customers_active"] for p in parts)


def test_churn_headline_of_a_branch_is_counted_from_its_customers_scores(demo_engine):
    run_id = current_run_id(demo_engine)
    branch = _branches(demo_engine)[0]
    scores = read_frame(demo_engine, "SELECT s.churn_probability, s.value_at_risk, s.churn_state, c.branch_id "
                                     "FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id "
                                     "WHERE s.run_id = :r", {"r": run_id})
    mine = scores[(scores["branch_id"] == branch) & (scores["churn_state"] == "active")]
    got = churn.scope_churn(demo_engine, run_id, viewer=_by_branch(branch))
    assert got["customers_active"] == len(mine)
    assert got["expected_churners"] == pytest.approx(mine["churn_probability"].sum())
    assert got["value_at_risk_total"] == pytest.approx(mine["value_at_risk"].sum())
    empty = churn.scope_churn(demo_engine, run_id, viewer=Viewer("nobody", ("risk",), Scope()))
    assert empty == {"customers_active": 0.0, "expected_churners": 0.0, "value_at_risk_total": 0.0}


@pytest.mark.parametrize("dimension", RATE_DIMENSIONS)
def test_churn_rates_of_the_bank_equal_the_stored_ones(demo_engine, dimension):
    run_id = current_run_id(demo_engine)
    stored = churn.read_churn_rates(demo_engine, dimension, run_id)
    stored = stored[stored["customers"] > 0].set_index("value")
    live = churn.scope_churn_rates(demo_engine, dimension, run_id, viewer=BANK).set_index("value")
    assert sorted(live.index) == sorted(stored.index)
    assert live["customers"].to_dict() == pytest.approx(stored["customers"].to_dict())
    assert live["mean_probability"].to_dict() == pytest.approx(stored["mean_probability"].to_dict())
    assert live["expected_churners"].to_dict() == pytest.approx(stored["expected_churners"].to_dict())


def test_churn_rates_of_a_branch_scope_cover_its_customers_only(demo_engine):
    run_id = current_run_id(demo_engine)
    branches = _branches(demo_engine)
    live = churn.scope_churn_rates(demo_engine, "branch_id", run_id, viewer=_by_branch(branches[1]))
    assert live["value"].tolist() == [branches[1]]
    by_tier = [churn.scope_churn_rates(demo_engine, "value_tier", run_id, viewer=_by_branch(b)) for b in branches]
    total = pd.concat(by_tier).groupby("value")["customers"].sum()
    bank = churn.scope_churn_rates(demo_engine, "value_tier", run_id, viewer=BANK).set_index("value")["customers"]
    assert total.to_dict() == bank.to_dict()
    with pytest.raises(ValueError, match="dimension must be one of"):
        churn.scope_churn_rates(demo_engine, "name", run_id, viewer=BANK)


def test_cross_sell_headline_of_the_bank_is_the_runs_and_branches_add_up(demo_engine):
    run_id = current_run_id(demo_engine)
    m = get_run_metrics(demo_engine, run_id)
    bank, by_product = cross_sell.scope_offers(demo_engine, run_id, viewer=BANK)
    assert bank["customers_scored"] == m["cross_sell.customers_scored"] > 0
    assert bank["customers_with_offer"] == m["cross_sell.customers_with_offer"] > 0
    assert bank["next_best_expected_value_total"] == pytest.approx(m["cross_sell.next_best_expected_value_total"])
    assert by_product["next_best_customers"].sum() == bank["customers_with_offer"]
    assert by_product["expected_value_total"].sum() == pytest.approx(bank["next_best_expected_value_total"])
    # The stored opportunities count each product's next-best customers too: the same numbers.
    stored = cross_sell.read_opportunities(demo_engine, run_id).groupby("product_id")["next_best_customers"].sum()
    assert by_product.set_index("product_id")["next_best_customers"].to_dict() == stored[stored > 0].to_dict()
    parts = [cross_sell.scope_offers(demo_engine, run_id, viewer=_by_branch(b)) for b in _branches(demo_engine)]
    assert sum(h["customers_scored"] for h, _ in parts) == bank["customers_scored"]
    assert sum(h["next_best_expected_value_total"] for h, _ in parts) == pytest.approx(
        bank["next_best_expected_value_total"])
    assert sum(int(f["next_best_customers"].sum()) for _, f in parts) == bank["customers_with_offer"]


def test_cohorts_of_the_bank_equal_the_stored_ones_and_a_branch_counts_its_own(demo_engine):
    run_id = current_run_id(demo_engine)
    as_of = get_run_metrics(demo_engine, run_id)["as_of_month"]
    stored = segmentation.read_cohort_retention(demo_engine, run_id)
    live = lifecycle.load_cohort_retention(demo_engine, as_of, viewer=BANK)
    keys = ["cohort_month", "months_since_open"]
    merged = stored.merge(live, on=keys, suffixes=("_stored", "_live"))
    assert len(merged) == len(stored) == len(live) > 0
    assert np.allclose(merged["retention_stored"], merged["retention_live"], equal_nan=True)
    sizes = [lifecycle.load_cohort_retention(demo_engine, as_of, viewer=_by_branch(b))
             .drop_duplicates("cohort_month").set_index("cohort_month")["cohort_size"] for b in _branches(demo_engine)]
    total = pd.concat(sizes).groupby(level=0).sum()
    bank = live.drop_duplicates("cohort_month").set_index("cohort_month")["cohort_size"]
    assert total.reindex(bank.index).fillna(0).to_dict() == bank.to_dict()
    assert lifecycle.load_cohort_retention(demo_engine, as_of, viewer=Viewer("n", ("risk",), Scope())).empty


def test_a_portfolio_scope_counts_its_managers_customers(demo_engine):
    run_id = current_run_id(demo_engine)
    scores = read_frame(demo_engine, "SELECT s.churn_probability, s.value_at_risk, c.relationship_manager "
                                     "FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id "
                                     "WHERE s.run_id = :r AND s.churn_state = 'active'", {"r": run_id})
    manager = scores["relationship_manager"].dropna().value_counts().index[0]
    mine = scores[scores["relationship_manager"] == manager]
    viewer = Viewer("rm", ("relationship_manager",), Scope(portfolios={manager}))
    got = churn.scope_churn(demo_engine, run_id, viewer=viewer)
    assert got["customers_active"] == len(mine) > 0
    assert got["value_at_risk_total"] == pytest.approx(mine["value_at_risk"].sum())
    rates = churn.scope_churn_rates(demo_engine, "rfm_segment", run_id, viewer=viewer)
    assert rates["customers"].sum() == len(mine)
    assert (rates["mean_probability"] * rates["customers"]).sum() == pytest.approx(mine["churn_probability"].sum())


def test_rate_cells_count_each_owner_by_hand():
    from analytics.churn.stage import rate_cells

    ids = pd.Index(["a", "b", "c"])
    dims = pd.DataFrame({"branch_id": ["B1", "B1", "B2"], "value_tier": ["high", "high", "low"],
                         "lifecycle_stage": ["new", "mature", "new"], "rfm_segment": ["x", "x", "y"]}, index=ids)
    owners = pd.DataFrame({"branch_id": ["B1", "B1", "B2"], "relationship_manager": ["r1", None, "r2"]}, index=ids)
    cells = rate_cells(dims, pd.Series([0.1, 0.2, 0.4], index=ids), pd.Series([10.0, 20.0, 40.0], index=ids), owners)
    tier = cells[cells["dimension"] == "value_tier"].sort_values(["value", "relationship_manager"], na_position="last")
    assert tier[["value", "branch_id", "customers"]].values.tolist() == [["high", "B1", 1], ["high", "B1", 1],
                                                                         ["low", "B2", 1]]
    assert tier["relationship_manager"].iloc[0] == "r1" and pd.isna(tier["relationship_manager"].iloc[1])
    assert tier["expected_churners"].tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert cells.groupby("dimension")["value_at_risk"].sum().tolist() == pytest.approx([70.0] * 4)


def test_dq_breakdown_shows_a_scope_its_branches_and_an_executive_no_small_cell(demo_engine, monkeypatch):
    from analytics import quality

    run_id = current_run_id(demo_engine)
    branches = _branches(demo_engine)
    sizes = read_frame(demo_engine, "SELECT branch_id, COUNT(*) AS n FROM customers GROUP BY branch_id"
                       ).set_index("branch_id")["n"]
    bank = quality.breakdown_for(demo_engine, run_id, scope="branch", viewer=BANK)
    assert set(bank["scope_value"]) == set(branches)
    # Each branch's customer count is its customers (a customer rule checks every customer row).
    assert bank.drop_duplicates("scope_value").set_index("scope_value")["customers"].to_dict() == sizes.to_dict()
    mine = quality.breakdown_for(demo_engine, run_id, scope="branch", viewer=_by_branch(branches[0]))
    assert set(mine["scope_value"]) == {branches[0]}
    assert quality.breakdown_for(demo_engine, run_id, scope="channel", viewer=_by_branch(branches[0])).empty
    assert not quality.breakdown_for(demo_engine, run_id, scope="channel", viewer=BANK).empty
    # An executive: with the threshold between the branch sizes, the small branches are left out.
    k = int(sorted(sizes)[len(sizes) // 2])
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", str(k))
    shown = quality.breakdown_for(demo_engine, run_id, scope="branch", viewer=Viewer("e", ("executive",)))
    assert set(shown["scope_value"]) == {b for b, n in sizes.items() if n >= k}
    assert (shown["customers"] >= k).all() and 0 < len(set(shown["scope_value"])) < len(sizes)


@pytest.mark.parametrize("k, expected", [
    (0, {"customers": 20, "mismatches": 3, "expired": 0, "balance_drops": 7}),
    (5, {"customers": 20, "mismatches": None, "expired": 0, "balance_drops": 7}),
    (21, {"customers": None, "mismatches": None, "expired": None, "balance_drops": None}),
])
def test_risk_headline_hides_counts_of_too_few_customers(k, expected):
    from analytics import charts_risk

    summary = pd.DataFrame({"customers": [12, 8], "suitability_mismatch_customers": [1, 2],
                            "assessments_expired": [0, 0], "balance_drops": [4, 3]})
    assert charts_risk.headline(summary, k) == expected


def test_cross_sell_funnel_cells_add_up_to_the_funnel_and_a_scope_counts_its_own(demo_engine):
    from analytics.runs import read_run_table

    run_id = current_run_id(demo_engine)
    funnel = cross_sell.read_categories(demo_engine, run_id).set_index("category")
    cells = read_run_table(demo_engine, "cross_sell_funnel_cells", run_id, "category")
    columns = ["non_holders", "excluded_expired_assessment", "excluded_suitability", "eligible", "excluded_no_consent"]
    summed = cells.groupby("category")[columns].sum()
    assert summed.to_dict() == funnel.loc[summed.index, columns].astype(int).to_dict()
    assert (funnel.loc[summed.index, "excluded_no_consent"] > 0).any()
    # A branch's stored funnel is counted from its own customers: the scoped exclusions of every
    # branch add up to at least the bank's funnel counts (the stored offers' re-checks come on top).
    category = summed["excluded_no_consent"].idxmax()
    bank_list, bank_out = cross_sell.campaign_list(demo_engine, run_id, category, viewer=BANK, limit=100_000)
    parts = [cross_sell.campaign_list(demo_engine, run_id, category, viewer=_by_branch(b), limit=100_000)
             for b in _branches(demo_engine)]
    for reason, column in (("consent", "excluded_no_consent"), ("suitability", "excluded_suitability"),
                           ("expired_assessment", "excluded_expired_assessment")):
        assert sum(out[reason] for _, out in parts) >= int(funnel.loc[category, column])
    mine = parts[0][1]
    branch_cells = cells[(cells["category"] == category) & (cells["branch_id"] == _branches(demo_engine)[0])]
    assert mine["consent"] >= int(branch_cells["excluded_no_consent"].sum()) > 0
    assert mine["consent"] < bank_out["consent"]
