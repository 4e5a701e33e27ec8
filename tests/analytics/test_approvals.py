"""Four-eyes approval: the whole flow for both kinds, on SQLite and PostgreSQL; self-approval, a
non-approver, expiry, a second use, someone else's approval and a tampered request are refused
with one line, audited, and leave the request as it was."""

import datetime as dt
import hashlib
import json

import pandas as pd
import pytest
from sqlalchemy import text, update

from analytics import approvals, audit, export_manifests
from analytics.access import AccessDenied, Scope, Viewer
from analytics.approvals import ApprovalRefused
from analytics.customer360 import CustomerNotFound
from analytics.schema import approval_requests
from tests.analytics import store_rows

T0 = dt.datetime(2026, 3, 2, 9, 0)
REASON = "case 2026-118: identity check requested by the branch"
ANN = Viewer("ann", ("compliance",))      # requester
BOB = Viewer("bob", ("compliance",))      # approver
MIA = Viewer("mia", ("marketing",))       # a list role: exports, never approves


@pytest.fixture
def store(engine, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "ckpt"))
    monkeypatch.setenv("APPROVAL_TTL_HOURS", "24")
    store_rows.fill(engine)
    return engine


def _events(engine, event):
    frame = audit.query(engine, event=event)
    return [json.loads(t) for t in frame["target"]]


def _frame(n):
    return pd.DataFrame({"customer_id": [f"C{i % 3 + 1:09d}" for i in range(n)], "value_tier": ["mass"] * n})


def test_unmask_flow_request_approve_show_once(store):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON, now=T0)
    req = approvals.get(store, rid)
    assert (req["kind"], req["status"], req["requested_by"]) == ("unmask", "pending", "ann")
    assert json.loads(req["definition"]) == {"customer_id": "C000000001", "field": "phone"}
    assert pd.Timestamp(req["expires_at"]) == pd.Timestamp(T0 + dt.timedelta(hours=24))
    assert audit.query(store, event="unmask").empty  # nothing revealed yet
    assert approvals.pending(store, approver=BOB)["request_id"].tolist() == [rid]
    assert approvals.pending(store, approver=ANN).empty  # one's own request is not to decide

    approvals.approve(store, rid, approver=BOB, comment="ok, case on file", now=T0 + dt.timedelta(hours=1))
    req = approvals.get(store, rid)
    assert (req["status"], req["decided_by"], req["comment"]) == ("approved", "bob", "ok, case on file")
    # an approval is good for APPROVAL_TTL_HOURS from the decision
    assert pd.Timestamp(req["expires_at"]) == pd.Timestamp(T0 + dt.timedelta(hours=25))

    cid, field, value = approvals.consume_unmask(store, rid, viewer=ANN, now=T0 + dt.timedelta(hours=2))
    assert (cid, field, value) == ("C000000001", "phone", "013812345678")
    unmask = _events(store, "unmask")
    assert unmask == [{"approval_id": rid, "customer_ids": ["C000000001"], "fields": ["phone"]}]
    with pytest.raises(ApprovalRefused, match=f"Approval #{rid} was already used"):
        approvals.consume_unmask(store, rid, viewer=ANN, now=T0 + dt.timedelta(hours=3))
    assert len(_events(store, "unmask")) == 1
    request_entry = _events(store, "approval_request")[0]
    assert request_entry == {"approval_id": rid, "kind": "unmask", "customer_ids": ["C000000001"], "fields": ["phone"]}
    decision = _events(store, "approval_decision")[0]
    assert decision["decision"] == "approved" and decision["approval_id"] == rid
    assert _events(store, "approval_refused")[-1]["problem"] == "used"
    assert audit.verify(store).ok


