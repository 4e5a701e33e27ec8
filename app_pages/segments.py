"""Segments: RFM grid, segments, value tiers and behavioural clusters, cross-filtered by branch, city,
age band and tier; a tag builder (AND/OR/NOT) and a campaign-list export."""

import streamlit as st

from analytics import access, charts_segments, segmentation, tags
from analytics import segment_explorer as sx
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "segments")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title("Segments · 客户分群")

frame, view, filters = common.filtered_customers(engine, user, run_id, "segments")

metric = st.radio(common.t("Measure", "指标"), ["customers", "aum_total", "clv_margin_3y_total"], horizontal=True,
                  format_func=lambda m: charts_segments.METRIC_LABELS[m][0 if lang == "en" else 1])
c1, c2 = st.columns(2)
c1.plotly_chart(charts_segments.rfm_heatmap(sx.summary(view, "rfm_rf"), lang=lang), width="stretch")
c2.plotly_chart(charts_segments.segment_bar(sx.summary(view, "rfm_segment"), metric, lang=lang), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(charts_segments.value_tier_bar(sx.summary(view, "value_tier"), metric, lang=lang), width="stretch")
clusters = sx.summary(view, "cluster_name")
c2.plotly_chart(charts_segments.segment_bar(clusters, metric, lang=lang).update_layout(
    title=common.t("Behavioural clusters", "行为聚类")), width="stretch")
st.plotly_chart(charts_segments.cluster_profile_heatmap(segmentation.read_cluster_profiles(engine, run_id),
                                                        lang=lang), width="stretch")

st.subheader(common.t("Tag builder", "标签组合"))
rules = tags.load_tag_rules()
names = [r.name for r in rules]
st.caption(common.t("Combine tags with and / or / not and parentheses, e.g. ",
                    "用 and / or / not 和括号组合标签，例如 ") + "`mortgage_holder and not frequent_complainer`")
with st.expander(common.t("Available tags", "可用标签")):
    flags_all = sx.tag_flags(view, names)
    common.show_table({"tag": names, "customers": [int(flags_all[n].sum()) for n in names]})
expression = st.text_input(common.t("Tag expression", "标签表达式"), key="tag_expr")
if expression.strip():
    try:
        selected = tags.select(sx.tag_flags(view, names), expression)
    except AnalyticsError as exc:
        st.error(str(exc))
        st.stop()
    auth.audit_event(engine, "filter", user, target={"page": "segments", "rows": len(selected)},
                     parameters={**filters.as_params(), "tags": expression})
    st.metric(common.t("Customers selected", "选中客户数"), f"{len(selected):,}")
    if access.can_see_customer_rows(user["roles"]):
        campaign, no_consent = sx.campaign_list(view, selected)
        st.caption(common.t(f"{len(campaign):,} with marketing consent; {no_consent:,} excluded for lack of consent.",
                            f"{len(campaign):,} 位已授权营销；{no_consent:,} 位因未授权被排除。"))
        common.show_table(campaign.head(200), width="stretch")
        common.export_buttons(engine, user, campaign, f"campaign-run{run_id}",
                              {"page": "segments", "tags": expression, **filters.as_params()}, key="campaign")
