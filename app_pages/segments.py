"""Segments: RFM grid, segments, value tiers and behavioural clusters, cross-filtered by branch, city,
age band and tier; a tag builder (AND/OR/NOT) and a campaign-list export."""

import streamlit as st

from analytics import access, settings
from analytics import segment_explorer as sx
from analytics.errors import AnalyticsError
from app_pages import auth, common, explorer

engine = common.engine()
user = auth.require_page(engine, "segments")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title(common.page_title("segments"))

cube, filters = explorer.filtered_customers(engine, user, run_id, "segments")

measures = {"customers": common.t("segments.customers"), "aum_total": common.t("segments.aum_cny"),
            "clv_margin_3y_total": common.t("segments.3_year_margin_clv_cny")}
metric = st.radio(common.t("segments.measure"), list(measures), horizontal=True, format_func=measures.get)
c1, c2 = st.columns(2)
c1.plotly_chart(explorer.cube_chart(run_id, filters, "rfm_heatmap"), width="stretch")
c2.plotly_chart(explorer.cube_chart(run_id, filters, "segment_bar", metric=metric), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(explorer.cube_chart(run_id, filters, "value_tier_bar", metric=metric), width="stretch")
c2.plotly_chart(explorer.cube_chart(run_id, filters, "cluster_bar", metric=metric), width="stretch")
st.plotly_chart(explorer.cube_chart(run_id, filters, "cluster_profiles"), width="stretch")

st.subheader(common.t("segments.tag_builder"))
names = explorer.tag_names()
st.caption(common.t("segments.combine_tags_with_and_or") + "`mortgage_holder and not frequent_complainer`")
with st.expander(common.t("segments.available_tags")):
    common.show_table(sx.tag_counts(cube, names, filters))
expression = st.text_input(common.t("segments.tag_expression"), key="tag_expr")
if expression.strip():
    try:
        counts = explorer.tag_selection(run_id, filters, expression, names)
    except AnalyticsError as exc:
        st.error(str(exc))
        st.stop()
    auth.audit_filter(engine, user, "segments", {**filters.as_params(), "tags": expression},
                      rows=counts["selected"])
    st.metric(common.t("segments.customers_selected"), common.fmt_count(counts["selected"]))
    if access.can_see_customer_rows(user["roles"]):
        consenting = counts["consenting"]
        st.caption(common.t("segments.n_with_marketing_consent_excluded", n=common.fmt_count(consenting),
                            excluded=common.fmt_count(counts["no_consent"])))
        pages = max(1, -(-consenting // explorer.CAMPAIGN_PAGE_ROWS))
        page = 1
        if pages > 1:
            page = int(st.number_input(common.t("segments.page"), min_value=1, max_value=pages, value=1, step=1,
                                       key="campaign_page"))
        if consenting:
            common.show_table(explorer.campaign(run_id, filters, expression, names, user["roles"],
                                                limit=explorer.CAMPAIGN_PAGE_ROWS,
                                                offset=(page - 1) * explorer.CAMPAIGN_PAGE_ROWS), width="stretch")
        limit = int(settings.get("EXPORT_MAX_ROWS"))
        if consenting > limit:
            st.info(common.t("common.export_limited", rows=common.fmt_count(consenting), limit=common.fmt_count(limit)))
        elif consenting:
            campaign = explorer.campaign(run_id, filters, expression, names, user["roles"], limit=consenting)
            common.export_buttons(engine, user, campaign, f"campaign-run{run_id}",
                                  {"page": "segments", "tags": expression, **filters.as_params()}, key="campaign")
