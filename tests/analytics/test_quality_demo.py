"""End to end: on the demo store, the data-quality rules find exactly the injected defects.

Tolerance: **exact**. The generator injects every defect at exactly ``round(rate * customers)``
rows (:func:`analytics.demo.expected_defect_counts`), keeps the defects of one field disjoint,
never touches a duplicate's source row, and keeps dates at least 30 days from every threshold;
so each rule's failure count must equal the injected count, and its rate over all customer rows
must equal ``DEFECT_RATES`` up to that rounding (at most 0.5 / customers).
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from analytics import quality
from analytics.access import Viewer
from analytics.runs import current_run_id, get_run_metrics
from analytics.schema import customers
from analytics.store import read_frame
from tests.conftest import DEMO_CUSTOMERS

demo = pytest.importorskip("analytics.demo", reason="analytics.demo (the demo generator) is not written yet")

# defect of analytics.demo.DEFECT_RATES -> the rule of data/dq_rules.yaml that must find it
DEFECT_RULES = {
    "missing_email": "customer_email_present",
    "missing_phone": "customer_phone_present",
    "missing_address": "customer_address_present",
    "missing_occupation": "customer_occupation_present",
    "invalid_id_check_digit": "customer_id_number_valid",
    "bad_phone_format": "customer_phone_valid",
    "duplicate_customer": "customer_id_number_unique",
    "stale_record": "customer_record_fresh",
    "expired_id_document": "customer_id_not_expired",
    "risk_assessment_over_a_year_old": "customer_risk_assessment_current",
    "gender_mismatch_id": "customer_gender_matches_id",
    "birth_date_mismatch_id": "customer_birth_date_matches_id",
}

# Rules the generator never breaks: structural codes, keys and fields it always fills.
CLEAN_RULES = [
    "customer_name_present", "customer_gender_present", "customer_birth_date_present",
    "customer_id_number_present", "customer_id_expiry_present", "customer_gender_code",
    "customer_onboarding_channel_code", "customer_credit_grade_code", "customer_birth_date_plausible",
    "customer_branch_exists", "holding_customer_exists", "holding_product_exists",
    "holding_closed_after_opened", "holding_account_number_unique", "customer_email_valid",
]

COMPLIANCE = Viewer("steward", ("compliance",))


@pytest.fixture(scope="module")
def results(demo_store_url):
    from analytics.store import make_engine

    engine = make_engine(demo_store_url)
    yield quality.rule_results(engine).set_index("rule")
    engine.dispose()


def test_every_defect_is_covered_by_a_rule():
    assert set(DEFECT_RULES) == set(demo.DEFECT_RATES)
    names = {r.name for r in quality.load_rules().rules}
    assert set(DEFECT_RULES.values()) <= names
    assert set(CLEAN_RULES) <= names


def _high_risk_stale_extra(engine) -> int:
    """Customers the generator kept fresh (updated within FRESHNESS_MONTHS) whom the rule still finds
    stale because they are high risk (tolerance C4-C5 or grade B/CCC) and were updated before the
    FRESHNESS_MONTHS_HIGH_RISK (6) cut-off: counted in pandas, apart from the rule's SQL."""
    people = read_frame(engine, select(customers.c.risk_tolerance, customers.c.credit_grade, customers.c.updated_at))
    updated = pd.to_datetime(people["updated_at"])
    high = people["risk_tolerance"].isin(["C4", "C5"]) | people["credit_grade"].isin(["B", "CCC"])
    # As-of 2026-10-31 (the demo's last month): cut-offs 2026-04-30 (6 months) and 2024-10-31 (24).
    return int((high & (updated < "2026-04-30") & (updated >= "2024-10-31")).sum())


@pytest.mark.parametrize("defect", sorted(demo.DEFECT_RATES))
def test_measured_defects_equal_the_injected_ones(results, demo_engine, defect):
    expected = demo.expected_defect_counts(DEMO_CUSTOMERS)[defect]
    row = results.loc[DEFECT_RULES[defect]]
    if defect == "stale_record":
        extra = _high_risk_stale_extra(demo_engine)
        assert extra > 0  # the demo holds high-risk customers updated 6-24 months ago
        assert row["failed"] == expected + extra
        return
    assert row["failed"] == expected
    # As a rate over all customer rows, it is the generator's rate up to rounding.
    assert abs(row["failed"] / DEMO_CUSTOMERS - demo.DEFECT_RATES[defect]) <= 0.5 / DEMO_CUSTOMERS


