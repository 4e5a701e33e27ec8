"""AppTest: Cross-sell (marketing) and Risk tiers (executive, risk) pages on the demo store."""

import json

import pytest

from analytics import charts_cross_sell
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
    assert len(at.get("plotly_chart")) == 4
    assert len(at.metric) == 4
    drill = len(at.tabs) > 0
    assert drill == (role == "risk")
    if drill:
        at.selectbox[0].select(at.selectbox[0].options[1]).run()
        assert not at.exception
