"""Churn chart builders: the figures carry the right numbers, order, titles and languages."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics.charts_churn import (
    calibration_plot,
    churn_rate_bar,
    importance_bar,
    lift_chart,
    model_choice_text,
)
from analytics.churn import calibration_table, lift_table

RATES = pd.DataFrame({
    "dimension": "value_tier", "value": ["wealth", "mass", "affluent"], "sort_order": [2, 0, 1],
    "customers": [10, 300, 90], "mean_probability": [0.01, 0.05, 0.02], "expected_churners": [0.1, 15, 1.8],
    "holdout_customers": [12, 280, 95], "holdout_churners": [0, 14, 2],
    "holdout_churn_rate": [0.0, 0.05, 2 / 95],
})
BRANCHES = pd.DataFrame({
    "dimension": "branch_id", "value": ["BR001", "BR002", "BR003"], "sort_order": [0, 1, 2],
    "customers": [100, 50, 70], "mean_probability": [0.02, 0.06, None], "expected_churners": [2, 3, 0],
    "holdout_customers": [90, 60, 0], "holdout_churners": [9, 3, 0], "holdout_churn_rate": [0.1, 0.05, None],
})


def _empty_message(fig: go.Figure) -> str:
    return fig.layout.annotations[0].text


def test_rate_bars_keep_the_tier_order_and_show_rates():
    fig = churn_rate_bar(RATES, "value_tier")
    assert fig.layout.title.text == "Churn rate by value tier (hold-out period, observed)"
    bar = fig.data[0]
    assert list(bar.x) == ["Mass", "Affluent", "Wealth"]
    assert list(bar.y) == pytest.approx([0.05, 2 / 95, 0.0])
    assert list(bar.customdata) == [280, 95, 12]
    assert list(bar.text) == ["5.0%", "2.1%", "0.0%"]


def test_branch_bars_are_sorted_by_rate_and_skip_empty_values():
    fig = churn_rate_bar(BRANCHES, "branch_id", measure="predicted")
    assert list(fig.data[0].x) == ["BR002", "BR001"]  # BR003 has no active customer now
    assert list(fig.data[0].y) == pytest.approx([0.06, 0.02])
    assert fig.layout.title.text.startswith("Predicted churn probability by branch")


def test_rate_bars_in_chinese_and_bad_arguments():
    fig = churn_rate_bar(RATES, "value_tier", lang="zh")
    assert list(fig.data[0].x) == ["大众客户", "富裕客户", "财富客户"]
    assert fig.layout.title.text == "按价值分层的流失率（验证期实际）"
    with pytest.raises(ValueError, match="measure"):
        churn_rate_bar(RATES, "value_tier", measure="both")
    with pytest.raises(ValueError, match="lang"):
        churn_rate_bar(RATES, "value_tier", lang="fr")


def test_lift_chart_has_lift_bars_and_a_capture_line():
    lift = lift_table([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], n_bins=5)
    fig = lift_chart(lift)
    bars, line = fig.data
    assert bars.type == "bar" and line.type == "scatter" and line.yaxis == "y2"
    assert list(bars.x) == [1, 2, 3, 4, 5]
    assert list(bars.y) == pytest.approx([2.5, 2.5, 0, 0, 0])
    assert list(line.y) == pytest.approx([0.5, 1, 1, 1, 1])
    assert fig.layout.title.text == "Lift and capture by score decile (hold-out)"
    assert fig.layout.shapes[0].y0 == 1.0  # the average-rate reference line


def test_calibration_plot_has_the_diagonal_and_the_bins():
    table = calibration_table([0, 0, 1, 1, 1], [0.05, 0.15, 0.15, 0.95, 1.0])
    fig = calibration_plot(table, lang="zh")
    diagonal, points = fig.data
    assert list(diagonal.x) == [0, 1] and list(diagonal.y) == [0, 1]
    assert list(points.x) == pytest.approx([0.05, 0.15, 0.975])
    assert list(points.y) == pytest.approx([0.0, 0.5, 1.0])
    assert list(points.customdata) == [1, 2, 2]
    assert fig.layout.title.text == "校准：预测与实际流失率（验证期）"


def test_importance_bar_puts_the_top_feature_on_top():
    table = pd.DataFrame({"feature": ["a", "b", "c"], "importance_mean": [0.01, 0.2, 0.05],
                          "importance_std": [0.001, 0.02, 0.005], "rank": [3, 1, 2],
                          "description": ["A", "B", "C"]})
    fig = importance_bar(table, top=2)
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.y) == ["c", "b"]  # plotly draws the last bar on top
    assert list(bar.x) == pytest.approx([0.05, 0.2])
    assert list(bar.error_x.array) == pytest.approx([0.005, 0.02])
    assert list(bar.customdata) == ["C", "B"]


@pytest.mark.parametrize("build", [
    lambda: churn_rate_bar(pd.DataFrame(), "branch_id"),
    lambda: lift_chart(pd.DataFrame()),
    lambda: calibration_plot(pd.DataFrame()),
    lambda: importance_bar(pd.DataFrame()),
])
def test_empty_tables_give_a_message_not_an_error(build):
    fig = build()
    assert len(fig.data) == 0
    assert _empty_message(fig) == "No results yet: run a refresh."


def test_lift_chart_capture_axis_ticks_at_quarters():
    lift = lift_table([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], n_bins=5)
    fig = lift_chart(lift)
    assert list(fig.layout.yaxis2.tickvals) == [0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(("lang", "expected"), [("en", ["AUM change %, 3 months", "age"]),
                                                 ("zh", ["3个月资产变动率", "年龄"])])
def test_importance_bar_names_features_in_the_language(lang, expected):
    table = pd.DataFrame({"feature": ["age", "aum_change_pct_3m"], "importance_mean": [0.2, 0.1],
                          "importance_std": [0.0, 0.0]})
    bar = importance_bar(table.assign(description=["age in years", "AUM change"]), lang=lang).data[0]
    assert list(bar.y) == expected
    assert list(bar.customdata) == (["AUM change", "age in years"] if lang == "en" else expected)


def test_the_chosen_model_in_words():
    blend = '{"C": 0.1, "cv_auc": 0.91234, "kind": "blend", "trees": "default", "weight": 0.7}'
    assert model_choice_text(blend, "en") == ("Model chosen by cross-validation on the training data: blend of 70% "
                                              "gradient boosting and 30% logistic regression (C = 0.1) "
                                              "(cross-validated ROC AUC 0.912)")
    assert "梯度提升树 70% 与逻辑回归 30%（C = 0.1）" in model_choice_text(blend, "zh")
    trees = {"C": None, "cv_auc": 0.9, "kind": "trees", "trees": "default", "weight": 1.0}
    assert model_choice_text(trees, "zh") == "按训练数据交叉验证选定的模型：梯度提升树（交叉验证 ROC AUC 0.900）"
    logistic = {"C": 10.0, "cv_auc": 0.8, "kind": "logistic", "trees": None, "weight": 0.0}
    assert "logistic regression (C = 10)" in model_choice_text(logistic, "en")
    assert model_choice_text(None) is None and model_choice_text("not json") is None
