"""Cross-sell's next-best products a block of customers at a time (issue 16): :func:`combine` of the
blocks' :func:`recommend` results is the one call over every customer, whatever the split, with the
campaign pools, ties, up-sells and every guard in play."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.cross_sell.errors import CrossSellError
from analytics.cross_sell.recommend import combine, recommend
from analytics.schema import CREDIT_GRADES

PRODUCTS = pd.DataFrame([
    ("TD", "time_deposit", "R1", 0.008, None),
    ("W2", "wealth_management", "R2", 0.006, None),
    ("W3", "wealth_management", "R3", 0.007, None),
    ("F4", "fund", "R4", 0.014, None),
    ("K1", "credit_card", "R1", 0.080, 1),
    ("K2", "credit_card", "R1", 0.085, 2),
    ("K3", "credit_card", "R1", 0.090, 3),
], columns=["product_id", "category", "risk_level", "annual_margin", "tier_rank"])
CATEGORIES = ["credit_card", "fund", "time_deposit", "wealth_management"]
BALANCES = pd.DataFrame(1000.0, index=["mass", "affluent", "wealth", "private"], columns=CATEGORIES)


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(object).where(frame.notna(), None)


def _same(combined, whole) -> None:
    sort = ["customer_id", "rank"]
    pd.testing.assert_frame_equal(combined.offers.sort_values(sort).reset_index(drop=True),
                                  whole.offers.sort_values(sort).reset_index(drop=True))
    pd.testing.assert_frame_equal(combined.funnel, whole.funnel, check_exact=False, rtol=1e-12, atol=1e-12)
    pd.testing.assert_frame_equal(combined.opportunities, whole.opportunities, check_exact=False, rtol=1e-12,
                                  atol=1e-12)
    assert combined.no_offer == whole.no_offer
    # A block whose customers all lack an offer has a column of None alone, which pandas keeps as
    # objects rather than text: the values are what is compared (and written).
    pd.testing.assert_frame_equal(_values(combined.customers), _values(whole.customers))
    keys = ["category", "branch_id", "relationship_manager"]
    pd.testing.assert_frame_equal(combined.funnel_cells.sort_values(keys, na_position="first").reset_index(drop=True),
                                  whole.funnel_cells.sort_values(keys, na_position="first").reset_index(drop=True),
                                  check_dtype=False)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_blocks_combined_equal_one_call_over_every_customer(data):
    n = data.draw(st.integers(2, 40))
    pick = lambda values: data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))  # noqa: E731
    index = pd.Index([f"c{i:03d}" for i in range(n)], name="customer_id")
    people = pd.DataFrame({
        "risk_tolerance": pick(["C1", "C2", "C3", "C4", "C5", None]),
        "assessment_valid": pick([True, True, False]),
        "marketing_consent": pick([True, False]),
        "value_tier": pick(["mass", "affluent", "wealth", "private"]),
        "credit_grade": pick([*CREDIT_GRADES, None]),
        "credit_complaint": pick([True, False, False]),
    }, index=index)
    held = pd.DataFrame({c: pick([True, False, False]) for c in CATEGORIES}, index=index)
    # Few distinct propensities: ties in expected value, which the pools break by position.
    p = pd.DataFrame({c: pick([0.0, 0.05, 0.1, 0.3, 0.3, 0.7]) for c in CATEGORIES}, index=index)
    propensity = p.where(~held)
    tiers = pd.DataFrame({"credit_card": np.where(held["credit_card"], pick([1.0, 2.0, 3.0]), np.nan)}, index=index)
    upgrade = pd.DataFrame({"credit_card": pick([0.0, 0.1, 0.5, np.nan])}, index=index)
    owners = pd.DataFrame({"branch_id": pick(["B1", "B2", None]), "relationship_manager": pick(["R1", "R2", None])},
                          index=index)
    rising = pd.Series(pick([True, False]), index=index)
    kwargs = {"top_n": data.draw(st.integers(1, 3)), "campaign_size": data.draw(st.integers(1, 12)),
              "horizon_months": 3, "credit_min_grade": data.draw(st.sampled_from(CREDIT_GRADES)),
              "owners": owners, "next_tier_products": {"affluent": ("fund",), "wealth": ("wealth_management",)}}

    def run(rows):
        return recommend(propensity.loc[rows], people.loc[rows], PRODUCTS, BALANCES, held=held.loc[rows],
                         held_tier=tiers.loc[rows], upgrade_propensity=upgrade.loc[rows], rising=rising.loc[rows],
                         **kwargs)

    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=4))))
    blocks = [index[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    _same(combine([run(b) for b in blocks], top_n=kwargs["top_n"], campaign_size=kwargs["campaign_size"]),
          run(index))


def test_a_pool_spread_over_blocks_keeps_the_best_overall_ties_by_position():
    # Six consenting customers, one offer each outside their top 1: the pool of 2 is the best two
    # overall (c3, then c1 and c4 tie: c1 comes first), though each block holds two of them.
    index = pd.Index([f"c{i}" for i in range(6)], name="customer_id")
    people = pd.DataFrame({"risk_tolerance": "C5", "assessment_valid": True, "marketing_consent": True,
                           "value_tier": "mass", "credit_grade": "AAA"}, index=index)
    propensity = pd.DataFrame({"credit_card": 0.9, "fund": [0.1, 0.4, 0.2, 0.5, 0.4, 0.3],
                               "time_deposit": np.nan, "wealth_management": np.nan}, index=index)
    kwargs = {"top_n": 1, "campaign_size": 2, "horizon_months": 3}
    whole = recommend(propensity, people, PRODUCTS, BALANCES, **kwargs)
    parts = [recommend(propensity.iloc[a:b], people.iloc[a:b], PRODUCTS, BALANCES, **kwargs) for a, b in
             ((0, 2), (2, 4), (4, 6))]
    combined = combine(parts, top_n=1, campaign_size=2)
    funds = combined.offers[combined.offers["category"] == "fund"]
    assert list(funds["customer_id"]) == ["c1", "c3"]
    assert len(pd.concat([r.offers for r in parts]).query("category == 'fund'")) == 6  # each block's pool of 2
    pd.testing.assert_frame_equal(combined.offers, whole.offers)
    with pytest.raises(CrossSellError):
        combine([], top_n=1, campaign_size=2)


CROSS_SELL_TABLES = {  # the stage's tables, each with the columns that order its rows
    "next_best_product": ["customer_id", "rank"],
    "cross_sell_customer": ["customer_id"],
    "cross_sell_categories": ["category"],
    "cross_sell_opportunities": ["category", "product_id"],
    "cross_sell_funnel_cells": ["category", "branch_id", "relationship_manager"],
}


def test_the_stage_in_blocks_writes_what_one_block_writes(demo_store_url, tmp_path, monkeypatch):
    """The cross-sell stage goes through its customers a block at a time (the model's sample, the
    holding matrix, the balance medians, the tier shares and upgrade rates gathered block by block,
    then each block scored and recommended a part at a time): in blocks of 700 customers scored 300
    at a time (several of each, the last ones short) it writes the rows one block writes, campaign
    pools of 40 per category (smaller than a block's consenting customers) included."""
    from sqlalchemy import text

    from analytics import refresh
    from analytics.cross_sell import stage as xsell_stage
    from analytics.runs import Stage
    from analytics.store import make_engine, read_frame
    from tests.conftest import copy_store

    monkeypatch.setenv("CROSS_SELL_CAMPAIGN_SIZE", "40")
    engine = make_engine(copy_store(demo_store_url, tmp_path / "store.db"))
    stages = {s.name: s for s in refresh.STAGES}
    monkeypatch.setattr(refresh, "STAGES", [stages["customer_features"], Stage("cross_sell", stages["cross_sell"].run)])
    try:
        runs = []
        for block_rows, score_rows in ((10**9, 10**9), (700, 300)):
            monkeypatch.setattr(xsell_stage, "BLOCK_ROWS", block_rows)
            monkeypatch.setattr(xsell_stage, "SCORE_READ_ROWS", score_rows)
            refresh.run_refresh(engine)
            runs.append(read_frame(engine, "SELECT max(run_id) AS r FROM refresh_runs")["r"].iloc[0])
        customers = read_frame(engine, text("SELECT count(*) AS n FROM cross_sell_customer WHERE run_id = :r"),
                               {"r": int(runs[1])})["n"].iloc[0]
        assert customers > 3 * 700
        pools = read_frame(engine, text("SELECT campaign_pool FROM cross_sell_categories WHERE run_id = :r"),
                           {"r": int(runs[1])})["campaign_pool"]
        kept = read_frame(engine, text("SELECT category, count(*) AS n FROM next_best_product WHERE run_id = :r "
                                       "AND marketing_consent AND rank > 1 GROUP BY category"), {"r": int(runs[1])})
        assert (pools > 3 * 40).sum() >= 3 and len(kept) > 0  # pools that bind in every block
        for table, order in CROSS_SELL_TABLES.items():
            one, blocks = (read_frame(engine, text(f"SELECT * FROM {table} WHERE run_id = :r"), {"r": int(r)})
                           .drop(columns="run_id").sort_values(order, na_position="first").reset_index(drop=True)
                           for r in runs)
            assert len(one) > 0, table
            pd.testing.assert_frame_equal(blocks, one, check_exact=False, rtol=1e-12, atol=1e-9, obj=table)
        metrics = read_frame(engine, text("SELECT run_id, name, value, text_value FROM run_metrics WHERE run_id IN "
                                          "(:a, :b) AND name LIKE 'cross_sell.%'"), {"a": int(runs[0]), "b": int(runs[1])})
        by_run = [metrics[metrics["run_id"] == r].drop(columns="run_id").set_index("name").sort_index() for r in runs]
        pd.testing.assert_frame_equal(by_run[1], by_run[0], check_exact=False, rtol=1e-12)
    finally:
        engine.dispose()



@settings(max_examples=60, deadline=None)
@given(st.data())
def test_medians_shares_and_upgrade_rates_of_blocks_equal_one_call(data):
    """What the stage gathers block by block before any offer (the balance medians, each tier's
    holder rates, the tier-upgrade counts) equals the one call over every customer, whatever the split."""
    from analytics.cross_sell.recommend import (
        ExpectedBalances,
        TierShares,
        expected_balances,
        tier_categories,
    )
    from analytics.cross_sell.stage import combine_upgrade_rates, upgrade_propensity, upgrade_rates

    n = data.draw(st.integers(1, 60))
    ids = pd.Index([f"c{i:03d}" for i in range(n)], name="customer_id")
    tiers = pd.Series(data.draw(st.lists(st.sampled_from(["mass", "affluent", "wealth", "private"]),
                                         min_size=n, max_size=n)), index=ids)
    held = pd.DataFrame(np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=3, max_size=3),
                                                    min_size=n, max_size=n))), index=ids, columns=CATEGORIES[:3])
    pairs = held.stack()
    pairs = pairs[pairs].index.to_frame(index=False, name=["customer_id", "category"])
    balances = pairs.assign(balance=data.draw(st.lists(st.integers(0, 5000), min_size=len(pairs),
                                                       max_size=len(pairs))))
    balances["balance"] = balances["balance"].astype(float)
    then = pd.DataFrame({"credit_card": data.draw(st.lists(st.sampled_from([np.nan, 1.0, 2.0]), min_size=n,
                                                           max_size=n))}, index=ids)
    opened = pd.DataFrame({"credit_card": data.draw(st.lists(st.sampled_from([np.nan, 2.0, 3.0]), min_size=n,
                                                             max_size=n))}, index=ids)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    spans = list(zip([0, *cuts], [*cuts, n], strict=True))
    medians, shares, rates = ExpectedBalances(CATEGORIES), TierShares(CATEGORIES[:3]), []
    for a, b in spans:
        part = ids[a:b]
        medians.add(balances[balances["customer_id"].isin(part)], tiers.loc[part])
        shares.add(held.loc[part], tiers.loc[part])
        rates.append(upgrade_rates(then.loc[part].dropna(how="all"), opened.loc[part].dropna(how="all"),
                                   tiers.loc[part]))
    pd.testing.assert_frame_equal(medians.table(), expected_balances(balances, tiers, CATEGORIES))
    assert shares.categories() == tier_categories(held, tiers)
    whole = upgrade_rates(then.dropna(how="all"), opened.dropna(how="all"), tiers)
    pd.testing.assert_frame_equal(upgrade_propensity(then, tiers, combine_upgrade_rates(rates)),
                                  upgrade_propensity(then, tiers, whole))
    keys = ["category", "tier_rank", "value_tier"]
    got = combine_upgrade_rates(rates).sort_values(keys, na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(_values(got), _values(whole.sort_values(keys, na_position="first")
                                                        .reset_index(drop=True)), check_dtype=False)
