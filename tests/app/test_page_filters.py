"""AppTest, issue #7 "a filter changes what it shows": for every page with a filter and every role
allowed on it, on the demo store, setting the filter changes a headline figure or the content of a
chart or table, to the value computed here from the store for the same filter.

Filters are found by a loosely matched label (English or Chinese), so the tests follow the pages'
behaviour through rewrites: Segments, Lifecycle value and Churn keep their filters (branch, city,
age band, value tier) whatever the widgets become.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sqlalchemy import text

from analytics import access, i18n, quality
from analytics.access import Viewer
from tests.app import pagekit as kit
from tests.app.figures import find_all
from tests.app.test_page_figures import (
    assert_campaign_figures,
    assert_customer,
    assert_lifecycle_metrics,
    assert_rfm_grid,
    clv_truth,
    count_caption,
    cross_sell_truth,
    customer_truth,
    dq_scores,
    lookup,
    risk_counts_by,
    sample_customers,
    stacked_totals,
)
from tests.conftest import copy_store

pages = kit.pages_fixture("flt")


def roles_of(page: str) -> list[str]:
    # A relationship manager always has a portfolio scope, so its figures are its own customers',
    # not the run's bank-wide ones these tests compare with: tests/app/test_door_pages.py covers it.
    return sorted(access.PAGE_ACCESS[page] - {"relationship_manager"})


def row_roles(page: str) -> list[str]:
    return [r for r in roles_of(page) if access.can_see_customer_rows([r])]


# --------------------------------------------------------------------------------------------
# Segments and Lifecycle: branch, city, age band, value tier
# --------------------------------------------------------------------------------------------

FILTERS = {  # kind -> (label pattern, SQL condition(s) on customers c / customer_segments s)
    "branch": (kit.BRANCH, "c.branch_id = :v"),
    # A customer's city is read two ways: the city on the customer's record, or the city of the
    # customer's branch (the SQL-aggregate rewrite files cities as sets of branches). The two differ
    # for a few customers of the demo store; the page must follow one of them, on every figure.
    "city": (r"city|城市", "c.city = :v", "c.branch_id IN (SELECT branch_id FROM branches WHERE city = :v)"),
    "age_band": (r"age|年龄", f"({kit.AGE_BAND_SQL}) = :v"),
    "tier": (r"tier|层级", "s.value_tier = :v"),
}


def filter_value(engine, kind: str) -> str:
    """A value that narrows the customers without emptying them: the second most common one."""
    if kind == "tier":
        return "affluent"
    if kind == "age_band":
        return "30-44"
    column = {"branch": "c.branch_id", "city": "c.city"}[kind]
    return kit.frame(engine, f"SELECT {column} AS v, COUNT(*) AS n FROM customers c GROUP BY {column} "
                             "ORDER BY n DESC, v LIMIT 2")["v"].iloc[1]


def as_of_year(engine) -> int:
    return int(str(kit.run_metric(engine, "as_of_month"))[:4])


def filtered(engine, where: str, value: str, select: str, group: str | None = None):
    sql = (f"SELECT {select} FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id "
           f"WHERE s.run_id = :r AND {where}" + (f" GROUP BY {group}" if group else ""))
    return kit.frame(engine, sql, r=kit.run_id(engine), v=value, year=as_of_year(engine))


def set_filter(at, kind: str, value: str) -> None:
    kit.choose(kit.widget(at, FILTERS[kind][0], kinds=("multiselect", "selectbox")), value)
    assert not at.exception, at.exception


def checked_under_one_definition(kind: str, check) -> None:
    """Run ``check(where)`` under each SQL reading of the filter; it must pass under one."""
    errors = []
    for where in FILTERS[kind][1:]:
        try:
            check(where)
            return
        except AssertionError as exc:
            errors.append(f"{where}: {exc}")
    raise AssertionError("\n".join(errors))


@pytest.mark.parametrize("kind", list(FILTERS))
@pytest.mark.parametrize("role", roles_of("segments"))
def test_segments_filters_cross_filter_the_charts(pages, role, kind):
    engine = pages.engine
    value = filter_value(engine, kind)
    at = pages.open(role, "segments")
    total, _ = count_caption(at)
    set_filter(at, kind, value)

    def check(where):
        n = int(filtered(engine, where, value, "COUNT(*) AS n")["n"].iloc[0])
        assert 0 < n < total
        assert count_caption(at) == (n, total)
        grid = filtered(engine, where, value, "s.rfm_r, s.rfm_f, COUNT(*) AS n", "s.rfm_r, s.rfm_f")
        assert_rfm_grid(at, {(int(r), int(f)): int(k) for r, f, k in grid.itertuples(index=False)})
        for column in ("s.rfm_segment", "s.value_tier"):
            kit.bar_with_values(at, filtered(engine, where, value, "COUNT(*) AS n", column)["n"])

    checked_under_one_definition(kind, check)


@pytest.mark.parametrize("kind", list(FILTERS))
@pytest.mark.parametrize("role", roles_of("lifecycle"))
def test_lifecycle_filters_change_the_figures(pages, role, kind):
    engine = pages.engine
    value = filter_value(engine, kind)
    at = pages.open(role, "lifecycle")
    set_filter(at, kind, value)

    def check(where):
        assert_lifecycle_metrics(at, clv_truth(engine, where, v=value, year=as_of_year(engine)))
        kit.bar_with_values(at, filtered(engine, where, value, "COUNT(*) AS n", "s.lifecycle_stage")["n"])

    checked_under_one_definition(kind, check)


@pytest.mark.parametrize("role", roles_of("lifecycle"))
def test_lifecycle_horizon_changes_the_clv_figures(pages, role):
    engine = pages.engine
    at = pages.open(role, "lifecycle")
    assert_lifecycle_metrics(at, clv_truth(engine, years=3))
    kit.choose(kit.widget(at, r"horizon|年限|years", kinds=("radio", "selectbox", "segmented_control")), 5)
    assert not at.exception, at.exception
    assert_lifecycle_metrics(at, clv_truth(engine, years=5))


@pytest.mark.parametrize("page", ["segments", "lifecycle"])
def test_filters_that_match_nobody_say_so(pages, page):
    engine = pages.engine
    branch = kit.frame(engine, """
        SELECT c.branch_id FROM customers c GROUP BY c.branch_id
        HAVING SUM(CASE WHEN c.customer_id IN (SELECT customer_id FROM customer_segments
                                               WHERE run_id = :r AND value_tier = 'private') THEN 1 ELSE 0 END) = 0
        ORDER BY COUNT(*) DESC LIMIT 1""", r=kit.run_id(engine))["branch_id"].iloc[0]
    at = pages.open(sorted(access.PAGE_ACCESS[page])[0], page)
    set_filter(at, "branch", branch)
    set_filter(at, "tier", "private")
    assert [t for t in kit.texts(at, "info", "warning") if t.strip()], "no message for an empty selection"
    heat = [np.nansum(np.asarray(kit.arr(t["z"]), dtype=float)) for t in kit.traces(at, "heatmap")]
    bars = [sum(kit.floats(t.get("y", []))) for t in kit.traces(at, "bar")]
    assert not any(heat) and not any(bars), "charts still show customers for an empty selection"


def _chart_data(at) -> list[str]:
    return [json.dumps(fig.get("data"), sort_keys=True) for fig in kit.charts(at)]


def assert_every_chart_follows(pages, page: str, except_titles: tuple[str, ...] = ()) -> None:
    engine = pages.engine
    at = pages.open(sorted(access.PAGE_ACCESS[page])[0], page)
    titles = [str(fig.get("layout", {}).get("title", {}).get("text", "")) for fig in kit.charts(at)]
    before = _chart_data(at)
    set_filter(at, "branch", filter_value(engine, "branch"))
    after = _chart_data(at)
    assert len(after) == len(before), "the filter added or removed charts"
    unchanged = [title for title, b, a in zip(titles, before, after, strict=True)
                 if a == b and not title.startswith(except_titles)]
    assert unchanged == [], f"charts that ignore the branch filter: {unchanged}"
    if except_titles:  # the exception is real: those charts do stay the same
        assert all(a == b for title, b, a in zip(titles, before, after, strict=True)
                   if title.startswith(except_titles))


def test_every_segments_chart_follows_the_filters(pages):
    assert_every_chart_follows(pages, "segments")


def test_every_lifecycle_chart_follows_the_filters_but_the_bank_wide_cohorts(pages):
    # Cohort retention is bank-wide by decision (a table filterable by branch x age x tier would hold
    # cohorts x months x cells rows, ~200k at 1M customers); the page says so under the chart.
    assert_every_chart_follows(pages, "lifecycle", except_titles=("Cohort retention",))
    at = pages.open("marketing", "lifecycle")
    assert any("do not narrow it" in text for text in kit.texts(at, "caption"))


# --------------------------------------------------------------------------------------------
# Churn
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", roles_of("churn"))
def test_churn_by_branch_shows_the_branch_rates(pages, role):
    engine = pages.engine
    at = pages.open(role, "churn")
    kit.choose(kit.widget(at, r"churn by|维度", kinds=("radio", "selectbox", "segmented_control")), "branch_id")
    assert not at.exception, at.exception
    rates = kit.frame(engine, "SELECT mean_probability FROM churn_rates WHERE run_id = :r AND dimension = 'branch_id' "
                              "AND mean_probability IS NOT NULL", r=kit.run_id(engine))["mean_probability"]
    kit.bar_with_values(at, rates)


def ranked_active(engine, where: str = "1 = 1", **params) -> list[str]:
    return kit.frame(engine, f"""
        SELECT s.customer_id FROM churn_scores s JOIN customers c ON c.customer_id = s.customer_id
        LEFT JOIN customer_segments g ON g.run_id = s.run_id AND g.customer_id = s.customer_id
        WHERE s.run_id = :r AND s.churn_state = 'active' AND c.marketing_consent = 1 AND {where}
        ORDER BY s.value_at_risk DESC, s.churn_probability DESC, s.customer_id LIMIT 1000
    """, r=kit.run_id(engine), **params)["customer_id"].tolist()


def list_with_ids(at, ids: list[str]):
    for t in kit.tables(at):
        for c in t.columns:
            if t[c].astype(str).tolist() == ids:
                return t
    raise AssertionError(f"no table lists exactly the {len(ids)} expected customers")


@pytest.mark.parametrize("kind, pattern, condition, value", [
    ("branch", kit.BRANCH, "c.branch_id = :v", None),
    ("tier", r"tier|层级", "g.value_tier = :v", "affluent"),
])
@pytest.mark.parametrize("role", row_roles("churn"))
def test_early_warning_filters(pages, role, kind, pattern, condition, value):
    engine = pages.engine
    value = value or filter_value(engine, "branch")
    at = pages.open(role, "churn")
    everyone = list_with_ids(at, ranked_active(engine))
    kit.choose(kit.widget(at, pattern, kinds=("selectbox", "multiselect")), value)
    assert not at.exception, at.exception
    expected = ranked_active(engine, condition, v=value)
    assert 0 < len(expected) < len(everyone)
    list_with_ids(at, expected)


# --------------------------------------------------------------------------------------------
# Cross-sell
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", roles_of("cross_sell"))
def test_cross_sell_category_changes_the_campaign(pages, role):
    engine = pages.engine
    at = pages.open(role, "cross_sell")
    w = kit.widget(at, r"categor|类别", kinds=("selectbox", "radio"))
    before = w.value
    pools = kit.frame(engine, "SELECT category FROM cross_sell_categories WHERE run_id = :r AND campaign_pool > 0 "
                              "AND category <> :c ORDER BY campaign_pool, category", r=kit.run_id(engine), c=before)
    category = pools["category"].iloc[0]  # the smallest list: its length differs from the default's
    kit.choose(w, category)
    assert not at.exception, at.exception
    truth = cross_sell_truth(engine, category)
    assert truth != cross_sell_truth(engine, before)
    assert_campaign_figures(at, truth)
    offered = set(kit.frame(engine, "SELECT customer_id FROM next_best_product WHERE run_id = :r AND category = :c",
                            r=kit.run_id(engine), c=category)["customer_id"])
    lists = [t for t in kit.tables(at) if "customer_id" in t.columns]
    assert lists and set(lists[0]["customer_id"]) <= offered


# --------------------------------------------------------------------------------------------
# Risk tiers
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", roles_of("risk"))
def test_risk_breakdown_and_shares(pages, role):
    engine = pages.engine
    at = pages.open(role, "risk")
    kit.choose(kit.widget(at, r"break.?down|细分", kinds=("radio", "selectbox", "segmented_control")), "value_tier")
    assert not at.exception, at.exception
    by_tier = risk_counts_by(engine, "value_tier")
    stacks = stacked_totals(at)
    assert len(stacks) >= 2 and all(kit.same_values(s, by_tier) for s in stacks[:2]), (stacks, by_tier)
    next(t for t in at.toggle if kit._match(r"share|占比", t.label)).set_value(True).run()
    assert not at.exception, at.exception
    stacks = stacked_totals(at)
    assert len(stacks) >= 2 and all(kit.same_values(s, [1.0] * len(by_tier), tol=1e-9) for s in stacks[:2]), stacks


@pytest.mark.parametrize("role", row_roles("risk"))
def test_risk_drill_down_by_branch(pages, role):
    engine = pages.engine
    run = kit.run_id(engine)
    at = pages.open(role, "risk")
    branch = kit.frame(engine, "SELECT branch_id, COUNT(*) AS n FROM risk_flags WHERE run_id = :r AND balance_drop = 1 "
                               "GROUP BY branch_id ORDER BY n DESC, branch_id LIMIT 1", r=run)["branch_id"].iloc[0]
    all_drops = kit.scalar(engine, "SELECT COUNT(*) FROM risk_flags WHERE run_id = :r AND balance_drop = 1", r=run)
    kit.choose(kit.widget(at, kit.BRANCH, kinds=("selectbox", "multiselect")), branch)
    assert not at.exception, at.exception
    mismatches = kit.frame(engine, "SELECT holding_id FROM risk_mismatches WHERE run_id = :r AND branch_id = :b",
                           r=run, b=branch)["holding_id"]
    drops = kit.frame(engine, "SELECT customer_id FROM risk_flags WHERE run_id = :r AND balance_drop = 1 "
                              "AND branch_id = :b", r=run, b=branch)["customer_id"]
    assert 0 < len(drops) < all_drops
    shown = kit.tables(at)
    assert any("holding_id" in t.columns and set(t["holding_id"].astype(int)) == set(mismatches) for t in shown)
    assert any("customer_id" in t.columns and set(t["customer_id"]) == set(drops) for t in shown), \
        "the balance-drop list does not follow the branch"


def test_balance_drops_of_a_branch_beyond_the_first_thousand(tmp_path, monkeypatch, demo_store_url):
    # A run with more than 1,000 alerts: the demo store's run, plus 1,000 steeper drops in one branch.
    url = copy_store(demo_store_url, tmp_path / "many-drops.db")
    kit_ = kit.Pages(url, "drops")
    engine = kit_.engine
    run = kit.run_id(engine)
    flagged = kit.frame(engine, "SELECT branch_id, COUNT(*) AS n FROM risk_flags WHERE run_id = :r "
                                "AND balance_drop = 1 GROUP BY branch_id ORDER BY n DESC, branch_id", r=run)
    crowded, branch = flagged["branch_id"].iloc[0], flagged["branch_id"].iloc[-1]
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO risk_flags (run_id, customer_id, branch_id, risk_tolerance, credit_grade, value_tier, aum,
                                    suitability_mismatch, mismatch_holdings, mismatch_balance, assessment_expired,
                                    assessment_missing, balance_drop, aum_change_pct, balance_drop_reason)
            VALUES (:r, :c, :b, 'C3', 'A', 'mass', 1000.0, 0, 0, 0.0, 0, 0, 1, -0.99, 'synthetic steep drop')
        """), [{"r": run, "c": f"X{i:09d}", "b": crowded} for i in range(1000)])
    expected = kit.frame(engine, "SELECT customer_id FROM risk_flags WHERE run_id = :r AND balance_drop = 1 "
                                 "AND branch_id = :b", r=run, b=branch)["customer_id"]
    assert len(expected) > 0
    monkeypatch.setenv("CUSTOMER_STORE_URL", url)
    try:
        at = kit_.open("risk", "risk")
        kit.choose(kit.widget(at, kit.BRANCH, kinds=("selectbox", "multiselect")), branch)
        assert not at.exception, at.exception
        shown = [t for t in kit.tables(at) if "customer_id" in t.columns and "aum_change_pct" in t.columns]
        assert shown and set(shown[0]["customer_id"]) == set(expected), \
            f"branch {branch} has {len(expected)} balance-drop alerts; the page lists {len(shown[0]) if shown else 0}"
    finally:
        kit_.close()


