"""Injection: hostile text typed into every text input, and hostile names and addresses imported.

Typed payloads (:data:`CORPUS`: SQL injection classics, LIKE wildcards, 10,000-character strings,
control characters with NUL, the RTL override U+202E, zero-width characters, emoji, Chinese,
Markdown and HTML) go into every free-text input at the analytics level, on SQLite and on
PostgreSQL: the Customer 360 lookup (customer id, resident ID, mobile; name plus branch), the
audit search (user, customer id), the login name, the ``users`` commands, tag expressions and the
segment/list filters. What each must return comes from an oracle (exact comparison in Python over
the rows read back), so a payload never matches a row it should not, ``%`` and ``_`` are ordinary
characters, and the tables are intact afterwards. An input refused is refused with one line
(an :class:`~analytics.errors.AnalyticsError`), never a driver's error (which quotes the SQL and its
parameters), and no payload reaches a log line.

Imported payloads: a customers file whose names, addresses and relationship managers start with
formula triggers (``=``, ``+``, ``-``, ``@``, tab, CR) or hold HTML/Markdown is loaded with
``load``; the values are stored as text exactly as written, every CSV and Excel export of them is
neutralised (a leading apostrophe, numbers still numbers), and pages show them inert.

A few payloads go through the real pages (AppTest). The fast part runs in ``make test``; the full
sweep (every payload, more generated ones, every page input) is ``reliability_long``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sys

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import text

from analytics import approvals, audit, customer360, exports, tags, users
from analytics import segment_explorer as sx
from analytics.access import Viewer
from analytics.errors import AnalyticsError, UnstorableTextError
from analytics.loader import load_files
from analytics.runs import current_run_id
from analytics.schema import branches
from analytics.store import bulk_insert, make_engine, read_frame
from tests import totp
from tests.analytics import store_rows
from tests.app.conftest import APP, PASSWORD, login
from tests.app.test_markdown_payloads import ESCAPED, markdown_texts
from tests.conftest import copy_store

# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

SQL = (
    "' OR '1'='1", "' OR 1=1 --", '"; DROP TABLE customers; --', "'; DELETE FROM audit_log; --",
    "K000000001' OR '1'='1", "1) OR (1=1", "' UNION SELECT name, id_number FROM customers --",
    "admin'--", "%' OR name LIKE '%", "'; SELECT pg_sleep(5); --", "\\'; DROP TABLE users; --",
    "$1", ":customer_id", "%(customer_id)s", "?",
)
WILDCARDS = ("%", "_", "%%", "__", "K%", "%1", "K00000000_", "K_00000001", "11010519491231002_",
             "139%", "欧阳%", "欧阳测_", "\\%", "\\_", "\\", "[C]%", "*", ".*")
LONG = ("x" * 10_000, "K000000001" + "x" * 9_990, "%" * 10_000, "张" * 10_000)
CONTROL = ("\x00", "K000000001\x00", "\x00' OR '1'='1", "张\x00三", "\r\n", "K000000001\r\n' OR 1=1", "\t",
           "\x1b[31mred", "\x07\x08\x7f", "\x1f\x0b\x0c")
UNICODE = ("\u202eK000000001", "K000000001\u200b", "\u200b", "\ufeffK000000001", "\u202e10001000\u202c",
           "😀", "👨\u200d👩\u200d👧", "张三", "王五", "Ｋ０００００００００１", "ｃ000000001", "c000000001")
MARKUP = ("**bold**", "[x](javascript:alert(1))", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
          "`code`", "$x^2$", ":red[x]", "# heading", "=1+1", "@SUM(A1)")
CORPUS = SQL + WILDCARDS + LONG + CONTROL + UNICODE + MARKUP
# A shorter set for the fast run: one or more of each kind.
FAST = ("' OR '1'='1", '"; DROP TABLE customers; --', "%", "K00000000_", "x" * 10_000, "K000000001\x00",
        "\u202eK000000001")

# Payloads distinctive enough that seeing one in a log line means it was logged.
def _distinctive(p: str) -> bool:
    return len(p) >= 6 and not p.isalnum()


# Imported: names, addresses and relationship managers that a spreadsheet or Markdown would act on.
IMPORTED = ("=1+1", "+SUM(A1:A9)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", '=HYPERLINK("http://evil.example","x")',
            " =1+1", "\u200b=cmd|' /C calc'!A0", "＝1+1", "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>", "**bold**", "[link](javascript:alert(1))")
IMPORTED_IDS = dict(zip(IMPORTED, (f"P{100 + i:09d}" for i in range(len(IMPORTED))), strict=True))
# Two customers with values worked out by hand for the known-answer cases (no demo customer has them).
KNOWN_NAME = "欧阳测试"
KNOWN = (("K000000001", KNOWN_NAME, "11010519491231002X", "13900001111"),
         ("K000000002", KNOWN_NAME, "310115199001010048", "13900002222"))
# What a page shows of a stored value must never render as a link, emphasis, an image or HTML.
ACTIVE = re.compile(r"<script|<img|\*\*bold|\]\(javascript:|<b>")


def import_payloads(engine, folder, branch: str) -> None:
    """``load`` a customers file: the two known customers and one customer per :data:`IMPORTED`
    value (its name, address and relationship manager), all at ``branch``."""
    path = folder / "payload-customers.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "name", "id_type", "id_number", "phone", "branch_id", "open_date", "status",
                    "marketing_consent", "address", "relationship_manager"])
        for cid, name, id_number, phone in KNOWN:
            w.writerow([cid, name, "resident_id", id_number, phone, branch, "2020-01-01", "active", "true",
                        "北京市东城区建国路1号", "RM01"])
        for value, cid in IMPORTED_IDS.items():
            w.writerow([cid, value, "resident_id", "", "", branch, "2020-01-01", "active", "true",
                        f"{value} 北京市东城区", value])
    report = load_files(engine, [str(path)], "customers")
    assert (report.rows_loaded, report.rows_rejected) == (len(KNOWN) + len(IMPORTED), 0)
    rows = stored(engine)
    for _, name, id_number, phone in KNOWN:  # the known answers below rely on these being unique
        assert (rows["name"] == name).sum() == 2 and (rows["id_number"] == id_number).sum() == 1
        assert (rows["phone"] == phone).sum() == 1


COMPLIANCE = Viewer("inj_compliance", ("compliance",))
RISK = Viewer("inj_risk", ("risk",))


def counts(engine) -> dict:
    """Row counts of the tables a payload could damage."""
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()  # noqa: S608 - fixed names
                for t in ("customers", "holdings", "customer_monthly", "users", "branches", "customer_segments")}


def stored(engine) -> pd.DataFrame:
    return read_frame(engine, "SELECT customer_id, name, id_number, phone, branch_id, address, "
                              "relationship_manager FROM customers ORDER BY customer_id")


# ---------------------------------------------------------------------------------------------
# Oracles: what an exact, literal search must return, computed in Python
# ---------------------------------------------------------------------------------------------

def expect_find(rows: pd.DataFrame, kind: str, value: str) -> list[str]:
    key = customer360.normalise_key(value)
    column = customer360.LOOKUP_KEYS[kind]
    if not key or len(key) > 32:
        return []
    return sorted(rows.loc[rows[column] == key, "customer_id"])


def expect_candidates(rows: pd.DataFrame, name: str, branch: str) -> list[str]:
    name, branch = name.strip(), customer360.normalise_key(branch)
    if not name or not branch:
        return []
    return sorted(rows.loc[(rows["name"] == name) & (rows["branch_id"] == branch), "customer_id"])


def outcome(call):
    """("rows", sorted ids) or ("refused", the AnalyticsError); anything else propagates."""
    try:
        frame = call()
    except AnalyticsError as exc:
        return "refused", exc
    return "rows", sorted(frame["customer_id"]) if "customer_id" in frame else sorted(frame["seq"])


def check_refusal(payload: str, exc: Exception) -> None:
    """A refused payload: NUL only, one line, the store's message, no SQL, no echo."""
    assert isinstance(exc, UnstorableTextError), (repr(payload[:40]), type(exc), exc)
    assert "\x00" in payload
    message = str(exc)
    assert "\n" not in message and "SELECT" not in message and "psycopg" not in message
    assert payload.strip("\x00") == "" or payload.strip("\x00") not in message


