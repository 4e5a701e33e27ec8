"""Risk chart builders: figures from aggregates, checked by their data and titles (never pixels),
and free of personal data."""

import numpy as np
import pandas as pd
import pytest

from analytics import charts_risk as charts
from analytics.access import Viewer
from analytics.risk import read_branch_summary, risk_crosstab, risk_value_matrix

RISK = Viewer("tester", ("risk",))  # bank-wide, exact balances


def _crosstab(rows, columns, values, by="branch_id", of="risk_tolerance"):
    table = pd.DataFrame(values, index=rows, columns=columns)
    table.index.name, table.columns.name = by, of
    return table


def test_tolerance_by_branch_stacks_one_trace_per_level():
    table = _crosstab(["BR001", "BR002"], ["C1", "C3", "(missing)"], [[5, 10, 1], [0, 4, 0]])
    fig = charts.tolerance_by_branch(table)
    assert fig.layout.title.text == "Risk tolerance by branch"
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["C1", "C3", "(missing)"]
    assert list(fig.data[1].x) == ["BR001", "BR002"] and list(fig.data[1].y) == [10, 4]
    assert fig.data[0].marker.color == "#38761d" and fig.data[2].marker.color == "#999999"
    shares = charts.tolerance_by_branch(table, normalize=True)
    assert np.allclose(np.sum([t.y for t in shares.data], axis=0), 1.0)
    assert shares.layout.yaxis.tickformat == ".0%"


def test_credit_grade_by_value_tier_in_chinese():
    table = _crosstab(["mass", "private"], ["AAA", "CCC"], [[3, 7], [2, 0]], by="value_tier", of="credit_grade")
    fig = charts.credit_grade_by_branch(table, lang="zh")
    assert fig.layout.title.text == "按价值分层的信用等级分布"
    assert list(fig.data[0].x) == ["大众客户", "私人银行客户"]
    assert fig.data[0].marker.color == "#274e13"


def test_risk_value_heatmap():
    matrix = _crosstab(["C1", "C2"], ["mass", "affluent"], [[10, 1], [20, 5]], by="risk_tolerance", of="value_tier")
    fig = charts.risk_value_heatmap(matrix)
    heat = fig.data[0]
    assert fig.layout.title.text == "Risk tolerance × value tier: customers"
    assert list(heat.y) == ["C1", "C2"] and list(heat.x) == ["Mass", "Affluent"]
    assert np.asarray(heat.z).tolist() == [[10, 1], [20, 5]]
    assert charts.risk_value_heatmap(matrix, value="aum").layout.title.text == "Risk tolerance × value tier: AUM (CNY)"


def test_suitability_bar_largest_first():
    summary = pd.DataFrame({"branch_id": ["BR001", "BR002", "BR003"], "customers": [100, 200, 50],
                            "suitability_mismatch_customers": [1, 4, 4], "r4_r5_share": [0.1, np.nan, 0.3]})
    fig = charts.suitability_bar(summary)
    assert list(fig.data[0].x) == ["BR002", "BR003", "BR001"] and list(fig.data[0].y) == [4, 4, 1]
    assert fig.layout.title.text == ("Suitability by branch: customers holding products above their tolerance")
    share = charts.suitability_bar(summary, metric="r4_r5_share", top=2)
    assert list(share.data[0].x) == ["BR003", "BR001"] and share.layout.yaxis.tickformat == ".0%"


@pytest.mark.parametrize("builder", [
    lambda: charts.tolerance_by_branch(pd.DataFrame()),
    lambda: charts.risk_value_heatmap(pd.DataFrame()),
    lambda: charts.suitability_bar(pd.DataFrame()),
])
def test_empty_inputs_say_to_refresh(builder):
    assert builder().layout.annotations[0].text == "No results yet: run a refresh."


def test_demo_charts_hold_no_personal_data(demo_engine):
    figures = [
        charts.tolerance_by_branch(risk_crosstab(demo_engine, None, "branch_id", viewer=RISK)),
        charts.credit_grade_by_branch(risk_crosstab(demo_engine, None, "branch_id", "credit_grade", viewer=RISK)),
        charts.distribution_bars(risk_crosstab(demo_engine, None, "rfm_segment", viewer=RISK), normalize=True),
        charts.risk_value_heatmap(risk_value_matrix(demo_engine, viewer=RISK)),
        charts.suitability_bar(read_branch_summary(demo_engine, viewer=RISK)),
    ]
    assert len(figures[0].data) == 5  # C1..C5, every demo customer is assessed
    assert sum(sum(t.y) for t in figures[0].data) == risk_crosstab(demo_engine, None, "branch_id", viewer=RISK).to_numpy().sum()
    for fig in figures:
        assert "C1000" not in fig.to_json()


def test_suitability_counts_tick_whole_customers():
    import pandas as pd

    from analytics.charts_risk import suitability_bar

    summary = pd.DataFrame({"branch_id": ["B1", "B2"], "customers": [40, 30],
                            "suitability_mismatch_customers": [1, 0], "assessments_expired": [0, 0],
                            "balance_drops": [0, 0], "r4_r5_share": [0.1, 0.2]})
    fig = suitability_bar(summary)
    assert fig.layout.yaxis.dtick == 1 and fig.layout.yaxis.tickformat == ",d"
