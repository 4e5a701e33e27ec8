"""Import CSV or Parquet files into a store table, with validation (``python -m analytics load``).

``load_files(engine, paths, table_name)`` loads each file into one of the store tables
(:data:`analytics.schema.STORE_TABLES`) and returns a :class:`LoadReport`. Every row read is either
loaded or rejected, never dropped: rejected rows go to ``load_rejects`` with their line number, a
reason and the raw row as JSON text, so ``rows_read == rows_loaded + rows_rejected`` always holds.

What is checked, all derived from :mod:`analytics.schema` so a new column or constraint needs no
change here:

* **required columns**: the table's non-nullable columns without a default, except an
  auto-numbered primary key (``holding_id``, ``contact_id``). A file lacking one loads nothing
  and raises :class:`~analytics.errors.LoadError`. Unknown extra columns are ignored and named in
  the summary (extracts often carry columns the store does not keep).
* **types**: dates as ``YYYY-MM-DD`` or ``YYYY/MM/DD``; date-times the same, optionally followed by
  ``[ T]HH:MM[:SS[.ffffff]]``; numbers; integers (``3`` or ``3.0``); booleans
  ``true/false/1/0/yes/no/是/否`` (any case), each after trimming surrounding spaces. Every
  ``String`` column is kept as text exactly as read (leading zeros, a trailing ``X``, surrounding
  spaces: data-quality rules count those as defects, so the loader must not hide them). An empty
  or all-blank cell is missing (NULL; rejected in a required column). Values longer than
  the column's length are rejected, because PostgreSQL would refuse them and SQLite would not.
* **check constraints**: the ``col IN (...)`` lists of the table (gender, status, risk levels, ...).
* **keys**: a primary key seen twice in the file rejects the later row (the first valid row wins).
* **foreign keys**: the referenced key must be in the store (which, inside the file's transaction,
  includes rows already written from earlier chunks of the same file) or, for a table referring
  to itself, among the file's accepted rows.

Decisions (the issue left these open):

* **A changed row for a key already in the store updates it (upsert).** A bank refreshing its
  extract expects the newer values to win. The row counts as *updated*; a row identical to the
  stored one counts as *unchanged* and is not written; both count as loaded. Only the columns
  present in the file are updated: a column the file lacks keeps its stored value. Written with
  the dialect's ``INSERT .. ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL).
* **A table whose key the file lacks** (holdings or contacts without ``holding_id``/``contact_id``)
  is appended to: the store numbers the rows, and there is no key to compare against. Re-loading
  the *same file* is still a no-op (below); a re-exported file without ids would append again.
* **Re-loading the same file is a no-op.** Each file is recorded in ``load_batches`` with the
  sha256 of its bytes; the same bytes into the same table again report
  ``already loaded (batch N)`` and write nothing.
* **Encoding**: UTF-8 (with or without BOM) is tried first, strictly, then GB18030 (a superset
  of GBK and GB2312). A file that is neither, or holds NUL bytes, is unreadable: ``LoadError``.
  GB18030 decodes almost any byte string, so a Shift-JIS, Big5 or Latin-1 file often "decodes" to
  nonsense; the decoded text is therefore checked for plausibility (:func:`gb18030_plausible`)
  and a file that fails is refused with a message asking for ``--encoding``. With ``encoding=``
  (``load --encoding``) the file is decoded strictly in that encoding and nothing is guessed.
* **Only regular files** are read: a directory, a device such as ``/dev/null``, a pipe or a
  socket is refused with a message that says which it is.
* **At most ``LOAD_MAX_COLUMNS`` columns**: a wider header is refused before any row is read.
* **Line numbers** are physical lines of the file, header = line 1, so the first data row is line
  2 and a quoted value spanning lines does not shift the rows after it. Blank lines are skipped.
  A row with more or fewer fields than the header is rejected (``wrong number of fields``). For
  Parquet, row ``i`` (0-based) is numbered ``i + 2``, as if the file were a CSV with a header;
  its values are read as the text Arrow gives them (``true``, ``2024-01-31``, ``1234.5``).
* **One file, one transaction.** All chunks of a file (``LOAD_CHUNK_ROWS`` rows each, so a
  multi-GB file never has to fit in memory) are written in one transaction: a failure leaves the
  store as it was. Files are loaded in the order given; a ``LoadError`` stops the run, and the
  files before it stay loaded (re-running the command skips them as already loaded).
* **Rejection reasons** read ``"<kind>: <detail>"`` (e.g. ``bad date: birth_date``); a row with
  several problems lists them all, separated by ``"; "``, and is counted under the kind of the
  first. Reasons name columns, never values, so a report carries no personal data; the values
  are in ``load_rejects.row_data`` for the data steward.

Memory: per file, the set of keys already accepted (to catch duplicates across chunks) stays in
memory, roughly 100 bytes a row; everything else is per chunk.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import SQLAlchemyError

from analytics import schema, settings
from analytics.errors import LoadError

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
                 "是": True, "否": False}
# Keys per IN (...) query: well under SQLite's bound-parameter limit even for two-column keys.
LOOKUP_BATCH = 500
REASON_MAX = 200  # load_rejects.reason is String(200)
_UNPARSED = object()
IMPLAUSIBLE = "implausible"  # _fingerprint: decodes as GB18030, but to nonsense
ENCODING_HINT = "Hint: save it as CSV UTF-8, or name its encoding with --encoding (e.g. shift_jis, big5, latin-1)."

_DATE_RE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")
_DATETIME_RE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?")
_INTEGER_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
_CHECK_IN_RE = re.compile(r"(\w+)\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

@dataclass
class FileReport:
    """What happened to one file.

    Attributes
    ----------
    path : str
        The file as given.
    table : str
        The store table it was loaded into.
    batch_id : int or None
        Its ``load_batches`` row; for a file loaded before, the earlier batch.
    already_loaded : bool
        True when the same bytes were loaded into the same table before (nothing was written).
    source_format : str
        ``csv (utf-8)``, ``csv (utf-8 with BOM)``, ``csv (gb18030)`` or ``parquet``.
    rows_read, inserted, updated, unchanged : int
        Data rows read, and how the loaded ones were written (``unchanged``: identical to the store).
    rejected_by_reason : collections.Counter
        Rejected rows by reason kind (``bad date``, ``orphan foreign key``, ...).
    ignored_columns : list of str
        Columns of the file that the table does not have.
    """

    path: str
    table: str
    batch_id: int | None = None
    already_loaded: bool = False
    source_format: str = ""
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        """Rows accepted: inserted, updated or already present unchanged."""
        return self.inserted + self.updated + self.unchanged

    @property
    def rows_rejected(self) -> int:
        """Rows written to ``load_rejects``."""
        return sum(self.rejected_by_reason.values())

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the command line (no personal data)."""
        name = Path(self.path).name
        if self.already_loaded:
            return [f"{name}: already loaded (batch {self.batch_id}) into {self.table}; nothing to do"]
        lines = [
            f"{name} -> {self.table} (batch {self.batch_id}, {self.source_format}): "
            f"{self.rows_read:,} rows read, {self.rows_loaded:,} loaded "
            f"({self.inserted:,} new, {self.updated:,} updated, {self.unchanged:,} unchanged), "
            f"{self.rows_rejected:,} rejected"
        ]
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  rejected {n:,}: {reason}")
        if self.rows_rejected:
            lines.append(f"  the rejected rows are in load_rejects (batch_id = {self.batch_id})")
        if self.ignored_columns:
            lines.append(f"  ignored columns (not in {self.table}): {', '.join(self.ignored_columns)}")
        return lines


