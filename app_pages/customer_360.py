"""Customer 360: look up one customer by id; profile, holdings, 24-month balances, scores and contacts,
masked for the role. Compliance may unmask one field with a written reason (shown once, audited)."""

import plotly.graph_objects as go
import streamlit as st

from analytics import access, customer360, refresh
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "customer_360")
st.title("Customer 360 · 客户360")

with st.form("lookup"):
    customer_id = st.text_input(common.t("Customer id", "客户号"), max_chars=20,
                                help=common.t("Search is by customer id only: searching by name or phone "
                                              "would reveal masked data.", "仅支持按客户号查询。"))
    st.form_submit_button(common.t("Look up", "查询"))

if not customer_id.strip():
    st.stop()

try:
    profile = customer360.profile(engine, customer_id, user["roles"])
except AnalyticsError as exc:
    st.warning(str(exc))
    st.stop()
cid = profile.iloc[0]["customer_id"]
auth.audit_event(engine, "filter", user, target={"page": "customer_360", "customer_ids": [cid]})

p = profile.iloc[0]
st.subheader(f"{p['name'] or '—'} · {cid}")
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("Status", "状态"), p["status"])
c2.metric(common.t("Risk tolerance", "风险承受能力"), p["risk_tolerance"] or "—")
c3.metric(common.t("Credit grade", "信用等级"), p["credit_grade"] or "—")
c4.metric(common.t("Branch", "网点"), p["branch_id"])
with st.expander(common.t("Profile (masked)", "客户资料（已脱敏）"), expanded=True):
    common.show_table(profile.T.reset_index().set_axis(["field", "value"], axis=1).astype(str), width="stretch")

run_id = refresh.current_run_id(engine)
scores = customer360.scores(engine, run_id, cid, user["roles"])
if scores:
    st.subheader(common.t("Scores", "评分"))
    cols = st.columns(min(4, len(scores)))
    for i, (k, v) in enumerate(scores.items()):
        cols[i % len(cols)].metric(k, f"{v:,.3f}" if isinstance(v, float) else str(v))

st.subheader(common.t("Balances, last 24 months", "近24个月余额"))
series = customer360.monthly(engine, cid, user["roles"]).tail(24)
fig = go.Figure()
for col, label in [("aum", "AUM"), ("deposit_balance", common.t("Deposits", "存款")),
                   ("loan_balance", common.t("Loans", "贷款"))]:
    fig.add_scatter(x=series["month"], y=series[col], mode="lines+markers", name=label,
                    hovertemplate="%{x|%Y-%m}: ¥%{y:,.0f}<extra>" + label + "</extra>")
fig.update_layout(height=360, margin={"t": 20}, yaxis_title="CNY")
st.plotly_chart(fig, width="stretch")

st.subheader(common.t("Holdings", "持有产品"))
common.show_table(customer360.holdings_of(engine, cid, user["roles"]), width="stretch")
st.subheader(common.t("Contacts and complaints", "接触与投诉"))
common.show_table(customer360.contacts_of(engine, cid, user["roles"]), width="stretch")

if access.can_unmask(user["roles"]):
    st.subheader(common.t("Unmask a field", "查看明文"))
    with st.form("unmask", clear_on_submit=True):
        field = st.selectbox(common.t("Field", "字段"),
                             [f for f in access.PERSONAL_FIELDS if f != "account_number"])
        reason = st.text_area(common.t("Reason (written to the audit log)", "原因（记入审计日志）"),
                              max_chars=500)
        go_unmask = st.form_submit_button(common.t("Unmask once", "查看一次"))
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