def sweep_lookups(engine, payloads, branch: str) -> int:
    """Every lookup input with every payload, against the oracle; returns the calls made."""
    rows = stored(engine)
    calls = 0
    for p in payloads:
        for kind in customer360.LOOKUP_KEYS:
            got = outcome(lambda kind=kind, p=p: customer360.find(engine, kind, p, viewer=COMPLIANCE))
            calls += 1
            if got[0] == "refused":
                check_refusal(p, got[1])
            else:
                assert got[1] == expect_find(rows, kind, p), (kind, repr(p[:40]))
        for name, at in ((p, branch), (KNOWN_NAME, p), (p, p)):
            got = outcome(lambda name=name, at=at: customer360.candidates(engine, name, at, viewer=COMPLIANCE))
            calls += 1
            if got[0] == "refused":
                check_refusal(p, got[1])
            else:
                assert got[1] == expect_candidates(rows, name, at), (repr(name[:40]), repr(at[:40]))
    return calls


def _names(frame: pd.DataFrame, value: str) -> pd.Series:
    """The audit search's rule, in Python: the target is ``value``, or the target or the parameters
    hold it as a JSON string."""
    quoted = json.dumps(value, ensure_ascii=False)
    return frame.apply(lambda r: r["target"] == value or quoted in str(r["target"] or "")
                       or quoted in str(r["parameters"] or ""), axis=1)


