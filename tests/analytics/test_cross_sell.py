"""Cross-sell: association rules by hand and equal to mlxtend's, the propensity model on a known
signal, the guards (hand-built cases and a property test), campaign lists, and the refresh stage on
the demo store."""

import json
import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlxtend.frequent_patterns import apriori
from mlxtend.frequent_patterns import association_rules as mlxtend_rules
from sqlalchemy import text, update

from analytics import consent, demo
from analytics.access import AccessDenied, Scope, Viewer
from analytics.cross_sell import (
    EXCLUSION_REASONS,
    RULE_COLUMNS,
    CrossSellError,
    CrossSellPropensity,
    acquisitions,
    assessment_valid,
    association_rules,
    best_products,
    campaign_list,
    cooccurrence,
    expected_balances,
    holding_matrix,
    propensity_json,
    read_categories,
    read_cooccurrence,
    read_customer_offers,
    read_opportunities,
    read_rules,
    recommend,
)
from analytics.refresh import run_refresh
from analytics.runs import current_run_id, get_run_metrics
from analytics.schema import customers
from analytics.store import bulk_insert, read_frame
from tests.analytics import store_rows

METRICS = ["antecedent support", "consequent support", "support", "confidence", "lift", "leverage", "conviction"]

# ---------------------------------------------------------------------------------------------
# Association rules
# ---------------------------------------------------------------------------------------------

# Five customers, three products. Supports: A 4/5, B 4/5, C 2/5, AB 3/5, AC 1/5, BC 2/5, ABC 1/5.
TINY = pd.DataFrame({"A": [1, 1, 1, 0, 1], "B": [1, 1, 0, 1, 1], "C": [0, 1, 0, 1, 0]})

MARKETING = Viewer("tester", ("marketing",))  # bank-wide


def test_rules_worked_out_by_hand():
    # min_support 0.3 keeps A, B, C, AB, BC (AC and ABC have 0.2). Confidence >= 0.5 keeps all four
    # rules of AB and BC: A->B 0.6/0.8 = 0.75, B->A 0.75, B->C 0.4/0.8 = 0.5, C->B 0.4/0.4 = 1.
    rules = association_rules(TINY, min_support=0.3, min_confidence=0.5)
    assert list(rules.columns) == list(RULE_COLUMNS)
    got = [(set(a), set(c)) for a, c in zip(rules["antecedents"], rules["consequents"], strict=True)]
    # Lift 1.25 for C->B and B->C (0.4 / (0.4 * 0.8)): C->B first by its higher confidence; then
    # 0.9375 for A->B and B->A (0.6 / 0.64), equal in everything: A->B first by column order.
    assert got == [({"C"}, {"B"}), ({"B"}, {"C"}), ({"A"}, {"B"}), ({"B"}, {"A"})]
    np.testing.assert_allclose(rules["support"], [0.4, 0.4, 0.6, 0.6])
    np.testing.assert_allclose(rules["confidence"], [1.0, 0.5, 0.75, 0.75])
    np.testing.assert_allclose(rules["lift"], [1.25, 1.25, 0.9375, 0.9375])
    np.testing.assert_allclose(rules["antecedent support"], [0.4, 0.8, 0.8, 0.8])
    np.testing.assert_allclose(rules["consequent support"], [0.8, 0.4, 0.8, 0.8])
    np.testing.assert_allclose(rules["leverage"], [0.4 - 0.32, 0.4 - 0.32, 0.6 - 0.64, 0.6 - 0.64])
    assert rules["conviction"].iloc[0] == np.inf  # confidence 1
    assert rules["conviction"].iloc[1] == pytest.approx((1 - 0.4) / (1 - 0.5))
    assert rules["antecedents"].map(type).eq(frozenset).all()


def test_three_item_rules_by_hand():
    # With min_support 0.2 everything is frequent; ABC gives six rules, e.g. AC -> B: 0.2/0.2 = 1.
    rules = association_rules(TINY, min_support=0.2, min_confidence=0.0)
    by_rule = {(a, c): r for a, c, r in zip(rules["antecedents"], rules["consequents"],
                                            rules[["support", "confidence", "lift"]].to_numpy(), strict=True)}
    assert len(by_rule) == 3 * 2 + 6  # three pairs both ways, six splits of ABC
    np.testing.assert_allclose(by_rule[(frozenset("AC"), frozenset("B"))], [0.2, 1.0, 1.25])
    np.testing.assert_allclose(by_rule[(frozenset("B"), frozenset("AC"))], [0.2, 0.25, 1.25])
    assert association_rules(TINY, 0.2, 0.0, max_len=2).shape[0] == 6
    assert association_rules(TINY, 0.2, 0.0, max_len=1).empty


def _mlxtend(frame: pd.DataFrame, min_support: float, min_confidence: float, max_len) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # mlxtend's note on 0/1 (non-bool) frames
        warnings.simplefilter("ignore", RuntimeWarning)  # its "certainty" metric divides by 0 at support 1
        frequent = apriori(frame, min_support=min_support, use_colnames=True, max_len=max_len)
        if frequent.empty:  # mlxtend raises on an empty itemset frame; there are no rules
            return pd.DataFrame(columns=["antecedents", "consequents", *METRICS])
        return mlxtend_rules(frequent, metric="confidence", min_threshold=min_confidence)


