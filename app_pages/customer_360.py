"""Customer 360: look up one customer by customer id, resident ID number or mobile number (exact
match only), or list the customers of a name at a branch (masked, at most 20); profile, holdings, 24-month balances, scores and contacts,
masked for the role. Compliance may request to unmask one field with a written reason; a second
compliance officer approves it, and the value is shown once on the Approvals page (audited).

Every stored value shown outside a table (the name, the status, the unmasked value) is escaped: a
name or an address may hold Markdown."""

import streamlit as st

from analytics import (
    access,
    approvals,
    charts_customer360,
    customer360,
    formatting,
    i18n,
    runs,
    segmentation,
    table_formats,
)
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "customer_360")
lang = session.lang()

AMOUNTS = {"clv_margin_3y", "value_at_risk", "next_best_expected_value", "clv_txn_12m"}
RATES = {"churn_probability", "p_alive"}
FAMILIES = {"rfm_segment": "segment", "value_tier": "tier", "lifecycle_stage": "stage",
            "next_best_category": "category", "no_offer_reason": "exclusion"}


def score_text(key: str, value) -> str:
    """A score as the page shows it: amounts in yuan, probabilities in %, names in words."""
    if key in AMOUNTS:
        return formatting.amount(value, lang)
    if key in RATES:
        return formatting.rate(value, lang)
    if key in FAMILIES:
        return escape_md(i18n.label(FAMILIES[key], value, lang))
    if key == "cluster_name":  # stored as word codes
        return escape_md(segmentation.cluster_label(value, lang))
    if key in table_formats.REASON:  # stored as a code and parameters
        return escape_md(table_formats.reason_text(value, lang) or "—")
    return escape_md(value)


st.title(session.page_title("customer_360"))

t = session.t
KINDS = {"customer_id": t("customer_360.by_customer_id"), "id_number": t("customer_360.by_id_number"),
         "mobile": t("customer_360.by_mobile"), "name_branch": t("customer_360.by_name_branch")}
EXAMPLES = {"customer_id": t("customer_360.example_customer_id"), "id_number": t("customer_360.example_id_number"),
            "mobile": t("customer_360.example_mobile")}
kind = st.radio(t("customer_360.lookup_by"), list(KINDS), format_func=KINDS.get, horizontal=True, key="c360_kind",
                on_change=lambda: st.session_state.pop("c360_found", None))
where = {"session_id": user.get("session_id"), "client_address": session.client_address()}
with st.form("lookup"):
    if kind == "name_branch":
        c1, c2 = st.columns([2, 1])
        name = c1.text_input(t("customer_360.name"), max_chars=100, help=t("customer_360.name_help"))
        branch = c2.text_input(t("customer_360.branch_id"), max_chars=16, help=t("customer_360.branch_help"),
                               placeholder=t("customer_360.example_branch"))
    else:
        key = st.text_input(KINDS[kind], max_chars=40, help=t("customer_360.key_help"), placeholder=EXAMPLES[kind])
    go = st.form_submit_button(t("customer_360.look_up"))

# The lookup runs once per submit (each one audited), and its answer is kept for the reruns after.
if go:
    try:
        if kind == "name_branch":
            found = customer360.candidates(engine, name, branch, viewer=user["viewer"], **where)
        else:
            found = customer360.find(engine, kind, key, viewer=user["viewer"], **where)
    except AnalyticsError as exc:
        session.show_error(exc, st.warning)
        st.stop()
    st.session_state["c360_found"] = (user["username"], found)
kept = st.session_state.get("c360_found")
if kept is None or kept[0] != user["username"]:  # another login in this browser looks up anew
    st.stop()
found = kept[1]
if found.empty:  # none, or none in the user's scope: the same words
    st.warning(t("customer_360.no_match"))
    st.stop()
if len(found) > 1 or kind == "name_branch":
    st.caption(t("customer_360.candidates", n=customer360.MAX_CANDIDATES))
    widgets.show_table(found, width="stretch")
    customer_id = st.selectbox(t("customer_360.customer_id"), found["customer_id"].tolist(), key="c360_pick")
else:
    customer_id = found.iloc[0]["customer_id"]

try:
    profile = customer360.profile(engine, customer_id, viewer=user["viewer"])
except AnalyticsError as exc:
    session.show_error(exc, st.warning)
    st.stop()
cid = profile.iloc[0]["customer_id"]
session.audit_filter(engine, user, "customer_360", customer_ids=[cid])

p = profile.iloc[0]
st.subheader(f"{escape_md(p['name']) or '—'} · {escape_md(cid)}")
c1, c2, c3, c4 = st.columns(4)
c1.metric(session.t("customer_360.status"), escape_md(i18n.label("status", p["status"], lang)))
c2.metric(session.t("customer_360.risk_tolerance"), escape_md(p["risk_tolerance"]) or "—")
c3.metric(session.t("customer_360.credit_grade"), escape_md(p["credit_grade"]) or "—")
c4.metric(session.t("customer_360.branch"), escape_md(p["branch_id"]))
with st.expander(session.t("customer_360.profile_masked"), expanded=True):
    widgets.show_table(charts_customer360.profile_table(profile), width="stretch")

run_id = runs.current_run_id(engine)
scores = customer360.scores(engine, run_id, cid, viewer=user["viewer"])
if scores:
    st.subheader(session.t("customer_360.scores"))
    cols = st.columns(min(4, len(scores)))
    for i, (k, v) in enumerate(scores.items()):
        cols[i % len(cols)].metric(i18n.label("score", k, lang), score_text(k, v))

st.subheader(session.t("customer_360.balances_last_24_months"))
series = customer360.monthly(engine, cid, viewer=user["viewer"]).tail(24)
if "aum" in series.columns:
    st.plotly_chart(charts_customer360.balances_chart(series, lang=lang), width="stretch")
else:  # balances are need-to-know: this role sees bands, month by month
    st.caption(session.t("customer_360.balances_as_bands"))
    widgets.show_table(series, width="stretch")

st.subheader(session.t("customer_360.holdings"))
widgets.show_table(customer360.holdings_of(engine, cid, viewer=user["viewer"]), width="stretch")
st.subheader(session.t("customer_360.contacts_and_complaints"))
widgets.show_table(customer360.contacts_of(engine, cid, viewer=user["viewer"]), width="stretch")

if access.can_unmask(user["roles"]):
    st.subheader(session.t("customer_360.unmask_a_field"))
    with st.form("unmask", clear_on_submit=True):
        field = st.selectbox(session.t("customer_360.field"),
                             [f for f in access.PERSONAL_FIELDS if f != "account_number"])
        reason = st.text_area(session.t("customer_360.reason_written_to_the_audit"),
                              max_chars=500)
        go_unmask = st.form_submit_button(session.t("customer_360.request_unmask"))
    if go_unmask:
        # Four eyes: a request, approved by a second compliance officer on the Approvals page.
        try:
            request_id = approvals.request_unmask(engine, cid, field, viewer=user["viewer"], reason=reason,
                                                  session_id=user["session_id"],
                                                  client_address=session.client_address())
        except AnalyticsError as exc:
            session.show_error(exc)
        else:
            st.success(session.t("customer_360.unmask_requested", id=request_id))