def sweep_audit_search(engine, payloads) -> int:
    everything = read_frame(engine, "SELECT seq, username, target, parameters FROM audit_log")
    calls = 0
    for p in payloads:
        got = outcome(lambda p=p: audit.query(engine, user=p, limit=audit.MAX_QUERY_ROWS))
        calls += 1
        if got[0] == "refused":
            check_refusal(p, got[1])
        else:
            assert got[1] == sorted(everything.loc[everything["username"] == p, "seq"]), repr(p[:40])
        got = outcome(lambda p=p: audit.query(engine, customer_id=p, limit=audit.MAX_QUERY_ROWS))
        calls += 1
        if got[0] == "refused":
            check_refusal(p, got[1])
        else:
            assert got[1] == sorted(everything.loc[_names(everything, p), "seq"]), repr(p[:40])
    return calls


def sweep_login(engine, payloads) -> int:
    before = read_frame(engine, "SELECT username, failed_attempts FROM users ORDER BY username")
    existing = set(before["username"])
    for p in payloads:
        for name in (p, f"user_marketing{p}"):
            if name.strip().lower() in existing:  # "user_marketing\r\n" is user_marketing: not a payload
                continue
            result = users.authenticate(engine, name, PASSWORD)  # even the right password
            assert not result.ok and result.username.startswith("unknown:"), repr(name[:40])
            if _distinctive(p):
                assert p not in result.username and p not in result.message
    # Nobody was locked out or counted as failing by a payload.
    pd.testing.assert_frame_equal(read_frame(engine, "SELECT username, failed_attempts FROM users ORDER BY username"),
                                  before)
    return 2 * len(payloads)


