"""In a real browser: anonymous visitors see only the login page at every URL, login works, and after
logout a copied re-authentication cookie no longer logs in."""

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from analytics import access
from tests.browser.conftest import is_login_page, log_in, session_cookie, wait_idle

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


@pytest.mark.parametrize("path", ["/admin", "/"])
def test_a_page_load_runs_the_page_once(app_server, browser, path):
    """Nothing reruns a page by itself after it loads. The authenticator's cookie component used to
    report the browser's cookies a moment after every load, and its report reran the page: a click
    in that moment (a login, "Use once") was lost. Logged in ("/admin") and anonymous ("/")."""
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    if path != "/":
        log_in(page, app_server)
    started: list[int] = []

    def on_frame(payload) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "new_session":
                started.append(1)

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    page.goto(app_server + path)
    page.get_by_text("Refresh runs" if path != "/" else "Password").first.wait_for(timeout=30000)
    wait_idle(page)
    page.wait_for_timeout(4000)  # the report came within a second or so
    wait_idle(page)
    assert len(started) == 1, f"{len(started)} runs after one load of {path}"
    ctx.close()
