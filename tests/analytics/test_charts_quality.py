"""Data-quality chart builders: figure data and titles, never pixels."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics import charts_quality as cq

SCORES = pd.DataFrame([
    # scope, scope_value, dimension, score, checked, failed
    ("overall", "", "completeness", 0.98, 100, 2),
    ("overall", "", "validity", 0.90, 100, 10),
    ("overall", "", "consistency", 1.0, 50, 0),
    ("overall", "", "uniqueness", 0.75, 40, 10),
    ("overall", "", "timeliness", 0.6, 20, 8),
    ("overall", "", "overall", 0.86, 310, 30),
    ("branch", "BR1", "overall", 0.97, 150, 4),
    ("branch", "BR2", "overall", 0.70, 160, 26),
    ("branch", "BR3", "overall", 0.85, 10, 1),
    ("branch", "BR1", "validity", 0.99, 50, 1),
    ("channel", "branch", "overall", 0.9, 200, 20),
    ("channel", "(missing)", "overall", 0.5, 10, 5),
], columns=["scope", "scope_value", "dimension", "score", "checked", "failed"])

HISTORY = pd.DataFrame([
    (1, pd.Timestamp("2026-10-01 02:00"), "overall", 0.80),
    (1, pd.Timestamp("2026-10-01 02:00"), "completeness", 0.95),
    (2, pd.Timestamp("2026-11-01 02:00"), "overall", 0.86),
    (2, pd.Timestamp("2026-11-01 02:00"), "completeness", 0.98),
], columns=["run_id", "finished_at", "dimension", "score"])

RESULTS = pd.DataFrame([
    ("customer_phone_valid", "validity", "high", 98, 2, 96 / 98),
    ("customer_email_valid", "validity", "low", 0, 0, float("nan")),
    ("customer_record_fresh", "timeliness", "medium", 100, 8, 0.92),
], columns=["rule", "dimension", "severity", "checked", "failed", "pass_rate"])


def test_overall_gauge_shows_percent_and_change():
    fig = cq.overall_gauge(0.8612, previous=0.8, lang="en")
    assert isinstance(fig, go.Figure)
    (ind,) = fig.data
    assert ind.type == "indicator"
    assert ind.value == pytest.approx(86.1)
    assert ind.delta.reference == pytest.approx(80.0)
    assert tuple(ind.gauge.axis.range) == (0, 100)
    assert fig.layout.title.text == "Data-quality score"
    assert cq.overall_gauge(0.5, lang="zh").layout.title.text == "数据质量综合得分"
    assert "delta" not in cq.overall_gauge(0.5).data[0].mode


def test_gauge_without_results_says_so():
    fig = cq.overall_gauge(None)
    assert not fig.data
    assert "refresh" in fig.layout.annotations[0].text


def test_named_rates_are_the_three_the_guidance_names():
    fig = cq.named_rates(SCORES, lang="zh")
    assert [t.title.text for t in fig.data] == ["完整率", "准确率", "鲜活率"]
    assert [t.value for t in fig.data] == [98.0, 90.0, 60.0]
    assert fig.layout.title.text == "完整率、准确率、鲜活率"


def test_dimension_bars_one_per_dimension_coloured_by_band():
    fig = cq.dimension_bars(SCORES)
    (bar,) = fig.data
    assert list(bar.y) == ["Completeness", "Accuracy", "Consistency", "Uniqueness", "Freshness"]
    assert list(bar.x) == [98.0, 90.0, 100.0, 75.0, 60.0]
    assert list(bar.marker.color) == [cq.BAR_COLOURS[b] for b in ("good", "watch", "good", "bad", "bad")]
    assert fig.layout.title.text == "Score by dimension"


def test_trend_has_one_line_per_dimension_across_runs():
    fig = cq.score_trend(HISTORY)
    assert [t.name for t in fig.data] == ["Overall", "Completeness"]
    assert list(fig.data[0].y) == [80.0, 86.0]
    assert list(fig.data[0].customdata) == [1, 2]
    assert fig.layout.title.text == "Data-quality trend across refreshes"
    assert not cq.score_trend(HISTORY.iloc[:0]).data


def test_breakdown_bars_worst_first_with_labels():
    fig = cq.breakdown_bars(SCORES, scope="branch", labels={"BR2": "浦东支行"})
    (bar,) = fig.data
    assert list(bar.x) == ["浦东支行", "BR3", "BR1"]
    assert list(bar.y) == [70.0, 85.0, 97.0]
    assert fig.layout.title.text == "Overall by branch"
    top = cq.breakdown_bars(SCORES, scope="channel", top=1, lang="zh")
    assert list(top.data[0].x) == ["(missing)"]
    assert top.layout.title.text == "各开户渠道综合得分"
    assert list(cq.breakdown_bars(SCORES, dimension="validity").data[0].y) == [99.0]
    with pytest.raises(ValueError):
        cq.breakdown_bars(SCORES, scope="planet")


def test_breakdown_axis_fits_the_bars_and_marks_the_bank():
    fig = cq.breakdown_bars(SCORES, scope="branch", average=0.9)
    low, high = fig.layout.yaxis.range
    # bars 70, 85, 97 and the bank at 90: padded by a quarter of the spread (6.75), whole numbers
    assert (low, high) == (63, 100)
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == 90.0
    assert fig.layout.annotations[0].text == "bank: 90.0%"
    close = pd.DataFrame({"scope": "branch", "scope_value": ["B1", "B2"], "dimension": "overall",
                          "score": [0.981, 0.984], "checked": 10, "failed": 0})
    assert tuple(cq.breakdown_bars(close, scope="branch", lang="zh").layout.yaxis.range) == (97, 99)


def test_rules_table_failing_first():
    fig = cq.rules_table(RESULTS)
    (table,) = fig.data
    assert table.type == "table"
    rules, _, sev, checked, failed, rate = table.cells.values
    assert list(rules) == ["customer_record_fresh", "customer_phone_valid", "customer_email_valid"]
    assert list(rate) == ["92.00%", "97.96%", ""]
    assert list(checked) == ["100", "98", "0"]
    assert list(sev) == ["medium", "high", "low"]
    assert fig.layout.title.text == "Rule results"
    assert list(cq.rules_table(RESULTS, lang="zh").data[0].header.values)[0] == "规则"


def test_unknown_language_is_refused():
    with pytest.raises(ValueError):
        cq.dimension_bars(SCORES, lang="fr")


def test_score_trend_ticks_dates_not_milliseconds_and_pads_a_single_run():
    import pandas as pd

    from analytics.charts_quality import score_trend

    history = pd.DataFrame({"run_id": [1, 1], "finished_at": pd.to_datetime(["2026-12-03 18:51:21.259"] * 2),
                            "dimension": ["overall", "completeness"], "score": [0.984, 0.99]})
    fig = score_trend(history)
    assert fig.layout.xaxis.tickformat == "%Y-%m-%d %H:%M"
    low, high = (pd.Timestamp(v) for v in fig.layout.xaxis.range)
    assert high - low == pd.Timedelta(hours=24)
    two = pd.concat([history, history.assign(run_id=2, finished_at=pd.Timestamp("2026-12-10"))])
    assert score_trend(two).layout.xaxis.range is None


@pytest.mark.parametrize("score", [0.99648, 0.99649, 0.99651, 0.996449, 0.8125, 0.12345])
def test_a_dimension_reads_the_same_number_in_every_figure(score):
    """The named rate, the bar, the trend, the breakdown and the gauge round once, to the same figure.

    99.648 % used to read 99.6 % as a named rate and 99.7 % on its bar (rounded to 99.65, then
    printed to one decimal).
    """
    scores = pd.DataFrame([("overall", "", "validity", score, 100, 1), ("branch", "BR1", "validity", score, 100, 1)],
                          columns=["scope", "scope_value", "dimension", "score", "checked", "failed"])
    shown = f"{100 * score:.1f}%"
    named = cq.named_rates(scores).data[0]
    assert f"{named.value:.1f}%" == shown
    bar = cq.dimension_bars(scores).data[0]
    assert list(bar.text) == [shown] and f"{bar.x[0]:.1f}%" == shown and ":.1f" in bar.hovertemplate
    history = pd.DataFrame([(1, pd.Timestamp("2026-10-01"), "validity", score)],
                           columns=["run_id", "finished_at", "dimension", "score"])
    assert f"{cq.score_trend(history).data[0].y[0]:.1f}%" == shown
    branch = cq.breakdown_bars(scores, scope="branch", dimension="validity").data[0]
    assert list(branch.text) == [shown]
    assert f"{cq.overall_gauge(score).data[0].value:.1f}%" == shown