def sweep_tags_and_filters(engine, payloads) -> int:
    run_id = current_run_id(engine)
    names = list(tags.read_tag_frame(engine, run_id).columns)
    everyone = f"{names[0]} or not {names[0]}"
    in_run = read_frame(engine, "SELECT customer_id FROM customer_segments WHERE run_id = :run_id", {"run_id": run_id})
    rows = stored(engine)
    rows = rows[rows["customer_id"].isin(in_run["customer_id"])]  # customers loaded after the run are not in it
    with engine.connect() as conn:
        cities = dict(conn.execute(text("SELECT branch_id, city FROM branches")).all())
    calls = 0
    for p in payloads:
        # A tag expression: refused by the parser (nothing reaches SQL), in one line.
        for expression in (p, f"{names[0]} and {p}", f"{names[0]} or ({p})"):
            with pytest.raises(tags.TagRuleError) as caught:
                sx.tag_selection_counts(engine, run_id, sx.Filters(), expression, names, as_of_year=2026, viewer=RISK)
            assert "\n" not in str(caught.value) and "SELECT" not in str(caught.value)
            calls += 1
        # The filters: a payload is a value to compare with, never part of the SQL.
        for filters, column in ((sx.Filters(branches=(p,)), "branch_id"), (sx.Filters(cities=(p,)), "city"),
                                (sx.Filters(tiers=(p,)), None)):
            try:
                got = sx.tag_selection_counts(engine, run_id, filters, everyone, names, as_of_year=2026, viewer=RISK)
            except UnstorableTextError as exc:
                check_refusal(p, exc)
            else:
                if column == "branch_id":
                    expected = int((rows["branch_id"] == p).sum())
                elif column == "city":
                    expected = int(rows["branch_id"].map(cities).eq(p).sum())
                else:
                    expected = 0  # the tiers are words like "high"; no payload is one
                assert got["selected"] == expected, (filters, got)
            calls += 1
    return calls


def sweep_all(engine, payloads, branch: str, *, runs: bool = True) -> dict[str, int]:
    """Every analytics-level text input with ``payloads``: the calls made per input. ``runs``: the
    store has a published refresh, so tag expressions and filters are swept too."""
    before = counts(engine)
    made = {"lookup": sweep_lookups(engine, payloads, branch), "audit search": sweep_audit_search(engine, payloads),
            "login name": sweep_login(engine, payloads)}
    if runs:
        made["tags and filters"] = sweep_tags_and_filters(engine, payloads)
    assert counts(engine) == before, "a payload changed a table"
    assert audit.verify(engine).ok
    return made


def no_payload_logged(records, payloads) -> list[str]:
    lines = [r.getMessage() for r in records]
    return [p for p in payloads if _distinctive(p) and any(p in line for line in lines)]


