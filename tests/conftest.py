"""Shared fixtures: store engines on SQLite and PostgreSQL, and a small demo store built once.

PostgreSQL tests run against the server named by ``CUSTOMER_STORE_TEST_PG_URL`` (``.ci/run`` starts
one). Locally they skip with a message when it is unset; with ``REQUIRE_POSTGRES=1`` (CI) they fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from analytics.store import database_on_server, init_schema, make_engine

PG_URL = os.environ.get("CUSTOMER_STORE_TEST_PG_URL")


# Under pytest-xdist (`make test` runs two workers) each worker has a database of its own; the
# environment carries it to the tests that read the variable and to the servers they start.
if PG_URL and os.environ.get("PYTEST_XDIST_WORKER"):
    # Every PostgreSQL test empties its database's schema first: two workers sharing one database
    # would empty each other's.
    PG_URL = database_on_server(PG_URL, f"{make_url(PG_URL).database}_{os.environ['PYTEST_XDIST_WORKER']}")
    os.environ["CUSTOMER_STORE_TEST_PG_URL"] = PG_URL

# Every command a test runs (in this process, a child or the browser tests' server) audits with one
# key into one checkpoint of the test session, never into the project's data/ folder, which `make
# run` uses for the demo store. One of each matters: the session's demo store is shared by many
# tests, and its audit chain must continue from one checkpoint signed by one key (the checkpoint
# holds one head per store, so private stores share the file safely).
_AUDIT_DIR = tempfile.mkdtemp(prefix="ci-audit-")
atexit.register(shutil.rmtree, _AUDIT_DIR, ignore_errors=True)  # the session's key and checkpoint go with it
os.environ.setdefault("AUDIT_CHECKPOINT_FILE", os.path.join(_AUDIT_DIR, "audit.checkpoint"))
os.environ.setdefault("AUDIT_KEY_FILE", os.path.join(_AUDIT_DIR, "audit.key"))
os.environ.setdefault("AUDIT_HMAC_KEY", "a" * 40)
# Encrypts TOTP secrets (analytics.mfa) in every test and in the browser tests' server.
os.environ.setdefault("MFA_KEY", "m" * 40)


def _require(flag: str) -> bool:
    return os.environ.get(flag) == "1"


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/store.db", create_dir=True)
    init_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(monkeypatch, tmp_path):
    # Every test gets the server's one database anew, so to the audit chain it is a new store with
    # the same URL: it gets its own checkpoint file, or the previous test's head would call its
    # empty log truncated.
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "pg-audit.checkpoint"))
    if not PG_URL:
        if _require("REQUIRE_POSTGRES"):
            pytest.fail("REQUIRE_POSTGRES=1 but CUSTOMER_STORE_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server configured: set CUSTOMER_STORE_TEST_PG_URL (see .ci/start-postgres)")
    engine = make_engine(PG_URL)
    # Each test starts from an empty schema: drop everything a previous test (or run) left behind.
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    init_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    """A fresh, empty store with the schema, on each dialect in turn."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)


DEMO_CUSTOMERS = 3000
DEMO_MONTHS = 24


@pytest.fixture(scope="session")
def demo_store_url(tmp_path_factory):
    """A small demo store (SQLite), generated and refreshed once per test session."""
    from analytics import demo
    from analytics.refresh import run_refresh

    path = tmp_path_factory.mktemp("demo") / "bank.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    demo.generate(engine, customers=DEMO_CUSTOMERS, months=DEMO_MONTHS, seed=7, progress=False)
    run_refresh(engine)
    engine.dispose()
    return url


@pytest.fixture
def demo_engine(demo_store_url):
    engine = make_engine(demo_store_url)
    yield engine
    engine.dispose()



BLOCK_TEST_ROWS = 700
BLOCK_TEST_CLUSTER_SAMPLE = 500


@pytest.fixture(scope="session")
def blocks_store(demo_store_url, tmp_path_factory):
    """A copy of the demo store refreshed with every stage that goes through its customers a block
    at a time doing so in blocks of :data:`BLOCK_TEST_ROWS` (several blocks, the last one short),
    and the clusters fitted on a sample of :data:`BLOCK_TEST_CLUSTER_SAMPLE` drawn across them: the
    tests that compare a stage's blocks with one pass over every customer read this run (one
    refresh for all of them). ``{"url", "run_id"}``."""
    from analytics import aggregates, clv_refresh, refresh, risk
    from analytics.alerts import stage as alerts
    from analytics.churn import stage as churn
    from analytics.cross_sell import stage as cross_sell
    from analytics.segmentation import stage as segments

    url = copy_store(demo_store_url, tmp_path_factory.mktemp("blocks") / "store.db")
    patch = pytest.MonkeyPatch()
    for module in (segments, churn, risk, aggregates, clv_refresh, alerts, cross_sell):
        patch.setattr(module, "BLOCK_ROWS", BLOCK_TEST_ROWS)
    patch.setenv("CLUSTER_SAMPLE_SIZE", str(BLOCK_TEST_CLUSTER_SAMPLE))
    engine = make_engine(url)
    try:
        run_id = refresh.run_refresh(engine)
    finally:
        patch.undo()
        engine.dispose()
    return {"url": url, "run_id": run_id}


def copy_store(url: str, path) -> str:
    """A copy of the SQLite store at ``url`` in ``path``, made with SQLite's backup API (a file copy
    can miss what is still in the write-ahead log), with its audit checkpoint anchored: to the
    audit chain a copied store is a restored one, whose head is accepted explicitly."""
    import sqlite3

    from analytics import audit

    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(str(path))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    copy_url = f"sqlite:///{path}"
    engine = make_engine(copy_url)
    try:
        audit.accept_missing_checkpoint(engine, username="test:copy")
    finally:
        engine.dispose()
    return copy_url
