"""The KPI wall's tiles, sparklines and ranking panel: dark, large text readable from 5 m on a
1920×1080 screen, and in proportion on a 3840×2160 one (the root font grows with the width).

The page script only places what this module builds: the style sheet, the header, one HTML tile
per KPI (label, value, its changes each naming its basis, its share of target, and for a monthly
series an inline SVG sparkline that takes the height the tile leaves) and the ranking panel. Every
text put into the HTML is escaped here, so a tile never carries markup from a label or a value.
"""

from __future__ import annotations

import html

from analytics import formatting, metrics
from analytics.i18n import has, tr

DARK_CSS = """
<style>
/* 16 px up to a 1920 px wide screen, then in proportion: a 3840×2160 wall reads as a 1920×1080 one. */
html {font-size: max(16px, calc(100vw / 120));}
.stApp, [data-testid="stAppViewContainer"], [data-testid="stHeader"] {background: #0b1220; color: #e8eef8;}
[data-testid="stMainBlockContainer"] {padding: 1rem 1.5rem .5rem 1.5rem !important; max-width: 100%;}
/* Three rows of tiles share the screen's height under the header; two rows of data-quality tiles
   take one row's height, the ranking panel the other two. The sparkline takes what a tile leaves. */
.kpi-tile {display: flex; flex-direction: column; height: calc((100vh - 9rem) / 3 - 2.4rem);}
.kpi-tile.kpi-half {height: calc((100vh - 9rem) / 6 - 2.9rem);}
.kpi-panel {height: calc((100vh - 9rem) * 2 / 3 - 1.9rem); overflow: hidden;}
.kpi-panel.kpi-chosen {height: calc((100vh - 9rem) * 2 / 3 - 7rem);}  /* under the two choices */
.kpi-half .kpi-label {font-size: 1.1rem;}
.kpi-half .kpi-delta {font-size: .95rem; margin-right: 0;}
[data-testid="stMain"] [data-testid="stWidgetLabel"] p {color: #9fb3cf;}
.kpi-spark {flex: 1 1 auto; width: 100%; min-height: 1.5rem; margin-top: .4rem;}
.kpi-spark polyline {stroke-width: .25rem;}
.kpi-title {font-size: 2.2rem; font-weight: 700; color: #e8eef8; margin: 0; line-height: 1.2;}
.kpi-sub {font-size: 1.1rem; color: #8fa3bf;}
.kpi-label {font-size: 1.3rem; color: #9fb3cf; margin-bottom: .1rem; white-space: nowrap; overflow: hidden;
            text-overflow: ellipsis;}
.kpi-value {font-size: 3rem; font-weight: 700; color: #ffffff; line-height: 1.1; white-space: nowrap;}
.kpi-value.kpi-small {font-size: 2.4rem;}
.kpi-delta {font-size: 1.05rem; font-weight: 600; white-space: nowrap; margin-right: .8rem;}
.kpi-target {font-size: 1.05rem; font-weight: 600; white-space: nowrap; margin-top: .1rem;}
.kpi-up {color: #57d68d;} .kpi-down {color: #ff7a6b;} .kpi-flat {color: #8fa3bf;}
.kpi-panel-title {font-size: 1.3rem; color: #e8eef8; font-weight: 700; margin-bottom: .3rem; white-space: nowrap;}
.kpi-rank-head {font-size: 1.05rem; color: #9fb3cf; margin: .2rem 0 .1rem 0;}
.kpi-rank {display: flex; font-size: 1.1rem; line-height: 1.55; color: #e8eef8;}
.kpi-rank .n {width: 2.2rem; color: #8fa3bf;} .kpi-rank .u {flex: 1; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis;} .kpi-rank .v {font-weight: 700; white-space: nowrap; margin-left: .5rem;}
.kpi-note {font-size: .95rem; color: #8fa3bf;}
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
# Each tile is a figure of the metric catalog: the same label means the same number on every page.
KPI_METRICS = {"customers": "customers_with_balance", "active": "customers_transacting", "new": "new_customers",
               "churned": "churned_customers", "aum": "aum_total", "deposits": "deposits_total",
               "loans": "loans_total", "avg_clv": "clv_average", "churn_rate": "churn_rate",
               "value_at_risk": "value_at_risk", "cross_sell_potential": "cross_sell_potential",
               "risk_mix": "risk_mix", "dq_overall": "dq_score", "dq_completeness": "dq_completeness",
               "dq_accuracy": "dq_accuracy", "dq_freshness": "dq_freshness"}
KPI_CLV_YEARS = 3  # the wall's average CLV is the 3-year margin CLV
# The wall's rows of tiles, top to bottom, left of the ranking and data-quality column.
LAYOUT = (("customers", "active", "new", "churned"), ("aum", "deposits", "loans", "avg_clv"),
          ("churn_rate", "value_at_risk", "cross_sell_potential", "risk_mix"))
# The data-quality column under the ranking: the score and the three rates the guidance names.
DQ_LAYOUT = (("dq_overall", "dq_completeness"), ("dq_accuracy", "dq_freshness"))
# What the kiosk's ranking panel shows, one per tick: every rankable KPI, by branch then by region.
RANK_ROTATION = tuple((kpi, level) for kpi in ("aum", "deposits", "loans", "customers", "active", "new")
                      for level in ("branch", "region"))
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


def _change_text(change: float, previous: float | None, kind: str, lang: str) -> str:
    if kind == "rate":
        return tr("kpi_wall.points", lang, change=f"{change * 100:+.1f}")
    if previous:
        return f"{change / abs(previous):+.1%}"
    return ("+" if change > 0 else "") + value_text(change, kind, lang)


# Each change names its basis; where none can be computed, a short note, and the reason as help.
_BASIS = {"mom": lambda lang, change: tr("kpi_wall.mom", lang, change=change),
          "yoy": lambda lang, change: tr("kpi_wall.yoy", lang, change=change),
          "refresh": lambda lang, change: tr("kpi_wall.vs_refresh", lang, change=change),
          # a half tile (the data-quality block) has room for the short form only
          "refresh_short": lambda lang, change: tr("kpi_wall.vs_refresh_short", lang, change=change)}
_SHORT = {"first_month": lambda lang: tr("kpi_wall.short.first_month", lang),
          "first_refresh": lambda lang: tr("kpi_wall.short.first_refresh", lang),
          "no_year_ago": lambda lang: tr("kpi_wall.short.no_year_ago", lang)}
_WHY = {"first_month": lambda lang: tr("kpi_wall.why.first_month", lang),
        "first_refresh": lambda lang: tr("kpi_wall.why.first_refresh", lang),
        "no_year_ago": lambda lang: tr("kpi_wall.why.no_year_ago", lang)}


def level_label(level: str, lang: str) -> str:
    """"branch" or "region (province)", in ``lang``."""
    return tr("kpi_wall.level.branch" if level == "branch" else "kpi_wall.level.region", lang)


def _delta_span(key: str, change: float, previous: float | None, kind: str, basis: str, lang: str) -> str:
    good = (change < 0) if key in LOWER_IS_BETTER else (change > 0)
    css = "kpi-flat" if change == 0 else "kpi-up" if good else "kpi-down"
    arrow = "▲" if change > 0 else "▼" if change < 0 else "■"
    text = _BASIS[basis](lang, _change_text(change, previous, kind, lang))
    return f'<span class="kpi-delta {css}">{arrow} {html.escape(text)}</span>'


def delta_html(card, lang: str, *, short: bool = False) -> str:
    """The tile's changes, each naming its basis: month on month and year on year for a monthly
    series, "vs previous refresh" for a figure of the models. Where a change cannot be computed, a
    short note says so (the tile's help says why, :func:`why_no_change`)."""
    parts = []
    month = card.basis == "month"
    if card.change is not None:
        parts.append(_delta_span(card.key, card.change, card.previous, card.kind,
                                 "mom" if month else "refresh_short" if short else "refresh", lang))
    elif card.no_change:
        parts.append(f'<span class="kpi-delta kpi-flat">{html.escape(_SHORT[card.no_change](lang))}'
                     '</span>')
    if month:
        if card.year_change is not None:
            parts.append(_delta_span(card.key, card.year_change, card.year_ago, card.kind, "yoy", lang))
        elif card.no_year_ago:
            parts.append('<span class="kpi-delta kpi-flat">'
                         f'{html.escape(_SHORT["no_year_ago"](lang))}</span>')
    return "".join(parts)


def why_no_change(card, lang: str) -> str:
    """Why a tile shows no change (or no change on a year earlier), for its help; empty if it does."""
    reasons = [r for r in ((card.no_change if card is not None else None),
                           (card.no_year_ago if card is not None else None)) if r]
    return " ".join(_WHY[r](lang) for r in reasons)


def target_html(card, lang: str) -> str:
    """The figure as a share of its target (green on or beyond it; for churned customers, under it)."""
    reached = card.target if card is not None else None
    if reached is None or reached.share is None:
        return ""
    share = reached.share
    good = share <= 1 if card.key in LOWER_IS_BETTER else share >= 1
    css = "kpi-up" if good else "kpi-flat" if abs(share - 1) < 0.05 else "kpi-down"
    text = tr("kpi_wall.of_target", lang, share=formatting.rate(share, lang, digits=0), period=reached.period)
    title = tr("kpi_wall.target_help", lang, target=value_text(reached.target, card.kind, lang),
               actual=value_text(reached.actual, card.kind, lang), period=reached.period)
    return (f'<div class="kpi-target {css}" title="{html.escape(title, quote=True)}">'
            f'{html.escape(text)}</div>')


def spark_svg(series) -> str:
    """A monthly series as a bare line in inline SVG, stretched to the space the tile leaves (the
    axis fits the series, so a 1 % move is visible from across the room); empty under 2 points."""
    values = [float(v) for v in series if v == v]  # NaN: a month hidden by the small-cell rule
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = 100 / (len(values) - 1)
    points = " ".join(f"{i * step:.2f},{28 - 26 * (v - low) / span:.2f}" for i, v in enumerate(values))
    return ('<svg class="kpi-spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true">'
            f'<polyline points="{points}" fill="none" stroke="{SPARK_COLOUR}" '
            'vector-effect="non-scaling-stroke" stroke-linejoin="round"/></svg>')


def tile_html(key: str, card, lang: str, *, small: bool = False, half: bool = False, months: int = 3) -> str:
    """One tile: its label (with its definition, and why a change is missing, as help), its value,
    its changes and its share of target; a dash when the run has no such figure. ``months`` is the
    run's churn horizon (``churn.horizon_months``), which the churn tiles' definitions name."""
    name = html.escape(metrics.label(KPI_METRICS[key], lang, years=KPI_CLV_YEARS))
    help_text = metrics.definition(KPI_METRICS[key], lang, years=KPI_CLV_YEARS, months=months)
    why = why_no_change(card, lang)
    if why:
        help_text = f"{help_text} {why}"
    head = f'<div class="kpi-tile{" kpi-half" if half else ""}"><div class="kpi-label" title="{html.escape(help_text, quote=True)}">{name}</div>'
    if card is None:
        return f'{head}<div class="kpi-value">—</div></div>'
    size = " kpi-small" if small else ""
    value = html.escape(value_text(card.value, card.kind, lang))
    # a run-level figure: one point per refresh, from the second; a half tile has no room for one
    spark = "" if half else spark_svg(card.spark)
    return (f'{head}<div class="kpi-value{size}">{value}</div><div class="kpi-deltas">{delta_html(card, lang, short=half)}</div>'
            f'{target_html(card, lang)}{spark}</div>')


def unit_name(unit, stored_name, level: str, lang: str) -> str:
    """A ranked unit's name: a branch by the name the bank gave it; a region (its GB/T 2260
    province code) by the province's name in ``lang`` where the catalog has it (the stored name is
    the bank's, usually Chinese), else as stored."""
    if level == "region" and lang != "zh" and has(f"region.{unit}"):
        return tr(f"region.{unit}", lang)
    return str(stored_name)


def ranking_html(result: dict, kpi: str, level: str, lang: str, *, chosen: bool = False) -> str:
    """The ranking panel: top and bottom branches (or regions) on ``kpi``, from
    :func:`analytics.kpi.ranking`; says how many were too small to rank."""
    kind = "money" if kpi in ("aum", "deposits", "loans") else "count"
    metric = metrics.label(KPI_METRICS[kpi], lang)
    title = tr("kpi_wall.ranking_title", lang, metric=metric, level=level_label(level, lang))
    out = [f'<div class="kpi-panel{" kpi-chosen" if chosen else ""}"><div class="kpi-panel-title">'
           f'{html.escape(title)}</div>']
    if result["ranked"] == 0:
        out.append(f'<div class="kpi-note">{html.escape(tr("kpi_wall.nothing_to_rank", lang))}</div>')
    for part in ("top", "bottom"):
        frame = result[part]
        if frame.empty:
            continue
        head = (tr("kpi_wall.top", lang, n=len(frame)) if part == "top"
                else tr("kpi_wall.bottom", lang, n=len(frame)))
        out.append(f'<div class="kpi-rank-head">{html.escape(head)}</div>')
        for row in frame.itertuples(index=False):
            out.append(f'<div class="kpi-rank"><span class="n">{int(row.rank)}</span>'
                       f'<span class="u">{html.escape(unit_name(row.unit, row.name, level, lang))}</span>'
                       f'<span class="v">{html.escape(value_text(row.value, kind, lang))}</span></div>')
    if result["left_out"]:
        note = (tr("kpi_wall.left_out.branch", lang, n=result["left_out"]) if level == "branch"
                else tr("kpi_wall.left_out.region", lang, n=result["left_out"]))
        out.append(f'<div class="kpi-note">{html.escape(note)}</div>')
    return "".join(out) + "</div>"


def header_html(run_id: int, as_of_month, lang: str, stale_hours: float | None = None) -> str:
    """The wall's title and the run it shows; says so when the figures are stale."""
    stale = ""
    if stale_hours is not None:
        stale = (' · <span class="kpi-down">'
                 f'{html.escape(tr("kpi_wall.stale", lang, hours=formatting.count(stale_hours, lang)))}</span>')
    subtitle = html.escape(tr("kpi_wall.subtitle", lang, as_of=as_of_month, run_id=run_id))
    return (f'<div class="kpi-title">{html.escape(tr("kpi_wall.customer_insight", lang))}</div>'
            f'<div class="kpi-sub">{subtitle}{stale}</div>')
