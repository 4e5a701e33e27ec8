"""Plotly figures for cross-sell: holding co-occurrence, rules, opportunities and campaign exclusions.

Every builder takes an aggregate, never customer rows, so no personal data can reach a chart: the
co-occurrence matrix (:func:`analytics.cross_sell.read_cooccurrence`), the rules
(:func:`analytics.cross_sell.read_rules` or :func:`analytics.cross_sell.association_rules`), the
opportunities by product (:func:`analytics.cross_sell.read_opportunities`) or the exclusion counts of
:func:`analytics.cross_sell.campaign_list`. Each returns a :class:`plotly.graph_objects.Figure`;
``lang`` is ``"en"`` or ``"zh"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.access import min_cell_customers
from analytics.charts_common import ACCENT, ALERT, GOOD, MISSING_COLOUR, WARN, empty_figure
from analytics.cross_sell import EXCLUSION_REASONS
from analytics.i18n import label, tr

REASON_COLOURS = {"expired_assessment": WARN, "suitability": ALERT, "credit_grade": "#85200c",
                  "credit_complaint": "#b45f06", "consent": MISSING_COLOUR, "listed": GOOD}


def category_label(category: str, lang: str = "en") -> str:
    """A product category in words (the raw name for categories of a bank's own catalogue)."""
    return label("category", category, lang)


def _metric(metric: str, lang: str) -> str:
    return label("xsell_metric", metric, lang)


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, tr("charts.cross_sell.no_data", lang))


def cooccurrence_heatmap(counts: pd.DataFrame, customers_total: int | None = None, metric: str = "lift",
                         lang: str = "en") -> go.Figure:
    """Category x category heatmap of holding both: lift, customers, or share of the row's holders.

    Parameters
    ----------
    counts : pandas.DataFrame
        Square, symmetric: customers holding both categories (the diagonal: holders of one).
    customers_total : int, optional
        Customers in the holding matrix; needed for ``metric="lift"``
        (``lift = total * both / (holders_a * holders_b)``, blank on the diagonal).
    metric : str
        ``lift``, ``customers_both`` or ``share`` (both / holders of the row category).
    """
    if metric not in ("lift", "customers_both", "share"):
        raise ValueError(f"metric must be 'lift', 'customers_both' or 'share', not {metric!r}")
    title = tr("charts.cross_sell.cooc", lang, metric=_metric(metric, lang))
    if counts.empty:
        return _empty(title, lang)
    both = counts.to_numpy(dtype=float)
    holders = np.diag(both)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "lift":
            if not customers_total:
                raise ValueError("customers_total is needed for the lift")
            z = customers_total * both / np.outer(holders, holders)
            np.fill_diagonal(z, np.nan)
            text = np.where(np.isfinite(z), np.char.mod("%.2f", np.nan_to_num(z)), "")
            # A lift is never negative: the scale runs from 0, blue below 1 (held together less than
            # chance), white at 1 (independent), red above (a diverging scale centred on 1 would
            # otherwise stretch to -1 to stay symmetric).
            finite = z[np.isfinite(z)]
            top = max(2.0, float(finite.max()) if finite.size else 2.0)
            colorscale = [[0.0, "#2166ac"], [1.0 / top, "#f7f7f7"], [1.0, "#b2182b"]]
            extra = {"zmin": 0.0, "zmax": top}
        elif metric == "share":
            z = both / holders[:, None]
            colorscale, text = "Blues", np.where(np.isfinite(z), np.char.mod("%.0f%%", np.nan_to_num(z) * 100), "")
            extra = {}
        else:
            z = both
            colorscale, text = "Blues", np.char.mod("%d", both.astype(np.int64))
            extra = {}
    z = np.where(np.isfinite(z), z, np.nan)
    labels = [category_label(c, lang) for c in counts.index]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, colorscale=colorscale, text=text,
        texttemplate="%{text}", hovertemplate="%{y} × %{x}: %{z:.3g}<extra></extra>",
        colorbar={"title": _metric(metric, lang)}, **extra,
    ))
    fig.update_layout(title=title, yaxis={"autorange": "reversed"})
    return fig