@dataclass
class LoadReport:
    """The outcome of :func:`load_files`: one :class:`FileReport` per file, in order."""

    table: str
    files: list[FileReport] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    @property
    def rejected_by_reason(self) -> Counter:
        """Rejected rows by reason kind, over all files."""
        total: Counter = Counter()
        for f in self.files:
            total.update(f.rejected_by_reason)
        return total

    def summary_lines(self) -> list[str]:
        """Lines for the command line: each file, then a total when there are several."""
        lines = [line for f in self.files for line in f.summary_lines()]
        if len(self.files) > 1:
            lines.append(f"total into {self.table}: {self.rows_read:,} rows read, {self.rows_loaded:,} loaded, "
                         f"{self.rows_rejected:,} rejected")
        return lines


# ---------------------------------------------------------------------------------------------
# What a table expects, derived from the schema
# ---------------------------------------------------------------------------------------------

class _Bad(Exception):
    """A value that does not parse; its message is the reason kind."""


def _parse_date(t: str) -> date:
    m = _DATE_RE.fullmatch(t)
    if not m:
        raise _Bad("bad date")
    try:
        return date(int(m[1]), int(m[3]), int(m[4]))
    except ValueError:
        raise _Bad("bad date") from None


def _parse_datetime(t: str) -> datetime:
    m = _DATETIME_RE.fullmatch(t)
    if not m:
        raise _Bad("bad datetime")
    frac = (m[8] or "").ljust(6, "0")[:6]
    try:
        return datetime(int(m[1]), int(m[3]), int(m[4]), int(m[5] or 0), int(m[6] or 0), int(m[7] or 0),
                        int(frac))
    except ValueError:
        raise _Bad("bad datetime") from None


def _parse_boolean(t: str) -> bool:
    try:
        return BOOLEAN_WORDS[t.lower()]
    except KeyError:
        raise _Bad("bad boolean") from None


def _parse_integer(t: str) -> int:
    if not _INTEGER_RE.fullmatch(t):
        raise _Bad("bad integer")
    return int(t.split(".")[0])


