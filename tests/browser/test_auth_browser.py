"""In a real browser: anonymous visitors see only the login page at every URL, login works, and after
logout a copied re-authentication cookie no longer logs in."""

import pytest

from analytics import access
from tests.browser.conftest import is_login_page, log_in, session_cookie

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", ["", "login", *access.PAGES])
def test_every_url_shows_only_the_login_page_to_anonymous_visitors(app_server, page, path):
    page.goto(f"{app_server}/{path}")
    assert is_login_page(page)
    # Nothing of any page leaks into the navigation either.
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0


def test_login_then_copied_cookie_is_useless_after_logout(app_server, browser):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server)
    cookies = [session_cookie(page)]  # log_in waited for it

    # Control: while the session is live, the copied cookie logs a fresh browser in.
    thief = browser.new_context(viewport={"width": 1920, "height": 1080})
    thief.add_cookies(cookies)
    tpage = thief.new_page()
    tpage.goto(app_server + "/")
    tpage.get_by_text("Total AUM").wait_for(timeout=30000)
    thief.close()

    page.get_by_role("button", name="Log out").click()
    assert is_login_page(page)
    ctx.close()

    thief = browser.new_context(viewport={"width": 1920, "height": 1080})
    thief.add_cookies(cookies)
    tpage = thief.new_page()
    tpage.goto(app_server + "/")
    assert is_login_page(tpage)
    thief.close()


def test_reload_of_a_sub_page_stays_on_it(app_server, browser):
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    log_in(page, app_server)  # waits for the session cookie
    page.goto(app_server + "/admin")
    page.get_by_text("Refresh runs").wait_for(timeout=30000)
    assert page.url.rstrip("/").endswith("/admin")
    assert "Page not found" not in page.inner_text("body")
    ctx.close()