# --------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", roles_of("data_quality"))
def test_data_quality_breakdown_by_channel(pages, role):
    engine = pages.engine
    at = pages.open(role, "data_quality")
    kit.bar_with_values(at, [round(100 * s, 1) for s in dq_scores(engine, "branch").values()])
    kit.choose(kit.widget(at, r"break.?down|细分", kinds=("radio", "selectbox", "segmented_control")), "channel")
    assert not at.exception, at.exception
    kit.bar_with_values(at, [round(100 * s, 1) for s in dq_scores(engine, "channel").values()])


@pytest.mark.parametrize("role", row_roles("data_quality"))
def test_failing_records_and_fix_list_follow_their_pickers(pages, role):
    engine = pages.engine
    run = kit.run_id(engine)
    at = pages.open(role, "data_quality")
    rule_picker = kit.widget(at, r"rule|规则", kinds=("selectbox",))
    rule = [r for r in rule_picker.options if r != rule_picker.value][-1]
    kit.choose(rule_picker, rule)
    assert not at.exception, at.exception
    names = kit.frame(engine, "SELECT rule FROM dq_rule_results WHERE run_id = :r", r=run)["rule"]
    rule = {i18n.label("dq_rule", n, "en"): n for n in names}.get(rule, rule)  # the picker shows labels
    records = quality.failing_records(engine, run, rule, viewer=Viewer("t", (role,)), limit=1000)
    caption = kit.text_with(at, r"failing|不合格", "caption")
    assert find_all(caption)[0].shows(len(records)), caption
    key = records.columns[0]
    assert any(key in t.columns and t[key].astype(str).tolist() == records[key].astype(str).tolist()
               for t in kit.tables(at)), "the failing records of the chosen rule are not listed"

    branch_picker = kit.widget(at, kit.BRANCH, kinds=("selectbox",))
    assert branch_picker.value is None, "a fix list is built before anyone chose a branch"
    assert not any(re.search(r"\d items to fix|共 .*项待整改", c) for c in kit.texts(at, "caption"))
    kit.choose(branch_picker, branch_picker.options[0])
    assert not at.exception, at.exception
    branch_picker = kit.widget(at, kit.BRANCH, kinds=("selectbox",))
    sizes = {b: len(quality.fix_list(engine, run, b, viewer=Viewer("t", (role,)))) for b in branch_picker.options[:4]}
    branch = next(b for b, n in sizes.items() if n != sizes[branch_picker.value])
    kit.choose(branch_picker, branch)
    assert not at.exception, at.exception
    fixes = quality.fix_list(engine, run, branch, viewer=Viewer("t", (role,)))
    caption = kit.text_with(at, r"to fix|整改", "caption")
    assert find_all(caption)[0].shows(len(fixes)), caption
    assert any("customer_id" in t.columns and t["customer_id"].tolist() == fixes["customer_id"].head(1000).tolist()
               for t in kit.tables(at)), "the fix list of the chosen branch is not listed"


