"""The KPI wall's tiles and sparklines: dark, large text readable from 5 m on a 1920×1080 screen.

The page script only places what this module builds: the style sheet, the header, one HTML tile
per KPI (label, value, change since last month) and a sparkline figure per monthly series. Every
text put into the HTML is escaped here, so a tile never carries markup from a label or a value.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from analytics import formatting, metrics
from analytics.i18n import tr

DARK_CSS = """
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
KIOSK_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], footer, #MainMenu {display: none !important;}
</style>
"""

# Rising is good for most tiles; for these, a fall is good news.
LOWER_IS_BETTER = {"churned", "churn_rate", "value_at_risk", "risk_mix"}
# The wall's rows of tiles, top to bottom.
# Each tile is a figure of the metric catalog: the same label means the same number on every page.
KPI_METRICS = {"customers": "customers_with_balance", "active": "customers_transacting", "new": "new_customers",
               "churned": "churned_customers", "aum": "aum_total", "deposits": "deposits_total",
               "loans": "loans_total", "avg_clv": "clv_average", "churn_rate": "churn_rate",
               "value_at_risk": "value_at_risk", "cross_sell_potential": "cross_sell_potential",
               "risk_mix": "risk_mix", "dq_overall": "dq_score"}
KPI_CLV_YEARS = 3  # the wall's average CLV is the 3-year margin CLV
LAYOUT = (("customers", "active", "new", "churned"), ("aum", "deposits", "loans", "avg_clv"),
          ("churn_rate", "value_at_risk", "cross_sell_potential", "risk_mix", "dq_overall"))
SPARK_COLOUR = "#5aa9ff"


def style(kiosk: bool) -> str:
    """The wall's style sheet; in kiosk mode it also hides the sidebar, header and menus."""
    return DARK_CSS + (KIOSK_CSS if kiosk else "")


def value_text(value, kind: str, lang: str) -> str:
    """A tile's value: compact money (``CNY 946 m`` / ``¥9.46亿``), a rate, or a count."""
    if kind == "money":
        return formatting.amount(value, lang, compact=True)
    if kind == "rate":
        return formatting.rate(value, lang)
    return formatting.count(value, lang)


def delta_html(card, lang: str) -> str:
    """The change since last month as a coloured arrow and text (green is good news)."""
    change = card.change
    if change is None:
        return '<span class="kpi-delta kpi-flat">—</span>'
    good = (change < 0) if card.key in LOWER_IS_BETTER else (change > 0)
    css = "kpi-flat" if change == 0 else "kpi-up" if good else "kpi-down"
    arrow = "▲" if change > 0 else "▼" if change < 0 else "■"
    if card.kind == "rate":
        text = tr("kpi_wall.points", lang, change=f"{change * 100:+.1f}")
    elif card.previous:
        text = f"{change / abs(card.previous):+.1%}"
    else:
        text = value_text(change, card.kind, lang)
    return f'<span class="kpi-delta {css}">{arrow} {html.escape(text)}</span>'


def tile_html(key: str, card, lang: str, *, small: bool = False) -> str:
    """One tile: its label, its value and its change; a dash when the run has no such figure."""
    name = html.escape(metrics.label(KPI_METRICS[key], lang, years=KPI_CLV_YEARS))
    definition = html.escape(metrics.definition(KPI_METRICS[key], lang, years=KPI_CLV_YEARS, months=3), quote=True)
    head = f'<div class="kpi-label" title="{definition}">{name}</div>'
    if card is None:
        return f'{head}<div class="kpi-value">—</div>'
    size = " kpi-small" if small else ""
    value = html.escape(value_text(card.value, card.kind, lang))
    return f'{head}<div class="kpi-value{size}">{value}</div>{delta_html(card, lang)}'


def header_html(run_id: int, as_of_month, lang: str, stale_hours: float | None = None) -> str:
    """The wall's title and the run it shows; says so when the figures are stale."""
    stale = ""
    if stale_hours is not None:
        stale = (' · <span class="kpi-down">'
                 f'{html.escape(tr("kpi_wall.stale", lang, hours=formatting.count(stale_hours, lang)))}</span>')
    subtitle = html.escape(tr("kpi_wall.subtitle", lang, as_of=as_of_month, run_id=run_id))
    return (f'<div class="kpi-title">{html.escape(tr("kpi_wall.customer_insight", lang))}</div>'
            f'<div class="kpi-sub">{subtitle}{stale}</div>')


def sparkline(series) -> go.Figure:
    """A tile's monthly series as a bare line, 70 px high."""
    # No fill to zero: the axis fits the series, so a 1 % move is visible from across the room.
    fig = go.Figure(go.Scatter(y=list(series), mode="lines", line={"width": 4, "color": SPARK_COLOUR},
                               hoverinfo="skip"))
    fig.update_layout(height=70, margin={"l": 0, "r": 0, "t": 0, "b": 0}, paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", xaxis={"visible": False}, yaxis={"visible": False},
                      showlegend=False)
    return fig
