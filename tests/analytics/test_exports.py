"""Exports: formula injection neutralised, numbers stay numbers, row cap, hash of the bytes."""

import hashlib
import io

import openpyxl
import pandas as pd
import pytest

from analytics.exports import ExportTooLarge, neutralise_cell, to_csv, to_excel


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"),
    ("+86 138", "'+86 138"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("张**", "张**"),
    ("", ""),
    (None, None),
    (-12.5, -12.5),
    (7, 7),
])
def test_neutralise_cell(value, expected):
    assert neutralise_cell(value) == expected


FRAME = pd.DataFrame({"customer_id": ["C1", "C2"], "note": ["=cmd|' /C calc'!A0", "ok"],
                      "balance": [-12.5, 3.0], "count": [1, 2]})


def test_csv_is_safe_and_keeps_numbers():
    exp = to_csv(FRAME, "list")
    assert exp.rows == 2 and exp.file_name == "list.csv"
    assert exp.sha256 == hashlib.sha256(exp.data).hexdigest()
    back = pd.read_csv(io.BytesIO(exp.data), encoding="utf-8-sig")
    assert back["note"].tolist() == ["'=cmd|' /C calc'!A0", "ok"]
    assert back["balance"].tolist() == [-12.5, 3.0]


def test_excel_is_safe_and_keeps_numbers():
    exp = to_excel(FRAME, "list")
    ws = openpyxl.load_workbook(io.BytesIO(exp.data)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("customer_id", "note", "balance", "count")
    assert rows[1][1].startswith("'=")
    assert ws.cell(row=2, column=2).data_type == "s"  # text, not a formula
    assert rows[1][2] == -12.5 and isinstance(rows[1][2], float)


def test_row_cap():
    with pytest.raises(ExportTooLarge, match="over the limit of 1"):
        to_csv(FRAME, "x", max_rows=1)
