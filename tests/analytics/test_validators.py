"""Tests for analytics.validators: known answers, case tables, properties, mask equivalence.

Valid numbers are built with reference implementations written here independently of the
module (the classic published weight tables), so a shared mistake cannot make both agree.
"""

from __future__ import annotations

import datetime as dt
import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.validators import (
    is_valid_bank_card,
    is_valid_cn_mobile,
    is_valid_email,
    is_valid_resident_id,
    is_valid_uscc,
    luhn_check_digit,
    luhn_check_digits,
    resident_id_birth_date,
    resident_id_check_digit,
    resident_id_check_digits,
    resident_id_gender,
    uscc_check_char,
    valid_cn_mobile_mask,
    valid_resident_id_mask,
)

# Every resident-ID case is judged against this fixed "today", so the table never goes stale.
TODAY = dt.date(2025, 6, 30)

MAINLAND_PROVINCES = (
    [str(n) for n in range(11, 16)]
    + [str(n) for n in range(21, 24)]
    + [str(n) for n in range(31, 38)]
    + [str(n) for n in range(41, 47)]
    + [str(n) for n in range(50, 55)]
    + [str(n) for n in range(61, 66)]
)

# --------------------------------------------------------------------------- reference algorithms

# GB 11643-1999 as usually published: fixed weights and the remainder -> check character table.
_REF_RID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_REF_RID_CHECK = "10X98765432"  # indexed by (weighted sum) mod 11


def ref_rid(first17: str) -> str:
    """A full resident ID from its first 17 digits, with the reference check character."""
    return (
        first17 + _REF_RID_CHECK[sum(int(c) * w for c, w in zip(first17, _REF_RID_WEIGHTS, strict=True)) % 11]
    )


def ref_luhn_ok(number: str) -> bool:
    """Luhn as on Wikipedia: from the right, double every second digit, sum digit sums."""
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


def ref_card(partial: str) -> str:
    """`partial` completed with the only digit that passes the reference Luhn check."""
    return next(partial + d for d in "0123456789" if ref_luhn_ok(partial + d))


_REF_USCC_SET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_REF_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # GB 32100: W_i = 3^(i-1) mod 31


def ref_uscc(first17: str) -> str:
    total = sum(_REF_USCC_SET.index(c) * w for c, w in zip(first17, _REF_USCC_WEIGHTS, strict=True))
    return first17 + _REF_USCC_SET[(31 - total % 31) % 31]


def test_reference_weights_match_the_published_tables():
    assert _REF_USCC_WEIGHTS == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    assert [pow(2, 17 - i, 11) for i in range(17)] == _REF_RID_WEIGHTS


# --------------------------------------------------------------------------- check-digit helpers


RID_CHECK_CASES = [
    ("11010519491231002", "X"),  # GB 11643-1999 worked example
    ("44052418800101001", "4"),  # GB 11643-1999 second example
    ("11010519491231001", "1"),
    ("11010519000101002", "8"),
    ("00000000000000000", "1"),  # sum 0 -> (12 - 0) mod 11 = 1
]


@pytest.mark.parametrize(("first17", "expected"), RID_CHECK_CASES)
def test_resident_id_check_digit_known_answers(first17, expected):
    assert resident_id_check_digit(first17) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "1101051949123100",
        "110105194912310021",
        "1101051949123100X",
        "１１０１０５１９４９１２３１００２",
        " 1101051949123100",
        "",
        None,
        11010519491231002,
    ],
)
def test_resident_id_check_digit_rejects_malformed_input(bad):
    with pytest.raises(ValueError, match="17 ASCII digits"):
        resident_id_check_digit(bad)


LUHN_CHECK_CASES = [
    ("411111111111111", "1"),  # 4111111111111111, the published Visa test number
    ("7992739871", "3"),  # 79927398713, the Wikipedia Luhn example
    ("62220202001122334", "9"),
    ("622202020011223344", "6"),  # so 6222020200112233446 is valid, ...440 is not
    ("0", "0"),
    ("1", "8"),
]


@pytest.mark.parametrize(("partial", "expected"), LUHN_CHECK_CASES)
def test_luhn_check_digit_known_answers(partial, expected):
    assert luhn_check_digit(partial) == expected


@pytest.mark.parametrize("bad", ["", "4111 1111", "41111a", "４１１１", None, 4111])
def test_luhn_check_digit_rejects_malformed_input(bad):
    with pytest.raises(ValueError, match="ASCII digits"):
        luhn_check_digit(bad)