def _as_dict(rules: pd.DataFrame) -> dict:
    values = rules[METRICS].to_numpy(dtype=float) if len(rules) else []
    return {(a, c): v for a, c, v in zip(rules["antecedents"], rules["consequents"], values, strict=True)}


def _assert_same_as_mlxtend(frame, min_support, min_confidence, max_len=3):
    ours = association_rules(frame, min_support, min_confidence, max_len=max_len)
    theirs = _mlxtend(frame, min_support, min_confidence, max_len)
    mine, ref = _as_dict(ours), _as_dict(theirs)
    assert set(mine) == set(ref)
    for key, values in mine.items():
        assert np.allclose(values, ref[key], rtol=0, atol=0, equal_nan=True), key  # equal to the last bit
    assert ours["lift"].round(12).is_monotonic_decreasing
    return ours


@pytest.mark.parametrize("seed", range(12))
def test_equal_to_mlxtend_on_random_frames(seed):
    rng = np.random.default_rng(seed)
    n, p = int(rng.integers(20, 3000)), int(rng.integers(2, 10))
    density = rng.uniform(0.03, 0.7, p)
    frame = pd.DataFrame(rng.random((n, p)) < density, columns=[f"product_{i}" for i in range(p)])
    if seed % 3 == 1:
        frame = frame.astype(int)  # 0/1 integers
    elif seed % 3 == 2:
        frame = frame.astype(float)  # 0.0/1.0
    min_support = float(rng.choice([0.005, 0.02, 0.05, 0.1, 3 / n]))
    min_confidence = float(rng.choice([0.0, 0.1, 0.3, 0.6]))
    max_len = [2, 3, 4, None][seed % 4]
    _assert_same_as_mlxtend(frame, min_support, min_confidence, max_len)


def test_equal_to_mlxtend_on_a_correlated_bank_like_frame():
    # 200k customers: insurance follows mortgage, funds follow wealth management.
    rng = np.random.default_rng(42)
    n = 200_000
    mortgage = rng.random(n) < 0.09
    wealth = rng.random(n) < 0.10
    frame = pd.DataFrame({
        "demand_deposit": np.ones(n, dtype=bool),
        "time_deposit": rng.random(n) < 0.26,
        "wealth_management": wealth,
        "fund": rng.random(n) < np.where(wealth, 0.2, 0.05),
        "mortgage": mortgage,
        "insurance": rng.random(n) < np.where(mortgage, 0.14, 0.05),
        "credit_card": rng.random(n) < 0.34,
        "precious_metal": rng.random(n) < 0.01,
    })
    rules = _assert_same_as_mlxtend(frame, 0.005, 0.1, 3)
    top = rules[(rules["antecedents"] == frozenset({"mortgage"})) & (rules["consequents"] == frozenset({"insurance"}))]
    assert len(top) == 1 and top["lift"].iloc[0] > 2


@pytest.mark.parametrize("frame, min_support, min_confidence", [
    (TINY, 0.4, 0.5),  # supports exactly on the threshold (BC = 2/5) are kept
    (TINY, 0.4, 1.0),  # confidence exactly 1 is kept
    (TINY.assign(D=0), 0.2, 0.0),  # a product nobody holds
    (TINY.assign(D=1), 0.2, 0.0),  # a product everybody holds (lift 1 with anything)
    (TINY.iloc[:1], 0.5, 0.0),  # one basket
    (TINY.astype("boolean"), 0.2, 0.2),  # pandas' nullable booleans without missing values
    (pd.DataFrame({"x": [1, 0, 1], "y": [0, 1, 0]}), 0.3, 0.0),  # never together: no pair
    (pd.DataFrame({"x": [True] * 7, "y": [True] * 6 + [False]}), 6 / 7, 0.0),  # float thresholds 6/7
])
def test_equal_to_mlxtend_on_edge_cases(frame, min_support, min_confidence):
    _assert_same_as_mlxtend(frame, min_support, min_confidence)


def test_no_frequent_itemset_gives_an_empty_frame():
    rules = association_rules(TINY, min_support=0.9, min_confidence=0.0)
    assert rules.empty and list(rules.columns) == list(RULE_COLUMNS)
    assert association_rules(TINY.iloc[:0], 0.1, 0.1).empty


@pytest.mark.parametrize("frame, args, message", [
    (pd.DataFrame({"a": [1, 2]}), (0.1, 0.1), "only 0 and 1"),
    (pd.DataFrame({"a": [1.0, np.nan]}), (0.1, 0.1), "missing values"),
    (pd.DataFrame({"a": ["y", "n"]}), (0.1, 0.1), "boolean or 0/1"),
    (pd.DataFrame({"a": pd.array([True, None], dtype="boolean")}), (0.1, 0.1), "missing values"),
    (TINY, (0.0, 0.1), "min_support"),
    (TINY, (1.5, 0.1), "min_support"),
    (TINY, (0.1, -0.1), "min_confidence"),
    ([[1, 0]], (0.1, 0.1), "DataFrame"),
])
def test_invalid_input_is_refused_with_its_reason(frame, args, message):
    with pytest.raises(CrossSellError, match=message):
        association_rules(frame, *args)


