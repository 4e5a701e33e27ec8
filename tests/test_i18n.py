"""The translation catalog: every key the code uses, and every domain value the UI names, has an
English and a Chinese text with the same fields; pages draw no text that bypasses the catalog."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from analytics import access, audit, i18n, metrics, quality
from analytics.approvals import KINDS as APPROVAL_KINDS
from analytics.approvals import STATUSES as APPROVAL_STATUSES
from analytics.churn.reasons import REASON_CODES, REASON_PARTS
from analytics.cross_sell import EXCLUSION_REASONS
from analytics.cross_sell.recommend import OFFER_KINDS
from analytics.demo.reference import (
    CONTACT_CHANNELS,
    INCOME_BANDS,
    MARKETING_CATEGORIES,
    OCCUPATIONS,
    SERVICE_CATEGORIES,
)
from analytics.features import FEATURE_COLUMNS
from analytics.lifecycle import LIFECYCLE_STAGES
from analytics.quality.rules import load_rules
from analytics.schema import (
    ALERT_KINDS,
    ALERT_STATUSES,
    CUSTOMER_STATUSES,
    RISK_LEVELS,
    RISK_TOLERANCES,
    RUN_STATUSES,
)
from analytics.segment_explorer import ATTRIBUTE_FILTERS
from analytics.segmentation import CLUSTER_FEATURES, RFM_SEGMENTS, VALUE_TIERS
from analytics.segmentation.clusters import NAME_WORDS
from analytics.validators import PROVINCE_CODES

ROOT = Path(__file__).resolve().parents[1]
# rglob: a module split into a package keeps its keys in the scan.
SOURCES = sorted([ROOT / "app.py", *(ROOT / "app_pages").glob("*.py"), *(ROOT / "analytics").rglob("*.py")])
CATALOG = i18n.catalog()
CHART_KEY = re.compile(r"^charts\.[a-z_]+\.[a-z_0-9]+$")


def _key_literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _key_literals(node.body) + _key_literals(node.orelse)
    return []


def _literal_keys() -> dict[str, list[str]]:
    """Catalog keys written in the code: first arguments of t()/tr() calls, and chart texts picked
    from a table of keys ("charts.churn.rate_holdout")."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("t", "tr") and node.args:
                    # t("key"), and each branch of t("a" if x else "b")
                    for key in _key_literals(node.args[0]):
                        found.setdefault(key, []).append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CHART_KEY.match(node.value):
                found.setdefault(node.value, []).append(f"{path.name}:{node.lineno}")
    return found


USED = _literal_keys()


