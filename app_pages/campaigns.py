"""Campaigns: plan an audience (Segments filters, tags, a product) with exclusions by reason, the
expected outcome and a random control group; create it; read its results with the uplift and its
95 % interval; export the treatment arm (masked, keyed by customer id) through the audited export.
Executives read the results only."""

import streamlit as st

from analytics import campaigns, charts_campaigns, charts_cross_sell, settings
from analytics import segment_explorer as sx
from analytics.cross_sell.holdings import product_categories
from analytics.errors import AnalyticsError
from analytics.segmentation import VALUE_TIERS
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "campaigns")
run_id = session.current_run_or_stop()
lang = session.lang()
viewer = user["viewer"]
marketing = viewer.for_purpose("marketing")
st.title(session.page_title("campaigns"))
widgets.scope_notice(viewer)

if viewer.sees_rows:
    st.subheader(session.t("campaigns.plan"))
    choices = loaders.filter_choices(run_id, marketing)
    c1, c2, c3 = st.columns(3)
    name = c1.text_input(session.t("campaigns.name"), key="camp_name", max_chars=campaigns.NAME_MAX)
    branches = c2.multiselect(session.t("campaigns.branches"), choices["branch_id"], key="camp_branches",
                              placeholder=session.t("common.all"))
    tier_names = {v: session.t(f"tier.{v}") for v in VALUE_TIERS}  # labels fixed for this run
    tiers = c3.multiselect(session.t("campaigns.tiers"), list(VALUE_TIERS), key="camp_tiers",
                           format_func=tier_names.get, placeholder=session.t("common.all"))
    c1, c2, c3 = st.columns(3)
    expression = c1.text_input(session.t("campaigns.tags"), key="camp_tags",
                               placeholder=session.t("campaigns.tags_placeholder")).strip()
    category_names = {"": session.t("campaigns.no_product"),
                      **{c: charts_cross_sell.category_label(c, lang) for c in product_categories(engine)}}
    product = c2.selectbox(session.t("campaigns.product"), list(category_names), key="camp_product",
                           format_func=category_names.get)
    share = c3.slider(session.t("campaigns.control_share"), 0.0, campaigns.MAX_CONTROL_SHARE,
                      float(settings.get("CONTROL_SHARE")), 0.05, key="camp_share")
    definition = campaigns.Definition("plan", sx.Filters(branches=tuple(branches), tiers=tuple(tiers)),
                                      expression or None, product or None, share)
    planned = None
    try:
        planned = loaders.campaign_plan(run_id, definition, marketing)
    except AnalyticsError as exc:
        session.show_error(exc)
    if planned is not None:
        m1, m2, m3, m4 = st.columns(4)
        widgets.metric(m1, "campaign_audience", session.fmt_count(planned["audience"]))
        widgets.metric(m2, "campaign_eligible", session.fmt_count(planned["eligible"]))
        widgets.metric(m3, "campaign_arms", session.t("campaigns.arms_value",
                                                      treatment=session.fmt_count(planned["treatment"]),
                                                      control=session.fmt_count(planned["control"])))
        if planned["expected_conversions"] is not None:
            widgets.metric(m4, "campaign_expected_conversions", session.fmt_count(round(planned["expected_conversions"])))
            st.caption(session.t("campaigns.assumption", margin=session.fmt_amount(planned["expected_margin"]),
                                 months=session.fmt_count(int(settings.get("CROSS_SELL_HORIZON_MONTHS")))))
        else:
            st.caption(session.t("campaigns.no_product_no_expectation"))
        st.plotly_chart(charts_campaigns.exclusions_bar(planned["excluded"], planned["eligible"], lang=lang),
                        width="stretch")
        st.caption(session.t("campaigns.exclusion_rule", days=session.fmt_count(
            int(settings.get("CONTACT_COOLDOWN_DAYS")))))
        message = st.text_area(session.t("campaigns.message"), key="camp_message",
                               placeholder=session.t("campaigns.message_placeholder"))
        if st.button(session.t("campaigns.create"), key="camp_create", type="primary"):
            try:
                made = campaigns.create_campaign(
                    engine, campaigns.Definition(name, definition.filters, definition.tags, definition.product,
                                                 share, message.strip() or None),
                    viewer=marketing, owner=user["username"], lang=lang)
            except AnalyticsError as exc:
                session.show_error(exc)
            else:
                session.audit_event(engine, "campaign_create", user,
                                    target={"campaign_id": made["campaign_id"], "customers": made["eligible"]},
                                    parameters={"name": made["name"], "product": definition.product,
                                                "tags": definition.tags, "filters": definition.filters.as_params(),
                                                "control_share": share, "seed": made["seed"]})
                loaders.forget_campaigns()
                st.success(session.t("campaigns.created", id=made["campaign_id"],
                                     treatment=session.fmt_count(made["treatment"]),
                                     control=session.fmt_count(made["control"]), seed=made["seed"]))
    with st.expander(session.t("campaigns.playbooks")):
        widgets.show_table(campaigns.playbook_table(lang), width="stretch")

