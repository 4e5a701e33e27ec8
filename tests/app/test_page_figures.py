"""AppTest, issue #7 "its headline figures equal the current run's analytics results": every page, for
every role allowed on it, in English and in Chinese, on the demo store.

Each figure a page shows (a metric, a KPI tile, a caption's counts, the values of a chart or a
table) is read back with :mod:`tests.app.figures` and compared, to the precision it is displayed
at, with the same figure computed here straight from the store: SQL over the bank's tables and
the current run's result tables, not the page's own loaders. Figures are found by a loosely
matched label or by what they hold, not by widget index, so a reworded label or a reordered chart
does not break a test, while a wrong number does.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from analytics import access, cross_sell, i18n, settings
from analytics.access import Viewer, aum_band
from analytics.segmentation import cluster_label
from tests.app import pagekit as kit
from tests.app.figures import find_all

pages = kit.pages_fixture("fig")
LANGS = ("en", "zh")


def roles_of(page: str) -> list[str]:
    # A relationship manager always has a portfolio scope, so its figures are its own customers',
    # not the run's bank-wide ones these tests compare with: tests/app/test_door_pages.py covers it.
    return sorted(access.PAGE_ACCESS[page] - {"relationship_manager"})


def cases(page: str):
    return [(role, lang) for role in roles_of(page) for lang in LANGS]


def _month_after(month: str) -> str:
    d = dt.date.fromisoformat(month)
    return (dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)).isoformat()


def _month_before(month: str) -> str:
    d = dt.date.fromisoformat(month)
    return (dt.date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1)).isoformat()


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------

def overview_truth(engine) -> dict:
    month = kit.run_metric(engine, "as_of_month")
    status = kit.frame(engine, "SELECT status, COUNT(*) AS n FROM customers GROUP BY status").set_index("status")["n"]
    sums = kit.frame(engine, "SELECT SUM(aum) AS aum, SUM(deposit_balance) AS deposits, SUM(loan_balance) AS loans "
                             "FROM customer_monthly WHERE month = :m", m=month).iloc[0]
    return {"customers": int(status.sum()), "active": int(status.get("active", 0)),
            "dormant": int(status.get("dormant", 0)), "closed": int(status.get("closed", 0)),
            "aum": float(sums["aum"]), "deposits": float(sums["deposits"]), "loans": float(sums["loans"]),
            "products": int(kit.scalar(engine, "SELECT COUNT(*) FROM products"))}


OVERVIEW_METRICS = [  # key, label pattern, position
    ("customers", r"^\W*customers|客户数|客户总数", 0), ("active", r"active|活跃", 1),
    ("dormant", r"dormant|休眠", 2), ("closed", r"closed|销户", 3), ("aum", r"aum|管理资产|资产规模", 4),
    ("deposits", r"deposit|存款", 5), ("loans", r"loan|贷款", 6), ("products", r"product|产品", 7),
]


@pytest.mark.parametrize("role, lang", cases("overview"))
def test_overview_figures(pages, role, lang):
    truth = overview_truth(pages.engine)
    at = pages.open(role, "overview", lang)
    for key, pattern, position in OVERVIEW_METRICS:
        kit.assert_figure(kit.metric(at, pattern, position), truth[key], f"overview {key}")


# --------------------------------------------------------------------------------------------
# KPI wall
# --------------------------------------------------------------------------------------------

MONTHLY = ("customers", "active", "new", "churned", "aum", "deposits", "loans")


def kpi_month(engine, month: str) -> dict:
    """The KPI wall's monthly figures of one month, straight from the store (see analytics/kpi.py)."""
    cm = kit.frame(engine, """
        SELECT SUM(CASE WHEN aum > 0 OR loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(CASE WHEN txn_count > 0 THEN 1 ELSE 0 END) AS active,
               SUM(aum) AS aum, SUM(deposit_balance) AS deposits, SUM(loan_balance) AS loans
        FROM customer_monthly WHERE month = :m""", m=month).iloc[0]
    return {
        **{k: float(cm[k]) for k in ("customers", "active", "aum", "deposits", "loans")},
        "new": kit.scalar(engine, "SELECT COUNT(*) FROM customers WHERE open_date >= :m AND open_date < :n",
                          m=month, n=_month_after(month)),
        "churned": kit.scalar(engine, """
            SELECT COUNT(*) FROM customer_monthly cur JOIN customer_monthly prev
              ON prev.customer_id = cur.customer_id AND prev.month = :p
            WHERE cur.month = :m AND prev.aum > 0 AND cur.aum = 0 AND cur.loan_balance = 0 AND cur.txn_count = 0
        """, m=month, p=_month_before(month)),
    }


