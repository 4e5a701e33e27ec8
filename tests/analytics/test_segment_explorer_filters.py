"""The Segments explorer's risk and demographic filters (issue 14): ``segment_cube_filters`` by hand
and against a direct pandas group-by of the segmented customers, the small-cell rule under the new
filters (what a filter leaves out included), the SQL twin the tag builder uses, and the values'
names in both languages."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from analytics import access, i18n, tags
from analytics import segment_explorer as sx
from analytics.access import Viewer
from analytics.features import month_end
from analytics.runs import current_run_id, get_run_metrics
from analytics.schema import customers
from analytics.store import read_frame
from tests.analytics import store_rows

MARKETING, RISK, EXECUTIVE = (Viewer("t", (r,)) for r in ("marketing", "risk", "executive"))
CITIES = {"B1": "甲市", "B2": "乙市"}


def _frame() -> pd.DataFrame:
    # At 2026: 1990 -> 30-44, 1949 -> 60+, 1985 -> 30-44, unknown, 1991 -> 30-44, 1980 -> 45-59.
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(1, 7)],
        "branch_id": ["B1", "B1", "B2", "B1", "B1", "B2"],
        "birth_year": [1990, 1949, 1985, np.nan, 1991, 1980],
        "value_tier": ["mass", "wealth", "mass", "mass", "mass", "affluent"],
        "rfm_r": [5, 1, 5, 3, 5, 4], "rfm_f": [4, 1, 4, 3, 4, 4],
        "rfm_segment": ["Champions", "Lost", "Champions", "Need attention", "Champions", "Champions"],
        "cluster_name": ["a", "b", "a", "a", "a", "b"],
        "lifecycle_stage": ["mature", "dormant", "new", "mature", "mature", "mature"],
        "tags": ["x", "", "x,y", "y", "", "x"],
        "aum": [100.0, 2_000_000.0, 50.0, 0.0, 200.0, 700.0],
        "annual_margin": [1.0, 20.0, 0.5, 0.0, 2.0, 7.0],
        "clv_margin_1y": [15.0, -3.0, 5.0, 0.0, 25.0, 1.0],
        "clv_margin_3y": [30.0, 0.0, 9.0, 120.0, 70.0, 2.0],
        "clv_margin_5y": [40.0, 1.0, 10.0, 130.0, 80.0, 3.0],
        "credit_grade": ["AAA", "B", None, "AAA", "B", "AAA"],
        "risk_tolerance": ["C1", "C5", "C3", "C3", None, "C3"],
        "risk_level_held": ["R2", "none", "R5", "R2", "R1", "R3"],
        "gender": ["M", "F", "M", "F", None, "F"],
        "income_band": ["lt_50k", "ge_1m", "lt_50k", "50k_100k", "lt_50k", "50k_100k"],
        "occupation": ["teacher", "retired", "worker", "teacher", "student", "teacher"],
        "customer_type": ["individual", "private_banking", "individual", "individual", "individual",
                          "small_business_owner"],
    })


def _cube(frame: pd.DataFrame, attribute: str) -> sx.Cube:
    """The cube of ``frame`` split by ``attribute``, as the pages read it."""
    rows = sx.attribute_rows(frame, as_of_year=2026, tag_names=["x", "y"])
    rows = rows[rows["filter_key"] == attribute]
    base = sx.Cube.from_rows(sx.cube_rows(frame, as_of_year=2026, tag_names=["x", "y"]), CITIES)
    return base.with_attribute(attribute, {v: sx.Cube.from_rows(p.drop(columns=["filter_key", "filter_value"]), CITIES)
                                           for v, p in rows.groupby("filter_value")})


def test_attribute_rows_by_hand():
    rows = sx.attribute_rows(_frame(), as_of_year=2026, tag_names=["x", "y"])
    assert set(rows["filter_key"]) == set(sx.ATTRIBUTE_FILTERS)
    assert set(rows["dimension"]) == set(sx.ATTRIBUTE_DIMENSIONS)
    grade = rows[(rows["filter_key"] == "credit_grade") & (rows["dimension"] == "rfm_segment")]
    got = {tuple(r) for r in grade[["filter_value", "value", "branch_id", "age_band", "value_tier", "customers",
                                    "aum_total"]].itertuples(index=False)}
    # AAA: C1 (B1 30-44 mass Champions 100), C4 (B1 unknown mass Need attention 0), C6 (B2 45-59 affluent
    # Champions 700); B: C2 (B1 60+ wealth Lost 2,000,000), C5 (B1 30-44 mass Champions 200); missing: C3.
    assert got == {("AAA", "Champions", "B1", "30-44", "mass", 1, 100.0),
                   ("AAA", "Need attention", "B1", "unknown", "mass", 1, 0.0),
                   ("AAA", "Champions", "B2", "45-59", "affluent", 1, 700.0),
                   ("B", "Lost", "B1", "60+", "wealth", 1, 2_000_000.0),
                   ("B", "Champions", "B1", "30-44", "mass", 1, 200.0),
                   ("unknown", "Champions", "B2", "30-44", "mass", 1, 50.0)}
    tagged = rows[(rows["filter_key"] == "gender") & (rows["dimension"] == "tag")]
    assert tagged.groupby(["filter_value", "value"])["customers"].sum().to_dict() == {
        ("F", "x"): 1, ("F", "y"): 1, ("M", "x"): 2, ("M", "y"): 1}


def test_each_attribute_adds_up_to_the_cube():
    frame = _frame()
    keys = ["dimension", "value", *sx.CUBE_KEYS]
    cube = sx.cube_rows(frame, as_of_year=2026, tag_names=["x", "y"], dimensions=sx.ATTRIBUTE_DIMENSIONS)
    whole = cube.set_index(keys)[list(sx.SUMMARY_COLUMNS)].sort_index()
    rows = sx.attribute_rows(frame, as_of_year=2026, tag_names=["x", "y"])
    for key, part in rows.groupby("filter_key"):
        pd.testing.assert_frame_equal(part.groupby(keys)[list(sx.SUMMARY_COLUMNS)].sum().sort_index(), whole,
                                      check_dtype=False, obj=key)


@pytest.mark.parametrize("filters", [
    sx.Filters(attribute="credit_grade", attribute_values=("AAA",)),
    sx.Filters(tiers=("mass",), attribute="credit_grade", attribute_values=("AAA", "B")),
    sx.Filters(branches=("B1",), attribute="risk_level_held", attribute_values=("R2",)),
    sx.Filters(age_bands=("30-44",), attribute="gender", attribute_values=("unknown", "M")),
    sx.Filters(cities=("乙市",), attribute="risk_tolerance", attribute_values=("C3",)),
])
def test_filtered_figures_equal_a_pandas_group_by(filters):
    frame = _frame()
    cube = _cube(frame, filters.attribute)
    kept = frame[frame[filters.attribute].fillna("unknown").isin(filters.attribute_values)]
    if filters.tiers:
        kept = kept[kept["value_tier"].isin(filters.tiers)]
    if filters.branches:
        kept = kept[kept["branch_id"].isin(filters.branches)]
    if filters.cities:
        kept = kept[kept["branch_id"].map(CITIES).isin(filters.cities)]
    if filters.age_bands:
        kept = kept[pd.Series(sx.age_bands(kept["birth_year"], 2026), index=kept.index).isin(filters.age_bands)]
    for dimension in ("rfm_segment", "value_tier", "cluster_name"):
        ours = sx.summary(cube, dimension, filters).set_index("value")
        theirs = kept.groupby(dimension).agg(customers=("aum", "size"), aum_total=("aum", "sum"),
                                             clv_margin_3y_total=("clv_margin_3y", "sum"))
        assert sorted(ours.index) == sorted(theirs.index), dimension
        for col in theirs.columns:
            np.testing.assert_allclose(ours.loc[theirs.index, col].astype(float), theirs[col].astype(float))
    head = sx.headline(cube, filters)
    assert head["customers"] == len(kept) and head["aum_total"] == pytest.approx(kept["aum"].sum())
    counts = sx.tag_counts(cube, ["x", "y"], filters).set_index("tag")["customers"].to_dict()
    assert counts == {n: int(kept["tags"].str.split(",").apply(lambda t, n=n: n in t).sum()) for n in ("x", "y")}


def test_credit_grade_counts_by_hand():
    cube = _cube(_frame(), "credit_grade")
    aaa = sx.summary(cube, "rfm_segment", sx.Filters(attribute="credit_grade", attribute_values=("AAA",)))
    assert aaa.set_index("value")[["customers", "aum_total"]].to_dict("index") == {
        "Champions": {"customers": 2, "aum_total": 800.0}, "Need attention": {"customers": 1, "aum_total": 0.0}}
    assert sx.headline(cube, sx.Filters(attribute="credit_grade", attribute_values=("AAA", "B")))["customers"] == 5


def _crowd() -> pd.DataFrame:
    """Twelve Champions (eleven AAA, one B) and four Lost (two AAA, two B), one cell: for the small-cell rule."""
    frame = pd.concat([_frame().iloc[[0]]] * 16, ignore_index=True)
    frame["customer_id"] = [f"D{i}" for i in range(16)]
    frame["rfm_segment"] = ["Champions"] * 12 + ["Lost"] * 4
    frame["credit_grade"] = ["AAA"] * 11 + ["B"] + ["AAA", "AAA", "B", "B"]
    return frame


def test_small_cells_stay_hidden_under_the_new_filters():
    cube = _cube(_crowd(), "credit_grade")
    b = sx.summary(cube, "rfm_segment", sx.Filters(attribute="credit_grade", attribute_values=("B",)), min_cell=3)
    # B: Champions 1 and Lost 2, both under 3: hidden, sums too.
    assert b["customers"].isna().all() and b["aum_total"].isna().all() and b["customers_suppressed"].all()
    assert sx.summary(cube, "rfm_segment", sx.Filters(attribute="credit_grade", attribute_values=("B",)),
                      min_cell=0)["customers"].tolist() == [1, 2]  # roles that see rows see them


def test_what_a_filter_leaves_out_is_no_small_cell_either():
    cube = _cube(_crowd(), "credit_grade")
    aaa = sx.Filters(attribute="credit_grade", attribute_values=("AAA",))
    # Champions AAA 11 of 12: the one left out (B) would be 12 - 11 on the page without the filter. Lost AAA
    # 2 is small anyway. Both hidden.
    shown = sx.summary(cube, "rfm_segment", aaa, min_cell=3).set_index("value")
    assert shown["customers"].isna().all() and shown["customers_suppressed"].all()
    assert sx.summary(cube, "rfm_segment", aaa, min_cell=0).set_index("value")["customers"].to_dict() == {
        "Champions": 11, "Lost": 2}
    # Without the filter nothing is small: 12 and 4.
    assert sx.summary(cube, "rfm_segment", min_cell=3)["customers"].tolist() == [12, 4]
    # The same rule for the tag list: tag x is on all 16, 13 of them AAA (3 left out: shown).
    assert sx.tag_counts(cube, ["x"], aaa, min_cell=3)["customers"].tolist() == [13]
    crowd = _crowd()
    crowd.loc[:14, "credit_grade"] = "AAA"  # 15 AAA, 1 B: the one B would show as 16 - 15
    tags_aaa = sx.tag_counts(_cube(crowd, "credit_grade"), ["x"], aaa, min_cell=3)
    assert tags_aaa["customers"].isna().all() and tags_aaa["customers_suppressed"].all()


def test_filters_check_their_attribute():
    with pytest.raises(ValueError, match="Unknown filter"):
        sx.Filters(attribute="salary")
    with pytest.raises(ValueError, match="need an attribute"):
        sx.Filters(attribute_values=("AAA",))
    flt = sx.Filters(tiers=("mass",), attribute="gender", attribute_values=("F",))
    assert flt.any and flt.by_attribute and flt.base == sx.Filters(tiers=("mass",))
    assert flt.as_params()["gender"] == ["F"]
    cube = _cube(_frame(), "credit_grade")
    with pytest.raises(ValueError, match="not split by 'gender'"):
        sx.summary(cube, "rfm_segment", flt)
    with pytest.raises(ValueError, match="not split by risk or demographic"):
        sx.summary(cube, "lifecycle_stage", sx.Filters(attribute="credit_grade", attribute_values=("AAA",)))


def test_values_in_display_order_and_in_both_languages():
    assert sx.attribute_values("credit_grade", ["unknown", "B", "AAA", "CCC"]) == ["AAA", "B", "CCC", "unknown"]
    assert sx.attribute_values("risk_level_held", ["R3", "none", "R1"]) == ["none", "R1", "R3"]
    assert sx.attribute_label("risk_tolerance", "C1", "zh") == "C1 保守型"
    assert sx.attribute_label("risk_level_held", "none", "en") == "No open product"
    assert sx.attribute_label("gender", "unknown", "zh") == "未知"
    assert sx.attribute_label("income_band", "ge_1m", "en") == "CNY 1m and more"
    assert sx.attribute_label("credit_grade", "AAA", "zh") == "AAA"  # grades are codes in both languages
    for key in sx.ATTRIBUTE_FILTERS:
        for lang in ("en", "zh"):
            assert i18n.has(f"seg_attr.{key}") and i18n.tr(f"seg_attr.{key}", lang) != f"seg_attr.{key}"
            for value in sx.ATTRIBUTE_ORDER.get(key, ()):
                if key != "credit_grade":
                    assert sx.attribute_label(key, value, lang) != value, (key, value, lang)


# ---------------------------------------------------------------------------------------------
# The refresh writes segment_cube_filters (both databases), and the SQL twin agrees
# ---------------------------------------------------------------------------------------------

def test_customer_attributes_and_their_sql_twin_by_hand(sqlite_engine):
    store_rows.fill(sqlite_engine)
    end = date(2026, 10, 31)
    got = sx.customer_attributes(sqlite_engine, end).set_index("customer_id")
    # store_rows: C1 (M, C3, two R1 products open), C2 (F, C1, its one product closed in 2025), C3 (M, no
    # tolerance, no product); no credit grade, income band, occupation or type on file.
    assert got.loc[:, ["gender", "risk_tolerance", "risk_level_held", "credit_grade"]].to_dict("index") == {
        "C000000001": {"gender": "M", "risk_tolerance": "C3", "risk_level_held": "R1", "credit_grade": "unknown"},
        "C000000002": {"gender": "F", "risk_tolerance": "C1", "risk_level_held": "none", "credit_grade": "unknown"},
        "C000000003": {"gender": "M", "risk_tolerance": "unknown", "risk_level_held": "none",
                       "credit_grade": "unknown"}}
    # Before C2's product closed (2025-01-01), C2 held R1 too.
    assert sx.customer_attributes(sqlite_engine, date(2024, 12, 31)).set_index("customer_id").loc[
        "C000000002", "risk_level_held"] == "R1"
    for attribute, values, expected in (("risk_level_held", ["none"], {"C000000002", "C000000003"}),
                                        ("risk_level_held", ["R1", "R2"], {"C000000001"}),
                                        ("risk_tolerance", ["unknown", "C1"], {"C000000002", "C000000003"}),
                                        ("gender", ["F"], {"C000000002"})):
        stmt = select(customers.c.customer_id).where(sx.attribute_condition(attribute, values, as_of_end=end))
        with sqlite_engine.connect() as conn:
            assert set(conn.execute(stmt).scalars()) == expected, (attribute, values)
    with pytest.raises(ValueError, match="as_of_end"):
        sx.attribute_condition("risk_level_held", ["R1"])


def test_demo_filter_cube_equals_a_group_by_of_the_segmented_customers(demo_engine):
    run_id = current_run_id(demo_engine)
    month = date.fromisoformat(str(get_run_metrics(demo_engine, run_id)["as_of_month"])[:10])
    people = sx.segmented_customers(demo_engine, run_id)
    store = read_frame(demo_engine, "SELECT customer_id, credit_grade FROM customers")
    # The highest risk level of the products open at the month's end, from the raw holdings, in pandas.
    held = read_frame(demo_engine, "SELECT h.customer_id, h.opened_on, h.closed_on, p.risk_level FROM holdings h "
                                   "JOIN products p ON p.product_id = h.product_id")
    end = pd.Timestamp(month_end(month))
    opened, closed = pd.to_datetime(held["opened_on"]), pd.to_datetime(held["closed_on"])
    held = held[(opened <= end) & (closed.isna() | (closed > end))].groupby("customer_id")["risk_level"].max()
    people = people.merge(store, on="customer_id", how="left")
    people["held"] = people["customer_id"].map(held).fillna("none")
    people["credit_grade"] = people["credit_grade"].fillna("unknown")
    base = sx.read_cube(demo_engine, run_id)
    for attribute, column in (("credit_grade", "credit_grade"), ("risk_level_held", "held")):
        cube = base.with_attribute(attribute, sx.read_attribute_cubes(demo_engine, run_id, attribute))
        assert cube.attribute_values() == sx.attribute_values(attribute, people[column].unique())
        for value, group in people.groupby(column):
            flt = sx.Filters(attribute=attribute, attribute_values=(value,))
            ours = sx.summary(cube, "rfm_segment", flt).set_index("value")
            theirs = group.groupby("rfm_segment").agg(customers=("aum", "size"), aum_total=("aum", "sum"))
            assert ours["customers"].to_dict() == theirs["customers"].to_dict(), (attribute, value)
            np.testing.assert_allclose(ours.loc[theirs.index, "aum_total"], theirs["aum_total"], rtol=1e-9)
        # The SQL twin (the tag builder's counts and lists) picks the same customers.
        names = tags.read_tag_frame(demo_engine, run_id).columns.tolist()
        for value in sorted(people[column].unique())[:2]:
            flt = sx.Filters(attribute=attribute, attribute_values=(value,))
            counted = sx.tag_selection_counts(demo_engine, run_id, flt, "contactable or not contactable", names,
                                              as_of_year=month.year, viewer=RISK)
            assert counted["selected"] == int((people[column] == value).sum()), (attribute, value)


def test_the_tag_builder_hides_the_few_a_filter_leaves_out(demo_engine):
    run_id = current_run_id(demo_engine)
    year = int(str(get_run_metrics(demo_engine, run_id)["as_of_month"])[:4])
    k = access.min_cell_customers()
    people = sx.segmented_customers(demo_engine, run_id).merge(
        read_frame(demo_engine, "SELECT customer_id, occupation FROM customers"), on="customer_id")
    people["occupation"] = people["occupation"].fillna("unknown")  # the demo leaves some out, as a bank would
    # A branch where some occupation has fewer than k customers: every other occupation leaves them out.
    counts = people.groupby(["branch_id", "occupation"]).size()
    branch, few = counts[counts < k].index[0]
    others = tuple(o for o in people.loc[people["branch_id"] == branch, "occupation"].unique() if o != few)
    flt = sx.Filters(branches=(branch,), attribute="occupation", attribute_values=others)
    names = tags.read_tag_frame(demo_engine, run_id).columns.tolist()
    kept = int(((people["branch_id"] == branch) & people["occupation"].isin(others)).sum())
    assert kept >= k
    assert sx.tag_selection_counts(demo_engine, run_id, flt, "contactable or not contactable", names,
                                   as_of_year=year, viewer=RISK)["selected"] == kept
    assert sx.tag_selection_counts(demo_engine, run_id, flt, "contactable or not contactable", names,
                                   as_of_year=year, viewer=EXECUTIVE)["selected"] == -1
