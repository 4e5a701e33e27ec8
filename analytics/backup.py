"""Backup and restore of the whole store: ``python -m analytics backup FILE`` / ``restore FILE``.

SQLite is copied with SQLite's online backup API (:meth:`sqlite3.Connection.backup`): a consistent
copy of a store that readers and writers keep using, the write-ahead log included (a file copy can
miss what is still in the WAL). PostgreSQL is dumped with ``pg_dump --format=custom`` and restored
with ``pg_restore`` in one transaction; both programs are looked up on ``PATH``, then in
``/usr/lib/postgresql/*/bin`` (Debian's packages), and their major version must not be older than
the server's.

A backup is written to a temporary file beside ``FILE``, checked (SQLite: ``PRAGMA integrity_check``
and the store's tables; PostgreSQL: ``pg_restore --list``), made readable by its owner only (it holds
every customer's personal data) and only then renamed to ``FILE``, so an interrupted backup never
leaves a file that looks complete.

A restore checks the file first, refuses a file of the other database kind, and refuses to
overwrite a store that holds any row unless ``force`` is given. After it, the restored audit chain
is verified with the current key and the audit checkpoint of the target store is re-anchored at the
restored head, which is recorded as an ``audit_verify`` entry (``restored``): the checkpoint of the
store that was replaced rightly calls the older restored log truncated. A restored chain that does
not verify is reported and left unanchored (the alarm stays up until it is examined).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.engine import make_url

from analytics.errors import StoreError
from analytics.schema import metadata

# Tables whose presence says a file is this application's store.
REQUIRED_TABLES = ("customers", "refresh_runs", "audit_log")
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"


class BackupError(StoreError):
    """A backup could not be written, or a restore was refused or failed."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup or a restore did: the file, its size, the rows per table checked, the
    audit head it holds, and (restore) what the audit verification said."""

    path: Path
    size_bytes: int
    rows: dict
    audit_head: int
    audit_message: str = ""
    audit_ok: bool = True

    def summary(self, verb: str) -> str:
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items())
        return f"{verb} {self.path} ({self.size_bytes:,} bytes; {rows}; audit log up to entry {self.audit_head})"


# ---------------------------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------------------------

def _sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("An in-memory SQLite store cannot be backed up or restored.")
    return Path(database)


def _counts(engine: Engine, tables=REQUIRED_TABLES) -> dict[str, int]:
    present = set(inspect(engine).get_table_names())
    out = {}
    with engine.connect() as conn:
        for name in tables:
            if name in present:
                out[name] = int(conn.execute(select(func.count()).select_from(metadata.tables[name])).scalar())
    return out


def store_is_empty(engine: Engine) -> bool:
    """True when no table of the schema holds a row (a new store, or one with the schema only)."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in present and conn.execute(select(table.c[0]).limit(1)).first() is not None:
                return False
    return True


def _audit_head(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(metadata.tables["audit_log"].c.seq), 0))).scalar())


def _private_rename(tmp: Path, target: Path) -> int:
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target.stat().st_size


