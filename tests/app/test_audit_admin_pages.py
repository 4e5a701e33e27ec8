"""AppTest: the Audit log page (compliance, admin) and the Admin page (admin)."""

from analytics import audit, runs
from analytics.store import make_engine
from tests.app.conftest import ROLE_USERS, login, new_app


def _open(monkeypatch, url, role, page):
    at = login(new_app(monkeypatch, url), ROLE_USERS[role])
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception
    return at


def test_audit_page_lists_entries_and_audits_its_own_reading(monkeypatch, store_url):
    at = _open(monkeypatch, store_url, "compliance", "audit_log")
    assert at.title[0].value.startswith("Audit log")
    shown = at.dataframe[0].value
    assert "Logged in" in set(shown["event"])  # the event in words, not its key
    assert "password_hash" not in shown.columns and "entry_hash" not in shown.columns
    assert "audit_read" in set(audit.query(make_engine(store_url))["event"])


def test_audit_page_verify_button(monkeypatch, store_url):
    at = _open(monkeypatch, store_url, "admin", "audit_log")
    verify = next(b for b in at.button if b.label.startswith("Verify"))
    verify.click()
    at.run()
    assert at.success and "audit_verify" in set(audit.query(make_engine(store_url))["event"])


def test_admin_page_lists_users_without_hashes_and_runs_a_refresh(monkeypatch, store_url):
    engine = make_engine(store_url)
    before = runs.current_run_id(engine)
    at = _open(monkeypatch, store_url, "admin", "admin")
    users_frame = at.dataframe[0].value
    assert set(ROLE_USERS.values()) <= set(users_frame["username"])
    assert not [c for c in users_frame.columns if "hash" in c or "password" == c]
    start = next(b for b in at.button if b.label.startswith("Start a refresh"))
    start.click()
    at.run()
    assert not at.exception
    assert runs.current_run_id(engine) == before + 1
    assert {"refresh_start", "refresh_commit"} <= set(audit.query(engine)["event"])