def _side(value) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return sorted(str(v) for v in value)


def rule_label(antecedents, consequents, lang: str = "en") -> str:
    """``"mortgage → insurance"`` (category words, sorted within each side)."""
    left = " + ".join(category_label(c, lang) for c in _side(antecedents))
    right = " + ".join(category_label(c, lang) for c in _side(consequents))
    return f"{left} → {right}"


def rules_scatter(rules: pd.DataFrame, lang: str = "en", top: int | None = None) -> go.Figure:
    """Each rule a point: support across, confidence up, colour and hover the lift.

    ``rules`` has ``antecedents``/``consequents`` (frozensets or stored JSON text), ``support``,
    ``confidence`` and ``lift``; ``top`` keeps the highest-lift rules only.
    """
    title = tr("charts.cross_sell.rules", lang)
    if rules.empty:
        return _empty(title, lang)
    frame = rules.sort_values("lift", ascending=False, kind="stable")
    if top is not None:
        frame = frame.head(top)
    labels = [rule_label(a, c, lang) for a, c in zip(frame["antecedents"], frame["consequents"], strict=True)]
    fig = go.Figure(go.Scatter(
        x=frame["support"].astype(float).tolist(), y=frame["confidence"].astype(float).tolist(), mode="markers",
        text=labels, customdata=frame["lift"].astype(float).to_numpy(),
        marker={"color": frame["lift"].astype(float).tolist(), "colorscale": "Viridis", "size": 10,
                "showscale": True, "colorbar": {"title": _metric("lift", lang)}},
        hovertemplate=("%{text}<br>" + tr("charts.cross_sell.hover_support", lang) + " %{x:.2%}<br>"
                       + tr("charts.cross_sell.confidence", lang) + " %{y:.1%}<br>"
                       + tr("charts.cross_sell.hover_lift", lang) + " %{customdata:.2f}<extra></extra>"),
    ))
    fig.update_layout(title=title, xaxis_title=tr("charts.cross_sell.support", lang), yaxis_title=tr("charts.cross_sell.confidence", lang),
                      xaxis={"tickformat": ".1%"}, yaxis={"tickformat": ".0%"})
    return fig


def opportunities_bar(opportunities: pd.DataFrame, metric: str = "expected_value_total",
                      lang: str = "en") -> go.Figure:
    """One bar per recommended product (largest first): expected margin, or eligible customers.

    ``opportunities`` are the ``cross_sell_opportunities`` rows (``category``, ``product_id``, the
    totals; ``product_name`` when read with :func:`analytics.cross_sell.read_opportunities`).
    """
    title = tr("charts.cross_sell.opportunities", lang, metric=_metric(metric, lang))
    if opportunities.empty or metric not in opportunities.columns:
        return _empty(title, lang)
    frame = opportunities.sort_values([metric, "product_id"], ascending=[False, True], kind="stable")
    names = frame["product_name"] if "product_name" in frame.columns else frame["product_id"]
    labels = [f"{pid} {name}" if name != pid else str(pid)
              for pid, name in zip(frame["product_id"].astype(str), names.astype(str), strict=True)]
    cats = [category_label(c, lang) for c in frame["category"]]
    fig = go.Figure(go.Bar(
        x=labels, y=frame[metric].astype(float).tolist(), customdata=cats,
        hovertemplate="%{x} (%{customdata})<br>" + _metric(metric, lang) + ": %{y:,.0f}<extra></extra>",
        marker_color=ACCENT, name=_metric(metric, lang),
    ))
    fig.update_layout(title=title, yaxis_title=_metric(metric, lang), showlegend=False)
    return fig


