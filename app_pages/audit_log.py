"""Audit log: who did what, when, to which customers; filterable; reading it is itself audited."""

import datetime as dt

import streamlit as st

from analytics import audit
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "audit_log")

st.title("Audit log · 审计日志")

with st.form("audit_filters"):
    c1, c2, c3, c4 = st.columns(4)
    who = c1.text_input("User · 用户", help="exact username")
    events = c2.multiselect("Event · 事件", sorted(audit.EVENTS))
    customer = c3.text_input("Customer id · 客户号")
    today = dt.datetime.now(dt.UTC).date()
    dates = c4.date_input("Dates (UTC) · 日期", value=(today - dt.timedelta(days=7), today))
    submitted = st.form_submit_button("Search · 查询")

since = until = None
if isinstance(dates, tuple) and len(dates) == 2:
    since = dt.datetime.combine(dates[0], dt.time.min)
    until = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time.min)

try:
    entries = audit.query(engine, user=who.strip() or None, event=events or None,
                          customer_id=customer.strip() or None, since=since, until=until, limit=1000)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

auth.audit_event(engine, "audit_read", user, parameters={
    "user": who.strip() or None, "events": events, "customer_id": customer.strip() or None,
    "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
    "rows": len(entries)})

st.caption(f"{len(entries):,} entries (newest first, at most 1,000)")
common.show_table(entries, width="stretch")

st.subheader("Integrity · 完整性校验")
if st.button("Verify the chain · 校验哈希链"):
    result = audit.verify(engine)
    auth.audit_event(engine, "audit_verify", user, parameters={"ok": result.ok, "checked": result.checked})
    (st.success if result.ok else st.error)(result.message)
