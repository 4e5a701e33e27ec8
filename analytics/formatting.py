"""How numbers are written in the UI, in English and in Simplified Chinese.

English groups thousands with commas (``1,234,567``); Chinese counts in 万 (10⁴) and 亿 (10⁸), as
bank reports in China do (``123.46万``, ``1.23亿``), and writes smaller numbers in full. Amounts are
Chinese yuan: ``CNY 1,234,567`` in English, ``¥123.46万`` in Chinese. Rates are percentages in
both languages. A missing value (``None``, NaN) is an em dash, never ``0``.

Every page and chart takes its figures from here, so one figure reads the same on every page.
"""

from __future__ import annotations

import math
import re

from analytics.charts_common import LANGS

MISSING = "—"
WAN = 1e4
YI = 1e8


def _number(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _parsed(value, lang: str) -> float | None:
    """``value`` as a float (None when missing), after checking ``lang``."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")
    return _number(value)


def _chinese_units(number: float, digits: int) -> str:
    """``number`` in 万/亿 when it is that large, otherwise in full with ``digits`` decimals."""
    size = abs(number)
    # Pick the unit after rounding, so 99,999,999 reads 1.00亿, not 10,000.00万.
    if round(size / WAN, 2) >= WAN:
        return f"{number / YI:,.2f}亿"
    if round(size, digits) >= WAN:
        return f"{number / WAN:,.2f}万"
    return f"{number:,.{digits}f}"


def count(value, lang: str = "en") -> str:
    """A whole count: ``1,234,567`` in English, ``123.46万`` in Chinese."""
    number = _parsed(value, lang)
    if number is None:
        return MISSING
    number = round(number)
    return f"{number:,.0f}" if lang == "en" else _chinese_units(number, 0)


def _three_figures(number: float) -> str:
    """Three significant figures, thousands separated: 1.26, 12.3, 946, 1,234."""
    decimals = 2 if number < 10 else 1 if number < 100 else 0
    text = f"{number:,.{decimals}f}"
    if decimals and float(text.replace(",", "")) >= (10 if decimals == 2 else 100):
        text = f"{number:,.{decimals - 1}f}"  # 9.999 rounds to 10.0, not 10.00
    return text


def amount(value, lang: str = "en", *, digits: int = 0, compact: bool = False) -> str:
    """An amount in yuan: ``CNY 1,234,567`` in English, ``¥123.46万`` in Chinese.

    ``compact`` (the KPI wall, read from across a room) writes English amounts of a thousand and
    more with three significant figures in k, m or bn (``CNY 330 k``, ``CNY 1.26 m``,
    ``CNY 1,235 bn``); Chinese is compact already.
    """
    number = _parsed(value, lang)
    if number is None:
        return MISSING
    sign = "-" if number < 0 else ""
    if lang == "en":
        size = abs(number)
        if compact:
            for unit, suffix in ((1e9, " bn"), (1e6, " m"), (1e3, " k")):
                if size >= unit * 0.9995:  # at least 1.00 of the unit once rounded
                    return f"{sign}CNY {_three_figures(size / unit)}{suffix}"
        return f"{sign}CNY {size:,.{digits}f}"
    return f"{sign}¥{_chinese_units(abs(number), digits)}"


def rate(value, lang: str = "en", *, digits: int = 1) -> str:
    """A share or rate (0.123 → ``12.3%``), the same in both languages."""
    number = _parsed(value, lang)
    if number is None:
        return MISSING
    return f"{number:.{digits}%}"


def ratio(value, lang: str = "en", *, digits: int = 1) -> str:
    """A multiple such as a lift (9.2 → ``9.2×``)."""
    number = _parsed(value, lang)
    if number is None:
        return MISSING
    return f"{number:,.{digits}f}×"


def decimal(value, lang: str = "en", *, digits: int = 3) -> str:
    """A plain score or statistic with a fixed number of decimals (an AUC, a Brier score)."""
    number = _parsed(value, lang)
    if number is None:
        return MISSING
    return f"{number:,.{digits}f}"


# Characters that open a Markdown construct in Streamlit's renderer (GitHub-flavoured Markdown plus
# math and ``:directive[...]``): emphasis, links and images, code, HTML, tables, strike-through,
# headings, math, entities and the backslash itself. CommonMark lets any of them be escaped.
_MD_SPECIAL = frozenset("\\`*_~[]()<>!|$:&#{}")
# At the start of a text these begin a list item ("- ", "+ ", "1. "; "1)" is escaped above).
_MD_BLOCK_START = re.compile(r"^(\s*\d{0,9})([-+.])(?=[\s+-]|$)")
# Streamlit's renderer turns bare URLs, "www." names and e-mail addresses into links *after* the
# escapes are resolved, so a backslash cannot stop those: a word joiner (U+2060: invisible, no
# space) inside the pattern does.
WORD_JOINER = "\u2060"
_AUTOLINKS = (re.compile(r"(?i)(https?\\:)(?=//)"), re.compile(r"(?i)(www)(?=\.)"), re.compile(r"(@)(?=[-\w])"))


def escape_md(value) -> str:
    """``value`` as text that Markdown shows literally: no link, emphasis, image, HTML or heading.

    For any text from the store or from a user (names, addresses, error messages that echo input)
    put into ``st.markdown``/``info``/``warning``/``error``/``caption``, a metric or a label.
    Line breaks become spaces, so a value cannot start a new block. ``None`` is an empty string.
    """
    if value is None:
        return ""
    text = re.sub(r"[\r\n\u2028\u2029]+", " ", str(value))
    text = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)
    text = _MD_BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    for pattern in _AUTOLINKS:
        text = pattern.sub(lambda m: m.group(1) + WORD_JOINER, text)
    return text
