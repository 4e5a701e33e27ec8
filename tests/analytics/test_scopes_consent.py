"""User scopes (CLI and API), consent by purpose, audited CLI commands, rejected-row retention."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from analytics import audit, consent, scopes, users
from analytics.access import Scope
from analytics.store import init_schema, make_engine
from tests.analytics import store_rows

ROOT = Path(__file__).resolve().parents[2]
PW = "a long enough password"


def _with_rms(engine, consents: bool = True) -> None:
    store_rows.fill(engine, consents=consents)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET relationship_manager = 'rm_li' WHERE customer_id = 'C000000001'"))
        conn.execute(text("UPDATE customers SET relationship_manager = 'rm_wang' WHERE customer_id <> 'C000000001'"))


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    _with_rms(engine)
    env = {**os.environ, "AUDIT_HMAC_KEY": "h" * 40, "AUDIT_CHECKPOINT_FILE": str(tmp_path / "audit.ckpt")}

    def run(*args, stdin: str = ""):
        return subprocess.run([sys.executable, "-m", "analytics", *args, "--db", url], cwd=ROOT, env=env,
                              input=stdin, capture_output=True, text=True)

    run.engine = engine
    return run


def test_scope_through_the_cli_is_checked_set_and_audited(cli):
    engine = cli.engine
    out = cli("users", "add", "ann", "--role", "marketing", "--branch", "BR001", stdin=f"{PW}\n{PW}\n")
    assert out.returncode == 0, out.stderr
    assert scopes.get_scope(engine, "ann") == Scope(branches={"BR001"})

    out = cli("users", "add", "bad", "--role", "marketing", "--branch", "BR404", stdin=f"{PW}\n{PW}\n")
    assert out.returncode == 1 and out.stderr.strip() == (
        "error: Unknown branch 'BR404': no such branches.branch_id in the store.")
    assert users.get_user(engine, "bad") is None  # refused before the user existed

    out = cli("users", "add", "rm", "--role", "relationship_manager", stdin=f"{PW}\n{PW}\n")
    assert out.returncode == 1 and "needs a portfolio" in out.stderr and "Traceback" not in out.stderr
    assert users.get_user(engine, "rm") is None
    out = cli("users", "add", "rm", "--role", "relationship_manager", "--portfolio", "rm_nobody",
              stdin=f"{PW}\n{PW}\n")
    assert out.returncode == 1 and "Unknown portfolio 'rm_nobody'" in out.stderr
    out = cli("users", "add", "rm", "--role", "relationship_manager", "--portfolio", "rm_li", stdin=f"{PW}\n{PW}\n")
    assert out.returncode == 0, out.stderr

    assert cli("users", "set-scope", "ann", "--portfolio", "rm_wang").returncode == 0
    assert scopes.get_scope(engine, "ann") == Scope(portfolios={"rm_wang"})
    assert cli("users", "set-scope", "ann", "--all").returncode == 0
    assert scopes.get_scope(engine, "ann") is None
    assert cli("users", "set-scope", "ann").returncode == 1  # neither a scope nor --all
    assert cli("users", "set-scope", "rm", "--all").returncode == 1  # a manager keeps a portfolio
    assert cli("users", "set-roles", "ann", "--role", "relationship_manager").returncode == 1

    entries = audit.query(engine, event=["scope_change", "cli_command"])
    changes = entries[entries["event"] == "scope_change"]
    assert len(changes) == 2
    commands = entries[entries["event"] == "cli_command"]
    assert len(commands) >= 9  # every users command, refused ones included
    assert all(PW not in json.dumps(row) for row in commands.astype(str).to_dict("records"))
    assert all(str(u).startswith("cli:") for u in commands["username"])


def test_a_scope_change_ends_the_users_sessions(cli):
    engine = cli.engine
    users.add_user(engine, "ann", PW, ["marketing"])
    session = users.start_session(engine, "ann")
    scopes.set_scope(engine, "ann", branches=["BR002"])
    assert users.session_user(engine, session) is None


def test_viewer_for_reads_roles_and_scope(cli):
    engine = cli.engine
    users.add_user(engine, "ann", PW, ["marketing"])
    assert scopes.viewer_for(engine, "ann").scope is None
    scopes.set_scope(engine, "ann", branches=["BR002"], portfolios=["rm_li"])
    viewer = scopes.viewer_for(engine, "ann", purpose="marketing")
    assert viewer.roles == ("marketing",) and viewer.purpose == "marketing"
    assert viewer.scope == Scope(branches={"BR002"}, portfolios={"rm_li"})


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_consent_is_live_between_grant_and_withdrawal(engine):
    _with_rms(engine, consents=False)
    t0 = dt.datetime(2026, 1, 1)

    def consenting(at):
        live, params = consent.live_consent_sql("c.customer_id", "marketing", at)
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT c.customer_id FROM customers c WHERE {live} ORDER BY 1"),
                                params).scalars().all()

    assert consenting(t0) == []
    synced = consent.sync_marketing_flags(engine, at=t0)  # flags: C1 and C3 true, C2 false
    assert synced == {"granted": 2, "withdrawn": 0}
    assert consenting(t0) == ["C000000001", "C000000003"]
    assert consenting(t0 - dt.timedelta(seconds=1)) == []  # not before it was granted
    assert consent.sync_marketing_flags(engine, at=t0) == {"granted": 0, "withdrawn": 0}  # idempotent
    assert consent.withdraw(engine, "C000000003", "marketing", at=t0 + dt.timedelta(days=1)) == 1
    assert consenting(t0 + dt.timedelta(hours=1)) == ["C000000001", "C000000003"]
    assert consenting(t0 + dt.timedelta(days=2)) == ["C000000001"]
    consent.grant(engine, "C000000002", "marketing", at=t0 + dt.timedelta(days=3))
    assert consenting(t0 + dt.timedelta(days=3)) == ["C000000001", "C000000002"]
    # Other purposes are separate consents.
    live, params = consent.live_consent_sql("c.customer_id", "third_party", t0 + dt.timedelta(days=3))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT COUNT(*) FROM customers c WHERE {live}"), params).scalar() == 0
    with pytest.raises(ValueError, match="purpose"):
        consent.live_consent_sql("c.customer_id", "spam")
    # A flag turned false withdraws the live consent; a loaded flag wins over an earlier grant (C2's).
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET marketing_consent = :f WHERE customer_id = 'C000000001'"),
                     {"f": False})
    assert consent.sync_marketing_flags(engine, at=t0 + dt.timedelta(days=4)) == {"granted": 0, "withdrawn": 2}
    assert consenting(t0 + dt.timedelta(days=5)) == []


def test_load_keeps_rejected_rows_masked_and_prunes_them_after_retention(tmp_path, monkeypatch):
    from analytics import loader

    engine = make_engine(f"sqlite:///{tmp_path}/s.db", create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    bad = tmp_path / "customers.csv"
    bad.write_text("customer_id,name,phone,id_number,branch_id,open_date,status,marketing_consent\n"
                   "C9,欧阳娜娜,13812345678,11010519491231002X,BR001,not-a-date,active,yes\n", encoding="utf-8")
    report = loader.load_files(engine, [bad], "customers")
    assert report.rows_rejected == 1
    with engine.connect() as conn:
        row = json.loads(conn.execute(text("SELECT row_data FROM load_rejects")).scalar())
    assert row["name"] == "欧***" and row["phone"] == "138****5678" and row["id_number"] == "110105********002X"
    assert row["open_date"] == "not-a-date"  # the value that was wrong is kept for the steward
    assert loader.prune_rejects(engine) == 0
    monkeypatch.setenv("LOAD_REJECTS_RETENTION_DAYS", "30")
    assert loader.prune_rejects(engine, now=dt.datetime.now() + dt.timedelta(days=31)) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM load_rejects")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM load_batches")).scalar() == 1  # the record stays


def test_consents_load_from_a_file_and_count_at_once(tmp_path):
    from analytics import loader

    engine = make_engine(f"sqlite:///{tmp_path}/s.db", create_dir=True)
    init_schema(engine)
    store_rows.fill(engine, consents=False)
    path = tmp_path / "consents.csv"
    path.write_text("customer_id,purpose,granted_at,withdrawn_at\n"
                    "C000000001,marketing,2025-01-01 09:00:00,\n"
                    "C000000002,marketing,2025-01-01 09:00:00,2025-06-01 10:00:00\n"
                    "C000000003,newsletter,2025-01-01,\n"
                    "C999,marketing,2025-01-01,\n", encoding="utf-8")
    report = loader.load_files(engine, [path], "consents")
    assert (report.rows_loaded, report.rows_rejected) == (2, 2)  # an unknown purpose, an unknown customer
    live, params = consent.live_consent_sql("c.customer_id", "marketing")
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT c.customer_id FROM customers c WHERE {live}"), params).scalars().all() \
            == ["C000000001"]
