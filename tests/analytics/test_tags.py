"""Tags: every rule of data/tags.yaml on a tiny frame counted by hand, the rule language's
semantics, rejection of anything that is not in it, and selection by tag combinations."""

import numpy as np
import pandas as pd
import pytest

from analytics.tags import (
    TagRuleError,
    evaluate_rule,
    evaluate_tags,
    load_tag_rules,
    make_rule,
    parse_rule,
    select,
    tag_counts,
    tags_file,
)

NAN = np.nan
COLUMNS = [
    "onboarding_channel", "products_mortgage", "products_credit_card", "products_wealth_management",
    "products_fund", "products_insurance", "open_products", "open_product_categories", "digital_logins_3m",
    "digital_logins_12m", "active_months_12m", "complaints_6m", "unresolved_complaints_6m", "days_to_id_expiry",
    "risk_assessment_age_days", "risk_tolerance", "aum_latest", "status", "months_since_last_txn", "aum_trend",
    "txn_count_trend", "tenure_months", "age", "marketing_consent",
]
ROWS = {
    "t1": ["payroll", 1, 1, 0, 0, 1, 3, 3, 9, 30, 12, 0, 0, 15, 100, "C4", 600_000, "active", 0, 0.1, 0, 24, 28, True],
    "t2": ["branch", 0, 0, 1, 0, 0, 1, 1, 0, 0, 10, 2, 1, 30, 400, "C2", 499_999.99, "active", 4, 0, 0, 5, 60, False],
    "t3": ["mobile_app", 0, 0, 0, 1, 0, 2, 2, 6, 20, 3, 1, 0, 31, NAN, "C5", 500_000, "active", 0, -0.3, -0.5, 6,
           59, True],
    "t4": ["online", 0, 0, 0, 0, 0, 0, 0, 5, 5, 0, 3, 0, -1, 365, None, 0, "dormant", 8, -1, -1, 7, NAN, False],
    "t5": [None, 2, 0, 1, 1, 0, 4, 3, 12, 40, 12, 0, 0, NAN, 366, "C1", 7e6, "closed", 3, 0, 0, 120, 29, True],
    "t6": ["partner", 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, "C4", 10, "active", 5, 0, 0, 0, 30, False],
}


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(ROWS, orient="index", columns=COLUMNS)
    for col in COLUMNS:
        if col in ("onboarding_channel", "risk_tolerance", "status"):
            frame[col] = frame[col].astype("str")
        elif col == "marketing_consent":
            frame[col] = frame[col].astype(bool)
        else:
            frame[col] = frame[col].astype(float)
    return frame


# Counted by hand from ROWS, one tag a line.
EXPECTED = {
    "payroll_customer": ["t1"],
    "mortgage_holder": ["t1", "t5"],
    "credit_card_holder": ["t1"],
    "wealth_investor": ["t2", "t3", "t5"],
    "insured": ["t1"],
    "single_product": ["t2", "t6"],
    "multi_product": ["t1", "t5"],
    "digital_active": ["t1", "t3", "t5"],
    "branch_only": ["t2"],
    "frequent_complainer": ["t2", "t4"],
    "unresolved_complaint": ["t2"],
    "id_expiring_30d": ["t1", "t2", "t6"],  # 15, 30 and 0 days; 31 is out, missing is out
    "id_expired": ["t4"],
    "risk_assessment_expired": ["t2", "t5"],  # 400 and 366 days; 365 is not over a year
    "aggressive_investor": ["t1", "t3", "t6"],
    "high_value": ["t1", "t3", "t5"],  # 499,999.99 is not
    "dormant_risk": ["t2", "t3", "t6"],  # t4 is dormant already, t5 closed
    "new_customer": ["t2", "t3", "t6"],
    "young_customer": ["t1", "t5"],  # t4's age is unknown
    "senior_customer": ["t2"],
    "contactable": ["t1", "t3", "t5"],
}


@pytest.fixture(scope="module")
def rules():
    return load_tag_rules()


