"""Cross-sell chart builders: figures from aggregates, checked by their data and titles (never
pixels), and free of personal data."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics import charts_cross_sell as charts
from analytics.access import Viewer
from analytics.cross_sell import (
    association_rules,
    campaign_list,
    read_cooccurrence,
    read_opportunities,
    read_rules,
)
from analytics.runs import current_run_id, get_run_metrics
from analytics.store import read_frame

COUNTS = pd.DataFrame([[100, 20, 5], [20, 40, 2], [5, 2, 10]],
                      index=["mortgage", "insurance", "fund"], columns=["mortgage", "insurance", "fund"])


def test_cooccurrence_lift_by_hand():
    fig = charts.cooccurrence_heatmap(COUNTS, customers_total=1000)
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text == "Product holdings: lift of holding both categories"
    heat = fig.data[0]
    assert list(heat.x) == ["mortgage", "insurance", "fund"] and list(heat.y) == list(heat.x)
    z = np.asarray(heat.z, dtype=float)
    # mortgage x insurance: 1000 * 20 / (100 * 40) = 5.0; fund x insurance: 1000 * 2 / (10 * 40) = 5.0
    assert z[0, 1] == pytest.approx(5.0) and z[1, 0] == pytest.approx(5.0)
    assert z[0, 2] == pytest.approx(5.0) and z[1, 2] == pytest.approx(5.0)
    assert np.isnan(np.diag(z)).all()
    # From 0 (a lift is never negative) to the largest lift, white exactly at 1 (independence).
    assert heat.zmin == 0.0 and heat.zmax == pytest.approx(np.nanmax(z))
    white = [c for pos, c in heat.colorscale if c == "#f7f7f7"]
    assert white and [pos for pos, c in heat.colorscale if c == "#f7f7f7"][0] * heat.zmax == pytest.approx(1.0)


def test_cooccurrence_counts_share_and_chinese():
    fig = charts.cooccurrence_heatmap(COUNTS, metric="customers_both", lang="zh")
    assert np.asarray(fig.data[0].z).tolist() == COUNTS.to_numpy().tolist()
    assert list(fig.data[0].x) == ["住房贷款", "保险", "基金"]
    share = np.asarray(charts.cooccurrence_heatmap(COUNTS, metric="share").data[0].z, dtype=float)
    assert share[0, 1] == pytest.approx(0.2) and share[1, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="customers_total"):
        charts.cooccurrence_heatmap(COUNTS)
    with pytest.raises(ValueError, match="metric"):
        charts.cooccurrence_heatmap(COUNTS, 10, metric="pixels")


def test_rules_scatter_from_computed_and_stored_rules():
    holdings = pd.DataFrame({"mortgage": [1, 1, 1, 0, 0, 0], "insurance": [1, 1, 0, 0, 0, 1],
                             "fund": [0, 1, 0, 1, 1, 0]})
    rules = association_rules(holdings, 0.1, 0.1)
    fig = charts.rules_scatter(rules)
    points = fig.data[0]
    assert fig.layout.title.text == "Association rules: support × confidence, coloured by lift"
    assert list(points.x) == rules["support"].tolist() and list(points.y) == rules["confidence"].tolist()
    assert list(points.marker.color) == rules["lift"].tolist()
    assert points.text[0] == charts.rule_label(rules["antecedents"].iloc[0], rules["consequents"].iloc[0])
    stored = rules.assign(antecedents=[json.dumps(sorted(a)) for a in rules["antecedents"]],
                          consequents=[json.dumps(sorted(c)) for c in rules["consequents"]])
    assert list(charts.rules_scatter(stored).data[0].text) == list(points.text)
    assert len(charts.rules_scatter(rules, top=2).data[0].x) == 2
    assert charts.rule_label(frozenset({"mortgage", "fund"}), frozenset({"insurance"})) == "fund + mortgage → insurance"


def test_opportunities_bar_sorted_largest_first():
    opp = pd.DataFrame({"category": ["fund", "mortgage"], "product_id": ["P013", "P023"],
                        "product_name": ["偏股混合基金", "个人住房贷款"], "customers": [10, 30],
                        "expected_value_total": [50.0, 900.0]})
    fig = charts.opportunities_bar(opp)
    assert list(fig.data[0].x) == ["P023 个人住房贷款", "P013 偏股混合基金"]
    assert list(fig.data[0].y) == [900.0, 50.0]
    assert list(fig.data[0].customdata) == ["mortgage", "fund"]
    assert fig.layout.title.text == "Cross-sell opportunities by product: expected margin over the horizon (CNY)"
    assert list(charts.opportunities_bar(opp, metric="customers").data[0].y) == [30.0, 10.0]


def test_exclusions_bar():
    fig = charts.exclusions_bar({"expired_assessment": 12, "suitability": 3, "consent": 40}, "insurance", listed=100)
    bar = fig.data[0]
    assert list(bar.y) == [12, 3, 40, 100]
    assert list(bar.x) == ["risk assessment expired or missing", "product above risk tolerance",
                           "no marketing consent", "on the list"]
    assert fig.layout.title.text == "Campaign for insurance: customers left out, by reason"
    zh = charts.exclusions_bar({"consent": 1}, "fund", lang="zh")
    assert zh.layout.title.text == "基金营销活动：按原因排除的客户"


@pytest.mark.parametrize("builder", [
    lambda: charts.cooccurrence_heatmap(pd.DataFrame(), 0, metric="customers_both"),
    lambda: charts.rules_scatter(pd.DataFrame()),
    lambda: charts.opportunities_bar(pd.DataFrame()),
    lambda: charts.exclusions_bar({}, "fund"),
])
def test_empty_inputs_say_to_refresh(builder):
    fig = builder()
    assert fig.layout.annotations[0].text == "No results yet: run a refresh."


def test_bad_language_is_refused():
    with pytest.raises(ValueError, match="lang"):
        charts.rules_scatter(pd.DataFrame(), lang="fr")


def test_demo_charts_hold_no_personal_data(demo_engine):
    run = current_run_id(demo_engine)
    total = int(get_run_metrics(demo_engine, run)["cross_sell.matrix_customers"])
    listed, excluded = campaign_list(demo_engine, run, "insurance", viewer=Viewer("t", ("marketing",)), limit=50)
    figures = [
        charts.cooccurrence_heatmap(read_cooccurrence(demo_engine), total),
        charts.rules_scatter(read_rules(demo_engine)),
        charts.opportunities_bar(read_opportunities(demo_engine)),
        charts.exclusions_bar(excluded, "insurance", listed=len(listed)),
    ]
    people = read_frame(demo_engine, "SELECT customer_id, name, phone FROM customers")
    for fig in figures:
        assert len(fig.data) >= 1
        payload = fig.to_json()
        assert "C1000" not in payload  # no customer id
        for value in people["name"].dropna().head(200):
            assert value not in payload
