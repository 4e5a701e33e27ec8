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

from analytics.charts_common import ACCENT, ALERT, GOOD, MISSING_COLOUR, WARN, colour_of, empty_figure
from analytics.i18n import has, label, tr
from analytics.lifecycle import LIFECYCLE_STAGES
from analytics.segmentation import RFM_SEGMENTS, VALUE_TIERS

DIMENSIONS = ("branch_id", "value_tier", "lifecycle_stage", "rfm_segment")
_ORDERS = {"value_tier": VALUE_TIERS, "lifecycle_stage": LIFECYCLE_STAGES, "rfm_segment": RFM_SEGMENTS}


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, tr("charts.churn.no_data", lang))


_RATE_TITLE = {"holdout": "charts.churn.rate_holdout", "predicted": "charts.churn.rate_predicted"}
_RATE_AXIS = {"holdout": "charts.churn.rate_axis_holdout", "predicted": "charts.churn.rate_axis_predicted"}


def _value_label(dimension: str, value: str, lang: str) -> str:
    family = {"value_tier": "tier", "lifecycle_stage": "stage", "rfm_segment": "segment"}.get(dimension)
    return label(family, value, lang) if family else str(value)


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
    dim_label = label("dimension", dimension, lang)
    title = tr(_RATE_TITLE[measure], lang, dimension=dim_label)
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
        x=labels, y=values, marker_color=([colour_of(v) for v in frame["value"]] if dimension in _ORDERS
                      else ALERT if measure == "holdout" else WARN),
        text=[f"{v:.1%}" for v in values], textposition="outside", cliponaxis=False, customdata=counts,
        hovertemplate="%{x}<br>%{y:.2%}<br>" + tr("charts.churn.customers", lang) + ": %{customdata:,}<extra></extra>",
        name=tr(_RATE_AXIS[measure], lang),
    ))
    fig.update_layout(title=title, yaxis={"title": tr(_RATE_AXIS[measure], lang), "tickformat": ".0%"},
                      xaxis_title=dim_label, showlegend=False)
    return fig