def exclusions_bar(exclusions: Mapping[str, int], category: str, listed: int | None = None,
                   lang: str = "en") -> go.Figure:
    """Customers left out of a campaign by reason (and, if given, how many are on the list).

    ``exclusions`` is the dict :func:`analytics.cross_sell.campaign_list` returns.
    """
    title = tr("charts.cross_sell.exclusions", lang, category=category_label(category, lang))
    keys = [k for k in EXCLUSION_REASONS if k in exclusions] + ([] if listed is None else ["listed"])
    values = [int(exclusions[k]) for k in keys if k != "listed"] + ([] if listed is None else [int(listed)])
    if not keys:
        return _empty(title, lang)
    fig = go.Figure(go.Bar(
        x=[label("exclusion", k, lang) for k in keys], y=values, text=[f"{v:,}" for v in values],
        textposition="outside", cliponaxis=False, marker_color=[REASON_COLOURS[k] for k in keys],
        hovertemplate="%{x}: %{y:,}<extra></extra>", name=tr("charts.cross_sell.customers", lang),
    ))
    fig.update_layout(title=title, yaxis_title=tr("charts.cross_sell.customers", lang), showlegend=False)
    return fig


def first_offer_mix_bar(mix: pd.DataFrame, lang: str = "en") -> go.Figure:
    """The first offers (next-best products) by category: one bar per category, customers, with its share.

    ``mix`` is :func:`analytics.cross_sell.first_offer_mix`'s frame; a category hidden by the
    small-cell rule is drawn as an empty bar labelled "< MIN_CELL_CUSTOMERS" (never its count).
    The up-sell first offers of a category (``up_sell_customers``) are a narrower bar over its bar.
    """
    title = tr("charts.cross_sell.first_offer_mix", lang)
    if mix is None or mix.empty:
        return _empty(title, lang)
    hidden = mix.get("customers_suppressed", pd.Series(False, index=mix.index)).fillna(False).to_numpy(dtype=bool)
    counts = pd.to_numeric(mix["customers"], errors="coerce").fillna(0).to_numpy(dtype=float)
    shares = pd.to_numeric(mix["share"], errors="coerce").to_numpy(dtype=float)
    k = min_cell_customers()
    text = [tr("charts.cross_sell.suppressed", lang, k=k) if h else f"{int(c):,} ({sh:.0%})"
            for h, c, sh in zip(hidden, counts, shares, strict=True)]
    x = [category_label(c, lang) for c in mix["category"]]
    fig = go.Figure(go.Bar(
        x=x, y=[0.0 if h else float(c) for h, c in zip(hidden, counts, strict=True)], text=text,
        textposition="outside", cliponaxis=False, marker_color=ACCENT, hoverinfo="skip",
        name=tr("charts.cross_sell.all_first_offers", lang),
    ))
    # Of each bar, the customers whose first offer is an up-sell: a narrower bar over it (none drawn
    # where the small-cell rule hides the count).
    if "up_sell_customers" in mix.columns:
        up_hidden = hidden | mix.get("up_sell_customers_suppressed", pd.Series(False, index=mix.index)).fillna(
            False).to_numpy(dtype=bool)
        up = pd.to_numeric(mix["up_sell_customers"], errors="coerce").fillna(0).to_numpy(dtype=float)
        fig.add_trace(go.Bar(
            x=x, y=[0.0 if h else float(u) for h, u in zip(up_hidden, up, strict=True)], width=0.4,
            text=[tr("charts.cross_sell.suppressed", lang, k=k) if h and not hh else ("" if hh or u == 0 else f"{int(u):,}")
                  for h, hh, u in zip(up_hidden, hidden, up, strict=True)],
            textposition="inside", marker_color=WARN, hoverinfo="skip",
            name=tr("charts.cross_sell.up_sell_first_offers", lang),
        ))
    fig.update_layout(title=title, yaxis_title=tr("charts.cross_sell.customers", lang), barmode="overlay",
                      showlegend="up_sell_customers" in mix.columns)
    return fig


__all__ = [
    "category_label", "cooccurrence_heatmap", "exclusions_bar", "first_offer_mix_bar",
    "opportunities_bar", "rule_label", "rules_scatter",
]


def rules_table(rules: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """The association rules as the page lists them: the rule in words, support, confidence, lift."""
    named = rules.assign(rule=[rule_label(a, c, lang) for a, c in
                               zip(rules["antecedents"], rules["consequents"], strict=True)])
    return named[["rule", "support", "confidence", "lift"]]