# The vectorised twins take the digits as integers: the same tables, read as numbers.


@pytest.mark.parametrize(
    ("make", "fn", "cases"),
    [
        (int, resident_id_check_digits, RID_CHECK_CASES),
        (int, luhn_check_digits, LUHN_CHECK_CASES),
        (np.int64, resident_id_check_digits, RID_CHECK_CASES),
        (np.uint64, luhn_check_digits, LUHN_CHECK_CASES),
    ],
    ids=["rid-int", "luhn-int", "rid-int64", "luhn-uint64"],
)
def test_vectorised_check_digits_known_answers(make, fn, cases):
    values = [make(digits) for digits, _ in cases]
    assert fn(values).tolist() == [expected for _, expected in cases]


def test_vectorised_check_digits_keep_the_shape():
    column = np.array([[11010519491231002], [44052418800101001]])
    assert resident_id_check_digits(column).tolist() == [["X"], ["4"]]
    assert luhn_check_digits(np.empty(0, dtype=np.int64)).shape == (0,)
    assert luhn_check_digits([]).shape == (0,)


@pytest.mark.parametrize(
    ("fn", "bad"),
    [
        (resident_id_check_digits, [-1]),
        (resident_id_check_digits, [10**17]),  # 18 digits: a whole ID, not its body
        (resident_id_check_digits, [1.0]),
        (resident_id_check_digits, ["11010519491231002"]),
        (luhn_check_digits, [-1]),
        (luhn_check_digits, np.array([2**64 - 1], dtype=np.uint64)),  # wraps to -1 as int64
        (luhn_check_digits, [4.0]),
    ],
)
def test_vectorised_check_digits_reject_malformed_input(fn, bad):
    with pytest.raises(ValueError, match="integers"):
        fn(bad)


@given(st.lists(st.integers(0, 10**17 - 1), max_size=20))
def test_resident_id_check_digits_equal_the_scalar_on_padded_digits(bodies):
    expected = [resident_id_check_digit(f"{b:017d}") for b in bodies]
    assert resident_id_check_digits(np.array(bodies, dtype=np.int64)).tolist() == expected


@given(st.lists(st.integers(0, 2**63 - 1), max_size=20))
def test_luhn_check_digits_equal_the_scalar(partials):
    expected = [luhn_check_digit(str(p)) for p in partials]
    assert luhn_check_digits(np.array(partials, dtype=np.int64)).tolist() == expected


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        ("91350100M000100Y4", "3"),  # 91350100M000100Y43, the widely published example
        ("11100000000013127", "D"),
        ("92350100M000100Y4", "0"),
        ("51350100M000100Y4", "7"),
        ("00000000000000000", "0"),
    ],
)
def test_uscc_check_char_known_answers(first17, expected):
    assert uscc_check_char(first17) == expected


@pytest.mark.parametrize(
    "bad", ["91350100M000100Y", "91350100M000100Y43", "91350100m000100y4", "91350100M000100I4", None]
)
def test_uscc_check_char_rejects_malformed_input(bad):
    with pytest.raises(ValueError, match="USCC set"):
        uscc_check_char(bad)


# --------------------------------------------------------------------------- resident ID

