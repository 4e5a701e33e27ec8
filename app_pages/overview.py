"""Overview: headline numbers of the current refresh run."""

import streamlit as st

from analytics import access
from app_pages import loaders, session, widgets

user = session.require_page(session.engine(), "overview")
run_id = session.current_run_or_stop()
m = loaders.run_metrics(run_id)
run = loaders.run_record(run_id)

st.title(session.page_title("overview"))
st.caption(session.t("overview.run_caption", run_id=run_id, finished=run.get("finished_at", "?"),
                     as_of=m.get("as_of_month", "?")))

widgets.scope_notice(user["viewer"])
h = loaders.headline(run_id, user["viewer"])
c1, c2, c3, c4 = st.columns(4)
widgets.metric(c1, "customers_on_file", session.fmt_count(h.get("customers_total")))
widgets.metric(c2, "status_active", session.fmt_count(h.get("customers_active")))
widgets.metric(c3, "status_dormant", session.fmt_count(h.get("customers_dormant")))
widgets.metric(c4, "status_closed", session.fmt_count(h.get("customers_closed")))
c1, c2, c3, c4 = st.columns(4)
widgets.metric(c1, "aum_total", session.fmt_amount(h.get("aum_total")))
widgets.metric(c2, "deposits_total", session.fmt_amount(h.get("deposits_total")))
widgets.metric(c3, "loans_total", session.fmt_amount(h.get("loans_total")))
widgets.metric(c4, "products_total", session.fmt_count(h.get("products_total")))
st.caption(session.t("overview.branches_holdings", branches=session.fmt_count(h.get("branches_total")),
                     holdings=session.fmt_count(h.get("holdings_open"))))

others = [key for key in access.pages_for(user["roles"]) if key != "overview" and session.page_script(key).exists()]
if others:
    st.subheader(session.t("overview.your_pages"))
    cols = st.columns(min(4, len(others)))
    for i, key in enumerate(others):
        cols[i % len(cols)].page_link(str(session.page_script(key)), label=session.page_title(key))
