"""In a real browser: the kiosk KPI wall survives a reload and shows a new refresh without a reload."""

import re
from pathlib import Path

import pytest

from analytics.refresh import run_refresh
from analytics.store import make_engine
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def _run_shown(page) -> int:
    match = re.search(r"refresh run (\d+)", page.inner_text("body"))
    assert match, "the wall shows no refresh run"
    return int(match.group(1))


def test_kiosk_wall_reloads_in_place_and_follows_a_new_refresh(app_server, demo_store_url, browser):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server, "browser_wall", expect="Total AUM")  # the wall is its only page
    page.goto(app_server + "/kpi_wall?kiosk=1")
    page.get_by_text("Total AUM").first.wait_for(timeout=30000)
    assert "kiosk=1" in page.url and "Page not found" not in page.inner_text("body")
    assert page.locator('[data-testid="stSidebar"]').is_hidden()
    before = _run_shown(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "kpi_wall_kiosk.png"))

    engine = make_engine(demo_store_url)
    after = run_refresh(engine)
    assert after > before
    # No page.goto or reload from here: the fragment re-reads the figures on its own.
    page.get_by_text(f"refresh run {after}").first.wait_for(timeout=30000)
    assert _run_shown(page) == after
    ctx.close()


def test_a_disabled_kiosk_loses_the_wall_at_the_next_tick(app_server, demo_store_url, browser):
    # The wall refreshes itself (a fragment tick every 3 s here) without app.py's login gate; the
    # tick checks the server-side session, so disabling the account takes the figures off the screen.
    from analytics import users
    from tests.browser.conftest import PASSWORD, is_login_page

    engine = make_engine(demo_store_url)
    if users.get_user(engine, "browser_wall_revoked") is None:
        users.add_user(engine, "browser_wall_revoked", PASSWORD, ["display"])
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server, "browser_wall_revoked", expect="Total AUM")
    page.goto(app_server + "/kpi_wall?kiosk=1")
    page.get_by_text("Total AUM").first.wait_for(timeout=30000)
    users.disable_user(engine, "browser_wall_revoked")
    # No reload: the next tick (3 s) ends the login and shows the login page.
    page.get_by_text("Password").first.wait_for(timeout=30000)
    assert is_login_page(page)
    assert "log in again" in page.inner_text("body")
    ctx.close()
