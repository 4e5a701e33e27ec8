"""Read a figure as the dashboard displays it back into a number, with the precision it was shown at.

The pages write amounts, counts and rates for people, not for tests, and the format differs by
language: ``CNY 1,234,567``, ``CNY 142.21 m`` or ``¥1,234,567`` in English, ``¥123.46万`` / ``¥1.23 亿`` in Chinese,
``12.3%`` for rates, ``9.2×`` for a lift, ``—`` for a missing value. :func:`parse` turns any of these
into a :class:`Figure`: the value, and its precision — half a unit of the last digit shown, in the
figure's own scale (``1.2 万`` is 12,000 ± 500; ``12.3%`` is 0.123 ± 0.0005). A test then checks
that the value it computed from the store lies within that precision (:meth:`Figure.shows`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MISSING = frozenset({"—", "–", "-", "--", "n/a", "N/A", ""})

SCALES = {"万亿": 1e12, "亿": 1e8, "万": 1e4, "千": 1e3, "K": 1e3, "k": 1e3, "M": 1e6, "m": 1e6, "mn": 1e6,
          "bn": 1e9, "B": 1e9}

_FIGURE = re.compile(r"""
    (?P<sign>[-+−])?\s*
    (?P<currency>¥|￥|CNY|RMB)?\s*
    (?P<sign2>[-+−])?\s*
    (?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
    (?:\s*(?P<scale>万亿|亿|万|千|(?:bn|mn|[KkMmB])(?![A-Za-z])))?
    (?:\s*(?P<unit>%|％|×|元|CNY|RMB|pp|pt)(?![A-Za-z]))?
""", re.VERBOSE)


@dataclass(frozen=True)
class Figure:
    """A displayed figure: its value (None for "—"), precision, unit ("CNY", "%", "×" or "")."""

    value: float | None
    precision: float
    unit: str = ""
    text: str = ""

    def error(self, expected: float | None) -> float:
        """How far ``expected`` is from the shown value (inf when only one of them is missing)."""
        if self.value is None or expected is None or _nan(expected):
            return 0.0 if self.value is None and (expected is None or _nan(expected)) else math.inf
        return abs(self.value - float(expected))

    def shows(self, expected: float | None, *, slack: float = 0.0) -> bool:
        """True if ``expected`` rounds to what is shown (within half a unit of the last digit).

        ``slack`` widens the tolerance by a relative amount, for a figure the page derives in another
        order of floating-point operations than the test (left 0 unless there is such a reason).
        """
        error = self.error(expected)
        if self.value is None or math.isinf(error):
            return error == 0.0
        return error <= self.precision * (1 + 1e-9) + 1e-9 + slack * abs(float(expected))


def _nan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _figure(match: re.Match, text: str) -> Figure:
    number = match["number"].replace(",", "")
    decimals = len(number.split(".", 1)[1]) if "." in number else 0
    scale = SCALES.get(match["scale"] or "", 1.0)
    unit = match["unit"] or ""
    currency = bool(match["currency"]) or unit in ("元", "CNY", "RMB")
    if unit in ("%", "％"):
        scale /= 100
        unit = "%"
    elif unit in ("pp", "pt"):
        unit = "pt"
    elif currency:
        unit = "CNY"
    negative = (match["sign"] in ("-", "−")) != (match["sign2"] in ("-", "−"))
    value = float(number) * scale * (-1 if negative else 1)
    return Figure(value, 0.5 * 10 ** -decimals * scale, unit, text)


def find_all(text: str) -> list[Figure]:
    """Every figure in a piece of text (a caption, a chart label), in order."""
    return [_figure(m, text) for m in _FIGURE.finditer(str(text))]


def parse(text) -> Figure:
    """The one figure a metric or tile shows.

    Raises ``ValueError`` when the text holds no figure or more than one: a test must not guess
    which number a page meant.
    """
    text = str(text).strip()
    if text in MISSING:
        return Figure(None, 0.0, "", text)
    found = list(_FIGURE.finditer(text))
    if len(found) != 1:
        raise ValueError(f"expected one figure in {text!r}, found {len(found)}")
    return _figure(found[0], text)


def assert_shows(text, expected, what: str = "", *, slack: float = 0.0) -> None:
    """Assert that a displayed figure equals ``expected`` to the precision shown."""
    figure = parse(text)
    assert figure.shows(expected, slack=slack), (
        f"{what or 'figure'} shows {text!r} (= {figure.value} ± {figure.precision:g}) but the store gives {expected!r}")
