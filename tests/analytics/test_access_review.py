"""Access review (report, dormant accounts, roles granted since the last sign-off, sign-off in the
audit log), the password policy's common-password list, and the `users` commands for both and for
two-factor enrolment and reset."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyotp
import pytest
from sqlalchemy import insert

from analytics import access_review, audit, mfa, scopes, users
from analytics.schema import branches
from analytics.store import make_engine
from tests import totp

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 1, 1, 9, 0, 0)
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _keys(monkeypatch, tmp_path):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    for name in ("ACCESS_REVIEW_DORMANT_DAYS", "MFA_REQUIRED_ROLES"):
        monkeypatch.delenv(name, raising=False)


def _store(engine):
    """Four accounts: alice (compliance, enrolled, logged in on day 10), bob (marketing, branch
    B01, never logged in, created on day 0), carol (admin, enrolment pending), wall (display)."""
    users.add_user(engine, "alice", PASSWORD, ["compliance"], now=T0)
    users.add_user(engine, "bob", PASSWORD, ["marketing"], now=T0)
    users.add_user(engine, "carol", PASSWORD, ["admin"], now=T0 + dt.timedelta(days=50))
    users.add_user(engine, "wall", PASSWORD, ["display"], now=T0)
    with engine.begin() as conn:
        conn.execute(insert(branches).values(branch_id="B01", name="Head office", city="Beijing", province="Beijing"))
    scopes.set_scope(engine, "bob", branches=["B01"])
    secret = mfa.begin_enrolment(engine, "alice", now=T0).secret
    mfa.confirm_enrolment(engine, "alice", pyotp.TOTP(secret).at(T0), now=T0)
    day10 = T0 + dt.timedelta(days=10)
    login = users.log_in_code(engine, "alice", pyotp.TOTP(secret).at(day10), now=day10)
    assert login.ok
    users.check_session(engine, login.session_id, now=day10 + dt.timedelta(minutes=5))
    mfa.begin_enrolment(engine, "carol", now=T0)
    users.log_in(engine, "bob", "not the password", now=T0)


def test_the_report_lists_every_account_with_hand_computed_values(engine):
    _store(engine)
    now = T0 + dt.timedelta(days=101)
    frame = access_review.report(engine, now=now).set_index("username")
    assert list(frame.index) == ["alice", "bob", "carol", "wall"]
    assert frame.loc["alice", "mfa"] == "enrolled" and frame.loc["carol", "mfa"] == "pending"
    assert frame.loc["bob", "mfa"] == "none" and frame.loc["wall", "mfa"] == "none"
    assert frame["mfa_required"].to_dict() == {"alice": True, "bob": False, "carol": True, "wall": False}
    assert frame.loc["alice", "last_login"] == T0 + dt.timedelta(days=10)
    assert frame.loc["alice", "last_activity"] == T0 + dt.timedelta(days=10, minutes=5)
    assert pd.isna(frame.loc["bob", "last_login"])
    assert frame.loc["bob", "failed_logins"] == 1 and frame.loc["alice", "failed_logins"] == 0
    assert frame["days_since_password_change"].to_dict() == {"alice": 101, "bob": 101, "carol": 51, "wall": 101}
    # Dormant after 90 days: alice's last login was 91 days ago; bob and wall never logged in and
    # were created 101 days ago; carol was created 51 days ago.
    assert frame["dormant"].to_dict() == {"alice": True, "bob": True, "carol": False, "wall": True}
    assert frame.loc["alice", "scope"] == "whole bank" and frame.loc["bob", "scope"] == "branches B01"
    # The Chinese page reads the scopes in Chinese (the kinds are words, the ids stay ids).
    zh = access_review.report(engine, now=now, lang="zh").set_index("username")["scope"]
    assert zh["alice"] == "全行" and zh["bob"] == "网点 B01"
    # No review yet: every role is new.
    assert frame["roles_granted_since_review"].to_dict() == {
        "alice": "compliance", "bob": "marketing", "carol": "admin", "wall": "display"}


def test_dormancy_follows_the_setting(engine, monkeypatch):
    _store(engine)
    monkeypatch.setenv("ACCESS_REVIEW_DORMANT_DAYS", "120")
    frame = access_review.report(engine, now=T0 + dt.timedelta(days=101))
    assert not frame["dormant"].any()
    monkeypatch.setenv("ACCESS_REVIEW_DORMANT_DAYS", "0")
    with pytest.raises(ValueError, match="ACCESS_REVIEW_DORMANT_DAYS"):
        access_review.report(engine)


def test_sign_off_is_audited_and_later_grants_are_flagged(engine):
    _store(engine)
    seq = access_review.sign_off(engine, "reviewer_1", now=T0 + dt.timedelta(days=100))
    entry = audit.query(engine, event="access_review").iloc[0]
    assert entry["seq"] == seq and entry["username"] == "reviewer_1"
    assert json.loads(entry["target"]) == {"accounts": 4, "dormant": 2, "new_grants": 4}
    last = access_review.last_review(engine)
    assert last["reviewer"] == "reviewer_1" and last["roles"]["carol"] == ["admin"]
    assert (access_review.report(engine)["roles_granted_since_review"] == "").all()
    users.set_roles(engine, "bob", ["marketing", "risk"])
    users.add_user(engine, "dave", PASSWORD, ["executive"])
    granted = access_review.report(engine).set_index("username")["roles_granted_since_review"]
    assert granted.to_dict() == {"alice": "", "bob": "risk", "carol": "", "dave": "executive", "wall": ""}
    assert audit.verify(engine).ok


@pytest.mark.parametrize("password, common", [
    ("password123456", True), ("Password123456!", True), ("QWERTYUIOPASDF", True),
    ("q w e r t y u i o p a s", False),  # spaces inside a listed word are not squeezed across letters
    ("aaaaaaaaaaaaaaaa", True), ("1q2w3e4r5t6y", True), ("woaini1314woaini", False),
    ("letmein123!!!!", True), ("bank1234567890", False), ("a long unusual phrase", False),
])
def test_common_passwords_table(password, common):
    assert users.is_common_password(password) is common


def test_the_policy_refuses_a_common_password_with_one_line(engine):
    with pytest.raises(users.PasswordPolicyError, match="^That password is on the list of common passwords"):
        users.add_user(engine, "erin", "Password123456", ["risk"])
    assert users.get_user(engine, "erin") is None
    assert len(users.common_passwords()) > 200


@pytest.fixture
def cli(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/store.db"
    # The same keys and checkpoint for the commands and for this process, which logs in too.
    for name, value in (("AUDIT_HMAC_KEY", "h" * 40), ("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.ckpt")),
                        ("MFA_KEY", "c" * 40)):
        monkeypatch.setenv(name, value)

    def run(*args, stdin: str = "", extra_env: dict | None = None):
        return subprocess.run([sys.executable, "-m", "analytics", *args, "--db", url], cwd=ROOT,
                              env={**os.environ, **(extra_env or {})}, input=stdin, capture_output=True, text=True)

    run.url = url
    return run


def test_mfa_enrol_and_reset_through_the_cli(cli):
    pw = "a long enough password"
    assert cli("users", "add", "olga", "--role", "compliance", stdin=f"{pw}\n{pw}\n").returncode == 0
    out = cli("users", "mfa-enrol", "olga")
    assert out.returncode == 0, out.stderr
    uri = next(line.split(": ", 1)[1] for line in out.stdout.splitlines() if "provisioning URI" in line)
    secret = pyotp.parse_uri(uri).secret
    engine = make_engine(cli.url)
    assert mfa.status(engine, "olga") == "pending"
    # The user's first login confirms the enrolment with that secret.
    assert users.log_in(engine, "olga", pw).next_step == "enrol"
    assert users.enrol_and_log_in(engine, "olga", totp.first_code(secret)).ok
    # The secret never reached the audit log.
    log = audit.query(engine)
    assert not log.astype(str).apply(lambda col: col.str.contains(secret)).any().any()
    assert {"mfa_enrol"} <= set(log["event"])
    again = cli("users", "mfa-enrol", "olga")
    assert again.returncode == 1 and "already enrolled" in again.stderr and "Traceback" not in again.stderr
    reset = cli("users", "mfa-reset", "olga")
    assert reset.returncode == 0 and "enrol again" in reset.stdout
    assert mfa.status(engine, "olga") == "none"
    entry = audit.query(engine, event="mfa_reset").iloc[0]
    assert json.loads(entry["target"]) == {"user": "olga"} and entry["username"].startswith("cli:")
    assert cli("audit", "verify").returncode == 0


@pytest.mark.parametrize("args, extra_env, message", [
    (("users", "mfa-enrol", "nobody"), None, "No user 'nobody'"),
    (("users", "mfa-reset"), None, "needs a username"),
    (("users", "mfa-enrol", "wally"), None, "exempt"),
    (("users", "mfa-enrol", "olga"), {"MFA_KEY": ""}, "MFA_KEY is not set"),
    (("users", "mfa-enrol", "olga"), {"MFA_KEY": "short"}, "MFA_KEY is shorter than 32 bytes"),
    (("users", "review", "--csv", "/nonexistent-dir/review.csv"), None, "Cannot write the review"),
])
def test_bad_cli_input_gets_one_clear_line(cli, args, extra_env, message):
    pw = "a long enough password"
    cli("users", "add", "olga", "--role", "admin", stdin=f"{pw}\n{pw}\n")
    cli("users", "add", "wally", "--role", "display", stdin=f"{pw}\n{pw}\n")
    out = cli(*args, extra_env=extra_env)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_review_through_the_cli_writes_csv_and_signs_off(cli, tmp_path):
    pw = "a long enough password"
    cli("users", "add", "olga", "--role", "admin", stdin=f"{pw}\n{pw}\n")
    cli("users", "add", "piet", "--role", "risk", stdin=f"{pw}\n{pw}\n")
    target = tmp_path / "review.csv"
    out = cli("users", "review", "--csv", str(target), "--sign-off")
    assert out.returncode == 0, out.stderr
    assert "last sign-off: never" in out.stdout and "olga (admin), piet (risk)" in out.stdout
    frame = pd.read_csv(target)
    assert list(frame.columns) == access_review.COLUMNS and list(frame["username"]) == ["olga", "piet"]
    assert frame.set_index("username").loc["olga", "mfa"] == "none"
    engine = make_engine(cli.url)
    entry = audit.query(engine, event="access_review").iloc[0]
    assert entry["username"].startswith("cli:")
    second = cli("users", "review")
    assert "roles granted since the last review: none" in second.stdout
    common = cli("users", "add", "quin", "--role", "risk", stdin="Password123456\nPassword123456\n")
    assert common.returncode == 1 and "common passwords" in common.stderr
