"""The same label means the same number on every page: every headline figure comes from the metric
catalog (analytics.metrics), and, rendered for every role on the demo store, a label never shows
two different values within one run and scope (read back to the precision shown)."""

from __future__ import annotations

import pytest

from analytics import access, metrics
from tests.app import pagekit as kit
from tests.app.figures import parse

# One set of sessions per language: a session switched between languages keeps widget values of
# the other language.
pages_en = kit.pages_fixture("lbl_en")
pages_zh = kit.pages_fixture("lbl_zh")

# Customer 360's figures are one customer's fields, not headline figures.
FIELD_PAGES = {"customer_360"}
BANK_WIDE_ROLES = ("executive", "marketing", "risk", "compliance", "admin", "display")


def _shown(at) -> list[tuple[str, str]]:
    """(label, value) of every metric and KPI tile on the page."""
    return [(m.label, m.value) for m in at.metric] + [(label, value) for label, value, _ in kit.tiles(at)
                                                      if label and value is not None]


def _catalog_labels(lang: str) -> set[str]:
    return {metrics.label(key, lang, years=years) for key in metrics.METRICS for years in (1, 3, 5)}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_one_label_shows_one_value_on_every_page_for_every_role(request, lang):
    pages = request.getfixturevalue(f"pages_{lang}")
    seen: dict[str, tuple[object, str, str]] = {}  # label -> (figure, where, text)
    catalog = _catalog_labels(lang)
    checked = 0
    for role in BANK_WIDE_ROLES:  # one run, one scope (the bank): every label, one value
        for page in access.pages_for([role]):
            if page in FIELD_PAGES or not kit.page_exists(page):
                continue
            at = pages.open(role, page, lang)
            for label, text in _shown(at):
                assert label in catalog, f"{role} on {page}: {label!r} is not a figure of the metric catalog"
                try:
                    figure = parse(text)
                except ValueError:  # a value of two figures ("1,234 / 137"): compared as shown
                    figure = None
                where = f"{role} on {page}"
                if label in seen:
                    first, first_where, first_text = seen[label]
                    if first is None or figure is None:
                        agree = first_text == text
                    else:  # equal to the precision of both displays (one may be compact, as on the wall)
                        agree = (first.value is None) == (figure.value is None) and (
                            figure.value is None
                            or abs(first.value - figure.value) <= first.precision + figure.precision)
                    assert agree, f"{label!r}: {first_text} ({first_where}) but {text} ({where})"
                else:
                    seen[label] = (figure, where, text)
                checked += 1
    assert checked > 40 and len(seen) > 20, (checked, sorted(seen))
