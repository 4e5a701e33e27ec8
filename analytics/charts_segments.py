"""Plotly figures for segmentation, lifecycle and value.

Every builder takes an aggregate frame, never customer rows, so no personal data can reach a
chart: the rows of one ``dimension`` of the ``segment_summary`` table (columns ``value``,
``customers``, ``sort_order`` and totals such as ``aum_total`` or ``clv_margin_3y_total``), the
``cluster_profiles`` rows, or the ``cohort_retention`` rows (see
:func:`analytics.segmentation.load_segment_summary` and friends). Each returns a
:class:`plotly.graph_objects.Figure`. ``lang`` is ``"en"`` or ``"zh"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import empty_figure, lang_index
from analytics.lifecycle import LIFECYCLE_STAGES
from analytics.segmentation import FEATURE_LABELS, RFM_SEGMENTS, VALUE_TIERS

SEGMENT_LABELS_ZH = {
    "Champions": "冠军客户", "Loyal": "忠诚客户", "Potential loyalists": "潜在忠诚客户", "New": "新客户",
    "Promising": "有潜力客户", "Need attention": "需关注客户", "About to sleep": "即将沉睡客户",
    "At risk": "流失风险客户", "Can't lose": "不能流失的高价值客户", "Hibernating": "休眠客户", "Lost": "已流失客户",
}
TIER_LABELS = {"mass": ("Mass", "大众客户"), "affluent": ("Affluent", "富裕客户"),
               "wealth": ("Wealth", "财富客户"), "private": ("Private banking", "私人银行客户")}
STAGE_LABELS = {"new": ("New", "新客期"), "growing": ("Growing", "成长期"), "mature": ("Mature", "成熟期"),
                "declining": ("Declining", "衰退期"), "dormant": ("Dormant", "休眠期"), "churned": ("Churned", "流失")}
METRIC_LABELS = {
    "customers": ("customers", "客户数"), "aum_total": ("AUM (CNY)", "资产规模 (元)"),
    "annual_margin_total": ("yearly margin (CNY)", "年度利润 (元)"),
    "clv_margin_1y_total": ("1-year margin CLV (CNY)", "1年客户价值 (元)"),
    "clv_margin_3y_total": ("3-year margin CLV (CNY)", "3年客户价值 (元)"),
    "clv_margin_5y_total": ("5-year margin CLV (CNY)", "5年客户价值 (元)"),
}
STAGE_COLOURS = {"new": "#6fa8dc", "growing": "#6aa84f", "mature": "#38761d", "declining": "#e69138",
                 "dormant": "#999999", "churned": "#cc4125"}

_TEXT = {
    "rfm": ("RFM: customers by recency and frequency score", "RFM：按最近交易与交易频次评分的客户分布"),
    "recency": ("recency score R (5 = most recent)", "最近交易评分 R（5 = 最近）"),
    "frequency": ("frequency score F (5 = most frequent)", "交易频次评分 F（5 = 最频繁）"),
    "segments": ("RFM segments: {metric}", "RFM 客户分群：{metric}"),
    "tiers": ("Value tiers by AUM: {metric}", "按资产规模的价值分层：{metric}"),
    "clusters": ("Behavioural clusters: what sets each apart", "行为聚类：各群特征"),
    "cluster_axis": ("standard deviations from the average customer", "与平均客户相差的标准差"),
    "lifecycle": ("Lifecycle stages: {metric}", "客户生命周期阶段：{metric}"),
    "cohort": ("Cohort retention: share active N months after opening", "同期群留存：开户后第 N 个月仍活跃的比例"),
    "cohort_x": ("months since opening", "开户后月数"),
    "cohort_y": ("opening month", "开户月份"),
    "clv": ("Distribution of {horizon}-year margin CLV", "{horizon}年客户利润价值分布"),
    "clv_x": ("CLV band (CNY)", "客户价值区间 (元)"),
    "no_data": ("No results yet: run a refresh.", "暂无结果，请先运行刷新。"),
    "customers": ("customers", "客户数"),
}


def _lang(lang: str) -> int:
    return lang_index(lang)


def _t(key: str, lang: str, **fmt) -> str:
    return _TEXT[key][_lang(lang)].format(**fmt)


def _metric(metric: str, lang: str) -> str:
    return METRIC_LABELS.get(metric, (metric, metric))[_lang(lang)]


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, _t("no_data", lang))


def _ordered(summary: pd.DataFrame, order: tuple[str, ...]) -> pd.DataFrame:
    """Rows in the canonical order of ``order``; values outside it after, by ``sort_order``."""
    rank = {v: i for i, v in enumerate(order)}
    frame = summary.copy()
    frame["_rank"] = frame["value"].map(lambda v: rank.get(v, len(order)))
    keys = ["_rank", "sort_order"] if "sort_order" in frame.columns else ["_rank"]
    return frame.sort_values(keys).drop(columns="_rank")


def _bar(summary: pd.DataFrame, labels: list[str], metric: str, title: str, lang: str,
         colours: list[str] | None = None) -> go.Figure:
    if summary.empty or metric not in summary.columns:
        return _empty(title, lang)
    values = summary[metric].astype(float).to_numpy()
    total = values.sum()
    share = values / total if total else np.zeros_like(values)
    customers = summary["customers"].astype(int).to_numpy() if "customers" in summary.columns else values
    fig = go.Figure(go.Bar(
        x=labels, y=values, marker_color=colours,
        text=[f"{s:.1%}" for s in share], textposition="outside",
        customdata=np.column_stack([customers, share]),
        hovertemplate="%{x}<br>" + _metric(metric, lang) + ": %{y:,.0f}<br>"
                      + _t("customers", lang) + ": %{customdata[0]:,}<br>%{customdata[1]:.1%}<extra></extra>",
        name=_metric(metric, lang),
    ))
    fig.update_layout(title=title, yaxis_title=_metric(metric, lang), showlegend=False)
    return fig


def rfm_heatmap(cells: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Customers per (R, F) score cell: a 5×5 heatmap, R down (5 on top), F across.

    ``cells`` are the ``segment_summary`` rows of dimension ``rfm_rf``: ``value`` is the two digits
    ``"<R><F>"`` (e.g. ``"54"``) and ``customers`` the count.
    """
    title = _t("rfm", lang)
    if cells.empty:
        return _empty(title, lang)
    grid = np.zeros((5, 5), dtype=int)
    for value, count in zip(cells["value"].astype(str), cells["customers"], strict=True):
        r, f = int(value[0]), int(value[1])
        grid[r - 1, f - 1] += int(count)
    fig = go.Figure(go.Heatmap(
        z=grid, x=[1, 2, 3, 4, 5], y=[1, 2, 3, 4, 5], colorscale="Blues", text=grid,
        texttemplate="%{text:,}", hovertemplate="R %{y} · F %{x}: %{z:,}<extra></extra>",
        colorbar={"title": _t("customers", lang)},
    ))
    fig.update_layout(title=title, xaxis_title=_t("frequency", lang), yaxis_title=_t("recency", lang))
    return fig


