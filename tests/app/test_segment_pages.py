"""AppTest: Segments and Lifecycle value pages on the demo store, for each role that may open them."""

import json

import pytest

from analytics import audit, export_manifests, runs
from analytics import segment_explorer as sx
from analytics.store import make_engine, read_frame
from app_pages import widgets
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


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def _number(text):
    return float(text.replace("CNY", "").replace(",", ""))


def test_lifecycle_headline_equals_the_run_and_follows_filters(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    run_id = runs.current_run_id(engine)
    m = runs.get_run_metrics(engine, run_id)
    at = _open(monkeypatch, demo_store_url, "marketing", "lifecycle")
    assert _number(_metric(at, "Customers selected")) == m["segments.customers"]
    assert _number(_metric(at, "Total CLV (3 y)")) == pytest.approx(m["clv_margin_3y_total"], abs=1)
    at.multiselect(key="lifecycle_a").select("60+").run()
    assert not at.exception
    seniors = read_frame(engine, "SELECT COUNT(*) AS n, SUM(m.clv_margin_3y) AS clv FROM customer_segments s "
                                 "JOIN customers c ON c.customer_id = s.customer_id "
                                 "JOIN customer_clv_margin m ON m.run_id = s.run_id AND m.customer_id = s.customer_id "
                                 "WHERE s.run_id = :r "
                                 "AND c.birth_date < :born", {"r": run_id, "born": "1967-01-01"})
    assert _number(_metric(at, "Customers selected")) == seniors["n"].iloc[0] < m["segments.customers"]
    assert _number(_metric(at, "Total CLV (3 y)")) == pytest.approx(seniors["clv"].iloc[0], abs=1)
    top = next(d.value for d in at.dataframe if "clv_margin_3y" in d.value.columns)
    assert len(top) == 50 and top["clv_margin_3y"].is_monotonic_decreasing
    events = audit.query(engine, event="filter")
    assert any("60+" in (p or "") and "lifecycle" in (t or "") for p, t in zip(events["parameters"], events["target"],
                                                                               strict=True))


def test_city_filter_is_the_branches_in_that_city(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    run_id = runs.current_run_id(engine)
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    city = at.multiselect(key="segments_c").options[0]
    at.multiselect(key="segments_c").select(city).run()
    assert not at.exception
    heat = _arr(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"])
    n = read_frame(engine, "SELECT COUNT(*) AS n FROM customer_segments s JOIN customers c "
                           "ON c.customer_id = s.customer_id JOIN branches b ON b.branch_id = c.branch_id "
                           "WHERE s.run_id = :r AND b.city = :city", {"r": run_id, "city": city})["n"].iloc[0]
    assert heat.sum() == n > 0
    assert any(f"{n:,} of" in c.value for c in at.caption)


def test_campaign_list_is_paged_masked_and_its_export_audited(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    offered = []
    real = widgets.export_buttons
    monkeypatch.setattr(widgets, "export_buttons", lambda engine_, user_, frame, *a, **k: (
        offered.append((user_, frame)), real(engine_, user_, frame, *a, **k)))
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
    assert not at.exception
    consenting = read_frame(engine, "SELECT COUNT(*) AS n FROM customers WHERE marketing_consent = :yes AND "
                                    "customer_id IN (SELECT customer_id FROM customer_segments WHERE run_id = :r)",
                            {"yes": True, "r": runs.current_run_id(engine)})["n"].iloc[0]
    first = at.dataframe[-1].value
    assert len(first) == 200 and first["clv_margin_3y"].is_monotonic_decreasing
    at.number_input(key="campaign_page").set_value(2).run()
    second = at.dataframe[-1].value
    assert len(second) == 200 and not set(second["customer_id"]) & set(first["customer_id"])
    assert second["clv_margin_3y"].max() <= first["clv_margin_3y"].min()
    user, frame = offered[-1]
    assert len(frame) == consenting and list(frame.columns) == list(sx.CAMPAIGN_COLUMNS)
    assert not {"name", "phone", "id_number", "email", "address", "birth_date"} & set(frame.columns)
    widgets.audited_export(engine, user, frame, "campaign", "csv", {"page": "segments"})
    target = json.loads(audit.query(engine, event="export").iloc[0]["target"])
    assert target["rows"] == consenting and len(target["sha256"]) == 64
    # Every customer of the file is in its manifest, which the entry names (no ids in the entry).
    assert "customer_ids" not in target and target["customers"] == consenting
    assert export_manifests.customers_of(engine, target["manifest_id"]) == sorted(frame["customer_id"])
    events = audit.query(engine, event="filter")
    assert any("mortgage_holder or not mortgage_holder" in (p or "") for p in events["parameters"])


def test_risk_managers_tag_list_holds_customers_without_marketing_consent(monkeypatch, demo_store_url):
    """Risk work needs the whole selected population: the list offered for export is every
    segmented customer, consenting or not; the caption says why."""
    engine = make_engine(demo_store_url)
    offered = []
    monkeypatch.setattr(widgets, "export_buttons", lambda engine_, user_, frame, *a, **k: offered.append(frame))
    at = _open(monkeypatch, demo_store_url, "risk", "segments")
    at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
    assert not at.exception
    counts = read_frame(engine, "SELECT COUNT(*) AS n, SUM(CASE WHEN c.marketing_consent THEN 1 ELSE 0 END) AS yes "
                                "FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id "
                                "WHERE s.run_id = :r", {"r": runs.current_run_id(engine)}).iloc[0]
    assert int(counts["yes"]) < int(counts["n"])  # the demo holds customers without consent
    assert len(offered[-1]) == int(counts["n"])
    assert any("risk review" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------------------
# Risk and demographic filters (issue 14)
# ---------------------------------------------------------------------------------------------

def _segmented(engine, where: str, params: dict) -> int:
    return int(read_frame(engine, "SELECT COUNT(*) AS n FROM customer_segments s JOIN customers c "
                                  f"ON c.customer_id = s.customer_id WHERE s.run_id = :r AND {where}",
                          {"r": runs.current_run_id(engine), **params})["n"].iloc[0])


def test_marketing_filters_by_credit_grade_and_every_figure_follows(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")
    at.selectbox(key="segments_attr").set_value("credit_grade").run()
    assert not at.exception
    choice = at.multiselect(key="segments_attr_credit_grade")
    assert choice.options[0] == "AAA" and choice.label == "Credit grade"
    choice.select("AAA").select("AA").run()
    assert not at.exception
    n = _segmented(engine, "c.credit_grade IN ('AAA', 'AA')", {})
    heat = _arr(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"])
    tiers = json.loads(at.get("plotly_chart")[2].proto.spec)["data"][0]
    assert heat.sum() == n == _arr(tiers["y"]).sum() > 0
    assert any(f"{n:,} of" in c.value for c in at.caption)
    # The cluster profiles are not split by these filters: the page says so instead of drawing them.
    assert len(at.get("plotly_chart")) == 4 and any("cluster profiles" in i.value for i in at.info)
    at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
    assert int(at.metric[0].value.replace(",", "")) == n
    events = audit.query(engine, event="filter")
    assert any(json.loads(p or "{}").get("credit_grade") == ["AAA", "AA"] for p in events["parameters"])


def test_risk_filters_by_highest_product_risk_held_in_the_catalogs_words(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    at = _open(monkeypatch, demo_store_url, "risk", "segments")
    at.selectbox(key="segments_attr").set_value("risk_level_held").run()
    choice = at.multiselect(key="segments_attr_risk_level_held")
    assert choice.options[0] == "No open product" and "R5 high" in choice.options
    choice.select("R5").run()
    assert not at.exception
    month = str(runs.get_run_metrics(engine, runs.current_run_id(engine))["as_of_month"])[:7]
    end = read_frame(engine, "SELECT DATE(:m || '-01', '+1 month', '-1 day') AS d", {"m": month})["d"].iloc[0]
    n = _segmented(engine, "c.customer_id IN (SELECT h.customer_id FROM holdings h JOIN products p "
                           "ON p.product_id = h.product_id WHERE p.risk_level = 'R5' AND h.opened_on <= :end "
                           "AND (h.closed_on IS NULL OR h.closed_on > :end))", {"end": end})
    heat = _arr(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"])
    assert heat.sum() == n > 0


def test_executive_sees_no_figure_a_filter_narrows_by_a_few(monkeypatch, demo_store_url):
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "5")
    engine = make_engine(demo_store_url)
    people = read_frame(engine, "SELECT c.credit_grade, c.risk_tolerance, c.occupation, c.income_band, "
                                "c.customer_type, c.gender FROM customer_segments s JOIN customers c "
                                "ON c.customer_id = s.customer_id WHERE s.run_id = :r",
                        {"r": runs.current_run_id(engine)})
    for attribute in people.columns:  # an attribute value held by a few customers (fewer than 5)
        counts = people[attribute].fillna("unknown").value_counts()
        if (counts < 5).any():
            break
    else:
        pytest.fail("the demo store has no attribute value held by fewer than 5 customers")
    few = counts[counts < 5].index[0]
    at = _open(monkeypatch, demo_store_url, "executive", "segments")
    at.selectbox(key="segments_attr").set_value(attribute).run()
    choice = at.multiselect(key=f"segments_attr_{attribute}")
    for value in counts.index.drop(few):  # everyone but the few
        choice = choice.select(value)
    choice.run()
    assert not at.exception and not at.get("plotly_chart")
    assert any("leaves out fewer than 5" in i.value for i in at.info)
    at = _open(monkeypatch, demo_store_url, "marketing", "segments")  # a role that sees rows sees them
    at.selectbox(key="segments_attr").set_value(attribute).run()
    choice = at.multiselect(key=f"segments_attr_{attribute}")
    for value in counts.index.drop(few):
        choice = choice.select(value)
    choice.run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