def _number_parser(scale: int | None, precision: int | None) -> Callable[[str], float]:
    # Values beyond NUMERIC(p, s) would make PostgreSQL refuse the whole file; reject the row instead.
    limit = 10.0 ** (precision - scale) if precision is not None and scale is not None else math.inf

    def parse(t: str) -> float:
        try:
            x = float(t)
        except ValueError:
            raise _Bad("bad number") from None
        if not math.isfinite(x) or "_" in t:
            raise _Bad("bad number")
        if scale is not None:
            # Round as the store will, so a re-loaded value compares equal to the stored one.
            x = round(x, scale)
        if abs(x) >= limit:
            raise _Bad("number out of range")
        return x

    return parse


@dataclass(frozen=True)
class _ColumnRule:
    name: str
    parse: Callable[[str], Any] | None  # None: text, kept verbatim
    required: bool
    max_length: int | None
    allowed: tuple[str, ...] | None


def _column_rule(table: Table, col, allowed: dict[str, tuple[str, ...]]) -> _ColumnRule:
    t = col.type
    if isinstance(t, Boolean):
        parse = _parse_boolean
    elif isinstance(t, DateTime):
        parse = _parse_datetime
    elif isinstance(t, Date):
        parse = _parse_date
    elif isinstance(t, Integer):
        parse = _parse_integer
    elif isinstance(t, (Numeric, Float)):
        # Float is a number without a fixed scale: no rounding, no range. (SQLAlchemy 2.1's Float is
        # no Numeric subclass: without it a products file, whose annual_margin is a Float, was refused.)
        is_float = isinstance(t, Float) or getattr(t, "scale", None) is None
        parse = _number_parser(None if is_float else t.scale, None if is_float else t.precision)
    elif isinstance(t, String):
        parse = None
    else:  # pragma: no cover - the store tables use only the types above
        raise LoadError(f"{table.name}.{col.name} has a type the loader does not handle ({t!r})")
    auto = table.autoincrement_column is col
    required = not col.nullable and col.default is None and col.server_default is None and not auto
    max_length = getattr(t, "length", None) if parse is None else None
    return _ColumnRule(col.name, parse, required, max_length, allowed.get(col.name))


def _allowed_values(table: Table) -> dict[str, tuple[str, ...]]:
    """``{column: allowed values}`` from the table's ``col IN ('a', 'b')`` check constraints."""
    out: dict[str, tuple[str, ...]] = {}
    for c in table.constraints:
        sqltext = getattr(c, "sqltext", None)
        if sqltext is None:
            continue
        # Other kinds of check (none on the store tables today) are left to the database, which
        # refuses the file as a whole: a clear LoadError, never a silently dropped row.
        for m in _CHECK_IN_RE.finditer(str(sqltext)):
            out[m[1]] = tuple(re.findall(r"'((?:[^']|'')*)'", m[2]))
    return out


# The store tables, campaign responses from the bank's execution system (issue 13) and the KPI
# wall's targets (issue 14).
LOADABLE_TABLES = (*schema.STORE_TABLES, "campaign_responses", "kpi_targets")


def _row_checks(table_name: str):
    """A table's own row checks beyond types, IN lists and keys: ``check(conn, rows) -> {index:
    [reason, ...]}`` over the parsed rows of a chunk, or None."""
    if table_name == "kpi_targets":
        from analytics import targets

        return targets.check_rows
    return None


def _store_table(table_name: str) -> Table:
    if table_name not in LOADABLE_TABLES:
        raise LoadError(f"Cannot load into {table_name!r}: not a store table. "
                        f"Hint: --table is one of {', '.join(LOADABLE_TABLES)}.")
    return schema.metadata.tables[table_name]


def required_columns(table_name: str) -> list[str]:
    """The columns a file for ``table_name`` must have.

    Parameters
    ----------
    table_name : str
        One of :data:`analytics.schema.STORE_TABLES`.

    Returns
    -------
    list of str
        Non-nullable columns without a default, in table order, except an auto-numbered key.
    """
    table = _store_table(table_name)
    allowed = _allowed_values(table)
    return [c.name for c in table.columns if _column_rule(table, c, allowed).required]


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------

@dataclass
class _Chunk:
    """Up to ``chunk_rows`` data rows: raw text per known column, and how to show a raw row."""

    lines: list[int]
    columns: dict[str, list[str | None]]
    raw_row: Callable[[int], dict]
    pre_rejects: dict[int, str]  # row index -> reason found while reading (e.g. ragged row)

    def __len__(self) -> int:
        return len(self.lines)


# How much decoded GB18030 text the plausibility check reads: enough for any real extract's
# characters to show, and bounded for a multi-GB file.
PLAUSIBILITY_SAMPLE_CHARS = 4 << 20
# Rows of GB2312 (by lead byte) that a Chinese customer extract does not use: kana, Greek,
# Cyrillic and box drawing. Big5 read as GB18030 lands in them; real data hardly ever does.
_GB2312_ODD_ROWS = frozenset((0xA4, 0xA5, 0xA6, 0xA7, 0xA9))
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


