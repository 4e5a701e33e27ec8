"""Audit log: who did what, when, to which customers; filterable; reading it is itself audited."""

import datetime as dt

import streamlit as st

from analytics import audit, audit_signals, charts_audit_signals, i18n
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "audit_log")

st.title(session.page_title("audit_log"))

with st.form("audit_filters"):
    c1, c2, c3, c4 = st.columns(4)
    who = c1.text_input(session.t("audit_log.user"), help=session.t("audit_log.exact_username"))
    events = c2.multiselect(session.t("audit_log.event"), sorted(audit.EVENTS), placeholder=session.t("common.all"),
                            format_func=lambda e: i18n.label("audit_event", e, session.lang()))
    customer = c3.text_input(session.t("audit_log.customer_id"))
    today = dt.datetime.now(dt.UTC).date()
    dates = c4.date_input(session.t("audit_log.dates_utc"), value=(today - dt.timedelta(days=7), today))
    submitted = st.form_submit_button(session.t("audit_log.search"))

since = until = None
if isinstance(dates, tuple) and len(dates) == 2:
    since = dt.datetime.combine(dates[0], dt.time.min)
    until = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time.min)

try:
    entries = audit.query(engine, user=who.strip() or None, event=events or None,
                          customer_id=customer.strip() or None, since=since, until=until, limit=1000)
except ValueError as exc:  # its message may echo what was typed
    session.show_error(exc)
    st.stop()
# Unmask reasons and customer ids in full for compliance only (the admin sees lengths and counts).
entries = audit.entries_for_viewer(entries, user["roles"])

session.audit_event(engine, "audit_read", user, parameters={
    "user": who.strip() or None, "events": events, "customer_id": customer.strip() or None,
    "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
    "rows": len(entries)})

st.caption(session.t("audit_log.entries_caption", n=session.fmt_count(len(entries)), limit=session.fmt_count(1000)))
widgets.show_table(entries, width="stretch")
if not entries.empty:
    widgets.export_buttons(engine, user, entries, "audit-log", {"page": "audit_log", "user": who.strip() or None,
                                                                "events": events,
                                                                "customer_id": customer.strip() or None},
                           key="audit")

st.subheader(session.t("audit_log.integrity"))
if st.button(session.t("audit_log.verify_the_chain")):
    result = audit.verify(engine)
    session.audit_event(engine, "audit_verify", user, parameters={"ok": result.ok, "checked": result.checked})
    (st.success if result.ok else st.error)(escape_md(result.message))

# Compliance: unusual behaviour read from the log over the same dates (analytics/audit_signals.py).
if "compliance" in user["roles"]:
    st.subheader(session.t("audit_log.signals"))
    st.caption(session.t("audit_log.signals_caption"))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        signals = audit_signals.compute(engine, since=since or now - dt.timedelta(days=7), until=until or now)
    except AnalyticsError as exc:  # a wrong WORKING_HOURS or time zone, named
        session.show_error(exc)
        st.stop()
    session.audit_event(engine, "audit_read", user, parameters={"signals": len(signals)})
    lang = session.lang()
    st.plotly_chart(charts_audit_signals.signal_chart(signals, lang), width="stretch")
    if signals.empty:
        st.caption(session.t("audit_log.no_signals"))
        st.stop()
    widgets.show_table(charts_audit_signals.signal_table(signals, lang), width="stretch")
    chosen = st.selectbox(session.t("audit_log.entries_behind"), list(range(len(signals))), key="signal_pick",
                          format_func=lambda i: charts_audit_signals.signal_label(signals, i, lang))
    behind = audit_signals.entries_behind(engine, signals.iloc[chosen]["seqs"])
    widgets.show_table(audit.entries_for_viewer(behind, user["roles"]), width="stretch")