RESIDENT_ID_CASES = [
    # (value, expected, why)
    ("11010519491231002X", True, "GB 11643 worked example"),
    ("11010519491231002x", True, "lower-case x accepted"),
    ("11010519491231003X", False, "one digit changed"),
    ("11010519491231002Y", False, "check char not a digit or X"),
    ("110105194912310021", False, "wrong check digit"),
    ("1101051949123100X2", False, "X only allowed last"),
    ("11010519491231002", False, "17 characters"),
    ("11010519491231002X0", False, "19 characters"),
    ("110105491231002", False, "15-digit legacy format"),
    (" 11010519491231002X", False, "leading space"),
    ("11010519491231002X ", False, "trailing space"),
    ("11010519491231002X\n", False, "trailing newline"),
    ("110105 19491231002X", False, "internal space"),
    ("１１０１０５１９４９１２３１００２Ｘ", False, "full-width digits"),
    ("440524188001010014", False, "GB 11643 example born 1880: check digit fine, before 1900"),
    (ref_rid("11010519000101002"), True, "born 1900-01-01, earliest accepted"),
    (ref_rid("11010518991231002"), False, "born 1899-12-31"),
    (ref_rid("11010520000229123"), True, "29 Feb in a leap year (2000, divisible by 400)"),
    (ref_rid("11010519000229123"), False, "29 Feb 1900, not a leap year"),
    (ref_rid("11010520010229123"), False, "29 Feb 2001"),
    (ref_rid("11010519900230123"), False, "30 Feb"),
    (ref_rid("11010519900431123"), False, "31 April"),
    (ref_rid("11010519901301123"), False, "month 13"),
    (ref_rid("11010519900001123"), False, "month 00"),
    (ref_rid("11010519900100123"), False, "day 00"),
    (ref_rid("11010520250630123"), True, "born today"),
    (ref_rid("11010520250701123"), False, "born tomorrow"),
    (ref_rid("11010529990101123"), False, "far future"),
    (ref_rid("11000019491231002"), False, "province-level region code 110000"),
    (ref_rid("99010519491231002"), False, "99 is not a province"),
    (ref_rid("16010519491231002"), False, "16 is not a province"),
    (ref_rid("00000019491231002"), False, "region 000000"),
    (ref_rid("65290119900101001"), True, "Xinjiang county"),
    (ref_rid("46900119900101001"), True, "Hainan directly administered county"),
    (ref_rid("71000019900101001"), True, "Taiwan 710000"),
    (ref_rid("81000019900101001"), True, "Hong Kong residence permit 810000"),
    (ref_rid("82000019900101001"), True, "Macao residence permit 820000"),
    (ref_rid("81010119900101001"), False, "Hong Kong is not subdivided"),
    (ref_rid("83000019900101001"), False, "83 not in the issue's province list"),
    (None, False, "None"),
    ("", False, "empty"),
    (110105194912310020, False, "int"),
    (float("nan"), False, "NaN"),
    (b"11010519491231002X", False, "bytes"),
    (["11010519491231002X"], False, "list"),
]


@pytest.mark.parametrize(
    ("value", "expected", "why"), RESIDENT_ID_CASES, ids=[c[2] for c in RESIDENT_ID_CASES]
)
def test_is_valid_resident_id(value, expected, why):
    assert is_valid_resident_id(value, today=TODAY) is expected


def test_is_valid_resident_id_defaults_to_the_real_today():
    today = dt.date.today()
    tomorrow = today + dt.timedelta(days=1)
    assert is_valid_resident_id(ref_rid("110105" + today.strftime("%Y%m%d") + "123"))
    assert not is_valid_resident_id(ref_rid("110105" + tomorrow.strftime("%Y%m%d") + "123"))


BIRTH_GENDER_CASES = [
    # (value, birth date, gender)
    ("11010519491231002X", dt.date(1949, 12, 31), "F"),  # 17th digit 2: even
    ("11010519491231002x", dt.date(1949, 12, 31), "F"),
    (ref_rid("11010519491231001"), dt.date(1949, 12, 31), "M"),  # 17th digit 1: odd
    (ref_rid("11010520000229129"), dt.date(2000, 2, 29), "M"),
    (ref_rid("81000019900101000"), dt.date(1990, 1, 1), "F"),
    ("11010519491231003X", None, None),  # bad check digit: nothing derived from it
    (ref_rid("11010519900230123"), None, None),
    ("440524188001010014", None, None),
    ("110105491231002", None, None),
    (None, None, None),
    ("", None, None),
    (11010519491231002, None, None),
]


@pytest.mark.parametrize(("value", "birth", "gender"), BIRTH_GENDER_CASES)
def test_resident_id_birth_date_and_gender(value, birth, gender):
    assert resident_id_birth_date(value, today=TODAY) == birth
    assert resident_id_gender(value, today=TODAY) == gender


# --------------------------------------------------------------------------- USCC

