"""Backup and restore (issue 17): the round trip on SQLite and PostgreSQL, the refusals, and the audit
chain verifying after a restore. The stores are the 3-customer hand-made store (store_rows)."""

from __future__ import annotations

import sqlite3
import stat

import pandas as pd
import pytest
from sqlalchemy import text, update

from analytics import audit, backup
from analytics.cli import main
from analytics.schema import customers
from analytics.store import make_engine
from tests.analytics import store_rows


def _customers(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text("SELECT customer_id, name, id_number FROM customers ORDER BY customer_id"), conn)


def _changed(engine) -> bool:
    return "changed" in set(_customers(engine)["name"])


def _filled(engine) -> str:
    store_rows.fill(engine)
    for i in range(3):
        audit.append(engine, "page_view", username="u1", target={"page": f"p{i}"})
    return engine.url.render_as_string(hide_password=False)


def _round_trip(engine, file, capsys):
    url = _filled(engine)
    before = _customers(engine)
    assert len(before) == 3

    assert main(["backup", str(file), "--db", url]) == 0
    out = capsys.readouterr().out
    # 3 page views in the backup; the backup's own record comes after it.
    assert "customers 3" in out and "backup written to" in out and "audit log up to entry 3" in out
    assert stat.S_IMODE(file.stat().st_mode) == 0o600  # every customer's personal data

    # The store moves on after the backup: a customer renamed, more audit entries.
    with engine.begin() as conn:
        conn.execute(update(customers).where(customers.c.customer_id == "C000000003").values(name="changed"))
    audit.append(engine, "page_view", username="u2")
    assert _changed(engine)

    # A store holding data is not overwritten without --force; nothing changes.
    assert main(["restore", str(file), "--db", url]) == 1
    assert "already holds data" in capsys.readouterr().err
    assert _changed(engine)

    assert main(["restore", str(file), "--db", url, "--force"]) == 0
    out = capsys.readouterr().out
    assert "restored from" in out and "anchored at entry 3" in out
    engine.dispose()
    pd.testing.assert_frame_equal(_customers(engine), before)
    # The restored chain verifies against the re-anchored checkpoint, and the restore is on record.
    result = audit.verify(engine)
    assert result.ok, result.message
    events = audit.query(engine)
    restored = [p for p in events["parameters"] if '"restored":true' in str(p).replace(" ", "")]
    assert len(restored) == 1, events["parameters"].tolist()
    assert main(["audit", "verify", "--db", url]) == 0


def test_sqlite_round_trip(sqlite_engine, tmp_path, capsys):
    _round_trip(sqlite_engine, tmp_path / "backups" / "store.bak", capsys)


@pytest.mark.postgres
def test_postgresql_round_trip(pg_engine, tmp_path, capsys):
    _round_trip(pg_engine, tmp_path / "store.dump", capsys)
    assert (tmp_path / "store.dump").read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format


def test_sqlite_restore_into_a_new_store(sqlite_engine, tmp_path, capsys):
    url = _filled(sqlite_engine)
    file = tmp_path / "store.bak"
    assert main(["backup", str(file), "--db", url]) == 0
    new_url = f"sqlite:///{tmp_path}/new/store.db"
    assert main(["restore", str(file), "--db", new_url]) == 0
    new = make_engine(new_url)
    pd.testing.assert_frame_equal(_customers(new), _customers(sqlite_engine))
    assert audit.verify(new).ok


def test_restore_checks_the_file_first(sqlite_engine, tmp_path, capsys):
    url = _filled(sqlite_engine)
    cases = {
        "garbage.bak": b"not a backup at all",
        "truncated.bak": None,  # the first 4 KiB of a real backup
        "other.db": None,  # a valid SQLite file that is not a store
    }
    good = tmp_path / "good.bak"
    backup.backup(sqlite_engine, good)
    (tmp_path / "garbage.bak").write_bytes(cases["garbage.bak"])
    (tmp_path / "truncated.bak").write_bytes(good.read_bytes()[:4096])
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    expected = {"garbage.bak": "neither a SQLite store nor a pg_dump",
                "truncated.bak": "", "other.db": "not a customer store"}
    for name, words in expected.items():
        assert main(["restore", str(tmp_path / name), "--db", url, "--force"]) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and "Traceback" not in err, (name, err)
    assert main(["restore", str(tmp_path / "missing.bak"), "--db", url]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert len(_customers(sqlite_engine)) == 3  # untouched by every refusal


def test_a_restored_chain_that_does_not_verify_is_not_anchored(sqlite_engine, tmp_path, monkeypatch, capsys):
    url = _filled(sqlite_engine)
    file = tmp_path / "store.bak"
    backup.backup(sqlite_engine, file)
    # The same backup read with another key (a lost or wrong AUDIT_HMAC_KEY): the entries fail.
    monkeypatch.setenv("AUDIT_HMAC_KEY", "b" * 40)
    assert main(["restore", str(file), "--db", url, "--force"]) == 2
    out = capsys.readouterr().out
    assert "Entry 1 was altered" in out
    assert audit.chain_alarm(sqlite_engine) is not None


def test_missing_pg_tools_give_one_clear_line(monkeypatch):
    monkeypatch.setattr(backup.shutil, "which", lambda name: None)
    monkeypatch.setattr(backup.glob, "glob", lambda pattern: [])
    with pytest.raises(backup.BackupError, match="pg_dump was not found on PATH or in /usr/lib/postgresql"):
        backup.find_pg_tool("pg_dump")
    # Debian's layout, newest major version first.
    monkeypatch.setattr(backup.glob, "glob", lambda pattern: ["/usr/lib/postgresql/9/bin/pg_dump",
                                                              "/usr/lib/postgresql/15/bin/pg_dump"])
    assert backup.find_pg_tool("pg_dump") == "/usr/lib/postgresql/15/bin/pg_dump"


@pytest.mark.postgres
def test_a_sqlite_backup_is_refused_by_a_postgresql_store(pg_engine, sqlite_engine, tmp_path, capsys):
    _filled(sqlite_engine)
    file = tmp_path / "store.bak"
    backup.backup(sqlite_engine, file)
    with pytest.raises(backup.BackupError, match="is a sqlite backup; the store is postgresql"):
        backup.restore(pg_engine, file)