def kpi_truth(engine) -> dict:
    month = kit.run_metric(engine, "as_of_month")
    run = kit.run_id(engine)
    active = kit.frame(engine, "SELECT COUNT(*) AS n, SUM(churn_probability) AS p, SUM(value_at_risk) AS v "
                               "FROM churn_scores WHERE run_id = :r AND churn_state = 'active'", r=run).iloc[0]
    return {
        **kpi_month(engine, month),
        "avg_clv": kit.scalar(engine, "SELECT AVG(clv_margin_3y) FROM customer_clv_margin WHERE run_id = :r", r=run),
        "churn_rate": active["p"] / active["n"],
        "value_at_risk": active["v"],
        "cross_sell_potential": kit.scalar(engine, "SELECT SUM(next_best_expected_value) FROM cross_sell_customer "
                                                   "WHERE run_id = :r", r=run),
        "risk_mix": kit.scalar(engine, "SELECT SUM(asset_balance_r4_r5) / SUM(asset_balance_total) "
                                       "FROM risk_branch_summary WHERE run_id = :r", r=run),
        "dq_overall": kit.scalar(engine, "SELECT score FROM dq_scores WHERE run_id = :r AND scope = 'overall' "
                                         "AND dimension = 'overall'", r=run),
        **{key: kit.scalar(engine, "SELECT score FROM dq_scores WHERE run_id = :r AND scope = 'overall' "
                                   "AND dimension = :d", r=run, d=dimension)
           for key, dimension in (("dq_completeness", "completeness"), ("dq_accuracy", "validity"),
                                  ("dq_freshness", "timeliness"))},
    }


def kpi_changes(engine) -> dict:
    """Each monthly tile's change since last month: relative when last month was not 0, else absolute.
    Run-level tiles have no change while the current run is the only successful one."""
    month = kit.run_metric(engine, "as_of_month")
    now, before = kpi_month(engine, month), kpi_month(engine, _month_before(month))
    out = {k: {"%": (now[k] - before[k]) / abs(before[k]) if before[k] else None, "": now[k] - before[k]}
           for k in MONTHLY}
    earlier = kit.scalar(engine, "SELECT COUNT(*) FROM refresh_runs WHERE status = 'succeeded' AND run_id < :r",
                         r=kit.run_id(engine))
    if earlier == 0:
        out.update(dict.fromkeys(("avg_clv", "churn_rate", "value_at_risk", "cross_sell_potential", "risk_mix",
                                  "dq_overall", "dq_completeness", "dq_accuracy", "dq_freshness")))
    return out


def kpi_series(engine) -> dict[str, list[float]]:
    """The sparklines' monthly series over the 13 months up to the run's month."""
    month = kit.run_metric(engine, "as_of_month")
    first = month
    for _ in range(12):
        first = _month_before(first)
    frame = kit.frame(engine, """
        SELECT month, SUM(CASE WHEN aum > 0 OR loan_balance > 0 THEN 1 ELSE 0 END) AS customers,
               SUM(CASE WHEN txn_count > 0 THEN 1 ELSE 0 END) AS active,
               SUM(aum) AS aum, SUM(deposit_balance) AS deposits, SUM(loan_balance) AS loans
        FROM customer_monthly WHERE month >= :f AND month <= :m GROUP BY month ORDER BY month""", f=first, m=month)
    assert len(frame) == 13
    return {k: frame[k].astype(float).tolist() for k in ("customers", "active", "aum", "deposits", "loans")}