@pytest.fixture(scope="module")
def tag_frame(rules):
    return evaluate_tags(_frame(), rules)


def test_the_rule_file_is_the_configured_one_and_every_rule_is_tested(rules):
    assert tags_file().name == "tags.yaml"
    assert [r.name for r in rules] == list(EXPECTED)
    assert all(r.label and r.label_zh for r in rules)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_rule_on_a_tiny_frame(tag_frame, name):
    assert tag_frame.index[tag_frame[name]].tolist() == EXPECTED[name]


def test_counts_per_tag(tag_frame):
    counts = tag_counts(tag_frame)
    assert counts.to_dict() == {name: len(ids) for name, ids in EXPECTED.items()}


def test_a_category_the_store_lacks_counts_as_zero():
    frame = _frame().drop(columns=["products_mortgage"])
    assert not evaluate_rule(frame, "products_mortgage > 0").any()
    assert evaluate_rule(frame, "products_mortgage == 0").all()


@pytest.mark.parametrize(("rule", "expected"), [
    ("days_to_id_expiry != 15", ["t2", "t3", "t4", "t6"]),  # missing (t5) fails != too
    ("not (days_to_id_expiry == 15)", ["t2", "t3", "t4", "t5", "t6"]),  # ... and `not` of it is true
    ("risk_tolerance not in ['C4', 'C5']", ["t2", "t5"]),  # t4's tolerance is missing
    ("risk_tolerance >= 'C4'", ["t1", "t3", "t6"]),
    ("30 > age", ["t1", "t5"]),  # literal on the left
    ("-0.5 < aum_trend <= 0", ["t2", "t3", "t5", "t6"]),  # negative literal, chained range
    ("marketing_consent and not (age >= 30 or aum_latest < 1)", ["t1", "t5"]),
    ("status in ('active',)", ["t1", "t2", "t3", "t6"]),
    ("marketing_consent == False", ["t2", "t4", "t6"]),
])
def test_rule_language_semantics(rule, expected):
    result = evaluate_rule(_frame(), rule)
    assert result.index[result].tolist() == expected


MALICIOUS = [
    ("__import__('os').system('touch /tmp/pwned')", "function calls"),
    ("open('/etc/passwd')", "function calls"),
    ("aum_latest.__class__.__bases__", "attribute access"),
    ("().__class__.__base__.__subclasses__()", "function calls"),
    ("aum_latest[0] > 1", "indexing"),
    ("aum_latest + 1 > 2", "arithmetic"),
    ("[x for x in (1, 2)]", "comprehensions"),
    ("(lambda: 1)() > 0", "function calls"),
    ("(aum_latest := 5) > 1", "assignment"),
    ("aum_latest > 1 if True else 0", "if/else"),
    ("f'{aum_latest}' == 'x'", "f-strings"),
    ("aum_latest > aum_avg_3m", "exactly one column"),
    ("1 < 2", "exactly one column"),
    ("1 < 2 < aum_latest", "column on one side"),
    ("secret_column > 1", "unknown column"),
    ("__builtins__ > 1", "unknown column"),
    ("aum_latest > None", "expected a literal"),
    ("aum_latest in [len]", "expected a literal"),
    ("aum_latest in 5", "non-empty list"),
    ("aum_latest is 5", "operator Is"),
    ("True", "the literal True"),
    ("import os", "not a valid expression"),
    ("aum_latest > 1; import os", "not a valid expression"),
    ("", "empty"),
    ("(" * 300 + "aum_latest > 1" + ")" * 300, "nested"),
    ("aum_latest > 1 and " * 100 + "age > 1", "longer than"),
]


@pytest.mark.parametrize(("expression", "message"), MALICIOUS)
def test_malicious_or_invalid_rules_are_rejected(expression, message, tmp_path):
    with pytest.raises(TagRuleError, match=message.replace("(", r"\(")):
        parse_rule(expression, name="evil")
    # The same through a rule file: nothing is executed, and the error names the tag.
    path = tmp_path / "tags.yaml"
    path.write_text("tags:\n  - name: evil\n    rule: " + repr(expression) + "\n", encoding="utf-8")
    with pytest.raises(TagRuleError, match="evil"):
        load_tag_rules(path)