def test_export_flow_request_approve_download_once(store):
    frame = _frame(12)
    rid = approvals.request_export(store, frame, viewer=MIA, stem="campaign-run1", fmt="csv",
                                   context={"page": "segments", "tier": "mass"}, reason=REASON, now=T0)
    req = approvals.get(store, rid)
    what = json.loads(req["definition"])
    assert req["rows"] == 12 and what["file_name"] == "campaign-run1.csv" and what["customers"] == 3
    assert what["context"] == {"page": "segments", "tier": "mass"}
    # the manifest is recorded with the request and named by it
    assert export_manifests.customers_of(store, req["manifest_id"]) == ["C000000001", "C000000002", "C000000003"]
    assert audit.query(store, event="export").empty

    with pytest.raises(AccessDenied):  # marketing sees no pending queue
        approvals.pending(store, approver=MIA)
    approvals.approve(store, rid, approver=BOB, comment="campaign approved", now=T0 + dt.timedelta(hours=1))
    with pytest.raises(ApprovalRefused, match="not yours"):
        approvals.consume_export(store, rid, viewer=BOB, now=T0 + dt.timedelta(hours=2))
    got = approvals.consume_export(store, rid, viewer=MIA, now=T0 + dt.timedelta(hours=2))
    assert got.rows == 12 and got.file_name == "campaign-run1.csv"
    assert hashlib.sha256(got.data).hexdigest() == req["file_sha256"] == got.sha256
    body = got.data.decode("utf-8-sig").splitlines()
    assert body[0] == '"customer_id","value_tier"' and len(body) == 13
    entry = _events(store, "export")[0]
    assert entry["approval_id"] == rid and entry["manifest_id"] == req["manifest_id"] and entry["rows"] == 12
    with pytest.raises(ApprovalRefused, match="already used"):  # a double download
        approvals.consume_export(store, rid, viewer=MIA, now=T0 + dt.timedelta(hours=3))
    with store.connect() as conn:  # the stored file is cleared once fetched
        assert conn.execute(text("SELECT payload FROM approval_requests")).scalar() is None
    assert len(_events(store, "export")) == 1


def test_requester_cannot_approve_own_request(store):
    rid = approvals.request_unmask(store, "C000000001", "name", viewer=ANN, reason=REASON, now=T0)
    with pytest.raises(ApprovalRefused, match="cannot decide your own request"):
        approvals.approve(store, rid, approver=ANN, comment="self", now=T0)
    # a second role does not help either: still the same person
    with pytest.raises(ApprovalRefused, match="cannot decide your own request"):
        approvals.approve(store, rid, approver=Viewer("ann", ("compliance", "admin")), comment="x", now=T0)
    assert approvals.get(store, rid)["status"] == "pending"
    assert [e["problem"] for e in _events(store, "approval_refused")] == ["self_approval", "self_approval"]


@pytest.mark.parametrize("roles", [("marketing",), ("admin",), ("risk",), ("executive",)])
def test_only_the_approving_role_decides(store, roles):
    rid = approvals.request_export(store, _frame(3), viewer=MIA, stem="x", fmt="csv", context={}, reason=REASON,
                                   now=T0)
    with pytest.raises(ApprovalRefused, match="Only the compliance role"):
        approvals.approve(store, rid, approver=Viewer("zed", roles), comment="fine", now=T0)
    assert approvals.get(store, rid)["status"] == "pending"


def test_rejected_request_cannot_be_used_and_drops_the_file(store):
    rid = approvals.request_export(store, _frame(6), viewer=MIA, stem="x", fmt="xlsx", context={}, reason=REASON,
                                   now=T0)
    with pytest.raises(ApprovalRefused, match="comment"):
        approvals.reject(store, rid, approver=BOB, comment="   ", now=T0)
    approvals.reject(store, rid, approver=BOB, comment="not needed", now=T0)
    with pytest.raises(ApprovalRefused, match=f"Request #{rid} is rejected, not approved"):
        approvals.consume_export(store, rid, viewer=MIA, now=T0)
    with pytest.raises(ApprovalRefused, match="only a pending request can be decided"):
        approvals.approve(store, rid, approver=BOB, comment="changed my mind", now=T0)
    with store.connect() as conn:
        assert conn.execute(text("SELECT payload FROM approval_requests")).scalar() is None


