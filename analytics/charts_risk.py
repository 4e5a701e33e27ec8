"""Plotly figures for risk tiers: tolerance and credit-grade distributions, risk x value, suitability.

Every builder takes an aggregate, never customer rows, so no personal data can reach a chart: a
cross-tab of :func:`analytics.risk.risk_crosstab` (or :func:`analytics.risk.risk_value_matrix`), or
the per-branch rows of :func:`analytics.risk.read_branch_summary`. Each returns a
:class:`plotly.graph_objects.Figure`; ``lang`` is ``"en"`` or ``"zh"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import empty_figure, lang_index
from analytics.charts_segments import SEGMENT_LABELS_ZH, TIER_LABELS

# Low risk green to high risk red; credit grades the same way round (AAA best).
TOLERANCE_COLOURS = {"C1": "#38761d", "C2": "#6aa84f", "C3": "#f1c232", "C4": "#e69138", "C5": "#cc4125"}
GRADE_COLOURS = {"AAA": "#274e13", "AA": "#38761d", "A": "#6aa84f", "BBB": "#f1c232", "BB": "#e69138",
                 "B": "#cc4125", "CCC": "#85200c"}
MISSING_COLOUR = "#999999"
DIMENSION_LABELS = {
    "branch_id": ("branch", "网点"), "value_tier": ("value tier", "价值分层"), "rfm_segment": ("RFM segment", "RFM 分群"),
    "risk_tolerance": ("risk tolerance", "风险承受能力"), "credit_grade": ("credit grade", "信用等级"),
}
METRIC_LABELS = {
    "suitability_mismatch_customers": ("customers holding products above their tolerance", "持有超风险承受能力产品的客户数"),
    "mismatch_holdings": ("holdings above tolerance", "超风险承受能力的持仓数"),
    "mismatch_balance": ("balance above tolerance (CNY)", "超风险承受能力持仓余额 (元)"),
    "assessments_expired": ("expired or missing assessments", "风险测评过期或缺失"),
    "balance_drops": ("abnormal AUM drops", "资产异常下降"),
    "r4_r5_share": ("share of asset balances in R4-R5 products", "R4-R5 产品余额占比"),
}

_TEXT = {
    "distribution": ("{of} by {by}", "按{by}的{of}分布"),
    "share": ("share of customers", "客户占比"),
    "customers": ("customers", "客户数"),
    "heatmap": ("Risk tolerance × value tier: {value}", "风险承受能力 × 价值分层：{value}"),
    "aum": ("AUM (CNY)", "资产规模 (元)"),
    "suitability": ("Suitability by branch: {metric}", "按网点的适当性：{metric}"),
    "no_data": ("No results yet: run a refresh.", "暂无结果，请先运行刷新。"),
}


def _lang(lang: str) -> int:
    return lang_index(lang)


def _t(key: str, lang: str, **fmt) -> str:
    return _TEXT[key][_lang(lang)].format(**fmt)


def _dimension(name, lang: str) -> str:
    return DIMENSION_LABELS.get(str(name), (str(name), str(name)))[_lang(lang)]


def _value_label(dimension, value, lang: str) -> str:
    if dimension == "value_tier":
        return TIER_LABELS.get(str(value), (str(value), str(value)))[_lang(lang)]
    if dimension == "rfm_segment" and lang == "zh":
        return SEGMENT_LABELS_ZH.get(str(value), str(value))
    return str(value)


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, _t("no_data", lang))


def distribution_bars(crosstab: pd.DataFrame, lang: str = "en", normalize: bool = False) -> go.Figure:
    """Stacked bars: one bar per row of the cross-tab, one coloured segment per column.

    ``crosstab`` comes from :func:`analytics.risk.risk_crosstab` (rows named by ``index.name``, e.g.
    ``branch_id``; columns by ``columns.name``, e.g. ``risk_tolerance``). ``normalize`` shows each
    bar as shares of its customers.
    """
    by, of = crosstab.index.name or "", crosstab.columns.name or ""
    title = _t("distribution", lang, of=_dimension(of, lang).capitalize() if lang == "en" else _dimension(of, lang),
               by=_dimension(by, lang))
    if crosstab.empty:
        return _empty(title, lang)
    values = crosstab.astype(float)
    totals = values.sum(axis=1).to_numpy()
    if normalize:
        values = values.div(np.where(totals > 0, totals, 1.0), axis=0)
    colours = GRADE_COLOURS if of == "credit_grade" else TOLERANCE_COLOURS
    x = [_value_label(by, v, lang) for v in values.index]
    fig = go.Figure()
    for col in values.columns:
        fig.add_trace(go.Bar(
            x=x, y=values[col].tolist(), name=str(col), marker_color=colours.get(str(col), MISSING_COLOUR),
            hovertemplate="%{x} · " + str(col) + ": " + ("%{y:.1%}" if normalize else "%{y:,}") + "<extra></extra>",
        ))
    fig.update_layout(title=title, barmode="stack", xaxis_title=_dimension(by, lang),
                      yaxis_title=_t("share" if normalize else "customers", lang),
                      yaxis={"tickformat": ".0%"} if normalize else {}, legend_title=_dimension(of, lang))
    return fig


def tolerance_by_branch(crosstab: pd.DataFrame, lang: str = "en", normalize: bool = False) -> go.Figure:
    """Risk tolerance (C1..C5) stacked per branch: ``risk_crosstab(engine, run, "branch_id")``."""
    return distribution_bars(crosstab, lang, normalize)


def credit_grade_by_branch(crosstab: pd.DataFrame, lang: str = "en", normalize: bool = False) -> go.Figure:
    """Credit grades (AAA..CCC) stacked per branch: ``risk_crosstab(engine, run, "branch_id", "credit_grade")``."""
    return distribution_bars(crosstab, lang, normalize)


def risk_value_heatmap(matrix: pd.DataFrame, value: str = "customers", lang: str = "en") -> go.Figure:
    """Risk tolerance (rows, C1 on top) by value tier (columns): customers or AUM in each cell.

    ``matrix`` is :func:`analytics.risk.risk_value_matrix` (``value`` says which it holds).
    """
    title = _t("heatmap", lang, value=_t("aum" if value == "aum" else "customers", lang))
    if matrix.empty:
        return _empty(title, lang)
    z = matrix.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=[_value_label("value_tier", v, lang) for v in matrix.columns], y=[str(v) for v in matrix.index],
        colorscale="YlOrRd", text=z, texttemplate="%{text:,.0f}",
        hovertemplate="%{y} · %{x}: %{z:,.0f}<extra></extra>",
        colorbar={"title": _t("aum" if value == "aum" else "customers", lang)},
    ))
    fig.update_layout(title=title, xaxis_title=_dimension("value_tier", lang),
                      yaxis_title=_dimension("risk_tolerance", lang), yaxis={"autorange": "reversed"})
    return fig


def suitability_bar(branch_summary: pd.DataFrame, metric: str = "suitability_mismatch_customers",
                    lang: str = "en", top: int | None = None) -> go.Figure:
    """One bar per branch, largest first: suitability mismatches (or another per-branch measure).

    ``branch_summary`` is :func:`analytics.risk.read_branch_summary`; ``metric`` one of its
    columns (``suitability_mismatch_customers``, ``mismatch_holdings``, ``mismatch_balance``,
    ``assessments_expired``, ``balance_drops``, ``r4_r5_share``). ``top`` keeps the largest only.
    """
    label = METRIC_LABELS.get(metric, (metric, metric))[_lang(lang)]
    title = _t("suitability", lang, metric=label)
    if branch_summary.empty or metric not in branch_summary.columns:
        return _empty(title, lang)
    frame = branch_summary.assign(_v=branch_summary[metric].astype(float).fillna(0.0))
    frame = frame.sort_values(["_v", "branch_id"], ascending=[False, True], kind="stable")
    if top is not None:
        frame = frame.head(top)
    share = metric == "r4_r5_share"
    fig = go.Figure(go.Bar(
        x=frame["branch_id"].astype(str).tolist(), y=frame["_v"].tolist(),
        customdata=frame["customers"].astype(int).to_numpy() if "customers" in frame.columns else None,
        hovertemplate="%{x}: " + ("%{y:.1%}" if share else "%{y:,}") + "<br>"
                      + _t("customers", lang) + ": %{customdata:,}<extra></extra>",
        marker_color="#cc4125", name=label,
    ))
    fig.update_layout(title=title, xaxis_title=_dimension("branch_id", lang), yaxis_title=label, showlegend=False,
                      yaxis={"tickformat": ".0%"} if share else {})
    return fig


__all__ = [
    "GRADE_COLOURS", "TOLERANCE_COLOURS", "credit_grade_by_branch", "distribution_bars", "risk_value_heatmap",
    "suitability_bar", "tolerance_by_branch",
]
