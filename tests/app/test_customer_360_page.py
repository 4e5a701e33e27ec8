"""AppTest: Customer 360 lookup (masked), unmask for compliance only, with a reason, audited."""

import pandas as pd
import pytest

from analytics import audit
from analytics.store import make_engine
from tests.app.conftest import open_page


def _open(monkeypatch, url, role):
    return open_page(monkeypatch, url, role, "customer_360", prefix="c360")


def _first_customer(url):
    return pd.read_sql("SELECT customer_id, phone, name FROM customers WHERE phone IS NOT NULL "
                       "ORDER BY customer_id LIMIT 1", make_engine(url).connect()).iloc[0]


@pytest.mark.parametrize("role", ["marketing", "risk"])
def test_lookup_shows_masked_profile_and_no_unmask(monkeypatch, demo_store_url, role):
    c = _first_customer(demo_store_url)
    at = _open(monkeypatch, demo_store_url, role)
    at.text_input[0].input(c["customer_id"])
    at.button[0].click()
    at.run()
    assert not at.exception
    # Balances are need-to-know: risk sees the balance chart, marketing a table of AUM bands.
    assert len(at.get("plotly_chart")) == (1 if role == "risk" else 0)
    text = " ".join(str(d.value.to_csv()) for d in at.dataframe) + " ".join(s.value for s in at.subheader)
    assert c["phone"] not in text and c["name"] not in text
    assert not [f for f in at.get("form") if "unmask" in str(f.proto)]
    assert len(at.text_area) == 0


def test_compliance_requests_an_unmask_with_reason(monkeypatch, demo_store_url):
    """Unmasking is four-eyes: the page files a request (the value is shown once on the Approvals
    page after a second officer approves: tests/app/test_approvals_page.py)."""
    c = _first_customer(demo_store_url)
    engine = make_engine(demo_store_url)
    unmasks_before = len(audit.query(engine, event="unmask"))
    at = _open(monkeypatch, demo_store_url, "compliance")
    at.text_input[0].input(c["customer_id"])
    at.button[0].click()
    at.run()
    at.selectbox[0].select("phone")
    at.text_area[0].input("too short")
    at.button[1].click()
    at.run()
    assert any("reason" in e.value for e in at.error)
    at.selectbox[0].select("phone")
    at.text_area[0].input("identity check for complaint case 2026-77")
    at.button[1].click()
    at.run()
    assert any("Request #" in s.value for s in at.success)
    assert not any(c["phone"] in i.value for i in at.info)
    assert len(audit.query(engine, event="unmask")) == unmasks_before  # nothing revealed yet
    entry = audit.query(engine, event="approval_request").iloc[0]
    assert c["customer_id"] in entry["target"] and entry["reason"].startswith("identity check")


def test_unknown_customer_is_a_clear_message(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "risk")
    at.text_input[0].input("C000000000")
    at.button[0].click()
    at.run()
    assert any("No customer" in w.value for w in at.warning)


def test_lookup_by_id_number_mobile_and_name_at_branch(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    c = pd.read_sql("SELECT customer_id, id_number, phone, name, branch_id FROM customers WHERE phone IS NOT NULL "
                    "AND id_number IS NOT NULL AND name IS NOT NULL ORDER BY customer_id LIMIT 1",
                    engine.connect()).iloc[0]
    same_id = int(pd.read_sql("SELECT COUNT(*) AS n FROM customers WHERE id_number = :v", engine.connect(),
                              params={"v": c["id_number"]}).iloc[0]["n"])
    at = _open(monkeypatch, demo_store_url, "marketing")
    assert "e.g. C100000123" in at.text_input[0].placeholder  # the id format is shown
    for kind, value in (("id_number", c["id_number"]), ("mobile", " ".join([c["phone"][:3], c["phone"][3:]]))):
        at.radio(key="c360_kind").set_value(kind).run()
        at.text_input[0].input(value)
        at.button[0].click()
        at.run()
        assert not at.exception
        if kind == "mobile" or same_id == 1:
            assert any(c["customer_id"] in s.value for s in at.subheader), kind
        holdings = next(d.value for d in at.dataframe if "account_number" in d.value.columns)
        assert not set(holdings["category"]) & {"demand_deposit", "credit_card", "time_deposit", "consumer_loan"}
    at.text_input[0].input(c["phone"][:-1])  # one digit short: exact match only
    at.button[0].click()
    at.run()
    assert any("No customer" in w.value for w in at.warning)
    at.radio(key="c360_kind").set_value("name_branch").run()
    at.text_input[0].input(c["name"])
    at.text_input[1].input(c["branch_id"])
    at.button[0].click()
    at.run()
    assert not at.exception
    listed = at.dataframe[0].value
    assert c["customer_id"] in set(listed["customer_id"]) and len(listed) <= 20
    assert c["name"] not in " ".join(listed.astype(str).to_numpy().ravel().tolist())  # names masked
    targets = " ".join(audit.query(engine, event="filter")["target"].astype(str))
    assert '"lookup": "mobile"' in targets or '"lookup":"mobile"' in targets
    assert c["id_number"] not in targets and c["phone"] not in targets
