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


# Measured in the page: the lowest tile's bottom edge, anything wider than its box or the window,
# and any element that scrolls (a kiosk screen has no one to scroll it).
_MEASURE = """() => {
  const tiles = [...document.querySelectorAll('.kpi-tile, .kpi-panel')];
  const texts = [...document.querySelectorAll('.kpi-label, .kpi-value, .kpi-deltas, .kpi-target, .kpi-rank')];
  const scrolling = [...document.querySelectorAll('*')].filter(e => e.scrollHeight > e.clientHeight + 1
      && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY));
  return {tiles: tiles.length, bottom: Math.max(...tiles.map(e => e.getBoundingClientRect().bottom)),
          right: Math.max(...texts.map(e => e.getBoundingClientRect().right)),
          clipped: texts.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent),
          scrolling: scrolling.map(e => e.dataset.testid || e.tagName),
          pageWidth: document.documentElement.scrollWidth};
}"""


def test_the_kiosk_wall_fills_a_1920x1080_screen_and_reads_on_a_3840x2160_one(app_server, demo_store_url, browser):
    from analytics import loader, targets, users
    from tests.browser.conftest import PASSWORD, wait_idle

    engine = make_engine(demo_store_url)
    loader.load_files(engine, [targets.DEMO_FILE], "kpi_targets")  # the same bytes again: a no-op
    SHOTS.mkdir(exist_ok=True)
    for lang, title in (("en", "Customer insight"), ("zh", "客户洞察数据大屏")):
        username = f"browser_wall_{lang}"
        if users.get_user(engine, username) is None:
            users.add_user(engine, username, PASSWORD, ["display"])
        users.set_language(engine, username, lang)
        ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = ctx.new_page()
        log_in(page, app_server, username, expect=title)
        page.goto(app_server + "/kpi_wall?kiosk=1")
        page.locator(".kpi-rank").first.wait_for(timeout=30000)
        wait_idle(page)
        # Both sizes in English; Chinese (the longer values, 万/亿) at the usual 1920×1080.
        for width, height in ((1920, 1080), (3840, 2160)) if lang == "en" else ((1920, 1080),):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_function(f"() => window.innerWidth === {width}")
            wait_idle(page)
            page.screenshot(path=str(SHOTS / f"kpi_wall_{lang}_{width}x{height}.png"))
            m = page.evaluate(_MEASURE)
            where = f"{lang} at {width}×{height}: {m}"
            assert m["tiles"] == 17, where  # 12 KPI tiles, the ranking panel, 4 data-quality tiles
            # No empty quarter: the lowest tile ends in the bottom quarter, and nothing needs scrolling.
            assert 0.75 * height <= m["bottom"] <= height, where
            assert m["scrolling"] == [], where
            # Nothing wider than its box or the screen.
            assert m["clipped"] == [] and m["right"] <= width and m["pageWidth"] <= width, where
        ctx.close()
