"""Data-quality rules, scores, history and drill-down on a tiny hand-made store.

Every rule kind is checked against failures counted by hand from the rows below, on SQLite and
PostgreSQL (the ``engine`` fixture), so the SQL pushdown is exercised on both dialects. The
as-of date is 2026-10-31 (the store's only activity month is October 2026).
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest
import yaml
from sqlalchemy import select, text

from analytics import quality
from analytics.access import Scope, Viewer, mask_phone
from analytics.errors import ConfigError, StoreNotInitialisedError
from analytics.quality import (
    QualityError,
    compute_scores,
    evaluate,
    failing_records,
    fix_list,
    load_rules,
    months_before,
    parse_rule,
    parse_rules,
    rule_breakdown,
    rule_results,
    score_change,
    score_history,
    scores,
)
from analytics.quality.evaluation import _failed_expr
from analytics.refresh import run_refresh
from analytics.runs import get_run_metrics
from analytics.schema import branches, customer_monthly, customers, holdings, products
from analytics.store import bulk_insert, read_frame
from analytics.validators import luhn_check_digit, resident_id_check_digit

AS_OF = date(2026, 10, 31)

COMPLIANCE = Viewer("steward", ("compliance",))  # bank-wide, masked


def rid(region: str, birth: str, seq: str) -> str:
    """A valid resident ID: the sequence's last digit odd for a man, even for a woman."""
    body = region + birth + seq
    return body + resident_id_check_digit(body)


ID_01 = rid("110101", "19800101", "001")  # male
BAD_ID = rid("110101", "19900101", "001")
BAD_ID = BAD_ID[:17] + ("0" if BAD_ID[17] != "0" else "1")  # wrong check character
CARD = "622202020011223344" + luhn_check_digit("622202020011223344")
BAD_CARD = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)

_C = ["customer_id", "name", "gender", "birth_date", "id_type", "id_number", "id_expiry_date", "phone",
      "email", "branch_id", "onboarding_channel", "credit_grade", "updated_at", "risk_assessed_at"]
CUSTOMER_ROWS = [
    # C01: clean.
    ("C01", "Zhang San", "M", date(1980, 1, 1), "resident_id", ID_01, date(2030, 1, 1), "13800000001",
     "zs@example.cn", "BR1", "branch", "AA", datetime(2026, 9, 1, 10), date(2026, 5, 1)),
    # C02: bad phone (internal hyphens), bad e-mail, ID expired 2026-10-15, stale record, old assessment.
    ("C02", "李四", "F", date(1990, 2, 2), "resident_id", rid("110101", "19900202", "002"), date(2026, 10, 15),
     "138-0000-0002", "bad@", "BR1", "mobile_app", "A", datetime(2023, 1, 1), date(2025, 1, 1)),
    # C03: no name, blank phone, birth date one day off the ID's, ID expiring 2026-11-15, no channel.
    ("C03", None, "M", date(1985, 5, 5), "resident_id", rid("310115", "19850506", "011"), date(2026, 11, 15),
     "  ", None, "BR2", None, None, None, None),
    # C04: gender F but the ID's sex digit is odd; credit grade ZZ; empty e-mail; updated on the as-of
    # day; assessed exactly 365 days before the as-of date (still current).
    ("C04", "王五", "F", date(1970, 3, 3), "resident_id", rid("440305", "19700303", "013"), None,
     "13900000004", "", "BR2", "partner", "ZZ", datetime(2026, 10, 31, 23), date(2025, 10, 31)),
    # C05: same ID number as C01; updated exactly at the freshness cut-off (still fresh).
    ("C05", "赵六", "M", date(1980, 1, 1), "resident_id", ID_01, date(2031, 1, 1), "13700000005",
     None, "BR1", "online", "B", datetime(2024, 10, 31), date(2026, 1, 1)),
    # C06: C01 typed again: other spacing and case, +86 phone, a passport instead of the ID.
    ("C06", " zhang  SAN ", "M", date(1980, 1, 1), "passport", "E12345678", date(2029, 1, 1), "+86 13800000001",
     None, "BR1", "branch", None, datetime(2026, 1, 1), None),
    # C07: a phone number typed in the name field.
    ("C07", "13912345678", "F", date(1950, 1, 1), "passport", "P000001", date(2028, 1, 1), "13900000007",
     None, "BR2", "branch", "AAA", datetime(2026, 1, 1), None),
    # C08: birth date in the future; ID with a wrong check character; ID expiring 2026-11-30.
    ("C08", "孙七", "M", date(2027, 1, 1), "resident_id", BAD_ID, date(2026, 11, 30), "13900000008",
     None, "BR2", "payroll", None, datetime(2026, 1, 1), None),
]
HOLDING_ROWS = [
    # holding_id, customer_id, account_number, opened_on, closed_on, balance
    (1, "C01", CARD, date(2020, 1, 1), None, 100.0),
    (2, "C02", CARD, date(2021, 1, 1), date(2020, 12, 31), -5.0),  # same card; closed before opened; negative
    (3, "C03", None, date(2022, 1, 1), date(2023, 1, 1), 0.0),
]
# Holding 4 (added by add_orphan): customer C99 does not exist; its card has a bad Luhn digit.


