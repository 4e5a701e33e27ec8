"""Risk tiers: C1–C5 and credit-grade distributions by branch, segment and tier, the risk × value
heatmap, suitability mismatches, expired assessments and balance-drop alerts, risk alerts per refresh,
with a drill-down to the (masked) customers for roles that may see them, assessments falling due included."""

import streamlit as st

from analytics import charts_risk, risk
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "risk")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("risk"))

viewer = user["viewer"]
widgets.scope_notice(viewer)
summary = risk.read_branch_summary(engine, run_id, viewer=viewer)
if summary.empty:
    st.warning(session.t("risk.this_run_has_no_risk"))
    st.stop()

c1, c2, c3, c4 = st.columns(4)
head = charts_risk.headline(summary, loaders.min_cell(viewer))
widgets.metric(c1, "customers_risk_checked", session.fmt_count(head["customers"]))
widgets.metric(c2, "suitability_mismatches", session.fmt_count(head["mismatches"]))
widgets.metric(c3, "assessments_expired_or_missing", session.fmt_count(head["expired"]))
widgets.metric(c4, "balance_drops", session.fmt_count(head["balance_drops"]))

by = st.radio(session.t("risk.break_down_by"), ["branch_id", "value_tier", "rfm_segment"], horizontal=True,
              format_func=lambda b: session.option_label({
                  "branch_id": session.t("risk.branch_2"), "value_tier": session.t("risk.value_tier"),
                  "rfm_segment": session.t("risk.rfm_segment")}[b]))
share = st.toggle(session.t("risk.show_shares"))
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.distribution_bars(loaders.risk_crosstab(run_id, by, "risk_tolerance", viewer,
                                                                      normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c2.plotly_chart(charts_risk.distribution_bars(loaders.risk_crosstab(run_id, by, "credit_grade", viewer,
                                                                      normalize=share),
                                              lang=lang, normalize=share), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(charts_risk.risk_value_heatmap(loaders.risk_value_matrix(run_id, viewer), lang=lang), width="stretch")
c2.plotly_chart(charts_risk.suitability_bar(summary, lang=lang), width="stretch")

st.plotly_chart(charts_risk.alert_trend(loaders.alert_trend(run_id, viewer), lang=lang), width="stretch")
st.caption(session.t("risk.alert_trend_help"))

if viewer.aggregate_only:
    st.caption(session.t("common.cells_hidden", k=session.fmt_count(loaders.min_cell(viewer))))
if not viewer.sees_rows:
    st.info(session.t("risk.customer_level_drill_down_is"))
    st.stop()

st.subheader(session.t("risk.drill_down"))
branch = st.selectbox(session.t("risk.branch"), ["(all)", *summary["branch_id"].tolist()])
branch_id = None if branch == "(all)" else branch
mismatches = risk.read_mismatches(engine, run_id, viewer=viewer, branch_id=branch_id, limit=1000)
session.audit_filter(engine, user, "risk", {"branch_id": branch_id}, rows=len(mismatches))
tab1, tab2, tab3 = st.tabs([session.t("risk.suitability_mismatches_2"), session.t("risk.balance_drops"),
                           session.t("risk.assessments_due")])
with tab1:
    widgets.show_table(mismatches, width="stretch")
    widgets.export_buttons(engine, user, mismatches, f"suitability-mismatches-run{run_id}",
                           {"page": "risk", "branch_id": branch_id}, key="mismatch")
with tab2:
    drops = risk.read_balance_drops(engine, run_id, viewer=viewer, branch_id=branch_id, limit=1000)
    widgets.show_table(drops, width="stretch")
    widgets.export_buttons(engine, user, drops, f"balance-drops-run{run_id}", {"page": "risk", "branch_id": branch_id},
                           key="drops")
with tab3:
    due = risk.read_assessments_due(engine, run_id, viewer=viewer, branch_id=branch_id, limit=1000)
    st.caption(session.t("risk.assessments_due_caption", n=session.fmt_count(len(due))))
    widgets.show_table(due, width="stretch")
    widgets.export_buttons(engine, user, due, f"assessments-due-run{run_id}", {"page": "risk", "branch_id": branch_id},
                           key="due")