def test_invalid_max_len():
    with pytest.raises(CrossSellError, match="max_len"):
        association_rules(TINY, 0.1, 0.1, max_len=0)


def test_cooccurrence_counts_pairs():
    counts = cooccurrence(TINY)
    assert counts.to_numpy().tolist() == [[4, 3, 1], [3, 4, 2], [1, 2, 2]]


# ---------------------------------------------------------------------------------------------
# Holding matrix and acquisitions on a hand-built store (both dialects)
# ---------------------------------------------------------------------------------------------


def test_holding_matrix_and_acquisitions(engine):
    store_rows.fill(engine)
    extra = pd.DataFrame([
        # C3 opens a mortgage in September 2026; C2's demand deposit closed on 2025-01-01.
        {"holding_id": 4, "customer_id": "C000000003", "product_id": "P02", "account_number": "001",
         "opened_on": date(2026, 9, 15), "closed_on": None, "balance": 500000.0},
    ])
    from analytics.schema import holdings
    bulk_insert(engine, holdings, extra)
    matrix = holding_matrix(engine, date(2026, 10, 31))
    assert list(matrix.columns) == ["demand_deposit", "mortgage"]
    assert matrix.index.tolist() == ["C000000001", "C000000003"]  # C2 holds nothing open
    assert matrix.to_numpy().tolist() == [[True, True], [False, True]]
    before = holding_matrix(engine, date(2026, 9, 14))
    assert before.index.tolist() == ["C000000001"]
    # Open on the day it was closed: not held (closed_on > as_of is required).
    assert holding_matrix(engine, "2025-01-01").index.tolist() == ["C000000001"]
    assert holding_matrix(engine, "2024-12-31").index.tolist() == ["C000000001", "C000000002"]
    new = acquisitions(engine, date(2026, 7, 31), date(2026, 10, 31))
    assert new.index.tolist() == ["C000000003"] and new.loc["C000000003"].tolist() == [False, True]


# ---------------------------------------------------------------------------------------------
# Propensity
# ---------------------------------------------------------------------------------------------