def lift_chart(lift: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Lift per score decile (bars, with the average at 1) and cumulative capture (line, right axis).

    ``lift`` is the ``churn_lift`` table (:func:`analytics.churn.lift_table`).
    """
    title = tr("charts.churn.lift", lang)
    if lift.empty:
        return _empty(title, lang)
    frame = lift.sort_values("decile")
    deciles = frame["decile"].astype(int).tolist()
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=deciles, y=frame["lift"].astype(float).tolist(), name=tr("charts.churn.lift_axis", lang), marker_color=ACCENT,
        customdata=np.column_stack([frame["customers"], frame["churners"], frame["churn_rate"]]),
        hovertemplate="%{x}: " + tr("charts.churn.hover_lift", lang) + " %{y:.2f}<br>%{customdata[1]:,} / %{customdata[0]:,}"
                      " (%{customdata[2]:.1%})<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=deciles, y=frame["capture"].astype(float).tolist(), name=tr("charts.churn.capture", lang), yaxis="y2",
        mode="lines+markers", line={"color": ALERT}, hovertemplate="%{x}: %{y:.1%}<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color=MISSING_COLOUR)
    fig.update_layout(
        title=title, xaxis={"title": tr("charts.churn.decile", lang), "dtick": 1},
        yaxis={"title": tr("charts.churn.lift_axis", lang)},
        # Its own ticks at quarters: synced to the lift axis they fell at 22/43/65/87 %.
        yaxis2={"title": tr("charts.churn.capture", lang), "overlaying": "y", "side": "right", "range": [0, 1.05],
                "tickformat": ".0%", "tickmode": "array", "tickvals": [0, 0.25, 0.5, 0.75, 1.0],
                "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def calibration_plot(calibration: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Mean predicted probability against the observed churn rate per bin, with the diagonal.

    ``calibration`` is the ``churn_calibration`` table (:func:`analytics.churn.calibration_table`);
    marker size grows with the customers in the bin.
    """
    title = tr("charts.churn.calibration", lang)
    if calibration.empty:
        return _empty(title, lang)
    frame = calibration.sort_values("bin")
    customers = frame["customers"].astype(int).to_numpy()
    size = 8 + 22 * np.sqrt(customers / max(customers.max(), 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=tr("charts.churn.perfect", lang),
                             line={"dash": "dash", "color": MISSING_COLOUR}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=frame["mean_predicted"].astype(float).tolist(), y=frame["observed_rate"].astype(float).tolist(),
        mode="lines+markers", name=tr("charts.churn.observed", lang), marker={"size": size.tolist(), "color": ACCENT},
        customdata=customers,
        hovertemplate=tr("charts.churn.predicted", lang) + " %{x:.1%}<br>" + tr("charts.churn.observed", lang) + " %{y:.1%}<br>"
                      + tr("charts.churn.customers", lang) + ": %{customdata:,}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis={"title": tr("charts.churn.predicted", lang), "range": [0, 1], "tickformat": ".0%"},
                      yaxis={"title": tr("charts.churn.observed", lang), "range": [0, 1], "tickformat": ".0%"})
    return fig


def _feature_name(name: str, lang: str) -> str:
    """A feature in words: ``feature.<name>``, or for ``products_<category>`` (one column per
    product category, a bank's own included) the category's label."""
    key = f"feature.{name}"
    if not has(key) and name.startswith("products_"):
        return tr("charts.churn.products_of_category", lang,
                  category=label("category", name.removeprefix("products_"), lang))
    return label("feature", name, lang)


def importance_bar(importance: pd.DataFrame, top: int = 15, lang: str = "en") -> go.Figure:
    """The ``top`` features by permutation importance, as horizontal bars (most important on top),
    with their standard deviation over the repeats as error bars; each feature is named in
    ``lang`` (``feature.<name>`` in the catalog)."""
    title = tr("charts.churn.importance", lang)
    if importance.empty:
        return _empty(title, lang)
    frame = importance.sort_values("importance_mean", ascending=False).head(top).iloc[::-1]
    names = [_feature_name(name, lang) for name in frame["feature"]]  # the catalog's words
    # The stored description is English: the Chinese hover repeats the feature's name instead.
    hover = frame["description"].tolist() if "description" in frame.columns and lang == "en" else names
    fig = go.Figure(go.Bar(
        x=frame["importance_mean"].astype(float).tolist(), orientation="h", y=names,
        error_x={"type": "data", "array": frame["importance_std"].astype(float).tolist()},
        marker_color=GOOD, customdata=hover,
        hovertemplate="%{y}: %{x:.4f}<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title=tr("charts.churn.importance_axis", lang), showlegend=False,
                      height=max(300, 28 * len(frame) + 120))
    return fig


def model_choice_text(candidate: str | dict | None, lang: str = "en") -> str | None:
    """The model the inner cross-validation chose (``churn.final_candidate``: JSON of
    :attr:`analytics.churn.ChurnModel.candidate_`) in words, or None for a run that did not record it."""
    import json

    if not candidate:
        return None
    try:
        c = json.loads(candidate) if isinstance(candidate, str) else dict(candidate)
        kind, weight, auc = c["kind"], float(c["weight"]), float(c["cv_auc"])
    except (ValueError, KeyError, TypeError):
        return None
    C = f"{float(c['C']):g}" if c.get("C") is not None else ""
    if kind == "trees":
        model = tr("churn.candidate_trees", lang)
    elif kind == "logistic":
        model = tr("churn.candidate_logistic", lang, C=C)
    else:
        model = tr("churn.candidate_blend", lang, trees=f"{weight:.0%}", logistic=f"{1 - weight:.0%}", C=C)
    return tr("churn.model_chosen", lang, model=model, auc=f"{auc:.3f}")


__all__ = ["DIMENSIONS", "calibration_plot", "churn_rate_bar", "importance_bar", "lift_chart", "model_choice_text"]
