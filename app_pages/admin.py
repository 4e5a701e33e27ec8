"""Admin: users and roles, refresh runs with their status and metrics, and starting a refresh."""

import streamlit as st

from analytics import access_review, refresh, settings, users
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from app_pages import session, widgets

engine = session.engine()
user = session.require_page(engine, "admin")

st.title(session.page_title("admin"))

st.subheader(session.t("admin.users"))
st.caption(session.t("admin.manage_users_hint"))
widgets.show_table(users.list_users(engine), width="stretch")

st.subheader(session.t("admin.access_review"))
review = access_review.report(engine, lang=session.lang())
last = access_review.last_review(engine)
st.caption(session.t("admin.access_review_last", at=f"{last['at']:%Y-%m-%d %H:%M}", reviewer=escape_md(last["reviewer"]))
           if last else session.t("admin.access_review_never"))
st.write(session.t("admin.access_review_flags", dormant=int(review["dormant"].sum()),
                   days=settings.get("ACCESS_REVIEW_DORMANT_DAYS"),
                   granted=int((review["roles_granted_since_review"] != "").sum())))
widgets.show_table(review, width="stretch")
if st.button(session.t("admin.access_review_sign_off"), key="ci_access_review_sign_off"):
    access_review.sign_off(engine, user["username"], roles=user["roles"], session_id=user["session_id"],
                           client_address=session.client_address())
    st.success(session.t("admin.access_review_signed"))
    st.rerun()

st.subheader(session.t("admin.refresh_runs"))
info = refresh.status(engine, limit=20)
st.write(session.t("admin.current_run", run=info["current_run"], published=info["published_at"])
         if info["current_run"] else session.t("admin.no_current_run"))
runs = [{k: r[k] for k in ("run_id", "status", "stage", "started_at", "finished_at", "error")} |
        {"row_counts": str(r.get("row_counts") or "")} for r in info["runs"]]
widgets.show_table(runs, width="stretch")

if st.button(session.t("admin.start_a_refresh"), type="primary"):
    bar = st.progress(0.0, text=session.t("admin.starting"))
    session.audit_event(engine, "refresh_start", user)
    try:
        run_id = refresh.run_refresh(engine, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage))
    except AnalyticsError as exc:
        session.audit_event(engine, "refresh_fail", user, reason=str(exc)[:500])
        st.error(session.t("admin.refresh_failed", error=escape_md(exc)))
    else:
        session.audit_event(engine, "refresh_commit", user, run_id=run_id)
        st.success(session.t("admin.refresh_published", run_id=run_id))
        st.rerun()
