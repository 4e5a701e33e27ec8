"""Risk exploration (issue 14): alert counts per refresh run by kind, and the assessments falling due
within 30 days of a run's as-of date, on a hand-built store (both dialects), and on the shared demo
store, whose generator makes 6 % of its customers' assessments fall due within 30 days."""

from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from analytics import charts_risk
from analytics.access import AccessDenied, Scope, Viewer
from analytics.alerts.read import RISK_KINDS
from analytics.refresh import run_refresh
from analytics.risk import ASSESSMENT_DUE_COLUMNS, TREND_KINDS, alert_trend, read_assessments_due
from analytics.runs import get_run_metrics
from analytics.store import read_frame
from tests.analytics import store_rows

RISK = Viewer("tester", ("risk",))
EXECUTIVE = Viewer("boss", ("executive",))


def _assess(engine, customer_id, day, tolerance="keep"):
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET risk_assessed_at = :d WHERE customer_id = :c"),
                     {"d": day, "c": customer_id})
        if tolerance != "keep":
            conn.execute(text("UPDATE customers SET risk_tolerance = :t WHERE customer_id = :c"),
                         {"t": tolerance, "c": customer_id})


def test_trend_kinds_are_the_risk_worklists():
    assert TREND_KINDS == RISK_KINDS


def test_alert_trend_and_assessments_due_by_hand(engine):
    """store_rows at as-of 2026-10-31 (RISK_ASSESSMENT_VALID_DAYS 365: an assessment of day d is
    valid through d + 365 and expires the day after, so the 30-day window takes assessments from
    2025-10-31 (expires 2026-11-01, 1 day left) to 2025-11-29 (expires 2026-11-30, 30 days left)).

    C1 (tolerance C3) assessed 2025-10-31: due, 1 day left. C2 (C1) assessed 2025-11-30: expires
    2026-12-01, 31 days left, not due. C3 (no tolerance) assessed 2025-11-15: missing, not due.
    """
    store_rows.fill(engine)
    _assess(engine, "C000000001", date(2025, 10, 31))
    _assess(engine, "C000000002", date(2025, 11, 30))
    _assess(engine, "C000000003", date(2025, 11, 15))
    first = run_refresh(engine)
    assert get_run_metrics(engine, first)["risk.as_of"][:10] == "2026-10-31"
    due = read_assessments_due(engine, first, viewer=RISK)
    assert list(due.columns) == list(ASSESSMENT_DUE_COLUMNS)
    assert due["customer_id"].tolist() == ["C000000001"]
    assert due["expires_on"].tolist() == [date(2026, 11, 1)] and due["days_left"].tolist() == [1]
    assert due["name"].tolist() != ["张三"]  # masked for risk
    _assess(engine, "C000000002", date(2025, 11, 29))  # the current record: 30 days left, now due
    due = read_assessments_due(engine, first, viewer=RISK)
    assert due["customer_id"].tolist() == ["C000000001", "C000000002"] and due["days_left"].tolist() == [1, 30]
    assert read_assessments_due(engine, first, viewer=RISK, branch_id="BR002")["customer_id"].tolist() == ["C000000002"]
    scoped = Viewer("s", ("risk",), Scope(branches={"BR001"}))
    assert read_assessments_due(engine, first, viewer=scoped)["customer_id"].tolist() == ["C000000001"]
    with pytest.raises(AccessDenied):
        read_assessments_due(engine, first, viewer=EXECUTIVE)

    # Alerts of run 1: C3's assessment is missing, and C1's expires within the alerts' window of
    # EXPIRY_WINDOW_DAYS (30: through 2026-11-30; C2's expired on 2026-12-01 at the run): 2.
    trend = alert_trend(engine, viewer=RISK)
    one = trend.set_index("kind")["alerts"]
    assert set(trend["run_id"]) == {first} and list(one.index) == list(TREND_KINDS)
    alerts = read_frame(engine, "SELECT kind, COUNT(*) AS n FROM alerts WHERE first_seen_run = :r GROUP BY kind",
                        {"r": first}).set_index("kind")["n"]
    assert one.to_dict() == {k: int(alerts.get(k, 0)) for k in TREND_KINDS}
    assert one["assessment_expiring"] == 2
    # Run 2: C1 and C2 reassessed, so only C3's alert stands.
    _assess(engine, "C000000001", date(2026, 10, 1))
    _assess(engine, "C000000002", date(2026, 10, 1))
    second = run_refresh(engine)
    trend = alert_trend(engine, viewer=RISK)
    by_run = trend[trend["kind"] == "assessment_expiring"].set_index("run_id")["alerts"]
    assert by_run.to_dict() == {first: 2, second: 1}
    assert trend.groupby("run_id")["finished_at"].nunique().eq(1).all()
    assert alert_trend(engine, viewer=RISK, runs=1)["run_id"].unique().tolist() == [second]
    # Scope: BR002 holds only C2, who had no alert in either run.
    br2 = alert_trend(engine, viewer=Viewer("s", ("risk",), Scope(branches={"BR002"})))
    assert br2["alerts"].sum() == 0 and len(br2) == 2 * len(TREND_KINDS)
    # An aggregate-only role sees no count under MIN_CELL_CUSTOMERS (5); zeros stay.
    hidden = alert_trend(engine, viewer=EXECUTIVE)
    assert hidden["alerts"].isna().sum() == (trend["alerts"] > 0).sum() > 0
    assert hidden["alerts_suppressed"].sum() == (trend["alerts"] > 0).sum()
    assert (hidden["alerts"].dropna() == 0).all()