def _synthetic(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    aum = np.exp(rng.normal(10, 1.2, n))
    age = rng.uniform(20, 80, n)
    logins = rng.poisson(5, n).astype(float)
    tolerance = rng.choice(["C1", "C2", "C3", "C4", "C5"], n)
    X = pd.DataFrame({"aum_latest": aum, "age": age, "digital_logins_3m": logins, "risk_tolerance": tolerance,
                      "gender": rng.choice(["M", "F"], n), "marketing_consent": rng.random(n) < 0.7},
                     index=pd.Index([f"C{i:06d}" for i in range(n)], name="customer_id"))
    # Funds: driven by wealth and tolerance. Mortgages: by age (the young borrow). Gold: rare.
    logit_fund = -6 + 1.2 * (np.log(aum) - 10) + 0.8 * (pd.Series(tolerance).str[1].astype(int).to_numpy() - 3)
    logit_mortgage = -3 - 0.08 * (age - 45)
    Y = pd.DataFrame({
        "fund": rng.random(n) < 1 / (1 + np.exp(-logit_fund)),
        "mortgage": rng.random(n) < 1 / (1 + np.exp(-logit_mortgage)),
        "gold": np.arange(n) < 5,
    }, index=X.index)
    held = pd.DataFrame({"fund": rng.random(n) < 0.1, "mortgage": False, "gold": False}, index=X.index)
    return X, Y, held


def test_propensity_learns_a_known_signal_and_is_calibrated():
    X, Y, held = _synthetic()
    model = CrossSellPropensity(random_state=0).fit(X, Y, exclude=held)
    report = model.report_
    assert report.loc["fund", "model"] == "logistic" and report.loc["mortgage", "model"] == "logistic"
    assert report.loc["fund", "holdout_auc"] > 0.85
    assert report.loc["mortgage", "holdout_auc"] > 0.75
    assert report.loc["gold", "model"] == "base_rate"  # 5 events: too few to learn from
    assert report.loc["fund", "train_rows"] + report.loc["fund", "holdout_rows"] == int((~held["fund"]).sum())
    p = model.predict_proba(X, exclude=held)
    assert list(p.columns) == ["fund", "mortgage", "gold"]
    assert p.loc[held["fund"], "fund"].isna().all() and p.loc[~held["fund"], "fund"].notna().all()
    values = p.to_numpy()
    assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
    # Calibrated in the large: the mean predicted probability is the observed rate (to sampling error).
    for category in ("fund", "mortgage"):
        at_risk = ~held[category]
        assert p.loc[at_risk, category].mean() == pytest.approx(Y.loc[at_risk, category].mean(), rel=0.05)
    # The base-rate category predicts its observed rate for everyone.
    assert np.allclose(p["gold"], 5 / len(X), rtol=0.5)
    assert "gender" not in model.numeric_features_ + model.categorical_features_
    assert not hasattr(model, "X_")  # the training frame is not kept


def test_propensity_samples_and_is_deterministic():
    X, Y, held = _synthetic(n=6000, seed=3)
    a = CrossSellPropensity(sample_size=3000, random_state=5).fit(X, Y, exclude=held)
    b = CrossSellPropensity(sample_size=3000, random_state=5).fit(X, Y, exclude=held)
    assert a.report_["train_rows"].sum() + a.report_["holdout_rows"].sum() < 3 * 3000 + 1
    pd.testing.assert_frame_equal(a.predict_proba(X), b.predict_proba(X))


def test_a_fit_on_the_presampled_rows_is_the_fit_on_the_whole_frame():
    # The stage reads only the rows the model samples (training_rows), then fits with population=n.
    X, Y, held = _synthetic(n=6000, seed=3)
    whole = CrossSellPropensity(sample_size=2500, random_state=5).fit(X, Y, exclude=held)
    model = CrossSellPropensity(sample_size=2500, random_state=5)
    rows = model.training_rows(len(X))
    assert len(rows) == 2500 and (np.diff(rows) > 0).all()
    model.fit(X.iloc[rows], Y.iloc[rows], exclude=held.iloc[rows], population=len(X))
    pd.testing.assert_frame_equal(model.report_, whole.report_)
    pd.testing.assert_frame_equal(model.predict_proba(X, exclude=held), whole.predict_proba(X, exclude=held))
    small = CrossSellPropensity(sample_size=9000, random_state=5)  # nothing to sample: every row
    assert (small.training_rows(len(X)) == np.arange(len(X))).all()
    with pytest.raises(CrossSellError, match="X has 100 rows"):
        model.fit(X.iloc[:100], Y.iloc[:100], exclude=held.iloc[:100], population=len(X))


def test_propensity_without_training_rows_predicts_zero():
    X, Y, _ = _synthetic(n=50)
    model = CrossSellPropensity().fit(X.iloc[:0], Y.iloc[:0])
    assert set(model.report_["model"]) == {"none"}
    assert (model.predict_proba(X).to_numpy() == 0).all()


def test_propensity_refuses_misaligned_frames():
    X, Y, _ = _synthetic(n=50)
    with pytest.raises(CrossSellError, match="same index"):
        CrossSellPropensity().fit(X, Y.iloc[::-1])


# ---------------------------------------------------------------------------------------------
# Guards and next-best product
# ---------------------------------------------------------------------------------------------

PRODUCTS = pd.DataFrame([
    ("D1", "deposit", "R1", 0.010),
    ("W2", "wealth", "R2", 0.006),
    ("W3", "wealth", "R3", 0.008),
    ("F4", "fund", "R4", 0.014),
    ("F5", "fund", "R5", 0.015),
    ("F3", "fund", "R3", 0.010),
    ("G3", "gold", "R3", 0.010),
], columns=["product_id", "category", "risk_level", "annual_margin"])
BALANCES = pd.DataFrame(1000.0, index=["mass", "affluent", "wealth", "private"],
                        columns=["deposit", "wealth", "fund", "gold"])


def _customers(rows):
    return pd.DataFrame(rows, columns=["customer_id", "risk_tolerance", "assessment_valid", "marketing_consent",
                                       "value_tier"]).set_index("customer_id")


def test_best_product_is_the_highest_margin_within_tolerance():
    index, margin = best_products(PRODUCTS, ["deposit", "wealth", "fund", "gold"])
    pid = PRODUCTS["product_id"].to_numpy()
    assert [pid[i] if i >= 0 else None for i in index[2]] == [None, None, None, "F3", "F4", "F5"]
    assert [pid[i] if i >= 0 else None for i in index[1]] == [None, None, "W2", "W3", "W3", "W3"]
    assert margin[2, 4] == 0.014 and margin[0, 0] == 0.0


def test_guards_on_hand_built_customers():
    people = _customers([
        ("ok_c5", "C5", True, True, "mass"),
        ("ok_c2", "C2", True, True, "mass"),
        ("expired", "C5", False, True, "mass"),
        ("no_tol", None, True, True, "mass"),  # no tolerance: never valid, whatever the flag says
        ("c1", "C1", True, True, "mass"),
        ("no_consent", "C4", True, False, "affluent"),
    ])
    propensity = pd.DataFrame(0.1, index=people.index, columns=["deposit", "wealth", "fund", "gold"])
    propensity.loc["ok_c5", "deposit"] = np.nan  # holds a deposit
    result = recommend(propensity, people, PRODUCTS, BALANCES, top_n=10, campaign_size=10)
    offers = result.offers.set_index(["customer_id", "category"])
    assert set(offers.index.get_level_values(0)) == {"ok_c5", "ok_c2", "c1", "no_consent"}
    assert offers.loc[("ok_c5", "fund"), "product_id"] == "F5"
    assert ("ok_c5", "deposit") not in offers.index  # already held
    assert offers.loc[("ok_c2", "wealth"), "product_id"] == "W2"
    assert ("ok_c2", "fund") not in offers.index and ("c1", "wealth") not in offers.index
    assert offers.loc[("no_consent", "fund"), "product_id"] == "F4"
    assert not offers.loc["no_consent", "marketing_consent"].any()
    # Expected value by hand: 0.1 * 0.015 * 1000 = 1.5 for F5.
    assert offers.loc[("ok_c5", "fund"), "expected_value"] == pytest.approx(1.5)
    assert offers.loc[("ok_c5", "fund"), "rank"] == 1  # F5 has the best margin
    funnel = result.funnel.set_index("category")
    assert funnel.loc["fund", "non_holders"] == 6
    assert funnel.loc["fund", "excluded_expired_assessment"] == 2  # expired, no_tol
    assert funnel.loc["fund", "excluded_suitability"] == 2  # ok_c2, c1: funds are R3+
    assert funnel.loc["fund", "eligible"] == 2
    assert funnel.loc["fund", "excluded_no_consent"] == 1 and funnel.loc["fund", "campaign_pool"] == 1
    assert funnel.loc["deposit", "non_holders"] == 5 and funnel.loc["deposit", "eligible"] == 3
    assert result.no_offer == {"holds_everything": 0, "expired_assessment": 2, "suitability": 0, "credit_grade": 0,
                               "credit_complaint": 0}
    opp = result.opportunities.set_index(["category", "product_id"])
    assert opp.loc[("fund", "F5"), "customers"] == 1 and opp.loc[("fund", "F4"), "consenting_customers"] == 0


def test_top_n_and_campaign_pool():
    people = _customers([(f"c{i}", "C5", True, i % 2 == 0, "mass") for i in range(6)])
    propensity = pd.DataFrame({"deposit": np.linspace(0.1, 0.6, 6), "fund": 0.01, "gold": 0.02, "wealth": 0.001},
                              index=people.index)
    result = recommend(propensity, people, PRODUCTS, BALANCES, top_n=1, campaign_size=2)
    offers = result.offers
    assert (offers.groupby("customer_id")["rank"].min() == 1).all()
    assert offers[offers["rank"] == 1]["category"].eq("deposit").all()  # 0.1+ * 0.010 beats the rest
    # Gold is nobody's top offer, but its campaign pool holds the 2 best consenting customers.
    gold = offers[offers["category"] == "gold"]
    assert len(gold) == 2 and gold["marketing_consent"].all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_no_offer_ever_exceeds_tolerance_or_skips_a_guard(data):
    n = data.draw(st.integers(1, 40))
    levels = data.draw(st.lists(st.sampled_from(["R1", "R2", "R3", "R4", "R5"]), min_size=1, max_size=8))
    cats = data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=len(levels), max_size=len(levels)))
    margins = data.draw(st.lists(st.floats(0.0, 0.1), min_size=len(levels), max_size=len(levels)))
    products = pd.DataFrame({"product_id": [f"P{i}" for i in range(len(levels))], "category": cats,
                             "risk_level": levels, "annual_margin": margins})
    tol = data.draw(st.lists(st.sampled_from(["C1", "C2", "C3", "C4", "C5", None]), min_size=n, max_size=n))
    valid = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    consent = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    tiers = data.draw(st.lists(st.sampled_from(["mass", "affluent", "wealth", "private"]), min_size=n, max_size=n))
    people = pd.DataFrame({"risk_tolerance": tol, "assessment_valid": valid, "marketing_consent": consent,
                           "value_tier": tiers}, index=[f"c{i}" for i in range(n)])
    categories = sorted(set(cats))
    p = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=n * len(categories),
                           max_size=n * len(categories)))
    propensity = pd.DataFrame(np.array([np.nan if v is None else v for v in p]).reshape(n, len(categories)),
                              index=people.index, columns=categories)
    top_n = data.draw(st.integers(1, 3))
    result = recommend(propensity, people, products, BALANCES.reindex(columns=categories, fill_value=500.0),
                       top_n=top_n, campaign_size=data.draw(st.integers(1, 50)))
    offers = result.offers.merge(products, on=["product_id", "category"])
    assert len(offers) == len(result.offers)
    joined = offers.merge(people, left_on="customer_id", right_index=True, suffixes=("", "_c"))
    r = joined["risk_level"].str[1].astype(int)
    c = joined["risk_tolerance"].str[1].astype(int)
    assert (r <= c).all()
    assert joined["assessment_valid"].all()
    assert (joined["marketing_consent_c"] == joined["marketing_consent"]).all()
    assert propensity.stack().reindex(list(zip(offers["customer_id"], offers["category"], strict=True))).notna().all()
    funnel = result.funnel.set_index("category")
    parts = funnel["excluded_expired_assessment"] + funnel["excluded_suitability"] + funnel["eligible"]
    assert (parts == funnel["non_holders"]).all()
    assert (funnel["excluded_no_consent"] + funnel["campaign_pool"] == funnel["eligible"]).all()


