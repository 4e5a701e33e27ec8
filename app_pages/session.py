"""The browser session's context for every page: the store engine, the logged-in user, the audit
trail, page gating, the UI language and its number formats, and the login glue.

The login sequence itself (password check, server-side session, audit; re-authentication from the
cookie) is :mod:`analytics.users`; this module only connects it to Streamlit and to
streamlit-authenticator, which draws the login form and owns the re-authentication cookie. Two of
the library's parts are replaced on our instance, because a bank needs what it can't give:

* the password check goes through :func:`analytics.users.log_in` (users in the store, bcrypt,
  lockout, the same message and time for an unknown user and a wrong password, every attempt
  audited);
* the cookie carries the id of a server-side session (``user_sessions``) next to the username, and
  is honoured only while that session is live. Logout, idle timeout, disabling a user or changing
  their roles ends the session, so a copied cookie stops working at once;
* the browser-side cookie component is drawn only to write or delete the cookie
  (:class:`_WriteOnlyCookieManager`); the cookie is read from the request.

The library's ``send_email`` and ``two_factor_auth`` are never enabled: they send mail through a
third-party server.

The server-side session is checked on every rerun (:func:`login_gate`) and on every tick of an
auto-refreshing fragment (:func:`fragment_user`), which reruns alone, without ``app.py``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import extra_streamlit_components as stx
import jwt
import streamlit as st
import streamlit_authenticator as stauth
from extra_streamlit_components.CookieManager import _component_func as _cookie_component
from sqlalchemy.exc import SQLAlchemyError
from streamlit_authenticator.models import cookie_model as _auth_cookie_model

from analytics import access, audit, formatting, i18n, mfa, runs, scopes, settings, users
from analytics.errors import AnalyticsError, StoreError, StoreNotInitialisedError, describe
from analytics.formatting import escape_md
from analytics.store import check_store, redact_url, resolve_url
from app_pages import loaders

log = logging.getLogger("app")

PAGES_DIR = Path(__file__).resolve().parent

COOKIE_NAME = "customer_insight_session"
# The cookie lives no longer than a working day; the server-side session ends sooner when idle.
COOKIE_EXPIRY_DAYS = 0.5
MIN_KEY_BYTES = 32
# Values that appear in documentation and examples: a key equal to one of them is no key at all.
KNOWN_DEFAULT_KEYS = {"some_key", "some_signature_key", "abcdef", "changeme", "secret", "random_signature_key"}

STATE_SESSION = "ci_session_id"
STATE_NOTICE = "ci_auth_notice"
STATE_COOKIE_PENDING = "ci_cookie_pending"
# After a right password, while the second factor is asked: {"username", "step" ("code" or "enrol"),
# "at"}. Server-side only (st.session_state); it expires, so an abandoned half-login does not linger.
STATE_MFA = "ci_mfa_pending"
MFA_PENDING_SECONDS = 300
# The recovery codes of a fresh enrolment, shown once before any page.
STATE_RECOVERY = "ci_recovery_codes"
LANG_STATE = "ui_lang"  # the sidebar switch's value: a name of i18n.LANGUAGE_NAMES


# --------------------------------------------------------------------------------------------
# Language and formats
# --------------------------------------------------------------------------------------------

def lang() -> str:
    """The UI language chosen in the sidebar: "en" or "zh"."""
    return "zh" if st.session_state.get(LANG_STATE) == i18n.LANGUAGE_NAMES["zh"] else "en"


def t(key: str, **fields) -> str:
    """The catalog text of ``key`` (``data/i18n.yaml``) in the chosen language, fields filled in.

    A field that holds text from the store or from a user goes through :func:`escape_md` first
    when the result is shown as Markdown.
    """
    return i18n.tr(key, lang(), **fields)


def page_script(key: str) -> Path:
    """The script of a page of the access matrix (it may not exist yet)."""
    return PAGES_DIR / f"{key}.py"


def page_title(key: str) -> str:
    """The name of a page of the access matrix in the chosen language."""
    return i18n.label("page", key, lang())


def option_label(text: str) -> str:
    """A choice's words as an option of its own ("Branch"), not mid-sentence ("by branch"): the
    first letter capitalised (Chinese is left as it is)."""
    return text[:1].upper() + text[1:]


def fmt_count(value) -> str:
    """A count in the chosen language's style (``1,234,567`` / ``123.46万``)."""
    return formatting.count(value, lang())