def fill(engine) -> None:
    bulk_insert(engine, branches, pd.DataFrame([
        {"branch_id": "BR1", "name": "一支行", "city": "北京市", "province": "北京市"},
        {"branch_id": "BR2", "name": "二支行", "city": "上海市", "province": "上海市"},
    ]))
    df = pd.DataFrame(CUSTOMER_ROWS, columns=_C).astype(object)
    df["open_date"] = date(2020, 1, 1)
    df["status"] = "active"
    df["marketing_consent"] = True
    bulk_insert(engine, customers, df)
    bulk_insert(engine, products, pd.DataFrame([{"product_id": "P1", "name": "借记卡", "category": "card",
                                                  "risk_level": "R1", "annual_margin": 0.01,
                                                  "balance_side": "asset"}]))
    h = pd.DataFrame(HOLDING_ROWS, columns=["holding_id", "customer_id", "account_number", "opened_on",
                                            "closed_on", "balance"]).astype(object)
    h["product_id"] = "P1"
    bulk_insert(engine, holdings, h)
    bulk_insert(engine, customer_monthly, pd.DataFrame([
        {"customer_id": "C01", "month": date(2026, 10, 1), "aum": 1.0, "deposit_balance": 1.0,
         "loan_balance": 0.0, "txn_count": 1, "txn_amount": 1.0, "digital_logins": 0}]))


def add_orphan(engine) -> None:
    row = {"holding_id": 4, "customer_id": "C99", "product_id": "P1", "account_number": BAD_CARD,
           "opened_on": date(2022, 1, 1), "closed_on": None, "balance": 10.0}
    if engine.dialect.name == "sqlite":
        # PRAGMA foreign_keys cannot change inside a transaction, so use a raw autocommit connection.
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.execute("INSERT INTO holdings (holding_id, customer_id, product_id, account_number, opened_on,"
                        " closed_on, balance) VALUES (4, 'C99', 'P1', ?, '2022-01-01', NULL, 10.0)", (BAD_CARD,))
            raw.commit()
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            # Triggers (which enforce FKs on PostgreSQL) are skipped in replica mode; superuser only.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(holdings.insert(), [row])


# (rule, checked, failing keys): every failure counted by hand from the rows above.
CASES = [
    ({"kind": "not_null", "column": "name"}, 8, ["C03"]),
    ({"kind": "not_null", "column": "phone"}, 8, ["C03"]),  # "  " is blank
    ({"kind": "not_null", "column": "email"}, 8, ["C03", "C04", "C05", "C06", "C07", "C08"]),  # "" is blank
    ({"kind": "not_null", "column": "email", "where": {"branch_id": "BR1"}}, 4, ["C05", "C06"]),
    ({"kind": "format", "column": "phone", "validator": "cn_mobile"}, 7, ["C02"]),
    ({"kind": "format", "column": "email", "validator": "email"}, 2, ["C02"]),
    ({"kind": "format", "column": "id_number", "validator": "resident_id", "where": {"id_type": "resident_id"}},
     6, ["C08"]),
    ({"kind": "format", "column": "name", "pattern": "[^0-9@]+"}, 7, ["C07"]),
    ({"kind": "allowed_values", "column": "credit_grade", "values": ["AAA", "AA", "A", "BBB", "BB", "B", "CCC"]},
     5, ["C04"]),
    ({"kind": "allowed_values", "column": "onboarding_channel", "values": ["branch", "online"]},
     7, ["C02", "C04", "C08"]),
    ({"kind": "range", "column": "birth_date", "min": "1900-01-01", "max": "as_of"}, 8, ["C08"]),
    ({"kind": "range", "column": "birth_date", "min": date(1975, 1, 1)}, 8, ["C04", "C07"]),
    ({"kind": "range", "column": "updated_at", "max": date(2026, 10, 30)}, 7, ["C04"]),  # 23:00 on the 31st
    ({"kind": "id_consistency", "column": "id_number", "field": "birth_date", "where": {"id_type": "resident_id"}},
     5, ["C03"]),  # C08's ID is invalid: not checked
    ({"kind": "id_consistency", "column": "id_number", "field": "gender", "where": {"id_type": "resident_id"}},
     5, ["C04"]),
    ({"kind": "foreign_key", "column": "branch_id", "references": "branches.branch_id"}, 8, []),
    ({"kind": "unique", "columns": ["id_type", "id_number"]}, 8, ["C05"]),
    ({"kind": "unique", "columns": ["birth_date"]}, 8, ["C05", "C06"]),  # three born 1980-01-01: two surplus
    ({"kind": "likely_duplicate", "columns": ["name", "birth_date", "phone"],
      "normalise": {"name": "text", "birth_date": "date", "phone": "phone"}}, 7, ["C06"]),
    ({"kind": "freshness", "column": "updated_at", "months": 24}, 7, ["C02"]),  # C05 exactly at the cut-off
    ({"kind": "freshness", "column": "risk_assessed_at", "days": 365}, 4, ["C02"]),  # C04 exactly at it
    ({"kind": "expiry", "column": "id_expiry_date", "warn_days": 0}, 7, ["C02"]),
    ({"kind": "expiry", "column": "id_expiry_date", "warn_days": 30}, 7, ["C03", "C08"]),
    # C05 has credit grade B ("B and below"): 24 months old is stale at the high-risk limit of 6.
    ({"kind": "freshness", "column": "updated_at", "months": 24, "high_risk_months": 6}, 7, ["C02", "C05"]),
]
HOLDING_CASES = [
    ({"kind": "range", "column": "balance", "min": 0}, 4, [2]),
    ({"kind": "compare", "column": "closed_on", "op": ">=", "other": "opened_on"}, 2, [2]),
    ({"kind": "foreign_key", "column": "customer_id", "references": "customers.customer_id"}, 4, [4]),
    ({"kind": "foreign_key", "column": "product_id", "references": "products.product_id"}, 4, []),
    ({"kind": "unique", "columns": ["account_number"]}, 3, [2]),
    ({"kind": "format", "column": "account_number", "validator": "bank_card"}, 3, [4]),
]


