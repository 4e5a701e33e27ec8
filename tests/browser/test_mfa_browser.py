"""In a real browser: a compliance user enrols for two-factor login at the first login (QR code,
first code, recovery codes once), then logs in again with a TOTP code; a replayed code is refused."""

import pytest

from analytics import audit, mfa, users
from analytics.store import make_engine
from tests import totp
from tests.browser.conftest import MFA_HEADING, PASSWORD, enter_code, is_login_page, log_in, wait_idle

pytestmark = pytest.mark.browser


def _password(page, base: str, username: str) -> None:
    page.goto(base + "/")
    is_login_page(page)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name=MFA_HEADING).wait_for(timeout=60000)
    wait_idle(page)


def test_a_compliance_user_enrols_then_logs_in_with_a_totp_code(app_server, demo_store_url, browser):
    engine = make_engine(demo_store_url)
    username = "browser_officer"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, ["compliance"])
    mfa.reset(engine, username)

    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    _password(page, app_server, username)
    body = page.inner_text("body")
    assert "Total AUM" not in body  # no page before the enrolment
    qr = page.locator('[data-testid="stImage"] img')
    qr.first.wait_for(timeout=30000)  # the QR code (its image can come a moment after the heading)
    assert qr.count() == 1
    secret = page.locator('[data-testid="stCode"]').first.inner_text().strip()
    enter_code(page, totp.first_code(secret))
    page.get_by_text("Your recovery codes").wait_for(timeout=60000)
    wait_idle(page)
    codes = page.locator('[data-testid="stCode"]').first.inner_text().split()
    assert len(codes) == 10
    assert "Total AUM" not in page.inner_text("body")
    page.get_by_role("button", name="I have saved them").click()
    page.get_by_text("Total AUM").first.wait_for(timeout=60000)
    assert mfa.status(engine, username) == "enrolled"
    page.get_by_role("button", name="Log out").click()
    assert is_login_page(page)
    ctx.close()

    # Again, in a fresh browser: password, then the current code.
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    code = totp.next_code(demo_store_url, username)
    _password(page, app_server, username)
    assert page.locator('[data-testid="stImage"] img').count() == 0  # enrolled: no QR code now
    enter_code(page, code)
    page.get_by_text("Total AUM").first.wait_for(timeout=60000)
    ctx.close()

    # The same code in another browser is refused, and counted.
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = ctx.new_page()
    _password(page, app_server, username)
    enter_code(page, code)
    page.get_by_text("Wrong or already used code.").wait_for(timeout=60000)
    assert "Total AUM" not in page.inner_text("body")
    ctx.close()
    assert "reused code" in audit.query(engine, user=username, event="login_failed")["reason"].tolist()
    users.unlock_user(engine, username)
    # And the helper every browser test uses answers the second factor too.
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    log_in(ctx.new_page(), app_server, username)
    ctx.close()
