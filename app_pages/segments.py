"""Segments: RFM grid, segments, value tiers and behavioural clusters, cross-filtered by branch, city,
age band and tier; a tag builder (AND/OR/NOT) and a campaign-list export."""

import streamlit as st

from analytics import segment_explorer as sx
from analytics import settings
from analytics.campaigns.playbooks import playbook_table
from analytics.errors import AnalyticsError
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "segments")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("segments"))

cube, filters = widgets.filtered_customers(engine, user, run_id, "segments")

measures = {"customers": session.t("segments.customers"), "aum_total": session.t("segments.aum_cny"),
            "clv_margin_3y_total": session.t("segments.3_year_margin_clv_cny")}
metric = st.radio(session.t("segments.measure"), list(measures), horizontal=True, format_func=measures.get)
c1, c2 = st.columns(2)
c1.plotly_chart(loaders.cube_chart(run_id, filters, "rfm_heatmap", viewer=user["viewer"], lang=lang), width="stretch")
c2.plotly_chart(loaders.cube_chart(run_id, filters, "segment_bar", viewer=user["viewer"], lang=lang, metric=metric), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(loaders.cube_chart(run_id, filters, "value_tier_bar", viewer=user["viewer"], lang=lang, metric=metric), width="stretch")
c2.plotly_chart(loaders.cube_chart(run_id, filters, "cluster_bar", viewer=user["viewer"], lang=lang, metric=metric), width="stretch")
if filters.by_attribute:  # the cluster profiles are split by branch, age band and tier only
    st.info(session.t("seg_filter.profiles_not_split"))
else:
    st.plotly_chart(loaders.cube_chart(run_id, filters, "cluster_profiles", viewer=user["viewer"], lang=lang),
                    width="stretch")

with st.expander(session.t("campaigns.playbooks")):  # the recommended treatment per tier and segment
    widgets.show_table(playbook_table(lang), width="stretch")

st.subheader(session.t("segments.tag_builder"))
names = loaders.tag_names()
st.caption(session.t("segments.combine_tags_with_and_or") + "`mortgage_holder and not frequent_complainer`")
with st.expander(session.t("segments.available_tags")):
    widgets.show_table(sx.tag_counts(cube, names, filters, min_cell=loaders.min_cell(user["viewer"]),
                                     labels=loaders.tag_labels(lang)))
expression = st.text_input(session.t("segments.tag_expression"), key="tag_expr")
if expression.strip():
    try:
        counts = loaders.tag_selection(run_id, filters, expression, names, user["viewer"])
    except AnalyticsError as exc:  # its message quotes the expression typed
        session.show_error(exc)
        st.stop()
    session.audit_filter(engine, user, "segments", {**filters.as_params(), "tags": expression},
                      rows=counts["selected"])
    small = loaders.min_cell(user["viewer"])
    widgets.metric(st, "customers_tagged",
                   f"<{session.fmt_count(small)}" if counts["selected"] < 0 else session.fmt_count(counts["selected"]))
    if user["viewer"].sees_rows:
        consenting = counts["listed"]  # the list's size: consenting customers, or everyone for risk work
        if counts["consent"]:
            st.caption(session.t("segments.n_with_marketing_consent_excluded", n=session.fmt_count(consenting),
                                excluded=session.fmt_count(counts["no_consent"])))
        else:
            st.caption(session.t("segments.n_listed_for_risk_review", n=session.fmt_count(consenting)))
        pages = max(1, -(-consenting // widgets.CAMPAIGN_PAGE_ROWS))
        page = 1
        if pages > 1:
            page = int(st.number_input(session.t("segments.page"), min_value=1, max_value=pages, value=1, step=1,
                                       key="campaign_page"))
        if consenting:
            widgets.show_table(loaders.campaign(run_id, filters, expression, names, user["viewer"],
                                                limit=widgets.CAMPAIGN_PAGE_ROWS,
                                                offset=(page - 1) * widgets.CAMPAIGN_PAGE_ROWS), width="stretch")
        limit = int(settings.get("EXPORT_MAX_ROWS"))
        if consenting > limit:
            st.info(session.t("common.export_limited", rows=session.fmt_count(consenting), limit=session.fmt_count(limit)))
        elif consenting:
            campaign = loaders.campaign(run_id, filters, expression, names, user["viewer"], limit=consenting)
            widgets.export_buttons(engine, user, campaign, f"campaign-run{run_id}",
                                  {"page": "segments", "tags": expression, **filters.as_params()}, key="campaign")
