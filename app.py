"""Entry point: page config, login, then st.navigation with only the pages the user's roles allow.

Run with ``make run`` (or ``streamlit run app.py``). Page scripts live in app_pages/, never pages/:
Streamlit serves any script in a folder named pages/ by URL, past the login gate.
"""

import streamlit as st

from analytics import access, table_formats
from analytics.formatting import escape_md
from app_pages import session, widgets

st.set_page_config(page_title=session.t("app.customer_insight"), page_icon="🏦", layout="wide")

ICONS = {
    "overview": ":material/dashboard:", "kpi_wall": ":material/tv:", "segments": ":material/donut_large:",
    "lifecycle": ":material/timeline:", "churn": ":material/trending_down:",
    "cross_sell": ":material/add_shopping_cart:", "risk": ":material/shield:",
    "data_quality": ":material/fact_check:", "customer_360": ":material/person_search:",
    "audit_log": ":material/history:", "admin": ":material/admin_panel_settings:",
    "worklist": ":material/checklist:",
    "approvals": ":material/approval:",
    "campaigns": ":material/campaign:",
}

engine = session.engine_or_stop()
user = session.login_gate(engine)
widgets.restore_language(engine, user)

if user is None:
    # Anonymous: the login page is the only page, whatever URL was asked for.
    with st.sidebar:
        widgets.language_switch(engine, None)
    st.navigation([st.Page(session.login_page, title=session.t("app.log_in"), url_path="login", default=True)],
                  position="hidden").run()
    st.stop()

allowed = [key for key in access.pages_for(user["roles"]) if session.page_script(key).exists()]
if not allowed:
    st.error(session.t("app.no_pages"))
    st.stop()
pages = {}
for key in allowed:
    pages[key] = st.Page(str(session.page_script(key)), title=session.page_title(key), icon=ICONS.get(key),
                         url_path=key)
landing = pages["overview"] if "overview" in pages else next(iter(pages.values()))


def home() -> None:
    # The default page is this hidden one, so every real page keeps its own URL: a bookmark of
    # /overview or /kpi_wall?kiosk=1 opens that page, and / goes to the role's landing page.
    st.switch_page(landing, query_params=st.query_params.to_dict())


nav = [st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"), *pages.values()]

with st.sidebar:
    widgets.language_switch(engine, user)
    # The display name is stored text: escaped, so a name cannot carry a link or markup.
    # Roles in words of the chosen language ("marketing" reads 营销人员 in Chinese).
    st.markdown(f"**{escape_md(user['name'])}**  \n"
                f"{escape_md(table_formats.roles_label(','.join(user['roles']), session.lang()))}")
    if st.button(session.t("app.log_out"), key="ci_logout_button"):
        session.logout(engine)
        st.rerun()

page = st.navigation(nav)
if page.url_path:  # the hidden default (home) page has url_path "" and only redirects
    session.write_pending_cookie()
    session.chain_alarm_banner(engine, user)
page.run()
