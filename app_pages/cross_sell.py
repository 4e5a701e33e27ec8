"""Cross-sell: product-holding heatmap and association rules, opportunities by product with their
expected value, and campaign lists that say who was excluded (consent, suitability, expired
assessment), with an audited export."""

import streamlit as st

from analytics import access, charts_cross_sell, cross_sell
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "cross_sell")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title("Cross-sell · 交叉销售")

categories = cross_sell.read_categories(engine, run_id)
if categories.empty:
    st.warning(common.t("This run has no cross-sell results. Run a refresh.", "本次刷新没有交叉销售结果。"))
    st.stop()

c1, c2 = st.columns(2)
matrix_customers = int(common.run_metrics(run_id).get("cross_sell.matrix_customers") or 0)
c1.plotly_chart(charts_cross_sell.cooccurrence_heatmap(
    cross_sell.read_cooccurrence(engine, run_id), customers_total=matrix_customers,
    metric="lift" if matrix_customers else "customers_both", lang=lang), width="stretch")
rules = cross_sell.read_rules(engine, run_id)
c2.plotly_chart(charts_cross_sell.rules_scatter(rules, lang=lang), width="stretch")
with st.expander(common.t(f"Association rules ({len(rules):,})", f"关联规则（{len(rules):,} 条）")):
    shown = rules.assign(rule=[charts_cross_sell.rule_label(a, c, lang) for a, c in
                               zip(rules["antecedents"], rules["consequents"], strict=True)])
    common.show_table(shown[["rule", "support", "confidence", "lift"]], width="stretch")

st.subheader(common.t("Opportunities by product", "各产品商机"))
opportunities = cross_sell.read_opportunities(engine, run_id)
st.plotly_chart(charts_cross_sell.opportunities_bar(opportunities, lang=lang), width="stretch")

st.subheader(common.t("Campaign list", "营销名单"))
category = st.selectbox(common.t("Product category", "产品类别"), categories["category"].tolist(),
                        format_func=lambda c: charts_cross_sell.category_label(c, lang))
campaign, excluded = cross_sell.campaign_list(engine, run_id, category, limit=1000)
auth.audit_event(engine, "filter", user, target={"page": "cross_sell", "rows": len(campaign)},
                 parameters={"category": category})
st.plotly_chart(charts_cross_sell.exclusions_bar(excluded, category, listed=len(campaign), lang=lang),
                width="stretch")
st.caption(common.t(
    f"{len(campaign):,} customers listed; excluded: {excluded['consent']:,} without marketing consent, "
    f"{excluded['suitability']:,} for suitability, {excluded['expired_assessment']:,} with an expired risk assessment.",
    f"名单 {len(campaign):,} 人；排除：未授权营销 {excluded['consent']:,} 人，适当性不符 {excluded['suitability']:,} 人，"
    f"风险测评过期 {excluded['expired_assessment']:,} 人。"))
if not campaign.empty:
    campaign = access.mask_frame(campaign, user["roles"])
    common.show_table(campaign.head(200), width="stretch")
    common.export_buttons(engine, user, campaign, f"cross-sell-{category}-run{run_id}",
                          {"page": "cross_sell", "category": category, "excluded": excluded}, key="xs")
