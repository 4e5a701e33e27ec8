"""Opening the customer store, creating its schema, and fast bulk writes.

The store URL comes from ``--db`` on the command line, else ``CUSTOMER_STORE_URL`` (environment or
``.streamlit/secrets.toml``), else ``sqlite:///data/bank.db``. SQLite connections run in WAL mode
with foreign keys on and a busy timeout, so the dashboard can read while a refresh writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Date, DateTime, Engine, Integer, Table, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from analytics import settings
from analytics.errors import StoreError, StoreNotInitialisedError, UnstorableTextError
from analytics.schema import ADDED_COLUMNS, ADDED_INDEXES, STORE_TABLES, metadata

log = logging.getLogger(__name__)


def resolve_url(db: str | None = None) -> str:
    """Return the store URL: ``db`` if given, else the ``CUSTOMER_STORE_URL`` setting.

    A relative SQLite path is taken relative to the project folder, so ``make run`` and the tests
    find ``data/bank.db`` whatever the working directory.
    """
    url = db or settings.get("CUSTOMER_STORE_URL")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"Not a database URL: {redact_url(url)}. Hint: sqlite:///data/bank.db or "
                         "postgresql+psycopg://user@host/dbname") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            path = settings.PROJECT_ROOT / path
        parsed = parsed.set(database=str(path))
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    busy = int(settings.get("SQLITE_BUSY_TIMEOUT_MS"))
    cur = dbapi_connection.cursor()
    # WAL lets readers (the dashboard) go on while a refresh writes; NORMAL sync is safe under WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy}")
    cur.close()


def _private_sqlite_file(path: str):
    """A ``do_connect`` hook that creates the SQLite file with mode 0600 before SQLite opens it.

    SQLite creates a missing database with the process umask (often 0644: readable by every local
    user) and the WAL and shared-memory files with the database file's mode. Creating the empty
    file ourselves, owner-only from its first byte, leaves no window in which another user could
    open it. An existing file is left as it is.
    """
    def create(_dialect, _record, _cargs, _cparams) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        os.close(fd)

    return create


NUL = "\x00"
UNSTORABLE_TEXT = ("The text holds a NUL character (U+0000), which the store cannot hold or search for; "
                   "type it again without it.")


def storable(value) -> bool:
    """Whether ``value`` (text typed into a search, a filter or a form) can be held in the store.

    PostgreSQL text cannot hold NUL, and ``load`` refuses a file holding one (on either database),
    so no stored value contains it: a search for text holding NUL matches nothing, on both
    databases alike, and must not reach PostgreSQL, whose driver error would quote the statement's
    parameters.
    """
    return not (isinstance(value, str) and NUL in value)


def _refuse_nul(_conn, _cursor, _statement, parameters, _context, executemany) -> None:
    """A ``before_cursor_execute`` hook: one statement's text parameter holding NUL is refused
    with :class:`UnstorableTextError` before the database sees it.

    Searches check :func:`storable` themselves (no match); this is the net under every form that
    stores what a user typed (a reason, a note, a comment, a name), so PostgreSQL's error (which
    quotes the parameters) never reaches a page or a log, and SQLite keeps the same rule. Bulk
    writes (``executemany``) are not scanned: they carry loaded or computed rows, never typed text,
    and ``load`` refuses NUL already.
    """
    if executemany or not parameters:
        return
    values = parameters.values() if isinstance(parameters, dict) else parameters
    if any(isinstance(v, str) and NUL in v for v in values):
        raise UnstorableTextError(UNSTORABLE_TEXT)


def make_engine(db: str | None = None, *, create_dir: bool = False) -> Engine:
    """Create an engine for the store.

    Parameters
    ----------
    db : str, optional
        Store URL; defaults to the ``CUSTOMER_STORE_URL`` setting.
    create_dir : bool
        For a SQLite file, create its folder if missing (the demo generator does; readers don't,
        so a mistyped path gives a clear error instead of a new empty store).
    """
    url = resolve_url(db)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict = {"future": True}
    if backend == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).parent
            if create_dir:
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.exists():
                raise StoreError(f"Store folder {folder} does not exist. Hint: run `python -m analytics demo`"
                                 " to build the demo store, or pass --db.")
        kwargs["connect_args"] = {"timeout": int(settings.get("SQLITE_BUSY_TIMEOUT_MS")) / 1000}
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise StoreError(f"Cannot open store {redact_url(url)}: {exc}") from None
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database not in (None, "", ":memory:") and not parsed.database.startswith("file:"):
            event.listen(engine, "do_connect", _private_sqlite_file(parsed.database))
    return engine


def database_on_server(server_url: str, name: str) -> str:
    """The URL of the database ``name`` on the PostgreSQL server of ``server_url``, created when
    absent (the benchmark's stores, a test worker's own database). ``server_url`` names any
    database of the server the user may connect to and create databases from."""
    url = make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise StoreError(f"database_on_server needs a PostgreSQL server, not {url.get_backend_name()}")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text('CREATE DATABASE "' + name.replace('"', '""') + '"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def init_schema(engine: Engine) -> None:
    """Create every table and index that does not exist yet (idempotent).

    The bank's tables (:data:`~analytics.schema.STORE_TABLES`) are created only in a store that has
    none of them yet (a new store, before a load or the demo). In a store that has some, a missing
    one is a problem for :func:`check_store` to name, never an empty table to create: a refresh
    would publish it as if the bank had no such rows.
    """
    try:
        tables = None
        if set(inspect(engine).get_table_names()) & set(STORE_TABLES):
            tables = [t for t in metadata.sorted_tables if t.name not in STORE_TABLES]
        metadata.create_all(engine, tables=tables)
        add_missing_columns(engine)
        add_missing_indexes(engine)
    except OperationalError as exc:
        raise StoreError(f"Cannot create the schema in {redact_url(str(engine.url))}: {exc.orig}") from None


def add_missing_columns(engine: Engine) -> list[str]:
    """Add every column of :data:`~analytics.schema.ADDED_COLUMNS` an existing table lacks; returns
    them as ``table.column``. Each is nullable or has a server default, so old rows stay valid."""
    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    added = []
    for table_name, column_name in ADDED_COLUMNS:
        if table_name not in present:
            continue
        if column_name in {c["name"] for c in inspector.get_columns(table_name)}:
            continue
        column = metadata.tables[table_name].c[column_name]
        ddl = f'ALTER TABLE "{table_name}" ADD COLUMN "{column_name}" {column.type.compile(dialect=engine.dialect)}'
        if column.server_default is not None:
            ddl += f" DEFAULT {column.server_default.arg}"
            if not column.nullable:
                ddl += " NOT NULL"
        with engine.begin() as conn:
            conn.execute(text(ddl))
        added.append(f"{table_name}.{column_name}")
        log.info("store: added column %s.%s", table_name, column_name)
    return added


def add_missing_indexes(engine: Engine) -> list[str]:
    """Create every index of :data:`~analytics.schema.ADDED_INDEXES` an existing table lacks, and
    refresh that table's planner statistics (without them SQLite's planner may pass the new index
    by); returns the indexes created."""
    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    added = []
    for table_name, index_name in ADDED_INDEXES:
        if table_name not in present or index_name in {i["name"] for i in inspector.get_indexes(table_name)}:
            continue
        index = next(i for i in metadata.tables[table_name].indexes if i.name == index_name)
        with engine.begin() as conn:
            index.create(conn)
            conn.execute(text(f'ANALYZE "{table_name}"'))
        added.append(index_name)
        log.info("store: added index %s on %s", index_name, table_name)
    return added


def drop_all(engine: Engine) -> None:
    """Drop every table of the schema (used by the demo generator before it rebuilds a store)."""
    metadata.drop_all(engine)


def check_store(engine: Engine) -> None:
    """Raise :class:`StoreNotInitialisedError` with a hint when the store lacks its tables or data."""
    try:
        present = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        raise StoreError(f"Cannot read store {redact_url(str(engine.url))}: {type(exc).__name__}") from None
    missing = [t for t in STORE_TABLES if t not in present]
    if missing:
        raise StoreNotInitialisedError(
            f"The store has no {', '.join(missing)} table(s). Hint: `make run` builds the demo store, "
            "or `python -m analytics demo --db URL`; load your own data with `python -m analytics load`.",
            key="errors.store_no_tables", tables=", ".join(missing),
        )
    with engine.connect() as conn:  # is there a customer (not how many: a count scans them all)
        any_customer = conn.execute(text("SELECT 1 FROM customers LIMIT 1")).first()
    if any_customer is None:
        raise StoreNotInitialisedError(
            "The store has no customers. Hint: `python -m analytics demo` or `python -m analytics load`.",
            key="errors.store_no_customers",
        )


def check_columns(engine: Engine) -> None:
    """Raise :class:`StoreError` naming every store column the analytics read but the store lacks
    (a renamed or dropped column), before any stage fails on it half-way. Called by the refresh,
    not by :func:`check_store`, which every page rerun calls: it asks the catalog about seven tables."""
    try:
        inspector = inspect(engine)
        lacking = []
        for name in STORE_TABLES:
            have = {c["name"] for c in inspector.get_columns(name)}
            lacking += [f"{name}.{c.name}" for c in metadata.tables[name].columns if c.name not in have]
    except SQLAlchemyError as exc:
        raise StoreError(f"Cannot read store {redact_url(str(engine.url))}: {type(exc).__name__}") from None
    if lacking:
        raise StoreError(
            f"The store lacks column(s) {', '.join(lacking)}. Hint: the store tables must have the columns of "
            "analytics/schema.py; rename the column back, or rebuild the table and reload it with "
            "`python -m analytics load`.", key="errors.store_lacks_columns", columns=", ".join(lacking),
        )


def _column_values(s: pd.Series, coltype) -> np.ndarray:
    """One column as an object array of plain Python values, None for missing.

    Dates and timestamps are written as ISO text in the format SQLAlchemy itself uses on SQLite
    (and which PostgreSQL's COPY parses), so rows written here read back as ``date``/``datetime``.
    """
    missing = s.isna().to_numpy()
    if isinstance(coltype, (Date, DateTime)):
        fmt = "%Y-%m-%d" if not isinstance(coltype, DateTime) else "%Y-%m-%d %H:%M:%S.%f"
        as_dt = s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_datetime(s, errors="coerce")
        # Each distinct value formatted once: a monthly table has a few dozen months over millions
        # of rows. NaT gets code -1, which picks the NaN that strftime gives it (a value that is not a
        # date); missing values become None below.
        codes, distinct = pd.factorize(as_dt)
        texts = np.append(np.array(pd.Series(distinct).dt.strftime(fmt), dtype=object), np.nan)
        arr = texts[codes]
    elif isinstance(coltype, Boolean):
        arr = np.array(s.astype(object), dtype=object)
        arr[~missing] = arr[~missing].astype(bool)
    elif isinstance(coltype, Integer) and pd.api.types.is_float_dtype(s):
        # A count that became float (a NaN in its frame once) is written as the integer it is:
        # PostgreSQL's COPY refuses "82.0" for a bigint. A fraction is left as it is, for the
        # database to refuse, never truncated.
        values = s.to_numpy(dtype=float, na_value=np.nan)
        arr = np.array(s.astype(object), dtype=object)
        whole = ~missing & np.isfinite(values) & (values == np.round(values))
        arr[whole] = [int(v) for v in values[whole]]
    else:
        arr = np.array(s.astype(object), dtype=object)
    arr[missing] = None
    return arr


# Rows turned into Python values at a time: bounds the lists of Python values beside the frame (a
# whole frame's would take several times its memory: 400 MiB for 745,000 rows of 11 columns).
_VALUE_SLICE_ROWS = 20_000


def _python_values(df: pd.DataFrame, table: Table) -> Iterator[tuple]:
    """Rows of ``df`` as tuples of plain Python values, for DBAPI executemany or COPY, converted
    :data:`_VALUE_SLICE_ROWS` rows at a time."""
    for lo in range(0, len(df), _VALUE_SLICE_ROWS):
        part = df.iloc[lo:lo + _VALUE_SLICE_ROWS]
        yield from zip(*(_column_values(part[name], table.c[name].type) for name in part.columns), strict=True)


def bulk_insert(engine: Engine, table: Table, df: pd.DataFrame, *, conn=None, multirow: bool = False) -> int:
    """Append ``df`` to ``table`` fast and return the row count.

    SQLite takes a DBAPI ``executemany`` of plain tuples; PostgreSQL takes ``COPY``. Both are far
    faster than ``DataFrame.to_sql`` (and ``method="multi"`` hits SQLite's variable limit). Columns
    are matched by name; ``df`` may hold a subset of the table's columns.

    With ``multirow`` (for large loads, see :func:`bulk_load`), SQLite gets up to
    :data:`SQLITE_ROWS_PER_INSERT` rows per ``INSERT`` statement: the same rows, in the same order,
    in about half the time. PostgreSQL ignores it.
    """
    if df.empty:
        return 0
    columns = [c for c in df.columns if c in table.c]
    df = df[columns]
    if conn is not None:
        return _bulk_insert_conn(conn, table, df, multirow)
    with engine.begin() as c:
        return _bulk_insert_conn(c, table, df, multirow)


# Rows per INSERT statement on SQLite's multi-row path: 100, fewer for a wide table so that one
# statement binds at most 999 parameters (the limit of SQLite builds before 3.32). Each statement
# is prepared once and run for every group of rows; most of the time of a one-row INSERT is
# running the statement once per row, not binding its values.
SQLITE_ROWS_PER_INSERT = 100
_SQLITE_MAX_PARAMETERS = 999


def _sqlite_insert_multirow(cur, table: Table, df: pd.DataFrame) -> None:
    cols = list(df.columns)
    width = len(cols)
    per = max(1, min(SQLITE_ROWS_PER_INSERT, _SQLITE_MAX_PARAMETERS // width))
    quoted = ", ".join(f'"{c}"' for c in cols)
    one = "(" + ", ".join("?" for _ in cols) + ")"
    grouped = f'INSERT INTO "{table.name}" ({quoted}) VALUES ' + ", ".join([one] * per)
    single = f'INSERT INTO "{table.name}" ({quoted}) VALUES {one}'
    values = [_column_values(df[name], table.c[name].type) for name in cols]
    n = len(df)
    for lo in range(0, n, _VALUE_SLICE_ROWS):
        hi = min(lo + _VALUE_SLICE_ROWS, n)
        rows = np.empty((hi - lo, width), dtype=object)
        for j, column in enumerate(values):
            rows[:, j] = column[lo:hi]
        whole = (hi - lo) // per * per
        if whole:  # row-major: each parameter list is ``per`` consecutive rows, in frame order
            cur.executemany(grouped, rows[:whole].reshape(-1, per * width).tolist())
        if whole < hi - lo:
            cur.executemany(single, rows[whole:].tolist())


def _bulk_insert_conn(conn, table: Table, df: pd.DataFrame, multirow: bool = False) -> int:
    dialect = conn.dialect.name
    cols = list(df.columns)
    dbapi_conn = conn.connection.dbapi_connection
    if dialect == "postgresql":
        quoted = ", ".join(f'"{c}"' for c in cols)
        cur = dbapi_conn.cursor()
        with cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
            for row in _python_values(df, table):
                copy.write_row(row)
        # COPY with explicit ids does not move a serial column's sequence: move it past the largest
        # id, or the next plain INSERT would collide.
        serial = table.autoincrement_column
        if serial is not None and serial.name in cols:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{serial.name}'), "
                        f'(SELECT MAX("{serial.name}") FROM "{table.name}"))')
        cur.close()
    elif multirow:
        cur = dbapi_conn.cursor()
        _sqlite_insert_multirow(cur, table, df)
        cur.close()
    else:
        placeholders = ", ".join("?" for _ in cols)
        quoted = ", ".join(f'"{c}"' for c in cols)
        cur = dbapi_conn.cursor()
        cur.executemany(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})', _python_values(df, table))
        cur.close()
    return len(df)


# SQLite settings of a bulk_load connection, put back as they were when it ends.
# foreign_keys: each row's parent lookups (a monthly row's customer, a holding's customer and
#   product) cost a tenth of the demo's load; the loader makes the keys, and they are checked by
#   tests of the stores it makes.
# cache_size: the default 2 MB page cache makes index inserts hit the disk once the file outgrows
#   it; 256 MB (negative: KiB) halved the demo's load time at 100k customers.
SQLITE_BULK_PRAGMAS = {"foreign_keys": "OFF", "cache_size": "-262144"}


@contextmanager
def bulk_load(engine: Engine, tables: Iterable[Table] = ()) -> Iterator[Connection]:
    """A connection for writing many rows with :func:`bulk_insert` (``conn=``), in transactions
    the caller opens on it (``with conn.begin():``).

    On SQLite, until the block ends:

    * the connection runs with :data:`SQLITE_BULK_PRAGMAS`, then gets its own settings back (also
      after an error), so the pooled connection serves other callers as before; the caller writes
      rows whose foreign keys it has made itself;
    * the secondary indexes of ``tables`` (newly made, to be filled) are dropped, and made again
      from the loaded rows at the end (also after an error, so no table is left without them).
      Kept up row by row, the monthly table's index on ``month`` (two dozen values over millions
      of rows) cost more than half of the demo's writes; made at the end, a fifth of that. Primary
      keys stay, so a repeated key still fails its insert.

    Other databases get a plain connection.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            yield conn
            return
        # PRAGMA foreign_keys is a no-op inside a transaction: these run outside one, and so must the caller's.
        before = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in SQLITE_BULK_PRAGMAS}
        deferred = sorted((ix for table in tables for ix in table.indexes), key=lambda ix: ix.name)
        try:
            for name, value in SQLITE_BULK_PRAGMAS.items():
                conn.exec_driver_sql(f"PRAGMA {name}={value}")
            conn.commit()
            with conn.begin():
                for ix in deferred:
                    ix.drop(conn, checkfirst=True)
            yield conn
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    for ix in deferred:
                        ix.create(conn, checkfirst=True)
            finally:
                for name, value in before.items():
                    conn.exec_driver_sql(f"PRAGMA {name}={int(value)}")
                conn.commit()


