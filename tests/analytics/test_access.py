"""The access policy: role -> pages, role -> access level, the maskers and mask_frame."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics import access
from analytics.access import (
    PAGES,
    PERSONAL_FIELDS,
    ROLES,
    AccessDenied,
    access_level,
    can_see_customer_rows,
    can_unmask,
    can_view_page,
    check_unmask,
    filterable_columns,
    mask_address,
    mask_birth_date,
    mask_card,
    mask_email,
    mask_frame,
    mask_id_number,
    mask_name,
    mask_phone,
    pages_for,
)
from analytics.errors import AnalyticsError

# ---------------------------------------------------------------------------------------------
# Pages: the matrix from the issue, one row a page.
# ---------------------------------------------------------------------------------------------

EXPECTED_MATRIX = [
    ("overview", {"executive", "marketing", "risk", "compliance", "admin", "relationship_manager"}),
    ("kpi_wall", {"executive", "admin", "display"}),
    ("segments", {"executive", "marketing", "risk"}),
    ("lifecycle", {"executive", "marketing"}),
    ("churn", {"executive", "marketing", "risk", "relationship_manager"}),
    ("cross_sell", {"marketing", "relationship_manager"}),
    ("campaigns", {"executive", "marketing", "relationship_manager"}),
    ("risk", {"executive", "risk"}),
    ("data_quality", {"executive", "compliance", "admin"}),
    ("customer_360", {"marketing", "risk", "compliance", "relationship_manager"}),
    ("worklist", {"relationship_manager", "risk"}),
    ("approvals", {"executive", "marketing", "risk", "compliance", "admin", "relationship_manager"}),
    ("audit_log", {"compliance", "admin"}),
    ("admin", {"admin"}),
]


def test_pages_are_the_fourteen_in_order_with_both_titles():
    assert list(PAGES) == [page for page, _ in EXPECTED_MATRIX]
    assert PAGES["kpi_wall"] == ("KPI wall", "数据大屏")
    assert PAGES["customer_360"] == ("Customer 360", "客户360")
    assert all(len(titles) == 2 and all(titles) for titles in PAGES.values())


@pytest.mark.parametrize("page, allowed", EXPECTED_MATRIX)
@pytest.mark.parametrize("role", ROLES)
def test_page_matrix(page, allowed, role):
    assert can_view_page([role], page) is (role in allowed)


@pytest.mark.parametrize("roles, expected", [
    (["executive"], ["overview", "kpi_wall", "segments", "lifecycle", "churn",
                    "campaigns", "risk", "data_quality", "approvals"]),
    (["marketing"], ["overview", "segments", "lifecycle", "churn",
                    "cross_sell", "campaigns", "customer_360", "approvals"]),
    (["risk"], ["overview", "segments", "churn", "risk", "customer_360", "worklist", "approvals"]),
    (["compliance"], ["overview", "data_quality", "customer_360", "approvals", "audit_log"]),
    (["admin"], ["overview", "kpi_wall", "data_quality", "approvals", "audit_log", "admin"]),
    (["admin", "marketing"], ["overview", "kpi_wall", "segments", "lifecycle", "churn", "cross_sell",
                             "campaigns", "data_quality", "customer_360", "approvals", "audit_log", "admin"]),
    ("risk,compliance", ["overview", "segments", "churn", "risk", "data_quality",
                        "customer_360", "worklist", "approvals", "audit_log"]),
    (["relationship_manager"], ["overview", "churn", "cross_sell", "campaigns",
                               "customer_360", "worklist", "approvals"]),
    ([], []),
    (None, []),
])
def test_pages_for_is_the_union_in_page_order(roles, expected):
    assert pages_for(roles) == expected


def test_unknown_page_and_unknown_role():
    assert can_view_page(["admin"], "secret") is False
    with pytest.raises(ValueError, match="Unknown role 'root'"):
        pages_for(["root"])
    with pytest.raises(ValueError):
        access_level("marketing,superuser")


def test_a_string_role_is_not_iterated_by_character():
    assert pages_for("risk") == pages_for(["risk"])


def test_require_page_raises_a_domain_error():
    access.require_page(["admin"], "admin")
    with pytest.raises(AccessDenied) as err:
        access.require_page(["marketing"], "admin")
    assert isinstance(err.value, AnalyticsError)


# ---------------------------------------------------------------------------------------------
# Access levels
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("roles, level, rows, unmask", [
    (["executive"], "aggregate", False, False),
    (["marketing"], "masked", True, False),
    (["risk"], "masked", True, False),
    (["compliance"], "masked_unmask", True, True),
    (["admin"], "none", False, False),
    ([], "none", False, False),
    # several roles: the most permissive level wins
    (["admin", "executive"], "aggregate", False, False),
    (["executive", "marketing"], "masked", True, False),
    (["admin", "compliance"], "masked_unmask", True, True),
    (["risk", "compliance"], "masked_unmask", True, True),
])
def test_access_levels(roles, level, rows, unmask):
    assert access_level(roles) == level
    assert can_see_customer_rows(roles) is rows
    assert can_unmask(roles) is unmask


def test_check_unmask():
    assert check_unmask(["compliance"], "phone", "  complaint #123 follow-up call  ") == "complaint #123 follow-up call"
    with pytest.raises(AccessDenied, match="may not unmask"):
        check_unmask(["marketing"], "phone", "a long enough reason")
    with pytest.raises(AccessDenied, match="reason"):
        check_unmask(["compliance"], "phone", "ok")
    with pytest.raises(AccessDenied, match="not a masked field"):
        check_unmask(["compliance"], "aum", "a long enough reason")


@pytest.mark.parametrize("roles", [["marketing"], ["compliance"], ["executive"], ["admin"]])
def test_no_role_filters_or_sorts_on_a_personal_field(roles):
    cols = ["customer_id", "name", "branch_id", "phone", "aum", "id_number", "birth_date"]
    assert filterable_columns(roles, cols) == ["customer_id", "branch_id", "aum"]


# ---------------------------------------------------------------------------------------------
# Maskers: one row a case.
# ---------------------------------------------------------------------------------------------

MASK_CASES = [
    # names: first character kept
    (mask_name, None, None),
    (mask_name, "", ""),
    (mask_name, "王", "*"),
    (mask_name, "李四", "李*"),
    (mask_name, "张三丰", "张**"),
    (mask_name, "欧阳娜娜", "欧***"),
    (mask_name, "司马相如", "司***"),
    (mask_name, "Li Lei", "L*****"),
    # ID numbers: first 6 and last 4
    (mask_id_number, None, None),
    (mask_id_number, "", ""),
    (mask_id_number, "11010519491231002X", "110105********002X"),
    (mask_id_number, "11010519491231002x", "110105********002x"),
    (mask_id_number, "110105491231002", "110105*****1002"),
    (mask_id_number, "E12345678", "*********"),
    (mask_id_number, "1234567890", "**********"),
    (mask_id_number, "12345678901", "123456*8901"),
    # cards: first 6 and last 4
    (mask_card, None, None),
    (mask_card, "", ""),
    (mask_card, "6222021234567891234", "622202*********1234"),
    (mask_card, "6222021234567890", "622202******7890"),
    (mask_card, "12345", "*****"),
    # phones: first 3 and last 4
    (mask_phone, None, None),
    (mask_phone, "", ""),
    (mask_phone, "13812345678", "138****5678"),
    (mask_phone, "01012345678", "010****5678"),
    (mask_phone, "12345678", "123*5678"),
    (mask_phone, "1234567", "*******"),
    # email: first character of the local part, fixed ***
    (mask_email, None, None),
    (mask_email, "", ""),
    (mask_email, "zhang.san@example.com", "z***@example.com"),
    (mask_email, "z@example.com", "***@example.com"),
    (mask_email, "not-an-email", "************"),
    # addresses: province/city/district kept, fixed ****
    (mask_address, None, None),
    (mask_address, "", ""),
    (mask_address, "北京市朝阳区建国路88号", "北京市朝阳区****"),
    (mask_address, "上海市浦东新区张江路100号", "上海市浦东新区****"),
    (mask_address, "广东省深圳市南山区科技园南区8栋", "广东省深圳市南山区****"),
    (mask_address, "江苏省苏州市昆山市玉山镇1号", "江苏省苏州市昆山市****"),
    (mask_address, "新疆维吾尔自治区乌鲁木齐市天山区解放路1号", "新疆维吾尔自治区乌鲁木齐市天山区****"),
    (mask_address, "湖北省恩施土家族苗族自治州恩施市舞阳大街", "湖北省恩施土家族苗族自治州恩施市****"),
    (mask_address, "重庆市石柱土家族自治县南宾镇", "重庆市石柱土家族自治县****"),
    (mask_address, "河北省唐山市路北区新华道", "河北省唐山市路北区****"),
    (mask_address, "广东省东莞市长安镇沙头社区", "广东省东莞市****"),
    (mask_address, "朝阳区建国路88号城市花园", "朝阳区****"),
    (mask_address, "Flat 3, 12 High Street", "****"),  # no Chinese administrative prefix: nothing kept
    (mask_address, "John Smith, 12 High Street", "****"),
    (mask_address, "张三收 北京市东城区建国路1号", "****"),  # a name before the city is not a prefix
    (mask_address, "张三家楼下小卖部旁边", "****"),
    (mask_address, "短地址", "****"),
    # birth dates: year kept
    (mask_birth_date, None, None),
    (mask_birth_date, "", ""),
    (mask_birth_date, "1990-05-17", "1990-**-**"),
    (mask_birth_date, dt.date(1949, 12, 31), "1949-**-**"),
    (mask_birth_date, dt.datetime(2001, 2, 3, 4, 5), "2001-**-**"),
    (mask_birth_date, pd.Timestamp("1985-07-01"), "1985-**-**"),
    (mask_birth_date, "19900517", "1990****"),
    (mask_birth_date, "unknown", "*******"),
]


@pytest.mark.parametrize("masker, value, expected", MASK_CASES,
                         ids=[f"{m.__name__}-{v!r}" for m, v, _ in MASK_CASES])
def test_mask_table(masker, value, expected):
    assert masker(value) == expected


# ---------------------------------------------------------------------------------------------
# Masker properties
# ---------------------------------------------------------------------------------------------

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
ANY_TEXT = st.text(min_size=1, max_size=40)


def _hide(value: str, keep_head: int, keep_tail: int, filler: str = "a") -> str:
    """``value`` with every character outside the kept ends replaced by ``filler``."""
    n = len(value)
    return "".join(c if i < keep_head or i >= n - keep_tail else filler for i, c in enumerate(value))


@given(st.one_of(st.text(CJK, min_size=1, max_size=8), ANY_TEXT))
def test_mask_name_properties(value):
    masked = mask_name(value)
    assert len(masked) == len(value)
    assert set(masked[1:]) <= {"*"}
    # the output depends only on the kept first character
    assert mask_name(_hide(value, 1, 0)) == masked
    assert mask_name(masked) == masked
    if len(value) == 1:
        assert masked == "*"


@given(st.one_of(st.from_regex(r"\A\d{17}[\dXx]\Z"), st.from_regex(r"\A\d{15}\Z"), ANY_TEXT))
def test_mask_id_number_properties(value):
    masked = mask_id_number(value)
    assert len(masked) == len(value)
    assert mask_id_number(_hide(value, 6, 4)) == masked
    assert mask_id_number(masked) == masked
    if len(value) > 10:
        assert masked[:6] == value[:6] and masked[-4:] == value[-4:]
        assert set(masked[6:-4]) == {"*"}
    else:
        assert set(masked) == {"*"}


@given(st.one_of(st.from_regex(r"\A\d{16,19}\Z"), ANY_TEXT))
def test_mask_card_properties(value):
    masked = mask_card(value)
    assert len(masked) == len(value)
    assert mask_card(_hide(value, 6, 4)) == masked
    assert mask_card(masked) == masked


@given(st.one_of(st.from_regex(r"\A1[3-9]\d{9}\Z"), ANY_TEXT))
def test_mask_phone_properties(value):
    masked = mask_phone(value)
    assert len(masked) == len(value)
    assert mask_phone(_hide(value, 3, 4)) == masked
    assert mask_phone(masked) == masked
    if len(value) < 8:
        assert set(masked) == {"*"}


@given(st.emails())
def test_mask_email_properties(value):
    masked = mask_email(value)
    local, domain = value.rsplit("@", 1)
    assert masked == (local[0] if len(local) >= 2 else "") + "***@" + domain
    # neither the hidden part of the local name nor its length shows
    assert mask_email(local[:1] + "x" * (len(local) + 5) + "@" + domain) == (local[0] + "***@" + domain)


@given(st.text(st.sampled_from(list("北京市朝阳区海淀县省路号12 aB旗州地盟自治")), min_size=1, max_size=30))
def test_mask_address_properties(value):
    masked = mask_address(value)
    assert masked.endswith("****")
    prefix = masked[:-4]
    assert value.startswith(prefix)
    assert len(prefix) < len(value) or prefix == value
    # the hidden tail never influences the output
    neutral = prefix + "a" * (len(value) - len(prefix))
    assert mask_address(neutral) == masked
    assert mask_address(masked) == masked


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_mask_birth_date_properties(value):
    expected = f"{value.year:04d}-**-**"
    assert mask_birth_date(value) == expected
    assert mask_birth_date(value.isoformat()) == expected


# ---------------------------------------------------------------------------------------------
# mask_frame
# ---------------------------------------------------------------------------------------------

def _customers() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"],
        "name": ["张三丰", "李四", None],
        "id_number": ["11010519491231002X", "110105491231002", None],
        "phone": ["13812345678", None, "13912345678"],
        "email": ["zhang.san@example.com", None, None],
        "address": ["北京市朝阳区建国路88号", None, None],
        "birth_date": [dt.date(1949, 12, 31), None, dt.date(1990, 1, 2)],
        "aum": [1.0, 2.0, 3.0],
    })


@pytest.mark.parametrize("roles", [["marketing"], ["risk"], ["compliance"], ["executive", "marketing"]])
def test_mask_frame_masks_every_personal_column(roles):
    df = _customers()
    out = mask_frame(df, roles)
    assert out["name"].tolist()[:2] == ["张**", "李*"] and pd.isna(out["name"].iloc[2])
    assert out["id_number"].iloc[0] == "110105********002X"
    assert out["phone"].iloc[0] == "138****5678" and pd.isna(out["phone"].iloc[1])
    assert out["email"].iloc[0] == "z***@example.com"
    assert out["address"].iloc[0] == "北京市朝阳区****"
    assert out["birth_date"].iloc[0] == "1949-**-**"
    assert out["aum"].tolist() == [1.0, 2.0, 3.0]
    assert out["customer_id"].tolist() == ["C1", "C2", "C3"]
    # no raw value survives anywhere in the frame, and the input is untouched
    raw = {v for c in PERSONAL_FIELDS if c in df for v in df[c].dropna().astype(str)}
    assert not raw & {str(v) for v in out.to_numpy().ravel()}
    assert df["phone"].iloc[0] == "13812345678"


@pytest.mark.parametrize("roles", [["executive"], ["admin"], ["admin", "executive"], []])
def test_aggregate_roles_get_no_customer_rows(roles):
    with pytest.raises(AccessDenied, match="aggregates only"):
        mask_frame(_customers(), roles)
    with pytest.raises(AccessDenied):
        mask_frame(pd.DataFrame({"customer_id": ["C1"], "aum": [1.0]}), roles)
    agg = pd.DataFrame({"branch_id": ["B1"], "customers": [10], "aum": [5.0]})
    pd.testing.assert_frame_equal(mask_frame(agg, roles), agg)


def test_mask_frame_handles_a_datetime_birth_column():
    df = pd.DataFrame({"customer_id": ["C1", "C2"],
                       "birth_date": pd.to_datetime(["1990-05-17", None])})
    out = mask_frame(df, ["risk"])
    assert out["birth_date"].iloc[0] == "1990-**-**" and pd.isna(out["birth_date"].iloc[1])


def test_mask_frame_is_fast_enough_for_100k_rows():
    rng = np.random.default_rng(42)
    n = 100_000
    df = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "phone": [f"1{d:010d}" for d in rng.integers(3 * 10**9, 10**10 - 1, n)],
        "id_number": [f"{d:018d}" for d in rng.integers(10**17, 10**18 - 1, n)],
        "name": rng.choice(["张三", "李四", "王五", "欧阳娜娜"], n),
    })
    start = time.perf_counter()
    out = mask_frame(df, ["marketing"])
    assert time.perf_counter() - start < 5
    assert out["phone"].str.slice(3, 7).eq("****").all()
    assert out["name"].isin(["张*", "李*", "王*", "欧***"]).all()
