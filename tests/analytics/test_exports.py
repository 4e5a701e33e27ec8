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


# ---------------------------------------------------------------------------------------------
# OWASP formula neutralisation: leading whitespace, control and invisible characters are skipped
# before looking for a trigger, and every CSV field is quoted.
# ---------------------------------------------------------------------------------------------

TRIGGERS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
LEADERS = ("", " ", "  ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\x00", "\x1f", "\x85", "\u00a0",
           "\u2000", "\u2003", "\u2007", "\u202f", "\u205f", "\u3000", "\u200b", "\u200c", "\u200d",
           "\u2060", "\ufeff", "\u180e", "\u2028", "\u2029", "\u3164", " \u200b\t", "\r\u3000\ufeff")
BODIES = ("1+1", "cmd|' /C calc'!A0", "HYPERLINK(\"http://evil.example\",\"x\")", "SUM(A1:A9)")
PAYLOADS = [lead + trig + body for lead in LEADERS for trig in TRIGGERS for body in BODIES[:1]] + [
    "=" + b for b in BODIES] + ["\r=1+1", "\t=1+1", " =1+1", "\u200b=1+1", "\uff1d1+1", "\n@SUM(A1)",
                                 "\x01-2+3", "\u3000\uff0bcmd"]
HARMLESS = ["张**", "ok", "a=b", "1-2", "email z***@example.com", " hello", "", "'=already", "\u3000张",
            "x@y", "(=1)", "#=1"]


def _stripped(cell: str) -> str:
    from analytics.exports import first_visible

    first = first_visible(cell)
    return cell[cell.index(first):] if first else ""


def test_there_are_at_least_thirty_payloads():
    assert len(set(PAYLOADS)) >= 30


@pytest.mark.parametrize("payload", PAYLOADS, ids=[repr(p) for p in PAYLOADS])
def test_every_payload_is_neutralised(payload):
    out = neutralise_cell(payload)
    assert out == "'" + payload
    assert _stripped(out)[:1] not in TRIGGERS


@pytest.mark.parametrize("value", HARMLESS)
def test_harmless_text_is_left_alone(value):
    assert neutralise_cell(value) == value


def _payload_frame():
    cells = PAYLOADS + HARMLESS
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(len(cells))], "note": cells,
                         "balance": [-1.5] * len(cells)}), cells


def test_csv_round_trip_through_the_csv_module_keeps_rows_and_neutralises():
    import csv

    frame, cells = _payload_frame()
    exp = to_csv(frame, "payloads")
    text = exp.data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == len(cells) + 1  # no payload split a row
    assert rows[0] == ["customer_id", "note", "balance"]
    for (_cid, note, balance), original in zip(rows[1:], cells, strict=True):
        assert note == neutralise_cell(original)
        assert _stripped(note)[:1] not in TRIGGERS
        assert balance == "-1.5"
    # every field quoted (QUOTE_ALL), numbers too
    assert text.startswith('"customer_id","note","balance"')
    assert '"C0",' in text and ',"-1.5"' in text


def test_excel_round_trip_through_openpyxl_neutralises():
    frame, cells = _payload_frame()
    exp = to_excel(frame, "payloads")
    ws = openpyxl.load_workbook(io.BytesIO(exp.data)).active
    rows = list(ws.iter_rows(values_only=True))
    assert len(rows) == len(cells) + 1
    for r, (_, note, balance) in enumerate(rows[1:], start=2):
        assert ws.cell(row=r, column=2).data_type in ("s", "inlineStr")  # text, never "f"
        assert _stripped(note or "")[:1] not in TRIGGERS
        assert balance == -1.5


def test_column_names_are_neutralised_too():
    exp = to_csv(pd.DataFrame({"\r=1+1": ["x"]}), "cols")
    assert exp.data.decode("utf-8-sig").startswith("\"'\r=1+1\"")
