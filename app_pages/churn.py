"""Churn: predicted churn rate by segment and branch, the model card (hold-out metrics, lift,
calibration, importance), and the early-warning list ranked by value at risk, with reason codes,
filters and an audited export for roles that may see customer rows."""

import streamlit as st

from analytics import access, charts_churn
from app_pages import auth, common, explorer

engine = common.engine()
user = auth.require_page(engine, "churn")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title("Churn · 流失预警")

card = explorer.churn_card(run_id)
m = card["metrics"]
if not m or m.get("churn.skipped"):
    st.warning(common.t("This run has no churn model: ", "本次刷新没有流失模型：")
               + str(m.get("churn.skipped") or common.t("run a refresh.", "请运行刷新。")))
    st.stop()


def num(key):
    value = m.get(key)
    return None if value is None or isinstance(value, str) else float(value)


active = num("churn.customers_active") or 0
expected = num("churn.expected_churners") or 0
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("Predicted churn rate", "预测流失率"), f"{expected / active:.1%}" if active else "—",
          help=common.t(f"Expected churners among active customers over the next {int(num('churn.horizon_months') or 3)} months",
                        "未来流失期内活跃客户的预计流失比例"))
c2.metric(common.t("Expected churners", "预计流失人数"), f"{expected:,.0f}")
c3.metric(common.t("Value at risk", "流失风险价值"), f"¥{(num('churn.value_at_risk_total') or 0):,.0f}")
c4.metric(common.t("Hold-out ROC AUC", "验证集 AUC"), f"{num('churn.holdout_roc_auc') or 0:.3f}")

dimension = st.radio(common.t("Churn by", "流失率维度"), ["rfm_segment", "branch_id", "value_tier", "lifecycle_stage"],
                     horizontal=True, format_func=lambda d: {
                         "rfm_segment": common.t("RFM segment", "RFM 分群"), "branch_id": common.t("branch", "网点"),
                         "value_tier": common.t("value tier", "价值层级"),
                         "lifecycle_stage": common.t("lifecycle stage", "生命周期")}[d])
st.plotly_chart(charts_churn.churn_rate_bar(explorer.churn_rates(run_id, dimension), dimension,
                                            measure="predicted", lang=lang), width="stretch")

st.subheader(common.t("Model card (hold-out period only)", "模型卡（仅验证期）"))
c1, c2, c3, c4 = st.columns(4)
c1.metric("PR AUC", f"{num('churn.holdout_pr_auc') or 0:.3f}")
c2.metric("Brier", f"{num('churn.holdout_brier') or 0:.4f}")
c3.metric(common.t("Top-decile lift", "前10%提升度"), f"{num('churn.top_decile_lift') or 0:.1f}×")
c4.metric(common.t("Top-decile capture", "前10%捕获率"), f"{num('churn.top_decile_capture') or 0:.0%}")
st.caption(common.t(f"Trained on features at {m.get('churn.train_cutoff')}, evaluated on the period after "
                    f"{m.get('churn.holdout_cutoff')}, then refitted and applied to {m.get('churn.as_of_month')}.",
                    f"以 {m.get('churn.train_cutoff')} 的特征训练，在 {m.get('churn.holdout_cutoff')} 之后的时期验证，"
                    f"再重新拟合并用于 {m.get('churn.as_of_month')}。"))
c1, c2, c3 = st.columns(3)
c1.plotly_chart(charts_churn.lift_chart(card["lift"], lang=lang), width="stretch")
c2.plotly_chart(charts_churn.calibration_plot(card["calibration"], lang=lang),
                width="stretch")
c3.plotly_chart(charts_churn.importance_bar(card["importance"], lang=lang), width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(common.t("The early-warning list is customer-level data, shown to marketing and risk.",
                     "流失预警名单属于客户级数据，仅营销与风控人员可见。"))
    st.stop()

st.subheader(common.t("Early-warning list", "流失预警名单"))
choices = explorer.filter_choices(run_id)
c1, c2, c3, c4 = st.columns(4)
branch = c1.selectbox(common.t("Branch", "网点"), ["", *choices["branch_id"]])
segment = c2.selectbox(common.t("RFM segment", "RFM 分群"), ["", *choices["rfm_segment"]])
manager = c3.selectbox(common.t("Relationship manager", "客户经理"), ["", *choices["relationship_manager"]])
tier = c4.selectbox(common.t("Value tier", "价值层级"), ["", *choices["value_tier"]])
params = {"branch_id": branch or None, "segment": segment or None, "relationship_manager": manager or None,
          "value_tier": tier or None}
warning_list = explorer.early_warning(run_id, params, user["roles"])
auth.audit_event(engine, "filter", user, target={"page": "churn", "rows": len(warning_list)}, parameters=params)
st.caption(common.t(f"{len(warning_list):,} customers, highest value at risk first (at most 1,000)",
                    f"共 {len(warning_list):,} 位客户，按风险价值排序（最多 1,000 位）"))
common.show_table(warning_list, width="stretch", column_config={
    "churn_probability": st.column_config.ProgressColumn(common.t("churn probability", "流失概率"),
                                                         min_value=0.0, max_value=1.0, format="percent"),
    "value_at_risk": st.column_config.NumberColumn(format="¥%.0f"), "clv": st.column_config.NumberColumn(format="¥%.0f")})
common.export_buttons(engine, user, warning_list, f"churn-early-warning-run{run_id}", {"page": "churn", **params},
                      key="churn")