def test_assessment_valid_boundaries():
    valid = assessment_valid(["C3", "C3", "C3", None, "C3", "X9"], [365, 366, np.nan, 10, -5, 10], 365)
    assert valid.tolist() == [True, False, False, False, True, False]


def test_expected_balance_medians_by_tier_with_fallback():
    balances = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "category": ["fund", "fund", "fund", "gold"],
                             "balance": [100.0, 300.0, 1000.0, 50.0]})
    tiers = pd.Series({"a": "mass", "b": "mass", "c": "wealth", "d": "mass"})
    eb = expected_balances(balances, tiers, ["fund", "gold", "loan"])
    assert eb.loc["mass", "fund"] == 200.0 and eb.loc["wealth", "fund"] == 1000.0
    assert eb.loc["affluent", "fund"] == 300.0  # no affluent holder: median of all fund holders
    assert eb.loc["wealth", "gold"] == 50.0 and (eb["loan"] == 0).all()


# ---------------------------------------------------------------------------------------------
# The refresh stage on the demo store
# ---------------------------------------------------------------------------------------------


def test_demo_rules_show_the_mortgage_insurance_affinity(demo_engine):
    rules = read_rules(demo_engine)
    pair = rules[(rules["antecedents"] == frozenset({"mortgage"})) & (rules["consequents"] == frozenset({"insurance"}))]
    assert len(pair) == 1 and pair["lift"].iloc[0] > 1.5
    assert rules["rule_no"].tolist() == list(range(1, len(rules) + 1))
    # The stored rules are the rules of the holding matrix at the run's day, in order.
    as_of = get_run_metrics(demo_engine, current_run_id(demo_engine))["cross_sell.as_of"]
    fresh = association_rules(holding_matrix(demo_engine, as_of), 0.005, 0.1)
    assert len(fresh) == len(rules)
    assert list(fresh["antecedents"]) == list(rules["antecedents"])
    np.testing.assert_allclose(fresh["lift"], rules["lift"])
    cooc = read_cooccurrence(demo_engine)
    assert (cooc.to_numpy() == cooc.to_numpy().T).all()
    assert cooc.loc["mortgage", "insurance"] == round(pair["support"].iloc[0] * len(holding_matrix(demo_engine, as_of)))


