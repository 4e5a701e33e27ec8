"""Churn: predicted churn rate by segment and branch, the model card (hold-out metrics, lift,
calibration, importance), and the early-warning list ranked by value at risk, with reason codes,
filters and an audited export for roles that may see customer rows."""

import streamlit as st

from analytics import access, formatting, i18n
from app_pages import auth, common, explorer

engine = common.engine()
user = auth.require_page(engine, "churn")
run_id = common.current_run_or_stop()
lang = common.lang()
st.title(common.page_title("churn"))

card = explorer.churn_card(run_id)
m = card["metrics"]
if not m or m.get("churn.skipped"):
    st.warning(common.t("churn.no_model", reason=m.get("churn.skipped") or common.t("churn.run_a_refresh")))
    st.stop()


def num(key):
    value = m.get(key)
    return None if value is None or isinstance(value, str) else float(value)


active = num("churn.customers_active") or 0
expected = num("churn.expected_churners") or 0
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("churn.predicted_churn_rate"), common.fmt_rate(expected / active if active else None),
          help=common.t("churn.predicted_churn_rate_help", months=int(num("churn.horizon_months") or 3)))
c2.metric(common.t("churn.expected_churners"), common.fmt_count(expected))
c3.metric(common.t("churn.value_at_risk"), common.fmt_amount(num("churn.value_at_risk_total")))
c4.metric(common.t("churn.hold_out_roc_auc"), formatting.decimal(num("churn.holdout_roc_auc"), lang))

dimension = st.radio(common.t("churn.churn_by"), ["rfm_segment", "branch_id", "value_tier", "lifecycle_stage"],
                     horizontal=True, format_func=lambda d: i18n.label("dimension", d, common.lang()))
st.plotly_chart(explorer.run_chart(run_id, "churn_rates", dimension), width="stretch")

st.subheader(common.t("churn.model_card_hold_out_period"))
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("churn.pr_auc"), formatting.decimal(num("churn.holdout_pr_auc"), lang))
c2.metric(common.t("churn.brier"), formatting.decimal(num("churn.holdout_brier"), lang, digits=4))
c3.metric(common.t("churn.top_decile_lift"), formatting.ratio(num("churn.top_decile_lift"), lang))
c4.metric(common.t("churn.top_decile_capture"), common.fmt_rate(num("churn.top_decile_capture"), digits=0))
st.caption(common.t("churn.trained_evaluated_applied", train=m.get("churn.train_cutoff"),
                    holdout=m.get("churn.holdout_cutoff"), as_of=m.get("churn.as_of_month")))
c1, c2, c3 = st.columns(3)
c1.plotly_chart(explorer.run_chart(run_id, "lift"), width="stretch")
c2.plotly_chart(explorer.run_chart(run_id, "calibration"), width="stretch")
c3.plotly_chart(explorer.run_chart(run_id, "importance"), width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(common.t("churn.the_early_warning_list_is"))
    st.stop()

st.subheader(common.t("churn.early_warning_list"))
choices = explorer.filter_choices(run_id)
c1, c2, c3, c4 = st.columns(4)


def shown_as(family: str | None):
    """A choice in words ("" is every value)."""
    return lambda v: common.t("churn.all") if v == "" else i18n.label(family, v, common.lang()) if family else v


branch = c1.selectbox(common.t("churn.branch"), ["", *choices["branch_id"]], format_func=shown_as(None))
segment = c2.selectbox(common.t("churn.rfm_segment"), ["", *choices["rfm_segment"]], format_func=shown_as("segment"))
manager = c3.selectbox(common.t("churn.relationship_manager"), ["", *choices["relationship_manager"]],
                       format_func=shown_as(None))
tier = c4.selectbox(common.t("churn.value_tier"), ["", *choices["value_tier"]], format_func=shown_as("tier"))
params = {"branch_id": branch or None, "segment": segment or None, "relationship_manager": manager or None,
          "value_tier": tier or None}
warning_list = explorer.early_warning(run_id, params, user["roles"])
auth.audit_filter(engine, user, "churn", params, rows=len(warning_list))
st.caption(common.t("churn.list_caption", n=common.fmt_count(len(warning_list)), limit=common.fmt_count(1000)))
common.show_table(warning_list, width="stretch", column_config={
    "churn_probability": st.column_config.ProgressColumn(common.t("churn.churn_probability"),
                                                         min_value=0.0, max_value=1.0, format="percent"),
    "value_at_risk": st.column_config.NumberColumn(common.t("column.value_at_risk"), format="¥%.0f"),
    "clv": st.column_config.NumberColumn(common.t("column.clv"), format="¥%.0f")})
common.export_buttons(engine, user, warning_list, f"churn-early-warning-run{run_id}", {"page": "churn", **params},
                      key="churn")
