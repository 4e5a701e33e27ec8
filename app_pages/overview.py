"""Overview: headline numbers of the current refresh run."""

import streamlit as st

from analytics import access
from app_pages import auth, common

user = auth.require_page(common.engine(), "overview")
run_id = common.current_run_or_stop()
m = common.run_metrics(run_id)
run = common.run_record(run_id)

st.title(common.page_title("overview"))
st.caption(common.t("overview.run_caption", run_id=run_id, finished=run.get("finished_at", "?"),
                    as_of=m.get("as_of_month", "?")))

c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("overview.customers"), common.fmt_count(m.get("customers_total")))
c2.metric(common.t("overview.active"), common.fmt_count(m.get("customers_active")))
c3.metric(common.t("overview.dormant"), common.fmt_count(m.get("customers_dormant")))
c4.metric(common.t("overview.closed"), common.fmt_count(m.get("customers_closed")))
c1, c2, c3, c4 = st.columns(4)
c1.metric(common.t("overview.total_aum"), common.fmt_amount(m.get("aum_total")))
c2.metric(common.t("overview.deposits"), common.fmt_amount(m.get("deposits_total")))
c3.metric(common.t("overview.loans"), common.fmt_amount(m.get("loans_total")))
c4.metric(common.t("overview.products"), common.fmt_count(m.get("products_total")))
st.caption(common.t("overview.branches_holdings", branches=common.fmt_count(m.get("branches_total")),
                    holdings=common.fmt_count(m.get("holdings_open"))))

others = [key for key in access.pages_for(user["roles"]) if key != "overview" and common.page_script(key).exists()]
if others:
    st.subheader(common.t("overview.your_pages"))
    cols = st.columns(min(4, len(others)))
    for i, key in enumerate(others):
        cols[i % len(cols)].page_link(str(common.page_script(key)), label=common.page_title(key))