KPI_TILES = [  # key, label pattern, position in the wall's layout
    ("customers", r"^\W*(customers|客户数|客户总数)", 0), ("active", r"active|活跃", 1), ("new", r"new|新增", 2),
    ("churned", r"churned|本月流失|流失客户", 3), ("aum", r"aum|管理资产", 4), ("deposits", r"deposit|存款", 5),
    ("loans", r"loan|贷款", 6), ("avg_clv", r"clv|客户价值", 7), ("churn_rate", r"predicted churn|churn rate|流失率", 8),
    ("value_at_risk", r"value at risk|风险价值", 9), ("cross_sell_potential", r"cross.?sell|交叉销售", 10),
    ("risk_mix", r"r4|risk mix|高风险", 11), ("dq_overall", r"quality|质量", 12),
    ("dq_completeness", r"completeness|完整率", 13), ("dq_accuracy", r"accuracy|准确率", 14),
    ("dq_freshness", r"freshness|鲜活率", 15),
]


def _tile(shown: list[tuple[str, str, str | None]], pattern: str, position: int) -> tuple[str, str | None]:
    found = [(value, change) for label, value, change in shown if kit._match(pattern, label)]
    if len(found) == 1:
        return found[0]
    assert position < len(shown), f"no tile matches {pattern!r}: {shown}"
    return shown[position][1:]


@pytest.mark.parametrize("role, lang", cases("kpi_wall"))
def test_kpi_wall_tiles(pages, role, lang):
    engine = pages.engine
    truth, changes = kpi_truth(engine), kpi_changes(engine)
    at = pages.open(role, "kpi_wall", lang)
    shown = kit.tiles(at)
    assert len(shown) == len(KPI_TILES), shown
    for key, pattern, position in KPI_TILES:
        value, change = _tile(shown, pattern, position)
        kit.assert_figure(value, truth[key], f"KPI tile {key}")
        if key in changes:
            figures = find_all(change or "")
            expected = changes[key]
            if expected is None:
                assert figures == [], f"KPI tile {key}: a change {change!r} with no earlier run"
                continue
            assert len(figures) == 1, f"KPI tile {key}: change {change!r}"
            # relative to last month (%), or absolute where last month was 0
            expected = expected["%"] if figures[0].unit == "%" else expected[""]
            assert figures[0].shows(expected), f"KPI tile {key}: change {change!r}, the store gives {expected}"
    # Each sparkline is an SVG line fitted to its series' range: y = 28 - 26 (v - min) / (max - min).
    lines = [[float(p.split(",")[1]) for p in points.split()]
             for m in at.markdown for points in re.findall(r'<polyline points="([^"]*)"', m.value)]
    for key, series in kpi_series(engine).items():
        low, span = min(series), (max(series) - min(series)) or 1.0
        fitted = [28 - 26 * (v - low) / span for v in series]
        assert any(len(line) == 13 and np.allclose(line, fitted, atol=0.006) for line in lines), \
            f"no sparkline shows the monthly {key} series"


# --------------------------------------------------------------------------------------------
# Segments and Lifecycle
# --------------------------------------------------------------------------------------------

def count_caption(at) -> tuple[float, float]:
    """The (shown, of all) customer counts of the filter caption ("2,833 of 3,000 customers")."""
    for t in kit.texts(at, "caption", "markdown"):
        found = [f.value for f in find_all(t)]
        if len(found) == 2 and kit._match(r"\bof\b|中的|/", t):
            return min(found), max(found)
    raise AssertionError(f"no 'N of M customers' caption: {kit.texts(at, 'caption')}")


def segment_counts(engine, column: str) -> list[int]:
    return kit.frame(engine, f"SELECT COUNT(*) AS n FROM customer_segments WHERE run_id = :r GROUP BY {column}",
                     r=kit.run_id(engine))["n"].tolist()


def assert_rfm_grid(at, expected: dict[tuple[int, int], int]) -> None:
    """Some heatmap holds the customers per (R, F) cell, R on one axis and F on the other."""
    for trace in kit.traces(at, "heatmap"):
        z = np.asarray(kit.arr(trace["z"]), dtype=float)
        xs, ys = [int(v) for v in kit.arr(trace.get("x", range(z.shape[1])))], \
            [int(v) for v in kit.arr(trace.get("y", range(z.shape[0])))]
        if z.shape != (5, 5) or sorted(xs) != [1, 2, 3, 4, 5] or sorted(ys) != [1, 2, 3, 4, 5]:
            continue
        for r_on_y in (True, False):
            cells = {((y, x) if r_on_y else (x, y)): z[i, j] for i, y in enumerate(ys) for j, x in enumerate(xs)}
            if all(cells.get(k, 0) == expected.get(k, 0) for k in cells) and sum(cells.values()) == sum(expected.values()):
                return
    raise AssertionError(f"no heatmap shows the R×F counts {expected}")


