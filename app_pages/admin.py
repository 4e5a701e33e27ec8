"""Admin: users and roles, refresh runs with their status and metrics, and starting a refresh."""

import streamlit as st

from analytics import refresh, users
from analytics.errors import AnalyticsError
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "admin")

st.title("Admin · 系统管理")

st.subheader("Users · 用户")
st.caption("Manage users with `python -m analytics users add|disable|set-roles|reset-password` "
           "(passwords never pass through the browser or a command-line argument).")
common.show_table(users.list_users(engine), width="stretch")

st.subheader("Refresh runs · 刷新任务")
info = refresh.status(engine, limit=20)
st.write(f"Current run: **{info['current_run'] or 'none'}**"
         + (f", published {info['published_at']} UTC" if info["published_at"] else ""))
runs = [{k: r[k] for k in ("run_id", "status", "stage", "started_at", "finished_at", "error")} |
        {"row_counts": str(r.get("row_counts") or "")} for r in info["runs"]]
common.show_table(runs, width="stretch")

if st.button("Start a refresh · 开始刷新", type="primary"):
    bar = st.progress(0.0, text="starting")
    auth.audit_event(engine, "refresh_start", user)
    try:
        run_id = refresh.run_refresh(engine, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage))
    except AnalyticsError as exc:
        auth.audit_event(engine, "refresh_fail", user, reason=str(exc)[:500])
        st.error(f"The refresh failed; the previous run stays current. {exc}")
    else:
        auth.audit_event(engine, "refresh_commit", user, run_id=run_id)
        st.success(f"Refresh run {run_id} published.")
        st.rerun()
