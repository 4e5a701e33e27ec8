"""Plotly figures for churn: rates by branch and segment, lift, calibration, feature importance.

Every builder takes an aggregate table of a run, never customer rows, so no personal data can
reach a chart: ``churn_rates`` rows of one dimension (:func:`analytics.churn.read_churn_rates`),
``churn_lift``, ``churn_calibration`` or ``churn_importance``. Each returns a
:class:`plotly.graph_objects.Figure`; ``lang`` is ``"en"`` or ``"zh"``. Lift, calibration and
importance are measured on the time-based hold-out (see :mod:`analytics.churn`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import empty_figure, lang_index
from analytics.charts_segments import SEGMENT_LABELS_ZH, STAGE_LABELS, TIER_LABELS
from analytics.lifecycle import LIFECYCLE_STAGES
from analytics.segmentation import RFM_SEGMENTS, VALUE_TIERS

_TEXT = {
    "rate_holdout": ("Churn rate by {dimension} (hold-out period, observed)", "按{dimension}的流失率（验证期实际）"),
    "rate_predicted": ("Predicted churn probability by {dimension} (active customers now)",
                       "按{dimension}的预测流失概率（当前活跃客户）"),
    "rate_axis_holdout": ("churn rate", "流失率"),
    "rate_axis_predicted": ("mean churn probability", "平均流失概率"),
    "lift": ("Lift and capture by score decile (hold-out)", "按评分十分位的提升度与捕获率（验证期）"),
    "decile": ("score decile (1 = highest risk)", "评分十分位（1 = 风险最高）"),
    "lift_axis": ("lift (× average churn rate)", "提升度（平均流失率的倍数）"),
    "capture": ("cumulative share of churners captured", "累计捕获的流失客户占比"),
    "calibration": ("Calibration: predicted vs observed churn (hold-out)", "校准：预测与实际流失率（验证期）"),
    "predicted": ("mean predicted probability", "平均预测概率"),
    "observed": ("observed churn rate", "实际流失率"),
    "perfect": ("perfectly calibrated", "完全校准"),
    "importance": ("What drives the churn model: permutation importance (hold-out)",
                   "流失模型的主要驱动因素：置换重要性（验证期）"),
    "importance_axis": ("drop in ROC AUC when the feature is shuffled", "打乱该特征后 ROC AUC 的下降"),
    "customers": ("customers", "客户数"),
    "no_data": ("No results yet: run a refresh.", "暂无结果，请先运行刷新。"),
}
DIMENSION_LABELS = {
    "branch_id": ("branch", "网点"), "value_tier": ("value tier", "价值分层"),
    "lifecycle_stage": ("lifecycle stage", "生命周期阶段"), "rfm_segment": ("RFM segment", "RFM 客群"),
}
_ORDERS = {"value_tier": VALUE_TIERS, "lifecycle_stage": LIFECYCLE_STAGES, "rfm_segment": RFM_SEGMENTS}


def _lang(lang: str) -> int:
    return lang_index(lang)


def _t(key: str, lang: str, **fmt) -> str:
    return _TEXT[key][_lang(lang)].format(**fmt)


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, _t("no_data", lang))


def _value_label(dimension: str, value: str, lang: str) -> str:
    i = _lang(lang)
    if dimension == "value_tier":
        return TIER_LABELS.get(value, (value, value))[i]
    if dimension == "lifecycle_stage":
        return STAGE_LABELS.get(value, (value, value))[i]
    if dimension == "rfm_segment" and lang == "zh":
        return SEGMENT_LABELS_ZH.get(value, value)
    return str(value)


def churn_rate_bar(rates: pd.DataFrame, dimension: str, measure: str = "holdout", lang: str = "en") -> go.Figure:
    """Churn by branch, value tier, lifecycle stage or RFM segment, as bars.

    Parameters
    ----------
    rates : pandas.DataFrame
        The ``churn_rates`` rows of ``dimension``: ``value``, ``customers``, ``mean_probability``,
        ``holdout_customers``, ``holdout_churn_rate`` (and ``sort_order``).
    dimension : str
        ``branch_id``, ``value_tier``, ``lifecycle_stage`` or ``rfm_segment``.
    measure : {"holdout", "predicted"}
        ``holdout``: the observed churn rate of the hold-out period; ``predicted``: the mean
        predicted probability of today's active customers.

    Branches are sorted by the measure, highest first; tiers, stages and segments keep their
    natural order.
    """
    if measure not in ("holdout", "predicted"):
        raise ValueError(f"measure must be 'holdout' or 'predicted', not {measure!r}")
    dim_label = DIMENSION_LABELS.get(dimension, (dimension, dimension))[_lang(lang)]
    title = _t(f"rate_{measure}", lang, dimension=dim_label)
    column, count = (("holdout_churn_rate", "holdout_customers") if measure == "holdout"
                     else ("mean_probability", "customers"))
    if rates.empty or column not in rates.columns:
        return _empty(title, lang)
    frame = rates[rates[column].notna()].copy()
    if frame.empty:
        return _empty(title, lang)
    if dimension in _ORDERS:
        rank = {v: i for i, v in enumerate(_ORDERS[dimension])}
        frame["_rank"] = frame["value"].map(lambda v: rank.get(v, len(rank)))
        frame = frame.sort_values(["_rank", "value"])
    else:
        frame = frame.sort_values([column, "value"], ascending=[False, True])
    values = frame[column].astype(float).to_numpy()
    counts = frame[count].fillna(0).astype(int).to_numpy()
    labels = [_value_label(dimension, v, lang) for v in frame["value"]]
    fig = go.Figure(go.Bar(
        x=labels, y=values, marker_color="#cc4125" if measure == "holdout" else "#e69138",
        text=[f"{v:.1%}" for v in values], textposition="outside", customdata=counts,
        hovertemplate="%{x}<br>%{y:.2%}<br>" + _t("customers", lang) + ": %{customdata:,}<extra></extra>",
        name=_t(f"rate_axis_{measure}", lang),
    ))
    fig.update_layout(title=title, yaxis={"title": _t(f"rate_axis_{measure}", lang), "tickformat": ".0%"},
                      xaxis_title=dim_label, showlegend=False)
    return fig


def lift_chart(lift: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Lift per score decile (bars, with the average at 1) and cumulative capture (line, right axis).

    ``lift`` is the ``churn_lift`` table (:func:`analytics.churn.lift_table`).
    """
    title = _t("lift", lang)
    if lift.empty:
        return _empty(title, lang)
    frame = lift.sort_values("decile")
    deciles = frame["decile"].astype(int).tolist()
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=deciles, y=frame["lift"].astype(float).tolist(), name=_t("lift_axis", lang), marker_color="#3d85c6",
        customdata=np.column_stack([frame["customers"], frame["churners"], frame["churn_rate"]]),
        hovertemplate="%{x}: lift %{y:.2f}<br>%{customdata[1]:,} / %{customdata[0]:,}"
                      " (%{customdata[2]:.1%})<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=deciles, y=frame["capture"].astype(float).tolist(), name=_t("capture", lang), yaxis="y2",
        mode="lines+markers", line={"color": "#cc4125"}, hovertemplate="%{x}: %{y:.1%}<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#999999")
    fig.update_layout(
        title=title, xaxis={"title": _t("decile", lang), "dtick": 1},
        yaxis={"title": _t("lift_axis", lang)},
        yaxis2={"title": _t("capture", lang), "overlaying": "y", "side": "right", "range": [0, 1.05],
                "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def calibration_plot(calibration: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Mean predicted probability against the observed churn rate per bin, with the diagonal.

    ``calibration`` is the ``churn_calibration`` table (:func:`analytics.churn.calibration_table`);
    marker size grows with the customers in the bin.
    """
    title = _t("calibration", lang)
    if calibration.empty:
        return _empty(title, lang)
    frame = calibration.sort_values("bin")
    customers = frame["customers"].astype(int).to_numpy()
    size = 8 + 22 * np.sqrt(customers / max(customers.max(), 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=_t("perfect", lang),
                             line={"dash": "dash", "color": "#999999"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=frame["mean_predicted"].astype(float).tolist(), y=frame["observed_rate"].astype(float).tolist(),
        mode="lines+markers", name=_t("observed", lang), marker={"size": size.tolist(), "color": "#3d85c6"},
        customdata=customers,
        hovertemplate=_t("predicted", lang) + " %{x:.1%}<br>" + _t("observed", lang) + " %{y:.1%}<br>"
                      + _t("customers", lang) + ": %{customdata:,}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis={"title": _t("predicted", lang), "range": [0, 1], "tickformat": ".0%"},
                      yaxis={"title": _t("observed", lang), "range": [0, 1], "tickformat": ".0%"})
    return fig


def importance_bar(importance: pd.DataFrame, top: int = 15, lang: str = "en") -> go.Figure:
    """The ``top`` features by permutation importance, as horizontal bars (most important on top),
    with their standard deviation over the repeats as error bars."""
    title = _t("importance", lang)
    if importance.empty:
        return _empty(title, lang)
    frame = importance.sort_values("importance_mean", ascending=False).head(top).iloc[::-1]
    hover = frame["description"].tolist() if "description" in frame.columns else frame["feature"].tolist()
    fig = go.Figure(go.Bar(
        x=frame["importance_mean"].astype(float).tolist(), y=frame["feature"].tolist(), orientation="h",
        error_x={"type": "data", "array": frame["importance_std"].astype(float).tolist()},
        marker_color="#6aa84f", customdata=hover,
        hovertemplate="%{y}: %{x:.4f}<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=_t("importance_axis", lang), showlegend=False,
                      height=max(300, 28 * len(frame) + 120))
    return fig


__all__ = ["DIMENSION_LABELS", "calibration_plot", "churn_rate_bar", "importance_bar", "lift_chart"]