def _error_keys() -> dict[str, list[str]]:
    """Catalog keys errors carry (``key="errors.…"`` in a raise, or built from a literal prefix
    such as ``f"errors.approval.{problem}"`` with the problems passed to it)."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "key" and isinstance(node.value, ast.Constant) \
                    and str(node.value.value).startswith("errors."):
                found.setdefault(node.value.value, []).append(path.name)
    return found


ERROR_KEYS = _error_keys()


def _coded(path: Path) -> list[str]:
    """Codes a module stores with ``coded("code", ...)`` (and ``coded("a" if x else "b", ...)``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "coded" and node.args:
            found += _key_literals(node.args[0])
    return found


ALERT_DETAILS = _coded(ROOT / "analytics" / "alerts" / "detect.py") + ["id_expired", "id_expires"]
RISK_REASONS = _coded(ROOT / "analytics" / "risk.py")
# analytics.approvals._refuse raises errors.approval.<problem>: every problem it is called with.
APPROVAL_PROBLEMS = sorted(set(re.findall(r'_refuse\(engine, \w+, row, "(\w+)"',
                                          (ROOT / "analytics" / "approvals.py").read_text(encoding="utf-8"))))

# Domain values the UI names through i18n.label(family, value): every one needs both languages.
FAMILIES = {
    "page": list(access.PAGES),
    "segment": list(RFM_SEGMENTS),
    "tier": list(VALUE_TIERS),
    "stage": list(LIFECYCLE_STAGES),
    "dq_dimension": ["overall", *quality.DIMENSIONS],
    "exclusion": [*EXCLUSION_REASONS, "listed"],
    "offer_kind": list(OFFER_KINDS),  # shown in words in the campaign list
    "feature": [*CLUSTER_FEATURES, *FEATURE_COLUMNS],  # the cluster heat map and the churn importance chart
    # Stored cluster names are word codes (analytics.segmentation.cluster_label renders them).
    "cluster.word": list(NAME_WORDS),
    "metric": list(metrics.METRICS),
    "metric_help": list(metrics.METRICS),
    "dimension": ["branch_id", "value_tier", "lifecycle_stage", "rfm_segment", "risk_tolerance", "credit_grade"],
    "alert_kind": list(ALERT_KINDS),
    "alert_status": list(ALERT_STATUSES),
    "measure": ["customers", "aum_total", "annual_margin_total", "clv_margin_1y_total", "clv_margin_3y_total",
                "clv_margin_5y_total"],
    # keys tables show in words (analytics.table_formats.ENUM)
    "id_type": ["resident_id", "passport", "hk_macau_permit", "taiwan_permit", "foreign_permanent_resident"],
    "gender": ["M", "F"],
    "status": [*CUSTOMER_STATUSES, *RUN_STATUSES, *APPROVAL_STATUSES],
    "contact_kind": ["service", "marketing", "complaint"],
    "contact_category": [c for c in (*SERVICE_CATEGORIES, *MARKETING_CATEGORIES) if f"category.{c}" not in CATALOG],
    "channel": [*CONTACT_CHANNELS, "mobile_app", "partner", "payroll"],
    "customer_type": ["individual", "private_banking", "small_business_owner"],
    "occupation": list(OCCUPATIONS),
    "income_band": list(INCOME_BANDS),
    "dq_kind": sorted(quality.ROW_KINDS | quality.SQL_QUERY_KINDS | quality.PYTHON_KINDS),
    "mfa": ["enrolled", "none", "pending"],
    "audit_event": list(audit.EVENTS),  # the Audit log's event column and filter
    "approval_kind": list(APPROVAL_KINDS),  # the Approvals page's request kind
    "region": sorted(PROVINCE_CODES),  # the KPI wall's region ranking, in English
    # the Segments page's risk and demographic filters (analytics.segment_explorer.attribute_label)
    "seg_attr": list(ATTRIBUTE_FILTERS),
    "seg_tolerance": list(RISK_TOLERANCES),
    "seg_risk_level": list(RISK_LEVELS),
    # Stored values said in the reader's language (#15): churn reason codes and their parts, errors.
    "churn_reason": list(REASON_CODES),
    "churn_reason.part": [p for p in REASON_PARTS if p != "customer_type"],
    "errors": sorted(k.removeprefix("errors.") for k in ERROR_KEYS),
    "role": list(access.ROLES),  # the sidebar and the audit log name roles in words
    "dq_rule": [rule.name for rule in load_rules().rules],  # the Data quality page names rules in words
    "dq_rule_description": [rule.name for rule in load_rules().rules if rule.description],
    "errors.approval": APPROVAL_PROBLEMS,
    "alert_detail": ALERT_DETAILS,  # the worklist's and the digest's "why"
    "risk_reason": RISK_REASONS,  # the Risk page's balance-drop reasons
    "alert_note": ["detected", "no longer detected"],  # the refresh's notes in an alert's history
    "scope_word": ["whole bank"],
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_two_metrics_share_a_label(lang):
    # Two figures computed differently must not read the same: the catalog gives each its own name.
    labels = {}
    for key in metrics.METRICS:
        text = metrics.label(key, lang, years=3)
        assert text not in labels, f"{key} and {labels.get(text)} are both labelled {text!r}"
        labels[text] = key


def test_the_catalog_file_is_a_mapping_of_keys_to_both_languages():
    raw = yaml.safe_load(i18n.CATALOG_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict) and len(raw) > 100
    for key, entry in raw.items():
        assert isinstance(entry, dict), key
        assert set(entry) == {"en", "zh"}, f"{key}: languages {sorted(entry)}"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_key_used_in_the_code_has_a_text_in_each_language(lang):
    assert len(USED) > 200  # the scan finds the keys (a broken scan would pass vacuously)
    missing = {key: where[:2] for key, where in USED.items() if not (CATALOG.get(key) or {}).get(lang, "").strip()}
    assert not missing, f"keys without a {lang} text: {missing}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_domain_value_has_a_label_in_both_languages(family):
    for value in FAMILIES[family]:
        entry = CATALOG.get(f"{family}.{value}") or {}
        assert entry.get("en", "").strip() and entry.get("zh", "").strip(), f"{family}.{value}"


def test_both_languages_use_the_same_fields():
    for key, entry in CATALOG.items():
        assert i18n.fields(entry["en"]) == i18n.fields(entry["zh"]), key
        for lang in ("en", "zh"):
            # A text with fields must format; one without must not contain stray braces.
            entry[lang].format(**{name: 1 for name in i18n.fields(entry[lang])})


def test_chinese_texts_are_chinese():
    # A zh text that is identical to the English one is a missed translation, unless it is a
    # name that reads the same in both (CSV, PR AUC, R4-R5 ...).
    same = [k for k, e in CATALOG.items() if e["en"] == e["zh"] and re.search(r"[a-z]{4,}", e["en"])]
    assert not same, same


def test_keys_in_the_catalog_are_used():
    families = tuple(f"{f}." for f in (*FAMILIES, "category", "xsell_metric", "dq_scope", "severity",
                                       "risk_metric", "score", "column"))
    unused = [k for k in CATALOG if k not in USED and k not in ERROR_KEYS and not k.startswith(families)]
    assert not unused, f"unused keys (delete them or use them): {unused}"


UI_CALLS = {"title", "header", "subheader", "caption", "markdown", "write", "info", "warning", "error", "success",
            "metric", "button", "radio", "selectbox", "multiselect", "text_input", "text_area", "toggle", "expander",
            "tabs", "download_button", "date_input", "form_submit_button", "progress", "page_link", "checkbox",
            "number_input", "slider", "set_page_config", "spinner", "toast"}
WORDS = re.compile(r"[A-Za-z]{2,}|[\u3400-\u9fff]")


def _ui_literals(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        receiver = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        if name not in UI_CALLS or receiver in ("log", "logging", "logger"):
            continue
        candidates = [*node.args[:1], *(k.value for k in node.keywords
                                        if k.arg in ("label", "text", "help", "title", "page_title", "placeholder"))]
        if name == "tabs" and node.args and isinstance(node.args[0], ast.List):
            candidates = node.args[0].elts
        for cand in candidates:
            if isinstance(cand, ast.Constant) and isinstance(cand.value, str):
                text = cand.value
            elif isinstance(cand, ast.JoinedStr):
                text = "".join(p.value for p in cand.values if isinstance(p, ast.Constant))
            else:
                continue
            if WORDS.search(re.sub(r"<[^>]+>|\{[^}]*\}|:material/\w+:", "", text)):
                out.append(f"{path.name}:{node.lineno}: {text[:60]!r}")
    return out


def test_pages_draw_no_text_outside_the_catalog():
    pages = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]
    leftovers = [hit for path in pages for hit in _ui_literals(path)]
    assert not leftovers, leftovers


def test_the_page_text_check_catches_a_literal(tmp_path):
    page = tmp_path / "page.py"
    page.write_text('import streamlit as st\nst.title("Churn")\nst.metric(f"{n} customers", 3)\n'
                    'st.caption(common.t("churn.x"))\nlog.warning("not UI %s", 1)\n')
    assert len(_ui_literals(page)) == 2


def test_tr_fills_fields_and_falls_back_to_the_key():
    assert i18n.tr("overview.branches_holdings", "en", branches="3", holdings="1,234") == \
        "3 branches · 1,234 open holdings"
    assert i18n.tr("overview.branches_holdings", "zh", branches="3", holdings="1,234") == "3 个网点 · 1,234 笔有效持仓"
    assert i18n.tr("no.such.key", "zh") == "no.such.key"
    assert i18n.label("tier", "private", "zh") == "私人银行客户"
    assert i18n.label("category", "gold_bars_of_a_bank", "zh") == "gold_bars_of_a_bank"
    with pytest.raises(ValueError):
        i18n.tr("overview.your_pages", "fr")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_cluster_name_part_renders_in_both_languages(lang):
    """Every word code, every neutral "high/low <feature>" part, the part that sets a cluster apart
    and the number render from the catalog: the code itself never shows."""
    from analytics.segmentation import cluster_label

    for word in NAME_WORDS:
        assert cluster_label(word, lang) == CATALOG[f"cluster.word.{word}"][lang]
    for feature in CLUSTER_FEATURES:
        for direction in ("high", "low"):
            text = cluster_label(f"savers {direction}:{feature} ({direction}:{feature}) #3", lang)
            assert feature not in text and f"{direction}:" not in text and "savers" not in text or lang == "en", text
            assert CATALOG[f"feature.{feature}"][lang] in text and "3" in text
    assert cluster_label("young digital savers", "en") == "young digital savers"
    assert cluster_label("high:aum_avg_3m low:txn_count_3m", "en") == "high AUM, low transactions"
    assert cluster_label("high:aum_avg_3m low:txn_count_3m", "zh") == "高资产规模、低交易笔数"
    assert cluster_label("new everyday (low:age) #2", "zh") == "新开户普通客户（低年龄）（第2组）"
    assert cluster_label("a name from an older run", lang) == "a name from an older run"


def test_errors_users_meet_carry_a_key_of_the_catalog():
    # The scan finds the keyed raises (a broken scan would pass vacuously), and every problem of a
    # refused approval has its text.
    assert len(ERROR_KEYS) > 30 and {"errors.no_customer", "errors.tag.unknown_tag"} <= set(ERROR_KEYS)
    assert {"self_approval", "expired", "used", "tampered"} <= set(APPROVAL_PROBLEMS)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_an_error_with_a_key_reads_in_the_users_language(lang):
    from analytics.customer360 import CustomerNotFound
    from analytics.errors import AnalyticsError, describe

    exc = CustomerNotFound("No customer C42.", key="errors.no_customer", id="C42")
    assert str(exc) == "No customer C42." and describe(exc) == "No customer C42."  # the CLI and the log
    assert describe(exc, lang) == {"en": "No customer C42.", "zh": "没有客户 C42。"}[lang]
    # no key, an unknown key or a missing field: the English message, never a raw key
    assert describe(AnalyticsError("plain"), lang) == "plain"
    assert describe(AnalyticsError("plain", key="errors.no_such_key"), lang) == "plain"
    assert describe(AnalyticsError("plain", key="errors.no_customer"), lang) == "plain"


def test_a_tag_expression_error_reads_in_chinese():
    from analytics import tags
    from analytics.errors import describe

    with pytest.raises(tags.TagRuleError) as caught:
        tags.parse_selection("mortgage_holder and nosuch", ["mortgage_holder"])
    assert "unknown tag 'nosuch'" in str(caught.value)
    assert describe(caught.value, "zh") == "未知标签 'nosuch'：请从可用标签列表中选择标签名。"


def test_every_built_in_tag_has_a_label_in_both_languages():
    from analytics import tags

    rules = tags.load_tag_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert rule.label.strip() and rule.label_zh.strip(), rule.name
        assert tags.tag_label(rule, "en") == rule.label and tags.tag_label(rule, "zh") == rule.label_zh
    bare = tags.TagRule(name="my_own_tag", rule="age > 30")
    assert tags.tag_label(bare, "zh") == "my_own_tag"  # a bank's tag without labels: its name


def test_stored_codes_are_found_and_older_words_pass_through():
    assert len(ALERT_DETAILS) >= 10 and set(RISK_REASONS) == {"balance_drop", "balance_drop_pooled"}
    stored = i18n.coded("assessment_expired", date="2021-02-07")
    assert i18n.render_coded(stored, "alert_detail", "zh") == "风险测评已于 2021-02-07 过期"
    assert i18n.render_coded(stored, "alert_detail", "en") == "risk assessment expired on 2021-02-07"
    # an older run's English words, a code the family lacks, a missing field: shown as stored
    assert i18n.render_coded("risk assessment missing", "alert_detail", "zh") == "risk assessment missing"
    assert i18n.render_coded("no_such_code", "alert_detail", "zh") == "no_such_code"
    assert i18n.render_coded("assessment_expired", "alert_detail", "zh") == "assessment_expired"
    assert i18n.render_coded(None, "alert_detail", "zh") is None
