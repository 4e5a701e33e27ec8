"""Entry point: page config, login, then st.navigation with only the pages the user's roles allow.

Run with ``make run`` (or ``streamlit run app.py``). Page scripts live in app_pages/, never pages/:
Streamlit serves any script in a folder named pages/ by URL, past the login gate.
"""

import streamlit as st

from analytics import access
from app_pages import auth, common

st.set_page_config(page_title="Customer insight · 客户洞察", page_icon="🏦", layout="wide")

ICONS = {
    "overview": ":material/dashboard:", "kpi_wall": ":material/tv:", "segments": ":material/donut_large:",
    "lifecycle": ":material/timeline:", "churn": ":material/trending_down:",
    "cross_sell": ":material/add_shopping_cart:", "risk": ":material/shield:",
    "data_quality": ":material/fact_check:", "customer_360": ":material/person_search:",
    "audit_log": ":material/history:", "admin": ":material/admin_panel_settings:",
}

engine = common.engine_or_stop()
user = auth.login_gate(engine)

if user is None:
    # Anonymous: the login page is the only page, whatever URL was asked for.
    st.navigation([st.Page(auth.login_page, title="Log in · 登录", url_path="login", default=True)],
                  position="hidden").run()
    st.stop()

allowed = [key for key in access.pages_for(user["roles"]) if common.page_script(key).exists()]
default = "overview" if "overview" in allowed else allowed[0] if allowed else None
pages = []
for key in allowed:
    script = common.page_script(key)
    english, chinese = access.PAGES[key]
    pages.append(st.Page(str(script), title=f"{english} · {chinese}", icon=ICONS.get(key),
                         url_path=key, default=(key == default)))

if not pages:
    st.error("Your account has no pages. Ask an admin to check your roles.")
    st.stop()

with st.sidebar:
    st.radio("Language · 语言", ["English", "中文"], key="ui_lang", horizontal=True)
    st.markdown(f"**{user['name']}**  \n{', '.join(user['roles'])}")
    if st.button("Log out · 退出", key="ci_logout_button"):
        auth.logout(engine)
        st.rerun()

st.navigation(pages).run()