def fmt_amount(value, digits: int = 0) -> str:
    """An amount in yuan in the chosen language's style (``CNY 1,234,567`` / ``¥123.46万``)."""
    return formatting.amount(value, lang(), digits=digits)


def fmt_rate(value, digits: int = 1) -> str:
    """A rate as a percentage (``12.3%``)."""
    return formatting.rate(value, lang(), digits=digits)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

def how_to_create() -> str:
    return t("common.how_to_create")


def engine():
    """The store engine, shared by all sessions (it holds no user data)."""
    return loaders.engine_for(resolve_url())


def engine_or_stop():
    """The store engine, or a clear message (and stop) when the store cannot be opened."""
    try:
        return engine()
    except StoreError as exc:
        st.error(t("common.store_cannot_open", error=escape_md(describe(exc, lang()))) + "\n\n" + how_to_create())
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(t("common.store_unreachable", url=escape_md(redact_url(resolve_url()))) + " " + how_to_create())
    st.stop()


def current_run_or_stop() -> int:
    """The published refresh run id; stops the page with a clear message when there is none."""
    try:
        eng = engine()
        check_store(eng)
        run_id = runs.current_run_id(eng)
    except StoreNotInitialisedError as exc:
        st.warning(f"{escape_md(describe(exc, lang()))}\n\n{how_to_create()}")
        st.stop()
    except StoreError as exc:
        st.error(t("common.store_cannot_open", error=escape_md(describe(exc, lang()))) + "\n\n" + how_to_create())
        st.stop()
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(t("common.store_unreachable", url=escape_md(redact_url(resolve_url()))) + " " + how_to_create())
        st.stop()
    if run_id is None:
        st.warning(t("common.no_completed_refresh"))
        st.stop()
    freshness_notices()
    return run_id


def freshness_notices() -> None:
    """Say so when the figures are old, a later refresh failed, or new data awaits a refresh."""
    try:
        fresh = loaders.freshness()
    except SQLAlchemyError as exc:
        log.warning("freshness unreadable: %s", type(exc).__name__)
        return
    if fresh.failed_run:
        st.warning(t("common.later_refresh_failed", failed=fresh.failed_run["run_id"],
                     stage=escape_md(fresh.failed_run.get("stage") or "?"), shown=fresh.run_id))
    if fresh.stale:
        st.warning(t("common.figures_are_stale", finished=f"{fresh.finished_at:%Y-%m-%d %H:%M}",
                     hours=fmt_count(fresh.age_hours)))
    if fresh.loads_since:
        st.info(t("common.load_since_refresh") if fresh.loads_since == 1
                else t("common.loads_since_refresh", n=fmt_count(fresh.loads_since)))


def show_error(exc: Exception, kind=None) -> None:
    """Render a domain error as a message the user can act on (never a traceback); its text may
    echo stored or typed input, so it is shown escaped."""
    (kind or st.error)(escape_md(describe(exc, lang()) if isinstance(exc, AnalyticsError) else exc))


# --------------------------------------------------------------------------------------------
# The current user and the audit trail
# --------------------------------------------------------------------------------------------

def client_address() -> str | None:
    """The browser's address for the audit log; behind the reverse proxy, its X-Forwarded-For
    (trusted from this host only: audit.client_address)."""
    try:
        peer, forwarded = st.context.ip_address, st.context.headers.get("X-Forwarded-For")
    except Exception:  # noqa: BLE001 - not available in AppTest or before the websocket opens
        return None
    return audit.client_address(peer, forwarded)


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
    try:  # a login, a page view, ... passes a broken chain (audit.MAY_PASS_A_BROKEN_CHAIN); no export does
        audit.append_or_pass(engine, event, username=user.get("username"), roles=user.get("roles") or (),
                             session_id=user.get("session_id"), client_address=client_address(), **fields)
    except AnalyticsError as exc:
        log.error("audit append failed for event %s: %s", event, type(exc).__name__)
        raise


def chain_alarm_banner(engine, user: dict) -> None:
    """While the audit chain is broken, tell compliance and admin on every page until someone runs
    ``audit verify`` (the alarm holds entry numbers and times only, no personal data)."""
    if not {"compliance", "admin"} & set(user["roles"]):
        return
    try:
        alarm = audit.chain_alarm(engine)
    except (AnalyticsError, OSError) as exc:
        log.warning("audit alarm unreadable: %s", type(exc).__name__)
        return
    if alarm is not None:
        st.error(t("audit.chain_broken", since=alarm.first_at, count=alarm.count,
                   problem=formatting.escape_md(alarm.problem)), icon=":material/gpp_bad:")