@pytest.mark.parametrize("role, lang", cases("segments"))
def test_segments_figures(pages, role, lang):
    engine = pages.engine
    run = kit.run_id(engine)
    total = kit.scalar(engine, "SELECT COUNT(*) FROM customer_segments WHERE run_id = :r", r=run)
    at = pages.open(role, "segments", lang)
    assert count_caption(at) == (total, total)
    grid = kit.frame(engine, "SELECT rfm_r, rfm_f, COUNT(*) AS n FROM customer_segments WHERE run_id = :r "
                             "GROUP BY rfm_r, rfm_f", r=run)
    assert_rfm_grid(at, {(int(r), int(f)): int(n) for r, f, n in grid.itertuples(index=False)})
    for column in ("rfm_segment", "value_tier", "cluster_name"):
        trace = kit.bar_with_values(at, segment_counts(engine, column))
    # The cluster bar (the last found) names the clusters in the page's language, never by the
    # stored codes ("high:loan_balance_latest" shows as "high loans" / "高贷款").
    codes = kit.frame(engine, "SELECT DISTINCT cluster_name FROM customer_segments WHERE run_id = :r",
                      r=run)["cluster_name"]
    assert sorted(trace["x"]) == sorted(cluster_label(c, lang) for c in codes)
    if lang == "zh":
        assert not any(re.search("[A-Za-z_]", x) for x in trace["x"]), trace["x"]
    # The tag builder's count of selected customers.
    tagged = kit.scalar(engine, "SELECT COUNT(*) FROM customer_segments WHERE run_id = :r "
                                "AND (',' || tags || ',') LIKE '%,mortgage_holder,%'", r=run)
    at.text_input(key="tag_expr").input("mortgage_holder").run()
    assert not at.exception
    kit.assert_figure(kit.metric(at, r"selected|选中", 0), tagged, "customers selected")


def clv_truth(engine, where: str = "1 = 1", years: int = 3, **params) -> dict:
    row = kit.frame(engine, f"""
        SELECT COUNT(*) AS n, SUM(m.clv_margin_{years}y) AS total, AVG(m.clv_margin_{years}y) AS mean
        FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id
        JOIN customer_clv_margin m ON m.run_id = s.run_id AND m.customer_id = s.customer_id
        WHERE s.run_id = :r AND {where}""", r=kit.run_id(engine), **params).iloc[0]
    return {"customers": row["n"], "total": row["total"], "mean": row["mean"]}


def assert_lifecycle_metrics(at, truth: dict) -> None:
    kit.assert_figure(kit.metric(at, r"^\W*(customers|客户数)", 0), truth["customers"], "lifecycle customers")
    kit.assert_figure(kit.metric(at, r"total|合计", 1), truth["total"], "total CLV")
    kit.assert_figure(kit.metric(at, r"average|mean|平均", 2), truth["mean"], "average CLV")


@pytest.mark.parametrize("role, lang", cases("lifecycle"))
def test_lifecycle_figures(pages, role, lang):
    engine = pages.engine
    run = kit.run_id(engine)
    at = pages.open(role, "lifecycle", lang)
    assert_lifecycle_metrics(at, clv_truth(engine))
    kit.bar_with_values(at, segment_counts(engine, "lifecycle_stage"))
    tiers = kit.frame(engine, "SELECT SUM(m.clv_margin_3y) AS v FROM customer_segments s JOIN customer_clv_margin m "
                              "ON m.run_id = s.run_id AND m.customer_id = s.customer_id WHERE s.run_id = :r "
                              "GROUP BY s.value_tier", r=run)["v"]
    kit.bar_with_values(at, tiers, tol=1e-6)
    if access.can_see_customer_rows([role]):
        # A contact list: the customers with a live marketing consent (the demo's consents follow
        # its marketing flags), highest CLV first.
        top = kit.frame(engine, "SELECT m.customer_id FROM customer_clv_margin m JOIN customers c "
                                "ON c.customer_id = m.customer_id WHERE m.run_id = :r AND c.marketing_consent = 1 "
                                "ORDER BY m.clv_margin_3y DESC LIMIT 50", r=run)["customer_id"]
        assert any(set(top) <= set(t[c].astype(str)) for t in kit.tables(at) for c in t.columns), \
            "the top customers by CLV are not listed"


