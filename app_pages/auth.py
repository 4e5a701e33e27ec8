"""Login, logout, idle timeout and page gating for the Streamlit app.

streamlit-authenticator draws the login form and owns the re-authentication cookie, but two of its
parts are replaced on our instance, because a bank needs what it can't give:

* the password check goes through :func:`analytics.users.authenticate` (users in the store, bcrypt,
  lockout, the same message and time for an unknown user and a wrong password), and every attempt
  is audited;
* the cookie carries the id of a server-side session (``user_sessions``) next to the username, and
  is honoured only while that session is live. Logout, idle timeout, disabling a user or changing
  their roles ends the session, so a copied cookie stops working at once.

The library's ``send_email`` and ``two_factor_auth`` are never enabled: they send mail through a
third-party server.
"""

from __future__ import annotations

import json
import logging

import jwt
import streamlit as st
import streamlit_authenticator as stauth

from analytics import access, audit, settings, users
from analytics.errors import AnalyticsError
from app_pages import common

log = logging.getLogger("app.auth")

COOKIE_NAME = "customer_insight_session"
# The cookie lives no longer than a working day; the server-side session ends sooner when idle.
COOKIE_EXPIRY_DAYS = 0.5
MIN_KEY_BYTES = 32
# Values that appear in documentation and examples: a key equal to one of them is no key at all.
KNOWN_DEFAULT_KEYS = {"some_key", "some_signature_key", "abcdef", "changeme", "secret", "random_signature_key"}

STATE_SESSION = "ci_session_id"
STATE_NOTICE = "ci_auth_notice"
STATE_COOKIE_PENDING = "ci_cookie_pending"


def cookie_key_problem(key: str | None) -> str | None:
    """Why ``key`` is not acceptable as ``AUTH_COOKIE_KEY``, or None when it is."""
    if not key:
        return "AUTH_COOKIE_KEY is not set."
    if key.strip().lower() in KNOWN_DEFAULT_KEYS or "random bytes" in key:
        return "AUTH_COOKIE_KEY is a default or example value."
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        return f"AUTH_COOKIE_KEY is shorter than {MIN_KEY_BYTES} bytes."
    return None


def client_address() -> str | None:
    try:
        return st.context.ip_address
    except Exception:  # noqa: BLE001 - not available in AppTest or before the websocket opens
        return None


def current_user() -> dict | None:
    """The logged-in user of this browser session: username, name, roles; None when anonymous."""
    if st.session_state.get("authentication_status") and st.session_state.get(STATE_SESSION):
        return {"username": st.session_state.get("username"), "name": st.session_state.get("name"),
                "roles": tuple(st.session_state.get("roles") or ()),
                "session_id": st.session_state.get(STATE_SESSION)}
    return None


def audit_event(engine, event: str, user: dict | None = None, **fields) -> None:
    """Append to the audit log; a failure to audit is logged (counts only) and shown, never hidden."""
    user = user or current_user() or {}
    try:
        audit.append(engine, event, username=user.get("username"), roles=user.get("roles") or (),
                     session_id=user.get("session_id"), client_address=client_address(), **fields)
    except AnalyticsError as exc:
        log.error("audit append failed for event %s: %s", event, type(exc).__name__)
        raise


def audit_filter(engine, user: dict, page: str, parameters: dict | None = None, **target) -> None:
    """Audit what a user filtered or looked up on a page, once per change: widgets, fragments and the
    cookie component rerun a page many times, and the same view would otherwise be logged on each."""
    seen = json.dumps({"parameters": parameters, **{k: v for k, v in target.items() if k != "rows"}},
                      sort_keys=True, default=str)
    memo = st.session_state.setdefault("ci_filters_audited", {})
    if memo.get(page) == seen:
        return
    audit_event(engine, "filter", user, target={"page": page, **target}, parameters=parameters)
    memo[page] = seen


def _set_logged_in(username: str, name: str | None, roles, session_id: str) -> None:
    st.session_state["authentication_status"] = True
    st.session_state["username"] = username
    st.session_state["name"] = name or username
    st.session_state["roles"] = list(roles)
    st.session_state["logout"] = False
    st.session_state[STATE_SESSION] = session_id


def _clear_login() -> None:
    for key in ("authentication_status", "username", "name", "roles", "email", STATE_SESSION, "ci_last_page_viewed"):
        st.session_state[key] = None


