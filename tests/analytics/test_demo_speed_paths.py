"""The store's bulk-load path, used by the demo generator: it writes the rows the ordinary
``bulk_insert`` writes, and leaves the connection's settings and the tables' indexes as they were.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Date, DateTime, text

from analytics import schema, store
from analytics.store import _column_values, bulk_insert, bulk_load
from tests.analytics import store_rows

LOADED = (schema.customers, schema.holdings, schema.customer_monthly)


def _customers(n: int) -> pd.DataFrame:
    """Customers with every kind of column: text (non-ASCII too), NULLs, dates, NaT, a timestamp, booleans."""
    i = np.arange(n)
    return pd.DataFrame({
        "customer_id": [f"T{k:06d}" for k in i],
        "name": np.where(i % 7 == 0, None, np.array([f"客户{k}" for k in i], dtype=object)),
        "gender": np.where(i % 2 == 0, "M", "F"),
        "birth_date": pd.to_datetime("1950-01-01") + pd.to_timedelta(i * 97 % 20000, unit="D"),
        "id_expiry_date": np.where(i % 5 == 0, np.datetime64("NaT"), np.datetime64("2030-01-01", "s")),
        "phone": np.where(i % 3 == 0, None, np.array([f"0138{k:07d}" for k in i], dtype=object)),
        "branch_id": "BR001",
        "open_date": np.datetime64("2020-01-01", "s") + (i % 500).astype("m8[D]"),
        "status": "active",
        "marketing_consent": i % 4 != 0,
        "updated_at": np.datetime64("2025-06-30T08:00:00", "s") + (i * 3607).astype("m8[s]"),
    })


def _monthly(customer_ids: list[str]) -> pd.DataFrame:
    months = pd.date_range("2025-01-01", periods=6, freq="MS")
    frame = pd.DataFrame([(c, m) for c in customer_ids for m in months], columns=["customer_id", "month"])
    k = np.arange(len(frame))
    frame["aum"] = np.round(k * 1234.567, 2)
    frame["deposit_balance"] = k * 0.1
    frame["loan_balance"] = 0.0
    frame["txn_count"] = k % 17
    frame["txn_amount"] = k / 3
    frame["digital_logins"] = k % 5
    return frame


def _rows(engine, table: str, key: str) -> list[tuple]:
    """Every row in key order; on SQLite with its rowid (the insertion order) and each value's
    storage class (text, real, integer, null), so order and types count too."""
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            return conn.execute(text(f'SELECT * FROM "{table}" ORDER BY {key}')).all()
        columns = [c.name for c in schema.metadata.tables[table].columns]
        classes = ", ".join(f'typeof("{c}")' for c in columns)
        return conn.execute(text(f'SELECT rowid, *, {classes} FROM "{table}" ORDER BY {key}')).all()


def _fill(engine, *, fast: bool) -> dict[str, list[tuple]]:
    """Write the same customers and monthly rows afresh, one way or the other; return what was stored."""
    with engine.begin() as conn:
        for name in ("customer_monthly", "holdings", "contacts", "consents", "customers"):
            conn.execute(schema.metadata.tables[name].delete())
    frame = _customers(257)  # not a multiple of the rows per statement
    monthly = _monthly(list(frame["customer_id"]))
    if fast:
        with bulk_load(engine, LOADED) as conn:
            with conn.begin():
                assert bulk_insert(engine, schema.customers, frame, conn=conn, multirow=True) == len(frame)
                assert bulk_insert(engine, schema.customer_monthly, monthly, conn=conn, multirow=True) == len(monthly)
    else:
        bulk_insert(engine, schema.customers, frame)
        bulk_insert(engine, schema.customer_monthly, monthly)
    return {"customers": _rows(engine, "customers", "customer_id"),
            "customer_monthly": _rows(engine, "customer_monthly", "customer_id, month")}


def test_bulk_load_writes_the_rows_bulk_insert_writes(engine, monkeypatch):
    store_rows.fill(engine)  # the branch the customers belong to
    want = _fill(engine, fast=False)
    # Small slices and statements, so slice boundaries and short last statements are crossed.
    monkeypatch.setattr(store, "_VALUE_SLICE_ROWS", 50)
    monkeypatch.setattr(store, "SQLITE_ROWS_PER_INSERT", 7)
    got = _fill(engine, fast=True)
    assert len(got["customer_monthly"]) == 257 * 6
    assert got == want


def test_bulk_insert_converts_a_slice_of_rows_at_a_time_and_writes_the_same_rows(engine, monkeypatch):
    """``bulk_insert`` turns at most ``_VALUE_SLICE_ROWS`` rows into Python values at a time (a whole
    large frame's values would take several times its memory): sliced at 50 rows, with a short last
    slice, the plain path (executemany on SQLite, COPY on PostgreSQL) stores the same rows."""
    store_rows.fill(engine)
    want = _fill(engine, fast=False)
    converted = []
    real = store._column_values

    def counting(s, coltype):
        converted.append(len(s))
        return real(s, coltype)

    monkeypatch.setattr(store, "_column_values", counting)
    monkeypatch.setattr(store, "_VALUE_SLICE_ROWS", 50)
    got = _fill(engine, fast=False)
    assert max(converted) == 50 and {257 % 50, 257 * 6 % 50} <= set(converted)  # short last slices
    assert got == want


def test_multirow_statements_are_sized_to_the_parameter_limit(sqlite_engine, monkeypatch):
    """A wide table gets fewer rows per statement: never more than 999 bound parameters."""
    seen = []
    real = store._sqlite_insert_multirow

    def spy(cur, table, df):
        class Cursor:
            def executemany(self, sql, params):
                seen.append(sql.count("?"))
                return cur.executemany(sql, params)

        return real(Cursor(), table, df)

    monkeypatch.setattr(store, "_sqlite_insert_multirow", spy)
    store_rows.fill(sqlite_engine)
    wide = pd.DataFrame({c.name: None for c in schema.customers.columns}, index=range(120))
    wide = wide.assign(customer_id=[f"W{k:04d}" for k in range(120)], branch_id="BR001",
                       open_date=dt.date(2020, 1, 1), status="active", marketing_consent=False)
    assert bulk_insert(sqlite_engine, schema.customers, wide, multirow=True) == 120
    assert max(seen) <= 999
    assert seen[0] == (999 // len(schema.customers.columns)) * len(schema.customers.columns)


def _settings(conn) -> dict:
    return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in store.SQLITE_BULK_PRAGMAS}


def _index_sql(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all())


def test_bulk_load_puts_settings_and_indexes_back(sqlite_engine):
    with sqlite_engine.connect() as conn:
        before = _settings(conn)
    indexes = _index_sql(sqlite_engine)
    assert before["foreign_keys"] == 1
    with bulk_load(sqlite_engine, LOADED) as conn:
        assert _settings(conn) == {"foreign_keys": 0, "cache_size": -262144}
        during = {name for name, _ in _index_sql(sqlite_engine)}
        assert "ix_customer_monthly_month" not in during and "ix_customers_id_number" not in during
        assert "sqlite_autoindex_customer_monthly_1" in during  # primary keys stay
    assert _index_sql(sqlite_engine) == indexes
    with sqlite_engine.connect() as conn:  # the pooled connection the load used
        assert _settings(conn) == before


def test_bulk_load_puts_them_back_after_an_error_too(sqlite_engine):
    with sqlite_engine.connect() as conn:
        before = _settings(conn)
    indexes = _index_sql(sqlite_engine)
    store_rows.fill(sqlite_engine)
    frame = _customers(3)
    with pytest.raises(sqlite3.IntegrityError):  # bulk_insert writes through the driver's cursor
        with bulk_load(sqlite_engine, LOADED) as conn:
            with conn.begin():
                bulk_insert(sqlite_engine, schema.customers, frame, conn=conn, multirow=True)
                bulk_insert(sqlite_engine, schema.customers, frame, conn=conn, multirow=True)  # same keys again
    assert _index_sql(sqlite_engine) == indexes
    with sqlite_engine.connect() as conn:
        assert _settings(conn) == before
        assert conn.execute(text("SELECT COUNT(*) FROM customers WHERE customer_id LIKE 'T%'")).scalar() == 0


def test_foreign_keys_are_checked_again_after_the_load(sqlite_engine):
    store_rows.fill(sqlite_engine)
    with bulk_load(sqlite_engine, LOADED):
        pass
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        bulk_insert(sqlite_engine, schema.customers, _customers(1).assign(customer_id="X1", branch_id="NOPE"))


_CASES = {
    "seconds": pd.Series(np.array([0, 86_399, -1, 1_700_000_000, 0], dtype="M8[s]")),
    "nanoseconds with NaT": pd.Series(pd.to_datetime(["2024-02-29 23:59:59.123456789", None, "1970-01-01 00:00:00"],
                                                     format="ISO8601")),
    "all NaT": pd.Series(np.full(3, np.datetime64("NaT"), dtype="M8[s]")),
    "empty": pd.Series(np.array([], dtype="M8[s]")),
    "time zone": pd.Series(pd.to_datetime([0, 1_700_000_000], unit="s", utc=True)).dt.tz_convert("Asia/Shanghai"),
    "date objects": pd.Series([dt.date(2020, 1, 2), None, dt.date(1949, 12, 31), dt.date(2020, 1, 2)]),
    "datetime objects": pd.Series([dt.datetime(2020, 1, 2, 3, 4, 5, 6), None, dt.datetime(2020, 1, 2, 3, 4, 5, 6)]),
    "text, one not a date": pd.Series(["2020-01-02", None, "not a date", "2021-02-03 04:05:06"]),
    "many repeats": pd.Series(np.repeat(np.array(["2025-01-01", "2025-02-01"], dtype="M8[s]"), 1000)),
}


@pytest.mark.parametrize("name", list(_CASES))
@pytest.mark.parametrize("coltype", [Date(), DateTime()], ids=["date", "datetime"])
def test_dates_are_formatted_as_value_by_value(name, coltype):
    """Each distinct date is formatted once; the text is what formatting each value gives."""
    s = _CASES[name]
    fmt = "%Y-%m-%d" if not isinstance(coltype, DateTime) else "%Y-%m-%d %H:%M:%S.%f"
    as_dt = s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_datetime(s, errors="coerce")
    want = np.array(as_dt.dt.strftime(fmt), dtype=object)
    want[s.isna().to_numpy()] = None
    got = _column_values(s, coltype)
    assert got.dtype == object and len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w) and (g == w or (g != g and w != w))
