"""AppTest: the Cross-sell page labels up-sell offers, in the first-offer mix and the campaign list,
in English and Chinese, on the demo store."""

import json

from analytics import charts_cross_sell, cross_sell
from analytics.access import Viewer
from analytics.i18n import tr
from analytics.runs import current_run_id
from analytics.store import make_engine, read_frame
from tests.app.conftest import open_page


def _mix_up_sell_bars(at) -> dict:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    mix = next(s for s in specs if len(s["data"]) == 2 and s["layout"].get("barmode") == "overlay")
    return dict(zip(mix["data"][1]["x"], mix["data"][1]["y"], strict=True)), mix["data"][1]["name"]


def test_cross_sell_page_labels_up_sell_offers(monkeypatch, demo_store_url):
    from tests.app.pagekit import set_bare_lang, set_lang

    at = open_page(monkeypatch, demo_store_url, "marketing", "cross_sell", prefix="up")
    assert any("Up-sell offers" in c.value for c in at.caption)
    engine = make_engine(demo_store_url)
    run = current_run_id(engine)
    counts = read_frame(engine, "SELECT next_best_category AS category, COUNT(*) AS n FROM cross_sell_customer "
                                "WHERE run_id = :r AND next_best_offer_kind = 'up_sell' GROUP BY 1", {"r": run})
    assert counts["n"].sum() > 0
    bars, name = _mix_up_sell_bars(at)
    assert name == "of which up-sell"
    shown = {k: v for k, v in bars.items() if v}
    assert shown == {charts_cross_sell.category_label(c, "en"): float(n)
                     for c, n in zip(counts["category"], counts["n"], strict=True)}

    # The campaign list of wealth management: each row's offer kind in words, as stored.
    at.selectbox[0].select("wealth_management").run()
    assert not at.exception
    table = at.dataframe[-1].value  # the campaign list (the rules' table comes first)
    stored, _ = cross_sell.campaign_list(engine, run, "wealth_management", viewer=Viewer("m", ("marketing",)),
                                         limit=len(table))
    engine.dispose()
    assert table["offer_kind"].tolist() == [tr(f"offer_kind.{k}", "en") for k in stored["offer_kind"]]
    assert "Up-sell" in set(table["offer_kind"]) and "Cross-sell" in set(table["offer_kind"])
    try:
        set_lang(at, "zh")
        at.run()
        assert not at.exception
        at.selectbox[0].select("wealth_management").run()
        assert "向上销售" in set(at.dataframe[-1].value["offer_kind"])
        assert _mix_up_sell_bars(at)[1] == "其中向上销售"
        assert any("向上销售推荐" in c.value for c in at.caption)
    finally:  # the bare-mode language is process-wide: leave it as the next test expects
        set_bare_lang("en")
