"""The Chinese UI shows no English data value on any page (#15): every page, drawn in Chinese, is
scanned (table cells and headers, metric labels and values, every Markdown, caption, notice and
heading text, the sidebar's name and roles, and every text of every chart) for a Latin word that is
not on the short allow-list below.

To keep the suite's time, each page is drawn once in Chinese, for the role that sees the most of it:
the pages with tables are drawn so by tests/app/test_table_formats.py, which runs this scan on those
draws too; the others are drawn here. One shared demo store (the session's).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from analytics import access, table_formats
from tests.app import pagekit

pages = pagekit.pages_fixture("zhv")

ROLES = ("risk", "marketing", "compliance", "admin", "executive", "display")

# Latin tokens a Chinese page may show, and why.
ALLOWED = {
    # units, currencies and the names of measures that Chinese bank reports write in Latin letters
    "CNY", "AUM", "CLV", "RFM", "KPI", "ROC", "AUC", "PR", "MoM", "YoY", "ID", "TOTP", "QR",
    # file formats of the export buttons, and the product names they open in
    "CSV", "Excel", "XLSX", "SQL", "SQLite", "PostgreSQL",
    # risk tolerance levels (C1-C5), product risk levels (R1-R5), credit grades (AAA..CCC)
    "AAA", "AA", "BBB", "BB", "CCC",
    # names that are names in Chinese texts too: the time zone, a score, an interval's method, a file
    "UTC", "Brier", "Newcombe", "README",
    # the national standard of the resident ID number (GB 11643), named so in Chinese too
    "GB",
    # the tag expression language's operators, which the user types as they are
    "and", "or", "not",
    # percentage points, as the campaign charts' axes write them
    "pp",
}
# Columns whose values are what someone typed or a user's login, shown as they are: campaign names
# and messages, user names; and identifiers shown verbatim by design (analytics.table_formats.CODE:
# ids, session ids, addresses, a tag's name, which a tag expression is written with and whose label
# in the language stands beside it, a table's or column's name in the store).
FREE_TEXT_COLUMNS = table_formats.CODE | frozenset({"campaign_name", "message", "owner", "username", "display_name", "requested_by",
                               "decided_by", "changed_by", "comment", "outcome_note", "reason", "tag", "name",
                               "created_by"})
# Identifiers shown verbatim (customer, branch, product, run and user ids, masked values).
IDENT = re.compile(r"^(?:[A-Z]{1,4}\d[\w-]*|[A-Z]\d|\d+\w*|\S*\*\S*)$")  # ids, and masked values (l***@163.com)
LATIN = re.compile(r"[A-Za-z][A-Za-z0-9_.*@'-]*")


def _clean(text: str) -> str:
    text = re.sub(r"<style>.*?</style>", " ", text, flags=re.S)  # the pages' CSS
    text = re.sub(r"<[^>]+>", " ", text)                       # HTML tags of tiles and notes
    text = re.sub(r":material/\w+:", " ", text)                # icons
    text = re.sub(r"https?://\S+|`[^`]*`", " ", text)          # links, and code the user types (tag rules)
    text = re.sub(r"&[a-z]+;", " ", text)                       # HTML entities
    text = re.sub(r"(?:^|(?<=\s))\*\*(?=[^\s*])|(?<=[^\s*])\*\*(?=\s|$)", "", text)  # **bold** markers
    text = re.sub(r"\\([*_\[\]()#|`-])", r"\1", text)           # Markdown escapes (zhv\_risk)
    return text


def english(text, users: set[str] = frozenset()) -> list[str]:
    """The Latin words of ``text`` that are neither allowed tokens nor identifiers."""
    if text is None or isinstance(text, int | float):
        return []
    found = []
    for word in LATIN.findall(_clean(str(text))):
        word = word.strip(".'-_")
        if len(word) < 2 or word in ALLOWED or word in users or IDENT.match(word):
            continue
        if re.fullmatch(r"(?:C|R)[1-5](?:-(?:C|R)[1-5])?", word):
            continue
        found.append(word)
    return found


# Chart keys whose strings are styling or plotly's own settings, never drawn as words.
_CHART_SETTINGS = frozenset({
    "font", "line", "marker", "colorscale", "colorway", "template", "meta", "uid", "customdata", "hoverlabel",
    "domain", "legendgroup", "offsetgroup", "alignmentgroup", "bingroup", "coloraxis", "type",
    "mode", "orientation", "xanchor", "yanchor", "anchor", "overlaying", "side", "ticklabelposition",
    "textposition", "hovermode", "barmode", "dragmode", "tickformat", "hoverformat", "ticksuffix", "tickprefix",
    "texttemplate", "xref", "yref", "fill", "fillcolor", "color", "bgcolor", "plot_bgcolor", "paper_bgcolor",
    "gridcolor", "linecolor", "zerolinecolor", "bordercolor", "tickmode", "categoryorder", "valueformat",
    "textfont", "insidetextfont", "outsidetextfont", "align", "matches", "scaleanchor", "layer", "symbol", "dash",
    "pattern", "histfunc", "xhoverformat", "yhoverformat", "rangemode", "textinfo", "hoverinfo", "ticks",
    "ticklabelmode", "ticklabeloverflow", "xperiodalignment", "stackgroup", "groupnorm", "direction", "bdata",
    "dtype", "shape", "valign", "xcalendar", "ycalendar", "exponentformat", "separators", "autorange",
    "constraintoward", "insidetextanchor", "textangle", "visible", "automargin", "legendrank", "sizemode",
    "showscale", "thicknessmode", "lenmode", "steps", "threshold", "axis", "bar", "delta", "number",
    "hovertemplatefallback", "entrywidthmode", "itemsizing", "tracegroupgap", "editrevision", "uirevision",
})


def _chart_texts(spec: dict) -> list[str]:
    """Every string a chart may draw: titles, axis titles and tick texts, trace names, category
    values, texts, hover templates and annotations (plotly's own settings left out)."""
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in _CHART_SETTINGS:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and not re.fullmatch(r"[xy]\d*( domain)?", node):  # axis references
            out.append(re.sub(r"%\{[^}]*\}", " ", re.sub(r"<extra>.*?</extra>", " ", node)))

    walk(spec)
    return out


def texts_of(at) -> list[tuple[str, str]]:
    """(where, text) of everything the page drew that a reader reads."""
    out = []
    for kind in ("title", "header", "subheader", "caption", "markdown", "info", "warning", "error", "success",
                 "text", "exception"):
        out += [(kind, str(e.value)) for e in getattr(at, kind)]
    for m in at.metric:
        out += [("metric label", m.label), ("metric value", str(m.value)), ("metric delta", m.proto.delta or "")]
    for i, table in enumerate(at.dataframe):
        frame: pd.DataFrame = table.value
        config = json.loads(table.proto.columns or "{}")
        out += [(f"table {i} header", (config.get(str(c)) or {}).get("label") or str(c)) for c in frame.columns]
        for column in frame.columns:
            if pd.api.types.is_numeric_dtype(frame[column]) or str(column) in FREE_TEXT_COLUMNS:
                continue
            out += [(f"table {i} {column}", str(v)) for v in frame[column].dropna().unique()]
    for i, spec in enumerate(pagekit.charts(at)):
        out += [(f"chart {i}", s) for s in _chart_texts(spec)]
    for box in at.multiselect:
        out.append(("multiselect label", box.label))
        # Without a placeholder of the page's own, the browser shows Streamlit's "Choose options".
        out.append(("multiselect placeholder", box.proto.placeholder or "Choose options"))
    return out


ROLE_PAGES = [p for p in access.PAGES if pagekit.page_exists(p)]


def drawn_elsewhere(page: str) -> bool:
    """Pages tests/app/test_table_formats.py draws in Chinese (and scans with :func:`problems`)."""
    return "show_table" in (pagekit.ROOT / "app_pages" / f"{page}.py").read_text()


def _cases():
    return [(page, next(r for r in ROLES if access.can_view_page([r], page)))
            for page in ROLE_PAGES if not drawn_elsewhere(page)]


def problems(at, username: str) -> list[str]:
    """Every English word of a page drawn in Chinese, with where it was found."""
    return [f"{where}: {word!r} in {text[:80]!r}" for where, text in texts_of(at) for word in english(text, {username})]


def test_the_scan_catches_english_and_lets_identifiers_pass():
    assert english("流失原因：AUM down 12 % in 3 months") == ["down", "in", "months"]
    assert english("客户 C000123 · 网点 B07 · 产品 P0042 · 风险 C4-C5 · CNY 1,200 · 138****1234") == []
    assert english("张** · 1990-**-** · ROC AUC 0.81 · CSV") == []
    assert english("<div class='kpi-label'>客户数</div>") == []
    assert english("标签 `mortgage_holder and not frequent_complainer`") == []
    assert english("标签 mortgage_holder") == ["mortgage_holder"]
    assert english("**zhv\\_risk**  \n风险经理", {"zhv_risk"}) == []
    assert english("**zhv\\_risk**  \nrisk", {"zhv_risk"}) == ["risk"]  # a role name left raw
    spec = {"data": [{"type": "bar", "x": ["Wealth", "大众"], "y": [1, 2], "name": "customers",
                      "hovertemplate": "%{x}<extra></extra>", "marker": {"color": "red"}}],
            "layout": {"title": {"text": "按层级"}, "xaxis": {"title": {"text": "tier"}, "ticktext": ["高"]}}}
    found = [w for text in _chart_texts(spec) for w in english(text)]
    assert sorted(found) == ["Wealth", "customers", "tier"]


@pytest.mark.parametrize(("page", "role"), _cases())
def test_the_chinese_ui_shows_no_english_value(pages, page, role):
    pagekit.set_bare_lang("zh")
    at = pages.open(role, page, "zh")
    assert not at.exception, f"{role} on {page}: {at.exception}"
    found = problems(at, pages.username(role))
    assert not found, f"{role} on {page} (zh): {len(found)} English words: {found[:12]}"