def test_pending_request_expires_after_the_ttl(store):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON, now=T0)
    assert approvals.expire_due(store, now=T0 + dt.timedelta(hours=23, minutes=59)) == []
    with pytest.raises(ApprovalRefused, match="only a pending request"):
        approvals.approve(store, rid, approver=BOB, comment="late", now=T0 + dt.timedelta(hours=24))
    assert approvals.get(store, rid)["status"] == "expired"
    assert _events(store, "approval_expire") == [{"approval_id": rid, "kind": "unmask"}]


def test_approved_but_unused_approval_expires(store):
    rid = approvals.request_export(store, _frame(4), viewer=MIA, stem="x", fmt="csv", context={}, reason=REASON,
                                   now=T0)
    approvals.approve(store, rid, approver=BOB, comment="ok", now=T0 + dt.timedelta(hours=2))
    with pytest.raises(ApprovalRefused, match=f"Approval #{rid} has expired"):
        approvals.consume_export(store, rid, viewer=MIA, now=T0 + dt.timedelta(hours=26))
    req = approvals.get(store, rid)
    assert req["status"] == "expired" and req["used_at"] is None
    assert audit.query(store, event="export").empty


def _tamper(engine, rid, **values):
    with engine.begin() as conn:
        conn.execute(update(approval_requests).where(approval_requests.c.request_id == rid).values(**values))


@pytest.mark.parametrize("change", [
    {"definition": json.dumps({"customer_id": "C000000002", "field": "phone"})},   # another customer
    {"definition": json.dumps({"customer_id": "C000000001", "field": "id_number"})},  # another field
    {"expires_at": T0 + dt.timedelta(days=30)},                                      # a longer life
    {"requested_by": "mia"},                                                         # another requester
])
def test_a_tampered_unmask_approval_is_refused(store, change):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON, now=T0)
    approvals.approve(store, rid, approver=BOB, comment="ok", now=T0)
    _tamper(store, rid, **change)
    user = Viewer(change.get("requested_by", "ann"), ("compliance",))
    with pytest.raises(ApprovalRefused, match="does not match what was approved"):
        approvals.consume_unmask(store, rid, viewer=user, now=T0 + dt.timedelta(hours=1))
    assert audit.query(store, event="unmask").empty
    assert approvals.get(store, rid)["used_at"] is None


def test_a_swapped_export_file_or_row_count_is_refused(store):
    rid = approvals.request_export(store, _frame(5), viewer=MIA, stem="x", fmt="csv", context={}, reason=REASON,
                                   now=T0)
    approvals.approve(store, rid, approver=BOB, comment="ok", now=T0)
    _tamper(store, rid, payload=b'"customer_id"\n"C000000009"\n')
    with pytest.raises(ApprovalRefused, match="the file was changed"):
        approvals.consume_export(store, rid, viewer=MIA, now=T0)
    _tamper(store, rid, rows=50)
    with pytest.raises(ApprovalRefused, match="the request was changed"):
        approvals.consume_export(store, rid, viewer=MIA, now=T0)
    assert audit.query(store, event="export").empty


def test_clearing_the_used_marker_does_not_buy_a_second_use(store):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON, now=T0)
    approvals.approve(store, rid, approver=BOB, comment="ok", now=T0)
    approvals.consume_unmask(store, rid, viewer=ANN, now=T0)
    _tamper(store, rid, used_at=None)
    with pytest.raises(ApprovalRefused, match="already used"):
        approvals.consume_unmask(store, rid, viewer=ANN, now=T0)
    assert len(audit.query(store, event="unmask")) == 1