# ---------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def payload_store(demo_store_url, tmp_path_factory):
    """A copy of the session's demo store (refreshed) with the known and the payload customers
    loaded at its first branch, one user per role for the page tests, and an audit entry naming
    K000000001 for the audit search. Returns (url, branch)."""
    folder = tmp_path_factory.mktemp("injection")
    url = copy_store(demo_store_url, folder / "bank.db")
    engine = make_engine(url)
    with engine.connect() as conn:
        branch = conn.execute(text("SELECT MIN(branch_id) FROM branches")).scalar()
    import_payloads(engine, folder, branch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(users, "BCRYPT_ROUNDS", 4)
        for role in ("marketing", "compliance", "risk"):
            users.add_user(engine, f"user_{role}", PASSWORD, [role])
        totp.enrol(engine, "user_compliance")
    audit.append(engine, "filter", username="inj_compliance", roles=("compliance",),
                 target={"page": "customer_360", "customer_ids": ["K000000001"]})
    engine.dispose()
    return url, branch


@pytest.fixture
def store(payload_store):
    engine = make_engine(payload_store[0])
    yield engine
    engine.dispose()


@pytest.fixture
def branch(payload_store):
    return payload_store[1]


# ---------------------------------------------------------------------------------------------
# Known answers first: the searches on cases worked out by hand
# ---------------------------------------------------------------------------------------------

FIND_CASES = [  # (kind, typed, expected ids)
    ("customer_id", "K000000001", ["K000000001"]),
    ("customer_id", " K000000001\t", ["K000000001"]),   # spaces dropped, nothing else
    ("customer_id", "k000000001", []),                  # exact: case matters
    ("customer_id", "K00000000_", []),                  # "_" is a character, not a wildcard
    ("customer_id", "K%", []),
    ("customer_id", "%", []),
    ("customer_id", "K000000001' OR '1'='1", []),
    ("customer_id", "K000000001\u200b", []),            # a zero-width space is not a space
    ("customer_id", "\u202eK000000001", []),
    ("id_number", "11010519491231002X", ["K000000001"]),
    ("id_number", "11010519491231002_", []),
    ("id_number", "%002X", []),
    ("mobile", "139 0000 1111", ["K000000001"]),
    ("mobile", "1390000%", []),
    ("mobile", "1390000____", []),
]


def test_lookup_known_answers(store):
    rows = stored(store)
    for kind, typed, expected in FIND_CASES:
        assert sorted(customer360.find(store, kind, typed, viewer=COMPLIANCE)["customer_id"]) == expected, (kind, typed)
        assert expect_find(rows, kind, typed) == expected  # the oracle the sweeps use agrees


def test_candidates_known_answers(store, branch):
    cases = [
        (KNOWN_NAME, branch, ["K000000001", "K000000002"]),
        (f" {KNOWN_NAME} ", f" {branch}", ["K000000001", "K000000002"]),
        ("欧阳%", branch, []), ("欧阳测_", branch, []), (KNOWN_NAME, branch[:-1] + "_", []), (KNOWN_NAME, "%", []),
        ("' OR '1'='1", branch, []), (f"{KNOWN_NAME}' OR '1'='1", branch, []),
        ("**bold**", branch, [IMPORTED_IDS["**bold**"]]),  # an imported name is found, exactly
        ("<script>alert(1)</script>", branch, [IMPORTED_IDS["<script>alert(1)</script>"]]),
    ]
    for name, at, expected in cases:
        assert sorted(customer360.candidates(store, name, at, viewer=COMPLIANCE)["customer_id"]) == expected, name


def test_audit_search_known_answers(store):
    named = audit.query(store, customer_id="K000000001")
    assert len(named) >= 1 and (named["username"] == "inj_compliance").any()
    for literal in ("K00000000_", "K0000000%", "%", "_", "%0001", "\"K000000001\"", "K000000001\u200b"):
        assert audit.query(store, customer_id=literal).empty, literal
    assert audit.query(store, user="inj_compliance").shape[0] >= 1
    assert audit.query(store, user="inj_%").empty and audit.query(store, user="' OR '1'='1").empty


def test_nul_is_refused_in_one_line_on_sqlite_too(store):
    with pytest.raises(UnstorableTextError) as caught:
        customer360.find(store, "customer_id", "K000000001\x00", viewer=COMPLIANCE)
    assert str(caught.value) == ("The text holds a NUL character (U+0000), which the store cannot hold or search "
                                 "for; type it again without it.")


# ---------------------------------------------------------------------------------------------
# The sweeps
# ---------------------------------------------------------------------------------------------

def test_typed_payloads_on_sqlite(store, branch, caplog, monkeypatch):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)  # unknown names are checked against a dummy hash of this cost
    caplog.set_level(logging.DEBUG)
    made = sweep_all(store, FAST, branch)
    assert sum(made.values()) >= 14 * len(FAST) - 2
    assert no_payload_logged(caplog.records, FAST) == []
    # No lookup wrote what was typed into the audit log.
    entries = read_frame(store, "SELECT username, target, parameters, reason FROM audit_log")
    written = " ".join(str(v) for v in entries.to_numpy().ravel())
    assert not [p for p in FAST if _distinctive(p) and p in written]


PG_FAST = ("' OR '1'='1", "K00000000_", "K000000001\x00", "x" * 10_000)


