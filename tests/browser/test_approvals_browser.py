"""In a real browser, issue 18's whole privileged flow: two compliance officers, new accounts, each
enrol in two-factor login at their first login (QR code's key, first TOTP code, recovery codes)
through ``log_in``; one requests an unmask on Customer 360, the other approves it on the Approvals
page, and the first sees the value once (gone on reload, refused the second time)."""

import pytest
from sqlalchemy import text

from analytics import users
from analytics.store import make_engine
from tests.browser.conftest import PASSWORD, log_in, wait_idle, wait_quiet

pytestmark = pytest.mark.browser
REASON = "identity check for complaint case 2026-77"


def _officer(engine, username):
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, ["compliance"])


def test_four_eyes_unmask_in_the_browser(app_server, demo_store_url, browser):
    engine = make_engine(demo_store_url)
    _officer(engine, "bro_officer_a")
    _officer(engine, "bro_officer_b")
    with engine.connect() as conn:
        cid, name = conn.execute(text("SELECT customer_id, name FROM customers WHERE name IS NOT NULL "
                                      "ORDER BY customer_id DESC LIMIT 1")).first()

    ctx_a = browser.new_context(viewport={"width": 1600, "height": 1000})
    a = ctx_a.new_page()
    log_in(a, app_server, "bro_officer_a", expect="Overview")
    a.goto(f"{app_server}/customer_360")
    a.get_by_role("textbox", name="Customer id", exact=True).wait_for(timeout=60000)
    wait_quiet(a)
    a.get_by_role("textbox", name="Customer id", exact=True).fill(cid)  # the radio picking the key has the same name
    a.get_by_role("button", name="Look up").click()
    a.get_by_text("Unmask a field").first.wait_for(timeout=60000)
    wait_idle(a)
    a.get_by_label("Reason (written to the audit log)", exact=True).fill(REASON)
    a.get_by_role("button", name="Request to unmask").click()  # the field preselected: name
    a.get_by_text("Request #").first.wait_for(timeout=60000)
    assert name not in a.inner_text("body")

    ctx_b = browser.new_context(viewport={"width": 1600, "height": 1000})
    b = ctx_b.new_page()
    log_in(b, app_server, "bro_officer_b", expect="Overview")
    b.goto(f"{app_server}/approvals")
    b.get_by_text("Pending requests").first.wait_for(timeout=60000)
    wait_quiet(b)
    b.get_by_label("Comment (kept with the decision and audited)", exact=True).fill("approved for case 2026-77")
    b.get_by_role("button", name="Approve").click()
    b.get_by_text("approved.").first.wait_for(timeout=60000)
    ctx_b.close()

    a.goto(f"{app_server}/approvals")
    a.get_by_text("My requests").first.wait_for(timeout=60000)
    wait_quiet(a)
    use = a.get_by_role("button", name="Use once (show the value or prepare the download)")
    use.click()
    a.get_by_text(f"{cid} · name:").first.wait_for(timeout=60000)
    assert name in a.inner_text("body")
    a.reload()
    a.get_by_text("My requests").first.wait_for(timeout=60000)
    wait_quiet(a)
    assert name not in a.inner_text("body")  # shown once
    a.get_by_role("button", name="Use once (show the value or prepare the download)").click()
    a.get_by_text("already used").first.wait_for(timeout=60000)
    assert name not in a.inner_text("body")
    ctx_a.close()