def _authenticator(engine, key: str) -> stauth.Authenticate:
    auth = stauth.Authenticate(
        credentials={"usernames": {}},  # never consulted: the password check is ours (below)
        cookie_name=COOKIE_NAME, cookie_key=key, cookie_expiry_days=COOKIE_EXPIRY_DAYS,
        auto_hash=False, login_sleep_time=0,
    )
    cookie_model = auth.cookie_controller.cookie_model

    def encode_token() -> str:
        return jwt.encode({"username": st.session_state["username"], "sid": st.session_state[STATE_SESSION],
                           "exp_date": cookie_model.exp_date}, key, algorithm="HS256")

    def login(username=None, password=None, *_args, token=None, **_kwargs):
        if token:
            return _login_with_token(engine, token)
        if not username or not password:
            st.session_state["authentication_status"] = False
            return False
        result = users.authenticate(engine, username, password)
        if not result.ok:
            audit_event(engine, result.event, {"username": result.username}, reason=result.reason)
            st.session_state["authentication_status"] = False
            st.session_state[STATE_NOTICE] = (common.t("auth.wrong_credentials")
                                              if result.message == users.WRONG_CREDENTIALS else result.message)
            return False
        session_id = users.start_session(engine, result.username)
        _set_logged_in(result.username, result.display_name, result.roles, session_id)
        st.session_state[STATE_COOKIE_PENDING] = True
        audit_event(engine, "login_ok")
        return True

    cookie_model._token_encode = encode_token
    auth.authentication_controller.login = login
    return auth


def _login_with_token(engine, token: dict) -> bool | None:
    """Re-authenticate from the cookie, only while the server-side session it names is live."""
    session_id = token.get("sid")
    username = users.session_user(engine, session_id)
    if username is None or username != token.get("username"):
        # A cookie from an ended session (logout, timeout, revocation) or one without a session id.
        audit_event(engine, "access_denied", {"username": token.get("username")},
                    reason="re-authentication cookie names no live session")
        return None
    user = users.get_user(engine, username)
    if user is None:
        return None
    users.touch_session(engine, session_id)
    _set_logged_in(user.username, user.display_name, user.roles, session_id)
    return True


def login_gate(engine) -> dict | None:
    """Return the logged-in user, or draw the login form (and return None).

    Also enforces the idle timeout and server-side revocation on every rerun.
    """
    key = settings.get("AUTH_COOKIE_KEY")
    problem = cookie_key_problem(key)
    if problem:
        st.error(common.t("auth.not_configured", problem=problem, min_bytes=MIN_KEY_BYTES))
        st.stop()
    auth = _authenticator(engine, key)
    user = current_user()
    if user is None and not st.session_state.get("logout"):
        # Honour the cookie before st.navigation is built, so a logged-in user who reloads a
        # sub-page lands on that page rather than on the default one.
        token = auth.cookie_controller.get_cookie()
        if token and _login_with_token(engine, token):
            user = current_user()
    if user is not None and not users.touch_session(engine, user["session_id"]):
        audit_event(engine, "timeout", user)
        auth.logout(location="unrendered")
        _clear_login()
        st.session_state[STATE_NOTICE] = common.t("auth.session_ended", minutes=settings.get("SESSION_IDLE_MINUTES"))
        user = None
    if user is not None:
        st.session_state["_auth"] = auth
        return user
    st.session_state["_auth"] = auth
    return None


def write_pending_cookie() -> None:
    """Write the session cookie after a login, in a run that renders a real page.

    The login run ends in st.rerun(), and the landing redirect in st.switch_page(); either can drop
    the browser-side component that writes the cookie before it runs, so it is written again here,
    once, from the first run that draws a page.
    """
    if st.session_state.pop(STATE_COOKIE_PENDING, False) and st.session_state.get("_auth") is not None:
        st.session_state["_auth"].cookie_controller.set_cookie()


def login_page() -> None:
    """The only page an anonymous visitor sees, at every URL."""
    auth = st.session_state["_auth"]
    st.title(common.t("app.customer_insight"))
    notice = st.session_state.pop(STATE_NOTICE, None)
    if notice:
        st.error(notice)
    try:
        auth.login(location="main", fields={"Form name": common.t("app.log_in"), "Username": common.t("auth.username"),
                                            "Password": common.t("auth.password"), "Login": common.t("app.log_in")})
    except AnalyticsError as exc:
        st.error(str(exc))
    if st.session_state.get("authentication_status"):
        st.rerun()
    elif st.session_state.get("authentication_status") is False and not notice:
        st.error(common.t("auth.wrong_credentials"))
    st.caption(common.t("auth.lockout_policy", attempts=settings.get("LOGIN_MAX_FAILED_ATTEMPTS"),
                        lockout=settings.get("LOGIN_LOCKOUT_MINUTES"), idle=settings.get("SESSION_IDLE_MINUTES")))


def logout(engine) -> None:
    user = current_user()
    if user:
        users.end_session(engine, user["session_id"], "logout")
        audit_event(engine, "logout", user)
    auth = st.session_state.get("_auth")
    if auth is not None and st.session_state.get("authentication_status"):
        auth.logout(location="unrendered")
    _clear_login()


def require_page(engine, page: str) -> dict:
    """Re-check, inside a page, that the user may open it; audit the view or the denial."""
    user = current_user()
    if user is None or not access.can_view_page(user["roles"], page):
        if user is not None:
            audit_event(engine, "access_denied", user, target={"page": page})
        st.error(common.t("auth.no_access"))
        st.stop()
    # One page_view per visit, not per rerun: widgets, fragments and the cookie component rerun a
    # page many times, which would drown the audit trail in duplicates.
    if st.session_state.get("ci_last_page_viewed") != page:
        audit_event(engine, "page_view", user, target={"page": page})
        st.session_state["ci_last_page_viewed"] = page
    return user