def gb18030_plausible(text_: str) -> bool:
    """Whether ``text_``, decoded as GB18030, looks like Chinese text rather than another encoding misread.

    Over the non-ASCII characters: *strongly* implausible are those outside GBK altogether (private
    use, other scripts reached through GB18030's four-byte forms) and GB2312's kana, Greek,
    Cyrillic and box-drawing rows; *weakly* implausible are GBK ideographs outside GB2312 (rare
    characters, which a real file has a few of, in names). Big5 read as GB18030 is full of the first
    kind; Shift-JIS and Latin-1 produce almost only the second. The text is implausible when more
    than 2 % of its non-ASCII characters are strongly implausible, or more than half weakly.
    """
    chars = Counter(_NON_ASCII_RE.findall(text_))
    total = sum(chars.values())
    if not total:
        return True
    strong = weak = 0
    for ch, n in chars.items():
        try:
            lead = ch.encode("gb2312")[0]
        except UnicodeEncodeError:
            try:
                ch.encode("gbk")
            except UnicodeEncodeError:
                strong += n
            else:
                weak += n
            continue
        if lead in _GB2312_ODD_ROWS:
            strong += n
    return strong <= 0.02 * total and weak <= 0.5 * total


def _text_codec(encoding: str) -> codecs.CodecInfo:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise LoadError(f"Unknown encoding {encoding!r}. Hint: e.g. utf-8, gb18030, shift_jis, big5, latin-1.") from None
    if not getattr(info, "_is_text_encoding", True):
        raise LoadError(f"{encoding!r} is not a text encoding. Hint: e.g. utf-8, gb18030, shift_jis, big5, latin-1.")
    return info


def _fingerprint_as(path: Path, encoding: str) -> tuple[str, str | None]:
    """sha256 and the codec to read ``path`` with, decoding it strictly as ``encoding``."""
    info = _text_codec(encoding)
    digest = hashlib.sha256()
    decoder = info.incrementaldecoder("strict")
    first = b""
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                first = first or block[:3]
                if "\x00" in decoder.decode(block):
                    return digest.hexdigest(), None
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise LoadError(f"{path.name}: not valid {info.name} text (checked with --encoding {encoding}). "
                        "Hint: check the file's encoding.") from None
    if info.name == "utf-8" and first == codecs.BOM_UTF8:
        return digest.hexdigest(), "utf-8-sig"
    return digest.hexdigest(), info.name


def _fingerprint(path: Path) -> tuple[str, str | None]:
    """sha256 of the file and its text encoding (``None`` for unreadable), in one streaming pass.

    The encoding must be known before the chunked read starts: finding a GBK byte half-way
    through a multi-GB file would otherwise mean rolling back and starting over.
    """
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    utf8_ok, has_nul, first = True, False, b""
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            if not first:
                first = block[:3]
            has_nul = has_nul or b"\x00" in block
            if utf8_ok:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError:
                    utf8_ok = False
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if has_nul:
        # Valid UTF-8 may contain NUL, but no CSV export does: it is a binary file (or UTF-16).
        return digest.hexdigest(), None
    if utf8_ok:
        return digest.hexdigest(), "utf-8-sig" if first == codecs.BOM_UTF8 else "utf-8"
    gb = codecs.getincrementaldecoder("gb18030")("strict")
    sample: list[str] = []
    sampled = 0
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                decoded = gb.decode(block)
                if sampled < PLAUSIBILITY_SAMPLE_CHARS:
                    sample.append(decoded)
                    sampled += len(decoded)
        gb.decode(b"", final=True)
    except UnicodeDecodeError:
        return digest.hexdigest(), None
    if not gb18030_plausible("".join(sample)):
        return digest.hexdigest(), IMPLAUSIBLE
    return digest.hexdigest(), "gb18030"


def _parquet_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_width(names: Sequence, file_name: str) -> None:
    limit = int(settings.get("LOAD_MAX_COLUMNS"))
    if len(names) > limit:
        raise LoadError(f"{file_name}: the header has {len(names):,} columns, more than LOAD_MAX_COLUMNS "
                        f"({limit:,}); nothing was loaded. Hint: a store table has at most a few dozen.")


def _normalise_header(names: Sequence[str], file_name: str) -> list[str]:
    _check_width(names, file_name)
    out = [n.strip().lower() for n in names]
    # One counting pass: a per-name list.count is quadratic (minutes on a 100k-column header).
    dupes = sorted(n for n, k in Counter(out).items() if k > 1)
    if dupes:
        shown = ", ".join(dupes[:10]) + (f" and {len(dupes) - 10:,} more" if len(dupes) > 10 else "")
        raise LoadError(f"{file_name}: column(s) {shown} appear more than once in the header")
    return out


