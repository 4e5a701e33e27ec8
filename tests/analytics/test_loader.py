"""Loading CSV/Parquet files into the store: every row is loaded or rejected with a reason, never lost.

Runs on SQLite and PostgreSQL through the ``engine`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from analytics import loader
from analytics.access import PERSONAL_FIELDS, mask_value
from analytics.errors import LoadError
from analytics.loader import load_files, required_columns
from analytics.schema import (
    contacts,
    customer_monthly,
    customers,
    holdings,
    load_batches,
    load_rejects,
)
from tests.analytics import store_rows

CUSTOMER_HEADER = ("customer_id,name,gender,birth_date,id_number,phone,branch_id,open_date,status,"
                   "marketing_consent,risk_tolerance")
GOOD = "C100,赵六,F,1949-12-31,11010519491231002X,013812345678,BR001,2020-01-15,active,是,C3"


def write(tmp_path, name: str, lines: list[str], encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return str(path)


def customer_csv(tmp_path, rows: list[str], name: str = "customers.csv", encoding: str = "utf-8") -> str:
    return write(tmp_path, name, [CUSTOMER_HEADER, *rows], encoding)


@pytest.fixture
def store(engine):
    """The engine with the tiny hand-made store (branches BR001/BR002, C000000001-3, products P01/P02)."""
    store_rows.fill(engine)
    return engine


@pytest.fixture
def sqlite_store(sqlite_engine):
    """The same store on SQLite only, for cases that fail before any row is validated."""
    store_rows.fill(sqlite_engine)
    return sqlite_engine


def rejects(engine, batch_id: int) -> dict[int, tuple[str, dict]]:
    """``{line_number: (reason, raw row)}`` of one batch."""
    with engine.connect() as conn:
        rows = conn.execute(select(load_rejects).where(load_rejects.c.batch_id == batch_id)).mappings().all()
    return {r["line_number"]: (r["reason"], json.loads(r["row_data"])) for r in rows}


def assert_nothing_lost(engine, report) -> None:
    """rows_read == loaded + rejected, and load_rejects/load_batches hold exactly those counts."""
    for f in report.files:
        assert f.rows_read == f.rows_loaded + f.rows_rejected
        if f.already_loaded:
            continue
        assert len(rejects(engine, f.batch_id)) == f.rows_rejected
        with engine.connect() as conn:
            batch = conn.execute(select(load_batches).where(load_batches.c.batch_id == f.batch_id)).mappings().one()
        assert (batch["rows_read"], batch["rows_loaded"], batch["rows_rejected"]) == (
            f.rows_read, f.rows_loaded, f.rows_rejected)


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def customer(engine, customer_id: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(customers).where(customers.c.customer_id == customer_id)).mappings().one())


# ---------------------------------------------------------------------------------------------


def test_required_columns_come_from_the_schema():
    assert required_columns("customers") == ["customer_id", "branch_id", "open_date", "status", "marketing_consent"]
    # An auto-numbered key is optional: the store numbers the rows.
    assert required_columns("holdings") == ["customer_id", "product_id", "opened_on", "balance"]
    assert required_columns("customer_monthly")[:2] == ["customer_id", "month"]


def test_identifiers_round_trip_exactly_as_text(store, tmp_path):
    path = customer_csv(tmp_path, [GOOD, "C101,钱七,M,1990/01/02,110101199001020017,0755123,BR002,2021/3/4,dormant,no,"])
    report = load_files(store, [path], "customers")
    assert_nothing_lost(store, report)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (2, 2, 0)
    row = customer(store, "C100")
    assert row["id_number"] == "11010519491231002X"
    assert row["phone"] == "013812345678"
    assert row["name"] == "赵六"
    assert row["birth_date"] == date(1949, 12, 31)
    assert row["marketing_consent"] is True
    other = customer(store, "C101")
    assert other["phone"] == "0755123"
    assert other["open_date"] == date(2021, 3, 4)
    assert other["risk_tolerance"] is None  # an empty cell is NULL


@pytest.mark.parametrize(("encoding", "detected"), [
    ("utf-8", "csv (utf-8)"),
    ("utf-8-sig", "csv (utf-8 with BOM)"),
    ("gbk", "csv (gb18030)"),
    ("gb18030", "csv (gb18030)"),
])
def test_encodings_load_with_correct_chinese_names(store, tmp_path, encoding, detected):
    path = customer_csv(tmp_path, [GOOD, "C102,欧阳娜娜,F,,,,BR001,2022-05-06,active,否,"], encoding=encoding)
    report = load_files(store, [path], "customers")
    assert_nothing_lost(store, report)
    assert report.rows_loaded == 2
    assert customer(store, "C100")["name"] == "赵六"
    assert customer(store, "C102")["name"] == "欧阳娜娜"
    assert report.files[0].source_format == detected
    # With a BOM the first column is still customer_id, not "\ufeffcustomer_id".
    assert report.files[0].ignored_columns == []


@pytest.mark.parametrize("content", [
    pytest.param(random.Random(42).randbytes(4096), id="random-bytes"),
    pytest.param(b"customer_id\n" + b"\xff\xfe\xfd\x80" * 50, id="neither-utf8-nor-gb18030"),
    pytest.param((CUSTOMER_HEADER + "\n" + GOOD + "\n").encode("utf-16"), id="utf-16"),
    pytest.param(b"", id="empty-file"),
])
def test_unreadable_file_is_a_load_error_and_loads_nothing(sqlite_store, tmp_path, content):
    path = tmp_path / "garbage.csv"
    path.write_bytes(content)
    with pytest.raises(LoadError) as info:
        load_files(sqlite_store, [str(path)], "customers")
    assert "\n" not in str(info.value)
    assert count(sqlite_store, load_batches) == 0
    assert count(sqlite_store, customers) == 3


def test_garbage_parquet_is_a_load_error(sqlite_store, tmp_path):
    path = tmp_path / "holdings.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LoadError, match="not a readable Parquet file"):
        load_files(sqlite_store, [str(path)], "holdings")


def test_missing_required_column_loads_nothing(store, tmp_path):
    path = write(tmp_path, "c.csv", ["customer_id,name,branch_id,open_date", "C100,赵六,BR001,2020-01-15"])
    with pytest.raises(LoadError, match="missing required column.*status, marketing_consent") as info:
        load_files(store, [path], "customers")
    assert "\n" not in str(info.value)
    assert count(store, customers) == 3
    assert count(store, load_batches) == 0


def test_unknown_table_is_a_load_error(sqlite_store, tmp_path):
    with pytest.raises(LoadError, match="not a store table"):
        load_files(sqlite_store, [customer_csv(tmp_path, [GOOD])], "users")


# One row per case: (row, expected reason kind, expected reason text fragment).
BAD_ROWS = [
    ("C200,甲,F,1990-02-30,,,BR001,2020-01-01,active,yes,", "bad date", "birth_date"),
    ("C201,乙,F,01/02/1990,,,BR001,2020-01-01,active,yes,", "bad date", "birth_date"),
    ("C202,丙,F,,,,BR001,2020-01-01,active,maybe,", "bad boolean", "marketing_consent"),
    ("C203,丁,X,,,,BR001,2020-01-01,active,1,", "value not allowed", "gender"),
    ("C204,戊,M,,,,BR001,2020-01-01,open,1,", "value not allowed", "status"),
    ("C205,己,M,,,,BR001,2020-01-01,active,1,C6", "value not allowed", "risk_tolerance"),
    ("C206,庚,M,,,,BR001,2020-01-01,active,,", "missing value", "marketing_consent"),
    ("C207,辛,M,,,,BR999,2020-01-01,active,0,", "orphan foreign key", "branch_id not in branches"),
    ("C208,壬,M,,,,BR001,2020-01-01,active,0", "wrong number of fields", "expected 11, got 10"),
    ("C2090000000000000000000,癸,M,,,,BR001,2020-01-01,active,0,", "too long", "customer_id (max 20)"),
    ("C210,子,M,,,,BR001,,active,0,", "missing value", "open_date"),
]


def test_bad_rows_are_rejected_with_their_reason_and_raw_row(store, tmp_path):
    rows = [GOOD] + [r for r, _, _ in BAD_ROWS]
    report = load_files(store, [customer_csv(tmp_path, rows)], "customers")
    assert_nothing_lost(store, report)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (len(rows), 1, len(BAD_ROWS))
    got = rejects(store, report.files[0].batch_id)
    header = CUSTOMER_HEADER.split(",")
    for line, (row, kind, fragment) in enumerate(BAD_ROWS, start=3):  # header = 1, GOOD = 2
        reason, raw = got[line]
        assert reason.startswith(kind + ":") and fragment in reason, (line, reason)
        # The row as read, keyed by the file's header, personal fields masked as on screen.
        want = dict(zip(header, row.split(","), strict=False))
        want = {k: (mask_value(k, v) if k in PERSONAL_FIELDS and v else v) for k, v in want.items()}
        assert list(raw.values())[:len(want)] == list(want.values())
    expected = {}
    for _, kind, _ in BAD_ROWS:
        expected[kind] = expected.get(kind, 0) + 1
    assert dict(report.rejected_by_reason) == expected
    assert count(store, customers) == 4


def test_a_row_with_several_problems_lists_them_all(store, tmp_path):
    report = load_files(store, [customer_csv(tmp_path, ["C300,甲,Q,2020-13-01,,,BR001,2020-01-01,gone,x,"])],
                        "customers")
    reason, _ = rejects(store, report.files[0].batch_id)[2]
    assert reason.split("; ")[0].startswith("value not allowed: gender")
    assert {"bad date: birth_date", "bad boolean: marketing_consent"} <= set(reason.split("; "))
    assert report.rejected_by_reason == {"value not allowed": 1}


def test_duplicate_key_within_file_keeps_the_first(store, tmp_path):
    rows = [GOOD, GOOD.replace("赵六", "赵六六"), "C101,钱七,M,,,,BR002,2021-03-04,active,no,"]
    report = load_files(store, [customer_csv(tmp_path, rows)], "customers")
    assert_nothing_lost(store, report)
    reason, raw = rejects(store, report.files[0].batch_id)[3]
    assert reason == "duplicate key in file: customer_id (first at line 2)"
    assert raw["name"] == "赵**"  # masked: the raw value stays in the bank's file, not in the store
    assert customer(store, "C100")["name"] == "赵六"
    assert report.rejected_by_reason == {"duplicate key in file": 1}


def test_an_invalid_first_row_does_not_claim_its_key(store, tmp_path):
    rows = [GOOD.replace("是", "perhaps"), GOOD]
    report = load_files(store, [customer_csv(tmp_path, rows)], "customers")
    assert (report.rows_loaded, report.rejected_by_reason) == (1, {"bad boolean": 1})


def test_duplicate_across_chunks_and_physical_line_numbers(store, tmp_path):
    lines = [CUSTOMER_HEADER,
             'C100,"赵\n六",F,,,,BR001,2020-01-15,active,1,',   # lines 2-3: a quoted newline
             "",                                                # line 4: blank, skipped
             "C101,钱七,M,,,,BR002,2021-03-04,active,no,",       # line 5
             "C102,孙八,M,,,,BR002,2021-03-04,active,no,",       # line 6
             "C100,重复,F,,,,BR001,2020-01-15,active,1,",         # line 7: in the third chunk
             "C103,周九,M,,,,BR002,2021-03-04,active,oops,"]      # line 8
    report = load_files(store, [write(tmp_path, "c.csv", lines)], "customers", chunk_rows=2)
    assert_nothing_lost(store, report)
    got = rejects(store, report.files[0].batch_id)
    assert sorted(got) == [7, 8]
    assert got[7][0] == "duplicate key in file: customer_id (first at line 2)"
    assert got[8][0] == "bad boolean: marketing_consent"
    assert customer(store, "C100")["name"] == "赵\n六"


def test_existing_key_identical_is_unchanged_and_changed_is_updated(store, tmp_path):
    same = "C000000002,李四,F,1990-01-01,310115199001010048,13900001111,BR002,2020-06-01,dormant,false,C1"
    changed = "C000000001,张三,M,1949-12-31,11010519491231002X,013812345678,BR002,2015-03-01,closed,false,C3"
    report = load_files(store, [customer_csv(tmp_path, [same, changed, GOOD])], "customers")
    assert_nothing_lost(store, report)
    f = report.files[0]
    assert (f.inserted, f.updated, f.unchanged, f.rows_rejected) == (1, 1, 1, 0)
    assert count(store, customers) == 4  # no duplicate rows
    row = customer(store, "C000000001")
    assert (row["branch_id"], row["status"], row["marketing_consent"]) == ("BR002", "closed", False)
    # A column the file lacks keeps its stored value.
    assert row["updated_at"] == datetime(2026, 1, 5, 10, 0)


def test_reloading_the_same_file_is_a_no_op(store, tmp_path):
    path = customer_csv(tmp_path, [GOOD, "C101,钱七,M,,,,BR999,2021-03-04,active,no,"])
    first = load_files(store, [path], "customers")
    batch = first.files[0].batch_id
    second = load_files(store, [path], "customers")
    assert second.files[0].already_loaded and second.files[0].batch_id == batch
    assert second.summary_lines() == [f"customers.csv: already loaded (batch {batch}) into customers; nothing to do"]
    assert "already loaded (batch" in second.summary_lines()[0]
    assert count(store, load_batches) == 1
    assert count(store, load_rejects) == 1
    assert count(store, customers) == 4


def test_the_same_bytes_under_another_name_are_also_a_no_op(store, tmp_path):
    a = customer_csv(tmp_path, [GOOD], name="a.csv")
    b = customer_csv(tmp_path, [GOOD], name="b.csv")
    report = load_files(store, [a, b], "customers")
    assert [f.already_loaded for f in report.files] == [False, True]


def test_parquet_loads_with_text_identifiers_and_rejects(store, tmp_path):
    frame = pd.DataFrame({
        "holding_id": [10, 11, 12],
        "customer_id": ["C000000003", "C000000003", "C999"],
        "product_id": ["P01", "P02", "P01"],
        "account_number": ["0012345678", "6222020200112233999", "0000"],
        "opened_on": [date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 1)],
        "closed_on": [None, date(2025, 1, 1), None],
        "balance": [1234.5, 0.0, 1.0],
        "note": ["x", "y", "z"],
    })
    path = tmp_path / "holdings.parquet"
    frame.to_parquet(path, index=False)
    report = load_files(store, [str(path)], "holdings")
    assert_nothing_lost(store, report)
    f = report.files[0]
    assert (f.source_format, f.inserted, f.rows_rejected, f.ignored_columns) == ("parquet", 2, 1, ["note"])
    reason, raw = rejects(store, f.batch_id)[4]  # third row: line 4, as if the file had a header
    assert reason == "orphan foreign key: customer_id not in customers"
    assert raw["account_number"] == "****" and raw["holding_id"] == "12"  # masked like on screen
    with store.connect() as conn:
        row = conn.execute(select(holdings).where(holdings.c.holding_id == 10)).mappings().one()
    assert (row["account_number"], row["opened_on"], row["balance"]) == ("0012345678", date(2024, 1, 31), 1234.5)


def test_holdings_without_ids_are_numbered_by_the_store(store, tmp_path):
    path = write(tmp_path, "h.csv", ["customer_id,product_id,account_number,opened_on,balance",
                                     "C000000003,P01,00991,2024-01-31,12.345",
                                     "C000000003,P77,00992,2024-01-31,1",
                                     "C000000003,P02,00993,2024-01-31,lots"])
    report = load_files(store, [path], "holdings")
    assert_nothing_lost(store, report)
    assert dict(report.rejected_by_reason) == {"orphan foreign key": 1, "bad number": 1}
    with store.connect() as conn:
        row = conn.execute(select(holdings).where(holdings.c.account_number == "00991")).mappings().one()
    assert row["holding_id"] > 3 and row["balance"] == 12.35  # rounded to the column's 2 decimals
    # After explicit ids (Parquet test) or none, more rows without ids still get fresh numbers.
    more = write(tmp_path, "h2.csv", ["customer_id,product_id,opened_on,balance", "C000000002,P02,2024-02-01,5"])
    assert load_files(store, [more], "holdings").rows_loaded == 1


def test_composite_key_dates_in_either_format_are_the_same_key(store, tmp_path):
    header = "customer_id,month,aum,deposit_balance,loan_balance,txn_count,txn_amount,digital_logins"
    path = write(tmp_path, "m.csv", [header,
                                     "C000000003,2026-11-01,1,1,0,3,10.5,2",
                                     "C000000003,2026/11/01,2,2,0,3,10.5,2",
                                     "C000000003,2026-10-01,5000,5000,0,3,100,2",   # identical to the store
                                     "C000000001,2026-10-01,999,999,0,3.0,100,2",   # changed
                                     "C000000002,2026-12-01,1,1,0,2.5,1,1",
                                     "C404,2026-12-01,1,1,0,2,1,1"])
    report = load_files(store, [path], "customer_monthly")
    assert_nothing_lost(store, report)
    f = report.files[0]
    assert (f.inserted, f.updated, f.unchanged) == (1, 1, 1)
    assert dict(f.rejected_by_reason) == {"duplicate key in file": 1, "bad integer": 1, "orphan foreign key": 1}
    assert rejects(store, f.batch_id)[3][0].startswith("duplicate key in file: customer_id, month")
    with store.connect() as conn:
        aum = conn.execute(select(customer_monthly.c.aum).where(
            customer_monthly.c.customer_id == "C000000001", customer_monthly.c.month == date(2026, 10, 1))).scalar()
    assert aum == 999


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-05 10:30", datetime(2026, 1, 5, 10, 30)),
    ("2026/01/05T10:30:15", datetime(2026, 1, 5, 10, 30, 15)),
    ("2026-01-05 10:30:15.25", datetime(2026, 1, 5, 10, 30, 15, 250000)),
    ("2026-01-05", datetime(2026, 1, 5)),
    ("2026-01-05 03:04:05.000120", datetime(2026, 1, 5, 3, 4, 5, 120)),  # as Arrow casts a timestamp
    ("05/01/2026 10:30", None),
    ("2026-01-05 25:00", None),
    ("2026-01/05", None),
])
def test_datetime_formats(value, expected):
    if expected is None:
        with pytest.raises(loader._Bad, match="bad datetime"):
            loader._parse_datetime(value)
    else:
        assert loader._parse_datetime(value) == expected


def test_contacts_load_with_datetimes_and_booleans(store, tmp_path):
    path = write(tmp_path, "contacts.csv", ["customer_id,contacted_at,channel,kind,resolved",
                                            "C000000001,2026/01/05 10:30:15,phone,complaint,YES",
                                            "C000000002,05/01/2026 10:30,app,service,no"])
    report = load_files(store, [path], "contacts")
    assert_nothing_lost(store, report)
    assert report.rejected_by_reason == {"bad datetime": 1}
    with store.connect() as conn:
        row = conn.execute(select(contacts)).mappings().one()
    assert (row["customer_id"], row["contacted_at"], row["resolved"]) == (
        "C000000001", datetime(2026, 1, 5, 10, 30, 15), True)


@pytest.mark.parametrize(("word", "value"), [(w, v) for w, v in loader.BOOLEAN_WORDS.items()] + [("TRUE", True),
                                                                                                 (" No ", False)])
def test_boolean_words(word, value):
    assert loader._parse_boolean(word.strip()) is value


def test_extra_columns_are_ignored_and_reported(store, tmp_path):
    path = write(tmp_path, "c.csv", [CUSTOMER_HEADER + ",nickname,", GOOD + ",小赵,"])
    report = load_files(store, [path], "customers")
    assert report.files[0].ignored_columns == ["nickname", "(unnamed)"]
    assert "  ignored columns (not in customers): nickname, (unnamed)" in report.summary_lines()


def test_summary_counts_by_reason(store, tmp_path):
    rows = [GOOD, BAD_ROWS[0][0], BAD_ROWS[1][0], BAD_ROWS[7][0]]
    report = load_files(store, [customer_csv(tmp_path, rows)], "customers")
    batch = report.files[0].batch_id
    assert report.summary_lines() == [
        f"customers.csv -> customers (batch {batch}, csv (utf-8)): 4 rows read, 1 loaded "
        "(1 new, 0 updated, 0 unchanged), 3 rejected",
        "  rejected 2: bad date",
        "  rejected 1: orphan foreign key",
        f"  the rejected rows are in load_rejects (batch_id = {batch})",
    ]


def test_a_failure_mid_file_leaves_the_store_as_before(store, tmp_path, monkeypatch):
    rows = [GOOD] + [f"C5{i:02d},名{i},M,,,,BR001,2020-01-01,active,1," for i in range(5)]
    path = customer_csv(tmp_path, rows)
    calls = {"n": 0}
    real = loader._FileLoad.run_chunk

    def fail_on_third_chunk(self, chunk):
        calls["n"] += 1
        if calls["n"] == 3:
            raise IntegrityError("INSERT ...", {}, Exception("refused"))
        real(self, chunk)

    monkeypatch.setattr(loader._FileLoad, "run_chunk", fail_on_third_chunk)
    with pytest.raises(LoadError, match="store refused the rows.*nothing was loaded"):
        load_files(store, [path], "customers", chunk_rows=2)
    assert count(store, customers) == 3
    assert count(store, load_batches) == 0 and count(store, load_rejects) == 0


def test_an_error_in_a_later_file_keeps_the_earlier_ones(store, tmp_path):
    good = customer_csv(tmp_path, [GOOD], name="good.csv")
    bad = write(tmp_path, "bad.csv", ["customer_id", "C1"])
    with pytest.raises(LoadError, match="1 earlier file.*kept"):
        load_files(store, [good, bad], "customers")
    assert count(store, customers) == 4
    assert load_files(store, [good], "customers").files[0].already_loaded


def test_missing_file_is_a_load_error(sqlite_store, tmp_path):
    with pytest.raises(LoadError, match="no such file"):
        load_files(sqlite_store, [str(tmp_path / "nope.csv")], "customers")


# ---------------------------------------------------------------------------------------------
# Encodings other than UTF-8 and GB18030 (issue 12): each of these samples decodes as GB18030
# without an error, to nonsense; it must be refused unless its encoding is named.
# ---------------------------------------------------------------------------------------------

BRANCH_HEADER = "branch_id,name,city,province,opened_on"
ENCODED_SAMPLES = {
    "shift_jis": ["BR101,新宿支店,東京都,東京都,2019-01-01", "BR102,梅田支店,大阪市,大阪府,2020-02-02",
                  "BR103,横浜中央支店,横浜市,神奈川県,2021-03-03"],
    "big5": ["BR101,信義分行,臺北市,臺灣省,2019-01-01", "BR102,前鎮分行,高雄市,臺灣省,2020-02-02",
             "BR103,西屯分行,臺中市,臺灣省,2021-03-03"],
    "latin-1": ["BR101,Agence Besançon,Besançon,Doubs,2019-01-01",
                "BR102,Filiale Zürich,Zürich,Zürich,2020-02-02",
                "BR103,Sucursal Coruña,A Coruña,Galicia,2021-03-03"],
}


def _sample(tmp_path, encoding: str) -> str:
    return write(tmp_path, f"branches-{encoding}.csv", [BRANCH_HEADER, *ENCODED_SAMPLES[encoding]], encoding)


@pytest.mark.parametrize("encoding", sorted(ENCODED_SAMPLES))
def test_an_implausible_gb18030_decoding_is_refused_and_asks_for_the_encoding(sqlite_store, tmp_path, encoding):
    path = _sample(tmp_path, encoding)
    raw = open(path, "rb").read()
    raw.decode("gb18030")  # the trap: it decodes without error
    with pytest.raises(LoadError, match="--encoding") as info:
        load_files(sqlite_store, [path], "branches")
    assert "\n" not in str(info.value)
    assert count(sqlite_store, load_batches) == 0


@pytest.mark.parametrize("encoding", sorted(ENCODED_SAMPLES))
def test_a_named_encoding_loads_the_text_right(store, tmp_path, encoding):
    report = load_files(store, [_sample(tmp_path, encoding)], "branches", encoding=encoding)
    assert report.rows_loaded == 3 and report.rows_rejected == 0
    assert report.files[0].source_format.startswith("csv (")
    with store.connect() as conn:
        names = dict(conn.execute(text("SELECT branch_id, name FROM branches WHERE branch_id LIKE 'BR10%'")).all())
    assert names == {r.split(",")[0]: r.split(",")[1] for r in ENCODED_SAMPLES[encoding]}


def test_real_gb18030_with_rare_name_characters_is_still_detected(sqlite_store, tmp_path):
    path = customer_csv(tmp_path, [GOOD, "C102,王喆,M,,,,BR001,2022-05-06,active,否,",
                                   "C103,李堃,M,,,,BR002,2022-05-06,active,否,"], encoding="gb18030")
    report = load_files(sqlite_store, [path], "customers")
    assert report.rows_loaded == 3 and report.files[0].source_format == "csv (gb18030)"
    assert customer(sqlite_store, "C102")["name"] == "王喆"


def test_gb18030_plausibility():
    assert loader.gb18030_plausible("北京市朝阳区建国路88号，赵六，王喆")
    assert loader.gb18030_plausible("plain ascii")
    for encoding, rows in ENCODED_SAMPLES.items():
        assert not loader.gb18030_plausible("\n".join(rows).encode(encoding).decode("gb18030")), encoding


def test_unknown_or_wrong_encodings_are_one_line_errors(sqlite_store, tmp_path):
    path = _sample(tmp_path, "shift_jis")
    with pytest.raises(LoadError, match="Unknown encoding 'klingon'"):
        load_files(sqlite_store, [path], "branches", encoding="klingon")
    with pytest.raises(LoadError, match="not a text encoding"):
        load_files(sqlite_store, [path], "branches", encoding="base64")
    with pytest.raises(LoadError, match="not valid ascii text"):
        load_files(sqlite_store, [path], "branches", encoding="ascii")
    assert count(sqlite_store, load_batches) == 0


# ---------------------------------------------------------------------------------------------
# Wide headers and files that are not regular files (issue 12)
# ---------------------------------------------------------------------------------------------

def test_a_header_wider_than_the_limit_is_refused_at_once(sqlite_store, tmp_path, monkeypatch):
    monkeypatch.delenv("LOAD_MAX_COLUMNS", raising=False)
    header = ",".join(["branch_id", "name", "city", "province"] + [f"x{i}" for i in range(997)])
    path = write(tmp_path, "wide.csv", [header, "BR1,n,c,p" + ",v" * 997])
    with pytest.raises(LoadError, match=r"1,001 columns, more than LOAD_MAX_COLUMNS \(1,000\)"):
        load_files(sqlite_store, [path], "branches")
    monkeypatch.setenv("LOAD_MAX_COLUMNS", "1001")
    assert load_files(sqlite_store, [path], "branches").rows_loaded == 1


def test_the_header_check_is_linear(sqlite_store, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("LOAD_MAX_COLUMNS", "1000000")
    names = [f"c{i}" for i in range(100_000)] + ["c5", "C7 "]
    path = write(tmp_path, "very-wide.csv", [",".join(names)])
    start = time.perf_counter()
    with pytest.raises(LoadError, match="c5, c7 appear more than once") as info:
        load_files(sqlite_store, [path], "branches")
    assert time.perf_counter() - start < 5  # a list.count per name took minutes
    assert len(str(info.value)) < 300


def test_a_header_with_many_duplicates_names_only_the_first_ten(sqlite_store, tmp_path):
    names = [f"d{i}" for i in range(30)] * 2
    path = write(tmp_path, "dupes.csv", [",".join(names)])
    with pytest.raises(LoadError, match="and 20 more"):
        load_files(sqlite_store, [path], "branches")


def test_dev_null_is_named_a_device_not_a_missing_file(sqlite_store):
    with pytest.raises(LoadError, match="/dev/null: a character device, not a regular file"):
        load_files(sqlite_store, ["/dev/null"], "branches")


def test_a_directory_and_a_pipe_are_named_as_such(sqlite_store, tmp_path):
    import os

    with pytest.raises(LoadError, match="a directory, not a regular file"):
        load_files(sqlite_store, [str(tmp_path)], "branches")
    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match="a named pipe, not a regular file"):  # and does not block on it
        load_files(sqlite_store, [str(fifo)], "branches")
    with pytest.raises(LoadError, match="no such file"):
        load_files(sqlite_store, [str(tmp_path / "absent.csv")], "branches")
