"""A refresh of a store it may not write (issue 17): one clear error line, no traceback, and the
data and the published run exactly as they were.

SQLite: the store file is read-only to the refreshing user (as root, who may write any file, the
refresh is a fork that drops to user ``nobody`` first; everything it needs is imported before).
PostgreSQL: the refresh logs in as the dashboard's role of ``deploy/postgres-roles.sql``, which may
read the store but not write the refresh's tables (tests/test_deploy.py checks the rest of it).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from analytics.cli import build_parser, main
from analytics.refresh import run_refresh
from analytics.store import make_engine
from tests.analytics import store_rows
from tests.conftest import copy_store
from tests.reliability.harness import current, newest_run, snapshot
from tests.test_deploy import pg_roles

NOBODY = 65534


def _refresh_as_nobody(url: str) -> int:
    def child() -> None:
        if os.geteuid() == 0:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        os._exit(main(["refresh", "--quiet", "--db", url]))

    build_parser()  # imports every command's modules while the files are still readable
    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join()
    return proc.exitcode


def _one_error_line(err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture
def open_folder():
    """A folder user nobody can enter (pytest's own tmp folders are the owner's only)."""
    folder = tempfile.mkdtemp(prefix="ro-store-")
    os.chmod(folder, 0o755)
    yield Path(folder)
    shutil.rmtree(folder)


def test_sqlite_store_read_only(small_sqlite_store, open_folder, capfd):
    path = open_folder / "store.db"
    url = copy_store(small_sqlite_store, path)
    engine = make_engine(url)
    run, runs = current(engine), newest_run(engine)
    before = snapshot(engine, run)
    engine.dispose()
    conn = sqlite3.connect(path)  # no write-ahead log files: the store is this one file
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    os.chmod(path, 0o444)
    capfd.readouterr()

    assert _refresh_as_nobody(url) == 1
    _one_error_line(capfd.readouterr().err, "readonly database")

    os.chmod(path, 0o600)
    engine = make_engine(url)
    assert current(engine) == run and newest_run(engine) == runs
    assert snapshot(engine, run) == before
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_store_read_only_for_the_app_role(pg_engine, capfd):
    store_rows.fill(pg_engine)  # the 3-customer store: a published run is all this needs
    run_refresh(pg_engine)
    engine = pg_engine
    run, runs = current(engine), newest_run(engine)
    before = snapshot(engine, run)
    with pg_roles(engine) as (app_url, _writer_url):
        capfd.readouterr()
        assert main(["refresh", "--quiet", "--db", app_url]) == 1
        _one_error_line(capfd.readouterr().err, "read-only for this process", "InsufficientPrivilege")
    assert current(engine) == run and newest_run(engine) == runs
    assert snapshot(engine, run) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM refresh_runs WHERE status = 'running'")).scalar() == 0
