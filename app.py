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
if not allowed:
    st.error("Your account has no pages. Ask an admin to check your roles.")
    st.stop()
pages = {}
for key in allowed:
    english, chinese = access.PAGES[key]
    pages[key] = st.Page(str(common.page_script(key)), title=f"{english} · {chinese}", icon=ICONS.get(key),
                         url_path=key)
landing = pages["overview"] if "overview" in pages else next(iter(pages.values()))


def home() -> None:
    # The default page is this hidden one, so every real page keeps its own URL: a bookmark of
    # /overview or /kpi_wall?kiosk=1 opens that page, and / goes to the role's landing page.
    st.switch_page(landing, query_params=st.query_params.to_dict())


nav = [st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"), *pages.values()]

with st.sidebar:
    st.radio("Language · 语言", ["English", "中文"], key="ui_lang", horizontal=True)
    st.markdown(f"**{user['name']}**  \n{', '.join(user['roles'])}")
    if st.button("Log out · 退出", key="ci_logout_button"):
        auth.logout(engine)
        st.rerun()

page = st.navigation(nav)
if page.url_path:  # the hidden default (home) page has url_path "" and only redirects
    auth.write_pending_cookie()
page.run()
