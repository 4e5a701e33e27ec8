"""Plotly figures for the data-quality page and the KPI wall.

Every builder takes the frames :mod:`analytics.quality` returns (scores, history, rule results),
never reads the store itself, and returns a :class:`plotly.graph_objects.Figure`. Scores are
fractions in [0, 1] in the frames and shown as percentages. ``lang`` is ``"en"`` or ``"zh"``; the
three figures the bank's guidance names are shown in the UI language: 完整率 (completeness),
准确率 (accuracy, the validity dimension), 鲜活率 (freshness, the timeliness dimension).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from analytics.charts_common import empty_figure
from analytics.i18n import label, tr
from analytics.quality import DIMENSIONS

NAMED_RATES = ("completeness", "validity", "timeliness")
SCOPES = ("branch", "channel")

# Colour bands of a score, in percent: below 80 needs action, 80-95 watch, 95 and above good.
BANDS = ((0, 80, "#f4cccc"), (80, 95, "#fff2cc"), (95, 100, "#d9ead3"))
BAR_COLOURS = {"bad": "#cc4125", "watch": "#e69138", "good": "#6aa84f"}



def dimension_label(dimension: str, lang: str = "en") -> str:
    """Display name of a dimension (or ``"overall"``)."""
    return label("dq_dimension", dimension, lang)


def score_pct(score: float) -> float:
    """A score in [0, 1] as the percentage every figure shows: rounded once, to one decimal.

    Every figure rounds through here, so a dimension reads the same number in the gauge, the named
    rates, the bars, the trend and the breakdowns (rounding to 2 decimals and then printing 1 would
    turn 99.648 into 99.65 and print 99.7 beside a 99.6).
    """
    return round(100 * float(score), 1)


def _band(pct: float) -> str:
    return "bad" if pct < 80 else "watch" if pct < 95 else "good"


def _empty(title: str, lang: str) -> go.Figure:
    return empty_figure(title, tr("charts.quality.no_data", lang))


def _overall_scores(scores: pd.DataFrame) -> pd.Series:
    """dimension -> score of the overall scope, from a :func:`analytics.quality.scores` frame."""
    frame = scores
    if "scope" in frame.columns:
        frame = frame[frame["scope"] == "overall"]
    return frame.set_index("dimension")["score"].astype(float)


def overall_gauge(score: float | None, *, previous: float | None = None, lang: str = "en") -> go.Figure:
    """A gauge of the overall score (0-100 %), with the change since the previous run when given.

    Parameters
    ----------
    score : float or None
        The overall score in [0, 1]; None draws an empty figure saying there are no results.
    previous : float, optional
        The previous run's overall score, shown as a delta in percentage points.
    lang : {"en", "zh"}
    """
    title = tr("charts.quality.overall", lang)
    if score is None or pd.isna(score):
        return _empty(title, lang)
    mode = "gauge+number" + ("+delta" if previous is not None and not pd.isna(previous) else "")
    indicator = go.Indicator(
        mode=mode, value=score_pct(score), number={"suffix": "%", "valueformat": ".1f"},
        gauge={"axis": {"range": [0, 100]}, "bar": {"color": BAR_COLOURS[_band(score_pct(score))]},
               "steps": [{"range": [lo, hi], "color": c} for lo, hi, c in BANDS]},
    )
    if "delta" in mode:
        indicator.delta = {"reference": score_pct(previous), "valueformat": ".1f",
                           "suffix": tr("charts.quality.points", lang)}
    fig = go.Figure(indicator)
    fig.update_layout(title=title, margin={"t": 60, "b": 10})
    return fig


def named_rates(scores: pd.DataFrame, *, lang: str = "en") -> go.Figure:
    """The three rates the bank's guidance names, side by side: 完整率, 准确率, 鲜活率.

    Parameters
    ----------
    scores : DataFrame
        :func:`analytics.quality.scores` of a run (the overall scope is used).
    """
    title = tr("charts.quality.named", lang)
    overall = _overall_scores(scores) if not scores.empty else pd.Series(dtype=float)
    present = [d for d in NAMED_RATES if d in overall.index]
    if not present:
        return _empty(title, lang)
    fig = go.Figure()
    for i, dim in enumerate(present):
        fig.add_trace(go.Indicator(
            mode="number", value=score_pct(overall[dim]), number={"suffix": "%", "valueformat": ".1f"},
            title={"text": dimension_label(dim, lang)},
            domain={"x": [i / len(present), (i + 1) / len(present)], "y": [0, 1]},
        ))
    fig.update_layout(title=title, margin={"t": 60, "b": 10})
    return fig


def dimension_bars(scores: pd.DataFrame, *, lang: str = "en") -> go.Figure:
    """Horizontal bars of the five dimension scores (overall scope), coloured by band."""
    title = tr("charts.quality.dimensions", lang)
    overall = _overall_scores(scores) if not scores.empty else pd.Series(dtype=float)
    dims = [d for d in DIMENSIONS if d in overall.index]
    if not dims:
        return _empty(title, lang)
    pct = [score_pct(overall[d]) for d in dims]
    fig = go.Figure(go.Bar(
        x=pct, y=[dimension_label(d, lang) for d in dims], orientation="h",
        text=[f"{p:.1f}%" for p in pct], textposition="auto",
        marker={"color": [BAR_COLOURS[_band(p)] for p in pct]},
        customdata=dims, hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis={"title": tr("charts.quality.score", lang), "range": [0, 100]},
                      yaxis={"autorange": "reversed"})
    return fig


def score_trend(history: pd.DataFrame, *, dimensions: tuple[str, ...] | None = None,
                lang: str = "en") -> go.Figure:
    """One line per dimension (and the overall score) across refresh runs.

    Parameters
    ----------
    history : DataFrame
        :func:`analytics.quality.score_history` (run_id, finished_at, dimension, score).
    dimensions : tuple of str, optional
        Which lines to draw; default the overall score and every dimension present.
    """
    title = tr("charts.quality.trend", lang)
    if history.empty:
        return _empty(title, lang)
    wanted = dimensions or ("overall", *DIMENSIONS)
    fig = go.Figure()
    for dim in wanted:
        h = history[history["dimension"] == dim].sort_values("run_id")
        if h.empty:
            continue
        x = h["finished_at"] if h["finished_at"].notna().all() else h["run_id"]
        fig.add_trace(go.Scatter(
            x=x, y=[score_pct(v) for v in h["score"]], mode="lines+markers", name=dimension_label(dim, lang),
            customdata=h["run_id"], line={"width": 4 if dim == "overall" else 2},
            hovertemplate=tr("charts.quality.run_n", lang) + ": %{y:.1f}%<extra>" + dimension_label(dim, lang)
                          + "</extra>",
        ))
    xaxis = {"title": tr("charts.quality.refresh", lang)}
    times = history["finished_at"]
    if times.notna().all():
        # Minutes at most: with one run (or runs minutes apart) plotly would tick milliseconds.
        xaxis["tickformat"] = "%Y-%m-%d %H:%M"
        first, last = pd.Timestamp(times.min()), pd.Timestamp(times.max())
        if last - first < pd.Timedelta(hours=1):
            xaxis["range"] = [first - pd.Timedelta(hours=12), last + pd.Timedelta(hours=12)]
    fig.update_layout(title=title, xaxis=xaxis, yaxis={"title": tr("charts.quality.score", lang)},
                      hovermode="x unified")
    return fig


def breakdown_bars(scores: pd.DataFrame, *, scope: str = "branch", dimension: str = "overall",
                   labels: dict[str, str] | None = None, top: int | None = None, average: float | None = None,
                   lang: str = "en") -> go.Figure:
    """Bars of one dimension's score per branch or per onboarding channel, worst first.

    Parameters
    ----------
    scores : DataFrame
        :func:`analytics.quality.scores` of a run (all scopes, or just ``scope``).
    scope : {"branch", "channel"}
    dimension : str
        ``"overall"`` or one of the five dimensions.
    labels : dict, optional
        scope value -> display name (e.g. branch id -> branch name); the value itself otherwise.
    top : int, optional
        Show only the ``top`` worst.
    average : float, optional
        The bank's score of the dimension (a fraction), drawn as a line. The score axis is fitted
        to the bars and the line (48 branches near 98 % on a 0-100 axis say nothing).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    scope_label = label("dq_scope", scope, lang)
    dim_label = dimension_label(dimension, lang)
    template = tr("charts.quality.breakdown", lang)
    title = template.format(dimension=dim_label, scope=scope_label)
    if lang == "en":
        title = title[0].upper() + title[1:]
    frame = scores[(scores["scope"] == scope) & (scores["dimension"] == dimension)] if not scores.empty else scores
    if frame.empty:
        return _empty(title, lang)
    frame = frame.sort_values(["score", "scope_value"])
    if top is not None:
        frame = frame.head(top)
    names = [(labels or {}).get(v, v) for v in frame["scope_value"]]
    pct = [score_pct(v) for v in frame["score"]]
    fig = go.Figure(go.Bar(
        x=names, y=pct, text=[f"{p:.1f}%" for p in pct], textposition="auto",
        marker={"color": [BAR_COLOURS[_band(p)] for p in pct]},
        customdata=frame[["scope_value", "checked", "failed"]].to_numpy(),
        hovertemplate="%{x}: %{y:.1f}%<br>%{customdata[2]} / %{customdata[1]}<extra></extra>",
    ))
    shown = pct + ([] if average is None or pd.isna(average) else [score_pct(average)])
    pad = max(0.5, 0.25 * (max(shown) - min(shown)))
    low, high = max(0.0, math.floor(min(shown) - pad)), min(100.0, math.ceil(max(shown) + pad))
    if average is not None and not pd.isna(average):
        fig.add_hline(y=score_pct(average), line_dash="dash", line_color="#555555",
                      annotation_text=tr("charts.quality.bank_average", lang, score=f"{score_pct(average):.1f}%"),
                      annotation_position="top left")
    fig.update_layout(title=title, yaxis={"title": tr("charts.quality.score", lang), "range": [low, high]},
                      xaxis={"title": scope_label, "type": "category"})
    return fig


