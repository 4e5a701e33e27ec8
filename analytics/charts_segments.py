"""Plotly figures for segmentation, lifecycle and value.

Every builder takes an aggregate frame, never customer rows, so no personal data can reach a
chart: the rows of one ``dimension`` of the ``segment_summary`` table (columns ``value``,
``customers``, ``sort_order`` and totals such as ``aum_total`` or ``clv_margin_3y_total``), the
``cluster_profiles`` rows, or the ``cohort_retention`` rows (see
:func:`analytics.segmentation.read_segment_summary` and friends). Each returns a
:class:`plotly.graph_objects.Figure`. ``lang`` is ``"en"`` or ``"zh"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import (
    ACCENT,
    MISSING_COLOUR,
    SEGMENT_COLOURS,
    STAGE_COLOURS,
    TIER_COLOURS,
    empty_figure,
)
from analytics.i18n import label, tr
from analytics.lifecycle import LIFECYCLE_STAGES
from analytics.segmentation import RFM_SEGMENTS, VALUE_TIERS, cluster_label


def _metric(metric: str, lang: str) -> str:
    return label("measure", metric, lang)


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, tr("charts.segments.no_data", lang))


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
    # A value hidden from an aggregate-only role (a small cell) is NaN: it draws no bar and no share.
    values = summary[metric].astype(float).to_numpy()
    total = np.nansum(values)
    share = values / total if total else np.zeros_like(values)
    customers = summary["customers"].astype(float).to_numpy() if "customers" in summary.columns else values
    fig = go.Figure(go.Bar(
        x=labels, y=values, marker_color=colours,
        text=["" if np.isnan(s) else f"{s:.1%}" for s in share], textposition="outside", cliponaxis=False,
        customdata=np.column_stack([customers, share]),
        hovertemplate="%{x}<br>" + _metric(metric, lang) + ": %{y:,.0f}<br>"
                      + tr("charts.segments.customers", lang) + ": %{customdata[0]:,}<br>%{customdata[1]:.1%}<extra></extra>",
        name=_metric(metric, lang),
    ))
    fig.update_layout(title=title, yaxis_title=_metric(metric, lang), showlegend=False)
    return fig


def rfm_heatmap(cells: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Customers per (R, F) score cell: a 5×5 heatmap, R down (5 on top), F across.

    ``cells`` are the ``segment_summary`` rows of dimension ``rfm_rf``: ``value`` is the two digits
    ``"<R><F>"`` (e.g. ``"54"``) and ``customers`` the count.
    """
    title = tr("charts.segments.rfm", lang)
    if cells.empty:
        return _empty(title, lang)
    grid = np.zeros((5, 5), dtype=float)
    for value, count in zip(cells["value"].astype(str), cells["customers"], strict=True):
        r, f = int(value[0]), int(value[1])
        grid[r - 1, f - 1] += float(count)  # NaN (a cell hidden from an aggregate-only role) stays NaN
    text = [["—" if np.isnan(v) else f"{int(v):,}" for v in row] for row in grid]
    fig = go.Figure(go.Heatmap(
        z=grid, x=[1, 2, 3, 4, 5], y=[1, 2, 3, 4, 5], colorscale="Blues", text=text,
        texttemplate="%{text}", hovertemplate="R %{y} · F %{x}: %{text}<extra></extra>",
        colorbar={"title": tr("charts.segments.customers", lang)},
    ))
    fig.update_layout(title=title, xaxis_title=tr("charts.segments.frequency", lang), yaxis_title=tr("charts.segments.recency", lang))
    return fig


def segment_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or AUM, margin, CLV totals: ``metric``) per named RFM segment."""
    frame = _ordered(summary, RFM_SEGMENTS)
    labels = [label("segment", v, lang) for v in frame["value"]]
    colours = [SEGMENT_COLOURS.get(v, ACCENT) for v in frame["value"]]
    return _bar(frame, labels, metric, tr("charts.segments.segments", lang, metric=_metric(metric, lang)), lang,
                colours)


def cluster_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or a ``metric`` total) per behavioural cluster, the stored name codes rendered in
    ``lang`` (:func:`analytics.segmentation.cluster_label`)."""
    frame = _ordered(summary, ())
    labels = [cluster_label(v, lang) for v in frame["value"]]
    return _bar(frame, labels, metric, tr("charts.segments.segments", lang, metric=_metric(metric, lang)), lang)


