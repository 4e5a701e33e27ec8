"""The translation catalog: every label, help text, chart title and message of the UI, in English
and Simplified Chinese.

The catalog is one YAML file (``data/i18n.yaml``)::

    churn.predicted_churn_rate:
      en: Predicted churn rate
      zh: 预测流失率

Keys are dotted: the page or chart module first (``churn.``, ``charts.risk.``), or a family of
domain values (``segment.Champions``, ``tier.mass``, ``stage.dormant``, ``page.kpi_wall``) that
:func:`label` looks up. Texts may hold ``str.format`` fields (``{n:,}``); both languages must use
the same fields. ``tests/test_i18n.py`` fails when a key used in the code, or a domain value, lacks
either language, or when the two languages' fields differ.

At run time a missing key does not break a page: :func:`tr` logs it once and shows the key.
"""

from __future__ import annotations

import json
import logging
import re
import string
from functools import lru_cache
from pathlib import Path

import yaml

from analytics.charts_common import LANGS

log = logging.getLogger(__name__)

CATALOG_FILE = Path(__file__).resolve().parent.parent / "data" / "i18n.yaml"
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}

_reported: set[str] = set()
CODE = re.compile(r"^[a-z][a-z0-9_]*( \{.*\})?$", re.S)


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    """The catalog as ``{key: {"en": text, "zh": text}}`` (read once per process)."""
    with CATALOG_FILE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{CATALOG_FILE} must map keys to {{en, zh}} texts")
    return {str(k): {lang: str(v) for lang, v in (entry or {}).items()} for k, entry in data.items()}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")
    return lang


def tr(key: str, lang: str, **fields) -> str:
    """The text of ``key`` in ``lang`` ("en" or "zh"), with ``fields`` filled in."""
    check_lang(lang)
    entry = catalog().get(key)
    text = entry.get(lang) if entry else None
    if text is None:
        if key not in _reported:
            _reported.add(key)
            log.warning("translation missing: %s (%s)", key, lang)
        return key
    return text.format(**fields) if fields else text


def has(key: str) -> bool:
    """True when ``key`` is in the catalog."""
    return key in catalog()


def label(family: str, value, lang: str) -> str:
    """The display name of a domain value (``label("tier", "mass", "zh")`` → ``大众客户``).

    A value the catalog does not know (a bank's own product category, say) is shown as it is.
    """
    key = f"{family}.{value}"
    return tr(key, lang) if key in catalog() else str(value)


def fields(text: str) -> set[str]:
    """The ``str.format`` field names of ``text`` (``"{n:,} of {total}"`` → ``{"n", "total"}``)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# --------------------------------------------------------------------------------------------
# Stored texts as codes: a result table keeps a code and its parameters, a page says it in words
# --------------------------------------------------------------------------------------------

def coded(code: str, **params) -> str:
    """A text to store as its code and parameters (``assessment_expired {"date": "2021-02-07"}``),
    said in the reader's language by :func:`render_coded`."""
    return f"{code} {json.dumps(params, ensure_ascii=False, sort_keys=True)}" if params else code


def decode_coded(stored) -> tuple[str, dict] | None:
    """``(code, params)`` of a stored coded text, or None for anything else (free text, an older
    run's English words)."""
    if not isinstance(stored, str) or not stored or not CODE.match(stored):
        return None
    code, _, params = stored.partition(" ")
    if not params:
        return code, {}
    try:
        values = json.loads(params)
    except ValueError:
        return None
    return (code, values) if isinstance(values, dict) else None


def render_coded(stored, family: str, lang: str, formats: dict | None = None):
    """A stored coded text in words of ``lang``, through ``<family>.<code>`` in the catalog;
    ``formats`` maps a parameter to ``f(value, lang)`` (an amount, a label). Text that is no known
    code (an older run's words) is returned as it is, None as None."""
    if stored is None or (isinstance(stored, float) and stored != stored):
        return None
    found = decode_coded(stored)
    if found is None or f"{family}.{found[0]}" not in catalog():
        return stored
    code, params = found
    fields_ = {k: (formats[k](v, lang) if formats and k in formats else v) for k, v in params.items()}
    text = tr(f"{family}.{code}", lang)
    if not fields(text) <= set(fields_):
        return stored
    return text.format(**fields_)
