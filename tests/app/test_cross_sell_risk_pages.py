"""AppTest: Cross-sell (marketing) and Risk tiers (executive, risk) pages on the demo store."""

import json

import pandas as pd
import pytest

from analytics import charts_cross_sell, risk
from analytics.access import Viewer
from analytics.runs import current_run_id
from analytics.store import make_engine, read_frame
from tests.app.conftest import open_page


def _open(monkeypatch, url, role, page):
    return open_page(monkeypatch, url, role, page, prefix="xr")


def test_cross_sell_page_lists_campaign_with_exclusions(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "marketing", "cross_sell")
    assert len(at.get("plotly_chart")) == 5
    assert any("without marketing consent" in c.value for c in at.caption)
    assert any("Expected value = propensity" in c.value for c in at.caption)
    # The first-offer mix: one bar per category, its height the customers whose next-best it is.
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    mix = next(s for s in specs if s["layout"]["title"]["text"] == "First offers by product category")
    engine = make_engine(demo_store_url)
    counts = read_frame(engine, "SELECT next_best_category AS category, COUNT(*) AS n FROM cross_sell_customer "
                                "WHERE run_id = :r AND next_best_category IS NOT NULL GROUP BY next_best_category",
                        {"r": current_run_id(engine)})
    engine.dispose()
    shown = dict(zip(mix["data"][0]["x"], mix["data"][0]["y"], strict=True))
    expected = {charts_cross_sell.category_label(c, "en"): float(n) for c, n in zip(counts["category"], counts["n"],
                                                                                     strict=True)}
    assert shown == expected
    credit_captions = 0
    for option in at.selectbox[0].options:
        at.selectbox[0].select(option).run()
        assert not at.exception
        credit_captions += any("offered only to credit grade BBB or better" in c.value for c in at.caption)
    assert credit_captions == 3  # mortgage, consumer loan, credit card


@pytest.mark.parametrize("role", ["executive", "risk"])
def test_risk_page(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role, "risk")
    charts = at.get("plotly_chart")
    assert len(charts) == 5
    assert len(at.metric) == 4
    # The alert trend: one line per risk alert kind, one point per refresh, dates on the x-axis;
    # its counts are those of analytics.risk.alert_trend for the role (small ones hidden for executives).
    trend = json.loads(charts[4].proto.spec)
    assert trend["layout"]["xaxis"]["type"] == "date"
    engine = make_engine(demo_store_url)
    want = risk.alert_trend(engine, viewer=Viewer("t", (role,)))
    assert len(trend["data"]) == len(risk.TREND_KINDS)
    got = [y for line in trend["data"] for y in line["y"]]
    assert [None if pd.isna(v) else v for v in want["alerts"]] == got
    assert want["alerts"].sum() > 0
    drill = len(at.tabs) > 0
    assert drill == (role == "risk")
    if drill:
        assert len(at.tabs) == 3
        due = at.tabs[2].dataframe[0].value
        assert list(due.columns) == list(risk.ASSESSMENT_DUE_COLUMNS)
        at.selectbox[0].select(at.selectbox[0].options[1]).run()
        assert not at.exception