USCC_CASES = [
    ("91350100M000100Y43", True, "published example"),
    ("91350100m000100y43", False, "lower case"),
    ("91350100M000100Y44", False, "check char changed"),
    ("91350100M000200Y43", False, "body char changed"),
    ("91350100M000100Y4", False, "17 characters"),
    ("91350100M000100Y430", False, "19 characters"),
    (" 91350100M000100Y43", False, "leading space"),
    ("91350100M000100Y43\n", False, "trailing newline"),
    ("91350100M000100I43", False, "I is not in the character set"),
    (ref_uscc("11100000000013127"), True, "national-level region 100000"),
    (ref_uscc("92350100M000100Y4"), True, "individual business"),
    (ref_uscc("93350100M000100Y4"), True, "farmers' cooperative"),
    (ref_uscc("51350100M000100Y4"), True, "social organisation"),
    (ref_uscc("A1350100M000100Y4"), True, "military public institution"),
    (ref_uscc("N3350100M000100Y4"), True, "agricultural collective"),
    (ref_uscc("Y1350100M000100Y4"), True, "other authority"),
    (ref_uscc("94350100M000100Y4"), False, "authority 9 has no type 4"),
    (ref_uscc("99350100M000100Y4"), False, "authority 9 has no type 9"),
    (ref_uscc("Y2350100M000100Y4"), False, "authority Y only has type 1"),
    (ref_uscc("B1350100M000100Y4"), False, "B is not a registration authority"),
    (ref_uscc("0135010000000100Y"), False, "0 is not a registration authority"),
    (ref_uscc("91A50100M000100Y4"), False, "letter in the region code"),
    (ref_uscc("91990100M000100Y4"), False, "region starts with 99"),
    (ref_uscc("91000000M000100Y4"), False, "region 000000"),
    (None, False, "None"),
    ("", False, "empty"),
    (91350100, False, "int"),
]


@pytest.mark.parametrize(("value", "expected", "why"), USCC_CASES, ids=[c[2] for c in USCC_CASES])
def test_is_valid_uscc(value, expected, why):
    assert is_valid_uscc(value) is expected


# --------------------------------------------------------------------------- bank card

CARD_CASES = [
    ("4111111111111111", True, "published Visa test number, 16 digits"),
    ("4111111111111112", False, "last digit changed"),
    ("6222020200112233446", True, "19 digits, Luhn computed"),
    ("6222020200112233440", False, "19 digits, wrong check digit"),
    ("622202020011223349", True, "18 digits"),
    (ref_card("62170012345678901"), True, "18 digits, reference Luhn"),
    (ref_card("62" + "1" * 17), False, "20 digits though Luhn passes"),
    ("378282246310005", False, "15-digit Amex test number: too short for China"),
    ("79927398713", False, "11 digits"),
    ("4111 1111 1111 1111", False, "spaces"),
    ("4111-1111-1111-1111", False, "hyphens"),
    (" 4111111111111111", False, "leading space"),
    ("4111111111111111\n", False, "trailing newline"),
    ("４１１１１１１１１１１１１１１１", False, "full-width digits"),
    ("411111111111111a", False, "letter"),
    (None, False, "None"),
    ("", False, "empty"),
    (4111111111111111, False, "int"),
]


@pytest.mark.parametrize(("value", "expected", "why"), CARD_CASES, ids=[c[2] for c in CARD_CASES])
def test_is_valid_bank_card(value, expected, why):
    assert is_valid_bank_card(value) is expected


# --------------------------------------------------------------------------- mobile

MOBILE_CASES = [
    ("13812345678", True, "bare 13x"),
    ("19912345678", True, "bare 19x"),
    ("15012345678", True, "bare 15x"),
    ("12812345678", False, "12x prefix"),
    ("10012345678", False, "10x prefix"),
    ("23812345678", False, "does not start with 1"),
    ("1381234567", False, "10 digits"),
    ("138123456789", False, "12 digits"),
    ("+8613812345678", True, "+86"),
    ("+86 13812345678", True, "+86 and a space"),
    ("+86-13812345678", True, "+86 and a hyphen"),
    ("8613812345678", True, "86"),
    ("86 13812345678", True, "86 and a space"),
    ("86-13812345678", True, "86 and a hyphen"),
    ("+86  13812345678", False, "two spaces"),
    ("+86 -13812345678", False, "space and hyphen"),
    ("+86_13812345678", False, "underscore separator"),
    ("0086 13812345678", False, "0086 prefix"),
    ("(+86)13812345678", False, "brackets"),
    ("+85213812345678", False, "other country code"),
    ("+8612812345678", False, "+86 with a bad prefix"),
    ("138-1234-5678", False, "internal hyphens"),
    ("138 1234 5678", False, "internal spaces"),
    ("+86 138-1234-5678", False, "+86 with internal hyphens"),
    (" 13812345678", False, "leading space"),
    ("13812345678 ", False, "trailing space"),
    ("13812345678\n", False, "trailing newline"),
    ("+8613812345678 ", False, "+86 and trailing space"),
    ("１３８１２３４５６７８", False, "full-width digits"),
    ("＋8613812345678", False, "full-width plus"),
    (None, False, "None"),
    ("", False, "empty"),
    (13812345678, False, "int"),
    (float("nan"), False, "NaN"),
]