def pg_store(engine, tmp_path) -> str:
    """A PostgreSQL store with the known and the payload customers (no refresh: lookups, audit
    search and login only); returns their branch."""
    bulk_insert(engine, branches, store_rows.BRANCHES)
    import_payloads(engine, tmp_path, "BR001")
    audit.append(engine, "filter", username="inj_compliance", roles=("compliance",),
                 target={"page": "customer_360", "customer_ids": ["K000000001"]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(users, "BCRYPT_ROUNDS", 4)
        users.add_user(engine, "user_marketing", PASSWORD, ["marketing"])
    return "BR001"


@pytest.mark.postgres
def test_typed_payloads_on_postgresql(pg_engine, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    branch = pg_store(pg_engine, tmp_path)
    caplog.set_level(logging.DEBUG)
    sweep_all(pg_engine, PG_FAST, branch, runs=False)
    assert no_payload_logged(caplog.records, PG_FAST) == []
    for kind, typed, expected in FIND_CASES[::3]:  # the known answers hold on PostgreSQL too
        assert sorted(customer360.find(pg_engine, kind, typed, viewer=COMPLIANCE)["customer_id"]) == expected, typed


def test_stored_free_text_with_nul_is_refused_and_nothing_is_written(store):
    """A reason, a note or a comment the store cannot hold: one clear error, no row, the chain intact."""
    before = read_frame(store, "SELECT COUNT(*) AS n FROM audit_log")["n"].iloc[0]
    with pytest.raises(UnstorableTextError):
        audit.append(store, "filter", username="inj_compliance", roles=("compliance",), reason="note \x00 here")
    with pytest.raises(UnstorableTextError):
        approvals.request_unmask(store, "K000000001", "name", viewer=COMPLIANCE,
                                 reason="identity check for case 77 \x00")
    assert read_frame(store, "SELECT COUNT(*) AS n FROM audit_log")["n"].iloc[0] == before
    assert approvals.requests_of(store, viewer=COMPLIANCE).empty
    assert audit.verify(store).ok


def test_users_command_names_a_bad_username_in_one_line(payload_store, capsys):
    from analytics.cli import main

    url = payload_store[0]
    for name in ("' OR '1'='1", "a\x00b"):
        assert main(["users", "disable", name, "--db", url]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: A username is 2 to 64 characters") and "Traceback" not in err, err[:200]
        assert name not in err
    assert main(["users", "set-roles", "user_marketing\u200b", "--role", "admin", "--db", url]) == 1
    engine = make_engine(url)
    assert users.get_user(engine, "user_marketing").roles == ("marketing",)  # untouched
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# Imported payloads: stored as text, exported neutralised
# ---------------------------------------------------------------------------------------------

def test_imported_payloads_are_stored_exactly(store):
    rows = stored(store).set_index("customer_id")
    for value, cid in IMPORTED_IDS.items():
        assert rows.loc[cid, "name"] == value and rows.loc[cid, "relationship_manager"] == value
        assert rows.loc[cid, "address"] == f"{value} 北京市东城区"


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_exports_of_imported_payloads_are_neutralised(store):
    """The profiles of the payload customers as a page exports them (names and addresses masked,
    relationship managers in clear), with a column of negative numbers."""
    frame = pd.concat([customer360.profile(store, cid, viewer=COMPLIANCE) for cid in IMPORTED_IDS.values()],
                      ignore_index=True)
    frame["balance"] = [-12.5 - i for i in range(len(frame))]
    assert frame["relationship_manager"].tolist() == list(IMPORTED)  # in clear, as stored
    assert frame["name"].map(exports.is_formula_like).sum() == 8  # a masked name keeps its first character
    raw = [v for v in frame.to_numpy().ravel() if exports.is_formula_like(v)]
    # 8 names + the relationship managers (masked addresses keep nothing of a payload: no admin prefix)
    assert len(raw) >= 16  # the checks below have something to neutralise

    data = exports.to_csv(frame, "x").data.decode("utf-8-sig")
    cells = list(csv.reader(io.StringIO(data, newline="")))
    assert len(cells) == len(frame) + 1  # a CR or a tab in a value never split a row
    assert not [c for row in cells for c in row if exports.is_formula_like(c) and not _number(c)]
    rm = cells[0].index("relationship_manager")
    assert [r[rm] for r in cells[1:]] == [("'" + v) if exports.is_formula_like(v) else v for v in IMPORTED]
    assert [r[rm] for r in cells[1:]][:6] == ["'=1+1", "'+SUM(A1:A9)", "'-2+3", "'@SUM(A1)", "'\t=1+1", "'\r=1+1"]
    balance = cells[0].index("balance")
    assert [float(r[balance]) for r in cells[1:]] == frame["balance"].tolist()

    sheet = openpyxl.load_workbook(io.BytesIO(exports.to_excel(frame, "x").data)).active
    values = [c for row in sheet.iter_rows(min_row=2) for c in row]
    assert not [c.value for c in values if c.data_type == "f"]
    assert not [c.value for c in values if isinstance(c.value, str) and exports.is_formula_like(c.value)]
    col = list(frame.columns).index("balance")
    assert [row[col].value for row in sheet.iter_rows(min_row=2)] == frame["balance"].tolist()  # numbers


# ---------------------------------------------------------------------------------------------
# Pages (AppTest)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def new_app(monkeypatch, payload_store):
    monkeypatch.setenv("AUTH_COOKIE_KEY", "test-cookie-key-" + "k" * 32)
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "1")
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    monkeypatch.setenv("CUSTOMER_STORE_URL", payload_store[0])
    from streamlit.testing.v1 import AppTest

    return lambda: AppTest.from_file(APP, default_timeout=60)


def active(at) -> list[str]:
    return [s for s in markdown_texts(at._tree) if ACTIVE.search(ESCAPED.sub("", s))]


def submit(at, value: str) -> None:
    at.text_input[0].set_value(value)  # set_value: max_chars is the browser's limit, not the server's
    at.button[0].click()
    at.run()


PAGE_TYPED = ("' OR '1'='1", "K000000001\x00")


def test_customer_360_page_with_typed_and_imported_payloads(new_app):
    at = login(new_app(), "user_marketing")
    at.switch_page("app_pages/customer_360.py").run()
    for typed in PAGE_TYPED:
        submit(at, typed)
        assert not at.exception, (repr(typed[:30]), at.exception)
        assert not active(at), (repr(typed[:30]), active(at))
        assert not at.dataframe, repr(typed[:30])  # nothing found
        if "\x00" in typed:
            assert len(at.warning) == 1 and at.warning[0].value.startswith("The text holds a NUL character")
        else:
            assert [w.value for w in at.warning] == ["No customer matches."]
    # Imported payload customers: found, shown, and inert.
    for value in ("[link](javascript:alert(1))",):
        submit(at, IMPORTED_IDS[value])
        assert not at.exception and at.dataframe, value
        assert not active(at), (value, active(at))
        assert at.subheader[0].value.endswith(IMPORTED_IDS[value])  # the customer shown is the one asked for


@pytest.mark.reliability_long
def test_audit_log_page_with_typed_payloads(new_app):
    at = login(new_app(), "user_compliance")
    at.switch_page("app_pages/audit_log.py").run()
    assert not at.exception
    for typed in ("' OR '1'='1", "%", "inj_%", "a\x00b", "**bold**", "x" * 10_000):
        for box in (0, 1):  # the user box, the customer id box
            at.text_input[0].set_value(typed if box == 0 else "")
            at.text_input[1].set_value(typed if box == 1 else "")
            next(b for b in at.button if b.label in ("Search", "搜索")).click()
            at.run()
            assert not at.exception, (repr(typed[:30]), box, at.exception)
            assert not active(at)
            if "\x00" in typed:
                assert any("NUL character" in e.value for e in at.error)
                continue
            assert not at.error, [e.value for e in at.error]
            if box == 0:  # nobody is called like a payload
                assert at.dataframe[0].value.empty, repr(typed[:30])


@pytest.mark.reliability_long
def test_tag_expression_page_with_typed_payloads(new_app):
    at = login(new_app(), "user_risk")
    at.switch_page("app_pages/segments.py").run()
    for typed in ("' OR '1'='1", "mortgage_holder'; DROP TABLE customers; --", "x" * 10_000, "\x00",
                  "__import__('os')", "[x](javascript:alert(1))"):
        at.text_input(key="tag_expr").set_value(typed).run()
        assert not at.exception, (repr(typed[:30]), at.exception)
        assert at.error and not active(at), repr(typed[:30])


# ---------------------------------------------------------------------------------------------
# The long sweep (make reliability)
# ---------------------------------------------------------------------------------------------

PREFIXES = ("", "'", '"', "%", "_", "\\", "\x00", "\t", "\r\n", "\u202e", "\u200b", "=", "@", "-- ", "😀", "张")
BODIES = ("K000000001", "11010519491231002X", "13900001111", KNOWN_NAME, "BR001", "' OR '1'='1",
          "1; DROP TABLE customers", "x" * 10_000, "**bold**", "<script>x</script>", "%", "_")


def generated() -> tuple[str, ...]:
    """Each prefix before each body, and NUL or a quote after it (16 x 12 + 2 x 12, less repeats)."""
    out = dict.fromkeys(p + b for p in PREFIXES for b in BODIES)
    out.update(dict.fromkeys(b + s for s in ("\x00", "'") for b in BODIES))
    return tuple(out)


@pytest.mark.reliability_long
def test_full_sweep_on_sqlite(store, branch, caplog, monkeypatch):
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    caplog.set_level(logging.DEBUG)
    payloads = tuple(dict.fromkeys(CORPUS + generated()))
    made = sweep_all(store, payloads, branch)
    print(f"\ninjection sweep, SQLite: {len(payloads)} payloads; calls per input {made}", file=sys.stderr)
    assert no_payload_logged(caplog.records, payloads) == []


@pytest.mark.reliability_long
@pytest.mark.postgres
def test_full_sweep_on_postgresql(small_pg_url, tmp_path, caplog, monkeypatch):
    """On a refreshed PostgreSQL demo store (tests/reliability/conftest.py), every input."""
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", 4)
    engine = make_engine(small_pg_url)
    with engine.connect() as conn:
        branch = conn.execute(text("SELECT MIN(branch_id) FROM branches")).scalar()
    import_payloads(engine, tmp_path, branch)
    audit.append(engine, "filter", username="inj_compliance", roles=("compliance",),
                 target={"page": "customer_360", "customer_ids": ["K000000001"]})
    users.add_user(engine, "user_marketing", PASSWORD, ["marketing"])
    caplog.set_level(logging.DEBUG)
    payloads = tuple(dict.fromkeys(CORPUS + generated()))
    made = sweep_all(engine, payloads, branch)
    print(f"\ninjection sweep, PostgreSQL: {len(payloads)} payloads; calls per input {made}", file=sys.stderr)
    assert no_payload_logged(caplog.records, payloads) == []
    engine.dispose()


@pytest.mark.reliability_long
def test_customer_360_page_full_corpus(new_app, branch):
    at = login(new_app(), "user_marketing")
    at.switch_page("app_pages/customer_360.py").run()
    for typed in CORPUS:
        submit(at, typed)
        assert not at.exception, (repr(typed[:30]), at.exception)
        assert not active(at), (repr(typed[:30]), active(at))
    at.radio(key="c360_kind").set_value("name_branch").run()
    for typed in CORPUS:
        at.text_input[0].set_value(typed)
        at.text_input[1].set_value(branch)
        at.button[0].click()
        at.run()
        assert not at.exception, (repr(typed[:30]), at.exception)
        assert not active(at), (repr(typed[:30]), active(at))
    at.radio(key="c360_kind").set_value("customer_id").run()
    for cid in IMPORTED_IDS.values():  # every imported payload customer, as a role that sees their rows
        submit(at, cid)
        assert not at.exception and at.dataframe and not active(at), cid