def value_tier_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or a total) per value tier, mass to private."""
    frame = _ordered(summary, VALUE_TIERS)
    labels = [label("tier", v, lang) for v in frame["value"]]
    colours = [TIER_COLOURS.get(v, ACCENT) for v in frame["value"]]
    return _bar(frame, labels, metric, tr("charts.segments.tiers", lang, metric=_metric(metric, lang)), lang,
                colours)


def lifecycle_bar(summary: pd.DataFrame, metric: str = "customers", lang: str = "en") -> go.Figure:
    """Customers (or a total) per lifecycle stage, in lifecycle order, coloured by stage."""
    frame = _ordered(summary, LIFECYCLE_STAGES)
    labels = [label("stage", v, lang) for v in frame["value"]]
    colours = [STAGE_COLOURS.get(v, MISSING_COLOUR) for v in frame["value"]]
    return _bar(frame, labels, metric, tr("charts.segments.lifecycle", lang, metric=_metric(metric, lang)), lang, colours)


def cluster_profile_heatmap(profiles: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Each cluster's mean of every clustering feature, in standard deviations from the average.

    ``profiles`` has one row per cluster with ``cluster_name``, ``customers`` (optional) and
    ``z_<feature>`` columns (the ``cluster_profiles`` table, expanded by
    :func:`analytics.segmentation.read_cluster_profiles`).
    """
    title = tr("charts.segments.clusters", lang)
    z_cols = [c for c in profiles.columns if c.startswith("z_")]
    if profiles.empty or not z_cols:
        return _empty(title, lang)
    features = [c[2:] for c in z_cols]
    z = profiles[z_cols].astype(float).to_numpy()
    # Without counts (a portfolio's view of the model's clusters), the clusters are named only.
    counts = profiles["customers"] if "customers" in profiles.columns else pd.Series(np.nan, index=profiles.index)
    names = [cluster_label(name, lang) if pd.isna(n) else f"{cluster_label(name, lang)} ({int(n):,})"
             for name, n in zip(profiles["cluster_name"], counts, strict=True)]
    limit = float(max(1.0, np.nanmax(np.abs(z))))
    fig = go.Figure(go.Heatmap(
        z=z, x=[label("feature", f, lang) for f in features], y=names, colorscale="RdBu", reversescale=True,
        zmin=-limit, zmax=limit, text=np.round(z, 1), texttemplate="%{text:+.1f}",
        hovertemplate="%{y}<br>%{x}: %{z:+.2f} " + tr("charts.segments.sd", lang) + "<extra></extra>",
        colorbar={"title": tr("charts.segments.sd", lang)},
    ))
    fig.update_layout(title=title, xaxis_title=tr("charts.segments.cluster_axis", lang), yaxis={"autorange": "reversed"})
    return fig


def cohort_heatmap(cohorts: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Retention by opening month (down) and months since opening (across), as percentages.

    ``cohorts`` is the long ``cohort_retention`` table: ``cohort_month``, ``months_since_open``,
    ``cohort_size``, ``active_customers``, ``retention``.
    """
    title = tr("charts.segments.cohort", lang)
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
    fig.update_layout(title=title, xaxis_title=tr("charts.segments.cohort_x", lang), yaxis_title=tr("charts.segments.cohort_y", lang),
                      yaxis={"autorange": "reversed"})
    return fig


def clv_histogram(bands: pd.DataFrame, horizon_years: int = 3, lang: str = "en") -> go.Figure:
    """Customers per CLV band (the ``clv_band_<H>y`` rows of ``segment_summary``, or
    :func:`analytics.lifecycle.value_bands` output): a histogram with widening 1-2-5 bands."""
    title = tr("charts.segments.clv", lang, horizon=horizon_years)
    if bands.empty:
        return _empty(title, lang)
    frame = bands.sort_values("sort_order")
    fig = go.Figure(go.Bar(
        x=frame["value"].tolist(), y=frame["customers"].astype(float).tolist(), marker_color=ACCENT,
        hovertemplate="%{x}: %{y:,}<extra></extra>", name=tr("charts.segments.customers", lang),
    ))
    # Fifteen band labels rotate; at Plotly's own angle the last ones ran off the chart's right edge
    # (seen at 1920x1080): slanted the other way they end at their bar and stay inside.
    fig.update_layout(title=title, xaxis_title=tr("charts.segments.clv_x", lang), yaxis_title=tr("charts.segments.customers", lang),
                      xaxis={"tickangle": -45, "automargin": True}, bargap=0.05, showlegend=False)
    return fig


__all__ = [
    "cluster_bar", "clv_histogram", "cluster_profile_heatmap",
    "cohort_heatmap", "lifecycle_bar", "rfm_heatmap", "segment_bar", "value_tier_bar",
]