# --------------------------------------------------------------------------------------------
# Churn
# --------------------------------------------------------------------------------------------

CHURN_METRICS = [  # label pattern, position, how the value is computed
    (r"churn rate|流失率", 0, "rate"), (r"expected churn|预计流失", 1, "expected"),
    (r"value at risk|风险价值", 2, "var"), (r"roc|验证集", 3, "roc"), (r"pr.?auc", 4, "pr"),
    (r"brier", 5, "brier"), (r"lift|提升", 6, "lift"), (r"capture|捕获", 7, "capture"),
]


def churn_truth(engine) -> dict:
    run = kit.run_id(engine)
    active = kit.frame(engine, "SELECT COUNT(*) AS n, SUM(churn_probability) AS p, SUM(value_at_risk) AS v "
                               "FROM churn_scores WHERE run_id = :r AND churn_state = 'active'", r=run).iloc[0]
    top = kit.frame(engine, "SELECT lift, capture FROM churn_lift WHERE run_id = :r AND decile = 1", r=run).iloc[0]
    return {"rate": active["p"] / active["n"], "expected": active["p"], "var": active["v"], "active": active["n"],
            "roc": kit.run_metric(engine, "churn.holdout_roc_auc"), "pr": kit.run_metric(engine, "churn.holdout_pr_auc"),
            "brier": kit.run_metric(engine, "churn.holdout_brier"), "lift": top["lift"], "capture": top["capture"]}


@pytest.mark.parametrize("role, lang", cases("churn"))
def test_churn_figures(pages, role, lang):
    engine = pages.engine
    run = kit.run_id(engine)
    truth = churn_truth(engine)
    at = pages.open(role, "churn", lang)
    for pattern, position, key in CHURN_METRICS:
        kit.assert_figure(kit.metric(at, pattern, position), truth[key], f"churn {key}")
    by_segment = kit.frame(engine, "SELECT mean_probability FROM churn_rates WHERE run_id = :r "
                                   "AND dimension = 'rfm_segment' AND mean_probability IS NOT NULL", r=run)
    kit.bar_with_values(at, by_segment["mean_probability"])
    if access.can_see_customer_rows([role]):
        ranked = kit.frame(engine, "SELECT s.customer_id FROM churn_scores s JOIN customers c "
                                   "ON c.customer_id = s.customer_id WHERE s.run_id = :r AND s.churn_state = 'active' "
                                   "AND c.marketing_consent = 1 "
                                   "ORDER BY s.value_at_risk DESC, s.churn_probability DESC, s.customer_id LIMIT 1000",
                           r=run)["customer_id"].tolist()
        lists = [t for t in kit.tables(at) if any(t[c].astype(str).tolist() == ranked for c in t.columns)]
        assert lists, "the early-warning list is not the consenting active customers ranked by value at risk"
        kit.assert_figure(str(len(ranked)), len(lists[0]), "early-warning rows")


# --------------------------------------------------------------------------------------------
# Cross-sell
# --------------------------------------------------------------------------------------------

def cross_sell_truth(engine, category: str) -> dict:
    run = kit.run_id(engine)
    funnel = kit.frame(engine, "SELECT excluded_expired_assessment AS expired, excluded_suitability AS suitability, "
                               "excluded_no_consent AS consent, excluded_credit_grade AS credit_grade, "
                               "excluded_credit_complaint AS credit_complaint FROM cross_sell_categories "
                               "WHERE run_id = :r AND category = :c", r=run, c=category).iloc[0]
    listed, _ = cross_sell.campaign_list(engine, run, category, viewer=Viewer("t", ("marketing",)),
                                          limit=int(settings.get("EXPORT_MAX_ROWS")))
    return {"listed": len(listed), **{k: int(v) for k, v in funnel.items()}}


def assert_campaign_figures(at, truth: dict) -> None:
    # the exclusions caption (the up-sell caption names consent too, with no figures)
    captions = [c for c in kit.texts(at, "caption", "markdown") if kit._match(r"consent|授权", c)]
    captioned = [v for k, v in truth.items() if k not in ("credit_grade", "credit_complaint")]
    assert any(kit.same_values([f.value for f in find_all(c)], captioned) for c in captions), (captions, truth)
    kit.bar_with_values(at, truth.values())


