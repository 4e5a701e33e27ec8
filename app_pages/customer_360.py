"""Customer 360: look up one customer by id; profile, holdings, 24-month balances, scores and contacts,
masked for the role. Compliance may request to unmask one field with a written reason; a second
compliance officer approves it, and the value is shown once on the Approvals page (audited).

Every stored value shown outside a table (the name, the status, the unmasked value) is escaped: a
name or an address may hold Markdown."""

import streamlit as st

from analytics import access, approvals, charts_customer360, customer360, formatting, i18n, runs, segmentation
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "customer_360")
lang = session.lang()

AMOUNTS = {"clv_margin_3y", "value_at_risk", "next_best_expected_value", "clv_txn_12m"}
RATES = {"churn_probability", "p_alive"}
FAMILIES = {"rfm_segment": "segment", "value_tier": "tier", "lifecycle_stage": "stage",
            "next_best_category": "category"}


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
    return escape_md(value)


st.title(session.page_title("customer_360"))

with st.form("lookup"):
    customer_id = st.text_input(session.t("customer_360.customer_id"), max_chars=20,
                                help=session.t("customer_360.search_is_by_customer_id"))
    st.form_submit_button(session.t("customer_360.look_up"))

if not customer_id.strip():
    st.stop()

try:
    profile = customer360.profile(engine, customer_id, viewer=user["viewer"])
except AnalyticsError as exc:  # "no customer <what was typed>"
    session.show_error(exc, st.warning)
    st.stop()
cid = profile.iloc[0]["customer_id"]
session.audit_filter(engine, user, "customer_360", customer_ids=[cid])

p = profile.iloc[0]
st.subheader(f"{escape_md(p['name']) or '—'} · {escape_md(cid)}")
c1, c2, c3, c4 = st.columns(4)
c1.metric(session.t("customer_360.status"), escape_md(p["status"]))
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
