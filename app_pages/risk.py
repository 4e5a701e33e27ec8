"""Risk tiers: C1–C5 and credit-grade distributions by branch, segment and tier, the risk × value
heatmap, suitability mismatches, expired assessments and balance-drop alerts, with a drill-down to
the (masked) customers for roles that may see them."""

import streamlit as st

from analytics import access, charts_risk, risk
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "risk")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title("Risk tiers · 风险分层")

summary = risk.read_branch_summary(engine, run_id)
if summary.empty:
    st.warning(common.t("This run has no risk results. Run a refresh.", "本次刷新没有风险结果。"))
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("Customers", "客户数"), f"{int(summary['customers'].sum()):,}")
c2.metric(common.t("Suitability mismatches", "适当性不符客户"), f"{int(summary['suitability_mismatch_customers'].sum()):,}")
c3.metric(common.t("Expired or missing assessments", "测评过期或缺失"), f"{int(summary['assessments_expired'].sum()):,}")
c4.metric(common.t("Abnormal balance drops", "余额异常下降"), f"{int(summary['balance_drops'].sum()):,}")

by = st.radio(common.t("Break down by", "细分维度"), ["branch_id", "value_tier", "rfm_segment"], horizontal=True,
              format_func=lambda b: {"branch_id": common.t("branch", "网点"), "value_tier": common.t("value tier", "价值层级"),
                                     "rfm_segment": common.t("RFM segment", "RFM 分群")}[b])
share = st.toggle(common.t("Show shares", "显示占比"))
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.distribution_bars(risk.risk_crosstab(engine, run_id, by, "risk_tolerance", normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c2.plotly_chart(charts_risk.distribution_bars(risk.risk_crosstab(engine, run_id, by, "credit_grade", normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.risk_value_heatmap(risk.risk_value_matrix(engine, run_id), lang=lang), width="stretch")
c2.plotly_chart(charts_risk.suitability_bar(summary, lang=lang), width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(common.t("Customer-level drill-down is shown to risk managers.", "客户明细仅风控人员可见。"))
    st.stop()

st.subheader(common.t("Drill-down", "明细"))
branch = st.selectbox(common.t("Branch", "网点"), ["(all)", *summary["branch_id"].tolist()])
branch_id = None if branch == "(all)" else branch
mismatches = risk.read_mismatches(engine, run_id, branch_id=branch_id, limit=1000)
auth.audit_event(engine, "filter", user, target={"page": "risk", "rows": len(mismatches)},
                 parameters={"branch_id": branch_id})
tab1, tab2 = st.tabs([common.t("Suitability mismatches", "适当性不符"), common.t("Balance drops", "余额异常下降")])
with tab1:
    shown = access.mask_frame(mismatches, user["roles"])
    common.show_table(shown, width="stretch")
    common.export_buttons(engine, user, shown, f"suitability-mismatches-run{run_id}",
                          {"page": "risk", "branch_id": branch_id}, key="mismatch")
with tab2:
    drops = risk.read_balance_drops(engine, run_id, limit=1000)
    if branch_id is not None and "branch_id" in drops.columns:
        drops = drops[drops["branch_id"] == branch_id]
    common.show_table(access.mask_frame(drops, user["roles"]), width="stretch")
