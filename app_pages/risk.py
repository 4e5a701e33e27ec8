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
st.title(common.page_title("risk"))

summary = risk.read_branch_summary(engine, run_id)
if summary.empty:
    st.warning(common.t("risk.this_run_has_no_risk"))
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("risk.customers"), common.fmt_count(summary["customers"].sum()))
c2.metric(common.t("risk.suitability_mismatches"), common.fmt_count(summary["suitability_mismatch_customers"].sum()))
c3.metric(common.t("risk.expired_or_missing_assessments"), common.fmt_count(summary["assessments_expired"].sum()))
c4.metric(common.t("risk.abnormal_balance_drops"), common.fmt_count(summary["balance_drops"].sum()))

by = st.radio(common.t("risk.break_down_by"), ["branch_id", "value_tier", "rfm_segment"], horizontal=True,
              format_func=lambda b: {"branch_id": common.t("risk.branch_2"), "value_tier": common.t("risk.value_tier"),
                                     "rfm_segment": common.t("risk.rfm_segment")}[b])
share = st.toggle(common.t("risk.show_shares"))
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.distribution_bars(risk.risk_crosstab(engine, run_id, by, "risk_tolerance", normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c2.plotly_chart(charts_risk.distribution_bars(risk.risk_crosstab(engine, run_id, by, "credit_grade", normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.risk_value_heatmap(risk.risk_value_matrix(engine, run_id), lang=lang), width="stretch")
c2.plotly_chart(charts_risk.suitability_bar(summary, lang=lang), width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(common.t("risk.customer_level_drill_down_is"))
    st.stop()

st.subheader(common.t("risk.drill_down"))
branch = st.selectbox(common.t("risk.branch"), ["(all)", *summary["branch_id"].tolist()])
branch_id = None if branch == "(all)" else branch
mismatches = risk.read_mismatches(engine, run_id, branch_id=branch_id, limit=1000)
auth.audit_filter(engine, user, "risk", {"branch_id": branch_id}, rows=len(mismatches))
tab1, tab2 = st.tabs([common.t("risk.suitability_mismatches_2"), common.t("risk.balance_drops")])
with tab1:
    shown = access.mask_frame(mismatches, user["roles"])
    common.show_table(shown, width="stretch")
    common.export_buttons(engine, user, shown, f"suitability-mismatches-run{run_id}",
                          {"page": "risk", "branch_id": branch_id}, key="mismatch")
with tab2:
    drops = access.mask_frame(risk.read_balance_drops(engine, run_id, branch_id=branch_id, limit=1000), user["roles"])
    common.show_table(drops, width="stretch")
    common.export_buttons(engine, user, drops, f"balance-drops-run{run_id}", {"page": "risk", "branch_id": branch_id},
                          key="drops")
