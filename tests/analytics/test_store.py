"""The store: URL resolution, SQLite settings, and a schema round trip on SQLite and PostgreSQL."""

import datetime as dt
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import inspect, select, text

from analytics import settings
from analytics.errors import StoreError, StoreNotInitialisedError
from analytics.schema import APP_TABLES, STORE_TABLES, customers, holdings
from analytics.store import check_store, make_engine, redact_url, resolve_url
from tests.analytics import store_rows


def test_url_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("CUSTOMER_STORE_URL", raising=False)
    monkeypatch.setattr(settings, "SECRETS_FILE", tmp_path / "missing.toml")
    assert resolve_url() == f"sqlite:///{settings.PROJECT_ROOT / 'data' / 'bank.db'}"
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('CUSTOMER_STORE_URL = "sqlite:////srv/from-secrets.db"\n')
    monkeypatch.setattr(settings, "SECRETS_FILE", secrets)
    assert resolve_url() == "sqlite:////srv/from-secrets.db"
    monkeypatch.setenv("CUSTOMER_STORE_URL", "sqlite:////srv/from-env.db")
    assert resolve_url() == "sqlite:////srv/from-env.db"
    assert resolve_url("sqlite:////srv/from-flag.db") == "sqlite:////srv/from-flag.db"


def test_bad_url_is_a_clear_error_without_password():
    with pytest.raises(StoreError, match="Not a database URL"):
        resolve_url("not a url")
    assert "s3cret" not in redact_url("postgresql+psycopg://bank:s3cret@db/bank")


def test_missing_sqlite_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path}/nowhere/bank.db")


def test_sqlite_runs_wal_with_foreign_keys(sqlite_engine):
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_empty_store_says_how_to_create_one(engine):
    with pytest.raises(StoreNotInitialisedError, match="python -m analytics demo"):
        check_store(engine)


def test_schema_round_trip(engine):
    names = set(inspect(engine).get_table_names())
    assert set(STORE_TABLES) | set(APP_TABLES) <= names
    store_rows.fill(engine)
    check_store(engine)
    with engine.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.customer_id == "C000000001")).mappings().one()
        # Identifiers are text: the trailing X and a leading zero survive the round trip.
        assert row["id_number"] == "11010519491231002X"
        assert row["phone"] == "013812345678"
        assert row["birth_date"] == date(1949, 12, 31)
        assert row["marketing_consent"] is True
        acct = conn.execute(select(holdings.c.account_number).where(holdings.c.holding_id == 2)).scalar()
        assert acct == "0012345"
        total = conn.execute(text("SELECT SUM(balance) FROM holdings")).scalar()
        assert float(total) == pytest.approx(251000.50)


def test_an_older_store_gets_the_added_indexes(engine):
    from analytics.schema import ADDED_INDEXES
    from analytics.store import init_schema, read_frame

    store_rows.fill(engine)

    def indexes(table):
        return {i["name"] for i in inspect(engine).get_indexes(table)}

    with engine.begin() as conn:
        for _, name in ADDED_INDEXES:
            conn.execute(text(f"DROP INDEX {name}"))
    assert not any(name in indexes(table) for table, name in ADDED_INDEXES)
    init_schema(engine)
    assert all(name in indexes(table) for table, name in ADDED_INDEXES)
    assert {name for _, name in ADDED_INDEXES} >= {"ix_customers_risk_assessed", "ix_alerts_due", "ix_risk_flags_drops"}
    init_schema(engine)  # idempotent
    assert len(read_frame(engine, "SELECT customer_id FROM customers")) == 3


def test_foreign_keys_are_enforced(engine):
    from sqlalchemy.exc import IntegrityError

    store_rows.fill(engine)
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(customers.insert().values(
                customer_id="C9", branch_id="NOPE", open_date=date(2020, 1, 1), status="active",
                marketing_consent=False))


def test_bulk_insert_with_explicit_ids_leaves_autoincrement_usable(engine):
    store_rows.fill(engine)  # holdings 1..3 written with explicit ids
    with engine.begin() as conn:
        new_id = conn.execute(holdings.insert().values(
            customer_id="C000000003", product_id="P01", opened_on=date(2026, 8, 1), balance=1.0)
        ).inserted_primary_key[0]
    assert new_id == 4


