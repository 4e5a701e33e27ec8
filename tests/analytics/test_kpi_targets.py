"""KPI wall: targets (loaded and validated), % of target, labelled month-on-month and year-on-year
changes, and the branch/region ranking, all against figures worked out by hand."""

from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import insert

from analytics import kpi, loader, targets
from analytics.access import Scope, Viewer
from analytics.schema import kpi_monthly, kpi_targets, refresh_runs
from analytics.store import read_frame
from tests.analytics import store_rows

EXEC = Viewer("e", ("executive",))
OCT = date(2026, 10, 1)


@pytest.fixture
def filled(engine):
    store_rows.fill(engine, consents=False)
    return engine


def _months(n: int, last: date = OCT) -> list[date]:
    return [kpi._month_back(last, k) for k in range(n - 1, -1, -1)]


def test_a_targets_file_loads_and_its_bad_rows_are_rejected_with_a_reason(filled, tmp_path):
    path = tmp_path / "targets.csv"
    path.write_text("kpi,period,branch_id,target\n"
                    "aum,2026-10,ALL,7000\n"          # 2: bank, month
                    "new,2026,BR001,12\n"              # 3: branch, year
                    "profit,2026,ALL,5\n"              # 4: unknown KPI
                    "aum,2026-13,ALL,5\n"              # 5: no month 13
                    "aum,26,ALL,5\n"                   # 6: not a year
                    "loans,2026-10,ALL,-1\n"           # 7: negative
                    "aum,2026-10,BR999,5\n",           # 8: no such branch
                    encoding="utf-8")
    report = loader.load_files(filled, [path], "kpi_targets")
    assert (report.rows_loaded, report.rows_rejected) == (2, 5)
    rejects = read_frame(filled, "SELECT line_number, reason FROM load_rejects ORDER BY line_number")
    reasons = dict(zip(rejects["line_number"], rejects["reason"], strict=True))
    assert reasons[4].startswith("value not allowed: kpi (one of customers, active, new")
    assert reasons[5].startswith("bad period: period") and reasons[6].startswith("bad period: period")
    assert reasons[7] == "negative target: target"
    assert reasons[8].startswith("unknown branch: branch_id")
    stored = read_frame(filled, "SELECT kpi, period, branch_id, target FROM kpi_targets ORDER BY kpi")
    assert stored.to_dict("records") == [{"kpi": "aum", "period": "2026-10", "branch_id": "ALL", "target": 7000.0},
                                         {"kpi": "new", "period": "2026", "branch_id": "BR001", "target": 12.0}]


def test_the_demo_targets_file_loads_without_a_reject(sqlite_engine):
    from analytics.demo.reference import BRANCHES
    from analytics.schema import branches
    from analytics.store import bulk_insert

    bulk_insert(sqlite_engine, branches, pd.DataFrame(
        [{"branch_id": f"BR{i + 1:03d}", "name": f"b{i}", "city": "c", "province": "p", "region_code": code}
         for i, (code, _) in enumerate(BRANCHES)]))
    report = loader.load_files(sqlite_engine, [targets.DEMO_FILE], "kpi_targets")
    assert report.rows_rejected == 0 and report.rows_loaded > 20


