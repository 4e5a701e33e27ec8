"""Cross-sell: product-holding heatmap and association rules, opportunities by product with their
expected value, and campaign lists that say who was excluded (consent, suitability, expired
assessment), with an audited export."""

import streamlit as st

from analytics import charts_cross_sell, cross_sell, settings
from app_pages import loaders, session, widgets

SHOWN_ROWS = 200
engine = session.engine()
user = session.require_page(engine, "cross_sell")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("cross_sell"))
if user["viewer"].scope is not None:
    st.caption(session.t("scope.cross_sell_model_bank_wide"))

categories = cross_sell.read_categories(engine, run_id)
if categories.empty:
    st.warning(session.t("cross_sell.this_run_has_no_cross"))
    st.stop()

m = loaders.run_metrics(run_id)
figures = loaders.cross_sell_figures(run_id, user["viewer"])
head = figures["headline"]
c1, c2, c3, c4 = st.columns(4)
widgets.metric(c1, "customers_scored", session.fmt_count(head["customers_scored"]))
widgets.metric(c2, "customers_with_offer", session.fmt_count(head["customers_with_offer"]))
widgets.metric(c3, "cross_sell_potential", session.fmt_amount(head["next_best_expected_value_total"]))
widgets.metric(c4, "association_rules", session.fmt_count(m.get("cross_sell.rules")))

c1, c2 = st.columns(2)
matrix_customers = int(m.get("cross_sell.matrix_customers") or 0)
c1.plotly_chart(charts_cross_sell.cooccurrence_heatmap(
    cross_sell.read_cooccurrence(engine, run_id), customers_total=matrix_customers,
    metric="lift" if matrix_customers else "customers_both", lang=lang), width="stretch")
rules = cross_sell.read_rules(engine, run_id)
c2.plotly_chart(charts_cross_sell.rules_scatter(rules, lang=lang), width="stretch")
with st.expander(session.t("cross_sell.association_rules_n", n=session.fmt_count(len(rules)))):
    widgets.show_table(charts_cross_sell.rules_table(rules, lang=lang), width="stretch")

st.subheader(session.t("cross_sell.opportunities_by_product"))
st.plotly_chart(charts_cross_sell.opportunities_bar(figures["opportunities"], lang=lang), width="stretch")
if user["viewer"].scope is not None:
    st.caption(session.t("scope.cross_sell_next_best_only"))

st.subheader(session.t("cross_sell.first_offer_mix"))
st.plotly_chart(charts_cross_sell.first_offer_mix_bar(loaders.cross_sell_offer_mix(run_id, user["viewer"]), lang=lang),
                width="stretch")
st.caption(session.t("cross_sell.expected_value_formula", months=m.get("cross_sell.horizon_months") or "?"))
st.caption(session.t("cross_sell.up_sell_explained"))

st.subheader(session.t("cross_sell.campaign_list"))
category = st.selectbox(session.t("cross_sell.product_category"), categories["category"].tolist(),
                        format_func=lambda c: charts_cross_sell.category_label(c, lang))
# The whole campaign (the run keeps the top CROSS_SELL_CAMPAIGN_SIZE offers per category); the table
# shows its head, the export all of it.
widgets.scope_notice(user["viewer"])
campaign, excluded = cross_sell.campaign_list(engine, run_id, category, viewer=user["viewer"],
                                              limit=int(settings.get("EXPORT_MAX_ROWS")))
session.audit_filter(engine, user, "cross_sell", {"category": category}, rows=len(campaign))
st.plotly_chart(charts_cross_sell.exclusions_bar(excluded, category, listed=len(campaign), lang=lang),
                width="stretch")
st.caption(session.t("cross_sell.listed_and_excluded", listed=session.fmt_count(len(campaign)),
                    consent=session.fmt_count(excluded["consent"]), suitability=session.fmt_count(excluded["suitability"]),
                    expired=session.fmt_count(excluded["expired_assessment"])))
if category in cross_sell.CREDIT_CATEGORIES:
    st.caption(session.t("cross_sell.credit_excluded", grade=settings.get("CREDIT_OFFER_MIN_GRADE"),
                        credit_grade=session.fmt_count(excluded["credit_grade"]),
                        credit_complaint=session.fmt_count(excluded["credit_complaint"])))
if not campaign.empty:
    if len(campaign) > SHOWN_ROWS:
        st.caption(session.t("cross_sell.showing_head", shown=session.fmt_count(SHOWN_ROWS),
                            total=session.fmt_count(len(campaign))))
    widgets.show_table(campaign.head(SHOWN_ROWS), width="stretch")
    widgets.export_buttons(engine, user, campaign, f"cross-sell-{category}-run{run_id}",
                           {"page": "cross_sell", "category": category, "excluded": excluded}, key="xs")
