"""AppTest: Segments and Lifecycle value pages on the demo store, for each role that may open them."""

import pytest

from analytics import audit
from analytics.store import make_engine
from tests.app.conftest import open_page


def _open(monkeypatch, url, role, page):
    return open_page(monkeypatch, url, role, page, prefix="seg")


def _arr(value):
    """A plotly array from a figure spec: a list, or plotly's typed-array form (base64 bytes)."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if isinstance(shape, str):  # plotly writes "5, 5"
            shape = tuple(int(x) for x in shape.split(","))
        return arr.reshape(shape) if shape else arr
    return np.asarray(value)


def _chart_titles(at):
    import json

    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


@pytest.mark.parametrize("role", ["executive", "marketing", "risk"])
def test_segments_page_draws_every_chart(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role, "segments")
    titles = _chart_titles(at)
    assert len(titles) == 5 and any("RFM" in t for t in titles)


def test_filters_cross_filter_every_chart_and_are_audited(monkeypatch, demo_store_url):
    import json

    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    heat_before = _arr(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"])
    total_before = heat_before.sum()
    at.multiselect(key="segments_t").select("mass").run()
    assert not at.exception
    heat_after = _arr(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"])
    tier_bar = json.loads(at.get("plotly_chart")[2].proto.spec)["data"][0]
    assert heat_after.sum() < total_before
    assert len(_arr(tier_bar["x"])) == 1  # only the mass tier remains
    assert heat_after.sum() == _arr(tier_bar["y"]).sum()
    events = audit.query(make_engine(demo_store_url), event="filter")
    assert any("mass" in (p or "") for p in events["parameters"])


def test_tag_builder_and_campaign_export_for_marketing(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    at.text_input(key="tag_expr").input("mortgage_holder and not frequent_complainer").run()
    assert not at.exception
    selected = int(at.metric[0].value.replace(",", ""))
    assert selected > 0
    campaign = at.dataframe[-1].value
    assert len(campaign) <= selected and "name" not in campaign.columns
    assert any("excluded for lack of consent" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 2


def test_bad_tag_expression_is_a_clear_error(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    at.text_input(key="tag_expr").input("__import__('os')").run()
    assert not at.exception and at.error


def test_executive_gets_counts_but_no_campaign_list(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "executive", "segments")
    at.text_input(key="tag_expr").input("mortgage_holder").run()
    assert at.metric and not at.get("download_button")


@pytest.mark.parametrize("role", ["executive", "marketing"])
def test_lifecycle_page(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role, "lifecycle")
    assert len(at.get("plotly_chart")) == 6
    top_tables = [d for d in at.dataframe if "clv_margin_3y" in d.value.columns]
    assert bool(top_tables) == (role == "marketing")
    if top_tables:
        names = top_tables[0].value["name"].dropna()
        assert names.str.contains(r"\*").all() or names.str.len().eq(1).all()
