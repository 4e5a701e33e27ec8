"""What every chart module shares: the two UI languages, the colours of tiers, segments, stages
and risk levels (the same on every page), and the figure shown when there is no data."""

from __future__ import annotations

import plotly.graph_objects as go

LANGS = ("en", "zh")

# One colour per domain value, used by every chart that shows it, so "private banking" or "C5"
# looks the same on the Segments, Lifecycle, Churn and Risk pages.
TIER_COLOURS = {"mass": "#9fc5e8", "affluent": "#6fa8dc", "wealth": "#3d85c6", "private": "#1c4587"}
SEGMENT_COLOURS = {
    "Champions": "#1c4587", "Loyal": "#3d85c6", "Potential loyalists": "#6fa8dc", "New": "#76a5af",
    "Promising": "#93c47d", "Need attention": "#f1c232", "About to sleep": "#f6b26b", "At risk": "#e69138",
    "Can't lose": "#cc4125", "Hibernating": "#b7b7b7", "Lost": "#666666",
}
STAGE_COLOURS = {"new": "#6fa8dc", "growing": "#6aa84f", "mature": "#38761d", "declining": "#e69138",
                 "dormant": "#999999", "churned": "#cc4125"}
# Low risk green to high risk red; product risk levels R1-R5 match the tolerances C1-C5 they suit.
RISK_COLOURS = {"C1": "#38761d", "C2": "#6aa84f", "C3": "#f1c232", "C4": "#e69138", "C5": "#cc4125",
                "R1": "#38761d", "R2": "#6aa84f", "R3": "#f1c232", "R4": "#e69138", "R5": "#cc4125"}
GRADE_COLOURS = {"AAA": "#274e13", "AA": "#38761d", "A": "#6aa84f", "BBB": "#f1c232", "BB": "#e69138",
                 "B": "#cc4125", "CCC": "#85200c"}
MISSING_COLOUR = "#999999"
ACCENT = "#3d85c6"       # a single series with no domain colour
ALERT = "#cc4125"        # churn, mismatches, failures
WARN = "#e69138"
GOOD = "#6aa84f"


def colour_of(value) -> str:
    """The colour of a tier, RFM segment, lifecycle stage, risk level or credit grade."""
    value = str(value)
    for table in (TIER_COLOURS, SEGMENT_COLOURS, STAGE_COLOURS, RISK_COLOURS, GRADE_COLOURS):
        if value in table:
            return table[value]
    return MISSING_COLOUR


def empty_figure(title: str, message: str) -> go.Figure:
    """A figure with only a title and a centred message, for a chart with nothing to draw."""
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5}])
    return fig