def viewer(engine, user: dict, purpose: str = "service") -> access.Viewer:
    """The user as a reader of customer data: roles from the session, scope from the store (read at
    every rerun, so a scope change, which also ends the session, is never missed)."""
    return scopes.viewer_for(engine, user["username"], user["roles"], purpose=purpose)


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


def require_page(engine, page: str) -> dict:
    """Re-check, inside a page, that the user may open it; audit the view or the denial."""
    user = current_user()
    if user is None or not access.can_view_page(user["roles"], page):
        if user is not None:
            audit_event(engine, "access_denied", user, target={"page": page})
        st.error(t("auth.no_access"))
        st.stop()
    # One page_view per visit, not per rerun: widgets, fragments and the cookie component rerun a
    # page many times, which would drown the audit trail in duplicates.
    if st.session_state.get("ci_last_page_viewed") != page:
        audit_event(engine, "page_view", user, target={"page": page})
        st.session_state["ci_last_page_viewed"] = page
    return {**user, "viewer": viewer(engine, user)}


# --------------------------------------------------------------------------------------------
# Login glue
# --------------------------------------------------------------------------------------------

def cookie_key_problem(key: str | None) -> str | None:
    """Why ``key`` is not acceptable as ``AUTH_COOKIE_KEY``, or None when it is."""
    if not key:
        return "AUTH_COOKIE_KEY is not set."
    if key.strip().lower() in KNOWN_DEFAULT_KEYS or "random bytes" in key:
        return "AUTH_COOKIE_KEY is a default or example value."
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        return f"AUTH_COOKIE_KEY is shorter than {MIN_KEY_BYTES} bytes."
    return None


def _set_logged_in(login: users.Login) -> None:
    st.session_state["authentication_status"] = True
    st.session_state["username"] = login.username
    st.session_state["name"] = login.display_name or login.username
    st.session_state["roles"] = list(login.roles)
    st.session_state["logout"] = False
    st.session_state[STATE_SESSION] = login.session_id
    st.session_state.pop(STATE_NOTICE, None)


class _WriteOnlyCookieManager(stx.CookieManager):
    """The authenticator's cookie manager, drawing its browser component only to write or delete.

    The library's manager draws a "get all cookies" component on every run. A moment after each
    page load that component reports the cookies, and the report reruns the page: a click made in
    that moment started a run that the report's run interrupted, and the click was lost. Nothing
    needs the report: the cookie is read from the request (``st.context.cookies``, as the library's
    ``get_cookie`` does). Writing after a login and deleting at logout still draw the component.
    """

    def __init__(self, key: str = "init") -> None:  # noqa: ARG002 - the library's signature
        self.cookie_manager = _cookie_component
        self.cookies = dict(st.context.cookies)


# The authenticator builds its cookie manager as ``stx.CookieManager()``; it gets ours.
_auth_cookie_model.stx = type("_CookieComponents", (), {"CookieManager": _WriteOnlyCookieManager})


def _clear_login() -> None:
    for key in ("authentication_status", "username", "name", "roles", "email", STATE_SESSION, "ci_last_page_viewed",
                STATE_RECOVERY):
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
        st.session_state.pop(STATE_NOTICE, None)  # a new attempt: the last notice is done with
        if not username or not password:
            st.session_state["authentication_status"] = False
            return False
        result = users.log_in(engine, username, password, client_address=client_address())
        if result.next_step:
            # Right password; no session until the second factor (login_page draws its form next).
            st.session_state[STATE_MFA] = {"username": result.username, "step": result.next_step,
                                           "at": time.monotonic()}
            st.session_state["authentication_status"] = None
            return False
        if not result.ok:
            st.session_state["authentication_status"] = False
            st.session_state[STATE_NOTICE] = _failure_notice(result)
            return False
        _set_logged_in(result)
        st.session_state[STATE_COOKIE_PENDING] = True
        return True

    cookie_model._token_encode = encode_token
    auth.authentication_controller.login = login
    return auth


def _failure_notice(result: users.Login) -> str:
    if result.failure == "mfa_not_configured":
        return t("auth.mfa_not_configured")
    if result.failure in ("wrong_code", "locked"):
        return t("auth.wrong_code")
    return t("auth.wrong_credentials") if result.message == users.WRONG_CREDENTIALS else result.message


