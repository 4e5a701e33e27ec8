"""KPI wall (数据大屏): big numbers with their changes (month on month and year on year for the
monthly series, since the previous refresh for the models' figures), their share of target and
sparklines; a top/bottom 5 branch or region ranking; the data-quality rates. Dark and large enough
to read from 5 m on a 1920×1080 screen, in proportion on a 3840×2160 one. ``?kiosk=1`` hides the sidebar, header and menus
(always, for a display-only account);
the tiles refresh every ``KPI_REFRESH_SECONDS`` without reloading the page.

Each tick of the refresh reruns the fragment alone (not app.py), so the fragment checks the
server-side session itself before it reads anything (:func:`session.fragment_user`)."""

from datetime import timedelta

import streamlit as st

from analytics import charts_kpi, kpi, metrics, run_status, runs, settings
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
    months = int(loaders.run_metrics(run_id).get("churn.horizon_months") or 3)  # what the churn tiles cover
    left, right = st.columns([3.2, 1])
    with left:
        for row in charts_kpi.LAYOUT:
            for col, key in zip(st.columns(len(row)), row, strict=True):
                _tile(col, key, cards.get(key), lang, months=months)
    with right:
        with st.container(border=True):
            rank_kpi, level = _ranking_choice(lang)
            ranked = loaders.kpi_ranking(run_id, rank_kpi, level, viewer)
            if ranked is not None:
                st.markdown(charts_kpi.ranking_html(ranked, rank_kpi, level, lang, chosen=not kiosk),
                            unsafe_allow_html=True)
        if viewer.scope is None:  # data quality is a bank-level figure: left out for a scoped viewer
            for row in charts_kpi.DQ_LAYOUT:
                for col, key in zip(st.columns(len(row)), row, strict=True):
                    _tile(col, key, cards.get(key), lang, half=True)


def _tile(col, key: str, card, lang: str, *, half: bool = False, months: int = 3) -> None:
    with col.container(border=True):
        st.markdown(charts_kpi.tile_html(key, card, lang, small=half, half=half, months=months),
                    unsafe_allow_html=True)


def _ranking_choice(lang: str) -> tuple[str, str]:
    """The ranking's KPI and level: chosen in the panel, or, in kiosk mode (no one to choose),
    the next of charts_kpi.RANK_ROTATION at each tick."""
    if kiosk:
        tick = st.session_state.get("kpi_rank_tick", -1) + 1
        st.session_state["kpi_rank_tick"] = tick
        return charts_kpi.RANK_ROTATION[tick % len(charts_kpi.RANK_ROTATION)]
    c1, c2 = st.columns([3, 2])
    rank_kpi = c1.selectbox(session.t("kpi_wall.rank_on"), kpi.RANK_KPIS, key="kpi_rank_kpi",
                            format_func=lambda k: metrics.label(charts_kpi.KPI_METRICS[k], lang))
    level = c2.selectbox(session.t("kpi_wall.rank_by"), kpi.RANK_LEVELS, key="kpi_rank_level",
                         format_func=lambda v: charts_kpi.level_label(v, lang))
    return rank_kpi, level


wall()
