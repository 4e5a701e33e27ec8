"""Customer 360: look up one customer by id; profile, holdings, 24-month balances, scores and contacts,
masked for the role. Compliance may unmask one field with a written reason (shown once, audited)."""

import plotly.graph_objects as go
import streamlit as st

from analytics import access, customer360, formatting, i18n, runs
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "customer_360")
lang = common.lang()

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
        return i18n.label(FAMILIES[key], value, lang)
    return str(value)

st.title(common.page_title("customer_360"))

with st.form("lookup"):
    customer_id = st.text_input(common.t("customer_360.customer_id"), max_chars=20,
                                help=common.t("customer_360.search_is_by_customer_id"))
    st.form_submit_button(common.t("customer_360.look_up"))

if not customer_id.strip():
    st.stop()

try:
    profile = customer360.profile(engine, customer_id, user["roles"])
except AnalyticsError as exc:
    st.warning(str(exc))
    st.stop()
cid = profile.iloc[0]["customer_id"]
auth.audit_filter(engine, user, "customer_360", customer_ids=[cid])

p = profile.iloc[0]
st.subheader(f"{p['name'] or '—'} · {cid}")
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("customer_360.status"), p["status"])
c2.metric(common.t("customer_360.risk_tolerance"), p["risk_tolerance"] or "—")
c3.metric(common.t("customer_360.credit_grade"), p["credit_grade"] or "—")
c4.metric(common.t("customer_360.branch"), p["branch_id"])
with st.expander(common.t("customer_360.profile_masked"), expanded=True):
    common.show_table(profile.T.reset_index().set_axis(["field", "value"], axis=1).astype(str), width="stretch")

run_id = runs.current_run_id(engine)
scores = customer360.scores(engine, run_id, cid, user["roles"])
if scores:
    st.subheader(common.t("customer_360.scores"))
    cols = st.columns(min(4, len(scores)))
    for i, (k, v) in enumerate(scores.items()):
        cols[i % len(cols)].metric(i18n.label("score", k, lang), score_text(k, v))

st.subheader(common.t("customer_360.balances_last_24_months"))
series = customer360.monthly(engine, cid, user["roles"]).tail(24)
fig = go.Figure()
for col, label in [("aum", common.t("customer_360.aum")), ("deposit_balance", common.t("customer_360.deposits")),
                   ("loan_balance", common.t("customer_360.loans"))]:
    fig.add_scatter(x=series["month"], y=series[col], mode="lines+markers", name=label,
                    hovertemplate="%{x|%Y-%m}: ¥%{y:,.0f}<extra>" + label + "</extra>")
fig.update_layout(height=360, margin={"t": 20}, yaxis_title=common.t("common.cny"))
st.plotly_chart(fig, width="stretch")

st.subheader(common.t("customer_360.holdings"))
common.show_table(customer360.holdings_of(engine, cid, user["roles"]), width="stretch")
st.subheader(common.t("customer_360.contacts_and_complaints"))
common.show_table(customer360.contacts_of(engine, cid, user["roles"]), width="stretch")

if access.can_unmask(user["roles"]):
    st.subheader(common.t("customer_360.unmask_a_field"))
    with st.form("unmask", clear_on_submit=True):
        field = st.selectbox(common.t("customer_360.field"),
                             [f for f in access.PERSONAL_FIELDS if f != "account_number"])
        reason = st.text_area(common.t("customer_360.reason_written_to_the_audit"),
                              max_chars=500)
        go_unmask = st.form_submit_button(common.t("customer_360.unmask_once"))
    if go_unmask:
        try:
            value = customer360.unmask_field(engine, cid, field, roles=user["roles"], reason=reason,
                                             username=user["username"], session_id=user["session_id"],
                                             client_address=auth.client_address())
        except AnalyticsError as exc:
            st.error(str(exc))
        else:
            # Shown in this run only: not kept in session state, so the next rerun hides it again.
            st.info(f"{field}: {value}")
