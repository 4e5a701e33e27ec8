"""Up-sell: a better card tier and wealth management for a time-deposit holder, ranked with the
cross-sell offers and under the same guards; the observed upgrade rate; the added columns of an
older store; the demo store's up-sell offers against the rules and the demo's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from analytics import access, cross_sell
from analytics.cross_sell import CREDIT_CATEGORIES, credit_grade_ok, first_offer_mix, recommend
from analytics.cross_sell.stage import upgrade_propensity, upgrade_rates
from analytics.runs import current_run_id
from analytics.schema import CREDIT_GRADES, metadata
from analytics.segmentation import value_tier_thresholds, value_tiers
from analytics.store import check_columns, init_schema, read_frame

PRODUCTS = pd.DataFrame([
    ("TD", "time_deposit", "R1", 0.008, None),
    ("W2", "wealth_management", "R2", 0.006, None),
    ("W3", "wealth_management", "R3", 0.007, None),
    ("K1", "credit_card", "R1", 0.080, 1),
    ("K2", "credit_card", "R1", 0.085, 2),
    ("K3", "credit_card", "R1", 0.090, 3),
], columns=["product_id", "category", "risk_level", "annual_margin", "tier_rank"])
CATEGORIES = ["credit_card", "time_deposit", "wealth_management"]
BALANCES = pd.DataFrame(1000.0, index=["mass", "affluent", "wealth", "private"], columns=CATEGORIES)


def _people(rows):
    return pd.DataFrame(rows, columns=["customer_id", "risk_tolerance", "assessment_valid", "marketing_consent",
                                       "value_tier", "credit_grade"]).set_index("customer_id")


def _run(people, propensity, held, tiers, upgrade, **kw):
    return recommend(propensity, people, PRODUCTS, BALANCES, top_n=kw.pop("top_n", 3), horizon_months=3,
                     held=held, held_tier=tiers, upgrade_propensity=upgrade, **kw)


def test_card_up_sell_offers_the_next_tier_by_hand():
    people = _people([
        ("classic", "C3", True, True, "mass", "A"),
        ("gold", "C3", True, True, "mass", "A"),
        ("platinum", "C3", True, True, "mass", "A"),
        ("weak", "C3", True, True, "mass", "B"),
        ("expired", "C3", False, True, "mass", "A"),
    ])
    ids = people.index
    # Everyone holds a card and a time deposit and lacks wealth management (p 0.1).
    propensity = pd.DataFrame({"credit_card": np.nan, "time_deposit": np.nan, "wealth_management": 0.1}, index=ids)
    held = pd.DataFrame({"credit_card": True, "time_deposit": True, "wealth_management": False}, index=ids)
    tiers = pd.DataFrame({"credit_card": [1.0, 2.0, 3.0, 1.0, 1.0]}, index=ids)
    upgrade = pd.DataFrame({"credit_card": [0.2, 0.4, np.nan, 0.2, 0.2]}, index=ids)
    result = _run(people, propensity, held, tiers, upgrade)
    offers = result.offers.set_index(["customer_id", "category"])
    # A classic holder is offered gold (never classic again, nor platinum past it): 0.2 x 8.5 % x
    # 1,000 CNY x 3/12 = 4.25 CNY; a gold holder platinum: 0.4 x 9 % x 1,000 x 3/12 = 9.0.
    assert offers.loc[("classic", "credit_card"), "product_id"] == "K2"
    assert offers.loc[("classic", "credit_card"), "offer_kind"] == "up_sell"
    assert offers.loc[("classic", "credit_card"), "expected_value"] == pytest.approx(4.25)
    assert offers.loc[("gold", "credit_card"), "product_id"] == "K3"
    assert offers.loc[("gold", "credit_card"), "expected_value"] == pytest.approx(9.0)
    # Ranked with the cross-sell offer: wealth 0.1 x 0.7 % (W3 at C3) x 1,000 x 3/12 = 0.175 < 4.25.
    assert offers.loc[("classic", "wealth_management"), "expected_value"] == pytest.approx(0.175)
    assert offers.loc[("classic", "credit_card"), "rank"] == 1
    assert result.customers.loc["gold", "next_best_offer_kind"] == "up_sell"
    # Platinum is the top tier: no card offer. A weak grade gets no card (credit guard), nor an
    # expired assessment anything.
    assert ("platinum", "credit_card") not in offers.index
    assert ("weak", "credit_card") not in offers.index
    assert "expired" not in offers.index.get_level_values(0)
    funnel = result.funnel.set_index("category")
    assert funnel.loc["credit_card", "upsell_candidates"] == 4  # classic, gold, weak, expired
    assert funnel.loc["credit_card", "upsell_eligible"] == 2
    assert funnel.loc["credit_card", "non_holders"] == 0 and funnel.loc["credit_card", "eligible"] == 0


def test_wealth_for_a_time_deposit_holder_is_an_up_sell_within_the_tolerance():
    people = _people([
        ("c2_td", "C2", True, True, "mass", "A"),
        ("c3_td", "C3", True, True, "mass", "A"),
        ("c3_none", "C3", True, True, "mass", "A"),
        ("c1_td", "C1", True, True, "mass", "A"),
    ])
    ids = people.index
    propensity = pd.DataFrame({"credit_card": 0.0, "time_deposit": [np.nan, np.nan, 0.1, np.nan],
                               "wealth_management": 0.3}, index=ids)
    held = pd.DataFrame({"credit_card": False, "time_deposit": [True, True, False, True],
                         "wealth_management": False}, index=ids)
    result = _run(people, propensity, held, None, None)
    wm = result.offers[result.offers["category"] == "wealth_management"].set_index("customer_id")
    # C2 never gets the R3 product: the R2 one; C3 the R3 one (higher margin)
    assert wm.loc["c2_td", "product_id"] == "W2" and wm.loc["c3_td", "product_id"] == "W3"
    assert wm.loc["c2_td", "offer_kind"] == wm.loc["c3_td", "offer_kind"] == "up_sell"
    # 0.3 x 0.6 % x 1,000 x 3/12 = 0.45
    assert wm.loc["c2_td", "expected_value"] == pytest.approx(0.45)
    assert wm.loc["c3_none", "offer_kind"] == "cross_sell"  # no deposit to move up from
    assert "c1_td" not in wm.index  # nothing within C1
    assert result.funnel.set_index("category").loc["wealth_management", "excluded_suitability"] == 1


def test_without_consent_no_up_sell_reaches_a_campaign():
    people = _people([("yes", "C3", True, True, "mass", "A"), ("no", "C3", True, False, "mass", "A")])
    ids = people.index
    propensity = pd.DataFrame({"credit_card": np.nan, "time_deposit": np.nan, "wealth_management": 0.2}, index=ids)
    held = pd.DataFrame({"credit_card": True, "time_deposit": True, "wealth_management": False}, index=ids)
    tiers = pd.DataFrame({"credit_card": [1.0, 1.0]}, index=ids)
    upgrade = pd.DataFrame({"credit_card": [0.2, 0.2]}, index=ids)
    result = _run(people, propensity, held, tiers, upgrade)
    offers = result.offers
    assert set(offers.loc[offers["customer_id"] == "no", "offer_kind"]) == {"up_sell"}
    # Stored for an adviser, never on a campaign list (campaign lists read consenting offers only).
    assert not offers.loc[offers["customer_id"] == "no", "marketing_consent"].any()
    assert offers.loc[offers["customer_id"] == "yes", "marketing_consent"].all()
    funnel = result.funnel.set_index("category")
    assert funnel.loc["wealth_management", "excluded_no_consent"] == 1
    assert funnel.loc["wealth_management", "campaign_pool"] == 1


def test_upgrade_rates_are_counted_by_hand():
    ids = pd.Index([f"c{i}" for i in range(6)])
    then = pd.DataFrame({"credit_card": [1, 1, 1, 2, 2, np.nan]}, index=ids, dtype=float)
    opened = pd.DataFrame({"credit_card": [2, np.nan, 1, 3, np.nan, 1]}, index=ids, dtype=float)
    tiers = pd.Series(["mass", "mass", "affluent", "mass", "mass", "mass"], index=ids)
    rates = upgrade_rates(then, opened, tiers)
    cell = rates.set_index(["tier_rank", "value_tier"])["rate"]
    # classic, mass: c0 moved up, c1 did not -> 1/2; classic, affluent: c2 opened another classic -> 0
    assert cell[(1.0, "mass")] == pytest.approx(0.5) and cell[(1.0, "affluent")] == 0.0
    overall = rates[rates["value_tier"].isna()].set_index("tier_rank")["rate"]
    assert overall[1.0] == pytest.approx(1 / 3) and overall[2.0] == pytest.approx(0.5)
    now = pd.DataFrame({"credit_card": [1.0, 2.0, 1.0, np.nan]}, index=["a", "b", "c", "d"])
    p = upgrade_propensity(now, pd.Series(["mass", "mass", "wealth", "mass"], index=now.index), rates)
    # c: no classic holder of the wealth tier was seen, so the classic rate over all tiers
    assert p["credit_card"].tolist()[:3] == pytest.approx([0.5, 0.5, 1 / 3]) and np.isnan(p.loc["d", "credit_card"])


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_property_no_rule_is_ever_violated_with_up_sell(data):
    n = data.draw(st.integers(1, 15))
    pick = lambda values: data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))  # noqa: E731
    people = pd.DataFrame({
        "risk_tolerance": pick(["C1", "C2", "C3", "C4", "C5", None]),
        "assessment_valid": pick([True, False]),
        "marketing_consent": pick([True, False]),
        "value_tier": pick(["mass", "affluent", "wealth", "private"]),
        "credit_grade": pick([*CREDIT_GRADES, None]),
        "credit_complaint": pick([True, False]),
    }, index=[f"c{i}" for i in range(n)])
    levels = data.draw(st.lists(st.sampled_from(["R1", "R2", "R3", "R4", "R5"]), min_size=6, max_size=6))
    products = PRODUCTS.assign(risk_level=levels)
    held = pd.DataFrame({c: pick([True, False]) for c in CATEGORIES}, index=people.index)
    p = pd.DataFrame({c: [data.draw(st.floats(0, 1)) for _ in range(n)] for c in CATEGORIES}, index=people.index)
    propensity = p.where(~held)
    tiers = pd.DataFrame({"credit_card": np.where(held["credit_card"], pick([1.0, 2.0, 3.0]), np.nan)},
                         index=people.index)
    upgrade = pd.DataFrame({"credit_card": pick([0.0, 0.1, 0.5, np.nan])}, index=people.index)
    minimum = data.draw(st.sampled_from(CREDIT_GRADES))
    result = recommend(propensity, people, products, BALANCES, top_n=data.draw(st.integers(1, 3)),
                       campaign_size=data.draw(st.integers(1, 30)), horizon_months=3, credit_min_grade=minimum,
                       held=held, held_tier=tiers, upgrade_propensity=upgrade)
    offers = result.offers.merge(products, on=["product_id", "category"]).merge(
        people, left_on="customer_id", right_index=True, suffixes=("", "_c"))
    assert len(offers) == len(result.offers)
    assert set(offers["offer_kind"]) <= {"cross_sell", "up_sell"}
    assert (offers["risk_level"].str[1].astype(int) <= offers["risk_tolerance"].str[1].astype(int)).all()
    assert offers["assessment_valid"].all()
    assert (offers["marketing_consent"] == offers["marketing_consent_c"]).all()
    credit = offers[offers["category"].isin(CREDIT_CATEGORIES)]
    assert credit_grade_ok(credit["credit_grade"], minimum).all()
    assert not credit["credit_complaint"].any()
    # An up-sell stays within what the customer holds: a better tier of a held category, or wealth
    # management to a time-deposit holder; a cross-sell is of a category not held.
    up = offers[offers["offer_kind"] == "up_sell"]
    for row in up.itertuples():
        if row.category == "credit_card":
            assert held.loc[row.customer_id, "credit_card"] and row.tier_rank > tiers.loc[row.customer_id, "credit_card"]
        else:
            assert row.category == "wealth_management" and held.loc[row.customer_id, "time_deposit"]
            assert not held.loc[row.customer_id, "wealth_management"]
    cross = offers[offers["offer_kind"] == "cross_sell"]
    assert not any(held.loc[r.customer_id, r.category] for r in cross.itertuples())
    funnel = result.funnel.set_index("category")
    parts = funnel[["excluded_expired_assessment", "excluded_suitability", "excluded_credit_grade",
                    "excluded_credit_complaint", "eligible"]].sum(axis=1)
    assert (parts == funnel["non_holders"]).all()
    counts = up[up["category"] == "credit_card"]
    assert len(counts) <= funnel.loc["credit_card", "upsell_eligible"] <= funnel.loc["credit_card", "upsell_candidates"]
    has = result.customers["next_best_category"].notna()
    assert (result.customers["no_offer_reason"].isna() == has).all()
    assert (result.customers["next_best_offer_kind"].notna() == has).all()


def test_an_older_store_gets_the_added_columns(engine):
    sqlite_engine = engine  # SQLite and PostgreSQL
    metadata.create_all(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.execute(text("ALTER TABLE products DROP COLUMN tier_rank"))
        conn.execute(text("ALTER TABLE next_best_product DROP COLUMN offer_kind"))
        conn.execute(text("ALTER TABLE cross_sell_categories DROP COLUMN upsell_candidates"))
        conn.execute(text("INSERT INTO products (product_id, name, category, risk_level, annual_margin, "
                          "balance_side) VALUES ('P1', 'card', 'credit_card', 'R1', 0.08, 'liability')"))
    with pytest.raises(Exception, match="products.tier_rank"):
        check_columns(sqlite_engine)
    init_schema(sqlite_engine)
    check_columns(sqlite_engine)
    assert "offer_kind" in {c["name"] for c in inspect(sqlite_engine).get_columns("next_best_product")}
    row = read_frame(sqlite_engine, "SELECT product_id, tier_rank FROM products")
    assert row["product_id"].tolist() == ["P1"] and row["tier_rank"].isna().all()
    init_schema(sqlite_engine)  # idempotent

THRESHOLDS = (50_000.0, 500_000.0, 6_000_000.0)


def test_a_rising_aum_is_one_near_the_next_tier_and_growing():
    frame = pd.DataFrame([
        # aum, 3-month change, tier, rising?
        (45_000, 0.25, "mass", True),            # 90 % of 50,000 and up 25 %
        (40_000, 0.10, "mass", True),            # exactly 80 % and exactly 10 %
        (39_999, 0.50, "mass", False),           # not yet 80 % of the way
        (45_000, 0.09, "mass", False),           # not growing enough
        (45_000, np.nan, "mass", False),         # no change known
        (450_000, 0.20, "affluent", True),       # 90 % of 500,000
        (100_000, 0.90, "affluent", False),      # growing fast, far from the next tier
        (5_000_000, 0.12, "wealth", True),       # 83 % of 6,000,000
        (9_000_000, 0.50, "private", False),     # the top tier has nowhere to rise to
        (np.nan, 0.50, "mass", False),
    ], columns=["aum", "change", "tier", "rising"])
    got = cross_sell.rising_to_next_tier(frame["aum"], frame["change"], frame["tier"], THRESHOLDS)
    assert got.tolist() == frame["rising"].tolist()


def test_a_tiers_products_are_what_it_holds_markedly_more_than_the_tier_below():
    # mass: 10 customers, affluent: 10, wealth: 4, private: none.
    tiers = pd.Series(["mass"] * 10 + ["affluent"] * 10 + ["wealth"] * 4, index=[f"c{i}" for i in range(24)])
    held = pd.DataFrame(False, index=tiers.index, columns=["fund", "insurance", "time_deposit"])
    held.loc[tiers.index[:2], "fund"] = True               # mass 20 %
    held.loc[tiers.index[10:14], "fund"] = True            # affluent 40 %: 2x -> affluent's product
    held.loc[tiers.index[10:11], "insurance"] = True       # affluent 10 % (mass 0 %) -> affluent's too
    held.loc[tiers.index[:5], "time_deposit"] = True       # mass 50 %
    held.loc[tiers.index[10:17], "time_deposit"] = True    # affluent 70 %: only 1.4x -> not
    held.loc[tiers.index[20:22], "fund"] = True            # wealth 50 %: 1.25x affluent -> not
    held.loc[tiers.index[20:24], "insurance"] = True       # wealth 100 %: 10x -> wealth's product
    assert cross_sell.tier_categories(held, tiers) == {"affluent": ("fund", "insurance"), "wealth": ("insurance",),
                                                       "private": ()}


def test_a_rising_customer_is_offered_the_next_tiers_products_as_an_up_sell():
    people = _people([
        ("rising", "C3", True, True, "mass", "A"),
        ("steady", "C3", True, True, "mass", "A"),
        ("rising_c1", "C1", True, True, "mass", "A"),
        ("rising_expired", "C3", False, True, "mass", "A"),
    ])
    ids = people.index
    propensity = pd.DataFrame({"credit_card": 0.05, "time_deposit": 0.2, "wealth_management": 0.3}, index=ids)
    held = pd.DataFrame(False, index=ids, columns=CATEGORIES)
    rising = pd.Series([True, False, True, True], index=ids)
    result = _run(people, propensity, held, None, None, rising=rising,
                  next_tier_products={"affluent": ("wealth_management",), "wealth": (), "private": ()})
    offers = result.offers.set_index(["customer_id", "category"])
    assert offers.loc[("rising", "wealth_management"), "offer_kind"] == "up_sell"
    assert offers.loc[("rising", "time_deposit"), "offer_kind"] == "cross_sell"  # not the next tier's product
    assert offers.loc[("steady", "wealth_management"), "offer_kind"] == "cross_sell"
    # The same product and expected value as without the label: 0.3 x 0.7 % (W3 at C3) x 1,000 x 3/12.
    assert offers.loc[("rising", "wealth_management"), "product_id"] == "W3"
    assert offers.loc[("rising", "wealth_management"), "expected_value"] == pytest.approx(0.525)
    assert offers.loc[("rising", "wealth_management"), "expected_value"] == \
        offers.loc[("steady", "wealth_management"), "expected_value"]
    # The guards hold: nothing within C1, nothing at all on an expired assessment.
    assert ("rising_c1", "wealth_management") not in offers.index
    assert "rising_expired" not in offers.index.get_level_values(0)
    # Without the tier's products no label changes.
    plain = _run(people, propensity, held, None, None, rising=rising, next_tier_products={})
    assert set(plain.offers["offer_kind"]) == {"cross_sell"}


# -------------------------------------------------------------------------------------------------
# On the session's demo store


def test_demo_up_sell_offers_follow_the_rules(demo_engine):
    run = current_run_id(demo_engine)
    offers = read_frame(demo_engine, """
        SELECT n.customer_id, n.category, n.product_id, n.offer_kind, p.tier_rank, p.risk_level,
               c.risk_tolerance, c.credit_grade FROM next_best_product n
        JOIN products p ON p.product_id = n.product_id JOIN customers c ON c.customer_id = n.customer_id
        WHERE n.run_id = :r""", {"r": run})
    up = offers[offers["offer_kind"] == "up_sell"]
    assert {"credit_card", "wealth_management"} <= set(up["category"])
    # Any other up-sell is a rising AUM's: a product of the next value tier (as the run recorded
    # them: asset categories only) for a customer whose AUM is near that tier and rising.
    metrics = read_frame(demo_engine, "SELECT name, text_value FROM run_metrics WHERE run_id = :r AND name LIKE "
                                      "'cross_sell.next_tier_products.%'", {"r": run})
    next_products = {row.name.rsplit(".", 1)[1]: set(filter(None, (row.text_value or "").split(",")))
                     for row in metrics.itertuples()}
    assert set(next_products) == {"affluent", "wealth", "private"}
    assert not set().union(*next_products.values()) & set(CREDIT_CATEGORIES)
    rising = up[~up["category"].isin(["credit_card", "wealth_management"])]
    assert len(rising) > 0
    aum = read_frame(demo_engine, """
        SELECT cm.customer_id, cm.month, cm.aum FROM customer_monthly cm
        WHERE cm.month IN (SELECT MAX(month) FROM customer_monthly)
           OR cm.month IN (SELECT MAX(month) FROM customer_monthly WHERE month <= (
                           SELECT DATE(MAX(month), '-3 months') FROM customer_monthly))""")
    aum = aum.pivot(index="customer_id", columns="month", values="aum").sort_index(axis=1)
    now, before = aum.iloc[:, -1].fillna(0.0), aum.iloc[:, 0].fillna(0.0)  # no row: zero (features.py)
    tiers = value_tiers(now).astype(str)
    thresholds = dict(zip(["mass", "affluent", "wealth"], value_tier_thresholds(), strict=True))
    order = ["mass", "affluent", "wealth", "private"]
    for row in rising.itertuples():
        tier = tiers[row.customer_id]
        assert tier != "private", row
        assert row.category in next_products[order[order.index(tier) + 1]], row
        assert now[row.customer_id] >= 0.8 * thresholds[tier] and now[row.customer_id] > before[row.customer_id], row
    cards = up[up["category"] == "credit_card"]
    held = read_frame(demo_engine, """
        SELECT h.customer_id, MAX(p.tier_rank) AS held FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE p.category = 'credit_card' AND h.closed_on IS NULL GROUP BY h.customer_id""").set_index("customer_id")
    # the next tier after the best card held, never the same one
    assert (cards["tier_rank"].to_numpy() == held["held"].reindex(cards["customer_id"]).to_numpy() + 1).all()
    assert credit_grade_ok(offers[offers["category"].isin(CREDIT_CATEGORIES)]["credit_grade"], "BBB").all()
    assert (up["risk_level"].str[1].astype(int) <= up["risk_tolerance"].str[1].astype(int)).all()
    mix = first_offer_mix(demo_engine, run, viewer=access.Viewer("m", ("marketing",))).set_index("category")
    first = read_frame(demo_engine, "SELECT next_best_category AS category, COUNT(*) AS n FROM cross_sell_customer "
                                    "WHERE run_id = :r AND next_best_offer_kind = 'up_sell' GROUP BY 1", {"r": run})
    assert mix["up_sell_customers"].sum() == first["n"].sum() > 0
    for row in first.itertuples():
        assert mix.loc[row.category, "up_sell_customers"] == row.n


def test_demo_cards_have_tiers_and_upgrades(demo_engine):
    tiers = read_frame(demo_engine, "SELECT product_id, category, tier_rank FROM products").set_index("product_id")
    assert tiers.loc[["P021", "P026", "P022"], "tier_rank"].tolist() == [1, 2, 3]
    assert tiers.drop(index=["P021", "P026", "P022"])["tier_rank"].isna().all()
    # An upgrade closes the old card the day the next tier's card opens, and moves up one tier.
    moves = read_frame(demo_engine, """
        SELECT a.customer_id, pa.tier_rank AS old_tier, pb.tier_rank AS new_tier, b.balance AS new_balance
        FROM holdings a JOIN holdings b ON b.customer_id = a.customer_id AND b.opened_on = a.closed_on
             AND b.holding_id <> a.holding_id
        JOIN products pa ON pa.product_id = a.product_id JOIN products pb ON pb.product_id = b.product_id
        WHERE pa.category = 'credit_card' AND pb.category = 'credit_card' AND a.balance = 0""")
    assert len(moves) > 0
    assert (moves["new_tier"] == moves["old_tier"] + 1).all()


def test_a_products_file_may_give_tier_ranks(sqlite_engine, tmp_path):
    from analytics.loader import load_files

    init_schema(sqlite_engine)
    path = tmp_path / "products.csv"
    path.write_text("product_id,name,category,risk_level,annual_margin,balance_side,tier_rank\n"
                    "K1,classic,credit_card,R1,0.08,liability,1\n"
                    "K2,gold,credit_card,R1,0.085,liability,2\n"
                    "TD,deposit,time_deposit,R1,0.008,asset,\n", encoding="utf-8")
    report = load_files(sqlite_engine, [path], "products")
    assert report.rows_loaded == 3 and report.rows_rejected == 0
    rows = read_frame(sqlite_engine, "SELECT product_id, tier_rank FROM products ORDER BY product_id")
    assert rows["tier_rank"].tolist()[:2] == [1, 2] and pd.isna(rows["tier_rank"].iloc[2])
    old = tmp_path / "old.csv"  # a file without the column still loads: the tier is optional
    old.write_text("product_id,name,category,risk_level,annual_margin,balance_side\n"
                   "F1,fund,fund,R3,0.01,asset\n", encoding="utf-8")
    assert load_files(sqlite_engine, [old], "products").rows_loaded == 1
