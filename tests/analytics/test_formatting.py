"""Number formatting: thousands separators in English, 万/亿 in Chinese, CNY amounts, % rates."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics import formatting as f


@pytest.mark.parametrize("value, en, zh", [
    (0, "0", "0"),
    (3, "3", "3"),
    (9_999, "9,999", "9,999"),
    (10_000, "10,000", "1.00万"),
    (123_456, "123,456", "12.35万"),
    (99_999_999, "99,999,999", "1.00亿"),
    (9_999.6, "10,000", "1.00万"),
    (100_000_000, "100,000,000", "1.00亿"),
    (1_234_567_890, "1,234,567,890", "12.35亿"),
    (2.6, "3", "3"),
    (None, "—", "—"),
    (float("nan"), "—", "—"),
])
def test_count(value, en, zh):
    assert f.count(value, "en") == en
    assert f.count(value, "zh") == zh


@pytest.mark.parametrize("value, en, zh", [
    (6_000, "CNY 6,000", "¥6,000"),
    (250_000, "CNY 250,000", "¥25.00万"),
    (5_123_456_789, "CNY 5,123,456,789", "¥51.23亿"),
    (-2_500, "-CNY 2,500", "-¥2,500"),
    (-250_000, "-CNY 250,000", "-¥25.00万"),
    (None, "—", "—"),
])
def test_amount(value, en, zh):
    assert f.amount(value, "en") == en
    assert f.amount(value, "zh") == zh


@pytest.mark.parametrize("value, en", [
    (999, "CNY 999"), (4_449, "CNY 4.45 k"), (329_768, "CNY 330 k"), (999_999, "CNY 1.00 m"),
    (1_000_000, "CNY 1.00 m"), (1_262_000, "CNY 1.26 m"), (9_999_000, "CNY 10.0 m"), (946_318_003, "CNY 946 m"),
    (1_616_090_705, "CNY 1.62 bn"), (1_234_567_890_123, "CNY 1,235 bn"), (-2_500_000, "-CNY 2.50 m"),
])
def test_compact_amount_for_the_wall(value, en):
    assert f.amount(value, "en", compact=True) == en
    assert f.amount(value, "zh", compact=True) == f.amount(value, "zh")


def test_rates_ratios_and_decimals():
    assert f.rate(0.1234, "en") == f.rate(0.1234, "zh") == "12.3%"
    assert f.rate(0.98394, "zh", digits=2) == "98.39%"
    assert f.rate(None) == "—"
    assert f.ratio(9.21) == "9.2×"
    assert f.decimal(0.95712) == "0.957"
    with pytest.raises(ValueError):
        f.count(1, "fr")


def _read_zh(text: str) -> float:
    body = text.lstrip("-¥").replace(",", "")
    scale = 1e8 if body.endswith("亿") else 1e4 if body.endswith("万") else 1.0
    number = float(body.rstrip("万亿")) * scale
    return -number if text.startswith("-") else number


@given(st.floats(min_value=-1e13, max_value=1e13, allow_nan=False))
def test_chinese_amounts_read_back_within_their_precision(value):
    text = f.amount(value, "zh")
    size = abs(value)
    unit = 1e8 if size >= 1e8 else 1e4 if size >= 1e4 else 1.0
    tolerance = (0.005 * unit if unit > 1 else 0.5) + 1e-6 * size
    assert math.isclose(_read_zh(text), value, abs_tol=tolerance)


@given(st.integers(min_value=0, max_value=10**13))
def test_english_counts_are_exact(value):
    assert int(f.count(value, "en").replace(",", "")) == value
