"""Data quality: overall and per-dimension scores with their trend, the rules, breakdowns by branch
and channel, and (for roles that may see customer rows) the failing records and a fix-list export."""

import streamlit as st

from analytics import charts_quality, i18n, quality
from analytics.errors import AnalyticsError
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "data_quality")
run_id = session.current_run_or_stop()
lang = session.lang()
dq = loaders.dq_frames(run_id)

st.title(session.page_title("data_quality"))
viewer = user["viewer"]
if viewer.scoped:
    st.caption(session.t("scope.dq_store_wide"))
if dq["results"].empty:
    st.warning(session.t("data_quality.this_run_has_no_data"))
    st.stop()

c1, c2 = st.columns([1, 2])
c1.plotly_chart(charts_quality.overall_gauge(dq["overall_score"], previous=dq["previous_overall"], lang=lang),
                width="stretch")
c2.plotly_chart(charts_quality.named_rates(dq["overall"], lang=lang), width="stretch")

c1, c2 = st.columns(2)
c1.plotly_chart(charts_quality.dimension_bars(dq["overall"], lang=lang), width="stretch")
c2.plotly_chart(charts_quality.score_trend(dq["history"], lang=lang), width="stretch")

scope = st.radio(session.t("data_quality.breakdown_by"), ["branch"] if viewer.scoped else ["branch", "channel"],
                 horizontal=True, format_func=lambda s: session.option_label({
                     "branch": session.t("data_quality.branch_2"),
                     "channel": session.t("data_quality.onboarding_channel")}[s]))
st.plotly_chart(charts_quality.breakdown_bars(loaders.dq_breakdown(run_id, scope, viewer), scope=scope,
                                              average=dq["overall_score"], lang=lang), width="stretch")
if viewer.aggregate_only:
    st.caption(session.t("data_quality.small_cells_left_out", k=session.fmt_count(loaders.min_cell(viewer))))

st.subheader(session.t("data_quality.rules"))
widgets.show_table(dq["results"], width="stretch")

if not user["viewer"].sees_rows:
    st.info(session.t("data_quality.failing_records_and_fix_lists"))
    st.stop()
widgets.scope_notice(user["viewer"])

st.subheader(session.t("data_quality.failing_records"))
rule = st.selectbox(session.t("data_quality.rule"), dq["failing_rules"],
                    format_func=lambda name: i18n.label("dq_rule", name, session.lang()))
if rule:
    try:
        records = quality.failing_records(engine, run_id, rule, viewer=user["viewer"], limit=1000)
    except AnalyticsError as exc:
        session.show_error(exc)
    else:
        session.audit_filter(engine, user, "data_quality", {"rule": rule}, rows=len(records))
        st.caption(session.t("data_quality.first_failing_records", n=session.fmt_count(len(records))))
        widgets.show_table(records, width="stretch")

st.subheader(session.t("data_quality.fix_list_by_branch"))
# No branch until one is chosen (or the viewer has only one): a fix list checks every rule against
# the branch's records, about 10-20 s at a million customers, and the page's first visit waited on
# the first branch in the list whether or not anyone wanted it.
branches = [b for b in dq["branches"] if not viewer.scoped or b in viewer.scope.branches]
branch = st.selectbox(session.t("data_quality.branch"), branches, index=0 if len(branches) == 1 else None,
                      placeholder=session.t("data_quality.choose_branch"))
if not branch:
    st.caption(session.t("data_quality.fix_list_when_chosen"))
else:
    fixes = loaders.dq_fix_list(run_id, branch, user["viewer"])
    st.caption(session.t("data_quality.items_to_fix", n=session.fmt_count(len(fixes))))
    widgets.show_table(fixes.head(1000), width="stretch")
    widgets.export_buttons(engine, user, fixes, f"dq-fix-list-{branch}-run{run_id}",
                           {"page": "data_quality", "branch_id": branch, "run_id": run_id}, key="fixlist")
