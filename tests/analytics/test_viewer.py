"""The one door: Viewer scope (SQL and pandas twins), purposes, balance bands and small cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from analytics.access import (
    AUM_BAND_EDGES,
    AccessDenied,
    Scope,
    Viewer,
    aum_band,
    band_amounts,
    release,
    suppress_small_cells,
)

CUSTOMERS = pd.DataFrame({
    "customer_id": ["C1", "C2", "C3", "C4", "C5"],
    "branch_id": ["B1", "B1", "B2", "B3", None],
    "relationship_manager": ["rm1", "rm2", "rm2", None, "rm3"],
})


@pytest.mark.parametrize("scope, expected", [
    (None, ["C1", "C2", "C3", "C4", "C5"]),  # bank-wide
    (Scope(), []),  # an empty scope sees nothing, never everything
    (Scope(branches={"B1"}), ["C1", "C2"]),
    (Scope(portfolios={"rm2"}), ["C2", "C3"]),
    (Scope(branches={"B3"}, portfolios={"rm2"}), ["C2", "C3", "C4"]),  # the union
    (Scope(branches={"B9"}), []),
    (Scope(portfolios={"rm3"}), ["C5"]),  # a customer without a branch, in a portfolio
])
def test_scope_sql_and_pandas_select_the_same_customers(sqlite_engine, scope, expected):
    viewer = Viewer("u", ("marketing",), scope)
    keep = viewer.in_scope(CUSTOMERS["branch_id"], CUSTOMERS["relationship_manager"])
    assert CUSTOMERS.loc[keep, "customer_id"].tolist() == expected
    with sqlite_engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE t (customer_id TEXT, branch_id TEXT, relationship_manager TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:customer_id, :branch_id, :relationship_manager)"),
                     CUSTOMERS.to_dict("records"))
        where, params = viewer.scope_sql("c")
        got = conn.execute(text(f"SELECT customer_id FROM t c WHERE {where} ORDER BY customer_id"), params)
        assert got.scalars().all() == expected


def test_a_relationship_manager_without_a_scope_sees_nothing():
    viewer = Viewer("rm", ("relationship_manager",))
    assert viewer.scope == Scope() and viewer.scope_sql() == ("1 = 0", {})
    assert not viewer.in_scope(CUSTOMERS["branch_id"], CUSTOMERS["relationship_manager"]).any()


@pytest.mark.parametrize("roles, rows, aggregate_only, exact", [
    (("executive",), False, True, False),
    (("display",), False, True, False),
    (("admin",), False, False, False),
    (("marketing",), True, False, False),
    (("relationship_manager",), True, False, True),
    (("risk",), True, False, True),
    (("compliance",), True, False, True),
    (("marketing", "risk"), True, False, True),
])
def test_viewer_levels(roles, rows, aggregate_only, exact):
    viewer = Viewer("u", roles)
    assert (viewer.sees_rows, viewer.aggregate_only, viewer.exact_balances) == (rows, aggregate_only, exact)


def test_cache_keys_differ_whenever_what_is_seen_differs():
    keys = {Viewer("a", ("marketing",)).key(), Viewer("a", ("marketing",), Scope(branches={"B1"})).key(),
            Viewer("a", ("marketing",), Scope(branches={"B2"})).key(), Viewer("a", ("risk",)).key(),
            Viewer("a", ("marketing",), purpose="marketing").key(), Viewer("a", ("compliance",)).key()}
    assert len(keys) == 6
    # Two users who may see the same rows share one entry.
    assert Viewer("a", ("marketing",)).key() == Viewer("b", ("marketing",)).key()


def test_unknown_purpose_and_role_are_refused():
    with pytest.raises(ValueError, match="purpose"):
        Viewer("u", ("marketing",), purpose="curiosity")
    with pytest.raises(ValueError, match="role"):
        Viewer("u", ("root",))


@pytest.mark.parametrize("value, band", [
    (0, "<10000"), (9_999.99, "<10000"), (10_000, "10000-50000"), (49_999, "10000-50000"),
    (50_000, "50000-200000"), (499_999, "200000-500000"), (500_000, "500000-1000000"),
    (5_999_999, "1000000-6000000"), (6_000_000, "6000000+"), (-5, "<10000"), (None, None), (float("nan"), None),
])
def test_aum_band(value, band):
    assert aum_band(value) == band


def test_release_masks_and_bands_for_marketing_but_not_for_risk():
    frame = pd.DataFrame({"customer_id": ["C1"], "name": ["张三丰"], "phone": ["13812345678"],
                          "aum": [123_456.78], "value_tier": ["affluent"], "clv_margin_3y": [1000.0]})
    marketing = release(frame, Viewer("m", ("marketing",)))
    assert list(marketing.columns) == ["customer_id", "name", "phone", "aum_band", "value_tier", "clv_margin_3y"]
    assert marketing.iloc[0].to_dict() == {"customer_id": "C1", "name": "张**", "phone": "138****5678",
                                           "aum_band": "50000-200000", "value_tier": "affluent",
                                           "clv_margin_3y": 1000.0}
    risk = release(frame, Viewer("r", ("risk",)))
    assert risk["aum"].iloc[0] == 123_456.78 and risk["name"].iloc[0] == "张**"
    with pytest.raises(AccessDenied):
        release(frame, Viewer("e", ("executive",)))


def test_band_amounts_leaves_no_exact_balance():
    frame = pd.DataFrame({"customer_id": ["C1", "C2"], "balance": [1.5, None], "loan_balance": [7e6, 0]})
    out = band_amounts(frame)
    assert not set(out.columns) & {"balance", "loan_balance"}
    assert out["balance_band"].tolist() == ["<10000", None]


@pytest.mark.parametrize("counts, hidden", [
    ([1, 10, 20], [True, True, False]),  # a lone small cell takes the next smallest with it
    ([1, 3, 20], [True, True, False]),
    ([0, 10, 20], [False, False, False]),  # an empty cell reveals no one
    ([5, 5, 5], [False, False, False]),
    ([4], [True]),
    ([2, 4, 9, 12], [True, True, False, False]),
])
def test_small_cells(counts, hidden):
    frame = pd.DataFrame({"customers": counts, "aum_total": np.arange(len(counts), dtype=float) + 1})
    out = suppress_small_cells(frame, sums=["aum_total"], k=5)
    assert out["customers_suppressed"].tolist() == hidden
    assert out["customers"].isna().tolist() == hidden and out["aum_total"].isna().tolist() == hidden


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30),
       st.integers(min_value=1, max_value=10), st.integers(min_value=1, max_value=4))
def test_no_figure_shown_comes_from_fewer_than_k_customers(counts, k, n_groups):
    frame = pd.DataFrame({"customers": counts, "aum_total": [c * 1000.0 for c in counts],
                          "group": [i % n_groups for i in range(len(counts))]})
    out = suppress_small_cells(frame, sums=["aum_total"], k=k, groups=["group"])
    shown = out[~out["customers_suppressed"]]
    assert ((shown["customers"] >= k) | (shown["customers"] == 0)).all()
    assert shown["aum_total"].notna().all()
    # No group has exactly one hidden cell among non-empty cells (it could be recovered from a total).
    for _, part in out.groupby("group"):
        hidden = int(part["customers_suppressed"].sum())
        non_empty_shown = int(((part["customers"] > 0) & ~part["customers_suppressed"]).sum())
        assert hidden != 1 or non_empty_shown == 0


def test_band_edges_are_increasing():
    assert list(AUM_BAND_EDGES) == sorted(AUM_BAND_EDGES)
