"""Credit-aware next-best product: the credit guards, the expected value over the horizon, the
first-offer mix, and the demo store's offers against those rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import access
from analytics.cross_sell import CREDIT_CATEGORIES, credit_grade_ok, first_offer_mix, recommend
from analytics.runs import current_run_id
from analytics.schema import CREDIT_GRADES
from analytics.store import read_frame

PRODUCTS = pd.DataFrame([
    ("D1", "deposit", "R1", 0.010),
    ("F3", "fund", "R3", 0.012),
    ("M1", "mortgage", "R1", 0.012),
    ("L1", "consumer_loan", "R1", 0.040),
    ("K1", "credit_card", "R1", 0.080),
], columns=["product_id", "category", "risk_level", "annual_margin"])
CATEGORIES = ["consumer_loan", "credit_card", "deposit", "fund", "mortgage"]
BALANCES = pd.DataFrame(1000.0, index=["mass", "affluent", "wealth", "private"], columns=CATEGORIES)


def _people(rows):
    return pd.DataFrame(rows, columns=["customer_id", "risk_tolerance", "assessment_valid", "marketing_consent",
                                       "value_tier", "credit_grade", "credit_complaint"]).set_index("customer_id")


@pytest.mark.parametrize("grade, minimum, ok", [
    ("AAA", "BBB", True), ("A", "BBB", True), ("BBB", "BBB", True), ("BB", "BBB", False), ("CCC", "BBB", False),
    (None, "BBB", False), ("ZZ", "BBB", False), ("CCC", "CCC", True), ("AA", "AAA", False), ("AAA", "AAA", True),
])
def test_credit_grade_at_or_above_the_minimum(grade, minimum, ok):
    assert credit_grade_ok([grade], minimum).tolist() == [ok]


def test_expected_value_is_the_margin_over_the_horizon_by_hand():
    people = _people([("a", "C3", True, True, "mass", "AA", False)])
    propensity = pd.DataFrame([[0.2, np.nan, np.nan, 0.5, np.nan]], index=people.index, columns=CATEGORIES)
    result = recommend(propensity, people, PRODUCTS, BALANCES, top_n=5, horizon_months=3)
    ev = result.offers.set_index("category")["expected_value"]
    # 0.2 x 4 % a year x 1,000 CNY x 3/12 year = 2.0; 0.5 x 1.2 % x 1,000 x 3/12 = 1.5
    assert ev["consumer_loan"] == pytest.approx(2.0)
    assert ev["fund"] == pytest.approx(1.5)
    assert result.customers.loc["a", "next_best_category"] == "consumer_loan"
    year = recommend(propensity, people, PRODUCTS, BALANCES, top_n=5, horizon_months=12).offers
    assert year.set_index("category")["expected_value"]["consumer_loan"] == pytest.approx(8.0)


def test_credit_guards_on_hand_built_customers():
    people = _people([
        ("good", "C3", True, True, "mass", "A", False),
        ("edge", "C3", True, True, "mass", "BBB", False),
        ("weak", "C3", True, True, "mass", "BB", False),
        ("ungraded", "C3", True, True, "mass", None, False),
        ("complained", "C3", True, False, "mass", "AAA", True),
        ("weak_and_complained", "C3", True, True, "mass", "CCC", True),
        ("expired", "C3", False, True, "mass", "CCC", False),
    ])
    propensity = pd.DataFrame(0.3, index=people.index, columns=CATEGORIES)
    propensity["deposit"] = np.nan  # everyone holds a deposit
    result = recommend(propensity, people, PRODUCTS, BALANCES, top_n=5, horizon_months=3, credit_min_grade="BBB")
    offered = result.offers.groupby("customer_id")["category"].apply(set).to_dict()
    assert offered["good"] == offered["edge"] == {"consumer_loan", "credit_card", "fund", "mortgage"}
    for cid in ("weak", "ungraded", "complained", "weak_and_complained"):
        assert offered[cid] == {"fund"}, cid
    assert "expired" not in offered
    funnel = result.funnel.set_index("category")
    for category in CREDIT_CATEGORIES:
        row = funnel.loc[category]
        assert row["excluded_expired_assessment"] == 1
        assert row["excluded_credit_grade"] == 3  # weak, ungraded, weak_and_complained (grade comes first)
        assert row["excluded_credit_complaint"] == 1  # complained
        assert row["eligible"] == 2 and row["excluded_no_consent"] == 0
    assert funnel.loc["fund", "excluded_credit_grade"] == 0 and funnel.loc["fund", "eligible"] == 6
    assert funnel.loc["fund", "excluded_no_consent"] == 1

    # Without the fund (unsuitable at C1) the credit guards alone decide the reason for no offer.
    low = people.assign(risk_tolerance="C1")
    result = recommend(propensity, low, PRODUCTS, BALANCES, top_n=5)
    reasons = result.customers["no_offer_reason"]
    assert pd.isna(reasons["good"]) and reasons["weak"] == "credit_grade" and reasons["ungraded"] == "credit_grade"
    assert reasons["complained"] == "credit_complaint" and reasons["expired"] == "expired_assessment"
    assert result.no_offer["credit_grade"] == 3 and result.no_offer["credit_complaint"] == 1


def test_the_minimum_grade_is_a_parameter_and_is_checked():
    people = _people([("bb", "C3", True, True, "mass", "BB", False)])
    propensity = pd.DataFrame(0.3, index=people.index, columns=CATEGORIES)
    assert "mortgage" not in set(recommend(propensity, people, PRODUCTS, BALANCES, top_n=5).offers["category"])
    loose = recommend(propensity, people, PRODUCTS, BALANCES, credit_min_grade="BB", top_n=5)
    assert "mortgage" in set(loose.offers["category"])
    with pytest.raises(Exception, match="credit_min_grade"):
        recommend(propensity, people, PRODUCTS, BALANCES, credit_min_grade="Z")


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_property_no_rule_is_ever_violated(data):
    n = data.draw(st.integers(1, 30))
    pick = lambda values: data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))  # noqa: E731
    people = pd.DataFrame({
        "risk_tolerance": pick(["C1", "C2", "C3", "C4", "C5", None]),
        "assessment_valid": pick([True, False]),
        "marketing_consent": pick([True, False]),
        "value_tier": pick(["mass", "affluent", "wealth", "private"]),
        "credit_grade": pick([*CREDIT_GRADES, None]),
        "credit_complaint": pick([True, False]),
    }, index=[f"c{i}" for i in range(n)])
    levels = data.draw(st.lists(st.sampled_from(["R1", "R2", "R3", "R4", "R5"]), min_size=5, max_size=5))
    products = PRODUCTS.assign(risk_level=levels)
    cells = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=n * 5, max_size=n * 5))
    propensity = pd.DataFrame(np.array([np.nan if v is None else v for v in cells]).reshape(n, 5),
                              index=people.index, columns=CATEGORIES)
    minimum = data.draw(st.sampled_from(CREDIT_GRADES))
    result = recommend(propensity, people, products, BALANCES, top_n=data.draw(st.integers(1, 5)),
                       campaign_size=data.draw(st.integers(1, 40)), horizon_months=3, credit_min_grade=minimum)
    offers = result.offers.merge(products, on=["product_id", "category"]).merge(
        people, left_on="customer_id", right_index=True, suffixes=("", "_c"))
    assert len(offers) == len(result.offers)
    assert (offers["risk_level"].str[1].astype(int) <= offers["risk_tolerance"].str[1].astype(int)).all()
    assert offers["assessment_valid"].all()
    assert (offers["marketing_consent"] == offers["marketing_consent_c"]).all()
    credit = offers[offers["category"].isin(CREDIT_CATEGORIES)]
    assert credit_grade_ok(credit["credit_grade"], minimum).all()
    assert not credit["credit_complaint"].any()
    funnel = result.funnel.set_index("category")
    parts = funnel[["excluded_expired_assessment", "excluded_suitability", "excluded_credit_grade",
                    "excluded_credit_complaint", "eligible"]].sum(axis=1)
    assert (parts == funnel["non_holders"]).all()
    assert (funnel.loc[["deposit", "fund"], ["excluded_credit_grade", "excluded_credit_complaint"]] == 0).all().all()
    reasons = result.customers["no_offer_reason"]
    has = result.customers["next_best_category"].notna()
    assert (reasons.isna() == has).all()


# -------------------------------------------------------------------------------------------------
# On the session's demo store


def test_demo_no_credit_offer_below_the_minimum_grade(demo_engine):
    run = current_run_id(demo_engine)
    offers = read_frame(demo_engine, """
        SELECT n.customer_id, n.category, c.credit_grade FROM next_best_product n
        JOIN customers c ON c.customer_id = n.customer_id WHERE n.run_id = :r""", {"r": run})
    credit = offers[offers["category"].isin(CREDIT_CATEGORIES)]
    assert len(credit) > 0
    assert credit_grade_ok(credit["credit_grade"], "BBB").all()
    first = read_frame(demo_engine, """
        SELECT x.next_best_category, c.credit_grade FROM cross_sell_customer x
        JOIN customers c ON c.customer_id = x.customer_id
        WHERE x.run_id = :r AND x.next_best_category IN ('mortgage', 'consumer_loan', 'credit_card')""", {"r": run})
    assert credit_grade_ok(first["credit_grade"], "BBB").all()
    funnel = read_frame(demo_engine, "SELECT * FROM cross_sell_categories WHERE run_id = :r", {"r": run})
    funnel = funnel.set_index("category")
    assert (funnel.loc[list(CREDIT_CATEGORIES), "excluded_credit_grade"] > 0).all()
    assert (funnel.drop(index=list(CREDIT_CATEGORIES))["excluded_credit_grade"] == 0).all()
    parts = funnel[["excluded_expired_assessment", "excluded_suitability", "excluded_credit_grade",
                    "excluded_credit_complaint", "eligible"]].sum(axis=1)
    assert (parts == funnel["non_holders"]).all()


def test_demo_first_offer_mix_counts_the_next_best_products(demo_engine, monkeypatch):
    run = current_run_id(demo_engine)
    truth = read_frame(demo_engine, "SELECT next_best_category AS category FROM cross_sell_customer "
                                    "WHERE run_id = :r AND next_best_category IS NOT NULL", {"r": run})
    counts = truth["category"].value_counts()
    mix = first_offer_mix(demo_engine, run, viewer=access.Viewer("m", ("marketing",)))
    assert mix.set_index("category")["customers"].to_dict() == counts.to_dict()
    assert mix["share"].sum() == pytest.approx(1.0)
    assert mix["customers"].is_monotonic_decreasing and not mix["customers_suppressed"].any()
    assert len(mix) >= 3  # no single product takes every first offer

    # An aggregate-only role: a category under the threshold is hidden, with its share and sum.
    k = int(counts.iloc[-1]) + 1
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", str(k))
    hidden = first_offer_mix(demo_engine, run, viewer=access.Viewer("e", ("executive",))).set_index("category")
    small = counts[counts < k].index
    assert hidden.loc[small, "customers_suppressed"].all()
    assert hidden.loc[small, ["customers", "share", "expected_value_total"]].isna().all().all()
    shown = hidden[~hidden["customers_suppressed"]]
    assert (shown["customers"] >= k).all()
    assert shown["customers"].astype(int).to_dict() == counts[shown.index].to_dict()


# -------------------------------------------------------------------------------------------------
# Campaign planning: the same credit rules, counted with the other exclusions


def test_campaign_plan_counts_credit_exclusions_by_hand(sqlite_engine):
    from datetime import datetime

    from sqlalchemy import update

    from analytics import campaigns
    from analytics.campaigns import Definition
    from analytics.refresh import run_refresh
    from analytics.schema import contacts, customers, products
    from analytics.store import bulk_insert
    from tests.analytics import campaign_rows

    engine = sqlite_engine
    campaign_rows.fill(engine)
    bulk_insert(engine, products, pd.DataFrame([{"product_id": "P03", "name": "标准信用卡", "category": "credit_card",
                                                 "risk_level": "R1", "annual_margin": 0.08,
                                                 "balance_side": "liability"}]))
    with engine.begin() as conn:
        for cid, grade in {"C01": "A", "C06": "BB", "C10": "AA"}.items():
            conn.execute(update(customers).where(customers.c.customer_id == cid).values(credit_grade=grade))
    # C10: a resolved complaint about its card two months ago still blocks a credit offer for six months.
    bulk_insert(engine, contacts, pd.DataFrame([{
        "contact_id": 50, "customer_id": "C10", "contacted_at": datetime(2026, 8, 15, 10), "channel": "phone",
        "kind": "complaint", "category": "credit_card", "resolved": True}]))
    run_refresh(engine)
    viewer = access.Viewer("m", ("marketing",), purpose="marketing")
    planned = campaigns.plan(engine, Definition("Cards", product="credit_card"), viewer=viewer)
    # C02..C05, C11 as before; C07 and C09 have no grade, C06 is graded BB; C08's assessment expired.
    assert planned.excluded == {"closed_dormant": 2, "consent": 1, "complaint": 1, "cooldown": 1,
                                "holds_category": 0, "expired_assessment": 1, "suitability": 0,
                                "credit_grade": 3, "credit_complaint": 1}
    assert sorted(planned.eligible["customer_id"]) == ["C01"]
    funds = campaigns.plan(engine, Definition("Funds", product="fund"), viewer=viewer)
    assert funds.excluded["credit_grade"] == funds.excluded["credit_complaint"] == 0
    assert sorted(funds.eligible["customer_id"]) == campaign_rows.ELIGIBLE
    # The stage agrees: C01 is the only customer the card is offered to.
    offered = read_frame(engine, "SELECT customer_id FROM next_best_product WHERE category = 'credit_card'")
    assert offered["customer_id"].tolist() == ["C01"]


# -------------------------------------------------------------------------------------------------
# Calibration against the demo's truth (analytics.demo.truth)


@pytest.fixture(scope="module")
def demo_truth():
    from analytics.demo.truth import acquisition_truth
    from tests.conftest import DEMO_CUSTOMERS, DEMO_MONTHS

    # the session demo store's arguments (tests/conftest.py: seed 7)
    return acquisition_truth(DEMO_CUSTOMERS, months=DEMO_MONTHS, seed=7, horizon_months=3)


def test_demo_truth_replays_the_stored_customers(demo_engine, demo_truth):
    people = read_frame(demo_engine, "SELECT customer_id, birth_date FROM customers").set_index("customer_id")
    assert set(demo_truth.index) == set(people.index)
    truth = demo_truth.reindex(people.index)
    assert truth.stack().between(0, 1).all()  # stack() drops the NaN of customers not at risk
    # The generator gives a mortgage only at 25-60 and a consumer loan only at 22-55: the truth of
    # the others is 0, which holds only if the replay's customers are the store's.
    age = (pd.Timestamp("2026-10-31") - pd.to_datetime(people["birth_date"])).dt.days / 365.2425
    assert (truth.loc[(age < 24.9) | (age > 60.1), "mortgage"] == 0).all()
    assert (truth.loc[(age < 21.9) | (age > 55.1), "consumer_loan"] == 0).all()
    assert (truth.loc[(age >= 26) & (age <= 59), "mortgage"] > 0).mean() > 0.8


def test_demo_expected_value_ranking_follows_the_true_expected_value(demo_engine, demo_truth):
    """Spearman rank correlation of the stored offers' expected value with the true expected value
    (the same margin and expected balance times the true probability instead of the model's). A card
    up-sell's truth is the demo's probability of moving up a tier (``upgrade_truth``); every other
    offer's, wealth management to a time-deposit holder included, the acquisition truth."""
    from scipy.stats import spearmanr

    from analytics.demo.truth import upgrade_truth
    from tests.conftest import DEMO_CUSTOMERS, DEMO_MONTHS

    offers = read_frame(demo_engine, "SELECT customer_id, category, propensity, expected_value, offer_kind FROM "
                                     "next_best_product WHERE run_id = :r", {"r": current_run_id(demo_engine)})
    true_p = demo_truth.stack().rename("true_p")
    true_p.index.names = ["customer_id", "category"]
    tier_up = (offers["offer_kind"] == "up_sell") & (offers["category"] == "credit_card")
    ups = offers[tier_up].join(upgrade_truth(DEMO_CUSTOMERS, months=DEMO_MONTHS, seed=7, horizon_months=3)
                               .rename("true_p"), on="customer_id", how="inner").dropna(subset=["true_p"])
    # every card up-sell has a truth but those of a card the demo's past campaigns gave (a few)
    assert 0.9 * tier_up.sum() <= len(ups) and len(ups) > 0
    offers = pd.concat([offers[~tier_up].join(true_p, on=["customer_id", "category"], how="inner"), ups])
    offers = offers[offers["propensity"] > 0]
    assert len(offers) > 5000
    true_ev = offers["expected_value"] / offers["propensity"] * offers["true_p"]
    rho = spearmanr(offers["expected_value"], true_ev).statistic
    assert rho >= 0.6, rho


def test_first_offer_mix_bar_never_draws_a_hidden_count(monkeypatch):
    from analytics.charts_cross_sell import first_offer_mix_bar

    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "5")
    mix = pd.DataFrame({"category": ["fund", "mortgage", "insurance"], "customers": [30.0, np.nan, np.nan],
                        "share": [0.75, np.nan, np.nan], "expected_value_total": [12.0, np.nan, np.nan],
                        "customers_suppressed": [False, True, True]})
    bar = first_offer_mix_bar(mix, lang="zh").data[0]
    assert list(bar.x) == ["基金", "住房贷款", "保险"]
    assert list(bar.y) == [30.0, 0.0, 0.0]
    assert list(bar.text) == ["30 (75%)", "少于 5 人", "少于 5 人"]
    assert first_offer_mix_bar(mix.iloc[:0]).layout.title.text == "First offers by product category"
