"""Known answers for the campaign statistics: Wilson and Newcombe intervals against Newcombe's
published worked examples, and the uplift's edge cases."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.campaigns.stats import newcombe_interval, uplift, wilson_interval


def test_wilson_interval_matches_newcombe_1998_single_proportion_example():
    # Newcombe (1998), Stat Med 17:857-872, Table I example 81/263: score method 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "low", "high"), [
    # Newcombe (1998), Stat Med 17:873-890, Table II, method 10 (hybrid score, no continuity correction).
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
    (10, 10, 0, 10, 0.6075, 1.0000),
])
def test_newcombe_interval_matches_the_published_table(x1, n1, x2, n2, low, high):
    d, lo, hi = newcombe_interval(x1, n1, x2, n2)
    assert d == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_uplift_in_percentage_points():
    u = uplift(56, 70, 48, 80)
    assert u.treatment_rate == pytest.approx(0.8) and u.control_rate == pytest.approx(0.6)
    assert u.uplift_pp == pytest.approx(20.0)
    assert (round(u.ci_low_pp, 2), round(u.ci_high_pp, 2)) == (5.24, 33.39)


def test_uplift_without_a_control_arm_has_no_interval():
    u = uplift(3, 10, 0, 0)
    assert u.treatment_rate == pytest.approx(0.3)
    assert u.control_rate is None and u.uplift_pp is None and u.ci_low_pp is None


@pytest.mark.parametrize(("x", "n"), [(-1, 5), (6, 5), (0, 0)])
def test_wilson_refuses_impossible_counts(x, n):
    with pytest.raises(ValueError):
        wilson_interval(x, n)


@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_newcombe_interval_holds_the_difference_and_stays_in_range(n1, n2, data):
    x1 = data.draw(st.integers(0, n1))
    x2 = data.draw(st.integers(0, n2))
    d, lo, hi = newcombe_interval(x1, n1, x2, n2)
    assert -1.0 - 1e-12 <= lo <= d <= hi <= 1.0 + 1e-12
    assert not math.isnan(lo) and not math.isnan(hi)
    # swapping the arms mirrors the interval
    d2, lo2, hi2 = newcombe_interval(x2, n2, x1, n1)
    assert (d2, lo2, hi2) == pytest.approx((-d, -hi, -lo))
