"""The cross-sell settings, checked: rule thresholds, horizon, sample and list sizes, assessment validity."""

from __future__ import annotations

from analytics import settings
from analytics.errors import ConfigError
from analytics.schema import CREDIT_GRADES


def _setting_fraction(name: str, *, low_open: bool) -> float:
    value = float(settings.get(name))
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ConfigError(f"Setting {name}={value!r} must be a fraction in {'(0, 1]' if low_open else '[0, 1]'}")
    return value


def setting_positive_int(name: str) -> int:
    value = int(settings.get(name))
    if value < 1:
        raise ConfigError(f"Setting {name}={value!r} must be a positive whole number")
    return value


def credit_min_grade() -> str:
    """``CREDIT_OFFER_MIN_GRADE``, checked against the grade scale (AAA .. CCC)."""
    value = str(settings.get("CREDIT_OFFER_MIN_GRADE")).strip().upper()
    if value not in CREDIT_GRADES:
        raise ConfigError(f"Setting CREDIT_OFFER_MIN_GRADE={value!r} must be one of {', '.join(CREDIT_GRADES)}")
    return value


def cross_sell_settings() -> dict:
    """The cross-sell settings, checked: thresholds of the rules, horizon, sample, list sizes."""
    return {
        "min_support": _setting_fraction("CROSS_SELL_MIN_SUPPORT", low_open=True),
        "min_confidence": _setting_fraction("CROSS_SELL_MIN_CONFIDENCE", low_open=False),
        "horizon_months": setting_positive_int("CROSS_SELL_HORIZON_MONTHS"),
        "sample_size": setting_positive_int("CROSS_SELL_SAMPLE_SIZE"),
        "top_n": setting_positive_int("CROSS_SELL_TOP_N"),
        "campaign_size": setting_positive_int("CROSS_SELL_CAMPAIGN_SIZE"),
        "valid_days": setting_positive_int("RISK_ASSESSMENT_VALID_DAYS"),
        "credit_min_grade": credit_min_grade(),
    }


__all__ = ["credit_min_grade", "cross_sell_settings", "setting_positive_int"]
