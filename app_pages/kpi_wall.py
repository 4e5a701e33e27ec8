"""KPI wall (数据大屏): big numbers with their change since last month and sparklines, dark and large
enough to read from 5 m on a 1920×1080 screen. ``?kiosk=1`` hides the sidebar, header and menus
(always, for a display-only account);
the tiles refresh every ``KPI_REFRESH_SECONDS`` without reloading the page.

Each tick of the refresh reruns the fragment alone (not app.py), so the fragment checks the
server-side session itself before it reads anything (:func:`session.fragment_user`)."""

from datetime import timedelta

import streamlit as st

from analytics import charts_kpi, kpi, run_status, runs, settings
from app_pages import loaders, session, widgets

engine = session.engine()
user = session.require_page(engine, "kpi_wall")
# A display account (a lobby or boardroom screen) always gets the kiosk view; others ask with ?kiosk=1.
kiosk = st.query_params.get("kiosk") == "1" or set(user["roles"]) == {"display"}

st.markdown(charts_kpi.style(kiosk), unsafe_allow_html=True)


@st.fragment(run_every=timedelta(seconds=int(settings.get("KPI_REFRESH_SECONDS"))))
def wall() -> None:
    # Stops the tick (to the login page) once the session ended; else the user with their viewer,
    # scope read again, so a scope change shows at the next tick too.
    viewer = session.fragment_user(engine, "kpi_wall")["viewer"]
    lang = session.lang()
    run_id = runs.current_run_id(engine)
    if run_id is None:
        st.warning(session.t("kpi_wall.no_completed_refresh_yet"))
        return
    cards = kpi.cards(engine, run_id, viewer)
    fresh = run_status.freshness(engine)  # not the cached one: each tick shows the store as it is now
    st.markdown(charts_kpi.header_html(run_id, loaders.run_metrics(run_id).get("as_of_month"), lang,
                                       fresh.age_hours if fresh.stale else None), unsafe_allow_html=True)
    if viewer.scope is not None:
        widgets.scope_notice(viewer)
    if cards and all(card.suppressed for card in cards.values()):
        st.info(session.t("kpi.too_few_customers", k=session.fmt_count(loaders.min_cell(viewer))))
        return
    for row in charts_kpi.LAYOUT:
        cols = st.columns(len(row))
        for col, key in zip(cols, row, strict=True):
            card = cards.get(key)
            with col.container(border=True):
                st.markdown(charts_kpi.tile_html(key, card, lang, small=len(row) > 4), unsafe_allow_html=True)
                if card is not None and len(card.spark) > 1:
                    st.plotly_chart(charts_kpi.sparkline(card.spark), width="stretch",
                                    config={"displayModeBar": False}, key=f"spark_{key}")


wall()
