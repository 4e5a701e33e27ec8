"""Exports of what a user sees: CSV and Excel, safe against spreadsheet formula injection.

The page masks a frame for the role (:func:`analytics.access.mask_frame`) before it gets here;
this module only serialises. A cell that a spreadsheet would run as a formula -- text starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP "CSV injection") -- is neutralised by a
leading apostrophe, which spreadsheets show as text. Numbers stay numbers: only text cells change,
so a negative balance is still ``-12.5`` and still sums.

Every export is capped (``EXPORT_MAX_ROWS``) and returns its SHA-256, which the caller writes to the
audit log with the row count.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import pandas as pd

from analytics import settings
from analytics.errors import AnalyticsError

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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


def neutralise_cell(value):
    """Prefix text that a spreadsheet would evaluate with an apostrophe; leave anything else alone."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot run as formulas; numeric columns untouched."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) \
                or pd.api.types.is_datetime64_any_dtype(s):
            continue
        out[col] = s.astype(object).map(neutralise_cell)
    # Column names are cells too.
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def _check_size(frame: pd.DataFrame, max_rows: int | None) -> None:
    limit = int(max_rows if max_rows is not None else settings.get("EXPORT_MAX_ROWS"))
    if len(frame) > limit:
        raise ExportTooLarge(f"The export has {len(frame):,} rows, over the limit of {limit:,}. "
                             "Narrow the filters and export again.")


def to_csv(frame: pd.DataFrame, stem: str, *, max_rows: int | None = None) -> Export:
    """CSV in UTF-8 with a BOM (so Excel opens Chinese text correctly)."""
    _check_size(frame, max_rows)
    data = neutralise_formulas(frame).to_csv(index=False).encode("utf-8-sig")
    return Export(data, f"{stem}.csv", "text/csv", len(frame), hashlib.sha256(data).hexdigest())


def to_excel(frame: pd.DataFrame, stem: str, *, max_rows: int | None = None) -> Export:
    """An .xlsx workbook with one sheet; numbers are written as numbers."""
    _check_size(frame, max_rows)
    buf = io.BytesIO()
    safe = neutralise_formulas(frame)
    # openpyxl would still treat a string starting with "=" as a formula; neutralise_formulas has
    # prefixed every such cell, so nothing here is evaluated on opening.
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        safe.to_excel(writer, index=False, sheet_name="export")
    data = buf.getvalue()
    return Export(data, f"{stem}.xlsx",
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                  len(frame), hashlib.sha256(data).hexdigest())
