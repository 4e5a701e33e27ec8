"""AppTest fixtures: a small store with one user per role, keys set, and a login helper."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics import users
from analytics.refresh import run_refresh
from analytics.store import init_schema, make_engine
from tests import totp
from tests.analytics import store_rows

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60
PASSWORD = "correct horse battery staple"
ROLE_USERS = {role: f"user_{role}" for role in ("executive", "marketing", "risk", "compliance", "admin", "display")}


APP_ENV = {
    "AUTH_COOKIE_KEY": "test-cookie-key-" + "k" * 32,
    "MFA_KEY": "test-mfa-key-" + "m" * 32,
    # Most page tests read a 3-customer store, where every figure is a small cell: they check the
    # figures themselves, so the small-cell rule is off here; tests/app/test_door_pages.py (and the
    # leak test) turn it on and check what aggregate-only roles are shown.
    "MIN_CELL_CUSTOMERS": "1",
}


def _set_app_env(patch: pytest.MonkeyPatch) -> None:
    for name, value in APP_ENV.items():
        patch.setenv(name, value)
    # The audit key and checkpoint are the test session's (tests/conftest.py): the demo store is
    # shared by many tests, and its chain must continue from one checkpoint.
    patch.setattr(users, "BCRYPT_ROUNDS", 4)


@pytest.fixture(autouse=True)
def app_env(monkeypatch, tmp_path):
    _set_app_env(monkeypatch)


_TEMPLATE: dict[str, str] = {}


@pytest.fixture(scope="session", autouse=True)
def app_store_template(tmp_path_factory):
    """The filled, refreshed store with one user per role that most page tests start from, built
    once a session (in the environment of :func:`app_env`) and copied for each test by
    :func:`make_store`: a refresh in a long test process takes seconds, a copy a fraction of one."""
    with pytest.MonkeyPatch.context() as patch:
        _set_app_env(patch)
        _TEMPLATE["url"] = _build_store(tmp_path_factory.mktemp("app-store"))
    yield _TEMPLATE["url"]
    _TEMPLATE.clear()


def make_store(tmp_path, *, fill=True, refresh=True, roles=ROLE_USERS) -> str:
    """A store of the page tests in ``tmp_path``: ``store_rows`` filled in and refreshed, with the
    users of ``roles`` (a copy of :func:`app_store_template` for the usual store)."""
    if fill and refresh and roles is ROLE_USERS and "url" in _TEMPLATE:
        from tests.conftest import copy_store

        return copy_store(_TEMPLATE["url"], Path(tmp_path) / "store.db")
    return _build_store(tmp_path, fill=fill, refresh=refresh, roles=roles)


def _build_store(tmp_path, *, fill=True, refresh=True, roles=ROLE_USERS) -> str:
    url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    if fill:
        store_rows.fill(engine)
    if fill and refresh:
        run_refresh(engine)
    for role, username in roles.items():
        users.add_user(engine, username, PASSWORD, [role])
        if users.mfa_required([role]):
            totp.enrol(engine, username)  # compliance and admin log in with a code (see login())
    engine.dispose()
    return url


@pytest.fixture
def store_url(tmp_path):
    return make_store(tmp_path)


def new_app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("CUSTOMER_STORE_URL", url)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def login(at: AppTest, username: str, password: str = PASSWORD, *, second_factor: bool = True) -> AppTest:
    """Fill and submit the login form (drawn by streamlit-authenticator); then, when the app asks
    for a second factor, do what the user's authenticator app does: read the QR's key at a first
    enrolment (and acknowledge the recovery codes), or give the current code."""
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    at.button[0].click()
    at.run()
    pending = at.session_state["ci_mfa_pending"] if "ci_mfa_pending" in at.session_state else None
    if second_factor and pending:
        if pending["step"] == "enrol":
            code = totp.first_code(at.code[0].value)  # the key shown under the QR code
        else:
            code = totp.next_code(os.environ["CUSTOMER_STORE_URL"], pending["username"])
        submit_code(at, code)
        if at.session_state["ci_recovery_codes"] if "ci_recovery_codes" in at.session_state else None:
            at.button(key="ci_recovery_saved").click()
            at.run()
    return at


def submit_code(at: AppTest, code: str) -> AppTest:
    """Type a code into the second-factor form and submit it."""
    at.text_input(key="ci_mfa_code").input(code)
    next(b for b in at.button if b.label == "Verify").click()
    at.run()
    return at


def nav_pages(at: AppTest) -> set[str]:
    """The pages st.navigation registered for this session, by script name ("login" for the login
    form); the hidden "Home" redirect that every logged-in navigation starts with is left out."""
    out = set()
    for info in at._registered_pages.values():
        if info.get("script_path"):
            out.add(Path(info["script_path"]).stem)
        elif info.get("page_name") != "Home":
            out.add("login")
    return out


def open_page(monkeypatch, url: str, role: str, page: str | None, prefix: str = "t") -> AppTest:
    """Log in as a user with ``role`` (created once per store) and open ``app_pages/<page>.py``."""
    from analytics.store import make_engine

    engine = make_engine(url)
    username = f"{prefix}_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    at = login(new_app(monkeypatch, url), username)
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception
    return at


def capture_exports(monkeypatch) -> list:
    """Keep every frame a page offers for export (through widgets.export_buttons), in order; the
    buttons are still drawn."""
    from app_pages import widgets

    exported = []
    real_buttons = widgets.export_buttons
    monkeypatch.setattr(widgets, "export_buttons", lambda engine_, user_, frame, *a, **k: (
        exported.append(frame), real_buttons(engine_, user_, frame, *a, **k)))
    return exported