def _read_csv(path: Path, encoding: str, known: set[str], chunk_rows: int) -> tuple[list[str], Iterator[_Chunk]]:
    """Header and chunks of a CSV file, every value as the text in the file."""
    fh = path.open("r", encoding="utf-8-sig" if encoding.startswith("utf-8") else encoding, newline="")
    reader = csv.reader(fh)
    try:
        raw_header = next(reader)
    except StopIteration:
        fh.close()
        raise LoadError(f"{path.name}: the file is empty (no header line)") from None
    except csv.Error as exc:
        fh.close()
        raise LoadError(f"{path.name}: not a readable CSV file ({exc})") from None
    header = _normalise_header(raw_header, path.name)
    if not any(header):
        fh.close()
        raise LoadError(f"{path.name}: the header line is empty")
    positions = {name: i for i, name in enumerate(header) if name in known}
    width = len(raw_header)

    def chunks() -> Iterator[_Chunk]:
        try:
            rows: list[list[str]] = []
            lines: list[int] = []
            while True:
                before = reader.line_num
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise LoadError(f"{path.name}: line {reader.line_num}: not readable as CSV ({exc})") from None
                if not row:
                    continue  # a blank line: not a record
                rows.append(row)
                lines.append(before + 1)
                if len(rows) >= chunk_rows:
                    yield _csv_chunk(rows, lines, raw_header, positions, width)
                    rows, lines = [], []
            if rows:
                yield _csv_chunk(rows, lines, raw_header, positions, width)
        finally:
            fh.close()

    return header, chunks()


def _csv_chunk(rows, lines, raw_header, positions, width) -> _Chunk:
    columns = {name: [r[i] if i < len(r) else None for r in rows] for name, i in positions.items()}
    pre = {k: f"wrong number of fields: expected {width}, got {len(r)}"
           for k, r in enumerate(rows) if len(r) != width}

    def raw_row(k: int) -> dict:
        r = rows[k]
        out: dict[str, Any] = dict(zip(raw_header, r, strict=False))
        if len(r) > width:
            out["_extra_fields"] = r[width:]
        return out

    return _Chunk(lines, columns, raw_row, pre)