def _rule(i: int, spec: dict, table: str) -> dict:
    return {"name": f"r{i:02d}_{spec['kind']}", "table": table, "dimension": "validity", "severity": "high",
            **spec}


TEST_RULES = ([_rule(i, s, "customers") for i, (s, _, _) in enumerate(CASES)]
              + [_rule(100 + i, s, "holdings") for i, (s, _, _) in enumerate(HOLDING_CASES)])
HOLDING_RULES = {r["name"] for r in TEST_RULES if r["table"] == "holdings"}
EXPECTED = {r["name"]: (checked, sorted(fails)) for r, (_, checked, fails) in
            zip(TEST_RULES, CASES + HOLDING_CASES, strict=True)}


@pytest.fixture
def store(engine):
    fill(engine)
    add_orphan(engine)
    return engine


@pytest.fixture
def test_rules(tmp_path, monkeypatch):
    """Point the refresh at a rule file holding TEST_RULES."""
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": TEST_RULES}, allow_unicode=True), encoding="utf-8")
    # load_rules reads the default path in the module that defines it, not the package's face.
    monkeypatch.setattr(quality.rules, "DEFAULT_RULES_PATH", path)
    return path


def test_every_kind_counts_failures_as_counted_by_hand(store):
    ruleset = parse_rules({"rules": TEST_RULES})
    result = evaluate(store, ruleset, as_of=AS_OF)
    got = {r.rule: (r.checked, r.failed) for r in result.rules.itertuples()}
    want = {name: (checked, len(fails)) for name, (checked, fails) in EXPECTED.items()}
    assert got == want


def test_chunked_streaming_gives_the_same_counts(store):
    """Chunks of 2 rows: a likely duplicate whose first copy is in an earlier chunk is still found."""
    ruleset = parse_rules({"rules": TEST_RULES})
    small = evaluate(store, ruleset, as_of=AS_OF, chunk_rows=2).rules
    whole = evaluate(store, ruleset, as_of=AS_OF).rules
    pd.testing.assert_frame_equal(small, whole)


def test_drill_down_lists_exactly_the_failing_records(store, test_rules):
    run_id = run_refresh(store)
    for name, (_, fails) in EXPECTED.items():
        df = failing_records(store, run_id, name, limit=None, viewer=COMPLIANCE)
        key = "holding_id" if name in HOLDING_RULES else "customer_id"
        assert sorted(df[key].tolist()) == fails, name


