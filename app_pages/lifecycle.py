"""Lifecycle value: lifecycle stages, the CLV distribution and totals by segment, tier and branch, the
cohort retention heatmap, and the top customers by CLV (masked; customer-level roles only)."""

import streamlit as st

from analytics import access
from analytics import segment_explorer as sx
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "lifecycle")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("lifecycle"))

cube, filters = widgets.filtered_customers(engine, user, run_id, "lifecycle")

horizon = st.radio(session.t("lifecycle.clv_horizon_years"), [1, 3, 5], index=1, horizontal=True)
clv_col = f"clv_margin_{horizon}y"
metric = f"{clv_col}_total"
head = sx.headline(cube, filters)
c1, c2, c3 = st.columns(3)
widgets.metric(c1, "customers_selected", session.fmt_count(head["customers"]))
widgets.metric(c2, "clv_total", session.fmt_amount(head[metric]), years=horizon)
widgets.metric(c3, "clv_average", session.fmt_amount(head[metric] / head["customers"] if head["customers"] else None),
               years=horizon)

c1, c2 = st.columns(2)
c1.plotly_chart(loaders.cube_chart(run_id, filters, "lifecycle_bar", viewer=user["viewer"], lang=lang), width="stretch")
c2.plotly_chart(loaders.cube_chart(run_id, filters, "clv_histogram", viewer=user["viewer"], lang=lang, horizon=horizon), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(loaders.cube_chart(run_id, filters, "segment_bar", viewer=user["viewer"], lang=lang, metric=metric), width="stretch")
c2.plotly_chart(loaders.cube_chart(run_id, filters, "value_tier_bar", viewer=user["viewer"], lang=lang, metric=metric), width="stretch")
st.plotly_chart(loaders.cube_chart(run_id, filters, "branch_bar", viewer=user["viewer"], lang=lang, metric=metric, horizon=horizon), width="stretch")
st.plotly_chart(loaders.run_chart(run_id, "cohorts", viewer=user["viewer"], lang=lang), width="stretch")
st.caption(session.t("lifecycle.cohorts_not_filtered"))

if access.can_see_customer_rows(user["roles"]):
    st.subheader(session.t("lifecycle.top_customers_by_clv_masked"))
    top, left_out = loaders.top_customers(run_id, filters, user["viewer"], clv_col)
    widgets.left_out_notice(left_out)
    widgets.show_table(top, width="stretch")
    widgets.export_buttons(engine, user, top, f"top-customers-clv{horizon}y-run{run_id}",
                           {"page": "lifecycle", "horizon_years": horizon, **filters.as_params()}, key="top_clv")