def segment_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or AUM, margin, CLV totals: ``metric``) per named RFM segment."""
    frame = _ordered(summary, RFM_SEGMENTS)
    labels = [v if lang == "en" else SEGMENT_LABELS_ZH.get(v, v) for v in frame["value"]]
    return _bar(frame, labels, metric, _t("segments", lang, metric=_metric(metric, lang)), lang)


def value_tier_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or a total) per value tier, mass to private."""
    frame = _ordered(summary, VALUE_TIERS)
    labels = [TIER_LABELS.get(v, (v, v))[_lang(lang)] for v in frame["value"]]
    return _bar(frame, labels, metric, _t("tiers", lang, metric=_metric(metric, lang)), lang)


def lifecycle_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or a total) per lifecycle stage, in lifecycle order, coloured by stage."""
    frame = _ordered(summary, LIFECYCLE_STAGES)
    labels = [STAGE_LABELS.get(v, (v, v))[_lang(lang)] for v in frame["value"]]
    colours = [STAGE_COLOURS.get(v, "#999999") for v in frame["value"]]
    return _bar(frame, labels, metric, _t("lifecycle", lang, metric=_metric(metric, lang)), lang, colours)


def cluster_profile_heatmap(profiles: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Each cluster's mean of every clustering feature, in standard deviations from the average.

    ``profiles`` has one row per cluster with ``cluster_name``, ``customers`` and ``z_<feature>``
    columns (the ``cluster_profiles`` table, expanded by
    :func:`analytics.segmentation.load_cluster_profiles`).
    """
    title = _t("clusters", lang)
    z_cols = [c for c in profiles.columns if c.startswith("z_")]
    if profiles.empty or not z_cols:
        return _empty(title, lang)
    features = [c[2:] for c in z_cols]
    z = profiles[z_cols].astype(float).to_numpy()
    names = [f"{name} ({int(n):,})" for name, n in zip(profiles["cluster_name"], profiles["customers"], strict=True)]
    limit = float(max(1.0, np.nanmax(np.abs(z))))
    fig = go.Figure(go.Heatmap(
        z=z, x=[FEATURE_LABELS.get(f, f) for f in features], y=names, colorscale="RdBu", reversescale=True,
        zmin=-limit, zmax=limit, text=np.round(z, 1), texttemplate="%{text:+.1f}",
        hovertemplate="%{y}<br>%{x}: %{z:+.2f} sd<extra></extra>",
        colorbar={"title": "sd"},
    ))
    fig.update_layout(title=title, xaxis_title=_t("cluster_axis", lang), yaxis={"autorange": "reversed"})
    return fig


