"""Alerts: detection of each kind against hand-computed answers, one open alert per customer and kind
across refreshes, the worklist door (scope, kinds, masking, consent), audited status changes and the
new/resolved trend. Everything runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from analytics import audit, consent
from analytics.access import AccessDenied, Scope, Viewer
from analytics.alerts import AlertError, change_status, history, merge, trend, worklist
from analytics.alerts.detect import detail_text, detect, next_birthday
from analytics.schema import (
    alert_history,
    alerts,
    branches,
    churn_scores,
    contacts,
    current_run,
    customers,
    refresh_runs,
    risk_flags,
)
from analytics.store import bulk_insert

AS_OF = date(2026, 10, 31)
T0 = datetime(2000, 1, 1)


def _customer(cid, rm, branch="BR1", **kw):
    row = {"customer_id": cid, "name": kw.pop("name", f"客户{cid}"), "branch_id": branch,
           "relationship_manager": rm, "open_date": date(2015, 1, 1), "status": "active",
           "marketing_consent": False, "birth_date": date(1970, 6, 15), "id_number": f"11010119700615{cid[-4:]}",
           "phone": f"1380000{cid[-4:]}", "id_expiry_date": date(2035, 1, 1), "risk_tolerance": "C3",
           "risk_assessed_at": date(2026, 6, 1)}
    row.update(kw)
    return row


# Hand-chosen rows; the reference day is 2026-10-31 and RISK_ASSESSMENT_VALID_DAYS is 365.
CUSTOMERS = [
    # birthday 3 days after the reference day, consenting; assessed 2025-11-15: valid through
    # 2026-11-15, so it expires 2026-11-16, within 30 days
    _customer("C0001", "RM_A", birth_date=date(1980, 11, 3), risk_assessed_at=date(2025, 11, 15)),
    # same birthday without consent: no birthday alert; ID expires exactly 30 days after: alert
    _customer("C0002", "RM_A", birth_date=date(1990, 11, 3), id_expiry_date=date(2026, 11, 30)),
    # ID expires 31 days after: none; never assessed: missing; born 29 Feb: next birthday 2027-02-28
    _customer("C0003", "RM_B", "BR2", id_expiry_date=date(2026, 12, 1), risk_tolerance=None,
              risk_assessed_at=None, birth_date=date(1972, 2, 29)),
    # closed: nothing at all, even with an expired ID
    _customer("C0004", "RM_B", "BR2", status="closed", id_expiry_date=date(2020, 1, 1)),
    # a complaint 16 days old (unresolved) and one 15 days old; assessed exactly 365 days before: valid
    # through the reference day, expires the next day
    _customer("C0005", "RM_B", "BR2", risk_assessed_at=date(2025, 10, 31)),
    # only a resolved old complaint; ID already expired (due on the reference day)
    _customer("C0006", "RM_A", id_expiry_date=date(2026, 9, 1)),
    # opened after the reference day: not yet a customer on it
    _customer("C0007", "RM_A", open_date=date(2026, 11, 5), id_expiry_date=date(2020, 1, 1)),
]

EXPECTED = {
    ("C0001", "assessment_expiring", date(2026, 11, 16)),
    ("C0001", "birthday", date(2026, 11, 3)),
    ("C0001", "suitability_mismatch", AS_OF + timedelta(days=7)),
    ("C0002", "churn_value_at_risk", AS_OF + timedelta(days=7)),
    ("C0002", "id_expiring", date(2026, 11, 30)),
    ("C0003", "assessment_expiring", AS_OF),
    ("C0003", "balance_drop", AS_OF + timedelta(days=7)),
    ("C0005", "assessment_expiring", date(2026, 11, 1)),
    ("C0005", "complaint_unresolved", AS_OF + timedelta(days=7)),
    ("C0006", "id_expiring", AS_OF),
}


def _flags(cid, branch, mismatch=False, drop=False):
    return {"customer_id": cid, "branch_id": branch, "risk_tolerance": "C3", "value_tier": "mass", "aum": 1000.0,
            "suitability_mismatch": mismatch, "mismatch_holdings": 1 if mismatch else 0,
            "mismatch_balance": 10.0 if mismatch else 0.0, "assessment_expired": False, "assessment_missing": False,
            "balance_drop": drop, "aum_change_pct": -0.5 if drop else 0.0}


def _run(engine, run_id: int, *, mismatch=("C0001",), drop=("C0003",), churn=(("C0002", "active", 600.0),)):
    """A published run with hand-made risk flags and churn scores."""
    with engine.begin() as conn:
        conn.execute(insert(refresh_runs).values(run_id=run_id, started_at=T0, status="succeeded"))
        conn.execute(text("DELETE FROM current_run"))
        conn.execute(insert(current_run).values(id=1, run_id=run_id, published_at=T0))
    rows = [_flags(c["customer_id"], c["branch_id"], c["customer_id"] in mismatch, c["customer_id"] in drop)
            for c in CUSTOMERS]
    bulk_insert(engine, risk_flags, pd.DataFrame(rows).assign(run_id=run_id))
    scores = [{"customer_id": c, "churn_state": s, "churn_probability": 0.6, "clv": v / 0.6, "value_at_risk": v}
              for c, s, v in (*churn, ("C0005", "active", 499.0), ("C0006", "inactive", 10000.0))]
    bulk_insert(engine, churn_scores, pd.DataFrame(scores).assign(run_id=run_id))


@pytest.fixture
def store(engine, monkeypatch, tmp_path):
    # each test's store is new (PostgreSQL's schema is dropped): its audit chain gets its own checkpoint
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    monkeypatch.setenv("ALERT_CHURN_MIN_VALUE_AT_RISK", "500")
    monkeypatch.setenv("ALERT_DUE_DAYS", "7")
    monkeypatch.setenv("RISK_ASSESSMENT_VALID_DAYS", "365")
    bulk_insert(engine, branches, pd.DataFrame([
        {"branch_id": b, "name": b, "city": "北京市", "province": "北京市"} for b in ("BR1", "BR2")]))
    bulk_insert(engine, customers, pd.DataFrame(CUSTOMERS))
    bulk_insert(engine, contacts, pd.DataFrame([
        {"customer_id": "C0005", "contacted_at": datetime(2026, 10, 15, 10), "channel": "phone", "kind": "complaint",
         "resolved": False},
        {"customer_id": "C0005", "contacted_at": datetime(2026, 10, 16, 9), "channel": "phone", "kind": "complaint",
         "resolved": None},
        {"customer_id": "C0006", "contacted_at": datetime(2026, 10, 1), "channel": "branch", "kind": "complaint",
         "resolved": True},
        {"customer_id": "C0003", "contacted_at": datetime(2026, 9, 1), "channel": "app", "kind": "service",
         "resolved": None},
    ]))
    consent.grant(engine, "C0001", "marketing", T0)
    _run(engine, 1)
    return engine


def _keys(frame):
    return {(r.customer_id, r.kind, r.due_date) for r in frame.itertuples()}


def _rm(name):
    return Viewer(username=f"u_{name}", roles=("relationship_manager",), scope=Scope(portfolios={name}))


RISK = Viewer(username="u_risk", roles=("risk",))


def test_detection_known_answers(store):
    found = detect(store, 1, AS_OF)
    assert _keys(found) == EXPECTED
    owners = dict(zip(found["customer_id"], found["owner"], strict=False))
    assert owners["C0001"] == "RM_A" and owners["C0005"] == "RM_B"
    # detail says why without a personal value or an amount
    # (stored as a code and parameters, said in the reader's language)
    assert set(found.loc[found["kind"] == "birthday", "detail"]) == {'birthday_in {"days": 3}'}
    assert {detail_text(d, "en") for d in found.loc[found["kind"] == "birthday", "detail"]} == {"birthday in 3 day(s)"}
    assert {detail_text(d, "zh") for d in found.loc[found["kind"] == "birthday", "detail"]} == {"3 天后生日"}
    complaints = " ".join(found.loc[found["kind"] == "complaint_unresolved", "detail"])
    assert '"n": 1' in complaints and '"n": 2' not in complaints  # the 15-day-old complaint is not counted
    assert not found["detail"].str.contains("CNY|1980|客户").any()


def test_birthday_withdrawn_consent_is_not_detected(store):
    consent.withdraw(store, "C0001", "marketing", datetime(2001, 1, 1))
    assert ("C0001", "birthday", date(2026, 11, 3)) not in _keys(detect(store, 1, AS_OF))


@pytest.mark.parametrize(("birth", "ref", "expected"), [
    (date(1980, 11, 3), date(2026, 10, 31), date(2026, 11, 3)),
    (date(1980, 10, 31), date(2026, 10, 31), date(2026, 10, 31)),  # today counts
    (date(1980, 1, 2), date(2026, 12, 30), date(2027, 1, 2)),  # across the new year
    (date(1972, 2, 29), date(2027, 2, 1), date(2027, 2, 28)),  # common year
    (date(1972, 2, 29), date(2028, 2, 1), date(2028, 2, 29)),  # leap year
])
def test_next_birthday_table(birth, ref, expected):
    assert next_birthday(birth, ref) == expected


@given(st.dates(date(1900, 1, 1), date(2010, 12, 31)), st.dates(date(2011, 1, 1), date(2090, 12, 31)))
def test_next_birthday_is_the_first_on_or_after_the_day(birth, ref):
    day = next_birthday(birth, ref)
    assert ref <= day < ref + timedelta(days=366)
    assert (day.month, day.day) == (birth.month, birth.day) or (birth.month, birth.day, day.day) == (2, 29, 28)


def _open(engine):
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.status.in_(("new", "contacted")))).mappings().all()


def test_an_alert_is_never_duplicated_across_refreshes(store):
    assert merge(store, 1, AS_OF, detect(store, 1, AS_OF), now=datetime(2026, 11, 1)) == {
        "new": 10, "still_standing": 0, "cleared": 0, "resolved": 0}
    # run 2: C0001's mismatch is gone, C0006 now has one, everything else is still there
    _run(store, 2, mismatch=("C0006",))
    later = AS_OF + timedelta(days=30)
    counts = merge(store, 2, later, detect(store, 2, AS_OF), now=datetime(2026, 12, 1))
    assert counts == {"new": 1, "still_standing": 9, "cleared": 1, "resolved": 1}
    rows = _open(store)
    keys = [(r["customer_id"], r["kind"]) for r in rows]
    assert len(keys) == len(set(keys)) == 10
    kept = {(r["customer_id"], r["kind"]): r for r in rows}
    assert kept[("C0002", "id_expiring")]["first_seen"] == AS_OF  # first seen kept
    assert kept[("C0002", "id_expiring")]["first_seen_run"] == 1
    assert kept[("C0002", "id_expiring")]["last_seen_run"] == 2
    assert kept[("C0006", "suitability_mismatch")]["first_seen"] == later
    with store.connect() as conn:
        cleared = conn.execute(select(alerts).where(alerts.c.customer_id == "C0001",
                                                    alerts.c.kind == "suitability_mismatch")).mappings().one()
        steps = conn.execute(select(alert_history.c.changed_by, alert_history.c.from_status, alert_history.c.to_status,
                                    alert_history.c.during_run)
                             .where(alert_history.c.alert_id == cleared["alert_id"])
                             .order_by(alert_history.c.history_id)).all()
    assert cleared["status"] == "resolved" and cleared["outcome_note"] == "no longer detected"
    assert [tuple(s) for s in steps] == [("refresh", None, "new", 1), ("refresh", "new", "resolved", 2)]
    # the same merge again changes nothing; a returning condition opens a new alert
    assert merge(store, 2, later, detect(store, 2, AS_OF))["new"] == 0
    _run(store, 3)
    assert merge(store, 3, later, detect(store, 3, AS_OF))["new"] == 1
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM alerts WHERE customer_id = 'C0001' "
                                 "AND kind = 'suitability_mismatch'")).scalar() == 2


@pytest.mark.parametrize("block_rows", [1, 4, 10**6])
def test_the_stage_detects_and_merges_a_block_of_customers_at_a_time(store, block_rows):
    """The stage in blocks of 1, 4 or every customer merges what one pass merges: the same alerts,
    counts and history as the refreshes of the test above. An alert of an id outside every block
    (a customer no longer in the store) is cleared too."""
    from analytics.alerts.stage import alerts_stage
    from analytics.runs import RefreshContext, get_run_metrics

    with store.begin() as conn:  # a standing alert of a customer the store no longer has
        conn.execute(insert(alerts).values(customer_id="C9999", kind="birthday", status="new", due_date=AS_OF,
                                           first_seen=AS_OF, first_seen_run=1, last_seen_run=1, created_at=T0,
                                           updated_at=T0))
    alerts_stage(RefreshContext(engine=store, run_id=1, as_of_month=date(2026, 10, 1)), block_rows=block_rows)
    metrics = get_run_metrics(store, 1)
    assert (metrics["alerts.new"], metrics["alerts.still_standing"], metrics["alerts.cleared"]) == (10, 0, 1)
    assert metrics["alerts.detected"] == 10 and metrics["alerts.detected.birthday"] == 1
    _run(store, 2, mismatch=("C0006",))
    alerts_stage(RefreshContext(engine=store, run_id=2, as_of_month=date(2026, 10, 1)), block_rows=block_rows)
    metrics = get_run_metrics(store, 2)
    assert [metrics[f"alerts.{k}"] for k in ("new", "still_standing", "cleared", "resolved")] == [1, 9, 1, 1]
    rows = _open(store)
    assert len({(r["customer_id"], r["kind"]) for r in rows}) == len(rows) == 10
    assert {(r["customer_id"], r["kind"]) for r in rows} == _keys_only(detect(store, 2, AS_OF))
    with store.connect() as conn:
        gone = conn.execute(select(alerts.c.cleared_run, alerts.c.status).where(alerts.c.customer_id == "C9999")).one()
    assert tuple(gone) == (1, "resolved")


def _keys_only(frame):
    return {(r.customer_id, r.kind) for r in frame.itertuples()}


def test_a_resolved_alert_stays_closed_while_its_condition_lasts(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    rm = _rm("RM_A")
    rows, _ = worklist(store, viewer=rm, kinds=("id_expiring",))
    ids = [int(a) for a in rows["alert_id"]]
    change_status(store, ids[0], "resolved", "customer brings the new ID next week", viewer=rm)
    _run(store, 2)
    assert merge(store, 2, AS_OF, detect(store, 2, AS_OF))["new"] == 0  # not reopened, not duplicated
    assert len(worklist(store, viewer=rm, kinds=("id_expiring",))[0]) == 1
    with store.begin() as conn:  # the bank's data now has the renewed document: the alert clears
        conn.execute(text("UPDATE customers SET id_expiry_date = :d WHERE customer_id IN ('C0002', 'C0006')"),
                     {"d": date(2046, 1, 1)})
    _run(store, 3)
    assert merge(store, 3, AS_OF, detect(store, 3, AS_OF))["cleared"] == 2
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM alerts WHERE kind = 'id_expiring' AND cleared_run = 3")
                            ).scalar() == 2


def test_the_store_refuses_a_second_standing_alert(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    row = dict(_open(store)[0])
    row.pop("alert_id")
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(insert(alerts).values(**row))


def test_worklist_is_scoped_masked_and_by_kind(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    rows, left = worklist(store, viewer=_rm("RM_A"), today=AS_OF)
    assert set(rows["customer_id"]) == {"C0001", "C0002", "C0006"} and left == {"consent": 0}
    assert set(rows["owner"]) == {"RM_A"}
    assert not rows["name"].isin([c["name"] for c in CUSTOMERS]).any()
    assert rows["name"].str.endswith("*").all()
    # due before the day = overdue, listed first
    assert rows.iloc[0]["customer_id"] == "C0006" and bool(rows.iloc[0]["overdue"]) is False  # due == today
    rows, _ = worklist(store, viewer=_rm("RM_A"), today=date(2026, 11, 4))
    assert set(rows.loc[rows["overdue"], "kind"]) == {"id_expiring", "birthday"}
    # risk: the risk kinds, bank-wide; no birthday or churn alert
    rows, _ = worklist(store, viewer=RISK, today=AS_OF)
    assert set(rows["kind"]) == {"suitability_mismatch", "assessment_expiring", "balance_drop", "id_expiring",
                                 "complaint_unresolved"}
    assert len(rows) == 8
    scoped = Viewer(username="u_risk2", roles=("risk",), scope=Scope(branches={"BR2"}))
    assert set(worklist(store, viewer=scoped, today=AS_OF)[0]["customer_id"]) == {"C0003", "C0005"}
    for role in ("marketing", "executive", "compliance", "admin"):
        with pytest.raises(AccessDenied):
            worklist(store, viewer=Viewer(username="x", roles=(role,)))
    assert worklist(store, viewer=_rm("RM_NOBODY"))[0].empty


@pytest.mark.parametrize("statuses", [("new", "contacted"), None, ("new", "resolved"), ("dismissed",)])
def test_the_worklist_lists_overdue_alerts_first_then_by_due_date_at_any_limit(store, statuses):
    """Two reads (the overdue, then the rest) give the order one sort of every alert gives: overdue
    first, then by due date and id, cut at the limit wherever it falls."""
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    with store.begin() as conn:  # one resolved and one dismissed alert, due before the day
        ids = [r[0] for r in conn.execute(text("SELECT alert_id FROM alerts ORDER BY alert_id")).all()]
        conn.execute(text("UPDATE alerts SET status = 'resolved' WHERE alert_id = :a"), {"a": ids[0]})
        conn.execute(text("UPDATE alerts SET status = 'dismissed' WHERE alert_id = :a"), {"a": ids[-1]})
    day = date(2026, 11, 4)
    everything, _ = worklist(store, viewer=RISK, statuses=statuses, today=day, limit=1000)
    assert len(everything) >= (1 if statuses == ("dismissed",) else 3)
    overdue = everything["overdue"].to_numpy()
    expected = everything.assign(_late=~overdue).sort_values(["_late", "due_date", "alert_id"], kind="stable")
    assert everything["alert_id"].tolist() == expected["alert_id"].tolist()
    assert (everything["overdue"] == (everything["status"].isin(["new", "contacted"])
                                      & (pd.to_datetime(everything["due_date"]) < pd.Timestamp(day)))).all()
    for limit in range(1, len(everything) + 1):
        head, _ = worklist(store, viewer=RISK, statuses=statuses, today=day, limit=limit)
        assert head["alert_id"].tolist() == everything["alert_id"].tolist()[:limit]


def test_a_withdrawn_consent_hides_a_birthday_alert_at_once(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    consent.withdraw(store, "C0001", "marketing")
    rows, left = worklist(store, viewer=_rm("RM_A"), kinds=("birthday",))
    assert rows.empty and left == {"consent": 1}
    assert worklist(store, viewer=_rm("RM_A"))[1] == {"consent": 1}  # every kind: birthday too
    # Without birthdays chosen nothing is left out for consent (and nothing is counted).
    assert worklist(store, viewer=_rm("RM_A"), kinds=("id_expiring",))[1] == {"consent": 0}


def test_status_changes_are_checked_recorded_and_audited(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    rm = _rm("RM_A")
    rows, _ = worklist(store, viewer=rm)
    alert_id = int(rows.loc[rows["kind"] == "id_expiring", "alert_id"].iloc[0])
    other = int(worklist(store, viewer=_rm("RM_B"))[0]["alert_id"].iloc[0])
    with pytest.raises(AlertError, match="not on your worklist"):
        change_status(store, other, "contacted", viewer=rm)
    with pytest.raises(AlertError, match="outcome note is required"):
        change_status(store, alert_id, "resolved", "  ", viewer=rm)
    with pytest.raises(AlertError, match="Unknown alert status"):
        change_status(store, alert_id, "done", viewer=rm)
    assert change_status(store, alert_id, "contacted", "called, call back 13812345678", viewer=rm,
                         session_id="s1") == {"alert_id": alert_id, "from": "new", "to": "contacted"}
    with pytest.raises(AlertError, match="contacted; it cannot become contacted"):
        change_status(store, alert_id, "contacted", viewer=rm)
    change_status(store, alert_id, "resolved", "new ID copied at branch", viewer=rm)
    with pytest.raises(AlertError, match="is resolved"):
        change_status(store, alert_id, "dismissed", "x", viewer=rm)
    steps = history(store, alert_id, viewer=rm)
    assert list(steps["to_status"]) == ["new", "contacted", "resolved"]
    assert list(steps["changed_by"]) == ["refresh", "u_RM_A", "u_RM_A"]
    assert "13812345678" not in steps["note"].iloc[1] and "138****5678" in steps["note"].iloc[1]
    entries = audit.query(store, event="alert_change")
    assert len(entries) == 2 and set(entries["username"]) == {"u_RM_A"}
    assert all(f'"alert_id":{alert_id}' in t.replace(" ", "") for t in entries["target"])
    assert not any("13812345678" in str(r) for r in entries["reason"])
    rows, _ = worklist(store, viewer=rm, statuses=("resolved",))
    assert list(rows["outcome_note"]) == ["new ID copied at branch"]


def test_trend_counts_new_and_resolved_per_run(store):
    merge(store, 1, AS_OF, detect(store, 1, AS_OF))
    rows, _ = worklist(store, viewer=RISK, kinds=("assessment_expiring",))
    first = int(rows.loc[rows["customer_id"] == "C0003", "alert_id"].iloc[0])
    change_status(store, first, "resolved", "assessment booked", viewer=RISK)  # while run 1 is current
    _run(store, 2, mismatch=("C0006",))
    merge(store, 2, AS_OF, detect(store, 2, AS_OF))  # C0001's mismatch cleared, C0006's opened
    got = trend(store, viewer=RISK)
    assert got.to_dict("records") == [{"run_id": 1, "new": 8, "resolved": 1, "dismissed": 0},
                                      {"run_id": 2, "new": 1, "resolved": 1, "dismissed": 0}]
    got = trend(store, viewer=_rm("RM_B"))
    assert got.to_dict("records") == [{"run_id": 1, "new": 4, "resolved": 1, "dismissed": 0}]
    got = trend(store, viewer=_rm("RM_A"))  # C0001's mismatch cleared by run 2, C0006's opened
    assert got.to_dict("records") == [{"run_id": 1, "new": 6, "resolved": 0, "dismissed": 0},
                                      {"run_id": 2, "new": 1, "resolved": 1, "dismissed": 0}]