def test_drill_down_shows_the_relevant_fields_and_the_duplicate_it_repeats(store, test_rules):
    run_refresh(store)
    phone = failing_records(store, None, "r04_format", viewer=COMPLIANCE)
    assert list(phone.columns) == ["customer_id", "phone"]
    assert phone.loc[0, "phone"] == mask_phone("138-0000-0002")  # raw values never leave the data layer
    dup = failing_records(store, None, "r18_likely_duplicate", viewer=COMPLIANCE)
    assert dup[["customer_id", "duplicate_of"]].values.tolist() == [["C06", "C01"]]
    assert list(dup.columns) == ["customer_id", "name", "birth_date", "phone", "duplicate_of"]
    uniq = failing_records(store, None, "r16_unique", columns=["branch_id"], viewer=COMPLIANCE)
    assert uniq[["customer_id", "duplicate_of", "branch_id"]].values.tolist() == [["C05", "C01", "BR1"]]
    consistency = failing_records(store, None, "r13_id_consistency", viewer=COMPLIANCE)
    assert list(consistency.columns) == ["customer_id", "id_number", "birth_date", "id_type"]
    assert failing_records(store, None, "r02_not_null", limit=2, viewer=COMPLIANCE)["customer_id"].tolist() == ["C03", "C04"]
    with pytest.raises(ConfigError, match="no column"):
        failing_records(store, None, "r00_not_null", columns=["name; DROP TABLE customers"], viewer=COMPLIANCE)
    with pytest.raises(QualityError):
        failing_records(store, None, "no_such_rule", viewer=COMPLIANCE)


def test_a_likely_duplicate_pass_is_kept_until_the_store_changes(store, test_rules):
    from analytics.quality import drilldown

    drilldown._DUPLICATE_PASSES.clear()
    run_refresh(store)
    first = failing_records(store, None, "r18_likely_duplicate", viewer=COMPLIANCE)
    assert len(drilldown._DUPLICATE_PASSES) == 1
    kept = next(iter(drilldown._DUPLICATE_PASSES.values()))
    assert kept == (["C06"], {"C06": "C01"})  # record keys only, no personal value
    again = failing_records(store, None, "r18_likely_duplicate", viewer=COMPLIANCE)
    pd.testing.assert_frame_equal(again, first)
    assert len(drilldown._DUPLICATE_PASSES) == 1  # the same pass, read again
    with store.begin() as conn:  # another customer with C01's name, birth date and phone
        row = conn.execute(select(customers).where(customers.c.customer_id == "C01")).mappings().one()
        conn.execute(customers.insert().values({**row, "customer_id": "C99", "id_number": None}))
    later = failing_records(store, None, "r18_likely_duplicate", viewer=COMPLIANCE)
    assert later[["customer_id", "duplicate_of"]].values.tolist() == [["C06", "C01"], ["C99", "C01"]]
    assert len(drilldown._DUPLICATE_PASSES) == 2


def test_breakdown_by_branch_and_channel(store, test_rules):
    run_refresh(store)
    email = rule_breakdown(store, rule="r02_not_null")
    assert email[["scope_value", "checked", "failed"]].values.tolist() == [["BR1", 4, 2], ["BR2", 4, 4]]
    by_channel = rule_breakdown(store, scope="channel", rule="r02_not_null")
    assert dict(zip(by_channel["scope_value"], zip(by_channel["checked"], by_channel["failed"], strict=True),
                    strict=True)) == {
        "(missing)": (1, 1), "branch": (3, 2), "mobile_app": (1, 0), "online": (1, 1), "partner": (1, 1),
        "payroll": (1, 1)}
    # Holdings rules are not broken down by branch.
    assert not rule_breakdown(store, rule="r100_range").shape[0]


def test_fix_list_names_each_failing_rule_per_customer_of_the_branch(store, test_rules):
    run_id = run_refresh(store)
    fixes = fix_list(store, run_id, "BR1", viewer=COMPLIANCE)
    want = sorted((cid, name) for name, (_, fails) in EXPECTED.items() for cid in fails
                  if cid in {"C01", "C02", "C05", "C06"} and name not in HOLDING_RULES)
    # Holding rules reach the branch through the customer: holding 2 (C02) fails three of them.
    want += [("C02", "r100_range"), ("C02", "r101_compare"), ("C02", "r104_unique")]
    got = sorted(zip(fixes["customer_id"], fixes["rule"], strict=True))
    assert got == sorted(want)
    assert set(fixes.columns) >= {"customer_id", "record_id", "rule", "dimension", "severity"}
    assert fix_list(store, run_id, "NO_SUCH_BRANCH", viewer=COMPLIANCE).empty


def test_masked_role_never_gets_raw_values(store, test_rules):
    from analytics.access import AccessDenied

    run_refresh(store)
    masked = failing_records(store, None, "r04_format", columns=["name", "id_number"],
                             viewer=Viewer("m", ("marketing",)))
    raw = read_frame(store, "SELECT customer_id, phone, name, id_number FROM customers").set_index("customer_id")
    raw = raw.loc[masked["customer_id"]].reset_index()
    assert masked["customer_id"].tolist() == raw["customer_id"].tolist()
    for col in ("phone", "name", "id_number"):
        for raw_value, shown in zip(raw[col], masked[col], strict=True):
            assert shown != raw_value
            assert raw_value not in shown
    with pytest.raises(AccessDenied):
        failing_records(store, None, "r04_format", viewer=Viewer("e", ("executive",)))
    with pytest.raises(AccessDenied):
        fix_list(store, None, "BR1", viewer=Viewer("a", ("admin",)))