def _mfa_pending() -> dict | None:
    """The half-login waiting for its second factor, or None (none, or expired: then a notice)."""
    pending = st.session_state.get(STATE_MFA)
    if not pending:
        return None
    if time.monotonic() - pending["at"] > MFA_PENDING_SECONDS:
        st.session_state.pop(STATE_MFA, None)
        st.session_state[STATE_NOTICE] = t("auth.mfa_expired")
        return None
    return pending


def _second_factor_form(engine, pending: dict) -> None:
    """Ask for the code (and, for an enrolment, show the QR code of the new secret first)."""
    st.subheader(t("auth.mfa_title"))
    if pending["step"] == "enrol" and mfa.status(engine, pending["username"]) == "enrolled":
        # Enrolled meanwhile (in another browser): a code from the app it scanned logs in.
        pending["step"] = "code"
    if pending["step"] == "enrol":
        try:
            enrolment = users.pending_enrolment(engine, pending["username"])
        except mfa.MfaError as exc:
            log.error("enrolment unavailable: %s", exc)  # names the user and the setting, no secret
            st.session_state.pop(STATE_MFA, None)
            st.error(t("auth.mfa_not_configured"))
            return
        st.info(t("auth.mfa_enrol_intro"))
        st.image(mfa.qr_png(enrolment.uri), caption=t("auth.mfa_qr_caption"), width=240)
        st.caption(t("auth.mfa_manual_key"))
        st.code(enrolment.secret, language=None)
    with st.form("ci_mfa_form", clear_on_submit=True):
        code = st.text_input(t("auth.mfa_code"), key="ci_mfa_code", max_chars=24, autocomplete="one-time-code")
        submitted = st.form_submit_button(t("auth.mfa_verify"), type="primary")
    if st.button(t("auth.mfa_cancel"), key="ci_mfa_cancel"):
        st.session_state.pop(STATE_MFA, None)
        st.rerun()
    if not submitted:
        return
    check = users.enrol_and_log_in if pending["step"] == "enrol" else users.log_in_code
    result = check(engine, pending["username"], code or "", client_address=client_address())
    if result.ok:
        st.session_state.pop(STATE_MFA, None)
        _set_logged_in(result)
        st.session_state[STATE_COOKIE_PENDING] = True
        if result.recovery_codes:
            st.session_state[STATE_RECOVERY] = list(result.recovery_codes)
        st.rerun()
    if result.failure in ("locked", "mfa_not_configured"):
        # Back to the password form: a locked account, or one that cannot log in at all.
        st.session_state.pop(STATE_MFA, None)
        st.session_state[STATE_NOTICE] = _failure_notice(result)
        st.rerun()
    st.error(_failure_notice(result))


def recovery_codes_gate() -> None:
    """Right after an enrolment: show the ten recovery codes once, before any page."""
    codes = st.session_state.get(STATE_RECOVERY)
    if not codes:
        return
    st.title(t("auth.recovery_title"))
    st.warning(t("auth.recovery_intro", n=len(codes)))
    st.code("\n".join(codes), language=None)
    if st.button(t("auth.recovery_saved"), type="primary", key="ci_recovery_saved"):
        st.session_state.pop(STATE_RECOVERY, None)
        st.rerun()
    st.stop()


def _login_with_token(engine, token: dict) -> bool | None:
    """Re-authenticate from the cookie, only while the server-side session it names is live."""
    result = users.resume_session(engine, token.get("username"), token.get("sid"), client_address=client_address())
    if not result.ok:
        return None
    _set_logged_in(result)
    return True


def _end_login(notice: str) -> None:
    """Forget the login in this browser session (and its cookie), with a notice for the login page."""
    auth = st.session_state.get("_auth")
    if auth is not None and st.session_state.get("authentication_status"):
        auth.logout(location="unrendered")
    _clear_login()
    st.session_state["logout"] = True  # the cookie of an ended session must not be tried again
    st.session_state[STATE_NOTICE] = notice


def _ended_notice(reason: str | None) -> str:
    if reason == "timeout":
        return t("auth.session_ended", minutes=settings.get("SESSION_IDLE_MINUTES"))
    return t("auth.session_revoked")


