"""Value tiers by the AUM of the run's month, with thresholds from the ``VALUE_TIER_THRESHOLDS``
setting (see :mod:`analytics.segmentation`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analytics import settings
from analytics.errors import ConfigError

VALUE_TIERS: tuple[str, ...] = ("mass", "affluent", "wealth", "private")


def parse_number_list(name: str, raw, *, count: int | None = None) -> tuple[float, ...]:
    """A comma-separated setting value as numbers, with a ``ConfigError`` naming the setting."""
    if isinstance(raw, (tuple, list)):
        parts = list(raw)
    else:
        parts = [p for p in str(raw).replace(" ", "").split(",") if p]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"Setting {name}={raw!r} must be comma-separated numbers") from None
    if count is not None and len(numbers) != count:
        raise ConfigError(f"Setting {name}={raw!r} must hold {count} numbers, not {len(numbers)}")
    return numbers


def value_tier_thresholds() -> tuple[float, float, float]:
    """The three AUM thresholds (CNY) of the ``VALUE_TIER_THRESHOLDS`` setting, checked ascending."""
    raw = settings.get("VALUE_TIER_THRESHOLDS")
    thresholds = parse_number_list("VALUE_TIER_THRESHOLDS", raw, count=len(VALUE_TIERS) - 1)
    if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)) or thresholds[0] <= 0:
        raise ConfigError(f"Setting VALUE_TIER_THRESHOLDS={raw!r} must be positive and strictly increasing")
    return thresholds  # type: ignore[return-value]


def value_tiers(aum: pd.Series, thresholds: Sequence[float] | None = None) -> pd.Series:
    """The value tier of each AUM: ``mass`` < t1 ≤ ``affluent`` < t2 ≤ ``wealth`` < t3 ≤ ``private``.

    Parameters
    ----------
    aum : pandas.Series
        AUM in CNY; missing counts as 0 (``mass``).
    thresholds : sequence of 3 floats, optional
        Defaults to the ``VALUE_TIER_THRESHOLDS`` setting.

    Returns
    -------
    pandas.Series
        An ordered categorical of :data:`VALUE_TIERS`, same index.
    """
    cuts = np.asarray(value_tier_thresholds() if thresholds is None else thresholds, dtype=float)
    values = np.nan_to_num(aum.to_numpy(dtype=float), nan=0.0)
    # side="right": a balance exactly on a threshold belongs to the higher tier.
    codes = np.searchsorted(cuts, values, side="right")
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(VALUE_TIERS), ordered=True),
                     index=aum.index, name="value_tier")



__all__ = ["VALUE_TIERS", "parse_number_list", "value_tier_thresholds", "value_tiers"]