def test_drill_down_follows_the_viewers_scope(store, test_rules):
    run_id = run_refresh(store)
    everyone = failing_records(store, run_id, "r02_not_null", limit=None, viewer=COMPLIANCE)
    br1 = Viewer("c1", ("compliance",), Scope(branches={"BR1"}))
    mine = failing_records(store, run_id, "r02_not_null", limit=None, viewer=br1)
    branches = read_frame(store, "SELECT customer_id, branch_id FROM customers").set_index("customer_id")["branch_id"]
    assert sorted(mine["customer_id"]) == sorted(c for c in everyone["customer_id"] if branches[c] == "BR1")
    assert 0 < len(mine) < len(everyone)
    # Holding rules reach the scope through the holding's customer.
    holdings = failing_records(store, run_id, "r100_range", limit=None, viewer=br1)
    assert set(holdings["customer_id"]) <= set(branches[branches == "BR1"].index)
    assert fix_list(store, run_id, "BR2", viewer=br1).empty
    assert failing_records(store, run_id, "r02_not_null", viewer=Viewer("c0", ("compliance",), Scope())).empty


def test_refresh_stores_rule_results_and_named_rates(store):
    """With the default rule file: per-rule results of the current run, and the named metrics."""
    run_id = run_refresh(store)
    res = rule_results(store)
    assert res["rule"].tolist() == [r.name for r in load_rules().rules]
    assert {"rule", "dimension", "checked", "passed", "failed", "pass_rate"} <= set(res.columns)
    assert (res["passed"] + res["failed"] == res["checked"]).all()
    phone = res.set_index("rule").loc["customer_phone_valid"]
    assert (phone["checked"], phone["failed"]) == (7, 1)
    expired = res.set_index("rule").loc["customer_id_not_expired"]
    assert (expired["checked"], expired["failed"]) == (7, 1)
    metrics = get_run_metrics(store, run_id)
    for name in ("dq_overall", "dq_completeness", "dq_validity", "dq_freshness", "dq_consistency",
                 "dq_uniqueness"):
        assert 0.0 <= metrics[name] <= 1.0, name
    overall = scores(store, scope="overall").set_index("dimension")["score"]
    assert metrics["dq_freshness"] == pytest.approx(overall["timeliness"])
    assert metrics["dq_as_of"] == "2026-10-31"
    assert set(scores(store)["scope"]) == {"overall", "table", "branch", "channel"}


def test_history_and_change_across_two_refreshes(store, test_rules):
    first = run_refresh(store)
    with store.begin() as conn:  # fix C02's phone: one cn_mobile failure fewer
        conn.execute(customers.update().where(customers.c.customer_id == "C02").values(phone="13800000002"))
    second = run_refresh(store)
    history = score_history(store)
    assert sorted(set(history["run_id"])) == [first, second]
    assert history["finished_at"].notna().all()
    change = score_change(store).set_index("dimension")
    assert change.attrs == {"run_id": second, "previous_run_id": first}
    # One validity dimension only: pass rate of r04 goes from 6/7 to 7/7 among 29 high-severity rules.
    assert change.loc["validity", "change"] == pytest.approx((1 - 6 / 7) / len(TEST_RULES))
    first_change = score_change(store, first)
    assert first_change["previous_score"].isna().all()


def test_history_outlives_pruned_result_rows(store, test_rules, monkeypatch):
    monkeypatch.setenv("REFRESH_KEEP_RUNS", "1")
    runs = [run_refresh(store) for _ in range(3)]
    with store.connect() as conn:
        kept = {r for (r,) in conn.execute(text("SELECT DISTINCT run_id FROM dq_scores"))}
    assert kept == {runs[-1]}
    history = score_history(store)
    assert sorted(set(history["run_id"])) == runs
    by_run = history[history["dimension"] == "overall"].set_index("run_id")["score"]
    assert by_run.nunique() == 1  # same data, same score, whether from dq_scores or the run record


def test_results_before_any_refresh_say_what_to_do(engine):
    with pytest.raises(StoreNotInitialisedError, match="refresh"):
        rule_results(engine)


# ---------------------------------------------------------------------------------------------
# Scores: pure function, hand-computed
# ---------------------------------------------------------------------------------------------


