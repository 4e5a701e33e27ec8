"""Audit log: who did what, when, to which customers; filterable; reading it is itself audited."""

import datetime as dt

import streamlit as st

from analytics import audit
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "audit_log")

st.title(common.page_title("audit_log"))

with st.form("audit_filters"):
    c1, c2, c3, c4 = st.columns(4)
    who = c1.text_input(common.t("audit_log.user"), help=common.t("audit_log.exact_username"))
    events = c2.multiselect(common.t("audit_log.event"), sorted(audit.EVENTS), placeholder=common.t("common.all"))
    customer = c3.text_input(common.t("audit_log.customer_id"))
    today = dt.datetime.now(dt.UTC).date()
    dates = c4.date_input(common.t("audit_log.dates_utc"), value=(today - dt.timedelta(days=7), today))
    submitted = st.form_submit_button(common.t("audit_log.search"))

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

st.caption(common.t("audit_log.entries_caption", n=common.fmt_count(len(entries)), limit=common.fmt_count(1000)))
common.show_table(entries, width="stretch")
if not entries.empty:
    common.export_buttons(engine, user, entries, "audit-log", {"page": "audit_log", "user": who.strip() or None,
                                                               "events": events, "customer_id": customer.strip() or None},
                          key="audit")

st.subheader(common.t("audit_log.integrity"))
if st.button(common.t("audit_log.verify_the_chain")):
    result = audit.verify(engine)
    auth.audit_event(engine, "audit_verify", user, parameters={"ok": result.ok, "checked": result.checked})
    (st.success if result.ok else st.error)(result.message)