@pytest.mark.parametrize("role, lang", cases("cross_sell"))
def test_cross_sell_figures(pages, role, lang):
    engine = pages.engine
    run = kit.run_id(engine)
    at = pages.open(role, "cross_sell", lang)
    category = kit.widget(at, r"categor|类别", kinds=("selectbox", "radio")).value
    assert_campaign_figures(at, cross_sell_truth(engine, category))
    rules = kit.scalar(engine, "SELECT COUNT(*) FROM cross_sell_rules WHERE run_id = :r", r=run)
    label = next(e.label for e in at.expander if kit._match(r"rule|规则", e.label))
    assert [f.value for f in find_all(label)] == [rules], label
    opportunities = kit.frame(engine, "SELECT expected_value_total FROM cross_sell_opportunities WHERE run_id = :r",
                              r=run)["expected_value_total"]
    kit.bar_with_values(at, opportunities)


# --------------------------------------------------------------------------------------------
# Risk tiers
# --------------------------------------------------------------------------------------------

def risk_truth(engine) -> dict:
    row = kit.frame(engine, "SELECT COUNT(*) AS customers, SUM(suitability_mismatch) AS mismatches, "
                            "SUM(assessment_expired) AS expired, SUM(balance_drop) AS drops FROM risk_flags "
                            "WHERE run_id = :r", r=kit.run_id(engine)).iloc[0]
    return {k: int(v) for k, v in row.items()}


def stacked_totals(at) -> list[list[float]]:
    """For each stacked bar chart, the height of every bar (the sum of its segments)."""
    out = []
    for fig in kit.charts(at):
        bars = [t for t in fig.get("data", []) if t.get("type") == "bar"]
        if fig.get("layout", {}).get("barmode") != "stack" or not bars:
            continue
        totals: dict = {}
        for t in bars:
            for x, y in zip(kit.arr(t["x"]).tolist(), kit.floats(t["y"]), strict=True):
                totals[x] = totals.get(x, 0.0) + y
        out.append(list(totals.values()))
    return out


def risk_counts_by(engine, column: str) -> list[int]:
    return kit.frame(engine, f"SELECT COUNT(*) AS n FROM risk_flags WHERE run_id = :r GROUP BY {column}",
                     r=kit.run_id(engine))["n"].tolist()


@pytest.mark.parametrize("role, lang", cases("risk"))
def test_risk_figures(pages, role, lang):
    engine = pages.engine
    run = kit.run_id(engine)
    truth = risk_truth(engine)
    at = pages.open(role, "risk", lang)
    kit.assert_figure(kit.metric(at, r"^\W*(customers|客户数)", 0), truth["customers"], "risk customers")
    kit.assert_figure(kit.metric(at, r"suitab|适当性", 1), truth["mismatches"], "suitability mismatches")
    kit.assert_figure(kit.metric(at, r"assess|测评", 2), truth["expired"], "expired assessments")
    kit.assert_figure(kit.metric(at, r"drop|余额", 3), truth["drops"], "balance drops")
    by_branch = risk_counts_by(engine, "branch_id")
    stacks = stacked_totals(at)
    assert len(stacks) >= 2 and all(kit.same_values(s, by_branch) for s in stacks[:2]), (stacks, by_branch)
    heat = [np.nansum(np.asarray(kit.arr(t["z"]), dtype=float)) for t in kit.traces(at, "heatmap")]
    assert truth["customers"] in heat, heat
    if access.can_see_customer_rows([role]):
        mismatches = kit.frame(engine, "SELECT holding_id FROM risk_mismatches WHERE run_id = :r", r=run)
        drops = kit.frame(engine, "SELECT customer_id FROM risk_flags WHERE run_id = :r AND balance_drop = 1", r=run)
        shown = kit.tables(at)
        assert any(len(t) == len(mismatches) and "holding_id" in t.columns
                   and set(t["holding_id"].astype(int)) == set(mismatches["holding_id"]) for t in shown)
        assert any(len(t) == len(drops) and set(t.iloc[:, 0].astype(str)) == set(drops["customer_id"]) for t in shown)


# --------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------

