"""Exports of what a user sees: CSV and Excel, safe against spreadsheet formula injection.

The page masks a frame for the role (:func:`analytics.access.mask_frame`) before it gets here;
this module only serialises. Every CSV and Excel export goes through :func:`neutralise_formulas`
(one rule, OWASP "CSV injection"): a text cell whose first visible character is a formula trigger
(``=``, ``+``, ``-``, ``@`` or their full-width forms ``＝ ＋ － ＠``) gets a leading apostrophe, which
spreadsheets show as text. "First visible" matters: spreadsheets skip leading spaces of every kind,
tabs, CR/LF, other control characters and zero-width characters before deciding that a cell is a
formula, so ``"\r=1+1"`` or ``"\u200b=1+1"`` is as dangerous as ``"=1+1"``. A cell starting with a
tab or a carriage return is prefixed too (OWASP lists both). Numbers stay numbers: only text cells
change, so a negative balance is still ``-12.5`` and still sums.

The CSV quotes every field (``QUOTE_ALL``): a value holding a CR, LF or separator can never split a
row, whatever the reader's idea of a line end.

Every export is capped (``EXPORT_MAX_ROWS``) and returns its SHA-256, which the caller writes to the
audit log with the row count.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass

import pandas as pd

from analytics import settings
from analytics.errors import AnalyticsError

FORMULA_TRIGGERS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
# OWASP also names these two as first characters to neutralise, whatever follows them.
LEADING_CONTROL = ("\t", "\r")
# Invisible characters that are neither whitespace nor a control/format character by category,
# yet render as nothing (Hangul fillers, braille blank); a spreadsheet may skip them too.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# openpyxl refuses these (not allowed in XML); they are replaced so the workbook can be written.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ExportTooLarge(AnalyticsError):
    """The export exceeds the row limit; narrow the filters."""


@dataclass(frozen=True)
class Export:
    """A serialised export: its bytes, file name, MIME type, row count and SHA-256."""

    data: bytes
    file_name: str
    mime: str
    rows: int
    sha256: str


def _skippable(ch: str) -> bool:
    # Whitespace of every kind (incl. NBSP, ideographic space, line/paragraph separators),
    # control characters (Cc) and format characters (Cf: zero-width space/joiners, BOM, ...).
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") or ch in _INVISIBLE


def first_visible(value: str) -> str:
    """The first character of ``value`` that is not whitespace, control or invisible ("" if none)."""
    for ch in value:
        if not _skippable(ch):
            return ch
    return ""


def is_formula_like(value) -> bool:
    """True if a spreadsheet could take the text ``value`` for a formula."""
    return isinstance(value, str) and (value.startswith(LEADING_CONTROL) or first_visible(value) in FORMULA_TRIGGERS)


def neutralise_cell(value):
    """Prefix text that a spreadsheet would evaluate with an apostrophe; leave anything else alone."""
    if is_formula_like(value):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot run as formulas; numeric columns untouched."""
    out = frame.copy()
    for i in range(out.shape[1]):  # by position: two columns may share a name
        s = out.iloc[:, i]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) \
                or pd.api.types.is_datetime64_any_dtype(s):
            continue
        out.isetitem(i, s.astype(object).map(neutralise_cell))
    # Column names are cells too.
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def _check_size(frame: pd.DataFrame, max_rows: int | None) -> None:
    limit = int(max_rows if max_rows is not None else settings.get("EXPORT_MAX_ROWS"))
    if len(frame) > limit:
        raise ExportTooLarge(f"The export has {len(frame):,} rows, over the limit of {limit:,}. "
                             "Narrow the filters and export again.", key="errors.export_too_large",
                             rows=f"{len(frame):,}", limit=f"{limit:,}")


def to_csv(frame: pd.DataFrame, stem: str, *, max_rows: int | None = None) -> Export:
    """CSV in UTF-8 with a BOM (so Excel opens Chinese text correctly)."""
    _check_size(frame, max_rows)
    data = neutralise_formulas(frame).to_csv(index=False, quoting=csv.QUOTE_ALL).encode("utf-8-sig")
    return Export(data, f"{stem}.csv", "text/csv", len(frame), hashlib.sha256(data).hexdigest())


def to_excel(frame: pd.DataFrame, stem: str, *, max_rows: int | None = None) -> Export:
    """An .xlsx workbook with one sheet; numbers are written as numbers."""
    _check_size(frame, max_rows)
    buf = io.BytesIO()
    safe = neutralise_formulas(frame)
    # openpyxl would still treat a string starting with "=" as a formula; neutralise_formulas has
    # prefixed every such cell, so nothing here is evaluated on opening. XML cannot hold most
    # control characters at all: they become U+FFFD rather than failing the whole export.
    for i in range(safe.shape[1]):
        col = safe.iloc[:, i]
        if pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
            safe.isetitem(i, col.map(lambda v: _XML_ILLEGAL.sub("\ufffd", v) if isinstance(v, str) else v))
    safe.columns = [_XML_ILLEGAL.sub("\ufffd", str(c)) for c in safe.columns]
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        safe.to_excel(writer, index=False, sheet_name="export")
    data = buf.getvalue()
    return Export(data, f"{stem}.xlsx",
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  len(frame), hashlib.sha256(data).hexdigest())