def test_scores_use_the_documented_weights():
    results = pd.DataFrame([
        # rule, table, dimension, severity, checked, failed
        ("r1", "customers", "completeness", "high", 10, 1),  # 0.9
        ("r2", "customers", "completeness", "low", 4, 2),  # 0.5
        ("r3", "holdings", "validity", "medium", 5, 0),  # 1.0
        ("r4", "customers", "timeliness", "high", 0, 0),  # nothing checked: left out
        ("r5", "customers", "uniqueness", "medium", 8, 2),  # 0.75
    ], columns=["rule", "table_name", "dimension", "severity", "checked", "failed"])
    breakdown = pd.DataFrame([
        ("r1", "branch", "BR1", 4, 1), ("r2", "branch", "BR1", 2, 2), ("r5", "branch", "BR1", 4, 0),
    ], columns=["rule", "scope", "scope_value", "checked", "failed"])
    out = compute_scores(results, breakdown).set_index(["scope", "scope_value", "dimension"])["score"]
    # completeness = (3 * 0.9 + 1 * 0.5) / (3 + 1) = 0.8
    assert out["overall", "", "completeness"] == pytest.approx(0.8)
    assert out["overall", "", "validity"] == pytest.approx(1.0)
    assert out["overall", "", "uniqueness"] == pytest.approx(0.75)
    assert ("overall", "", "timeliness") not in out.index
    # overall = (0.25 * 0.8 + 0.25 * 1.0 + 0.10 * 0.75) / (0.25 + 0.25 + 0.10) = 0.875
    assert out["overall", "", "overall"] == pytest.approx(0.875)
    # table customers: completeness 0.8, uniqueness 0.75 -> (0.25*0.8 + 0.1*0.75) / 0.35
    assert out["table", "customers", "overall"] == pytest.approx((0.2 + 0.075) / 0.35)
    assert out["table", "holdings", "overall"] == pytest.approx(1.0)
    # BR1: completeness (3 * 0.75 + 1 * 0) / 4 = 0.5625; uniqueness 1.0
    assert out["branch", "BR1", "completeness"] == pytest.approx(0.5625)
    assert out["branch", "BR1", "overall"] == pytest.approx((0.25 * 0.5625 + 0.10 * 1.0) / 0.35)
    custom = compute_scores(results, dimension_weights={**quality.DEFAULT_DIMENSION_WEIGHTS, "uniqueness": 0.35},
                            severity_weights={"high": 1, "medium": 1, "low": 1})
    custom = custom.set_index(["scope", "dimension"])["score"]
    assert custom["overall", "completeness"] == pytest.approx(0.7)
    assert custom["overall", "overall"] == pytest.approx((0.25 * 0.7 + 0.25 * 1.0 + 0.35 * 0.75) / 0.85)


def test_scores_are_rates():
    results = pd.DataFrame([("r", "customers", d, "high", 3, f) for d, f in
                            zip(quality.DIMENSIONS, [0, 1, 2, 3, 0], strict=True)],
                           columns=["rule", "table_name", "dimension", "severity", "checked", "failed"])
    out = compute_scores(results)
    assert out["score"].between(0, 1).all()
    overall = out[out["scope"] == "overall"].set_index("dimension")["score"]
    assert overall["uniqueness"] == 0.0
    assert overall["completeness"] == 1.0


# ---------------------------------------------------------------------------------------------
# The rule file and rule validation
# ---------------------------------------------------------------------------------------------


def test_default_rule_file_is_valid_and_covers_every_kind_and_dimension():
    ruleset = load_rules()
    assert {r.dimension for r in ruleset.rules} == set(quality.DIMENSIONS)
    assert {r.kind for r in ruleset.rules} == set(quality._KIND_PARAMS)
    validators_used = {r.params.get("validator") for r in ruleset.rules if r.kind == "format"}
    assert {"resident_id", "cn_mobile", "email"} <= validators_used
    assert sum(ruleset.dimension_weights.values()) == pytest.approx(1.0)
    assert ruleset.severity_weights == {"high": 3.0, "medium": 2.0, "low": 1.0}
    fresh = ruleset.get("customer_record_fresh")
    assert fresh.params == {"months": 24, "high_risk_months": 6}  # FRESHNESS_MONTHS(_HIGH_RISK) resolved
    assert ruleset.get("customer_id_expiring_soon").severity == "low"


def test_settings_feed_freshness_rules(monkeypatch):
    monkeypatch.setenv("FRESHNESS_MONTHS", "6")
    monkeypatch.setenv("RISK_ASSESSMENT_VALID_DAYS", "90")
    monkeypatch.setenv("FRESHNESS_MONTHS_HIGH_RISK", "3")
    ruleset = load_rules()
    assert ruleset.get("customer_record_fresh").params == {"months": 6, "high_risk_months": 3}
    assert ruleset.get("customer_risk_assessment_current").params == {"days": 90}