def dq_scores(engine, scope: str = "overall") -> dict[str, float]:
    rows = kit.frame(engine, "SELECT scope_value, dimension, score FROM dq_scores WHERE run_id = :r AND scope = :s",
                     r=kit.run_id(engine), s=scope)
    if scope == "overall":
        return dict(zip(rows["dimension"], rows["score"], strict=True))
    return dict(zip(rows[rows["dimension"] == "overall"]["scope_value"],
                    rows[rows["dimension"] == "overall"]["score"], strict=True))


def assert_rules_table(at, engine) -> None:
    rules = kit.frame(engine, "SELECT rule, checked, failed FROM dq_rule_results WHERE run_id = :r",
                      r=kit.run_id(engine)).set_index("rule")
    # the page names each rule by its label (its name when the catalog has none), in either language
    by_label = {lang: {i18n.label("dq_rule", r, lang): r for r in rules.index} for lang in ("en", "zh")}
    for t in kit.tables(at):
        for col in t.columns:
            names = next((labels for labels in by_label.values() if set(t[col].astype(str)) == set(labels)), None)
            if names is not None:
                expected = rules.loc[[names[v] for v in t[col].astype(str)]]
                numeric = [c for c in t.columns if c != col and pd.api.types.is_numeric_dtype(t[c])]
                assert any((t[c].to_numpy() == expected["checked"].to_numpy()).all() for c in numeric), "checked"
                assert any((t[c].to_numpy() == expected["failed"].to_numpy()).all() for c in numeric), "failed"
                return
    raise AssertionError("no table lists the run's data-quality rules")


@pytest.mark.parametrize("role, lang", cases("data_quality"))
def test_data_quality_figures(pages, role, lang):
    engine = pages.engine
    scores = dq_scores(engine)
    at = pages.open(role, "data_quality", lang)
    gauges = [t for t in kit.traces(at, "indicator") if "gauge" in t.get("mode", "")]
    assert len(gauges) == 1 and abs(gauges[0]["value"] - 100 * scores["overall"]) <= 0.05, gauges
    named = [t["value"] for t in kit.traces(at, "indicator") if "gauge" not in t.get("mode", "")]
    assert named and all(any(abs(v - 100 * s) <= 0.05 for s in scores.values()) for v in named), named
    # Bars show the percentage rounded once to one decimal, as the named rates do.
    dimensions = [round(100 * s, 1) for d, s in scores.items() if d != "overall"]
    kit.bar_with_values(at, dimensions)
    kit.bar_with_values(at, [round(100 * s, 1) for s in dq_scores(engine, "branch").values()])
    assert_rules_table(at, engine)


# --------------------------------------------------------------------------------------------
# Customer 360
# --------------------------------------------------------------------------------------------

def lookup(at, customer_id: str):
    at.text_input[0].input(customer_id)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def customer_truth(engine, customer_id: str) -> dict:
    run = kit.run_id(engine)
    c = kit.frame(engine, "SELECT status, risk_tolerance, credit_grade, branch_id FROM customers "
                          "WHERE customer_id = :c", c=customer_id).iloc[0]
    s = kit.frame(engine, "SELECT m.clv_margin_3y, k.churn_probability, k.value_at_risk FROM customer_segments g "
                          "JOIN customer_clv_margin m ON m.run_id = g.run_id AND m.customer_id = g.customer_id "
                          "LEFT JOIN churn_scores k ON k.run_id = g.run_id AND k.customer_id = g.customer_id "
                          "WHERE g.run_id = :r AND g.customer_id = :c", r=run, c=customer_id).iloc[0]
    months = kit.frame(engine, "SELECT aum FROM customer_monthly WHERE customer_id = :c ORDER BY month",
                       c=customer_id)["aum"].tail(24)
    return {**c.to_dict(), **s.to_dict(), "aum": months.tolist()}


