"""Data quality: overall and per-dimension scores with their trend, the rules, breakdowns by branch
and channel, and (for roles that may see customer rows) the failing records and a fix-list export."""

import streamlit as st

from analytics import access, charts_quality, quality
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "data_quality")
run_id = common.current_run_or_stop()
lang = common.lang()
dq = common.dq_frames(run_id)

st.title(common.page_title("data_quality"))
if dq["results"].empty:
    st.warning(common.t("data_quality.this_run_has_no_data"))
    st.stop()

overall = dq["scores"][(dq["scores"]["scope"] == "overall")]
previous = dq["change"].set_index("dimension")["previous_score"].get("overall")
c1, c2 = st.columns([1, 2])
c1.plotly_chart(charts_quality.overall_gauge(
    overall.set_index("dimension")["score"].get("overall"),
    previous=None if previous != previous else previous, lang=lang), width="stretch")
c2.plotly_chart(charts_quality.named_rates(overall, lang=lang), width="stretch")

c1, c2 = st.columns(2)
c1.plotly_chart(charts_quality.dimension_bars(overall, lang=lang), width="stretch")
c2.plotly_chart(charts_quality.score_trend(dq["history"], lang=lang), width="stretch")

scope = st.radio(common.t("data_quality.breakdown_by"), ["branch", "channel"], horizontal=True,
                 format_func=lambda s: {"branch": common.t("data_quality.branch_2"),
                                        "channel": common.t("data_quality.onboarding_channel")}[s])
st.plotly_chart(charts_quality.breakdown_bars(dq["scores"][dq["scores"]["scope"] == scope], scope=scope,
                                              lang=lang), width="stretch")

st.subheader(common.t("data_quality.rules"))
common.show_table(dq["results"], width="stretch")

if not access.can_see_customer_rows(user["roles"]):
    st.info(common.t("data_quality.failing_records_and_fix_lists"))
    st.stop()

st.subheader(common.t("data_quality.failing_records"))
failing_rules = dq["results"][dq["results"]["failed"] > 0]["rule"].tolist()
rule = st.selectbox(common.t("data_quality.rule"), failing_rules)
if rule:
    try:
        records = quality.failing_records(engine, run_id, rule, limit=1000, roles=user["roles"])
    except AnalyticsError as exc:
        st.error(str(exc))
    else:
        auth.audit_filter(engine, user, "data_quality", {"rule": rule}, rows=len(records))
        st.caption(common.t("data_quality.first_failing_records", n=common.fmt_count(len(records))))
        common.show_table(records, width="stretch")

st.subheader(common.t("data_quality.fix_list_by_branch"))
branches = dq["scores"][dq["scores"]["scope"] == "branch"]["scope_value"].drop_duplicates().sort_values()
branch = st.selectbox(common.t("data_quality.branch"), branches.tolist())
if branch:
    fixes = quality.fix_list(engine, run_id, branch, roles=user["roles"])
    st.caption(common.t("data_quality.items_to_fix", n=common.fmt_count(len(fixes))))
    common.show_table(fixes.head(1000), width="stretch")
    common.export_buttons(engine, user, fixes, f"dq-fix-list-{branch}-run{run_id}",
                          {"page": "data_quality", "branch_id": branch, "run_id": run_id}, key="fixlist")