BASE = {"name": "r", "table": "customers", "dimension": "validity", "severity": "high"}


@pytest.mark.parametrize("spec, message", [
    ({"kind": "not_null", "column": "nope"}, "has no column 'nope'"),
    ({"kind": "not_null", "column": "name\"; DROP TABLE customers; --"}, "has no column"),
    ({"kind": "not_null", "column": "name", "table": "users"}, "unknown table 'users'"),
    ({"kind": "not_null", "column": "name", "dimension": "beauty"}, "dimension must be"),
    ({"kind": "not_null", "column": "name", "severity": "urgent"}, "severity must be"),
    ({"kind": "telepathy", "column": "name"}, "unknown kind"),
    ({"kind": "not_null"}, "missing column"),
    ({"kind": "not_null", "column": "name", "colour": "red"}, "unknown key"),
    ({"kind": "format", "column": "name"}, "exactly one of pattern or validator"),
    ({"kind": "format", "column": "name", "validator": "astrology"}, "unknown validator"),
    ({"kind": "format", "column": "name", "pattern": "(["}, "invalid regular expression"),
    ({"kind": "allowed_values", "column": "gender", "values": []}, "non-empty list"),
    ({"kind": "range", "column": "birth_date"}, "min, max or both"),
    ({"kind": "range", "column": "birth_date", "min": "yesterday"}, "not a date"),
    ({"kind": "range", "column": "txn_count", "table": "customer_monthly", "min": "0"}, "not a number"),
    ({"kind": "compare", "column": "open_date", "op": "~", "other": "birth_date"}, "op must be"),
    ({"kind": "foreign_key", "column": "branch_id", "references": "branches"}, "table.column"),
    ({"kind": "foreign_key", "column": "branch_id", "references": "branches.city"}, "not a unique column"),
    ({"kind": "unique", "columns": []}, "non-empty list"),
    ({"kind": "unique", "columns": ["aum"], "table": "customer_monthly"}, "single-column primary key"),
    ({"kind": "likely_duplicate", "columns": ["name"], "normalise": {"name": "soundex"}}, "unknown normaliser"),
    ({"kind": "id_consistency", "column": "id_number", "field": "email"}, "birth_date or gender"),
    ({"kind": "freshness", "column": "updated_at"}, "exactly one of"),
    ({"kind": "freshness", "column": "updated_at", "months_setting": "NO_SUCH"}, "unknown setting"),
    ({"kind": "freshness", "column": "name", "days": 3}, "date or timestamp"),
    ({"kind": "freshness", "column": "updated_at", "days": 0}, "positive integer"),
    ({"kind": "freshness", "column": "updated_at", "days": 3, "high_risk_months": 1,
      "high_risk_months_setting": "FRESHNESS_MONTHS_HIGH_RISK"}, "not both"),
    ({"kind": "freshness", "column": "updated_at", "days": 3, "high_risk_months_setting": "NO_SUCH"},
     "unknown setting"),
    ({"kind": "freshness", "column": "opened_on", "table": "holdings", "days": 3, "high_risk_months": 1},
     "needs the customers table"),
    ({"kind": "expiry", "column": "id_expiry_date", "warn_days": -1}, "non-negative"),
    ({"kind": "not_null", "column": "name", "where": {"id_type": None}}, "non-null value"),
    ({"kind": "not_null", "column": "name", "where": {"nope": "x"}}, "has no column"),
])
def test_invalid_rules_are_refused_with_a_clear_message(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_rule({**BASE, **spec})


@pytest.mark.parametrize("doc, message", [
    ({}, "rules"),
    ({"rules": [], "extra": 1}, "unknown top-level"),
    ({"rules": [{**BASE, "kind": "not_null", "column": "name"}] * 2}, "used twice"),
    ({"rules": [], "weights": {"severity": {"high": 1}}}, "weight for each"),
    ({"rules": [], "weights": {"dimensions": {**quality.DEFAULT_DIMENSION_WEIGHTS, "validity": 0}}},
     "positive number"),
])
def test_invalid_rule_files_are_refused(doc, message):
    with pytest.raises(ConfigError, match=message):
        parse_rules(doc)


def test_missing_or_broken_rule_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(bad)


def test_values_are_bound_not_spliced(store):
    """A value that looks like SQL is just a value: it matches nothing and breaks nothing."""
    evil = "x'); DROP TABLE customers; --"
    ruleset = parse_rules({"rules": [
        {**BASE, "name": "evil_values", "kind": "allowed_values", "column": "gender", "values": ["M", "F", evil]},
        {**BASE, "name": "evil_where", "kind": "not_null", "column": "name", "where": {"id_type": evil}},
    ]})
    res = evaluate(store, ruleset, as_of=AS_OF).rules.set_index("rule")
    assert (res.loc["evil_values", "checked"], res.loc["evil_values", "failed"]) == (8, 0)
    assert res.loc["evil_where", "checked"] == 0
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one() == 8


def test_definition_round_trips():
    for rule in parse_rules({"rules": TEST_RULES}).rules:
        assert parse_rule(rule.definition()) == rule


@pytest.mark.parametrize("day, months, expected", [
    (date(2026, 10, 31), 24, date(2024, 10, 31)),
    (date(2026, 3, 31), 1, date(2026, 2, 28)),
    (date(2024, 3, 31), 1, date(2024, 2, 29)),
    (date(2026, 1, 15), 1, date(2025, 12, 15)),
    (date(2026, 1, 15), 0, date(2026, 1, 15)),
])
def test_months_before(day, months, expected):
    assert months_before(day, months) == expected


@pytest.mark.parametrize("value, expected", [
    ("张 三", "张三"), ("张\u3000三", "张三"), (" 张三 ", "张三"), ("Li  Wei ", "li wei"), ("LiWei", "liwei"),
    ("ZHANG\tSan", "zhang san"), ("   ", None), (None, None),
])
def test_name_normalisation(value, expected):
    assert quality._norm_text(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("13800000001", "13800000001"), ("+86 13800000001", "13800000001"), ("86-13800000001", "13800000001"),
    ("138-0000-0001", "13800000001"), ("010-12345678", "01012345678"), ("", None), (None, None),
])
def test_phone_normalisation(value, expected):
    assert quality._norm_phone(value) == expected


