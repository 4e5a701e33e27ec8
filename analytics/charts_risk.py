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

from analytics.charts_common import ALERT, GRADE_COLOURS, MISSING_COLOUR, RISK_COLOURS, empty_figure
from analytics.i18n import label, tr


def _dimension(name, lang: str) -> str:
    return label("dimension", name, lang)


def _value_label(dimension, value, lang: str) -> str:
    family = {"value_tier": "tier", "rfm_segment": "segment"}.get(dimension)
    return label(family, value, lang) if family else str(value)


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, tr("charts.risk.no_data", lang))


def distribution_bars(crosstab: pd.DataFrame, lang: str = "en", normalize: bool = False) -> go.Figure:
    """Stacked bars: one bar per row of the cross-tab, one coloured segment per column.

    ``crosstab`` comes from :func:`analytics.risk.risk_crosstab` (rows named by ``index.name``, e.g.
    ``branch_id``; columns by ``columns.name``, e.g. ``risk_tolerance``). ``normalize`` shows each
    bar as shares of its customers.
    """
    by, of = crosstab.index.name or "", crosstab.columns.name or ""
    title = tr("charts.risk.distribution", lang, of=_dimension(of, lang).capitalize() if lang == "en" else _dimension(of, lang),
               by=_dimension(by, lang))
    if crosstab.empty:
        return _empty(title, lang)
    values = crosstab.astype(float)
    totals = values.sum(axis=1).to_numpy()
    if normalize:
        values = values.div(np.where(totals > 0, totals, 1.0), axis=0)
    colours = GRADE_COLOURS if of == "credit_grade" else RISK_COLOURS
    x = [_value_label(by, v, lang) for v in values.index]
    fig = go.Figure()
    for col in values.columns:
        fig.add_trace(go.Bar(
            x=x, y=values[col].tolist(), name=str(col), marker_color=colours.get(str(col), MISSING_COLOUR),
            hovertemplate="%{x} · " + str(col) + ": " + ("%{y:.1%}" if normalize else "%{y:,}") + "<extra></extra>",
        ))
    fig.update_layout(title=title, barmode="stack", xaxis_title=_dimension(by, lang),
                      yaxis_title=tr("charts.risk.share" if normalize else "charts.risk.customers", lang),
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
    title = tr("charts.risk.heatmap", lang, value=tr("charts.risk.aum" if value == "aum" else "charts.risk.customers", lang))
    if matrix.empty:
        return _empty(title, lang)
    z = matrix.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=[_value_label("value_tier", v, lang) for v in matrix.columns], y=[str(v) for v in matrix.index],
        colorscale="YlOrRd", text=z, texttemplate="%{text:,.0f}",
        hovertemplate="%{y} · %{x}: %{z:,.0f}<extra></extra>",
        colorbar={"title": tr("charts.risk.aum" if value == "aum" else "charts.risk.customers", lang)},
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
    name = label("risk_metric", metric, lang)
    title = tr("charts.risk.suitability", lang, metric=name)
    if branch_summary.empty or metric not in branch_summary.columns:
        return _empty(title, lang)
    # A missing value (no asset balance, or a cell hidden from an aggregate-only role) draws no bar.
    frame = branch_summary.assign(_v=branch_summary[metric].astype(float))
    frame = frame.sort_values(["_v", "branch_id"], ascending=[False, True], kind="stable", na_position="last")
    if top is not None:
        frame = frame.head(top)
    share = metric == "r4_r5_share"
    fig = go.Figure(go.Bar(
        x=frame["branch_id"].astype(str).tolist(), y=frame["_v"].tolist(),
        customdata=frame["customers"].astype(float).to_numpy() if "customers" in frame.columns else None,
        hovertemplate="%{x}: " + ("%{y:.1%}" if share else "%{y:,}") + "<br>"
                      + tr("charts.risk.customers", lang) + ": %{customdata:,}<extra></extra>",
        marker_color=ALERT, name=name,
    ))
    # Counts tick at whole customers (a small count's axis would otherwise tick 0.2, 0.4, ...).
    values = pd.to_numeric(frame["_v"], errors="coerce")
    counts_axis = {"tickformat": ",d", "rangemode": "tozero"}
    if metric != "mismatch_balance" and values.notna().any() and float(values.max()) <= 5:
        counts_axis["dtick"] = 1
    fig.update_layout(title=title, xaxis_title=_dimension("branch_id", lang), yaxis_title=name, showlegend=False,
                      yaxis={"tickformat": ".0%"} if share else counts_axis)
    return fig


def alert_trend(trend: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Alerts standing per refresh run, one line per kind (:func:`analytics.risk.alert_trend`): the
    run's end date on a date axis, one marked point per refresh (a single refresh is one point, on
    a day-wide axis rather than one of milliseconds). Hidden small counts leave a gap."""
    title = tr("charts.risk.alert_trend", lang)
    if trend.empty:
        return _empty(title, lang)
    fig = go.Figure()
    for kind, part in trend.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(x=pd.to_datetime(part["finished_at"]).tolist(), y=part["alerts"].tolist(),
                                 mode="lines+markers", name=label("alert_kind", kind, lang),
                                 hovertemplate="%{x|%Y-%m-%d %H:%M}: %{y:,.0f}<extra>%{fullData.name}</extra>"))
    x = pd.to_datetime(trend["finished_at"])
    xaxis = {"type": "date", "tickformat": "%Y-%m-%d", "title": tr("charts.risk.alert_trend_x", lang)}
    if x.min() == x.max():  # one refresh: a day either side, so the axis shows dates
        xaxis["range"] = [x.min() - pd.Timedelta(days=1), x.max() + pd.Timedelta(days=1)]
    fig.update_layout(title=title, xaxis=xaxis, legend={"orientation": "h"},
                      yaxis={"title": tr("charts.risk.alert_trend_y", lang), "rangemode": "tozero",
                             "tickformat": ",d"})
    return fig


__all__ = [
    "alert_trend",
    "credit_grade_by_branch", "distribution_bars", "risk_value_heatmap",
    "suitability_bar", "tolerance_by_branch",
]


def headline(summary: pd.DataFrame, min_cell: int = 0) -> dict:
    """The Risk page's four headline counts, summed over the branches of ``summary``
    (:func:`analytics.risk.read_branch_summary`).

    With ``min_cell`` (an aggregate-only viewer's ``MIN_CELL_CUSTOMERS``), a count of fewer
    customers than that (but more than none) is None, and every count is None when the customers
    themselves are fewer: a figure of so few customers is a figure about them."""
    columns = {"customers": "customers", "mismatches": "suitability_mismatch_customers",
               "expired": "assessments_expired", "balance_drops": "balance_drops"}
    out = {key: int(summary[col].sum()) if col in summary else 0 for key, col in columns.items()}
    if min_cell:
        if out["customers"] < min_cell:
            return dict.fromkeys(out)
        out = {k: None if 0 < v < min_cell else v for k, v in out.items()}
    return out