def test_likely_duplicates_are_found_despite_retyped_names(results):
    """Duplicates are typed again with stray ASCII or ideographic spaces; normalising finds them all."""
    expected = demo.expected_defect_counts(DEMO_CUSTOMERS)["duplicate_customer"]
    assert results.loc["customer_likely_duplicate", "failed"] == expected


def test_denominators_follow_the_documented_rules(results):
    n = DEMO_CUSTOMERS
    counts = demo.expected_defect_counts(n)
    assert results.loc["customer_email_present", "checked"] == n  # not-null: every row
    # Format: only the rows holding a value.
    assert results.loc["customer_phone_valid", "checked"] == n - counts["missing_phone"]
    assert results.loc["customer_email_valid", "checked"] == n - counts["missing_email"]
    # Consistency: only valid resident IDs (every demo customer holds one).
    for rule in ("customer_gender_matches_id", "customer_birth_date_matches_id"):
        assert results.loc[rule, "checked"] == n - counts["invalid_id_check_digit"]


@pytest.mark.parametrize("rule", CLEAN_RULES)
def test_rules_the_generator_never_breaks_find_nothing(results, rule):
    assert results.loc[rule, "checked"] > 0
    assert results.loc[rule, "failed"] == 0


def test_named_rates_and_breakdowns_add_up(demo_engine, results):
    run_id = current_run_id(demo_engine)
    metrics = get_run_metrics(demo_engine, run_id)
    ruleset = quality.load_rules()
    # 完整率 recomputed by hand from the stored rule results and the file's severity weights.
    comp = results[(results["dimension"] == "completeness") & (results["checked"] > 0)]
    w = comp["severity"].map(ruleset.severity_weights)
    assert metrics["dq_completeness"] == pytest.approx((w * comp["pass_rate"]).sum() / w.sum())
    for name in ("dq_overall", "dq_validity", "dq_freshness"):
        assert 0.9 < metrics[name] < 1.0  # a few percent of defects, not none and not many
    by_branch = quality.rule_breakdown(demo_engine, scope="branch")
    by_channel = quality.rule_breakdown(demo_engine, scope="channel")
    for frame in (by_branch, by_channel):
        sums = frame.groupby("rule")[["checked", "failed"]].sum()
        customer_rules = results[results["table_name"] == "customers"]
        assert sums.loc[customer_rules.index, "failed"].tolist() == customer_rules["failed"].tolist()
        assert sums.loc[customer_rules.index, "checked"].tolist() == customer_rules["checked"].tolist()


def test_drill_down_and_fix_list_match_the_counts(demo_engine, results):
    expired = quality.failing_records(demo_engine, None, "customer_id_not_expired", limit=None, viewer=COMPLIANCE)
    assert len(expired) == results.loc["customer_id_not_expired", "failed"]
    assert (expired["id_expiry_date"].astype(str) < "2026-10-31").all()
    dups = quality.failing_records(demo_engine, None, "customer_likely_duplicate", limit=None, viewer=COMPLIANCE)
    assert len(dups) == results.loc["customer_likely_duplicate", "failed"]
    assert (dups["customer_id"] > dups["duplicate_of"]).all()  # the later record is the copy

    by_branch = quality.rule_breakdown(demo_engine, scope="branch")
    branch = by_branch.groupby("scope_value")["failed"].sum().idxmax()
    fixes = quality.fix_list(demo_engine, None, branch, viewer=COMPLIANCE)
    # The demo breaks no holdings rule, so the fix list is the branch's customer-rule failures.
    assert len(fixes) == by_branch[by_branch["scope_value"] == branch]["failed"].sum()
    masked = quality.fix_list(demo_engine, None, branch, viewer=Viewer("m", ("marketing",)))
    assert masked["customer_id"].tolist() == fixes["customer_id"].tolist()
