"""Charts of the Campaigns page: who was left out and why, conversion per arm, uplift by segment."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import ACCENT, ALERT, GOOD, MISSING_COLOUR, WARN, colour_of, empty_figure
from analytics.i18n import label, tr

REASON_KEYS = {
    "closed_dormant": "charts.campaigns.reason_closed_dormant",
    "consent": "charts.campaigns.reason_consent",
    "complaint": "charts.campaigns.reason_complaint",
    "cooldown": "charts.campaigns.reason_cooldown",
    "holds_category": "charts.campaigns.reason_holds_category",
    "expired_assessment": "charts.campaigns.reason_expired_assessment",
    "suitability": "charts.campaigns.reason_suitability",
    "credit_grade": "charts.campaigns.reason_credit_grade",
    "credit_complaint": "charts.campaigns.reason_credit_complaint",
}
REASON_COLOURS = {"closed_dormant": MISSING_COLOUR, "consent": ALERT, "complaint": WARN, "cooldown": "#f1c232",
                  "holds_category": "#76a5af", "expired_assessment": "#b45f06", "suitability": "#85200c",
                  "credit_grade": "#5b0f00", "credit_complaint": "#783f04"}
ARM_KEYS = {"treatment": "charts.campaigns.treatment", "control": "charts.campaigns.control"}


def reason_label(reason: str, lang: str = "en") -> str:
    return tr(REASON_KEYS[reason], lang) if reason in REASON_KEYS else str(reason)


def exclusions_bar(excluded: Mapping[str, int], eligible: int, lang: str = "en") -> go.Figure:
    """Customers left out by reason, and the eligible ones."""
    title = tr("charts.campaigns.exclusions", lang)
    keys = [k for k in REASON_KEYS if k in excluded]
    values = [int(excluded[k]) for k in keys] + [int(eligible)]
    names = [reason_label(k, lang) for k in keys] + [tr("charts.campaigns.eligible", lang)]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:,}" for v in values], textposition="outside",
                           cliponaxis=False, marker_color=[REASON_COLOURS[k] for k in keys] + [GOOD],
                           hovertemplate="%{x}: %{y:,}<extra></extra>"))
    fig.update_layout(title=title, yaxis_title=tr("charts.campaigns.customers", lang), showlegend=False)
    return fig


def arms_bar(result: Mapping, lang: str = "en") -> go.Figure:
    """Conversion in the treatment and control arms (rates as percentages)."""
    title = tr("charts.campaigns.conversion_by_arm", lang)
    rates = [result.get("treatment_rate"), result.get("control_rate")]
    if any(r is None for r in rates):
        return empty_figure(title, tr("charts.campaigns.too_few", lang))
    values = [100 * float(r) for r in rates]
    fig = go.Figure(go.Bar(x=[tr(ARM_KEYS["treatment"], lang), tr(ARM_KEYS["control"], lang)], y=values,
                           text=[f"{v:.2f}%" for v in values], textposition="outside", cliponaxis=False,
                           marker_color=[ACCENT, MISSING_COLOUR], hovertemplate="%{x}: %{y:.2f}%<extra></extra>"))
    fig.update_layout(title=title, yaxis_title=tr("charts.campaigns.conversion_pct", lang), showlegend=False)
    return fig


def uplift_by_segment(segments: pd.DataFrame, dimension: str, lang: str = "en") -> go.Figure:
    """The uplift (pp) per segment with its 95 % interval; suppressed segments are left out."""
    title = tr("charts.campaigns.uplift_by_segment", lang)
    shown = segments[~segments["suppressed"].astype(bool)] if not segments.empty else segments
    if shown.empty:
        return empty_figure(title, tr("charts.campaigns.too_few", lang))
    family = "tier" if dimension == "value_tier" else "segment"
    uplift = shown["uplift_pp"].astype(float)
    fig = go.Figure(go.Bar(
        x=[label(family, v, lang) for v in shown["value"]], y=uplift,
        error_y={"type": "data", "symmetric": False, "array": shown["ci_high_pp"].astype(float) - uplift,
                 "arrayminus": uplift - shown["ci_low_pp"].astype(float)},
        marker_color=[colour_of(v) for v in shown["value"]],
        hovertemplate="%{x}: %{y:+.1f} pp<extra></extra>"))
    fig.update_layout(title=title, yaxis_title=tr("charts.campaigns.uplift_pp", lang), showlegend=False)
    return fig


def segment_table(segments: pd.DataFrame, dimension: str, lang: str = "en") -> pd.DataFrame:
    """The uplift by segment as the page lists it: labelled values, counts, rates (%) and interval."""
    family = "tier" if dimension == "value_tier" else "segment"
    out = segments.copy()
    out["value"] = [label(family, v, lang) for v in out["value"]]
    for col in ("treatment_rate", "control_rate"):
        out[col] = pd.to_numeric(out[col], errors="coerce") * 100
    return out[["value", "treatment", "treatment_converted", "treatment_rate", "control", "control_converted",
                "control_rate", "uplift_pp", "ci_low_pp", "ci_high_pp"]]


__all__ = ["REASON_KEYS", "arms_bar", "exclusions_bar", "reason_label", "segment_table", "uplift_by_segment"]
