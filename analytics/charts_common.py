"""What every chart module shares: the two UI languages and the figure shown when there is no data."""

from __future__ import annotations

import plotly.graph_objects as go

LANGS = ("en", "zh")


def lang_index(lang: str) -> int:
    """0 for English, 1 for Chinese: the position in the ``(English, Chinese)`` label pairs."""
    if lang not in LANGS:
        raise ValueError(f"lang must be 'en' or 'zh', not {lang!r}")
    return LANGS.index(lang)


def empty_figure(title: str, message: str) -> go.Figure:
    """A figure with only a title and a centred message, for a chart with nothing to draw."""
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5}])
    return fig
