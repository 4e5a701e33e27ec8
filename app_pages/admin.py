"""Admin: users and roles, refresh runs with their status and metrics, and starting a refresh."""

import streamlit as st

from analytics import refresh, users
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "admin")

st.title(common.page_title("admin"))

st.subheader(common.t("admin.users"))
st.caption(common.t("admin.manage_users_hint"))
common.show_table(users.list_users(engine), width="stretch")

st.subheader(common.t("admin.refresh_runs"))
info = refresh.status(engine, limit=20)
st.write(common.t("admin.current_run", run=info["current_run"], published=info["published_at"]) if info["current_run"]
         else common.t("admin.no_current_run"))
runs = [{k: r[k] for k in ("run_id", "status", "stage", "started_at", "finished_at", "error")} |
        {"row_counts": str(r.get("row_counts") or "")} for r in info["runs"]]
common.show_table(runs, width="stretch")

if st.button(common.t("admin.start_a_refresh"), type="primary"):
    bar = st.progress(0.0, text=common.t("admin.starting"))
    auth.audit_event(engine, "refresh_start", user)
    try:
        run_id = refresh.run_refresh(engine, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage))
    except AnalyticsError as exc:
        auth.audit_event(engine, "refresh_fail", user, reason=str(exc)[:500])
        st.error(common.t("admin.refresh_failed", error=exc))
    else:
        auth.audit_event(engine, "refresh_commit", user, run_id=run_id)
        st.success(common.t("admin.refresh_published", run_id=run_id))
        st.rerun()
