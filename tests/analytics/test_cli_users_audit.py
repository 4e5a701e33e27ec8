"""CLI: users add/disable/set-roles/reset-password (password from stdin, never an argument), audit verify."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from analytics import users
from analytics.store import make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    env = {**os.environ, "AUDIT_HMAC_KEY": "h" * 40, "AUDIT_CHECKPOINT_FILE": str(tmp_path / "audit.ckpt")}

    def run(*args, stdin: str = ""):
        return subprocess.run([sys.executable, "-m", "analytics", *args, "--db", url], cwd=ROOT, env=env,
                              input=stdin, capture_output=True, text=True)

    run.url = url
    run.checkpoint = tmp_path / "audit.ckpt"
    return run


def test_user_lifecycle_through_the_cli(cli):
    pw = "a long enough password"
    out = cli("users", "add", "alice", "--role", "risk", "--role", "compliance", stdin=f"{pw}\n{pw}\n")
    assert out.returncode == 0, out.stderr
    engine = make_engine(cli.url)
    assert users.get_user(engine, "alice").roles == ("risk", "compliance")
    assert users.authenticate(engine, "alice", pw).ok

    again = cli("users", "add", "alice", "--role", "risk", stdin=f"{pw}\n{pw}\n")
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr

    assert cli("users", "set-roles", "alice", "--role", "marketing").returncode == 0
    assert users.get_user(engine, "alice").roles == ("marketing",)

    new = "another long password"
    assert cli("users", "reset-password", "alice", stdin=f"{new}\n{new}\n").returncode == 0
    assert users.authenticate(engine, "alice", new).ok

    assert cli("users", "disable", "alice").returncode == 0
    assert not users.authenticate(engine, "alice", new).ok

    verify = cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_mismatched_confirmation_is_refused(cli):
    out = cli("users", "add", "bob", "--role", "risk", stdin="first password 123\nsecond password 12\n")
    assert out.returncode == 1 and "differ" in out.stderr


def test_password_is_not_an_argument(cli):
    out = cli("users", "add", "bob", "--role", "risk", "--password", "x")
    assert out.returncode == 2  # argparse: no such option


def test_audit_verify_fails_on_tampering(cli):
    pw = "a long enough password"
    cli("users", "add", "carol", "--role", "admin", stdin=f"{pw}\n{pw}\n")
    cli("users", "set-roles", "carol", "--role", "risk")
    with make_engine(cli.url).begin() as conn:
        conn.execute(text("UPDATE audit_log SET username = 'mallory' WHERE seq = 1"))
    out = cli("audit", "verify")
    assert out.returncode != 0
    assert "1" in out.stdout


def _two_entries(cli):
    pw = "a long enough password"
    assert cli("users", "add", "dave", "--role", "risk", stdin=f"{pw}\n{pw}\n").returncode == 0
    assert cli("users", "disable", "dave").returncode == 0


def test_audit_verify_fails_on_a_deleted_tail_and_later_commands_are_refused(cli):
    _two_entries(cli)  # each command writes its change and a cli_command entry
    with make_engine(cli.url).begin() as conn:
        last = conn.execute(text("SELECT MAX(seq) FROM audit_log")).scalar()
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": last})
    refused = cli("users", "set-roles", "dave", "--role", "marketing")
    assert refused.returncode == 1 and "audit_chain_broken" in refused.stderr and "Traceback" not in refused.stderr
    out = cli("audit", "verify")
    assert out.returncode == 2 and f"Entries {last}..{last} are missing" in out.stdout


def test_audit_verify_needs_the_explicit_override_for_a_missing_checkpoint(cli):
    _two_entries(cli)
    cli.checkpoint.unlink()
    out = cli("audit", "verify")
    assert out.returncode == 2 and "no checkpoint" in out.stdout and "--accept-missing-checkpoint" in out.stdout
    accepted = cli("audit", "verify", "--accept-missing-checkpoint")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "accepted at entry" in accepted.stdout
    again = cli("audit", "verify")
    assert again.returncode == 0, again.stdout
    engine = make_engine(cli.url)
    with engine.connect() as conn:
        params = conn.execute(text("SELECT parameters FROM audit_log WHERE event = 'audit_verify' ORDER BY seq")).scalars().all()
    assert any('"accepted_missing_checkpoint":true' in p for p in params)
