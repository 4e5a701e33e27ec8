"""AppTest: the Campaigns page for every allowed role on the demo store: marketing plans and creates a
campaign and exports the treatment arm; a relationship manager plans within their portfolio;
an executive reads the results only (no builder, no export, small cells hidden)."""

import pytest
from sqlalchemy import text

from analytics import access, scopes
from analytics.store import make_engine
from tests.app.conftest import capture_exports, open_page
from tests.conftest import copy_store


def _open(monkeypatch, url, role, **kwargs):
    return open_page(monkeypatch, url, role, "campaigns", prefix="camp", **kwargs)


def test_only_the_allowed_roles_have_the_page():
    assert access.PAGE_ACCESS["campaigns"] == {"executive", "marketing", "relationship_manager"}


def test_marketing_sees_the_demo_results_and_exports_the_treatment_arm_only(monkeypatch, demo_store_url):
    exported = capture_exports(monkeypatch)
    at = _open(monkeypatch, demo_store_url, "marketing")
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Campaign audience" in labels and "Uplift" in labels
    uplift = next(m.value for m in at.metric if m.label == "Uplift")
    assert uplift.endswith("pp")
    assert any("Newcombe" in c.value for c in at.caption)
    assert exported, "no treatment-arm export offered"
    engine = make_engine(demo_store_url)
    chosen = at.selectbox(key="camp_chosen").value
    with engine.connect() as conn:
        treatment = set(conn.execute(text("SELECT customer_id FROM campaign_members WHERE campaign_id = :c "
                                          "AND arm = 'treatment'"), {"c": chosen}).scalars())
        control = set(conn.execute(text("SELECT customer_id FROM campaign_members WHERE campaign_id = :c "
                                        "AND arm = 'control'"), {"c": chosen}).scalars())
    frame = exported[-1]
    assert frame.columns[0] == "customer_id"
    assert set(frame["customer_id"]) <= treatment and not set(frame["customer_id"]) & control
    assert not set(frame.columns) & set(access.PERSONAL_FIELDS)


def test_marketing_plans_refuses_a_bad_definition_and_creates_a_campaign(monkeypatch, demo_store_url, tmp_path):
    # A copy: the campaign it creates must not reach the other tests of the shared demo store
    # (tests/analytics/test_campaign_demo.py lists exactly the demo's campaigns).
    demo_store_url = copy_store(demo_store_url, tmp_path / "store.db")
    at = _open(monkeypatch, demo_store_url, "marketing")
    at.selectbox(key="camp_product").select("fund").run()
    assert not at.exception
    size = next(m.value for m in at.metric if m.label == "Campaign audience")
    at.text_input(key="camp_tags").input("no_such_tag").run()
    assert not at.exception and any("unknown tag" in e.value.lower() for e in at.error), [e.value for e in at.error]
    at.text_input(key="camp_tags").input("").run()
    at.button(key="camp_create").click().run()  # no name yet
    assert any("needs a name" in e.value.lower() for e in at.error)
    at.text_input(key="camp_name").input("AppTest fund push").run()
    at.button(key="camp_create").click().run()
    assert not at.exception
    assert any("created" in s.value for s in at.success), [e.value for e in at.error]
    engine = make_engine(demo_store_url)
    with engine.connect() as conn:
        campaign_id, owner = conn.execute(text("SELECT campaign_id, owner FROM campaigns WHERE name = 'AppTest fund push'")).one()
        members = conn.execute(text("SELECT COUNT(*) FROM campaign_members WHERE campaign_id = :c"),
                               {"c": campaign_id}).scalar()
        audited = conn.execute(text("SELECT COUNT(*) FROM audit_log WHERE event = 'campaign_create'")).scalar()
    assert owner == "camp_marketing" and members > 0 and audited >= 1
    assert size != "0"
    at.button(key="camp_create").click().run()  # the same name again
    assert any("already exists" in e.value.lower() for e in at.error)


def test_relationship_manager_plans_within_their_portfolio(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    with engine.connect() as conn:
        rm = conn.execute(text("SELECT MIN(relationship_manager) FROM customers")).scalar()
        portfolio = conn.execute(text("SELECT COUNT(*) FROM customer_segments s JOIN customers c "
                                      "ON c.customer_id = s.customer_id WHERE s.run_id = "
                                      "(SELECT run_id FROM current_run) AND c.relationship_manager = :rm"),
                                 {"rm": rm}).scalar()
    at = open_page(monkeypatch, demo_store_url, "relationship_manager", None, prefix="camp")
    scopes.set_scope(engine, "camp_relationship_manager", portfolios=[rm])
    at = _open(monkeypatch, demo_store_url, "relationship_manager")
    assert not at.exception
    shown = next(m.value for m in at.metric if m.label == "Campaign audience")
    assert shown == f"{portfolio:,}"


def test_executive_reads_results_only(monkeypatch, demo_store_url):
    exported = capture_exports(monkeypatch)
    at = _open(monkeypatch, demo_store_url, "executive")
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Campaign audience" not in labels and "Uplift" in labels
    assert not [b for b in at.button if b.key == "camp_create"]
    assert exported == []


@pytest.mark.parametrize("role", ["marketing", "executive"])
def test_the_page_in_chinese(monkeypatch, demo_store_url, role):
    from tests.app import pagekit as kit

    # its own user: the language chosen is remembered for the user's next login
    at = open_page(monkeypatch, demo_store_url, role, "campaigns", prefix="campzh")
    try:
        kit.set_lang(at, "zh")
        assert not at.exception
        assert at.title[0].value == "营销活动"
        assert any("提升幅度" == m.label for m in at.metric)
    finally:
        kit.set_bare_lang("en")  # the bare-mode language is the process's: give it back


def test_an_executive_sees_no_rate_of_too_few_members(monkeypatch, demo_store_url):
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "1000000")
    at = _open(monkeypatch, demo_store_url, "executive")
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Uplift"] == "—" and "%" not in values["Conversion, treatment"]
    listed = next(d.value for d in at.dataframe if "members" in d.value.columns)
    assert listed["members"].isna().all() and listed["treatment"].isna().all()
    segments = next(d.value for d in at.dataframe if "uplift_pp" in d.value.columns)
    assert segments["uplift_pp"].isna().all()