def _kind(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise BackupError(f"Backup file {path} does not exist.") from None
    except IsADirectoryError:
        raise BackupError(f"{path} is a folder, not a backup file.") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is neither a SQLite store nor a pg_dump custom-format file.")


# ---------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------

def _check_sqlite_file(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable SQLite store ({exc}).") from None
    if problems != ["ok"]:
        raise BackupError(f"{path} fails SQLite's integrity check ({len(problems)} problems, first: {problems[0]}).")
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        raise BackupError(f"{path} is a SQLite file but not a customer store (no table {', '.join(missing)}).")


def _sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

def find_pg_tool(name: str) -> str:
    """The path of ``pg_dump`` or ``pg_restore``: on PATH, else the newest Debian package's."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(re.search(r"/postgresql/(\d+)/", p).group(1)), reverse=True)
    if candidates:
        return candidates[0]
    raise BackupError(f"{name} was not found on PATH or in /usr/lib/postgresql/*/bin. Hint: install the "
                      "PostgreSQL client programs (Debian: apt-get install postgresql-client) of the "
                      "server's major version or newer.")


def _pg_args_env(engine: Engine) -> tuple[list[str], dict]:
    """libpq connection options for the programs; the password goes in the environment, never argv."""
    url = make_url(engine.url.render_as_string(hide_password=False))
    env = dict(os.environ)
    args = []
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    sslmode = url.query.get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = str(sslmode)
    args += ["--no-password"]
    return args, env


def _run(cmd: list[str], env: dict, what: str) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        # The programs' messages name objects and options, not rows; keep the first line.
        first = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackupError(f"{what} failed (exit {proc.returncode}): {first[0] if first else 'no message'}")
    return proc.stdout


def _check_pg_file(path: Path) -> None:
    listing = _run([find_pg_tool("pg_restore"), "--list", str(path)], dict(os.environ), f"reading {path}")
    names = set(re.findall(r"\bTABLE (?:DATA )?\S+ (\w+) ", listing))
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        raise BackupError(f"{path} is a pg_dump file but not of a customer store (no table {', '.join(missing)}).")


# ---------------------------------------------------------------------------------------------
# Backup and restore
# ---------------------------------------------------------------------------------------------

def backup(engine: Engine, file: str | os.PathLike) -> BackupReport:
    """Write a consistent backup of the store to ``file`` (mode 0600), replacing it if present."""
    target = Path(file)
    if target.is_dir():
        raise BackupError(f"{target} is a folder; name the backup file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    rows = _counts(engine)
    head = _audit_head(engine)
    try:
        if engine.dialect.name == "sqlite":
            source = _sqlite_path(engine)
            if not source.exists():
                raise BackupError(f"Store {source} does not exist.")
            _sqlite_copy(source, tmp)
            _check_sqlite_file(tmp)
        elif engine.dialect.name == "postgresql":
            args, env = _pg_args_env(engine)
            _run([find_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", *args,
                  "--file", str(tmp), str(engine.url.database)], env, "pg_dump")
            _check_pg_file(tmp)
        else:
            raise BackupError(f"Backup supports SQLite and PostgreSQL, not {engine.dialect.name}.")
        size = _private_rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return BackupReport(target, size, rows, head)


def verify_file(file: str | os.PathLike) -> str:
    """Check a backup file without restoring it; return its kind ('sqlite' or 'postgresql')."""
    path = Path(file)
    kind = _kind(path)
    if kind == "sqlite":
        _check_sqlite_file(path)
    else:
        _check_pg_file(path)
    return kind


def restore(engine: Engine, file: str | os.PathLike, *, force: bool = False,
            username: str | None = None) -> BackupReport:
    """Replace the store's contents with the backup in ``file``.

    Raises
    ------
    BackupError
        When the file is not a valid backup, is of the other database kind, or the store holds
        rows and ``force`` is not given (nothing is changed then), or the restore itself failed.
    """
    path = Path(file)
    kind = verify_file(path)
    if kind != engine.dialect.name:
        raise BackupError(f"{path} is a {kind} backup; the store is {engine.dialect.name}. Nothing was restored.")
    exists = kind != "sqlite" or _sqlite_path(engine).exists()
    if exists and not force and not store_is_empty(engine):
        raise BackupError("The store already holds data; nothing was restored. Hint: add --force to replace "
                          "it (take a backup of it first).")
    if kind == "sqlite":
        target = _sqlite_path(engine)
        target.parent.mkdir(parents=True, exist_ok=True)
        engine.dispose()  # no pooled connection of ours holds the file while it is replaced
        _sqlite_copy(path, target)
        os.chmod(target, 0o600)
    else:
        args, env = _pg_args_env(engine)
        engine.dispose()
        # --clean --if-exists: replace every object the dump holds (the schema made by init_schema
        # included); one transaction: a failed restore leaves the store as it was.
        _run([find_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
              "--single-transaction", "--exit-on-error", *args, "--dbname", str(engine.url.database), str(path)],
             env, "pg_restore")
    from analytics import audit

    result = audit.anchor_restored(engine, username=username, source=path.name)
    return BackupReport(path, path.stat().st_size, _counts(engine), _audit_head(engine), result.message,
                        result.ok)


__all__ = ["BackupError", "BackupReport", "backup", "find_pg_tool", "restore", "store_is_empty", "verify_file"]
