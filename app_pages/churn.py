"""Churn: predicted churn rate by segment and branch, the model card (hold-out metrics, lift,
calibration, importance), and the early-warning list ranked by value at risk, with reason codes,
filters and an audited export for roles that may see customer rows."""

import streamlit as st

from analytics import access, charts_churn, formatting, i18n
from analytics.formatting import escape_md
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "churn")
run_id = session.current_run_or_stop()
lang = session.lang()
st.title(session.page_title("churn"))
if user["viewer"].scope is not None:
    st.caption(session.t("scope.churn_model_bank_wide"))

card = loaders.churn_card(run_id)
m = card["metrics"]
if not m or m.get("churn.skipped"):
    st.warning(session.t("churn.no_model", reason=escape_md(m.get("churn.skipped")) or session.t("churn.run_a_refresh")))
    st.stop()


def num(key):
    value = m.get(key)
    return None if value is None or isinstance(value, str) else float(value)


head = loaders.churn_headline(run_id, user["viewer"])
active, expected = head["customers_active"], head["expected_churners"]
c1, c2, c3, c4 = st.columns(4)
months = int(num("churn.horizon_months") or 3)
widgets.metric(c1, "churn_rate", session.fmt_rate(expected / active if active else None), months=months)
widgets.metric(c2, "expected_churners", session.fmt_count(expected), months=months)
widgets.metric(c3, "value_at_risk", session.fmt_amount(head["value_at_risk_total"]))
widgets.metric(c4, "holdout_roc_auc", formatting.decimal(num("churn.holdout_roc_auc"), lang))

dimension = st.radio(session.t("churn.churn_by"), ["rfm_segment", "branch_id", "value_tier", "lifecycle_stage"],
                     horizontal=True, format_func=lambda d: session.option_label(i18n.label("dimension", d, session.lang())))
st.plotly_chart(loaders.run_chart(run_id, "churn_rates", viewer=user["viewer"], lang=lang, dimension=dimension), width="stretch")

st.subheader(session.t("churn.model_card_hold_out_period"))
c1, c2, c3, c4 = st.columns(4)
widgets.metric(c1, "holdout_pr_auc", formatting.decimal(num("churn.holdout_pr_auc"), lang))
widgets.metric(c2, "holdout_brier", formatting.decimal(num("churn.holdout_brier"), lang, digits=4))
widgets.metric(c3, "top_decile_lift", formatting.ratio(num("churn.top_decile_lift"), lang))
widgets.metric(c4, "top_decile_capture", session.fmt_rate(num("churn.top_decile_capture"), digits=0))
st.caption(session.t("churn.trained_evaluated_applied", train=escape_md(m.get("churn.train_cutoff")),
                     holdout=escape_md(m.get("churn.holdout_cutoff")), as_of=escape_md(m.get("churn.as_of_month"))))
chosen = charts_churn.model_choice_text(m.get("churn.final_candidate"), lang)
if chosen:
    st.caption(escape_md(chosen))
c1, c2, c3 = st.columns(3)
c1.plotly_chart(loaders.run_chart(run_id, "lift", viewer=user["viewer"], lang=lang), width="stretch")
c2.plotly_chart(loaders.run_chart(run_id, "calibration", viewer=user["viewer"], lang=lang), width="stretch")
c3.plotly_chart(loaders.run_chart(run_id, "importance", viewer=user["viewer"], lang=lang), width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(session.t("churn.the_early_warning_list_is"))
    st.stop()

st.subheader(session.t("churn.early_warning_list"))
widgets.scope_notice(user["viewer"])
choices = loaders.filter_choices(run_id, user["viewer"])
c1, c2, c3, c4 = st.columns(4)


def shown_as(family: str | None):
    """A choice in words ("" is every value)."""
    return lambda v: session.t("churn.all") if v == "" else i18n.label(family, v, session.lang()) if family else v


branch = c1.selectbox(session.t("churn.branch"), ["", *choices["branch_id"]], format_func=shown_as(None))
segment = c2.selectbox(session.t("churn.rfm_segment"), ["", *choices["rfm_segment"]], format_func=shown_as("segment"))
manager = c3.selectbox(session.t("churn.relationship_manager"), ["", *choices["relationship_manager"]],
                       format_func=shown_as(None))
tier = c4.selectbox(session.t("churn.value_tier"), ["", *choices["value_tier"]], format_func=shown_as("tier"))
params = {"branch_id": branch or None, "segment": segment or None, "relationship_manager": manager or None,
          "value_tier": tier or None}
warning_list, left_out = loaders.early_warning(run_id, params, user["viewer"])
session.audit_filter(engine, user, "churn", params, rows=len(warning_list))
st.caption(session.t("churn.list_caption", n=session.fmt_count(len(warning_list)), limit=session.fmt_count(1000)))
widgets.left_out_notice(left_out)
widgets.show_table(warning_list, width="stretch")
widgets.export_buttons(engine, user, warning_list, f"churn-early-warning-run{run_id}", {"page": "churn", **params},
                      key="churn")
