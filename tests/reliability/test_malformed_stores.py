"""A corpus of broken stores: the refresh names the problem in one line, or publishes a complete run.

Each case copies one small refreshed demo store, breaks it the way a bank's extract or a careless
hand can, and runs ``python -m analytics refresh`` (in this process, through the CLI's ``main``). A
case either

* **fails**: exit 1, one ``error:`` line that names the problem (a table, a column, a date), no
  traceback, no new run published, and the previous run still current and complete; or
* **publishes**: bad values the models cannot use (text or infinity in a balance) count as missing,
  and a data-quality rule counts them (``flagged_by``: more failures than the intact store's run).
  Empty holdings, contacts or consents publish with nothing to flag: a bank may have none yet.

In every case no customer's name, ID number or mobile number appears in what the command printed,
in what it logged, or in the error it stored with the failed run.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from analytics import cli
from analytics.store import make_engine
from tests.conftest import copy_store

CUSTOMERS = 300


@dataclass(frozen=True)
class Case:
    name: str
    statements: tuple[str, ...]
    fails_with: str | None = None  # a phrase of the one error line; None: the refresh publishes
    flagged_by: str | None = None  # the data-quality rule that must count the bad rows when it publishes


CASES = [
    # --- shape ---
    Case("missing table", ("DROP TABLE contacts",), "no contacts table"),
    Case("renamed column", ("ALTER TABLE customer_monthly RENAME COLUMN aum TO aum_cny",),
         "customer_monthly.aum"),
    Case("dropped column", ("ALTER TABLE branches DROP COLUMN region_code",), "branches.region_code"),
    Case("no customers", ("PRAGMA foreign_keys=OFF", "DELETE FROM customers"), "no customers"),
    Case("empty activity table", ("DELETE FROM customer_monthly",), "customer_monthly is empty"),
    Case("empty holdings", ("DELETE FROM holdings",)),
    Case("empty contacts", ("DELETE FROM contacts",)),
    Case("empty consents", ("DELETE FROM consents",)),
    # --- types and nulls (SQLite keeps what it is given) ---
    Case("text in a balance", ("UPDATE customer_monthly SET aum = 'n/a' WHERE rowid % 7 = 0",),
         flagged_by="monthly_aum_plausible"),
    Case("text in a date", ("UPDATE customer_monthly SET month = 'last month' WHERE rowid % 50 = 0",),
         "customer_monthly.month holds text that is not a date"),
    Case("all-null column", ("UPDATE customers SET birth_date = NULL",), flagged_by="customer_birth_date_present"),
    Case("18-digit ID stored as a number",
         ("UPDATE customers SET id_number = CAST(110101199001011234 AS INTEGER) WHERE rowid % 9 = 0",),
         flagged_by="customer_id_number_valid"),
    Case("non-UTF-8 names", ("UPDATE customers SET name = CAST(x'fffe41' AS TEXT) WHERE rowid % 9 = 0",),
         "holds text that is not valid UTF-8"),
    # --- keys and references ---
    Case("orphan holdings", ("PRAGMA foreign_keys=OFF",
                             "UPDATE holdings SET customer_id = 'X' || customer_id WHERE rowid % 5 = 0"),
         flagged_by="holding_customer_exists"),
    Case("duplicate customers under new keys",
         ("INSERT INTO customers SELECT * FROM customers WHERE rowid % 20 = 0",),  # rewritten below
         flagged_by="customer_id_number_unique"),
    Case("status outside its list", ("PRAGMA ignore_check_constraints=ON",
                                     "UPDATE customers SET status = 'ACTIVE' WHERE rowid % 9 = 0"),
         flagged_by="customer_status_code"),
    # --- values ---
    Case("infinite balances", ("UPDATE customer_monthly SET aum = 9e999 WHERE rowid % 11 = 0",
                               "UPDATE customer_monthly SET deposit_balance = -9e999 WHERE rowid % 13 = 0"),
         flagged_by="monthly_deposit_plausible"),
    Case("negative balances", ("UPDATE customer_monthly SET aum = -5000000 WHERE rowid % 11 = 0",
                               "UPDATE holdings SET balance = -1 WHERE rowid % 3 = 0"),
         flagged_by="holding_balance_not_negative"),
    Case("huge balances", ("UPDATE customer_monthly SET aum = 1e20 WHERE rowid % 11 = 0",),
         flagged_by="monthly_aum_plausible"),
    Case("birth dates in 1900 and opening dates in the future",
         ("UPDATE customers SET birth_date = '1900-01-01' WHERE rowid % 3 = 0",
          "UPDATE customers SET open_date = '2099-01-01' WHERE rowid % 4 = 0"),
         flagged_by="customer_open_date_not_future"),
    Case("activity after the current month", ("UPDATE customer_monthly SET month = '2099-01-01' WHERE rowid % 50 = 0",),
         "after the current month"),
]

# SQLite's primary key refuses a duplicate key outright, so the duplicate case copies customers under
# new keys: the same person twice, which is what a real extract's duplicates look like.
DUPLICATES = ("INSERT INTO customers SELECT 'D' || substr(customer_id, 2), "
              + "{rest} FROM customers WHERE rowid % 20 = 0")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    from analytics import demo
    from analytics.refresh import run_refresh
    from analytics.store import init_schema

    url = f"sqlite:///{tmp_path_factory.mktemp('malformed') / 'base.db'}"
    engine = make_engine(url)
    init_schema(engine)
    demo.generate(engine, customers=CUSTOMERS, months=24, seed=11, progress=False)
    run_refresh(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def personal_values(base_url) -> list[str]:
    engine = make_engine(base_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, id_number, phone, email, address FROM customers")).all()
    engine.dispose()
    return sorted({str(v) for row in rows for v in row if v and len(str(v)) >= 2})


def _statements(case: Case, url: str) -> tuple[str, ...]:
    if case.name != "duplicate customers under new keys":
        return case.statements
    engine = make_engine(url)
    with engine.connect() as conn:
        columns = [row[1] for row in conn.execute(text("PRAGMA table_info(customers)"))]
    engine.dispose()
    return (DUPLICATES.format(rest=", ".join(c for c in columns if c != "customer_id")),)


def _failed(url: str, run_id: int, rule: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        failed = conn.execute(text("SELECT failed FROM dq_rule_results WHERE run_id = :r AND rule = :n"),
                              {"r": run_id, "n": rule}).scalar()
    engine.dispose()
    return failed or 0


def _state(url: str) -> tuple:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT run_id FROM current_run WHERE id = 1")).scalar()
            rows = conn.execute(text("SELECT COUNT(*) FROM customer_segments WHERE run_id = :r"), {"r": current}).scalar()
            scores = conn.execute(text("SELECT COUNT(*) FROM dq_rule_results WHERE run_id = :r"), {"r": current}).scalar()
            runs = conn.execute(text("SELECT run_id, status, error FROM refresh_runs ORDER BY run_id")).all()
    finally:
        engine.dispose()
    return current, rows, scores, runs


# `make test` runs every case that fails before a stage runs (cheap) and three that publish; the
# rest publish too, each a whole refresh, and run with `make reliability`.
QUICK = {"missing table", "renamed column", "dropped column", "no customers", "empty activity table",
         "text in a date", "activity after the current month", "orphan holdings", "infinite balances",
         "non-UTF-8 names"}
PARAMS = [pytest.param(c, id=c.name, marks=() if c.name in QUICK else pytest.mark.reliability_long)
          for c in CASES]


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS)
def test_broken_store_gives_one_clear_line_or_a_complete_run(case, base_url, personal_values, tmp_path,
                                                             capsys, caplog):
    url = copy_store(base_url, tmp_path / "broken.db")
    before = _state(url)
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    for statement in _statements(case, url):
        con.execute(statement)
    con.commit()
    con.close()

    caplog.set_level(logging.INFO)
    capsys.readouterr()
    code = cli.main(["refresh", "--quiet", "--db", url])
    out, err = capsys.readouterr()
    said = out + err + caplog.text

    assert "Traceback" not in said
    after = _state(url)
    if case.fails_with:
        assert code == 1, said
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and case.fails_with in errors[0], err
        assert after[:3] == before[:3], "the previous run must stay current and complete"
        assert all(status != "succeeded" for _, status, _ in after[3][len(before[3]):])
    else:
        assert code == 0, said
        current, rows, scores, runs = after
        assert current == runs[-1][0] and runs[-1][1] == "succeeded"
        assert rows > 0 and scores > 0
        if case.flagged_by:  # more failures than the intact store's run had
            assert _failed(url, current, case.flagged_by) > _failed(url, before[0], case.flagged_by), \
                f"{case.flagged_by} did not count the bad rows"
    stored_errors = " ".join(str(e) for _, _, e in after[3] if e)
    leaked = [v for v in personal_values if v in said or v in stored_errors]
    assert not leaked, f"{len(leaked)} personal values in the output, log or stored error"


def test_unreadable_files_and_an_unreachable_server_give_one_line(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.db"
    sqlite3.connect(corrupt).execute("CREATE TABLE t (x)").connection.commit()
    with open(corrupt, "r+b") as f:  # the header survives, the pages after it do not
        f.seek(100)
        f.write(b"\x00" * 4000)
    not_a_store = tmp_path / "notes.db"
    not_a_store.write_text("minutes of the meeting\n" * 200)
    unreachable = "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/bank"
    for url in (f"sqlite:///{corrupt}", f"sqlite:///{not_a_store}", unreachable):
        code = cli.main(["refresh", "--quiet", "--db", url])
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 1 and len(errors) == 1, err
        assert "Traceback" not in err and "s3cret-pw" not in err
        assert any(p in errors[0] for p in ("the store failed", "Cannot read store", "Cannot create the schema")), errors[0]
