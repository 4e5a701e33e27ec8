"""Overview: headline numbers of the current refresh run."""

import streamlit as st

from analytics import access
from app_pages import auth, common

user = auth.require_page(common.engine(), "overview")
run_id = common.current_run_or_stop()
m = common.run_metrics(run_id)
run = common.run_record(run_id)

st.title("Overview · 概览")
st.caption(f"Refresh run {run_id}, finished {run.get('finished_at', '?')} UTC · activity as of "
           f"{m.get('as_of_month', '?')}")


def money(value) -> str:
    return f"¥{(value or 0) / 1e8:,.2f} 亿" if (value or 0) >= 1e8 else f"¥{(value or 0):,.0f}"


c1, c2, c3, c4 = st.columns(4)
c1.metric("Customers · 客户数", f"{int(m.get('customers_total') or 0):,}")
c2.metric("Active · 活跃", f"{int(m.get('customers_active') or 0):,}")
c3.metric("Dormant · 休眠", f"{int(m.get('customers_dormant') or 0):,}")
c4.metric("Closed · 销户", f"{int(m.get('customers_closed') or 0):,}")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Total AUM · 管理资产", money(m.get("aum_total")))
c2.metric("Deposits · 存款", money(m.get("deposits_total")))
c3.metric("Loans · 贷款", money(m.get("loans_total")))
c4.metric("Products · 产品", f"{int(m.get('products_total') or 0):,}")
st.caption(f"{int(m.get('branches_total') or 0)} branches · {int(m.get('holdings_open') or 0):,} open holdings")

others = [key for key in access.pages_for(user["roles"]) if key != "overview" and common.page_script(key).exists()]
if others:
    st.subheader("Your pages · 我的页面")
    cols = st.columns(min(4, len(others)))
    for i, key in enumerate(others):
        english, chinese = access.PAGES[key]
        cols[i % len(cols)].page_link(str(common.page_script(key)), label=f"{english} · {chinese}")
