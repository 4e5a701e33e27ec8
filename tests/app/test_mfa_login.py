"""AppTest: two-factor login. Enrolment on first login (QR code, first code, recovery codes shown
once) before any page; a code after the password; wrong and reused codes toward the lockout; a
recovery code; a kiosk never asked; no MFA_KEY; an abandoned half-login expiring."""

from __future__ import annotations

import pytest

from analytics import audit, mfa, users
from analytics.store import make_engine
from app_pages import session
from tests import totp
from tests.app.conftest import PASSWORD, login, make_store, nav_pages, new_app, submit_code


def _password_step(monkeypatch, url: str, username: str):
    return login(new_app(monkeypatch, url), username, second_factor=False)


def _pending(at) -> dict | None:
    return at.session_state["ci_mfa_pending"] if "ci_mfa_pending" in at.session_state else None


def _wrong_code(secret: str) -> str:
    current = {totp.code_at(secret, mfa.step_of(totp._now()) + d) for d in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in current)


@pytest.fixture
def url(tmp_path):
    url = make_store(tmp_path, roles={})
    engine = make_engine(url)
    users.add_user(engine, "new_officer", PASSWORD, ["compliance"])
    users.add_user(engine, "old_admin", PASSWORD, ["admin"])
    totp.enrol(engine, "old_admin")
    users.add_user(engine, "analyst", PASSWORD, ["marketing"])
    users.add_user(engine, "wall", PASSWORD, ["display"])
    engine.dispose()
    return url


def _secret(url: str, username: str) -> str:
    from sqlalchemy import select

    from analytics.schema import user_mfa
    with make_engine(url).connect() as conn:
        sealed = conn.execute(select(user_mfa.c.secret_enc).where(user_mfa.c.username == username)).scalar_one()
    return mfa.decrypt_secret(username, sealed)


def test_first_login_enrols_before_any_page(monkeypatch, url):
    at = _password_step(monkeypatch, url, "new_officer")
    assert not at.exception
    assert _pending(at)["step"] == "enrol"
    assert nav_pages(at) == {"login"} and not at.metric
    assert len(at.get("image")) == 1  # the QR code
    secret = at.code[0].value
    assert secret == _secret(url, "new_officer")  # the pending secret, shown to scan or type
    # A wrong first code: refused, still no page, counted.
    submit_code(at, _wrong_code(secret))
    assert [e.value for e in at.error] == ["Wrong or already used code."]
    assert nav_pages(at) == {"login"}
    assert users.get_user(make_engine(url), "new_officer").failed_attempts == 1
    # The right code: logged in, but the recovery codes come first, once.
    submit_code(at, totp.first_code(secret))
    codes = at.code[0].value.split("\n")
    assert len(codes) == 10 and all(len(c) == 19 for c in codes)
    assert not at.metric
    at.button(key="ci_recovery_saved").click()
    at.run()
    assert "overview" in nav_pages(at) and not at.code
    assert users.get_user(make_engine(url), "new_officer").failed_attempts == 0
    assert mfa.status(make_engine(url), "new_officer") == "enrolled"
    events = audit.query(make_engine(url), user="new_officer")["event"].tolist()
    assert {"mfa_enrol", "login_ok", "login_failed"} <= set(events)


def test_an_enrolled_user_gives_a_code_and_a_reused_one_is_refused(monkeypatch, url):
    at = _password_step(monkeypatch, url, "old_admin")
    assert _pending(at)["step"] == "code" and not at.get("image")
    code = totp.next_code(url, "old_admin")
    submit_code(at, code)
    assert "admin" in nav_pages(at)
    # Another browser replays the same code after the right password: refused and counted.
    other = _password_step(monkeypatch, url, "old_admin")
    submit_code(other, code)
    assert nav_pages(other) == {"login"}
    assert [e.value for e in other.error] == ["Wrong or already used code."]
    reasons = audit.query(make_engine(url), event="login_failed")["reason"].tolist()
    assert "reused code" in reasons


def test_wrong_codes_lock_the_account_like_wrong_passwords(monkeypatch, url):
    secret = _secret(url, "old_admin")
    at = _password_step(monkeypatch, url, "old_admin")
    for _ in range(5):
        if _pending(at) is None:  # locked: back at the password form
            break
        submit_code(at, _wrong_code(secret))
    assert _pending(at) is None and nav_pages(at) == {"login"}
    assert users.get_user(make_engine(url), "old_admin").is_locked()
    assert "login_locked" in set(audit.query(make_engine(url))["event"])
    # The right password and a right code no longer get in.
    again = _password_step(monkeypatch, url, "old_admin")
    assert _pending(again) is None and nav_pages(again) == {"login"}