@pytest.mark.parametrize(("rule", "message"), [
    ("aum_latest == 'rich'", "is a number but is compared with text"),
    ("risk_tolerance == 4", "is text but is compared with"),
    ("age", "not a true/false column"),
])
def test_type_errors_are_explained(rule, message):
    with pytest.raises(TagRuleError, match=message):
        evaluate_rule(_frame(), rule)


@pytest.mark.parametrize(("content", "message"), [
    ("tags: [", "not valid YAML"),
    ("rules: []", "top-level `tags:` list"),
    ("tags:\n  - name: a\n", "needs `name` and `rule`"),
    ("tags:\n  - {name: a, rule: age > 1}\n  - {name: a, rule: age > 2}\n", "defined twice"),
    ("tags:\n  - {name: Bad-Name, rule: age > 1}\n", "lower_snake_case"),
    ("tags:\n  - {name: a, rule: age > 1, run: rm}\n", "unknown keys"),
])
def test_bad_tag_files_are_explained(tmp_path, content, message):
    path = tmp_path / "tags.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TagRuleError, match=message):
        load_tag_rules(path)


def test_missing_tag_file(tmp_path):
    with pytest.raises(TagRuleError, match="not found"):
        load_tag_rules(tmp_path / "nope.yaml")


def test_make_rule_lists_columns():
    assert make_rule("x", "age < 30 or products_fund > 0").columns == {"age", "products_fund"}


# ---------------------------------------------------------------------------------------------
# Selecting customers by tag combinations
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("mortgage_holder", ["t1", "t5"]),
    ("mortgage_holder and digital_active", ["t1", "t5"]),
    ("high_value and not contactable", []),
    ("high_value or frequent_complainer", ["t1", "t2", "t3", "t4", "t5"]),
    ("(new_customer or young_customer) and not aggressive_investor", ["t2", "t5"]),
    ("NOT contactable AND (id_expired OR single_product)", ["t2", "t4", "t6"]),
    ("not not insured", ["t1"]),
])
def test_select_by_combination(tag_frame, expression, expected):
    assert select(tag_frame, expression).tolist() == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("no_such_tag", "unknown tag"),
    ("mortgage_holder > 0", "Compare not allowed"),
    ("mortgage_holder & insured", "arithmetic"),
    ("__import__('os')", "function calls"),
    ("", "empty"),
])
def test_select_rejects_anything_but_tag_names_and_logic(tag_frame, expression, message):
    with pytest.raises(TagRuleError, match=message):
        select(tag_frame, expression)


def test_the_tag_module_never_evaluates_text_as_code():
    import ast
    from pathlib import Path

    import analytics.tags

    tree = ast.parse(Path(analytics.tags.__file__).read_text(encoding="utf-8"))
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    builtins = {f.id for f in calls if isinstance(f, ast.Name)}
    methods = {f.attr for f in calls if isinstance(f, ast.Attribute)}
    assert not builtins & {"eval", "exec", "compile", "__import__", "getattr"}
    assert not methods & {"eval", "query"}  # pandas.eval, DataFrame.eval / .query


def test_stored_tags_read_back_and_select_on_the_demo_store(demo_engine):
    from analytics.segmentation import read_segment_summary
    from analytics.tags import read_tag_frame

    frame = read_tag_frame(demo_engine)
    summary = read_segment_summary(demo_engine, "tag")
    assert list(frame.columns) == summary["value"].tolist() == list(EXPECTED)
    assert tag_counts(frame).tolist() == summary["customers"].tolist()
    chosen = select(frame, "mortgage_holder and not contactable")
    assert len(chosen) == int((frame["mortgage_holder"] & ~frame["contactable"]).sum()) > 0