def test_alert_trend_chart_has_one_point_per_refresh_on_a_date_axis():
    at = pd.Timestamp("2026-11-01 06:30")
    trend = pd.DataFrame({"run_id": [1, 1], "finished_at": [at, at], "kind": ["balance_drop", "id_expiring"],
                          "alerts": [4, 7]})
    fig = charts_risk.alert_trend(trend, lang="zh")
    assert len(fig.data) == 2 and [len(t.x) for t in fig.data] == [1, 1]
    assert fig.layout.xaxis.type == "date" and fig.layout.xaxis.tickformat == "%Y-%m-%d"
    assert list(fig.layout.xaxis.range) == [at - timedelta(days=1), at + timedelta(days=1)]
    assert [t.name for t in fig.data] != ["balance_drop", "id_expiring"]  # translated kinds
    assert fig.data[1].y == (7,)
    assert charts_risk.alert_trend(trend.iloc[0:0]).layout.title.text



def test_demo_store_has_the_documented_assessments_due(demo_engine):
    # The shared demo store: 3,000 rows, 6 % of them (180) with an assessment expiring 4-30 days after
    # the run's as-of day (2026-10-31); every other current one is at least 31 days from expiry.
    due = read_assessments_due(demo_engine, viewer=RISK)
    assert len(due) == round(0.06 * 3000) == 180
    assert due["days_left"].between(4, 30).all()
    assert due["days_left"].is_monotonic_increasing  # soonest first
    assert (pd.to_datetime(due["expires_on"]) - pd.Timestamp(date(2026, 10, 31))).dt.days.tolist() == \
        due["days_left"].tolist()


def _plan_of(engine, marker: str, read) -> str:
    """SQLite's query plan of the statement holding ``marker`` that ``read()`` runs."""
    from sqlalchemy import event

    statements = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if marker in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    (statement, parameters), = statements
    with engine.connect() as conn:
        return " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))


def test_the_risk_lists_read_through_their_indexes(demo_engine):
    """At a million customers each list walked every risk flag of the run (the assessments falling
    due made a view of the page take 5.7 s); through their indexes they read what they list."""
    from analytics.risk import read_balance_drops

    plan = _plan_of(demo_engine, "risk_assessed_at >=", lambda: read_assessments_due(demo_engine, viewer=RISK))
    assert "USING INDEX ix_customers_risk_assessed" in plan, plan
    plan = _plan_of(demo_engine, "balance_drop_reason", lambda: read_balance_drops(demo_engine, viewer=RISK))
    assert "USING INDEX ix_risk_flags_drops" in plan, plan
