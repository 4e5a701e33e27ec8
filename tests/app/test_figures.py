"""The displayed-figure parser the page tests compare with (tests/app/figures.py)."""

import pytest

from tests.app.figures import Figure, assert_shows, find_all, parse

CASES = [
    # text, value, precision, unit
    ("1,234", 1234, 0.5, ""),
    ("3", 3, 0.5, ""),
    ("0", 0, 0.5, ""),
    ("1,234,567", 1234567, 0.5, ""),
    ("¥1,234,567", 1234567, 0.5, "CNY"),
    ("￥1,234,567", 1234567, 0.5, "CNY"),
    ("CNY 1,234,567", 1234567, 0.5, "CNY"),
    ("1,234,567 CNY", 1234567, 0.5, "CNY"),
    ("-CNY 1,234", -1234, 0.5, "CNY"),
    ("¥-1,234", -1234, 0.5, "CNY"),
    ("−1,234", -1234, 0.5, ""),
    ("+1,234", 1234, 0.5, ""),
    ("¥1,234.56", 1234.56, 0.005, "CNY"),
    ("¥1.23 亿", 1.23e8, 0.005e8, "CNY"),
    ("¥1.23亿", 1.23e8, 0.005e8, "CNY"),
    ("1.23亿元", 1.23e8, 0.005e8, "CNY"),
    ("¥123.46万", 1_234_600, 50, "CNY"),
    ("1.2 万", 12_000, 500, ""),
    ("12万", 120_000, 5_000, ""),
    ("1.5万亿", 1.5e12, 0.05e12, ""),
    ("12.3%", 0.123, 0.0005, "%"),
    ("12.3 %", 0.123, 0.0005, "%"),
    ("98%", 0.98, 0.005, "%"),
    ("-0.4%", -0.004, 0.0005, "%"),
    ("9.2×", 9.2, 0.05, "×"),
    ("0.812", 0.812, 0.0005, ""),
    ("0.0123", 0.0123, 0.00005, ""),
    ("+1.5 pt", 1.5, 0.05, "pt"),
    ("¥1.2M", 1.2e6, 0.05e6, "CNY"),
    ("CNY 142.21 m", 142.21e6, 0.005e6, "CNY"),
    ("CNY 1,234.57 bn", 1234.57e9, 0.005e9, "CNY"),
    ("-CNY 3.5 k", -3500, 50, "CNY"),
]


@pytest.mark.parametrize("text, value, precision, unit", CASES)
def test_parse(text, value, precision, unit):
    figure = parse(text)
    assert figure.value == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert figure.precision == pytest.approx(precision, rel=1e-12)
    assert figure.unit == unit


@pytest.mark.parametrize("text", ["—", "–", "-", "", "  —  "])
def test_missing(text):
    figure = parse(text)
    assert figure.value is None
    assert figure.shows(None) and figure.shows(float("nan"))
    assert not figure.shows(0)


@pytest.mark.parametrize("text", ["no number", "1,234 of 5,678", "12.3% and 4%"])
def test_not_exactly_one_figure_is_an_error(text):
    with pytest.raises(ValueError):
        parse(text)


@pytest.mark.parametrize("text, expected, ok", [
    ("1,234", 1234.4, True), ("1,234", 1233.5, True), ("1,234", 1234.6, False), ("1,234", 1235, False),
    ("¥1.23 亿", 123_400_000, True), ("¥1.23 亿", 122_499_999, False), ("¥1.23 亿", 123_500_001, False),
    ("¥123.46万", 1_234_649, True), ("¥123.46万", 1_234_651, False),
    ("12.3%", 0.12345, True), ("12.3%", 0.1236, False), ("12.3%", 12.3, False),
    ("9.2×", 9.249, True), ("9.2×", 9.26, False),
    ("—", None, True), ("—", 0.0, False), ("0", None, False),
])
def test_shows_within_half_a_unit_of_the_last_digit(text, expected, ok):
    assert parse(text).shows(expected) is ok


def test_assert_shows_says_what_differs():
    assert_shows("1,234", 1234.2)
    with pytest.raises(AssertionError, match="Customers shows '1,234'"):
        assert_shows("1,234", 1240, "Customers")


def test_find_all_in_free_text():
    figures = find_all("2,833 of 3,000 customers; ¥1.2万 at risk (12.5%)")
    assert [f.value for f in figures] == [2833, 3000, 12_000, 0.125]
    assert [f.unit for f in figures] == ["", "", "CNY", "%"]
    assert find_all("Champions") == []
    assert [f.value for f in find_all("12 months, 3 mortgages")] == [12, 3]
    assert isinstance(figures[0], Figure)
