"""The segment cube and the SQL customer lists behind the Segments, Lifecycle and Churn pages: cube
rows by hand, a filtered cube equals filtering customers then aggregating (property), the refresh
writes the cube on both databases, and tag selections, campaign pages and top customers run in SQL
with bound filters and limits."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Date, Integer, MetaData, Table, func, insert, select, text

from analytics import access, consent, lifecycle, refresh, tags
from analytics import segment_explorer as sx
from analytics.access import Viewer
from analytics.refresh import run_refresh
from analytics.runs import Stage, current_run_id
from analytics.schema import segment_cube
from analytics.segmentation import read_segment_summary
from analytics.store import read_frame
from tests.analytics import store_rows

MONEY = list(sx.MONEY_COLUMNS)

MARKETING, RISK, EXECUTIVE = (Viewer("t", (r,)) for r in ("marketing", "risk", "executive"))


# ---------------------------------------------------------------------------------------------
# Age bands
# ---------------------------------------------------------------------------------------------

# (birth date, band at 2026): whole years = 2026 - birth year, the edges of every band.
AGE_CASES = [
    (date(2026, 6, 1), "<30"), (date(1997, 1, 1), "<30"), (date(1996, 12, 31), "30-44"),
    (date(1982, 1, 1), "30-44"), (date(1981, 12, 31), "45-59"), (date(1967, 1, 1), "45-59"),
    (date(1966, 12, 31), "60+"), (date(1949, 12, 31), "60+"), (date(1826, 1, 1), "60+"),
    (date(1825, 12, 31), "unknown"), (date(2027, 1, 1), "unknown"), (None, "unknown"),
]


def test_age_bands_by_hand():
    years = [d.year if d else None for d, _ in AGE_CASES]
    assert list(sx.age_bands(pd.Series(years, dtype="Float64"), 2026)) == [band for _, band in AGE_CASES]


def test_age_band_sql_matches_the_python_rule(engine):
    probe = Table("age_probe", MetaData(), Column("id", Integer, primary_key=True), Column("birth_date", Date))
    probe.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(probe), [{"id": i, "birth_date": d} for i, (d, _) in enumerate(AGE_CASES)])
        for band in sx.AGE_BANDS:
            got = conn.execute(select(probe.c.id).where(sx.age_band_clause(probe.c.birth_date, band, 2026))
                               .order_by(probe.c.id)).scalars().all()
            assert got == [i for i, (_, b) in enumerate(AGE_CASES) if b == band], band
    with pytest.raises(ValueError, match="Unknown age band"):
        sx.age_band_clause(probe.c.birth_date, "teen", 2026)
    with pytest.raises(ValueError, match="Unknown age band"):
        sx.Filters(age_bands=("teen",))


# ---------------------------------------------------------------------------------------------
# Cube rows by hand
# ---------------------------------------------------------------------------------------------

def _customers() -> pd.DataFrame:
    # At 2026: 1990 -> 36 (30-44), 1949 -> 77 (60+), 1985 -> 41 (30-44), unknown, 1991 -> 35 (30-44).
    return pd.DataFrame({
        "branch_id": ["B1", "B1", "B2", "B1", "B1"],
        "birth_year": [1990, 1949, 1985, np.nan, 1991],
        "value_tier": ["mass", "wealth", "mass", "mass", "mass"],
        "rfm_r": [5, 1, 5, 3, 5], "rfm_f": [4, 1, 4, 3, 4],
        "rfm_segment": ["Champions", "Lost", "Champions", "Need attention", "Champions"],
        "cluster_name": ["a", "b", "a", "a", "a"],
        "lifecycle_stage": ["mature", "dormant", "new", "mature", "mature"],
        "aum": [100.0, 2_000_000.0, 50.0, 0.0, 200.0],
        "annual_margin": [1.0, 20.0, 0.5, 0.0, 2.0],
        "clv_margin_1y": [15.0, -3.0, 5.0, 0.0, 25.0],
        "clv_margin_3y": [30.0, 0.0, 9.0, 120.0, 70.0],
        "clv_margin_5y": [40.0, 0.0, 12.0, 150.0, 100.0],
        "tags": ["x,y", "y", "", "x", "y"],
    })


def _rows(cube: pd.DataFrame, dimension: str, *columns: str) -> set[tuple]:
    part = cube[cube["dimension"] == dimension]
    return set(part[["value", *sx.CUBE_KEYS, *columns]].itertuples(index=False, name=None))


def test_cube_rows_by_hand():
    cube = sx.cube_rows(_customers(), as_of_year=2026, tag_names=["x", "y", "z"])
    # Customers 0 and 4 share the cell (B1, 30-44, mass) and the R×F cell 54.
    assert _rows(cube, "rfm_rf", "customers", "aum_total", "clv_margin_3y_total") == {
        ("54", "B1", "30-44", "mass", 2, 300.0, 100.0),
        ("11", "B1", "60+", "wealth", 1, 2_000_000.0, 0.0),
        ("54", "B2", "30-44", "mass", 1, 50.0, 9.0),
        ("33", "B1", "unknown", "mass", 1, 0.0, 120.0),
    }
    # A customer counts under every tag it carries; no tag "z" rows (nobody has it).
    assert _rows(cube, "tag", "customers", "annual_margin_total") == {
        ("x", "B1", "30-44", "mass", 1, 1.0), ("x", "B1", "unknown", "mass", 1, 0.0),
        ("y", "B1", "30-44", "mass", 2, 3.0), ("y", "B1", "60+", "wealth", 1, 20.0),
    }
    # 1-year CLV 15, -3, 5, 0, 25: edges 0, 10, 20, 50 for the whole run.
    assert _rows(cube, "clv_band_1y", "customers", "clv_margin_1y_total") == {
        ("10–20", "B1", "30-44", "mass", 1, 15.0), ("20–50", "B1", "30-44", "mass", 1, 25.0),
        ("< 0", "B1", "60+", "wealth", 1, -3.0), ("0–10", "B2", "30-44", "mass", 1, 5.0),
        ("0–10", "B1", "unknown", "mass", 1, 0.0),
    }
    assert _rows(cube, "value_tier", "customers") == {
        ("mass", "B1", "30-44", "mass", 2), ("wealth", "B1", "60+", "wealth", 1),
        ("mass", "B2", "30-44", "mass", 1), ("mass", "B1", "unknown", "mass", 1),
    }
    assert set(cube["dimension"]) == set(sx.CUBE_DIMENSIONS)
    # Every non-tag dimension counts each customer once.
    for dimension, part in cube[cube["dimension"] != "tag"].groupby("dimension"):
        assert part["customers"].sum() == 5, dimension
        assert part["clv_margin_5y_total"].sum() == pytest.approx(302.0), dimension


def test_cube_from_tag_flags_equals_cube_from_tag_text():
    frame = _customers()
    flags = pd.DataFrame({n: ("," + frame["tags"] + ",").str.contains(f",{n},", regex=False) for n in ("x", "y", "z")})
    a = sx.cube_rows(frame, as_of_year=2026, tag_flags=flags)
    b = sx.cube_rows(frame.drop(columns="tags"), as_of_year=2026, tag_flags=flags)
    c = sx.cube_rows(frame, as_of_year=2026, tag_names=["x", "y", "z"])
    key = ["dimension", "value", *sx.CUBE_KEYS]
    for other in (b, c):
        pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                      other.sort_values(key).reset_index(drop=True))


def test_cube_rows_need_their_columns_and_accept_no_customers():
    with pytest.raises(ValueError, match="Required column birth_year missing"):
        sx.cube_rows(_customers().drop(columns="birth_year"), as_of_year=2026)
    assert sx.cube_rows(_customers().iloc[:0], as_of_year=2026).empty


def test_summary_headline_bands_and_tags_of_a_hand_cube():
    cube = sx.Cube.from_rows(sx.cube_rows(_customers(), as_of_year=2026, tag_names=["x", "y", "z"]),
                             {"B1": "北京市", "B2": "上海市"})
    assert cube.branches == ("B1", "B2") and cube.cities() == ["上海市", "北京市"]
    beijing = sx.Filters(cities=("北京市",))
    s = sx.summary(cube, "rfm_segment", beijing)
    assert list(s.columns) == ["dimension", "value", *sx.SUMMARY_COLUMNS, "sort_order"]
    assert dict(zip(s["value"], s["customers"], strict=True)) == {"Champions": 2, "Lost": 1, "Need attention": 1}
    assert sx.headline(cube, beijing)["customers"] == 4
    assert sx.headline(cube, sx.Filters(age_bands=("30-44",), tiers=("mass",)))["clv_margin_3y_total"] == 109.0
    assert sx.tag_counts(cube, ["x", "y", "z"], beijing)["customers"].tolist() == [2, 3, 0]
    bands = sx.clv_bands(cube, 1, sx.Filters(branches=("B2",)))  # one customer, CLV 5
    assert bands["value"].tolist() == ["0–10", "10–20"] and bands["customers"].tolist() == [1, 0]
    bands = sx.clv_bands(cube, 1, sx.Filters(tiers=("wealth",)))  # one customer, CLV -3
    assert bands["value"].tolist() == ["< 0", "0–10", "10–20"] and bands["customers"].tolist() == [1, 0, 0]
    nobody = sx.Filters(branches=("B2",), tiers=("wealth",))
    assert sx.summary(cube, "rfm_rf", nobody).empty and sx.headline(cube, nobody)["customers"] == 0
    assert sx.clv_bands(cube, 3, nobody).equals(lifecycle.value_bands(np.zeros(0)))
    with pytest.raises(ValueError, match="Unknown dimension"):
        sx.summary(cube, "name", beijing)


# ---------------------------------------------------------------------------------------------
# Property: summing a filtered cube equals filtering the customers, then aggregating
# ---------------------------------------------------------------------------------------------

BRANCH_CITY = {"B1": "北京市", "B2": "北京市", "B3": "上海市", "B4": "深圳市"}
TAG_POOL = ["x", "y", "x_y", "xy"]


@st.composite
def customer_frames(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    col = lambda strategy: draw(st.lists(strategy, min_size=n, max_size=n))  # noqa: E731
    money = st.floats(min_value=-1e4, max_value=1e7, allow_nan=False).map(lambda v: round(v, 2))
    frame = pd.DataFrame({
        "branch_id": col(st.sampled_from(sorted(BRANCH_CITY))),
        "birth_year": col(st.one_of(st.none(), st.integers(1800, 2030))),
        "value_tier": col(st.sampled_from(["mass", "affluent", "wealth", "private"])),
        "rfm_r": col(st.integers(1, 5)), "rfm_f": col(st.integers(1, 5)),
        "rfm_segment": col(st.sampled_from(["Champions", "Lost", "At risk"])),
        "cluster_name": col(st.sampled_from(["savers", "borrowers"])),
        "lifecycle_stage": col(st.sampled_from(["new", "mature", "dormant"])),
        **{c: col(money) for c in MONEY},
        "tags": col(st.lists(st.sampled_from(TAG_POOL), unique=True).map(
            lambda ts: ",".join(t for t in TAG_POOL if t in ts))),
    })
    frame["birth_year"] = frame["birth_year"].astype("Float64")
    return frame


filters_strategy = st.builds(
    sx.Filters,
    branches=st.lists(st.sampled_from(sorted(BRANCH_CITY)), unique=True, max_size=3).map(tuple),
    cities=st.lists(st.sampled_from(["北京市", "上海市", "深圳市", "广州市"]), unique=True, max_size=2).map(tuple),
    age_bands=st.lists(st.sampled_from(sx.AGE_BANDS), unique=True, max_size=3).map(tuple),
    tiers=st.lists(st.sampled_from(["mass", "affluent", "wealth", "private"]), unique=True, max_size=2).map(tuple),
)


def _filtered(frame: pd.DataFrame, filters: sx.Filters) -> pd.DataFrame:
    """The reference: filter the per-customer rows."""
    keep = pd.Series(True, index=frame.index)
    bands = pd.Series(sx.age_bands(frame["birth_year"], 2026), index=frame.index)
    for values, column in ((filters.branches, frame["branch_id"]), (filters.cities, frame["branch_id"].map(BRANCH_CITY)),
                           (filters.age_bands, bands), (filters.tiers, frame["value_tier"])):
        if values:
            keep &= column.isin(list(values))
    return frame[keep]


@settings(max_examples=150, deadline=None)
@given(frame=customer_frames(), filters=filters_strategy)
def test_filtered_cube_equals_filtered_customers(frame, filters):
    cube = sx.Cube.from_rows(sx.cube_rows(frame, as_of_year=2026, tag_names=TAG_POOL), BRANCH_CITY)
    view = _filtered(frame, filters)
    keys = {"rfm_rf": view["rfm_r"].astype(str) + view["rfm_f"].astype(str), "rfm_segment": view["rfm_segment"],
            "value_tier": view["value_tier"], "cluster_name": view["cluster_name"],
            "lifecycle_stage": view["lifecycle_stage"], "branch_id": view["branch_id"]}
    for dimension, key in keys.items():
        got = sx.summary(cube, dimension, filters).set_index("value")
        want = view.groupby(key.to_numpy())[MONEY].sum().add_suffix("_total")
        want.insert(0, "customers", view.groupby(key.to_numpy()).size())
        assert got.index.tolist() == sorted(want.index.tolist()), dimension
        assert got["customers"].tolist() == want.loc[got.index, "customers"].tolist(), dimension
        np.testing.assert_allclose(got[list(sx.SUMMARY_COLUMNS[1:])].to_numpy(dtype=float),
                                   want.loc[got.index, list(sx.SUMMARY_COLUMNS[1:])].to_numpy(dtype=float),
                                   rtol=1e-9, atol=1e-6)
    head = sx.headline(cube, filters)
    assert head["customers"] == len(view)
    assert head["clv_margin_3y_total"] == pytest.approx(view["clv_margin_3y"].sum(), rel=1e-9, abs=1e-6)
    for years in lifecycle.CLV_HORIZONS_YEARS:
        pd.testing.assert_frame_equal(sx.clv_bands(cube, years, filters),
                                      lifecycle.value_bands(view[f"clv_margin_{years}y"].to_numpy()),
                                      check_dtype=False)
    fenced = "," + view["tags"].astype(str) + ","
    assert sx.tag_counts(cube, TAG_POOL, filters)["customers"].tolist() == [
        int(fenced.str.contains(f",{t},", regex=False).sum()) for t in TAG_POOL]


# ---------------------------------------------------------------------------------------------
# The refresh writes the cube (both databases)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def refreshed(engine):
    store_rows.fill(engine)
    return engine, run_refresh(engine)


def test_refresh_writes_the_cube_by_hand(refreshed):
    engine, run_id = refreshed
    cube = sx.read_cube(engine, run_id)
    # store_rows at 2026: C1 born 1949 at BR001 (北京市), C2 1990 at BR002 (上海市), C3 1985 at BR001;
    # AUM 1,000.50, 0 and 5,000: all mass.
    assert set(cube.rows("value_tier")[[*sx.CUBE_KEYS, "customers"]].itertuples(index=False, name=None)) == {
        ("BR001", "60+", "mass", 1), ("BR002", "30-44", "mass", 1), ("BR001", "30-44", "mass", 1)}
    assert cube.branches == ("BR001", "BR002") and cube.cities() == ["上海市", "北京市"]
    assert sx.headline(cube, sx.Filters(cities=("北京市",)))["customers"] == 2
    assert sx.headline(cube, sx.Filters(age_bands=("60+",)))["aum_total"] == pytest.approx(1000.5)
    assert sx.headline(cube, sx.Filters(cities=("No such city",)))["customers"] == 0


def test_cube_matches_the_run_summary_and_customer_rows(refreshed):
    engine, run_id = refreshed
    cube = sx.read_cube(engine, run_id)
    for dimension, stored in (("rfm_segment", "rfm_segment"), ("cluster_name", "cluster"), ("value_tier", "value_tier"),
                              ("lifecycle_stage", "lifecycle_stage"), ("tag", "tag"), ("clv_band_3y", "clv_band_3y")):
        ours = sx.summary(cube, dimension).set_index("value")
        theirs = read_segment_summary(engine, stored, run_id).set_index("value")
        theirs = theirs[theirs["customers"] > 0]
        assert sorted(ours.index) == sorted(theirs.index), dimension
        for col in sx.SUMMARY_COLUMNS:  # the CLV re-based on the churn model
            np.testing.assert_allclose(ours.loc[theirs.index, col].astype(float), theirs[col].astype(float),
                                       rtol=1e-9, err_msg=dimension)
    rows = read_frame(engine, "SELECT SUM(clv_margin_5y) AS clv FROM customer_clv_margin WHERE run_id = :r",
                      {"r": run_id})
    assert sx.headline(cube)["clv_margin_5y_total"] == pytest.approx(float(rows["clv"].iloc[0]))


def test_a_failed_refresh_leaves_no_cube_rows(refreshed, monkeypatch):
    engine, first = refreshed

    def broken(ctx):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(refresh, "STAGES", [*refresh.STAGES, Stage("broken", broken)])
    with pytest.raises(refresh.RefreshError):
        run_refresh(engine)
    with engine.connect() as conn:
        per_run = dict(conn.execute(select(segment_cube.c.run_id, func.count()).group_by(segment_cube.c.run_id)).all())
    assert list(per_run) == [first] and current_run_id(engine) == first


# ---------------------------------------------------------------------------------------------
# Customer lists in SQL
# ---------------------------------------------------------------------------------------------

def _reference_selection(engine, run_id, filters, expression):
    """tags.select on the stored tags, restricted to the filters in pandas."""
    frame = tags.read_tag_frame(engine, run_id)
    people = read_frame(engine, "SELECT s.customer_id, c.branch_id, b.city, c.marketing_consent, s.value_tier, "
                                "CAST(SUBSTR(CAST(c.birth_date AS TEXT), 1, 4) AS INTEGER) AS birth_year "
                                "FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id "
                                "JOIN branches b ON b.branch_id = c.branch_id WHERE s.run_id = :r",
                        {"r": run_id}).set_index("customer_id")
    people["age_band"] = sx.age_bands(people["birth_year"], 2026)
    keep = pd.Series(True, index=people.index)
    for values, column in ((filters.branches, "branch_id"), (filters.cities, "city"),
                           (filters.age_bands, "age_band"), (filters.tiers, "value_tier")):
        if values:
            keep &= people[column].isin(list(values))
    chosen = tags.select(frame.loc[people.index[keep]], expression)
    return people.loc[chosen]


@pytest.mark.parametrize("filters", [sx.Filters(), sx.Filters(cities=("北京市",)), sx.Filters(age_bands=("30-44",)),
                                     sx.Filters(branches=("BR002",), tiers=("mass",)),
                                     sx.Filters(cities=("No such city",))])
@pytest.mark.parametrize("expression", ["contactable", "not contactable", "contactable or NOT contactable"])
def test_tag_selection_in_sql_equals_select(refreshed, filters, expression):
    engine, run_id = refreshed
    names = tags.read_tag_frame(engine, run_id).columns.tolist()
    want = _reference_selection(engine, run_id, filters, expression)
    got = sx.tag_selection_counts(engine, run_id, filters, expression, names, as_of_year=2026, viewer=MARKETING)
    consenting = int(want["marketing_consent"].astype(bool).sum())
    assert got == {"selected": len(want), "consenting": consenting, "no_consent": len(want) - consenting,
                   "listed": consenting, "consent": "marketing"}
    page = sx.campaign_page(engine, run_id, filters, expression, names, viewer=MARKETING, as_of_year=2026, limit=10)
    assert list(page.columns) == list(sx.CAMPAIGN_COLUMNS) and len(page) == consenting
    assert set(page["customer_id"]) == set(want.index[want["marketing_consent"].astype(bool)])


def test_tag_selection_rejects_bad_expressions_before_sql(refreshed):
    engine, run_id = refreshed
    for bad in ("__import__('os')", "contactable'; DROP TABLE customers; --", "no_such_tag", "contactable +"):
        with pytest.raises(tags.TagRuleError):
            sx.tag_selection_counts(engine, run_id, sx.Filters(), bad, ["contactable"], as_of_year=2026,
                                    viewer=MARKETING)


def test_campaign_pages_are_ordered_and_limited(refreshed):
    engine, run_id = refreshed
    names = tags.read_tag_frame(engine, run_id).columns.tolist()
    everyone = "contactable or not contactable"
    full = sx.campaign_page(engine, run_id, sx.Filters(), everyone, names, viewer=MARKETING, as_of_year=2026, limit=100)
    # C1 and C3 gave consent; C2 did not.
    assert sorted(full["customer_id"]) == ["C000000001", "C000000003"]
    assert full["clv_margin_3y"].is_monotonic_decreasing
    pages = [sx.campaign_page(engine, run_id, sx.Filters(), everyone, names, viewer=MARKETING, as_of_year=2026, limit=1, offset=o)
             for o in range(3)]
    assert [len(p) for p in pages] == [1, 1, 0]
    assert pd.concat(pages)["customer_id"].tolist() == full["customer_id"].tolist()
    for limit, offset in ((0, 0), (sx.MAX_LIST_ROWS + 1, 0), (10, -1)):
        with pytest.raises(ValueError):
            sx.campaign_page(engine, run_id, sx.Filters(), everyone, names, viewer=MARKETING, as_of_year=2026, limit=limit, offset=offset)


@pytest.fixture
def refreshed_sqlite(sqlite_engine):
    """:func:`refreshed` on SQLite alone, for a test whose SQL the two-dialect tests already run."""
    store_rows.fill(sqlite_engine)
    return sqlite_engine, run_refresh(sqlite_engine)


def test_risk_managers_tag_list_is_not_consent_filtered_marketings_is(refreshed_sqlite):
    """store_rows: C1 and C3 gave marketing consent, C2 did not. Risk work needs everyone.
    (The risk list only leaves out the consent condition the two-dialect tests above run.)"""
    engine, run_id = refreshed_sqlite
    names = tags.read_tag_frame(engine, run_id).columns.tolist()
    everyone = "contactable or not contactable"
    counts = {v.roles: sx.tag_selection_counts(engine, run_id, sx.Filters(), everyone, names, as_of_year=2026,
                                               viewer=v) for v in (MARKETING, RISK, Viewer("b", ("marketing", "risk")))}
    assert counts[("marketing",)] == {"selected": 3, "consenting": 2, "no_consent": 1, "listed": 2,
                                      "consent": "marketing"}
    assert counts[("risk",)] == {"selected": 3, "consenting": 2, "no_consent": 1, "listed": 3, "consent": None}
    assert counts[("marketing", "risk")]["listed"] == 2  # another role too: the contact list, failing closed

    def listed(viewer):
        return sorted(sx.campaign_page(engine, run_id, sx.Filters(), everyone, names, viewer=viewer,
                                       as_of_year=2026)["customer_id"])

    assert listed(MARKETING) == ["C000000001", "C000000003"]
    assert listed(RISK) == ["C000000001", "C000000002", "C000000003"]
    assert listed(Viewer("b", ("marketing", "risk"))) == ["C000000001", "C000000003"]
    assert listed(Viewer("s", ("risk",), access.Scope(branches={"BR002"}))) == ["C000000002"]  # still scoped


@pytest.mark.parametrize("roles, purpose", [
    (("risk",), "risk"), (("marketing",), "marketing"), (("executive",), "marketing"),
    (("marketing", "risk"), "marketing"), (("relationship_manager",), "marketing"), ((), "marketing"),
])
def test_segment_list_purpose_by_role(roles, purpose):
    assert access.segment_list_purpose(roles) == purpose


def test_top_customers_are_filtered_ranked_masked_and_refused_to_aggregate_roles(refreshed):
    engine, run_id = refreshed
    top, left_out = sx.top_customers(engine, run_id, sx.Filters(), viewer=MARKETING, as_of_year=2026, n=2, by="aum")
    # Marketing sees AUM bands, not amounts; a top list is a contact list: C2 gave no consent.
    assert list(top.columns) == [c if c != "aum" else "aum_band" for c in sx.TOP_CUSTOMER_COLUMNS]
    assert top["customer_id"].tolist() == ["C000000003", "C000000001"]  # AUM 5,000 then 1,000.50
    assert top["aum_band"].tolist() == ["<10000", "<10000"] and left_out == {"consent": 1}
    assert not top["name"].isin(store_rows.CUSTOMERS["name"]).any()  # masked
    shanghai, left_out = sx.top_customers(engine, run_id, sx.Filters(cities=("上海市",)), viewer=RISK, as_of_year=2026)
    assert shanghai.empty and left_out == {"consent": 1}  # C2, Shanghai's only customer, gave no consent
    consent.grant(engine, "C000000002", "marketing")  # takes effect at the next read
    shanghai, left_out = sx.top_customers(engine, run_id, sx.Filters(cities=("上海市",)), viewer=RISK, as_of_year=2026)
    assert shanghai["customer_id"].tolist() == ["C000000002"] and left_out == {"consent": 0}
    assert "aum" in shanghai.columns  # risk sees exact amounts
    assert sx.top_customers(engine, run_id, sx.Filters(age_bands=("<30",)), viewer=MARKETING,
                            as_of_year=2026)[0].empty
    with pytest.raises(access.AccessDenied):
        sx.top_customers(engine, run_id, sx.Filters(), viewer=EXECUTIVE, as_of_year=2026)
    with pytest.raises(ValueError, match="by must be one of"):
        sx.top_customers(engine, run_id, sx.Filters(), viewer=MARKETING, as_of_year=2026, by="name; DROP TABLE x")


def test_scoped_viewers_get_a_cube_and_lists_of_their_own(refreshed):
    from analytics.access import Scope

    engine, run_id = refreshed
    br1 = Viewer("b", ("marketing",), Scope(branches={"BR001"}))
    cube = sx.read_cube(engine, run_id, br1)
    assert sx.headline(cube)["customers"] == 2 and cube.branches == ("BR001",)
    assert sx.headline(sx.read_cube(engine, run_id, Viewer("n", ("marketing",), Scope())))["customers"] == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET relationship_manager = 'rm_a' WHERE customer_id = 'C000000003'"))
    rm = Viewer("r", ("relationship_manager",), Scope(portfolios={"rm_a"}))
    own = sx.read_cube(engine, run_id, rm)
    assert sx.headline(own)["customers"] == 1
    assert sx.summary(own, "value_tier")["customers"].sum() == 1
    page = sx.campaign_page(engine, run_id, sx.Filters(), "contactable or not contactable",
                            tags.read_tag_frame(engine, run_id).columns.tolist(), viewer=rm, as_of_year=2026)
    assert page["customer_id"].tolist() == ["C000000003"]
    assert sx.filter_choices(engine, run_id, rm)["branch_id"] == ["BR001"]


def test_aggregate_only_viewers_see_no_small_cells(refreshed):
    engine, run_id = refreshed
    cube = sx.read_cube(engine, run_id)  # three customers: every cell is under 5
    hidden = sx.summary(cube, "value_tier", min_cell=5)
    assert hidden["customers_suppressed"].all() and hidden["customers"].isna().all()
    assert hidden["aum_total"].isna().all()
    assert sx.clv_bands(cube, 3, min_cell=5)["customers"].isna().any()
    names = tags.read_tag_frame(engine, run_id).columns.tolist()
    counted = sx.tag_selection_counts(engine, run_id, sx.Filters(), "contactable or not contactable", names,
                                      as_of_year=2026, viewer=EXECUTIVE)
    assert counted == {"selected": -1, "consenting": -1, "no_consent": -1, "listed": -1, "consent": "marketing"}


def test_filter_choices_from_small_queries(refreshed):
    engine, run_id = refreshed
    choices = sx.filter_choices(engine, run_id)
    assert choices["branch_id"] == ["BR001", "BR002"]
    assert choices["rfm_segment"] == sorted(read_segment_summary(engine, "rfm_segment", run_id)["value"])
    assert choices["relationship_manager"] == []  # store_rows has none
    assert choices["value_tier"] == ["mass", "affluent", "wealth", "private"]


# ---------------------------------------------------------------------------------------------
# The demo store: the cube stays small
# ---------------------------------------------------------------------------------------------

def test_demo_cube_is_small_and_adds_up(demo_engine):
    run_id = current_run_id(demo_engine)
    cube = sx.read_cube(demo_engine, run_id)
    cells = len(cube.parts["value_tier"])
    assert cells <= len(cube.branches) * len(sx.AGE_BANDS) * 4
    for dimension in sx.CUBE_DIMENSIONS:
        rows = cube.rows(dimension)
        assert 0 < len(rows) <= cells * rows["value"].nunique(), dimension
        assert rows["customers"].min() >= 1, dimension
    customers = read_frame(demo_engine, "SELECT COUNT(*) AS n FROM customer_segments WHERE run_id = :r", {"r": run_id})
    assert sx.headline(cube)["customers"] == int(customers["n"].iloc[0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=filters_strategy.map(lambda f: sx.Filters(tiers=f.tiers, age_bands=f.age_bands)))
def test_demo_top_customers_follow_the_filters(demo_engine, filters):
    run_id = current_run_id(demo_engine)
    top, _ = sx.top_customers(demo_engine, run_id, filters, viewer=MARKETING, as_of_year=2026, n=20)
    assert len(top) <= 20 and top["clv_margin_3y"].is_monotonic_decreasing
    if filters.tiers:
        assert top["value_tier"].isin(list(filters.tiers)).all()
