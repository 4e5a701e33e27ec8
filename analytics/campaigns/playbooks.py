"""Segment playbooks (``data/playbooks.yaml``): the recommended treatment per value tier and per RFM
segment, shown on the Segments page and used as a new campaign's default message."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from analytics import settings
from analytics.campaigns.errors import CampaignError

PLAYBOOKS_FILE = Path("data") / "playbooks.yaml"
DIMENSIONS = ("value_tier", "rfm_segment")


def _path() -> Path:
    return settings.PROJECT_ROOT / PLAYBOOKS_FILE


@lru_cache(maxsize=4)
def _load(path: str, modified: float) -> dict[str, dict[str, dict[str, str]]]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise CampaignError(f"Playbook file {path} not found. Hint: restore data/playbooks.yaml") from None
    except yaml.YAMLError as exc:
        raise CampaignError(f"Playbook file {path} is not valid YAML ({type(exc).__name__})") from None
    out: dict[str, dict[str, dict[str, str]]] = {}
    for dimension in DIMENSIONS:
        entries = data.get(dimension) or {}
        if not isinstance(entries, dict):
            raise CampaignError(f"Playbook file {path}: {dimension} must map values to treatments")
        for value, entry in entries.items():
            if not isinstance(entry, dict) or not entry.get("treatment") or not entry.get("treatment_zh"):
                raise CampaignError(f"Playbook file {path}: {dimension} {value!r} needs treatment and treatment_zh")
        out[dimension] = {str(k): {"en": str(v["treatment"]), "zh": str(v["treatment_zh"])}
                          for k, v in entries.items()}
    return out


def playbooks() -> dict[str, dict[str, dict[str, str]]]:
    """``{dimension: {value: {"en": text, "zh": text}}}`` for ``value_tier`` and ``rfm_segment``."""
    path = _path()
    return _load(str(path), path.stat().st_mtime if path.exists() else 0.0)


def playbook_table(lang: str = "en") -> pd.DataFrame:
    """The playbooks as a table: ``dimension``, ``value``, ``recommended_treatment`` (in ``lang``)."""
    rows = [{"dimension": d, "value": v, "recommended_treatment": texts.get(lang, texts["en"])}
            for d, entries in playbooks().items() for v, texts in entries.items()]
    return pd.DataFrame(rows, columns=["dimension", "value", "recommended_treatment"])


def default_message(rfm_segments: pd.Series, value_tiers: pd.Series, lang: str = "en") -> str | None:
    """The playbook of the audience's most common RFM segment that has one, else of its most common
    value tier (ties: the first in name order); None when neither has a playbook."""
    books = playbooks()
    for dimension, values in (("rfm_segment", rfm_segments), ("value_tier", value_tiers)):
        counts = pd.Series(values, dtype=object).dropna().astype(str).value_counts()
        for value in sorted(counts.index, key=lambda v: (-counts[v], v)):
            if value in books[dimension]:
                return books[dimension][value].get(lang, books[dimension][value]["en"])
    return None


__all__ = ["DIMENSIONS", "default_message", "playbook_table", "playbooks"]