def test_share_of_target_by_hand():
    months = _months(10)  # January to October 2026
    series = pd.DataFrame({"month": months, "aum": [100.0] * 9 + [900.0], "new": [1.0] * 9 + [3.0],
                           "customers": [50.0] * 10})
    frame = pd.DataFrame([
        ("aum", "2026-10", "ALL", 1000.0),    # month target: 900 / 1000
        ("aum", "2026", "ALL", 5000.0),       # ignored: the month's own target wins
        ("new", "2026", "ALL", 24.0),         # a flow's year: 9 x 1 + 3 = 12 so far, of 24
        ("customers", "2026", "ALL", 40.0),   # a stock's year: 50 now, of 40
        ("aum", "2026-10", "BR001", 300.0), ("aum", "2026-10", "BR002", 600.0),
        ("new", "2026", "BR001", 10.0),       # BR002 has no year target for new
    ], columns=["kpi", "period", "branch_id", "target"])
    bank = targets.attainment(series, frame, OCT)
    assert bank["aum"] == targets.Attainment(900.0, 1000.0, "2026-10") and bank["aum"].share == pytest.approx(0.9)
    assert bank["new"] == targets.Attainment(12.0, 24.0, "2026") and bank["new"].share == pytest.approx(0.5)
    assert bank["customers"].share == pytest.approx(1.25) and bank["customers"].yearly
    two = targets.attainment(series, frame, OCT, frozenset({"BR001", "BR002"}))
    assert two["aum"].target == 900.0 and two["aum"].share == pytest.approx(1.0)
    assert "new" not in two  # one branch without a target: no partial sum
    assert targets.attainment(series, frame, OCT, frozenset()) == {}  # a portfolio scope has no target
    assert targets.Attainment(5.0, 0.0, "2026").share is None


def _fake_run(engine, values: dict[str, list[float]], months: list[date]) -> int:
    with engine.begin() as conn:
        run_id = conn.execute(insert(refresh_runs).values(
            started_at=datetime(2026, 11, 1), finished_at=datetime(2026, 11, 1), status="succeeded",
            metrics={"as_of_month": "2026-10-01"})).inserted_primary_key[0]
        conn.execute(insert(kpi_monthly), [{"run_id": run_id, "month": m, "metric": name, "value": v}
                                           for name, vs in values.items() for m, v in zip(months, vs, strict=True)])
    return run_id


def test_month_on_month_year_on_year_and_target_on_the_cards(filled):
    months = _months(13)  # October 2025 to October 2026
    aum = [800.0] + [900.0] * 11 + [1000.0]
    run_id = _fake_run(filled, {"aum": aum, "new": [4.0] * 12 + [2.0]}, months)
    with filled.begin() as conn:
        conn.execute(insert(kpi_targets), [{"kpi": "aum", "period": "2026-10", "branch_id": "ALL", "target": 1250.0}])
    cards = kpi.cards(filled, run_id)
    card = cards["aum"]
    assert (card.value, card.previous, card.year_ago) == (1000.0, 900.0, 800.0)
    assert card.change == pytest.approx(100.0) and card.year_change == pytest.approx(200.0)
    assert card.basis == "month" and card.no_change is None and card.no_year_ago is None
    assert card.target.share == pytest.approx(0.8)
    assert cards["new"].target is None

    from analytics import charts_kpi

    tile = charts_kpi.tile_html("aum", card, "en")
    assert "▲ +11.1% MoM" in tile and "▲ +25.0% YoY" in tile and "80% of 2026-10 target" in tile
    zh = charts_kpi.tile_html("aum", card, "zh")
    assert "环比 +11.1%" in zh and "同比 +25.0%" in zh and "2026-10 目标达成 80%" in zh
    new = charts_kpi.tile_html("new", cards["new"], "en")  # 4 -> 2: a fall, 50 % down, both bases
    assert "▼ -50.0% MoM" in new and "▼ -50.0% YoY" in new


def test_without_a_year_ago_or_an_earlier_refresh_the_tile_says_why(filled):
    from analytics import charts_kpi

    run_id = _fake_run(filled, {"aum": [900.0, 1000.0]}, _months(2))
    card = kpi.cards(filled, run_id)["aum"]
    assert card.year_ago is None and card.no_year_ago == "no_year_ago"
    tile = charts_kpi.tile_html("aum", card, "en")
    assert "MoM" in tile and "no YoY yet" in tile and "no month a year earlier" in tile
    first = kpi.Card("churn_rate", 0.1, None, (0.1,), "rate", basis="refresh")
    tile = charts_kpi.tile_html("churn_rate", first, "en")
    assert first.no_change == "first_refresh" and "first refresh" in tile and "—" not in tile
    assert "this is the first refresh" in tile  # the help says why
    later = kpi.Card("churn_rate", 0.1, 0.12, (0.12, 0.1), "rate", basis="refresh")
    assert "▼ -2.0 pt vs previous refresh" in charts_kpi.tile_html("churn_rate", later, "en")