def test_a_recovery_code_logs_in(monkeypatch, url):
    codes = totp.enrol(make_engine(url), "old_admin")
    at = _password_step(monkeypatch, url, "old_admin")
    submit_code(at, codes[0])
    assert "admin" in nav_pages(at)
    assert mfa.recovery_codes_left(make_engine(url), "old_admin") == 9


def test_others_and_kiosks_are_not_asked(monkeypatch, url):
    for name, page in (("analyst", "overview"), ("wall", "kpi_wall")):
        at = _password_step(monkeypatch, url, name)
        assert _pending(at) is None
        assert page in nav_pages(at)


def test_without_mfa_key_a_required_role_cannot_log_in_and_is_told_why(monkeypatch, url):
    monkeypatch.delenv("MFA_KEY")
    at = _password_step(monkeypatch, url, "old_admin")
    assert not at.exception
    assert nav_pages(at) == {"login"} and _pending(at) is None
    assert any("MFA_KEY" in e.value for e in at.error)
    assert "overview" in nav_pages(_password_step(monkeypatch, url, "analyst"))


def test_cancel_and_expiry_go_back_to_the_password_form(monkeypatch, url):
    at = _password_step(monkeypatch, url, "old_admin")
    at.button(key="ci_mfa_cancel").click()
    at.run()
    assert _pending(at) is None and len(at.text_input) == 2
    at = _password_step(monkeypatch, url, "old_admin")
    monkeypatch.setattr(session, "MFA_PENDING_SECONDS", -1)
    at.run()
    assert _pending(at) is None and nav_pages(at) == {"login"}
    assert any("enter your password again" in e.value for e in at.error)


def test_admin_page_lists_the_access_review_and_signs_it_off(monkeypatch, store_url):
    from tests.app.conftest import ROLE_USERS

    at = login(new_app(monkeypatch, store_url), ROLE_USERS["admin"])
    at.switch_page("app_pages/admin.py").run()
    assert not at.exception
    review = next(d.value for d in at.dataframe if "roles_granted_since_review" in d.value.columns)
    assert sorted(review["username"]) == sorted(ROLE_USERS.values())
    by_user = review.set_index("username")
    # Shown in the catalog's words (mfa.enrolled, mfa.none), like every key in a table.
    assert by_user.loc["user_admin", "mfa"] == "Enrolled" and by_user.loc["user_marketing", "mfa"] == "Not enrolled"
    assert by_user.loc["user_compliance", "roles_granted_since_review"] == "Compliance"  # never reviewed (in words)
    assert any("No access review has been signed off yet" in c.value for c in at.caption)
    at.button(key="ci_access_review_sign_off").click()
    at.run()
    entry = audit.query(make_engine(store_url), event="access_review").iloc[0]
    assert entry["username"] == "user_admin"
    review = next(d.value for d in at.dataframe if "roles_granted_since_review" in d.value.columns)
    assert (review["roles_granted_since_review"] == "").all()
    assert any("Last signed off" in c.value and "user\\_admin" in c.value for c in at.caption)  # escaped


def test_an_enrolment_confirmed_elsewhere_turns_the_form_into_a_code_form(monkeypatch, url):
    at = _password_step(monkeypatch, url, "new_officer")
    assert _pending(at)["step"] == "enrol" and len(at.get("image")) == 1
    totp.enrol(make_engine(url), "new_officer")  # confirmed in another browser meanwhile
    at.run()
    assert not at.error and not at.get("image") and _pending(at)["step"] == "code"
    submit_code(at, totp.next_code(url, "new_officer"))
    assert "overview" in nav_pages(at)


def test_an_unknown_role_in_mfa_required_roles_stops_the_app_with_its_name(monkeypatch, url):
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "admin,superuser")
    at = new_app(monkeypatch, url)
    at.run()
    assert not at.exception and len(at.text_input) == 0
    assert any("MFA\\_REQUIRED\\_ROLES" in e.value and "superuser" in e.value for e in at.error)  # escaped