# Risk-based freshness (issue 14): as-of 2026-10-31, FRESHNESS_MONTHS 24, FRESHNESS_MONTHS_HIGH_RISK 6,
# so a high-risk record is stale when updated before 2026-04-30 (months_before), any other before
# 2024-10-31. High risk: tolerance C4-C5, or credit grade B and below (B, CCC).
HIGH_RISK_ROWS = [
    # customer_id, risk_tolerance, credit_grade, updated_at, stale?
    ("H1", "C5", "A", datetime(2026, 3, 31, 9), True),     # C5, 7 months old
    ("H2", "C2", "A", datetime(2026, 3, 31, 9), False),    # C2, 7 months old
    ("H3", "C4", "AA", datetime(2026, 4, 30, 9), False),   # C4, exactly at the high-risk cut-off
    ("H4", "C4", "AA", datetime(2026, 4, 29, 23), True),   # C4, a day before it
    ("H5", "C1", "B", datetime(2026, 3, 1, 9), True),      # grade B counts as "B and below"
    ("H6", "C3", "CCC", datetime(2026, 3, 1, 9), True),    # so does CCC
    ("H7", "C3", "BB", datetime(2025, 1, 1, 9), False),    # BB is above B: the normal 24 months
    ("H8", None, None, datetime(2024, 10, 30, 9), True),   # unknown risk: normal limit, a day past it
    ("H9", None, None, datetime(2025, 10, 30, 9), False),  # unknown risk is not high risk
]


def test_high_risk_customers_go_stale_sooner(engine):
    bulk_insert(engine, branches, pd.DataFrame([{"branch_id": "BR1", "name": "一支行", "city": "北京市",
                                                 "province": "北京市"}]))
    df = pd.DataFrame([r[:4] for r in HIGH_RISK_ROWS],
                      columns=["customer_id", "risk_tolerance", "credit_grade", "updated_at"]).astype(object)
    df["branch_id"], df["open_date"], df["status"], df["marketing_consent"] = "BR1", date(2020, 1, 1), "active", True
    bulk_insert(engine, customers, df)
    rule = parse_rule({"name": "fresh", "table": "customers", "dimension": "timeliness", "severity": "medium",
                       "kind": "freshness", "column": "updated_at", "months_setting": "FRESHNESS_MONTHS",
                       "high_risk_months_setting": "FRESHNESS_MONTHS_HIGH_RISK"})
    assert rule.params == {"months": 24, "high_risk_months": 6}
    assert parse_rule(rule.definition()) == rule
    result = evaluate(engine, [rule], as_of=AS_OF).rules.set_index("rule")
    stale = sorted(r[0] for r in HIGH_RISK_ROWS if r[4])
    assert (result.loc["fresh", "checked"], result.loc["fresh", "failed"]) == (len(HIGH_RISK_ROWS), len(stale))
    t = customers
    with engine.connect() as conn:
        failing = conn.execute(select(t.c.customer_id).where(_failed_expr(rule, t, AS_OF))
                               .order_by(t.c.customer_id)).scalars().all()
    assert failing == stale
