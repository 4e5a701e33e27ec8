"""KPI wall (数据大屏): big numbers with their change since last month and sparklines, dark and large
enough to read from 5 m on a 1920×1080 screen. ``?kiosk=1`` hides the sidebar, header and menus;
the tiles refresh every ``KPI_REFRESH_SECONDS`` without reloading the page."""

import html
from datetime import timedelta

import plotly.graph_objects as go
import streamlit as st

from analytics import formatting, i18n, kpi, refresh, runs, settings
from app_pages import auth, common

engine = common.engine()
user = auth.require_page(engine, "kpi_wall")
kiosk = st.query_params.get("kiosk") == "1"
lang = common.lang()

DARK = """
<style>
.stApp, [data-testid="stAppViewContainer"], [data-testid="stHeader"] {background: #0b1220; color: #e8eef8;}
[data-testid="stMainBlockContainer"] {padding-top: 1.5rem; max-width: 100%;}
.kpi-title {font-size: 2.6rem; font-weight: 700; color: #e8eef8; margin: 0 0 .6rem 0;}
.kpi-sub {font-size: 1.2rem; color: #8fa3bf;}
.kpi-label {font-size: 1.5rem; color: #9fb3cf; margin-bottom: .1rem;}
.kpi-value {font-size: 3.6rem; font-weight: 700; color: #ffffff; line-height: 1.1; white-space: nowrap;}
.kpi-value.kpi-small {font-size: 2.9rem;}
.kpi-delta {font-size: 1.35rem; font-weight: 600;}
.kpi-up {color: #57d68d;} .kpi-down {color: #ff7a6b;} .kpi-flat {color: #8fa3bf;}
</style>
"""
KIOSK = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], footer, #MainMenu {display: none !important;}
</style>
"""
st.markdown(DARK + (KIOSK if kiosk else ""), unsafe_allow_html=True)

# Rising is good for most tiles; for these, a fall is good news.
LOWER_IS_BETTER = {"churned", "churn_rate", "value_at_risk", "risk_mix"}
LAYOUT = [("customers", "active", "new", "churned"), ("aum", "deposits", "loans", "avg_clv"),
          ("churn_rate", "value_at_risk", "cross_sell_potential", "risk_mix", "dq_overall")]


def fmt(value, kind: str) -> str:
    if kind == "money":
        return formatting.amount(value, lang, compact=True)
    if kind == "rate":
        return formatting.rate(value, lang)
    return formatting.count(value, lang)


def delta(card: kpi.Card) -> str:
    change = card.change
    if change is None:
        return '<span class="kpi-delta kpi-flat">—</span>'
    good = (change < 0) if card.key in LOWER_IS_BETTER else (change > 0)
    css = "kpi-flat" if change == 0 else "kpi-up" if good else "kpi-down"
    arrow = "▲" if change > 0 else "▼" if change < 0 else "■"
    if card.kind == "rate":
        text = common.t("kpi_wall.points", change=f"{change * 100:+.1f}")
    elif card.previous:
        text = f"{change / abs(card.previous):+.1%}"
    else:
        text = fmt(change, card.kind)
    return f'<span class="kpi-delta {css}">{arrow} {html.escape(text)}</span>'


def sparkline(card: kpi.Card) -> go.Figure:
    # No fill to zero: the axis fits the series, so a 1 % move is visible from across the room.
    fig = go.Figure(go.Scatter(y=list(card.spark), mode="lines", line={"width": 4, "color": "#5aa9ff"},
                               hoverinfo="skip"))
    fig.update_layout(height=70, margin={"l": 0, "r": 0, "t": 0, "b": 0}, paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", xaxis={"visible": False}, yaxis={"visible": False},
                      showlegend=False)
    return fig


@st.fragment(run_every=timedelta(seconds=int(settings.get("KPI_REFRESH_SECONDS"))))
def wall() -> None:
    run_id = runs.current_run_id(engine)
    if run_id is None:
        st.warning(common.t("kpi_wall.no_completed_refresh_yet"))
        return
    cards = kpi.cards(engine, run_id)
    m = common.run_metrics(run_id)
    fresh = refresh.freshness(engine)
    stale = (f' · <span class="kpi-down">{html.escape(common.t("kpi_wall.stale", hours=formatting.count(fresh.age_hours, lang)))}'
             '</span>') if fresh.stale else ""
    subtitle = html.escape(common.t("kpi_wall.subtitle", as_of=m.get("as_of_month"), run_id=run_id))
    st.markdown(f'<div class="kpi-title">{html.escape(common.t("kpi_wall.customer_insight"))}</div>'
                f'<div class="kpi-sub">{subtitle}{stale}</div>', unsafe_allow_html=True)
    for row in LAYOUT:
        cols = st.columns(len(row))
        for col, key in zip(cols, row, strict=True):
            card = cards.get(key)
            label = html.escape(i18n.label("kpi", key, lang))
            with col.container(border=True):
                if card is None:
                    st.markdown(f'<div class="kpi-label">{label}</div><div class="kpi-value">—</div>',
                                unsafe_allow_html=True)
                    continue
                size = " kpi-small" if len(row) > 4 else ""
                st.markdown(f'<div class="kpi-label">{label}</div><div class="kpi-value{size}">{fmt(card.value, card.kind)}'
                            f'</div>{delta(card)}', unsafe_allow_html=True)
                if len(card.spark) > 1:
                    st.plotly_chart(sparkline(card), width="stretch", config={"displayModeBar": False},
                                    key=f"spark_{key}")


wall()