def test_demo_every_stored_offer_passes_the_guards(demo_engine):
    run = current_run_id(demo_engine)
    as_of = get_run_metrics(demo_engine, run)["cross_sell.as_of"]
    offers = read_frame(demo_engine, """
        SELECT n.customer_id, n.category, n.rank, n.propensity, n.expected_value, n.marketing_consent,
               p.category AS product_category, p.risk_level, c.risk_tolerance, c.risk_assessed_at, c.status,
               c.marketing_consent AS consent_now
        FROM next_best_product n JOIN products p ON p.product_id = n.product_id
        JOIN customers c ON c.customer_id = n.customer_id WHERE n.run_id = :r
    """, {"r": run})
    assert len(offers) > 0
    assert (offers["category"] == offers["product_category"]).all()
    assert (offers["risk_level"].str[1].astype(int) <= offers["risk_tolerance"].str[1].astype(int)).all()
    age = (pd.Timestamp(as_of) - pd.to_datetime(offers["risk_assessed_at"])).dt.days
    assert (age <= 365).all()
    assert (offers["status"] != "closed").all()
    assert offers["propensity"].between(0, 1).all() and (offers["expected_value"] >= 0).all()
    assert (offers["marketing_consent"].astype(bool) == offers["consent_now"].astype(bool)).all()
    # Every customer with a valid assessment and something to buy has a next-best product.
    best = offers[offers["rank"] == 1]
    assert best["customer_id"].is_unique
    metrics = get_run_metrics(demo_engine, run)
    assert len(best) == metrics["cross_sell.customers_with_offer"]
    assert (len(best) + metrics["cross_sell.no_offer.expired_assessment"] + metrics["cross_sell.no_offer.suitability"]
            + metrics["cross_sell.no_offer.credit_grade"] + metrics["cross_sell.no_offer.credit_complaint"]
            + metrics["cross_sell.no_offer.holds_everything"] == metrics["cross_sell.customers_scored"])


def test_demo_categories_and_opportunities(demo_engine):
    cats = read_categories(demo_engine)
    assert set(cats["model"]) <= {"logistic", "base_rate", "none"}
    assert (cats["excluded_expired_assessment"] + cats["excluded_suitability"] + cats["excluded_credit_grade"]
            + cats["excluded_credit_complaint"] + cats["eligible"] == cats["non_holders"]).all()
    assert (cats["holders"] + cats["non_holders"] <= 3000).all()
    opp = read_opportunities(demo_engine)
    by_cat = opp.groupby("category")["customers"].sum()
    # the eligible non-holders plus the eligible tier up-sells (holders offered a better card)
    eligible = cats.set_index("category")[["eligible", "upsell_eligible"]].sum(axis=1)
    assert (by_cat == eligible.reindex(by_cat.index)).all()
    assert opp["product_name"].notna().all()


@pytest.mark.parametrize("category", ["insurance", "fund", "wealth_management", "credit_card"])
def test_demo_campaign_lists_exclude_and_report(demo_engine, category):
    listed, excluded = campaign_list(demo_engine, None, viewer=MARKETING, category=category, limit=100)
    assert set(excluded) == set(EXCLUSION_REASONS)
    funnel = read_categories(demo_engine).set_index("category").loc[category]
    assert excluded["consent"] >= funnel["excluded_no_consent"] > 0
    assert excluded["expired_assessment"] >= funnel["excluded_expired_assessment"] > 0
    assert 0 < len(listed) <= 100
    assert listed["expected_value"].is_monotonic_decreasing
    people = read_frame(demo_engine, "SELECT customer_id, marketing_consent, risk_tolerance FROM customers")
    joined = listed.merge(people, on="customer_id")
    assert joined["marketing_consent"].astype(bool).all()
    assert (joined["risk_level"].str[1].astype(int) <= joined["risk_tolerance"].str[1].astype(int)).all()
    assert "name" not in listed.columns and "phone" not in listed.columns


