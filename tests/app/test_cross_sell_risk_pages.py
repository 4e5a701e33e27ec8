"""AppTest: Cross-sell (marketing) and Risk tiers (executive, risk) pages on the demo store."""

import pytest

from tests.app.conftest import open_page


def _open(monkeypatch, url, role, page):
    return open_page(monkeypatch, url, role, page, prefix="xr")


def test_cross_sell_page_lists_campaign_with_exclusions(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "marketing", "cross_sell")
    assert len(at.get("plotly_chart")) == 4
    assert any("without marketing consent" in c.value for c in at.caption)
    for option in at.selectbox[0].options:
        at.selectbox[0].select(option).run()
        assert not at.exception


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