st.subheader(session.t("campaigns.results"))
listed = loaders.campaign_list(viewer)
if listed.empty:
    st.info(session.t("campaigns.none_yet"))
    st.stop()
widgets.show_table(listed, width="stretch")
chosen = st.selectbox(session.t("campaigns.choose"), listed["campaign_id"].tolist(), key="camp_chosen",
                      format_func=lambda i: f"{i} · {listed.set_index('campaign_id').at[i, 'campaign_name']}")
result = loaders.campaign_results(chosen, run_id, viewer)
session.audit_filter(engine, user, "campaigns", {"campaign_id": int(chosen)})
m1, m2, m3, m4 = st.columns(4)
widgets.metric(m1, "campaign_treatment_conversion", session.fmt_rate(result["treatment_rate"], 2))
widgets.metric(m2, "campaign_control_conversion", session.fmt_rate(result["control_rate"], 2))
if result["uplift_pp"] is None:
    widgets.metric(m3, "campaign_uplift", "—")
    st.caption(session.t("campaigns.too_few_to_compare"))
else:
    widgets.metric(m3, "campaign_uplift", session.t("campaigns.pp", value=f"{result['uplift_pp']:+.1f}"))
    st.caption(session.t("campaigns.interval", low=f"{result['ci_low_pp']:+.1f}", high=f"{result['ci_high_pp']:+.1f}"))
widgets.metric(m4, "campaign_incremental_margin", session.fmt_amount(result["incremental_margin"]))
c1, c2 = st.columns(2)
c1.plotly_chart(charts_campaigns.arms_bar(result, lang=lang), width="stretch")
dimension_names = {d: session.t(f"dimension.{d}") for d in result["by_segment"]}
dimension = c2.radio(session.t("campaigns.by"), list(dimension_names), horizontal=True, key="camp_dim",
                     format_func=dimension_names.get)
segments = result["by_segment"][dimension]
c2.plotly_chart(charts_campaigns.uplift_by_segment(segments, dimension, lang=lang), width="stretch")
widgets.show_table(charts_campaigns.segment_table(segments, dimension, lang=lang), width="stretch")
st.caption(session.t("campaigns.small_cells", k=session.fmt_count(int(settings.get("MIN_CELL_CUSTOMERS")))))

if viewer.sees_rows:
    st.subheader(session.t("campaigns.export"))
    st.caption(session.t("campaigns.export_help"))
    treatment, left_out = loaders.campaign_export(chosen, marketing)
    widgets.left_out_notice(left_out)
    if not treatment.empty:
        widgets.export_buttons(engine, user, treatment, f"campaign-{chosen}-treatment",
                               {"page": "campaigns", "campaign_id": int(chosen), "left_out": left_out}, key="camp")
