"""In a real browser: every role logs in and opens each of its pages; each page renders without an
error and is saved as a 1920×1080 screenshot in screenshots/ (the test artifacts)."""

from pathlib import Path

import pytest

from analytics import access, users
from analytics.store import make_engine
from tests.browser.conftest import PASSWORD, log_in, wait_charts, wait_idle

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
ROOT = Path(__file__).resolve().parents[2]


def _marker(key: str) -> str:
    """Text that shows once the page has drawn: its title, or a tile label on the title-less wall."""
    return "Total AUM" if key == "kpi_wall" else access.PAGES[key][0]


@pytest.mark.parametrize("role", access.ROLES)
def test_every_page_of_every_role(app_server, demo_store_url, browser, role):
    engine = make_engine(demo_store_url)
    username = f"shot_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    pages = [p for p in access.pages_for([role]) if (ROOT / "app_pages" / f"{p}.py").exists()]
    log_in(page, app_server, username, expect=_marker(pages[0]))
    SHOTS.mkdir(exist_ok=True)
    for key in pages:
        page.goto(f"{app_server}/{key}")
        page.get_by_text(_marker(key)).first.wait_for(timeout=60000)
        wait_idle(page, timeout_ms=60000)
        wait_charts(page, timeout_ms=60000)
        body = page.inner_text("body")
        assert "Traceback" not in body and "Page not found" not in body, f"{role} on {key}"
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(SHOTS / f"{role}-{key}.png"))
    ctx.close()


def test_a_user_who_chose_chinese_gets_every_page_in_chinese(app_server, demo_store_url, browser):
    """The language is remembered per user: set before the login, it applies from the first page."""
    from analytics import i18n

    engine = make_engine(demo_store_url)
    username = "shot_zh_marketing"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, ["marketing"])
    users.set_language(engine, username, "zh")
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server, username, expect="管理资产")
    SHOTS.mkdir(exist_ok=True)
    for key in ("overview", "segments", "lifecycle", "churn", "cross_sell"):
        page.goto(f"{app_server}/{key}")
        title = i18n.tr(f"page.{key}", "zh")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60000)
        wait_idle(page, timeout_ms=60000)
        wait_charts(page, timeout_ms=60000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(SHOTS / f"zh-marketing-{key}.png"))
    ctx.close()