def test_requests_are_checked_when_made(store):
    with pytest.raises(AccessDenied):  # a role that may not unmask
        approvals.request_unmask(store, "C000000001", "phone", viewer=MIA, reason=REASON)
    with pytest.raises(AccessDenied, match="at least 10 characters"):
        approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason="short")
    with pytest.raises(AccessDenied, match="account number"):
        approvals.request_unmask(store, "C000000001", "account_number", viewer=ANN, reason=REASON)
    scoped = Viewer("sam", ("compliance",), Scope(branches={"BR002"}))
    with pytest.raises(CustomerNotFound, match="No customer C000000001"):
        approvals.request_unmask(store, "C000000001", "phone", viewer=scoped, reason=REASON)
    with pytest.raises(ApprovalRefused, match="reason of at least"):
        approvals.request_export(store, _frame(3), viewer=MIA, stem="x", fmt="csv", context={}, reason="")
    with pytest.raises(ApprovalRefused, match="format"):
        approvals.request_export(store, _frame(3), viewer=MIA, stem="x", fmt="pdf", context={}, reason=REASON)
    with pytest.raises(ApprovalRefused, match="No request #999"):
        approvals.approve(store, 999, approver=BOB, comment="ok")
    with pytest.raises(ApprovalRefused, match="not a request number"):
        approvals.consume_export(store, "1; DROP TABLE x", viewer=MIA)
    with store.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM approval_requests")).scalar() == 0


def test_reasons_and_comments_are_scrubbed_of_personal_values(store):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN,
                                   reason="caller gave 13812345678 for case 7", now=T0)
    assert "13812345678" not in approvals.get(store, rid)["reason"]


@pytest.mark.parametrize("rows, needs", [(4999, False), (5000, False), (5001, True)])
def test_export_threshold(rows, needs, monkeypatch):
    monkeypatch.delenv("EXPORT_APPROVAL_ROWS", raising=False)
    assert approvals.needs_approval(rows) is needs


def test_usable_ids_lists_approved_unused(store):
    a = approvals.request_export(store, _frame(2), viewer=MIA, stem="a", fmt="csv", context={}, reason=REASON, now=T0)
    b = approvals.request_export(store, _frame(2), viewer=MIA, stem="b", fmt="csv", context={}, reason=REASON, now=T0)
    c = approvals.request_export(store, _frame(2), viewer=MIA, stem="c", fmt="csv", context={}, reason=REASON, now=T0)
    approvals.approve(store, a, approver=BOB, comment="ok", now=T0)
    approvals.approve(store, b, approver=BOB, comment="ok", now=T0)
    approvals.consume_export(store, b, viewer=MIA, now=T0)
    mine = approvals.requests_of(store, viewer=MIA)
    assert mine["request_id"].tolist() == [c, b, a]
    assert approvals.usable_ids(mine) == [a]


def test_admin_reading_the_log_sees_no_request_reason_or_customer(store):
    rid = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON, now=T0)
    approvals.approve(store, rid, approver=BOB, comment="fine for case 2026-118 at branch", now=T0)
    shown = audit.entries_for_viewer(audit.query(store), ["admin"]).set_index("event")
    assert shown.loc["approval_request", "reason"] == f"(reason recorded, {len(REASON)} characters)"
    assert "2026-118" not in shown.loc["approval_decision", "reason"]
    assert "C000000001" not in shown.loc["approval_request", "target"]
    full = audit.entries_for_viewer(audit.query(store), ["compliance"]).set_index("event")
    assert full.loc["approval_request", "reason"] == REASON


def test_cli_expires_and_lists(store, capsys):
    from analytics import cli

    url = store.url.render_as_string(hide_password=False)
    old = approvals.request_unmask(store, "C000000001", "phone", viewer=ANN, reason=REASON,
                                   now=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=25))
    fresh = approvals.request_unmask(store, "C000000001", "name", viewer=ANN, reason=REASON)
    assert cli.main(["approvals", "list", "--db", url]) == 0
    listed = capsys.readouterr().out
    assert f"#{old} " in listed and f"#{fresh} " in listed
    assert cli.main(["approvals", "expire", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"1 request(s) expired: #{old}"
    assert approvals.get(store, old)["status"] == "expired" and approvals.get(store, fresh)["status"] == "pending"
    assert json.loads(audit.query(store, event="cli_command")["target"].iloc[0])["command"] == "approvals"
    assert cli.main(["approvals", "list", "--db", url]) == 0
    assert f"#{old} " not in capsys.readouterr().out