# --------------------------------------------------------------------------------------------
# Customer 360 (search) and Audit log
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", roles_of("customer_360"))
def test_customer_360_search_shows_the_customer_asked_for(pages, role):
    engine = pages.engine
    first, second = sample_customers(engine, 2)
    at = lookup(pages.open(role, "customer_360"), first)
    exact = Viewer("t", (role,)).exact_balances
    assert_customer(at, customer_truth(engine, first), exact_balances=exact)
    lookup(at, second)
    assert_customer(at, customer_truth(engine, second), exact_balances=exact)
    assert any(second in s.value for s in at.subheader)


@pytest.mark.parametrize("role", roles_of("audit_log"))
def test_audit_log_filters_by_user_and_event(pages, role):
    engine = pages.engine
    username = pages.username(role)
    at = pages.open(role, "audit_log")
    everyone = len(kit.tables(at)[0])
    kit.widget(at, r"user|用户", kinds=("text_input",)).input(username)
    kit.widget(at, r"event|事件", kinds=("multiselect",)).set_value(["login_ok", "page_view"])
    next(b for b in at.button if kit._match(r"search|查询", b.label)).click()
    at.run()
    assert not at.exception, at.exception
    expected = kit.frame(engine, "SELECT seq FROM audit_log WHERE username = :u AND event IN ('login_ok', 'page_view') "
                                 "ORDER BY seq DESC LIMIT 1000", u=username)["seq"].tolist()
    shown = kit.tables(at)[0]
    assert 0 < len(expected) < everyone
    assert shown["seq"].astype(int).tolist() == expected
    assert set(shown["username"]) == {username}