def cohort_heatmap(cohorts: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Retention by opening month (down) and months since opening (across), as percentages.

    ``cohorts`` is the long ``cohort_retention`` table: ``cohort_month``, ``months_since_open``,
    ``cohort_size``, ``active_customers``, ``retention``.
    """
    title = _t("cohort", lang)
    if cohorts.empty:
        return _empty(title, lang)
    matrix = cohorts.pivot(index="cohort_month", columns="months_since_open", values="retention").sort_index()
    sizes = cohorts.groupby("cohort_month")["cohort_size"].first().reindex(matrix.index)
    labels = [f"{pd.Timestamp(m):%Y-%m} ({int(n):,})" for m, n in zip(matrix.index, sizes, strict=True)]
    z = matrix.to_numpy(dtype=float) * 100
    fig = go.Figure(go.Heatmap(
        z=z, x=[int(c) for c in matrix.columns], y=labels, colorscale="Greens", zmin=0, zmax=100,
        text=np.where(np.isnan(z), "", np.char.mod("%.0f", np.nan_to_num(z))), texttemplate="%{text}",
        hovertemplate="%{y}<br>+%{x}: %{z:.1f}%<extra></extra>", colorbar={"title": "%"},
    ))
    fig.update_layout(title=title, xaxis_title=_t("cohort_x", lang), yaxis_title=_t("cohort_y", lang),
                      yaxis={"autorange": "reversed"})
    return fig


def clv_histogram(bands: pd.DataFrame, horizon_years: int = 3, lang: str = "en") -> go.Figure:
    """Customers per CLV band (the ``clv_band_<H>y`` rows of ``segment_summary``, or
    :func:`analytics.lifecycle.value_bands` output): a histogram with widening 1-2-5 bands."""
    title = _t("clv", lang, horizon=horizon_years)
    if bands.empty:
        return _empty(title, lang)
    frame = bands.sort_values("sort_order")
    fig = go.Figure(go.Bar(
        x=frame["value"].tolist(), y=frame["customers"].astype(int).tolist(), marker_color="#3d85c6",
        hovertemplate="%{x}: %{y:,}<extra></extra>", name=_t("customers", lang),
    ))
    fig.update_layout(title=title, xaxis_title=_t("clv_x", lang), yaxis_title=_t("customers", lang),
                      bargap=0.05, showlegend=False)
    return fig


__all__ = [
    "METRIC_LABELS", "SEGMENT_LABELS_ZH", "STAGE_LABELS", "TIER_LABELS", "clv_histogram", "cluster_profile_heatmap",
    "cohort_heatmap", "lifecycle_bar", "rfm_heatmap", "segment_bar", "value_tier_bar",
]
