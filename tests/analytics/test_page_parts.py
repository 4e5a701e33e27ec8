"""What pages used to compute themselves, now in analytics: the Data quality page's parts, the Risk
page's headline, the cross-sell rules in words and Customer 360's balance chart."""

import datetime as dt

import pandas as pd

from analytics import charts_cross_sell, charts_customer360, charts_quality, charts_risk


def test_quality_page_parts():
    scores = pd.DataFrame([
        {"scope": "overall", "scope_value": None, "dimension": "overall", "score": 0.9},
        {"scope": "overall", "scope_value": None, "dimension": "completeness", "score": 0.8},
        {"scope": "branch", "scope_value": "BR002", "dimension": "overall", "score": 0.7},
        {"scope": "branch", "scope_value": "BR001", "dimension": "overall", "score": 0.95},
        {"scope": "branch", "scope_value": "BR001", "dimension": "validity", "score": 0.95},
        {"scope": "channel", "scope_value": "app", "dimension": "overall", "score": 0.9},
    ])
    results = pd.DataFrame({"rule": ["a", "b", "c"], "failed": [0, 3, 1]})
    change = pd.DataFrame({"dimension": ["overall"], "previous_score": [float("nan")]})
    parts = charts_quality.page_parts(results, scores, change)
    assert parts["overall_score"] == 0.9 and parts["previous_overall"] is None
    assert len(parts["overall"]) == 2 and set(parts["by_scope"]) == {"branch", "channel"}
    assert len(parts["by_scope"]["branch"]) == 3 and parts["branches"] == ["BR001", "BR002"]
    assert parts["failing_rules"] == ["b", "c"]
    change = pd.DataFrame({"dimension": ["overall"], "previous_score": [0.85]})
    assert charts_quality.page_parts(results, scores, change)["previous_overall"] == 0.85


def test_risk_headline_sums_the_branches():
    summary = pd.DataFrame({"branch_id": ["BR001", "BR002"], "customers": [10, 5],
                            "suitability_mismatch_customers": [2, 1], "assessments_expired": [0, 4],
                            "balance_drops": [1, 0]})
    assert charts_risk.headline(summary) == {"customers": 15, "mismatches": 3, "expired": 4, "balance_drops": 1}


def test_rules_table_names_the_rules():
    rules = pd.DataFrame({"antecedents": [["mortgage"]], "consequents": [["insurance"]], "support": [0.1],
                          "confidence": [0.5], "lift": [2.0], "extra": [1]})
    table = charts_cross_sell.rules_table(rules, lang="en")
    assert list(table.columns) == ["rule", "support", "confidence", "lift"]
    assert "→" in table["rule"].iloc[0]


def test_balances_chart_has_a_line_per_balance():
    series = pd.DataFrame({"month": [dt.date(2026, 9, 1), dt.date(2026, 10, 1)], "aum": [1.0, 2.0],
                           "deposit_balance": [1.0, 1.5], "loan_balance": [0.0, 3.0]})
    fig = charts_customer360.balances_chart(series, lang="zh")
    assert [list(t.y) for t in fig.data] == [[1.0, 2.0], [1.0, 1.5], [0.0, 3.0]]
    assert all(t.mode == "lines+markers" for t in fig.data)
    assert [t.name for t in charts_customer360.balances_chart(series, lang="en").data] == \
        ["AUM", "Deposits", "Loans"]


def test_profile_table_lists_fields_and_values():
    profile = pd.DataFrame([{"customer_id": "C1", "name": "张**", "status": "active"}])
    table = charts_customer360.profile_table(profile)
    assert table.to_dict("records") == [{"field": "customer_id", "value": "C1"}, {"field": "name", "value": "张**"},
                                        {"field": "status", "value": "active"}]
