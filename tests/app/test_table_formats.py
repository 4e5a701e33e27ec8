"""Every table on every page, for every role that may open it, reads like the charts: no float with
more than two decimals, no raw key (``consumer_loan``, ``wealth``, ``resident_id``, any
lower_snake_case token) where words belong, and in Chinese no English label of a key.

One shared demo store; each page is drawn once per role in English, and once in Chinese for the
role that sees the most of it. Identifier columns (:data:`analytics.table_formats.CODE`: customer
ids, rule names, user names) are shown verbatim by design and not scanned for keys.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from analytics import access, i18n, table_formats
from tests.app import pagekit
from tests.app import test_zh_values as zh_values

pages = pagekit.pages_fixture("tbl")

# Roles a plain test user can hold (a relationship manager needs a scope; its pages are the ones
# marketing sees, read through the same helper).
ROLES = ("risk", "marketing", "compliance", "admin", "executive", "display")
TABLE_PAGES = [p for p in access.PAGES if "show_table" in (pagekit.ROOT / "app_pages" / f"{p}.py").read_text()]
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
FAMILIES = sorted({f for families in table_formats.ENUM.values() for f in families})


def _keys() -> dict[str, set[str]]:
    """Every key of the families tables translate, with its families (``new``: stage, alert_status)."""
    out: dict[str, set[str]] = {}
    for key in i18n.catalog():
        family, _, value = key.partition(".")
        if family in FAMILIES:
            out.setdefault(value, set()).add(family)
    return out


KEYS = _keys()
ENGLISH_LABELS = ({i18n.tr(f"{f}.{v}", "en") for v, fs in KEYS.items() for f in fs}
                  - {i18n.tr(f"{f}.{v}", "zh") for v, fs in KEYS.items() for f in fs})


def _words(lang: str) -> set[str]:
    """Texts of the catalog in ``lang`` that a table may show: labels of keys and of columns (a
    profile lists its fields by their column labels)."""
    return {i18n.tr(k, lang) for k in i18n.catalog() if k.partition(".")[0] in (*FAMILIES, "column", "dimension")}


WORDS = {lang: _words(lang) for lang in ("en", "zh")}
# The language each role's session was last drawn in (AppTest reads a widget's labels between runs
# in that language: tests/app/pagekit.py set_bare_lang).
LAST_LANG: dict[str, str] = {}


def _cases():
    english, chinese = [], []
    for page in TABLE_PAGES:
        roles = [r for r in ROLES if access.can_view_page([r], page)]
        english += [(page, role, "en") for role in roles]
        chinese.append((page, roles[0], "zh"))
    return english + chinese


def _draw(pages, page: str, role: str, lang: str):
    pagekit.set_bare_lang(LAST_LANG.get(role, "en"))
    LAST_LANG[role] = lang
    at = pages.open(role, page, lang)
    if page == "customer_360":  # a customer with holdings and contacts
        cid = pagekit.scalar(pages.engine, "SELECT h.customer_id FROM holdings h JOIN contacts c "
                                           "ON c.customer_id = h.customer_id ORDER BY h.customer_id LIMIT 1")
        at.text_input[0].input(cid)
        at.button[0].click()
        at.run()
    elif page == "segments" and access.ROLE_ACCESS_LEVEL[role] != "aggregate":  # the campaign list
        at.text_input(key="tag_expr").input("credit_card_holder").run()
    assert not at.exception, f"{role} on {page} ({lang}): {at.exception}"
    return at


def problems(frame: pd.DataFrame, lang: str) -> list[str]:
    """What is wrong with one rendered table: long floats, raw keys, English labels in Chinese."""
    found = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_float_dtype(series):
            long = [v for v in series.dropna() if math.isfinite(v) and abs(round(v, 2) - v) > 1e-9]
            if long:
                found.append(f"{column}: {long[0]!r} has more than two decimals")
            continue
        if str(column) in table_formats.CODE:
            continue
        for value in series.dropna().unique():
            if not isinstance(value, str):
                continue
            if value in WORDS[lang]:
                continue
            if value in KEYS:
                found.append(f"{column}: raw key {value!r}")
            elif SNAKE.match(value):
                found.append(f"{column}: raw token {value!r}")
            elif lang == "zh" and value in ENGLISH_LABELS:
                found.append(f"{column}: English label {value!r} in Chinese")
    return found


def test_the_scan_catches_raw_values():
    bad = pd.DataFrame({"customer_id": ["C1"], "category": ["consumer_loan"], "aum": [120584.6814],
                        "note": ["some_token"], "value_tier": ["Wealth"]})
    assert len(problems(bad, "en")) == 3
    assert len(problems(bad, "zh")) == 4  # and "Wealth" is English
    shown = table_formats.display_frame(bad, "zh")
    assert problems(shown.drop(columns=["note", "value_tier"]), "zh") == []


@pytest.mark.parametrize(("page", "role", "lang"), _cases())
def test_every_table_reads_like_the_charts(pages, page, role, lang):
    at = _draw(pages, page, role, lang)
    found = []
    for i, table in enumerate(at.dataframe):
        found += [f"table {i}: {p}" for p in problems(table.value, lang)]
    if lang == "zh":  # and no English word anywhere on the page (tests/app/test_zh_values.py)
        found += zh_values.problems(at, pages.username(role))
    assert not found, f"{role} on {page} ({lang}): {found[:8]}"
