"""Honest statistics for a campaign: conversion per arm and the uplift with a 95 % interval.

The uplift is the difference of two independent proportions, treatment minus control. Its interval
is Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the difference between
independent proportions: comparison of eleven methods", Statistics in Medicine 17, method 10): each
arm's Wilson score interval without continuity correction, combined as

    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
    upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

It stays inside [-1, 1], behaves at 0 % and 100 % conversion, and needs no bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

Z95 = float(norm.ppf(0.975))  # 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (no continuity correction).

    Raises
    ------
    ValueError
        For ``n`` < 1 or ``successes`` outside ``0..n``.
    """
    successes, n = int(successes), int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    z2 = z * z
    centre = (2 * n * p + z2) / (2 * (n + z2))
    half = z * math.sqrt(z2 + 4 * n * p * (1 - p)) / (2 * (n + z2))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``(difference, lower, upper)`` of ``x1/n1 - x2/n2`` by Newcombe's hybrid score method."""
    p1, p2 = int(x1) / int(n1) if n1 else math.nan, int(x2) / int(n2) if n2 else math.nan
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


@dataclass(frozen=True)
class Uplift:
    """Conversion of both arms and the uplift in percentage points, with its 95 % interval."""

    treatment: int
    treatment_converted: int
    control: int
    control_converted: int
    treatment_rate: float | None
    control_rate: float | None
    uplift_pp: float | None
    ci_low_pp: float | None
    ci_high_pp: float | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def uplift(treatment_converted: int, treatment: int, control_converted: int, control: int) -> Uplift:
    """The uplift of a campaign (or of one segment of it); rates and interval are None when an arm
    is empty (there is nothing to compare)."""
    t_rate = treatment_converted / treatment if treatment else None
    c_rate = control_converted / control if control else None
    if treatment and control:
        d, low, high = newcombe_interval(treatment_converted, treatment, control_converted, control)
        pp = (100 * d, 100 * low, 100 * high)
    else:
        pp = (None, None, None)
    return Uplift(int(treatment), int(treatment_converted), int(control), int(control_converted),
                  t_rate, c_rate, *pp)


__all__ = ["Uplift", "Z95", "newcombe_interval", "uplift", "wilson_interval"]