def assert_customer(at, truth: dict, exact_balances: bool = True) -> None:
    shown = {m.label: m.value for m in at.metric}
    for key, pattern, position in [("status", r"status|状态", 0), ("risk_tolerance", r"toleran|风险承受", 1),
                                   ("credit_grade", r"credit|信用", 2), ("branch_id", r"branch|网点", 3)]:
        value = kit.metric(at, pattern, position)
        if truth[key] is None:
            assert value in ("—", ""), (key, value)
        else:
            assert any(form in value for form in kit.display_forms(truth[key])), (key, value, truth[key])
    for key, pattern in [("clv_margin_3y", r"clv.*3|3.*clv|3年"), ("churn_probability", r"churn.*prob|流失概率"),
                         ("value_at_risk", r"value.at.risk|风险价值")]:
        matching = [v for label, v in shown.items() if kit._match(pattern, label)]
        assert len(matching) == 1, f"{key}: {shown}"
        kit.assert_figure(matching[0], truth[key], f"customer {key}")
    if not exact_balances:
        # Balances are need-to-know: marketing sees each month's AUM band, never the amounts.
        bands = [aum_band(v) for v in truth["aum"]]
        assert any(t["aum_band"].tolist() == bands for t in kit.tables(at) if "aum_band" in t.columns)
        assert not kit.traces(at, "scatter"), "a role without exact balances sees a balance chart"
        return
    aum = [t for t in kit.traces(at, "scatter") if len(kit.floats(t["y"])) == len(truth["aum"])
           and kit.same_values(kit.floats(t["y"]), truth["aum"], tol=1e-9)]
    assert aum, "no line shows the customer's monthly AUM"


def sample_customers(engine, n: int = 2) -> list[str]:
    return kit.frame(engine, "SELECT g.customer_id FROM customer_segments g JOIN churn_scores k "
                             "ON k.run_id = g.run_id AND k.customer_id = g.customer_id WHERE g.run_id = :r "
                             "AND k.churn_state = 'active' ORDER BY g.customer_id LIMIT :n",
                     r=kit.run_id(engine), n=n)["customer_id"].tolist()


@pytest.mark.parametrize("role, lang", cases("customer_360"))
def test_customer_360_figures(pages, role, lang):
    engine = pages.engine
    customer = sample_customers(engine)[0]
    at = lookup(pages.open(role, "customer_360", lang), customer)
    assert_customer(at, customer_truth(engine, customer), exact_balances=Viewer("t", (role,)).exact_balances)


# --------------------------------------------------------------------------------------------
# Audit log and Admin
# --------------------------------------------------------------------------------------------

def audit_window_seqs(engine, username: str, **where) -> list[int]:
    """The seqs the page's query saw: entries before the audit_read that this run wrote after it (the
    log's read; a compliance user's signals section writes a second one, naming its signals)."""
    last_read = kit.scalar(engine, "SELECT MAX(seq) FROM audit_log WHERE username = :u AND event = 'audit_read' "
                                   "AND parameters NOT LIKE '%\"signals\"%'", u=username)
    today = dt.datetime.now(dt.UTC).date()
    since = dt.datetime.combine(today - dt.timedelta(days=7), dt.time.min)
    until = dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min)
    clauses = ["seq < :last", "at_utc >= :since", "at_utc < :until"]
    params = {"last": last_read, "since": since, "until": until}
    for column, value in where.items():
        clauses.append(f"{column} = :{column}")
        params[column] = value
    return kit.frame(engine, f"SELECT seq FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT 1000",
                     **params)["seq"].tolist()


@pytest.mark.parametrize("role, lang", cases("audit_log"))
def test_audit_log_figures(pages, role, lang):
    at = pages.open(role, "audit_log", lang)
    expected = audit_window_seqs(pages.engine, pages.username(role))
    shown = kit.tables(at)[0]
    assert shown["seq"].astype(int).tolist() == expected
    caption = kit.text_with(at, r"entries|条", "caption")
    assert find_all(caption)[0].shows(len(expected)), caption


@pytest.mark.parametrize("role, lang", cases("admin"))
def test_admin_figures(pages, role, lang):
    engine = pages.engine
    at = pages.open(role, "admin", lang)
    current = kit.run_id(engine)
    line = kit.text_with(at, r"current run|当前", "markdown")
    assert find_all(line)[0].value == current, line
    usernames = set(kit.frame(engine, "SELECT username FROM users")["username"])
    runs = kit.frame(engine, "SELECT run_id, status FROM refresh_runs ORDER BY run_id DESC LIMIT 20")
    shown = kit.tables(at)
    assert any(set(t[c].astype(str)) == usernames for t in shown for c in t.columns), "users table"
    assert any(t[c].astype(int).tolist() == runs["run_id"].tolist() for t in shown for c in t.columns
               if pd.api.types.is_numeric_dtype(t[c])), "refresh runs table"
