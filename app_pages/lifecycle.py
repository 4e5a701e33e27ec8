"""Lifecycle value: lifecycle stages, the CLV distribution and totals by segment, tier and branch, the
cohort retention heatmap, and the top customers by CLV (masked; customer-level roles only)."""

import streamlit as st

from analytics import access, charts_segments, lifecycle, segmentation
from analytics import segment_explorer as sx
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "lifecycle")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title("Lifecycle value · 生命周期价值")

frame, view, filters = common.filtered_customers(engine, user, run_id, "lifecycle")

horizon = st.radio(common.t("CLV horizon (years)", "价值测算年限"), [1, 3, 5], index=1, horizontal=True)
clv_col = f"clv_margin_{horizon}y"
c1, c2, c3 = st.columns(3)
c1.metric(common.t("Customers", "客户数"), f"{len(view):,}")
c2.metric(common.t(f"Total {horizon}-year CLV", f"{horizon}年客户价值合计"), f"¥{view[clv_col].sum():,.0f}")
c3.metric(common.t("Average CLV", "平均客户价值"), f"¥{view[clv_col].mean():,.0f}")

metric = f"{clv_col}_total"
c1, c2 = st.columns(2)
c1.plotly_chart(charts_segments.lifecycle_bar(sx.summary(view, "lifecycle_stage"), "customers", lang=lang),
                width="stretch")
bands = lifecycle.value_bands(view[clv_col].to_numpy())
c2.plotly_chart(charts_segments.clv_histogram(bands, horizon, lang=lang), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(charts_segments.segment_bar(sx.summary(view, "rfm_segment"), metric, lang=lang), width="stretch")
c2.plotly_chart(charts_segments.value_tier_bar(sx.summary(view, "value_tier"), metric, lang=lang), width="stretch")
by_branch = sx.summary(view, "branch_id").sort_values(metric, ascending=False)
st.plotly_chart(charts_segments.segment_bar(by_branch, metric, lang=lang).update_layout(
    title=common.t(f"{horizon}-year CLV by branch", f"各网点{horizon}年客户价值")), width="stretch")
st.plotly_chart(charts_segments.cohort_heatmap(segmentation.read_cohort_retention(engine, run_id), lang=lang),
                width="stretch")

if access.can_see_customer_rows(user["roles"]):
    st.subheader(common.t("Top customers by CLV (masked)", "高价值客户（已脱敏）"))
    common.show_table(sx.top_customers(engine, view, user["roles"], n=50, by=clv_col), width="stretch")
