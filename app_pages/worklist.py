"""Worklist: the alerts a relationship manager (their portfolio) or risk (the risk kinds, bank-wide
or within its scope) acts on: filters, the list (masked), an outcome form that changes an alert's
status (audited), and new/closed alerts per refresh run."""

import streamlit as st

from analytics import alerts, charts_alerts
from analytics.errors import AnalyticsError
from analytics.schema import ALERT_STATUSES, OPEN_ALERT_STATUSES
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "worklist")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("worklist"))

viewer = user["viewer"]
widgets.scope_notice(viewer)
kinds = alerts.kinds_for(viewer)
if not kinds:
    st.info(session.t("worklist.no_worklist"))
    st.stop()
st.caption(session.t("worklist.intro"))

flash = st.session_state.pop("worklist_saved", None)
if flash:
    st.success(session.t("worklist.saved", **flash))

c1, c2, c3 = st.columns([2, 3, 1])
statuses = c1.multiselect(session.t("worklist.status"), list(ALERT_STATUSES), default=list(OPEN_ALERT_STATUSES),
                          format_func=lambda s: session.t(f"alert_status.{s}"), key="wl_status",
                          placeholder=session.t("common.all"))
chosen = c2.multiselect(session.t("worklist.kind"), list(kinds), format_func=lambda k: session.t(f"alert_kind.{k}"),
                        placeholder=session.t("common.all"), key="wl_kind")
overdue_only = c3.toggle(session.t("worklist.overdue_only"), key="wl_overdue")
rows, left_out = alerts.worklist(engine, viewer=viewer, statuses=tuple(statuses) or None,
                                 kinds=tuple(chosen) or None, overdue_only=overdue_only)
session.audit_filter(engine, user, "worklist", {"statuses": statuses, "kinds": chosen, "overdue_only": overdue_only},
                     rows=len(rows))

head = alerts.counts(rows)
m1, m2, m3 = st.columns(3)
widgets.metric(m1, "alerts_shown", session.fmt_count(head["shown"]))
widgets.metric(m2, "alerts_overdue", session.fmt_count(head["overdue"]))
widgets.metric(m3, "alerts_new", session.fmt_count(head["new"]))
widgets.left_out_notice(left_out)
if rows.empty:
    st.info(session.t("worklist.none"))
else:
    widgets.show_table(alerts.labelled(rows, lang), width="stretch")
    widgets.export_buttons(engine, user, rows, f"worklist-run{run_id}",
                           {"page": "worklist", "statuses": statuses, "kinds": chosen}, key="worklist")

st.subheader(session.t("worklist.change"))
open_rows = rows[rows["status"].isin(OPEN_ALERT_STATUSES)]
if open_rows.empty:
    st.caption(session.t("worklist.no_open"))
else:
    choices = {int(a): f"{int(a)} · {c} · {session.t(f'alert_kind.{k}')}"
               for a, c, k in zip(open_rows["alert_id"], open_rows["customer_id"], open_rows["kind"], strict=True)}
    with st.form("worklist_change", clear_on_submit=True):
        alert_id = st.selectbox(session.t("worklist.alert"), list(choices), format_func=choices.get, key="wl_alert")
        to_status = st.selectbox(session.t("worklist.new_status"), ["contacted", "resolved", "dismissed"],
                                 format_func=lambda s: session.t(f"alert_status.{s}"), key="wl_to")
        note = st.text_area(session.t("worklist.note"), max_chars=alerts.read.MAX_NOTE_CHARS, key="wl_note")
        submitted = st.form_submit_button(session.t("worklist.save"))
    if submitted:
        try:
            done = alerts.change_status(engine, alert_id, to_status, note, viewer=viewer,
                                        session_id=user.get("session_id"), client_address=session.client_address())
        except AnalyticsError as exc:  # AlertError, or a note the store cannot hold (NUL)
            session.show_error(exc)
        else:
            st.session_state["worklist_saved"] = {
                "alert_id": done["alert_id"], "from_status": session.t(f"alert_status.{done['from']}"),
                "to_status": session.t(f"alert_status.{done['to']}")}
            st.rerun()
    with st.expander(session.t("worklist.history")):
        widgets.show_table(alerts.history(engine, alert_id, viewer=viewer), width="stretch")

st.plotly_chart(charts_alerts.trend_chart(alerts.trend(engine, viewer=viewer), lang=lang), width="stretch")