@pytest.mark.parametrize(("value", "expected", "why"), MOBILE_CASES, ids=[c[2] for c in MOBILE_CASES])
def test_is_valid_cn_mobile(value, expected, why):
    assert is_valid_cn_mobile(value) is expected


# --------------------------------------------------------------------------- e-mail

EMAIL_CASES = [
    ("li.wei@example.com", True, "plain"),
    ("li.wei+bank@example.com.cn", True, "plus tag and .com.cn"),
    ("a@b.co", True, "shortest sensible"),
    ("user_name-1@sub-domain.example.org", True, "underscore, hyphens"),
    ("UPPER@EXAMPLE.COM", True, "upper case"),
    ("o'brien@example.ie", True, "apostrophe is atext"),
    ("a" * 64 + "@example.com", True, "64-character local part"),
    ("a" * 65 + "@example.com", False, "65-character local part"),
    ("a@" + "b" * 63 + ".com", True, "63-character label"),
    ("a@" + "b" * 64 + ".com", False, "64-character label"),
    ("a" * 64 + "@" + "b" * 63 + "." + "b" * 63 + "." + "b" * 57 + ".com", True, "exactly 254 characters"),
    ("a" * 64 + "@" + "b" * 63 + "." + "b" * 63 + "." + "b" * 58 + ".com", False, "255 characters"),
    ("li wei@example.com", False, "space in local part"),
    ("li@wei@example.com", False, "two @"),
    ("li.example.com", False, "no @"),
    ("@example.com", False, "empty local part"),
    ("li@", False, "empty domain"),
    ("li@example", False, "no TLD"),
    ("li@example.c", False, "one-letter TLD"),
    ("li@example.c0m", False, "digit in TLD"),
    ("li@example.xn--fiqs8s", False, "punycode TLD (documented limitation)"),
    ("li@-example.com", False, "label starts with hyphen"),
    ("li@example-.com", False, "label ends with hyphen"),
    ("li@exa_mple.com", False, "underscore in domain"),
    ("li@example..com", False, "empty label"),
    ("li@example.com.", False, "trailing dot"),
    (".li@example.com", False, "leading dot in local part"),
    ("li.@example.com", False, "trailing dot in local part"),
    ("li..wei@example.com", False, "double dot in local part"),
    ('"li wei"@example.com', False, "quoted local part (documented limitation)"),
    ("li@[192.0.2.1]", False, "IP literal (documented limitation)"),
    ("李伟@example.com", False, "non-ASCII local part (documented limitation)"),
    ("li@例子.中国", False, "non-ASCII domain (documented limitation)"),
    (" li@example.com", False, "leading space"),
    ("li@example.com\n", False, "trailing newline"),
    (None, False, "None"),
    ("", False, "empty"),
    (42, False, "int"),
]


@pytest.mark.parametrize(("value", "expected", "why"), EMAIL_CASES, ids=[c[2] for c in EMAIL_CASES])
def test_is_valid_email(value, expected, why):
    assert is_valid_email(value) is expected


# --------------------------------------------------------------------------- properties

regions = st.one_of(
    st.builds(lambda p, n: f"{p}{n:04d}", st.sampled_from(MAINLAND_PROVINCES), st.integers(1, 9999)),
    st.sampled_from(["710000", "810000", "820000"]),
)
birth_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY)
sequence = st.integers(0, 999).map(lambda n: f"{n:03d}")
valid_first17 = st.builds(lambda r, d, s: r + d.strftime("%Y%m%d") + s, regions, birth_dates, sequence)


@given(valid_first17)
def test_any_well_formed_id_with_its_check_digit_is_valid(first17):
    value = ref_rid(first17)
    assert resident_id_check_digit(first17) == value[17]
    assert is_valid_resident_id(value, today=TODAY)
    assert is_valid_resident_id(value.lower(), today=TODAY)
    assert resident_id_birth_date(value, today=TODAY) == dt.date(
        int(first17[6:10]), int(first17[10:12]), int(first17[12:14])
    )
    assert resident_id_gender(value, today=TODAY) == ("M" if int(first17[16]) % 2 else "F")