def _read_parquet(path: Path, known: set[str], chunk_rows: int) -> tuple[list[str], Iterator[_Chunk]]:
    """Header and chunks of a Parquet file, every value as the text Arrow casts it to."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise LoadError(f"{path.name}: not a readable Parquet file ({type(exc).__name__})") from None
    header = _normalise_header(names, path.name)

    def chunks() -> Iterator[_Chunk]:
        start = 0
        try:
            for batch in pf.iter_batches(batch_size=chunk_rows):
                texts: dict[str, list[str | None]] = {}
                for name, col in zip(names, batch.columns, strict=True):
                    try:
                        texts[name] = pc.cast(col, pa.string()).to_pylist()
                    except pa.ArrowException:
                        raise LoadError(f"{path.name}: column {name} has a Parquet type that cannot be "
                                        f"read as text ({col.type})") from None
                n = batch.num_rows
                columns = {h: texts[raw] for h, raw in zip(header, names, strict=True) if h in known}

                def raw_row(k: int, texts=texts) -> dict:
                    return {name: texts[name][k] for name in names}

                yield _Chunk([start + k + 2 for k in range(n)], columns, raw_row, {})
                start += n
        except (pa.ArrowException, OSError) as exc:
            raise LoadError(f"{path.name}: not a readable Parquet file ({type(exc).__name__})") from None

    return header, chunks()


# ---------------------------------------------------------------------------------------------
# Validating and writing one file
# ---------------------------------------------------------------------------------------------

def _batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _FileLoad:
    """State of one file's load: runs inside the file's transaction on ``conn``."""

    def __init__(self, conn, table: Table, file_columns: list[str], report: FileReport) -> None:
        self.conn = conn
        self.table = table
        self.report = report
        allowed = _allowed_values(table)
        self.rules = [_column_rule(table, table.c[name], allowed) for name in file_columns]
        self.columns = file_columns
        pk = [c.name for c in table.primary_key.columns]
        # Without every key column in the file there is nothing to match on: append.
        self.key = pk if all(k in file_columns for k in pk) else []
        self.seen: dict[tuple, int] = {}  # key -> line of the row that claimed it
        self.fks = [(fk.parent.name, fk.column) for fk in table.foreign_keys if fk.parent.name in file_columns]
        self.write_stmt = self._write_statement()
        self.row_check = _row_checks(table.name)

    def _write_statement(self):
        if not self.key:
            return self.table.insert()
        dialect = self.conn.dialect.name
        module = {"sqlite": sqlite_dialect, "postgresql": pg_dialect}.get(dialect)
        if module is None:
            raise LoadError(f"Loading into a {dialect} store is not supported (SQLite or PostgreSQL)")
        stmt = module.insert(self.table)
        updates = {c: stmt.excluded[c] for c in self.columns if c not in self.key}
        index = [self.table.c[k] for k in self.key]
        if updates:
            return stmt.on_conflict_do_update(index_elements=index, set_=updates)
        return stmt.on_conflict_do_nothing(index_elements=index)

    def run_chunk(self, chunk: _Chunk) -> None:
        n = len(chunk)
        self.report.rows_read += n
        problems: dict[int, list[str]] = {k: [reason] for k, reason in chunk.pre_rejects.items()}

        def flag(k: int, reason: str) -> None:
            problems.setdefault(k, []).append(reason)

        values: dict[str, list[Any]] = {}
        for rule in self.rules:
            raw = chunk.columns[rule.name]
            out: list[Any] = [None] * n
            cache: dict[str, Any] = {}
            for k, v in enumerate(raw):
                if v is None or not v.strip():
                    if rule.required and k not in chunk.pre_rejects:
                        flag(k, f"missing value: {rule.name}")
                    continue
                if rule.parse is None:
                    out[k] = v  # text: exactly as read
                    if rule.max_length is not None and len(v) > rule.max_length:
                        flag(k, f"too long: {rule.name} (max {rule.max_length})")
                    elif rule.allowed is not None and v not in rule.allowed:
                        flag(k, f"value not allowed: {rule.name} (one of {', '.join(rule.allowed)})")
                    continue
                t = v.strip()
                parsed = cache.get(t, _UNPARSED)
                if parsed is _UNPARSED:
                    try:
                        parsed = rule.parse(t)
                    except _Bad as bad:
                        parsed = bad
                    cache[t] = parsed
                if isinstance(parsed, _Bad):
                    flag(k, f"{parsed}: {rule.name}")
                else:
                    out[k] = parsed
            values[rule.name] = out

        ok = [k for k in range(n) if k not in problems]
        if self.row_check is not None:
            found = self.row_check(self.conn, [{c: values[c][k] for c in self.columns} for k in ok])
            for i, reasons in found.items():
                for reason in reasons:
                    flag(ok[i], reason)
            ok = [k for k in ok if k not in problems]
        self._check_foreign_keys(ok, values, flag)
        ok = [k for k in ok if k not in problems]
        new, changed, unchanged = self._check_keys(ok, values, chunk.lines, flag)

        to_write = [{c: values[c][k] for c in self.columns} for k in new + changed]
        if to_write:
            self.conn.execute(self.write_stmt, to_write)
            self.analyze(self.table)
        self.report.inserted += len(new)
        self.report.updated += len(changed)
        self.report.unchanged += len(unchanged)

        rejects = []
        for k in sorted(problems):
            reasons = problems[k]
            self.report.rejected_by_reason[reasons[0].split(":", 1)[0]] += 1
            reason = "; ".join(reasons)
            if len(reason) > REASON_MAX:
                reason = reason[:REASON_MAX - 1] + "…"
            rejects.append({"batch_id": self.report.batch_id, "line_number": chunk.lines[k], "reason": reason,
                            "row_data": json.dumps(masked_reject(chunk.raw_row(k)), ensure_ascii=False)})
        if rejects:
            self.conn.execute(schema.load_rejects.insert(), rejects)

    def _check_foreign_keys(self, ok: list[int], values, flag) -> None:
        for local, remote in self.fks:
            wanted = sorted({values[local][k] for k in ok} - {None})
            found: set = set()
            for part in _batched(wanted, LOOKUP_BATCH):
                found.update(self.conn.execute(select(remote).where(remote.in_(part))).scalars())
            if remote.table is self.table and self.key == [remote.name]:
                # A table referring to itself: rows accepted earlier in this file count too.
                found.update(key[0] for key in self.seen)
            for k in ok:
                v = values[local][k]
                if v is not None and v not in found:
                    flag(k, f"orphan foreign key: {local} not in {remote.table.name}")

    def _check_keys(self, ok: list[int], values, lines, flag) -> tuple[list[int], list[int], list[int]]:
        """Split valid rows into new, changed and unchanged; reject repeated keys."""
        if not self.key:
            return ok, [], []
        accepted: dict[tuple, int] = {}
        for k in ok:
            key = tuple(values[c][k] for c in self.key)
            first = self.seen.get(key)
            if first is not None:
                flag(k, f"duplicate key in file: {', '.join(self.key)} (first at line {first})")
                continue
            self.seen[key] = lines[k]
            accepted[key] = k
        stored = self._stored_rows(list(accepted))
        new, changed, unchanged = [], [], []
        for key, k in accepted.items():
            row = stored.get(key)
            if row is None:
                new.append(k)
            elif all(row[c] == values[c][k] for c in self.columns):
                unchanged.append(k)
            else:
                changed.append(k)
        return new, changed, unchanged

    def _stored_rows(self, keys: list[tuple]) -> dict[tuple, Any]:
        cols = [self.table.c[c] for c in self.columns]
        key_cols = [self.table.c[c] for c in self.key]
        out: dict[tuple, Any] = {}
        for part in _batched(keys, LOOKUP_BATCH):
            if len(key_cols) == 1:
                cond = key_cols[0].in_([k[0] for k in part])
            else:
                cond = tuple_(*key_cols).in_(part)
            for row in self.conn.execute(select(*cols).where(cond)).mappings():
                out[tuple(row[c] for c in self.key)] = row
        return out

    def analyze(self, table: Table) -> None:
        """On PostgreSQL, refresh the planner's statistics of ``table``.

        The key and foreign-key lookups are ``IN`` lists of bound parameters, which psycopg
        prepares after a few runs; with statistics from before this transaction grew the table
        (autovacuum cannot see uncommitted rows), the planner picks a sequential scan comparing
        every row with every listed key (measured: 30 s instead of 2 s for 50,000 rows). ANALYZE in a
        transaction counts the transaction's own new rows. Without the privilege it only warns.
        """
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(text(f'ANALYZE "{table.name}"'))

    def sync_sequence(self) -> None:
        """On PostgreSQL, move the table's id sequence past the largest stored id.

        Rows written with explicit ids (by an earlier file, or by another tool using ``COPY``) do
        not advance the sequence; appending rows without ids would then collide with them. Run
        before appending and after writing explicit ids. Names come from the schema, not the file.
        """
        autoinc = self.table.autoincrement_column
        if self.conn.dialect.name != "postgresql" or autoinc is None:
            return
        self.conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{self.table.name}', '{autoinc.name}'), "
            f"(SELECT max({autoinc.name}) FROM {self.table.name}))"))


def _now_utc() -> datetime:
    # Stored naive, in UTC, like the other timestamps of the app's tables.
    return datetime.now(UTC).replace(tzinfo=None)


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def _check_regular_file(path: Path) -> None:
    """Refuse anything but a regular file, saying what it is (``/dev/null`` is not "no such file")."""
    try:
        mode = os.stat(path).st_mode  # follows a symlink: what matters is what it points to
    except FileNotFoundError:
        raise LoadError(f"{path}: no such file") from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    raise LoadError(f"{path}: {kind}, not a regular file; nothing was loaded. "
                    "Hint: give a CSV or Parquet file (save a stream to a file first).")


def _load_one(engine: Engine, path: Path, table: Table, chunk_rows: int, encoding: str | None = None) -> FileReport:
    report = FileReport(path=str(path), table=table.name)
    _check_regular_file(path)
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    known = {c.name for c in table.columns}
    if is_parquet:
        sha = _parquet_sha256(path)
        report.source_format = "parquet"
    else:
        sha, encoding = _fingerprint_as(path, encoding) if encoding else _fingerprint(path)
        if encoding is None:
            raise LoadError(f"{path.name}: unreadable: not UTF-8 or GB18030 text (a binary file, "
                            f"or another encoding such as UTF-16?). {ENCODING_HINT}")
        if encoding == IMPLAUSIBLE:
            raise LoadError(f"{path.name}: the text decodes as GB18030 but does not look like Chinese text; "
                            f"it is probably in another encoding (Shift-JIS, Big5, Latin-1?). {ENCODING_HINT}")
        report.source_format = {"utf-8": "csv (utf-8)", "utf-8-sig": "csv (utf-8 with BOM)",
                                "gb18030": "csv (gb18030)"}.get(encoding, f"csv ({encoding})")

    with engine.begin() as conn:
        earlier = conn.execute(
            select(schema.load_batches.c.batch_id)
            .where(schema.load_batches.c.table_name == table.name, schema.load_batches.c.file_sha256 == sha)
            .order_by(schema.load_batches.c.batch_id).limit(1)
        ).scalar()
        if earlier is not None:
            report.batch_id, report.already_loaded = earlier, True
            return report

        if is_parquet:
            header, chunks = _read_parquet(path, known, chunk_rows)
        else:
            header, chunks = _read_csv(path, encoding, known, chunk_rows)
        missing = [c for c in required_columns(table.name) if c not in header]
        if missing:
            raise LoadError(f"{path.name}: missing required column(s) for {table.name}: {', '.join(missing)}; "
                            "nothing was loaded")
        report.ignored_columns = [h or "(unnamed)" for h in header if h not in known]
        file_columns = [c.name for c in table.columns if c.name in header]

        source = str(path.resolve())[-500:]  # load_batches.source_file is String(500): keep the name
        report.batch_id = conn.execute(schema.load_batches.insert().values(
            loaded_at=_now_utc(), table_name=table.name, source_file=source, file_sha256=sha,
            rows_read=0, rows_loaded=0, rows_rejected=0,
        )).inserted_primary_key[0]
        job = _FileLoad(conn, table, file_columns, report)
        job.sync_sequence()
        for referred in {table, *(remote.table for _, remote in job.fks)}:
            job.analyze(referred)
        for chunk in chunks:
            job.run_chunk(chunk)
            log.info("%s: %d rows read so far", path.name, report.rows_read)
        job.sync_sequence()
        conn.execute(schema.load_batches.update()
                     .where(schema.load_batches.c.batch_id == report.batch_id)
                     .values(rows_read=report.rows_read, rows_loaded=report.rows_loaded,
                             rows_rejected=report.rows_rejected))
    return report


def load_files(engine: Engine, paths: Sequence[str | Path], table_name: str, *,
               chunk_rows: int | None = None, encoding: str | None = None) -> LoadReport:
    """Validate and load CSV or Parquet files into a store table.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The store, with its schema (:func:`analytics.store.init_schema`).
    paths : sequence of str or Path
        Files to load, in order. ``.parquet``/``.pq`` are Parquet; anything else is CSV.
    table_name : str
        One of :data:`analytics.schema.STORE_TABLES`.
    chunk_rows : int, optional
        Rows read and validated at a time; defaults to the ``LOAD_CHUNK_ROWS`` setting.
    encoding : str, optional
        The CSV files' text encoding (any Python codec name: ``shift_jis``, ``big5``, ``latin-1``,
        ...). Without it, UTF-8 then GB18030 are tried and an implausible GB18030 decoding is
        refused. Parquet files ignore it.

    Returns
    -------
    LoadReport
        Per file: rows read, loaded (new/updated/unchanged) and rejected by reason.

    Raises
    ------
    LoadError
        The table is not a store table, or a file cannot be read at all or lacks a required
        column. That file loads nothing; files before it stay loaded. The message is one line.
    """
    table = _store_table(table_name)
    chunk_rows = int(chunk_rows if chunk_rows is not None else settings.get("LOAD_CHUNK_ROWS"))
    if chunk_rows < 1:
        raise LoadError(f"chunk_rows must be at least 1, not {chunk_rows}")
    if encoding:
        _text_codec(encoding)  # an unknown name fails before any file is touched
    report = LoadReport(table=table.name)
    for p in paths:
        path = Path(p)
        try:
            report.files.append(_load_one(engine, path, table, chunk_rows, encoding))
        except LoadError as exc:
            raise LoadError(_with_earlier(str(exc), report)) from None
        except SQLAlchemyError as exc:
            # The database refused something the checks let through; the transaction rolled back.
            # Only the error class is named: the driver's message may quote customer values.
            orig = type(getattr(exc, "orig", None) or exc).__name__
            raise LoadError(_with_earlier(f"{path.name}: the store refused the rows ({orig}); nothing was "
                                          "loaded from this file", report)) from None
        except OSError as exc:
            raise LoadError(_with_earlier(f"{path.name}: cannot read the file ({exc.strerror or exc})",
                                          report)) from None
    return report


def _with_earlier(message: str, report: LoadReport) -> str:
    done = [f for f in report.files if not f.already_loaded]
    if not done:
        return message
    return (f"{message} ({len(done)} earlier file(s) were loaded and kept; re-running skips them as "
            "already loaded)")


def masked_reject(raw: dict) -> dict:
    """A rejected row as ``load_rejects.row_data`` keeps it: personal fields masked like on screen
    (the steward sees which value was wrong from the reason and the masked shape; the raw value
    stays in the bank's source file, not in a second copy here)."""
    from analytics.access import FIELD_MASKERS

    out = {}
    for key, value in raw.items():
        masker = FIELD_MASKERS.get(str(key).strip().lower())
        out[key] = masker(value) if masker is not None and isinstance(value, str) else value
    return out


def prune_rejects(engine: Engine, now: datetime | None = None) -> int:
    """Delete rejected rows of imports older than ``LOAD_REJECTS_RETENTION_DAYS``; returns how many.

    The batches themselves (file, hash, counts) stay in ``load_batches`` as the import's record.
    """
    from datetime import timedelta

    from sqlalchemy import delete, select

    days = int(settings.get("LOAD_REJECTS_RETENTION_DAYS"))
    if days < 0:
        raise LoadError(f"LOAD_REJECTS_RETENTION_DAYS must not be negative, got {days}")
    cutoff = (now or _now_utc()) - timedelta(days=days)
    old = select(schema.load_batches.c.batch_id).where(schema.load_batches.c.loaded_at < cutoff)
    with engine.begin() as conn:
        return int(conn.execute(delete(schema.load_rejects).where(schema.load_rejects.c.batch_id.in_(old))).rowcount
                   or 0)


__all__ = ["BOOLEAN_WORDS", "FileReport", "LoadReport", "gb18030_plausible", "load_files", "masked_reject",
           "prune_rejects", "required_columns"]