def test_an_aggregate_only_viewer_sees_no_small_count_nor_its_change_or_target(filled, monkeypatch):
    months = _months(13)
    run_id = _fake_run(filled, {"customers": [40.0] * 13, "new": [2.0] * 12 + [30.0],
                                "churned": [30.0] * 12 + [3.0]}, months)
    with filled.begin() as conn:
        conn.execute(insert(kpi_targets), [{"kpi": "churned", "period": "2026-10", "branch_id": "ALL", "target": 10.0},
                                           {"kpi": "new", "period": "2026-10", "branch_id": "ALL", "target": 20.0}])
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "10")
    cards = kpi.cards(filled, run_id, Viewer("d", ("display",)))
    assert cards["churned"].value is None and cards["churned"].target is None and cards["churned"].suppressed
    new = cards["new"]  # 30 shown, against 20; its previous (2) and year-ago (2) are not
    assert new.value == 30.0 and new.previous is None and new.year_ago is None
    assert new.target.share == pytest.approx(1.5)


def test_ranking_by_hand(filled, monkeypatch):
    # October: BR001 holds C1 (AUM 1,000.5) and C3 (5,000), BR002 holds C2 (AUM 0).
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "1")
    result = kpi.ranking(filled, OCT, "aum", EXEC)
    assert result["top"][["rank", "unit", "value"]].values.tolist() == [[1, "BR001", 6000.5], [2, "BR002", 0.0]]
    assert result["bottom"].empty and (result["ranked"], result["left_out"]) == (2, 0)
    one = kpi.ranking(filled, OCT, "active", EXEC, n=1)  # BR001: 2 active, BR002: 1
    assert one["top"]["unit"].tolist() == ["BR001"] and one["bottom"]["unit"].tolist() == ["BR002"]
    regions = kpi.ranking(filled, OCT, "customers", EXEC, level="region")
    assert regions["top"][["unit", "name", "value"]].values.tolist() == [["11", "北京市", 2.0], ["31", "上海市", 0.0]]
    # Scope: a viewer of BR002 ranks BR002 alone.
    own = kpi.ranking(filled, OCT, "aum", Viewer("e", ("executive",), Scope(branches={"BR002"})))
    assert own["top"]["unit"].tolist() == ["BR002"]
    # The small-cell rule: BR002 has one customer on file, under a minimum of 2.
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "2")
    small = kpi.ranking(filled, OCT, "aum", EXEC)
    assert small["top"]["unit"].tolist() == ["BR001"] and small["left_out"] == 1
    with pytest.raises(ValueError, match="cannot rank"):
        kpi.ranking(filled, OCT, "avg_clv", EXEC)


def test_one_read_of_the_units_ranks_every_figure(filled, monkeypatch):
    """The wall turns through the figures: the units' figures are read once a level, and each
    figure's ranking is the one read on its own gives, small-cell rule included."""
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "1")
    for level in kpi.RANK_LEVELS:
        figures = kpi.unit_figures(filled, OCT, EXEC, level=level)
        assert set(kpi.RANK_KPIS) <= set(figures.columns)
        for name in kpi.RANK_KPIS:
            one, alone = kpi.rank_units(figures, name, n=1), kpi.ranking(filled, OCT, name, EXEC, level=level, n=1)
            for part in ("top", "bottom"):
                pd.testing.assert_frame_equal(one[part], alone[part])
            assert (one["ranked"], one["left_out"]) == (alone["ranked"], alone["left_out"])
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "2")  # applied when ranking, not when reading
    assert kpi.rank_units(figures, "aum")["left_out"] == kpi.ranking(filled, OCT, "aum", EXEC, level="region")["left_out"]
    with pytest.raises(ValueError, match="cannot rank"):
        kpi.rank_units(figures, "avg_clv")
    with pytest.raises(ValueError, match="cannot rank by"):
        kpi.unit_figures(filled, OCT, EXEC, level="city")


def test_the_target_kpis_are_the_wall_series():
    assert targets.TARGET_KPIS == kpi.SERIES