def login_gate(engine) -> dict | None:
    """Return the logged-in user, or draw the login form (and return None).

    Also checks the server-side session on every rerun: idle timeout, logout elsewhere, a disabled
    account or changed roles end the login here.
    """
    key = settings.get("AUTH_COOKIE_KEY")
    problem = cookie_key_problem(key)
    if problem:
        st.error(t("auth.not_configured", problem=problem, min_bytes=MIN_KEY_BYTES))
        st.stop()
    try:
        users.mfa_required_roles()
    except ValueError as exc:  # a role name the policy does not know: named, and nobody logs in
        show_error(exc)
        st.stop()
    auth = _authenticator(engine, key)
    st.session_state["_auth"] = auth
    user = current_user()
    if user is None and not st.session_state.get("logout"):
        # Honour the cookie before st.navigation is built, so a logged-in user who reloads a
        # sub-page lands on that page rather than on the default one.
        token = auth.cookie_controller.get_cookie()
        if token and _login_with_token(engine, token):
            user = current_user()
    if user is not None:
        check = users.recheck_session(engine, user["username"], user["roles"], user["session_id"], touch=True,
                                      client_address=client_address())
        if not check.live:
            _end_login(_ended_notice(check.reason))
            user = None
    if user is not None:
        recovery_codes_gate()
    return user


def fragment_user(engine, page: str) -> dict:
    """The user, for one tick of an auto-refreshing fragment (``st.fragment(run_every=...)``).

    A tick reruns the fragment alone: :func:`login_gate` in ``app.py`` does not run, so the
    server-side session is checked here, before the tick reads anything. The tick is no sign of
    anyone at the screen, so it does not reset the idle clock. When the session has ended (logout,
    idle timeout, a disabled account, changed roles) the login ends, the tick shows that, and the
    whole app reruns to the login page: no figure is drawn.
    """
    user = current_user()
    reason = "ended"
    if user is not None:
        check = users.recheck_session(engine, user["username"], user["roles"], user["session_id"], touch=False,
                                      client_address=client_address())
        if check.live and access.can_view_page(user["roles"], page):
            return {**user, "viewer": viewer(engine, user)}
        reason = check.reason
    notice = _ended_notice(reason)
    _end_login(notice)
    st.error(notice)
    st.rerun(scope="app")
    raise AssertionError("st.rerun returned")  # pragma: no cover - st.rerun raises


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
    st.title(t("app.customer_insight"))
    # Kept (not popped) until the next login attempt: the cookie component may rerun the page at
    # once, and the notice must survive that rerun.
    pending = _mfa_pending()  # first: an expired half-login leaves a notice
    notice = st.session_state.get(STATE_NOTICE)
    if notice:
        st.error(notice)
    if pending is not None:
        _second_factor_form(engine(), pending)
        st.caption(t("auth.lockout_policy", attempts=settings.get("LOGIN_MAX_FAILED_ATTEMPTS"),
                     lockout=settings.get("LOGIN_LOCKOUT_MINUTES"), idle=settings.get("SESSION_IDLE_MINUTES")))
        return
    try:
        auth.login(location="main", fields={"Form name": t("app.log_in"), "Username": t("auth.username"),
                                            "Password": t("auth.password"), "Login": t("app.log_in")})
    except AnalyticsError as exc:
        show_error(exc)
    except ValueError as exc:  # a bad MFA_REQUIRED_ROLES: the message names the setting
        log.error("login refused: %s", type(exc).__name__)
        show_error(exc)
    if st.session_state.get("authentication_status") or st.session_state.get(STATE_MFA):
        st.rerun()
    elif st.session_state.get("authentication_status") is False:
        fresh = st.session_state.get(STATE_NOTICE)  # set by this attempt (e.g. MFA_KEY missing)
        if not notice or fresh != notice:
            st.error(fresh or t("auth.wrong_credentials"))
    st.caption(t("auth.lockout_policy", attempts=settings.get("LOGIN_MAX_FAILED_ATTEMPTS"),
                 lockout=settings.get("LOGIN_LOCKOUT_MINUTES"), idle=settings.get("SESSION_IDLE_MINUTES")))


def logout(engine) -> None:
    user = current_user()
    if user:
        users.log_out(engine, user["username"], user["roles"], user["session_id"], client_address=client_address())
    auth = st.session_state.get("_auth")
    if auth is not None and st.session_state.get("authentication_status"):
        auth.logout(location="unrendered")
    _clear_login()
