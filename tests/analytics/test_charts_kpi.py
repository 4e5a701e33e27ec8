"""The KPI wall's tiles and sparklines, built outside the page."""

from analytics import charts_kpi
from analytics.kpi import Card


def test_sparkline_draws_the_series_as_one_bare_line_fitted_to_its_range():
    svg = charts_kpi.spark_svg((3.0, 5.0, 4.0))
    # x from 0 to 100, y from 28 (the lowest value) to 2 (the highest): the axis fits the series.
    assert svg.count("<polyline") == 1 and 'points="0.00,28.00 50.00,2.00 100.00,15.00"' in svg
    assert charts_kpi.spark_svg((3.0,)) == ""  # one month: no line
    assert 'points="0.00,28.00 100.00,2.00"' in charts_kpi.spark_svg((1.0, float("nan"), 2.0))  # a hidden month


def test_a_tile_shows_label_value_and_change_with_good_news_in_green():
    up = charts_kpi.tile_html("aum", Card("aum", 946_000_000.0, 900_000_000.0, kind="money"), "en")
    assert 'class="kpi-label" title="Assets under management' in up and '">Total AUM</div>' in up
    assert "CNY 946 m" in up and "kpi-up" in up and "▲ +5.1%" in up
    # Fewer churned customers is good news: green, pointing down.
    churned = charts_kpi.tile_html("churned", Card("churned", 80.0, 100.0), "en")
    assert "kpi-up" in churned and "▼ -20.0%" in churned
    rate = charts_kpi.tile_html("churn_rate", Card("churn_rate", 0.12, 0.10, kind="rate"), "zh", small=True)
    assert "kpi-small" in rate and "kpi-down" in rate and "+2.0 个百分点" in rate


def test_a_missing_figure_is_a_dash_and_a_missing_change_says_why():
    assert 'kpi-value">—</div>' in charts_kpi.tile_html("avg_clv", None, "en")
    tile = charts_kpi.tile_html("customers", Card("customers", 5.0, None), "en")
    assert 'kpi-delta kpi-flat">no earlier month' in tile and "kpi-delta kpi-flat\">—" not in tile
    assert "the data has no month before this one" in tile  # the reason, in the tile's help


def test_the_header_names_the_run_and_says_when_stale():
    head = charts_kpi.header_html(7, "2026-10-01", "en")
    assert "refresh run 7" in head and "2026-10-01" in head and "kpi-down" not in head
    assert "figures 40 hours old" in charts_kpi.header_html(7, "2026-10-01", "en", stale_hours=40)


def test_kiosk_style_hides_the_chrome():
    assert "display: none" in charts_kpi.style(kiosk=True) and "display: none" not in charts_kpi.style(kiosk=False)


def test_the_churn_tiles_definition_names_the_runs_horizon():
    card = Card("churn_rate", 0.12, 0.10, kind="rate")
    assert "over the next 6 months" in charts_kpi.tile_html("churn_rate", card, "en", months=6)
    assert "over the next 3 months" in charts_kpi.tile_html("churn_rate", card, "en")
    assert "未来 6 个月内" in charts_kpi.tile_html("churn_rate", card, "zh", months=6)


def test_a_region_is_named_in_the_readers_language_and_a_branch_as_the_bank_named_it():
    import pandas as pd

    from analytics.validators import PROVINCE_CODES

    assert charts_kpi.unit_name("44", "广东省", "region", "en") == "Guangdong"
    assert charts_kpi.unit_name("44", "广东", "region", "zh") == "广东"  # the bank's own name, as stored
    assert charts_kpi.unit_name("99", "某地", "region", "en") == "某地"  # a code the catalog lacks: as stored
    assert charts_kpi.unit_name("BR001", "北京朝阳支行", "branch", "en") == "北京朝阳支行"
    assert all(charts_kpi.unit_name(code, "x", "region", "en").isascii() for code in PROVINCE_CODES)
    top = pd.DataFrame({"rank": [1], "unit": ["31"], "name": ["上海市"], "value": [5.0]})
    panel = charts_kpi.ranking_html({"top": top, "bottom": top.iloc[:0], "ranked": 1, "left_out": 0},
                                    "customers", "region", "en")
    assert "Shanghai" in panel and "上海" not in panel
