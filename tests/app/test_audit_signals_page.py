"""AppTest: the Audit page's compliance section lists audit-log signals and the entries behind
them; the admin, who also reads the log, does not get the section."""

from analytics import audit
from analytics.store import make_engine
from tests.app.conftest import ROLE_USERS, login, new_app


def _open(monkeypatch, url, role):
    at = login(new_app(monkeypatch, url), ROLE_USERS[role])
    at.switch_page("app_pages/audit_log.py").run()
    assert not at.exception, at.exception
    return at


def test_compliance_sees_a_denied_burst_and_its_entries(monkeypatch, store_url):
    engine = make_engine(store_url)
    seqs = [audit.append(engine, "access_denied", username="mia", roles=["marketing"],
                         target={"page": "admin"}, reason="page not allowed") for _ in range(5)]
    at = _open(monkeypatch, store_url, "compliance")
    assert any(s.value.startswith("Unusual activity") for s in at.subheader)
    table = next(d.value for d in at.dataframe if "subject" in d.value.columns)
    burst = table.loc[table["signal"] == "Access-denied burst"]
    assert burst["subject"].tolist() == ["mia"] and burst["count"].tolist() == [5]
    pick = at.selectbox(key="signal_pick")
    position = next(i for i, label in enumerate(pick.options) if label.startswith("Access-denied burst"))
    pick.set_value(position).run()
    behind = at.dataframe[-1].value
    assert behind["seq"].tolist() == seqs and set(behind["event"]) == {"Access denied"}
    assert at.get("plotly_chart")


def test_admin_reads_the_log_without_the_signals(monkeypatch, store_url):
    at = _open(monkeypatch, store_url, "admin")
    assert not any(s.value.startswith("Unusual activity") for s in at.subheader)


def test_a_wrong_working_hours_setting_is_one_line(monkeypatch, store_url):
    monkeypatch.setenv("WORKING_HOURS", "late")
    at = _open(monkeypatch, store_url, "compliance")
    # shown escaped (an error may echo typed text): the setting's name and value are in it
    assert any("WORKING" in e.value and "late" in e.value and "20" in e.value for e in at.error)
