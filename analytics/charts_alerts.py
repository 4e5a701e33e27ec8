"""Plotly figures for the Worklist: new and resolved alerts per refresh run.

The builder takes the aggregate of :func:`analytics.alerts.read.trend` (counts per run, never
customer rows) and returns a :class:`plotly.graph_objects.Figure`; ``lang`` is ``"en"`` or ``"zh"``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import ALERT, GOOD, MISSING_COLOUR, empty_figure
from analytics.i18n import tr

SERIES = (("new", ALERT, "charts.alerts.new"), ("resolved", GOOD, "charts.alerts.resolved"),
          ("dismissed", MISSING_COLOUR, "charts.alerts.dismissed"))


def trend_chart(trend: pd.DataFrame, lang: str = "en") -> go.Figure:
    """Grouped bars per run: alerts first seen in the run, and alerts resolved or dismissed while it
    was current (see :func:`analytics.alerts.read.trend`)."""
    title = tr("charts.alerts.trend", lang)
    if trend.empty:
        return empty_figure(title, tr("charts.alerts.no_data", lang))
    runs = [tr("charts.alerts.run", lang, run=int(r)) for r in trend["run_id"]]
    fig = go.Figure([go.Bar(x=runs, y=trend[col].astype(int).tolist(), name=tr(key, lang), marker_color=colour)
                     for col, colour, key in SERIES])
    fig.update_layout(title=title, barmode="group", xaxis_title=tr("charts.alerts.x", lang),
                      yaxis_title=tr("charts.alerts.y", lang), legend={"orientation": "h"})
    return fig


__all__ = ["trend_chart"]
