"""Entry point: page config, then st.navigation with the pages the user may see.

Run with ``make run`` (or ``streamlit run app.py``). Page scripts live in app_pages/, never pages/.
"""

import streamlit as st

st.set_page_config(page_title="Customer insight · 客户洞察", page_icon="🏦", layout="wide")

PAGES = [
    st.Page("app_pages/overview.py", title="Overview · 概览", icon=":material/dashboard:",
            url_path="overview", default=True),
]

st.navigation(PAGES).run()