def test_campaign_list_follows_the_viewers_scope(demo_engine):
    everyone, _ = campaign_list(demo_engine, None, viewer=MARKETING, category="insurance", limit=10_000)
    branch = everyone["branch_id"].value_counts().index[0]
    mine, excluded = campaign_list(demo_engine, None, viewer=Viewer("m", ("marketing",), Scope(branches={branch})),
                                   category="insurance", limit=10_000)
    assert len(mine) == (everyone["branch_id"] == branch).sum() > 0
    assert set(mine["branch_id"]) == {branch}
    # A scoped viewer is not shown the bank-wide funnel counts of the run.
    funnel = read_categories(demo_engine).set_index("category").loc["insurance"]
    assert excluded["consent"] < funnel["excluded_no_consent"]
    nothing, _ = campaign_list(demo_engine, None, viewer=Viewer("m", ("marketing",), Scope()), category="insurance")
    assert nothing.empty
    with pytest.raises(AccessDenied):
        campaign_list(demo_engine, None, viewer=Viewer("e", ("executive",)), category="insurance")


def test_campaign_list_rechecks_the_current_record(engine):
    """Consent withdrawn, tolerance lowered or assessment lapsed after the run: off the list, counted."""
    demo.generate(engine, customers=400, months=6, seed=3, progress=False)
    run_refresh(engine)
    listed, before = campaign_list(engine, None, viewer=MARKETING, category="wealth_management", limit=1000)
    assert len(listed) >= 3
    first, second, third = listed["customer_id"].iloc[:3]
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.customer_id == second).values(risk_tolerance="C1"))
        conn.execute(update(customers).where(customers.c.customer_id == third)
                     .values(risk_assessed_at=date(2024, 1, 1)))
    consent.withdraw(engine, first, "marketing")  # takes effect at the next read, not the next refresh
    again, after = campaign_list(engine, None, viewer=MARKETING, category="wealth_management", limit=1000)
    assert not {first, second, third} & set(again["customer_id"])
    assert len(again) == len(listed) - 3
    assert after == {"consent": before["consent"] + 1, "suitability": before["suitability"] + 1,
                     "expired_assessment": before["expired_assessment"] + 1, "credit_grade": 0,
                     "credit_complaint": 0}
    # A credit grade lowered below CREDIT_OFFER_MIN_GRADE after the run: off a credit list, counted.
    cards, card_before = campaign_list(engine, None, viewer=MARKETING, category="credit_card", limit=1000)
    assert len(cards) >= 1 and card_before["credit_grade"] > 0
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.customer_id == cards["customer_id"].iloc[0])
                     .values(credit_grade="CCC"))
    cards_after, card_after = campaign_list(engine, None, viewer=MARKETING, category="credit_card", limit=1000)
    assert cards["customer_id"].iloc[0] not in set(cards_after["customer_id"])
    assert card_after == {**card_before, "credit_grade": card_before["credit_grade"] + 1}
    assert len(campaign_list(engine, None, viewer=MARKETING, category="wealth_management", limit=2)[0]) == 2
    with pytest.raises(CrossSellError, match="limit"):
        campaign_list(engine, None, viewer=MARKETING, category="wealth_management", limit=-1)
    empty, reasons = campaign_list(engine, None, viewer=MARKETING, category="no_such_category")
    assert empty.empty and reasons == dict.fromkeys(EXCLUSION_REASONS, 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM cross_sell_rules")).scalar() > 0


# ---------------------------------------------------------------------------------------------
# Per-customer results (cross_sell_customer)
# ---------------------------------------------------------------------------------------------


def test_propensity_json_leaves_out_holders_and_rounds():
    frame = pd.DataFrame({"fund": [0.123456, np.nan, np.nan, 1.0], "insurance": [np.nan, 0.00004, np.nan, 0.5]},
                         index=["a", "b", "c", "d"])
    out = [json.loads(s) for s in propensity_json(frame)]
    assert out == [{"fund": 0.1235}, {"insurance": 0.0}, {}, {"fund": 1.0, "insurance": 0.5}]
    rng = np.random.default_rng(3)
    big = pd.DataFrame(rng.random((500, 4)), columns=list("wxyz"))
    big[big > 0.8] = np.nan
    for text_row, (_, row) in zip(propensity_json(big), big.iterrows(), strict=True):
        assert json.loads(text_row) == pytest.approx({c: round(v, 4) for c, v in row.items() if not np.isnan(v)},
                                                     abs=1e-12)
    assert list(propensity_json(pd.DataFrame(index=["a"]))) == ["{}"]


def test_recommend_gives_each_customer_a_next_best_or_a_reason():
    props = pd.DataFrame({"deposit": [0.2, np.nan, 0.3, 0.4], "fund": [0.5, np.nan, 0.6, 0.1]},
                         index=["ok", "all", "old", "low"])
    people = pd.DataFrame({"risk_tolerance": ["C3", "C3", "C3", "C1"],
                           "assessment_valid": [True, True, False, True],
                           "marketing_consent": [True, True, True, True],
                           "value_tier": ["mass"] * 4}, index=props.index)
    prods = pd.DataFrame({"product_id": ["D1", "F1"], "category": ["deposit", "fund"], "risk_level": ["R1", "R3"],
                          "annual_margin": [0.01, 0.02]})
    balance = pd.DataFrame(1000.0, index=["mass"], columns=["deposit", "fund"])
    per = recommend(props, people, prods, balance).customers
    assert per.loc["ok", "next_best_category"] == "fund" and per.loc["ok", "next_best_product_id"] == "F1"
    assert per.loc["ok", "next_best_expected_value"] == pytest.approx(0.5 * 0.02 * 1000)
    assert pd.isna(per.loc["ok", "no_offer_reason"])
    assert per.loc["all", "no_offer_reason"] == "holds_everything"
    assert per.loc["old", "no_offer_reason"] == "expired_assessment"
    assert pd.isna(per.loc["old", "next_best_product_id"])
    # C1: the fund (R3) is above the tolerance, the deposit is not.
    assert per.loc["low", "next_best_product_id"] == "D1"


def test_demo_every_customer_has_propensities_and_a_next_best_or_a_reason(demo_engine):
    run = current_run_id(demo_engine)
    as_of = pd.Timestamp(get_run_metrics(demo_engine, run)["cross_sell.as_of"])
    rows = read_frame(demo_engine, "SELECT * FROM cross_sell_customer WHERE run_id = :r", {"r": run})
    people = read_frame(demo_engine, "SELECT customer_id, status, risk_tolerance, risk_assessed_at FROM customers")
    assert rows["customer_id"].is_unique
    assert set(rows["customer_id"]) == set(people["customer_id"])
    has_product = rows["next_best_product_id"].notna()
    has_reason = rows["no_offer_reason"].notna()
    assert (has_product ^ has_reason).all()
    assert (rows["next_best_category"].notna() == has_product).all()
    assert (rows["next_best_expected_value"].notna() == has_product).all()
    assert set(rows.loc[has_reason, "no_offer_reason"]) <= {"expired_assessment", "suitability", "holds_everything",
                                                           "credit_grade", "credit_complaint", "closed"}
    for text_value in rows["propensities"]:
        probabilities = json.loads(text_value)
        assert isinstance(probabilities, dict)
        assert all(0.0 <= v <= 1.0 for v in probabilities.values())
    # A customer with an offer has a propensity for its category; the offer is rank 1 of next_best_product.
    best = read_frame(demo_engine, "SELECT customer_id, category, product_id, expected_value FROM next_best_product "
                                   "WHERE run_id = :r AND rank = 1", {"r": run}).set_index("customer_id")
    offered = rows[has_product].set_index("customer_id")
    assert set(offered.index) == set(best.index)
    assert (offered["next_best_category"] == best["category"].reindex(offered.index)).all()
    assert (offered["next_best_product_id"] == best["product_id"].reindex(offered.index)).all()
    np.testing.assert_allclose(offered["next_best_expected_value"], best["expected_value"].reindex(offered.index))
    # (a card up-sell's category is held, so it has no acquisition propensity: the held ones are left out)
    lacked = offered[~((offered["next_best_offer_kind"] == "up_sell") & (offered["next_best_category"] == "credit_card"))]
    assert len(lacked) > 0
    assert all(cat in json.loads(p) for cat, p in zip(lacked["next_best_category"], lacked["propensities"],
                                                      strict=True))
    assert set(offered["next_best_offer_kind"]) <= {"cross_sell", "up_sell"}
    # Closed customers: reason "closed"; expired or missing assessments: no product, ever.
    merged = rows.merge(people, on="customer_id")
    assert (merged.loc[merged["status"] == "closed", "no_offer_reason"] == "closed").all()
    age = (as_of - pd.to_datetime(merged["risk_assessed_at"])).dt.days
    expired = (merged["status"] != "closed") & (merged["risk_tolerance"].isna() | age.isna() | (age > 365))
    assert expired.sum() > 0
    assert merged.loc[expired, "next_best_product_id"].isna().all()
    assert set(merged.loc[expired, "no_offer_reason"]) <= {"expired_assessment", "holds_everything"}
    assert (merged.loc[expired, "no_offer_reason"] == "expired_assessment").sum() > 0
    assert not (merged.loc[~expired & (merged["status"] != "closed"), "no_offer_reason"] == "expired_assessment").any()


def test_demo_read_customer_offers(demo_engine):
    run = current_run_id(demo_engine)
    rows = read_frame(demo_engine, "SELECT customer_id, no_offer_reason FROM cross_sell_customer WHERE run_id = :r",
                      {"r": run})
    with_offer = rows.loc[rows["no_offer_reason"].isna(), "customer_id"].iloc[0]
    offer = read_customer_offers(demo_engine, None, with_offer)
    assert offer == read_customer_offers(demo_engine, run, with_offer)
    assert offer["next_best_product_name"] and offer["no_offer_reason"] is None
    assert offer["next_best_category"] in offer["propensities"]
    values = list(offer["propensities"].values())
    assert values == sorted(values, reverse=True)
    expired = rows.loc[rows["no_offer_reason"] == "expired_assessment", "customer_id"].iloc[0]
    none = read_customer_offers(demo_engine, run, expired)
    assert none["next_best_product_id"] is None and none["next_best_expected_value"] is None
    assert none["no_offer_reason"] == "expired_assessment"
    assert read_customer_offers(demo_engine, run, "NO-SUCH-CUSTOMER") is None