@given(valid_first17, st.sampled_from("0123456789X"))
def test_changing_the_check_digit_makes_the_id_invalid(first17, other):
    value = ref_rid(first17)
    if other == value[17]:
        return
    assert not is_valid_resident_id(first17 + other, today=TODAY)


@given(valid_first17, st.integers(0, 16), st.integers(1, 9))
def test_changing_any_single_digit_makes_the_id_invalid(first17, position, shift):
    # MOD 11-2 detects every single-digit substitution: each weight is non-zero mod 11.
    value = ref_rid(first17)
    mutated = value[:position] + str((int(value[position]) + shift) % 10) + value[position + 1 :]
    assert not is_valid_resident_id(mutated, today=TODAY)


@given(st.text(alphabet="0123456789", min_size=15, max_size=18))
def test_luhn_completed_numbers_of_16_to_19_digits_are_valid(partial):
    number = partial + luhn_check_digit(partial)
    assert ref_luhn_ok(number)
    assert is_valid_bank_card(number)


@given(st.text(alphabet="0123456789", min_size=16, max_size=19), st.data())
def test_changing_any_single_card_digit_makes_it_invalid(digits, data):
    number = digits[:-1] + luhn_check_digit(digits[:-1])
    position = data.draw(st.integers(0, len(number) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert not is_valid_bank_card(number[:position] + new + number[position + 1 :])


uscc_first17 = st.builds(
    lambda pair, region, body: pair + region + body,
    st.sampled_from("11 12 13 19 21 31 35 51 52 53 61 62 71 81 91 92 93 A1 N2 Y1".split()),
    st.builds(lambda p, n: f"{p}{n:04d}", st.sampled_from([*MAINLAND_PROVINCES, "10"]), st.integers(0, 9999)),
    st.text(alphabet=_REF_USCC_SET, min_size=9, max_size=9),
)


@given(uscc_first17, st.sampled_from(_REF_USCC_SET))
def test_uscc_with_its_check_char_is_valid_and_any_other_is_not(first17, other):
    value = ref_uscc(first17)
    assert uscc_check_char(first17) == value[17]
    assert is_valid_uscc(value)
    assert is_valid_uscc(first17 + other) is (other == value[17])


# --------------------------------------------------------------------------- vectorised masks

# Characters that stress the shape checks: both X cases, separators, a full-width digit,
# non-ASCII, a NUL (the padding code point of the numpy matrix) and a newline.
_NOISE = "0123456789Xx +-86１\x00\n李"


def _mutate(rng: random.Random, value: str) -> str:
    """Damage a value the way real data gets damaged: substitute, insert, drop, pad."""
    kind = rng.randrange(6)
    position = rng.randrange(len(value) + 1)
    char = rng.choice(_NOISE)
    if kind == 0:
        return value[:position] + char + value[position + 1 :]
    if kind == 1:
        return value[:position] + char + value[position:]
    if kind == 2:
        return value[:position] + value[position + 1 :]
    if kind == 3:
        return rng.choice([" ", "\n", "\t"]) + value if rng.random() < 0.5 else value + " "
    if kind == 4:
        return value[:-1] + rng.choice("0123456789Xx")
    return value.lower()


def _random_resident_id(rng: random.Random) -> str:
    province = rng.choice([*MAINLAND_PROVINCES, "71", "81", "82", "99", "16"])
    region = province + ("0000" if rng.random() < 0.1 else f"{rng.randint(1, 9999):04d}")
    # Dates from 1899 to 2026, days up to 31, so invalid dates and future dates occur often.
    date = f"{rng.randint(1899, 2026)}{rng.randint(0, 13):02d}{rng.randint(0, 31):02d}"
    return ref_rid(region + date + f"{rng.randint(0, 999):03d}")


def _random_mobile(rng: random.Random) -> str:
    number = f"1{rng.randint(0, 9)}{rng.randint(0, 999_999_999):09d}"
    prefix = rng.choice(["", "", "+86", "86", "+86 ", "86-", "+86-", "86 ", "0086", "+852", "+86  "])
    return prefix + number


def _random_table(rng: random.Random, make, n: int) -> list[object]:
    values: list[object] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.45:
            values.append(make(rng))
        elif roll < 0.9:
            values.append(_mutate(rng, make(rng)))
        else:
            values.append(rng.choice([None, float("nan"), "", 11010519491231002, 13812345678, 1.5, b"1"]))
    return values


def _scalar_map(fn, values) -> np.ndarray:
    return np.array([fn(v) for v in values], dtype=bool)


@pytest.mark.parametrize(
    ("mask_fn", "scalar_fn", "make"),
    [
        (
            lambda s: valid_resident_id_mask(s, today=TODAY),
            lambda v: is_valid_resident_id(v, today=TODAY),
            _random_resident_id,
        ),
        (valid_cn_mobile_mask, is_valid_cn_mobile, _random_mobile),
    ],
    ids=["resident_id", "mobile"],
)
@pytest.mark.parametrize("dtype", ["object", "str"])
def test_mask_equals_scalar_map_on_a_random_table(mask_fn, scalar_fn, make, dtype):
    rng = random.Random(20250630)
    values = _random_table(rng, make, 30_000)
    if dtype == "str":
        # A string column holds only text and missing values.
        values = [v if isinstance(v, str) else None for v in values]
    series = pd.Series(values, dtype=dtype)
    expected = _scalar_map(scalar_fn, series)
    mask = mask_fn(series)
    assert mask.dtype == bool and mask.shape == (len(values),)
    np.testing.assert_array_equal(mask, expected)
    # The table is only a good test if it has plenty of both outcomes.
    assert 0.2 < expected.mean() < 0.8


mixed_values = st.one_of(
    valid_first17.map(ref_rid),
    st.builds(lambda v, r: _mutate(random.Random(r), v), valid_first17.map(ref_rid), st.integers()),
    st.builds(lambda r: _random_mobile(random.Random(r)), st.integers()),
    st.text(alphabet=_NOISE, max_size=20),
    st.text(max_size=20),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(mixed_values, max_size=40))
def test_masks_equal_scalar_maps_on_any_values(values):
    series = pd.Series(values, dtype=object)
    np.testing.assert_array_equal(
        valid_resident_id_mask(series, today=TODAY),
        _scalar_map(lambda v: is_valid_resident_id(v, today=TODAY), values),
    )
    np.testing.assert_array_equal(valid_cn_mobile_mask(series), _scalar_map(is_valid_cn_mobile, values))


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([], dtype=object),
        pd.Series([], dtype="str"),
        pd.Series([None, math.nan, 3], dtype=object),
        pd.Series([1.0, 2.0]),
        pd.Series(["11010519491231002X", "13812345678", None], dtype="string"),  # pd.NA for missing
        pd.Series(["11010519491231002X", "+86 13812345678", "x"], dtype="category"),
        pd.Series(["11010519491231002X", "13812345678"], index=[10, 5]),
    ],
    ids=["empty-object", "empty-str", "no-strings", "float", "string-NA", "category", "custom-index"],
)
def test_masks_handle_any_column_positionally(series):
    values = series.tolist()
    rid = valid_resident_id_mask(series, today=TODAY)
    mob = valid_cn_mobile_mask(series)
    assert isinstance(rid, np.ndarray) and rid.dtype == bool and rid.shape == (len(series),)
    assert isinstance(mob, np.ndarray) and mob.dtype == bool and mob.shape == (len(series),)
    np.testing.assert_array_equal(rid, _scalar_map(lambda v: is_valid_resident_id(v, today=TODAY), values))
    np.testing.assert_array_equal(mob, _scalar_map(is_valid_cn_mobile, values))


def test_resident_id_mask_respects_today():
    born = ref_rid("11010520250701123")
    series = pd.Series([born, "11010519491231002X"])
    np.testing.assert_array_equal(valid_resident_id_mask(series, today=TODAY), [False, True])
    np.testing.assert_array_equal(valid_resident_id_mask(series, today=dt.date(2025, 7, 1)), [True, True])
    np.testing.assert_array_equal(valid_resident_id_mask(series), _scalar_map(is_valid_resident_id, series))


@pytest.mark.parametrize(
    ("mask_fn", "cases"),
    [
        (lambda s: valid_resident_id_mask(s, today=TODAY), RESIDENT_ID_CASES),
        (valid_cn_mobile_mask, MOBILE_CASES),
    ],
    ids=["resident_id", "mobile"],
)
def test_masks_agree_with_the_case_tables(mask_fn, cases):
    # The random tables rarely hit edges such as 29 Feb 2000; the hand-made tables do.
    series = pd.Series([value for value, _, _ in cases], dtype=object)
    expected = np.array([want for _, want, _ in cases], dtype=bool)
    np.testing.assert_array_equal(mask_fn(series), expected)
