"""Real-browser fixtures: a Streamlit server on a free port, and Debian's Chromium through Playwright.

The browser tests skip with a message when Chromium is absent; with ``REQUIRE_BROWSER=1`` (CI) they
fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from analytics import mfa
from analytics.store import make_engine
from app_pages.session import COOKIE_NAME as SESSION_COOKIE  # the app's own name for it
from tests import totp

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# The store each started server serves, by base URL: log_in reads a user's TOTP secret from it.
STORES: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store_url: str, tmp_path: Path, extra_env: dict | None = None):
    """Start ``streamlit run app.py`` against ``store_url``; return (base URL, process, log path)."""
    port = _free_port()
    log_path = tmp_path / f"streamlit-{port}.log"
    env = {**os.environ, "CUSTOMER_STORE_URL": store_url, **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    STORES[base] = store_url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return base, proc, log_path
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not become healthy within 60 s")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but Chromium is not at {CHROMIUM}")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Flags as the machine's own probe uses: no sandbox as root, and no background network
            # calls, which the closed network refuses.
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    pg = context.new_page()
    yield pg
    context.close()


def wait_idle(page, timeout_ms: int = 30000) -> None:
    """Wait until the Streamlit script has finished running (the app's own script state)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def wait_charts(page, timeout_ms: int = 30000) -> None:
    """Wait until every Plotly chart on the page has drawn its plot. The script finishes before
    Plotly draws, and a screenshot taken at that moment showed empty chart frames."""
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .every(chart => {
            const plot = chart.querySelector('.js-plotly-plot');
            return plot && plot._fullLayout && plot.querySelector('svg.main-svg');
        })""", timeout=timeout_ms)


def wait_quiet(page, quiet_ms: int = 1500, timeout_ms: int = 30000) -> None:
    """Wait until the app is idle, then idle again ``quiet_ms`` later. The authenticator's cookie
    component used to report a moment after each page load and rerun the page, and a click between
    the two runs was lost (the Approvals "Use once" click in a CI run); the app no longer draws that
    component (``test_a_page_load_runs_the_page_once``), and this stays as the tests' own guard."""
    wait_idle(page, timeout_ms)
    page.wait_for_timeout(quiet_ms)
    wait_idle(page, timeout_ms)


PASSWORD = "browser test password"
# The audit key and checkpoint are the test session's (tests/conftest.py), as the server appends to
# the shared demo store's chain too.
SECRET_ENV = {"AUTH_COOKIE_KEY": "browser-cookie-key-" + "b" * 32,
              # The KPI wall re-reads its figures every 3 s here, so a test can watch it update.
              "KPI_REFRESH_SECONDS": "3"}


@pytest.fixture(scope="session")
def app_server(demo_store_url, tmp_path_factory):
    """The dashboard served on the demo store, with a user ``browser_admin`` (admin + compliance)."""
    from analytics import users
    from analytics.store import make_engine

    tmp = tmp_path_factory.mktemp("srv")
    engine = make_engine(demo_store_url)
    if users.get_user(engine, "browser_admin") is None:
        users.add_user(engine, "browser_admin", PASSWORD, ["admin", "compliance"])
    if users.get_user(engine, "browser_wall") is None:
        users.add_user(engine, "browser_wall", PASSWORD, ["display"])
    engine.dispose()
    base, proc, _log = start_server(demo_store_url, tmp, dict(SECRET_ENV))
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def is_login_page(page) -> bool:
    """Wait for the login page; True when it shows the form and nothing of any page's content."""
    page.get_by_text("Password").first.wait_for(timeout=30000)
    wait_idle(page)
    body = page.inner_text("body")
    return "Username" in body and "Total AUM" not in body


def log_in(page, base: str, username: str = "browser_admin", password: str = PASSWORD,
           expect: str = "Total AUM", path: str = "/") -> None:
    page.goto(base + path)
    is_login_page(page)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    second_factor(page, base, username, expect)
    page.get_by_text(expect).first.wait_for(timeout=60000)
    wait_idle(page)
    session_cookie(page)


MFA_HEADING = "Two-factor login"


def second_factor(page, base: str, username: str, expect: str) -> bool:
    """When the app asks for a second factor after the password, answer as the user's
    authenticator app would: at a first enrolment, from the key shown under the QR code (then
    acknowledge the recovery codes); else with the current code of the stored secret. True if asked."""
    mfa_heading = page.get_by_role("heading", name=MFA_HEADING)
    page.get_by_text(expect).first.or_(mfa_heading.first).wait_for(timeout=60000)
    if not mfa_heading.count():
        return False
    # Whether this is the enrolment is the store's to say: the page may be between two reruns.
    engine = make_engine(STORES[base])
    enrolling = mfa.status(engine, username) != "enrolled"
    if enrolling:
        key = page.locator('[data-testid="stCode"]').first
        key.wait_for(timeout=60000)  # the key under the QR code
        code = totp.first_code(key.inner_text().strip())
    else:
        code = totp.next_code(engine, username)
    enter_code(page, code)
    if enrolling:
        saved = page.get_by_role("button", name="I have saved them")
        saved.wait_for(timeout=60000)
        saved.click()
    return True


def enter_code(page, code: str) -> None:
    """Type a code into the second-factor form and submit it."""
    page.get_by_label("Six-digit code", exact=False).fill(code)
    page.get_by_role("button", name="Verify", exact=True).click()




def session_cookie(page, timeout_ms: int = 15000) -> dict:
    """The re-authentication cookie, once the browser has written it.

    The login component writes it from the browser side after the login run, so a ``page.goto``
    straight after the login can race it and land on the login page (seen in CI)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        found = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"the browser never wrote the {SESSION_COOKIE} cookie after the login")
        page.wait_for_timeout(200)