def test_bulk_insert_writes_whole_floats_into_integer_columns(engine):
    # A count column that held a NaN once is float ("82.0"); PostgreSQL's COPY refused it for a
    # bigint and failed a 100k refresh's churn stage.
    import datetime as dt

    import pandas as pd

    from analytics.schema import load_batches
    from analytics.store import bulk_insert, init_schema

    init_schema(engine)
    frame = pd.DataFrame({"loaded_at": [dt.datetime(2026, 1, 1)] * 2, "table_name": ["customers"] * 2,
                          "source_file": ["a.csv", "b.csv"], "file_sha256": ["0" * 64] * 2,
                          "rows_read": [82.0, 3.0], "rows_loaded": [82.0, 3.0], "rows_rejected": [0.0, float("nan")]})
    frame["rows_rejected"] = frame["rows_rejected"].fillna(0.0)
    assert bulk_insert(engine, load_batches, frame) == 2
    with engine.connect() as conn:
        rows = conn.execute(select(load_batches.c.source_file, load_batches.c.rows_read)
                            .order_by(load_batches.c.source_file)).all()
    assert [(f, n) for f, n in rows] == [("a.csv", 82), ("b.csv", 3)]
    assert all(type(n) is int for _, n in rows)


def _mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_store_is_private_from_its_first_byte(tmp_path):
    import os

    from analytics.store import init_schema

    old = os.umask(0o022)  # the usual umask, which would make a new file readable by everyone
    try:
        engine = make_engine(f"sqlite:///{tmp_path}/bank.db", create_dir=True)
        init_schema(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO branches (branch_id, name, city, province) VALUES ('B1','n','c','p')"))
        for name in ("bank.db", "bank.db-wal", "bank.db-shm"):
            if (tmp_path / name).exists():
                assert _mode(tmp_path / name) == 0o600, name
        engine.dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "bank.db") == 0o600


def test_an_existing_store_file_keeps_its_mode(tmp_path):
    import os

    path = tmp_path / "shared.db"
    path.touch()
    os.chmod(path, 0o640)
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()
    assert _mode(path) == 0o640


def test_demo_secrets_are_private_from_their_first_byte(tmp_path, monkeypatch):
    import os

    from analytics import cli

    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, flags, mode=0o777, **kw: opened.append((str(p), mode))
                        or real_open(p, flags, mode, **kw))
    target = tmp_path / ".streamlit" / "secrets.toml"
    assert cli.write_demo_secrets(target)
    monkeypatch.undo()
    assert _mode(target) == 0o600
    assert (str(target), 0o600) in opened  # created with the mode, not chmod-ed afterwards
    assert not cli.write_demo_secrets(target)  # never overwritten
    assert "AUDIT_HMAC_KEY" in target.read_text()


def test_streamlit_listens_on_localhost_only():
    import tomllib

    config = tomllib.loads((settings.PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"


def test_read_frame_in_chunks_gives_the_frame_of_one_read(engine, monkeypatch):
    """Chunked reading (a few rows at a time here) gives the frame a single pandas read gives, dtypes
    included, where chunks alone would be inferred differently: a text column NULL in the whole first
    chunk, an integer column with a NULL in one chunk only, a boolean with a NULL, timestamps NULL
    in a chunk; and for an empty result and repeated column names."""
    from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String
    from sqlalchemy import Table as SaTable

    from analytics import store

    monkeypatch.setattr(store, "READ_CHUNK_ROWS", 3)
    meta = MetaData()
    table = SaTable("chunk_probe", meta, Column("id", Integer, primary_key=True), Column("label", String(10)),
                    Column("count", Integer), Column("amount", Float), Column("flag", Boolean),
                    Column("seen_at", DateTime(timezone=True)))
    meta.create_all(engine)
    rows = [{"id": i, "label": None if i < 4 else f"x{i}", "count": None if i == 7 else i,
             "amount": i / 3 if i % 2 else None, "flag": None if i == 5 else i % 2 == 0,
             "seen_at": None if i < 3 else dt.datetime(2026, 1, i, tzinfo=dt.UTC)} for i in range(1, 10)]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    queries = [("SELECT * FROM chunk_probe ORDER BY id", None),
               ("SELECT * FROM chunk_probe WHERE id > :n ORDER BY id", {"n": 100}),
               ("SELECT id, label AS x, count AS x FROM chunk_probe ORDER BY id", None)]
    for sql, params in queries:
        with engine.connect() as conn:
            whole = pd.read_sql(text(sql), conn, params=params)
        chunked = store.read_frame(engine, sql, params)
        pd.testing.assert_frame_equal(chunked, whole)
    with engine.connect() as conn:  # on a caller's connection too
        pd.testing.assert_frame_equal(store.read_frame(conn, queries[0][0]),
                                      pd.read_sql(text(queries[0][0]), conn))


def test_database_on_server_creates_a_database_once(pg_engine):
    """A database beside the test server's own (a test worker's, a benchmark store's): created when
    absent, the same URL again when present; a SQLite URL is refused with a clear message."""
    from analytics.store import database_on_server

    server = pg_engine.url.render_as_string(hide_password=False)
    name = f"{pg_engine.url.database}_beside"
    url = database_on_server(server, name)
    assert make_engine(url).url.database == name
    assert database_on_server(server, name) == url  # already there: no error
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == name
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="PostgreSQL"):
        database_on_server("sqlite:///x.db", "other")