# Rows fetched from the driver and turned into a frame at a time by read_frame.
READ_CHUNK_ROWS = 50_000


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks of one result as the frame a single read gives: a column whose chunks were
    inferred differently (all NULL in one chunk, so ``object``; ``float64`` or ``str`` in another;
    ``int64`` beside a chunk with a NULL) is inferred again from all its values, as one read does."""
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat(parts, ignore_index=True)
    filled = [p for p in parts if len(p)] or parts[:1]
    for i in range(frame.shape[1]):
        if len({str(p.iloc[:, i].dtype) for p in filled}) > 1:
            values = frame.iloc[:, i].astype(object)
            values = values.where(values.notna(), None).tolist()
            column = pd.DataFrame.from_records([(v,) for v in values], columns=["v"], coerce_float=True)["v"]
            if isinstance(column.dtype, pd.DatetimeTZDtype):  # as pandas' own read: in UTC
                column = column.dt.tz_convert("UTC")
            frame.isetitem(i, column)
    return frame


def read_frame(engine_or_conn, sql, params: dict | None = None) -> pd.DataFrame:
    """Run a SELECT (text or Core statement) with bound parameters and return a DataFrame.

    The result is streamed (a server-side cursor on PostgreSQL) and turned into a frame
    :data:`READ_CHUNK_ROWS` rows at a time, then joined with the dtypes one read would give
    (:func:`_joined`). A whole result as Python rows first costs several times the frame: reading
    the 930,000-customer feature frame (423 MiB) peaked at 3.7 GiB that way and at 1.0 GiB in chunks,
    and took 25 s instead of 14 s.
    """
    stmt = text(sql) if isinstance(sql, str) else sql
    stmt = stmt.execution_options(stream_results=True, max_row_buffer=READ_CHUNK_ROWS)
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return _joined(list(pd.read_sql(stmt, conn, params=params, chunksize=READ_CHUNK_ROWS)))
    return _joined(list(pd.read_sql(stmt, engine_or_conn, params=params, chunksize=READ_CHUNK_ROWS)))


#: Ids bound in one ``IN`` list by :func:`read_for_ids` (SQLite allows 32,766 parameters).
IDS_PER_QUERY = 5000


def read_for_ids(engine, stmt, column, ids) -> pd.DataFrame:
    """The rows of the Core SELECT ``stmt`` whose ``column`` is one of ``ids``, read
    :data:`IDS_PER_QUERY` ids at a time and concatenated (no id: no row, with ``stmt``'s columns)."""
    ids = sorted({str(i) for i in ids})
    chunks = [ids[i:i + IDS_PER_QUERY] for i in range(0, len(ids), IDS_PER_QUERY)] or [[]]
    return pd.concat([read_frame(engine, stmt.where(column.in_(chunk))) for chunk in chunks], ignore_index=True)


__all__ = [
    "database_on_server",
    "IDS_PER_QUERY", "bulk_insert", "bulk_load", "check_columns", "check_store", "drop_all", "init_schema",
    "make_engine", "read_for_ids", "read_frame", "redact_url", "resolve_url",
]