def rules_table(results: pd.DataFrame, *, lang: str = "en") -> go.Figure:
    """A table of per-rule results (:func:`analytics.quality.rule_results`), failing rules first."""
    title = tr("charts.quality.rules", lang)
    if results.empty:
        return _empty(title, lang)
    frame = results.sort_values(["pass_rate", "rule"], na_position="last")
    rate = ["" if pd.isna(r) else f"{100 * r:.2f}%" for r in frame["pass_rate"]]
    sev = [label("severity", s, lang) for s in frame["severity"]]
    header = [tr(k, lang) for k in ("charts.quality.rule", "charts.quality.dimension", "charts.quality.severity",
                                     "charts.quality.checked", "charts.quality.failed", "charts.quality.pass_rate")]
    fig = go.Figure(go.Table(
        header={"values": header, "align": "left"},
        cells={"values": [frame["rule"].tolist(), [dimension_label(d, lang) for d in frame["dimension"]], sev,
                          [f"{int(v):,}" for v in frame["checked"]], [f"{int(v):,}" for v in frame["failed"]], rate],
               "align": "left"},
    ))
    fig.update_layout(title=title)
    return fig


__all__ = [
    "breakdown_bars", "dimension_bars", "dimension_label", "named_rates", "overall_gauge",
    "rules_table", "score_trend",
]


def page_parts(results: pd.DataFrame, scores: pd.DataFrame, change: pd.DataFrame) -> dict:
    """What the Data quality page draws, split out of a run's frames: the overall rows and score,
    the previous run's overall score (None when there is none), the scores of each breakdown scope,
    the branches that have scores, and the rules with failures."""
    overall = scores[scores["scope"] == "overall"]
    previous = change.set_index("dimension")["previous_score"].get("overall") if not change.empty else None
    return {
        "overall": overall,
        "overall_score": overall.set_index("dimension")["score"].get("overall"),
        "previous_overall": None if previous is None or pd.isna(previous) else previous,
        "by_scope": {scope: scores[scores["scope"] == scope] for scope in ("branch", "channel")},
        "branches": scores[scores["scope"] == "branch"]["scope_value"].drop_duplicates().sort_values().tolist(),
        "failing_rules": results[results["failed"] > 0]["rule"].tolist() if not results.empty else [],
    }
