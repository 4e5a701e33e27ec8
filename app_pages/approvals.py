"""Approvals (four eyes): approvers (compliance) decide pending requests of others with a comment;
every user sees their own requests and uses an approved one once: an unmasked value shown in this
run only, or an export downloaded once. The rules live in analytics/approvals.py."""

import streamlit as st

from analytics import approvals, charts_approvals
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "approvals")
lang = session.lang()
viewer = user["viewer"]
ctx = {"session_id": user["session_id"], "client_address": session.client_address()}

st.title(session.page_title("approvals"))
st.caption(session.t("approvals.intro", hours=approvals.ttl_hours()))
widgets.scope_notice(viewer)  # an unmask can be asked, and used, for a customer of the scope only

try:
    approvals.expire_due(engine)
except AnalyticsError as exc:
    session.show_error(exc)
    st.stop()

if approvals.can_approve(user["roles"]):
    st.subheader(session.t("approvals.pending_requests"))
    decided = st.session_state.pop("approvals_decided", None)  # the decision of the previous run
    if decided:
        st.success(session.t("approvals.approved" if decided[1] == "approved" else "approvals.rejected",
                             id=decided[0]))
    queue = approvals.pending(engine, approver=viewer)
    if queue.empty:
        st.caption(session.t("approvals.nothing_pending"))
    else:
        widgets.show_table(charts_approvals.request_table(queue, lang), width="stretch")
        with st.form("decide", clear_on_submit=True):
            chosen = st.selectbox(session.t("approvals.request"), queue["request_id"].tolist(),
                                  format_func=lambda rid: charts_approvals.request_label(queue, rid, lang))
            comment = st.text_area(session.t("approvals.comment"), max_chars=approvals.MAX_COMMENT_CHARS)
            c1, c2, _ = st.columns([1, 1, 4])
            go_approve = c1.form_submit_button(session.t("approvals.approve"))
            go_reject = c2.form_submit_button(session.t("approvals.reject"))
        if go_approve or go_reject:
            decide = approvals.approve if go_approve else approvals.reject
            try:
                decide(engine, chosen, approver=viewer, comment=comment, **ctx)
            except AnalyticsError as exc:
                session.show_error(exc)
            else:  # draw the queue again without the decided request, and say what was done
                st.session_state["approvals_decided"] = (chosen, "approved" if go_approve else "rejected")
                st.rerun()

st.subheader(session.t("approvals.my_requests"))
mine = approvals.requests_of(engine, viewer=viewer)
if mine.empty:
    st.caption(session.t("approvals.no_requests"))
    st.stop()
widgets.show_table(charts_approvals.request_table(mine, lang), width="stretch")

# Approved requests, used ones included: using one twice is refused with a line saying so.
approved = mine.loc[mine["status"] == "approved", "request_id"].tolist()
if not approved:
    st.stop()
with st.form("use"):
    chosen = st.selectbox(session.t("approvals.approved_request"), approved,
                          format_func=lambda rid: charts_approvals.request_label(mine, rid, lang))
    go_use = st.form_submit_button(session.t("approvals.use_once"))
if go_use:
    kind = mine.loc[mine["request_id"] == chosen, "kind"].iloc[0]
    try:
        if kind == "unmask":
            cid, field, value = approvals.consume_unmask(engine, chosen, viewer=viewer, **ctx)
        else:
            approved_file = approvals.consume_export(engine, chosen, viewer=viewer, **ctx)
    except AnalyticsError as exc:
        session.show_error(exc)
    else:
        if kind == "unmask":
            # Shown in this run only, never kept in session state; stored text, so escaped.
            st.info(f"{escape_md(cid)} · {escape_md(field)}: {escape_md(value)}")
        else:
            # The file is in this run only: the click reruns the page and the button is gone.
            st.download_button(session.t("approvals.download", file=approved_file.file_name),
                               data=approved_file.data, file_name=approved_file.file_name,
                               mime=approved_file.mime, icon=":material/download:", key="approved_download")
