"""In a real browser: after login the dashboard serves the Overview on the demo store, no traceback."""

from pathlib import Path

import pytest

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def test_overview_in_browser(app_server, page):
    log_in(page, app_server)
    body = page.inner_text("body")
    assert "Total AUM" in body
    assert "Traceback" not in body
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
