"""AppTest: the KPI wall for executive, admin and the display account; kiosk mode by URL parameter."""

import pytest

from analytics import users
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, login, nav_pages, new_app


def _open(monkeypatch, url, role, kiosk=False):
    engine = make_engine(url)
    username = f"kpi_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    at = new_app(monkeypatch, url)
    if kiosk:
        at.query_params["kiosk"] = "1"
    login(at, username)
    if role != "display":
        at.switch_page("app_pages/kpi_wall.py").run()
    assert not at.exception
    return at


@pytest.mark.parametrize("role", ["executive", "admin", "display"])
def test_wall_shows_every_tile(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role)
    text = " ".join(m.value for m in at.markdown)
    for label in ("Customers with a balance", "Total AUM", "Predicted churn rate", "Data quality score",
                  "Cross-sell potential"):
        assert label in text
    from analytics import refresh

    # Every figure is present on the demo store (the churn tiles once the churn stage runs).
    blanks = text.count('kpi-value">—')
    assert blanks == (0 if "churn" in [s.name for s in refresh.STAGES] else 2)
    assert len(at.get("plotly_chart")) >= 7  # a sparkline per monthly series (one run: no run-level trend yet)


def test_display_account_sees_the_wall_alone(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "display")
    assert nav_pages(at) == {"kpi_wall"}


def test_kiosk_mode_hides_the_chrome(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "executive", kiosk=True)
    css = " ".join(m.value for m in at.markdown)
    assert 'stSidebar"]' in css and "display: none" in css


@pytest.mark.parametrize("role, kiosk", [("display", True), ("executive", False)])
def test_the_display_account_gets_the_kiosk_view_without_asking(monkeypatch, demo_store_url, role, kiosk):
    at = _open(monkeypatch, demo_store_url, role)
    css = " ".join(m.value for m in at.markdown)
    assert ('stSidebar"]' in css and "display: none" in css) is kiosk
