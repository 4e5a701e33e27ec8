"""Cross-filtering over a run's segmentation results, without reading customer rows.

The Segments and Lifecycle pages filter by branch, city, age band and value tier, and every chart
on the page follows. At a million customers the pages cannot hold one row per customer, so:

* the refresh writes ``segment_cube`` (:func:`cube_rows`): the counts and totals of every charted
  dimension, split by the filter cells (branch × age band × value tier). A city is a set of
  branches (``branches.city``), so it needs no cell of its own.
* a page reads the cube of a run once (:func:`read_cube`; aggregates only, so one cached copy
  serves every role) and :func:`summary` sums the rows of the cells the filters keep, in the shape
  of the stored ``segment_summary`` rows, so :mod:`analytics.charts_segments` draws both;
  :func:`headline`, :func:`clv_bands` and :func:`tag_counts` do the same for the figures, the CLV
  histogram and the tag list.
* what needs customer rows runs in SQL with the same filters as bound parameters and a limit:
  the tag builder (:func:`tag_selection_counts`, :func:`campaign_page`) and the top customers
  (:func:`top_customers`).

Age bands are whole years at the run's year: ``as_of_year - birth year`` (the birth date never
leaves the store: the cube holds bands, and SQL compares birth dates with year boundaries).

Risk and demographic filters (risk tolerance, credit grade, highest product risk level held, gender,
income band, occupation, customer type: :data:`ATTRIBUTE_FILTERS`) come from a second table,
``segment_cube_filters`` (:func:`attribute_rows`): the cube of the Segments page's dimensions split
by one attribute at a time, so a page may narrow by one of them on top of branch, city, age band and
tier. The small-cell rule, and differencing, under these filters:

* every figure is hidden from aggregate-only roles as today: a value of fewer than
  ``MIN_CELL_CUSTOMERS`` customers, with a second one when it would be hidden alone;
* a new way to difference: every filtered figure has an unfiltered twin on the same page, so
  "without the filter" minus "with it" would count the customers the filter leaves out. A figure
  (:func:`_small_rest`), a tag count, a tag-builder count or the whole page (the headline) is hidden
  when that difference is under ``MIN_CELL_CUSTOMERS`` but not zero;
* summing every other value of the attribute (several values may be picked at once) is the same
  differencing the branch filter already allows (the branches of a cell add up to it), and is
  bounded the same way: each sum is itself a figure under the rule;
* two attributes at once, whose intersections are the cells that single people out, are not offered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, case, func, or_, select

from analytics import access, lifecycle, tags
from analytics.consent import live_consent_condition
from analytics.features import month_end
from analytics.schema import (
    CREDIT_GRADES,
    RISK_LEVELS,
    RISK_TOLERANCES,
    branches,
    cluster_cube,
    customer_clv_margin,
    customer_segments,
    customers,
    holdings,
    products,
    segment_cube,
    segment_summary,
)
from analytics.segmentation import VALUE_TIERS
from analytics.store import read_frame

# The table, under a name the readers' ``customers=`` filter does not shadow.
_customers_table = customers

#: Age bands, whole years at the run's year; ``unknown`` for a missing or impossible birth year.
AGE_BANDS = ("<30", "30-44", "45-59", "60+", "unknown")
#: (band, youngest, oldest) age in years.
AGE_BAND_AGES: tuple[tuple[str, int, int], ...] = (("<30", 0, 29), ("30-44", 30, 44), ("45-59", 45, 59),
                                                   ("60+", 60, 200))

SUMMARY_COLUMNS = ("customers", "aum_total", "annual_margin_total", "clv_margin_1y_total",
                   "clv_margin_3y_total", "clv_margin_5y_total")
#: The per-customer money columns summed into the ``*_total`` columns.
MONEY_COLUMNS = ("aum", "annual_margin", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y")
#: The filter cells of the cube.
CUBE_KEYS = ("branch_id", "age_band", "value_tier")
#: Every dimension the cube holds.
CUBE_DIMENSIONS = ("rfm_rf", "rfm_segment", "value_tier", "cluster_name", "lifecycle_stage", "branch_id",
                   *(f"clv_band_{y}y" for y in lifecycle.CLV_HORIZONS_YEARS), "tag")
#: What :func:`cube_rows` needs per customer (plus ``tags`` text unless tag flags are given).
CUBE_INPUT_COLUMNS = ("branch_id", "birth_year", "value_tier", "rfm_r", "rfm_f", "rfm_segment", "cluster_name",
                      "lifecycle_stage", *MONEY_COLUMNS)
#: SQL for a customer's birth year on both dialects (ISO date text on SQLite, ``date`` on PostgreSQL).
BIRTH_YEAR_SQL = "CAST(SUBSTR(CAST({col} AS TEXT), 1, 4) AS INTEGER)"

CAMPAIGN_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "rfm_segment", "value_tier",
                    "lifecycle_stage", "clv_margin_3y")
TOP_CUSTOMER_COLUMNS = ("customer_id", "name", "branch_id", "value_tier", "rfm_segment", "lifecycle_stage",
                        "aum", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y")
#: Columns :func:`top_customers` may rank by.
RANK_COLUMNS = ("aum", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y")
#: The risk and demographic filters, one at a time (``segment_cube_filters``; see :func:`attribute_rows`).
ATTRIBUTE_FILTERS = ("risk_tolerance", "credit_grade", "risk_level_held", "gender", "income_band", "occupation",
                     "customer_type")
#: The dimensions ``segment_cube_filters`` splits by an attribute: those the Segments page draws.
ATTRIBUTE_DIMENSIONS = ("rfm_rf", "rfm_segment", "value_tier", "cluster_name", "tag")
#: The value of a customer whose attribute is missing in the store.
UNKNOWN = "unknown"
#: The held risk level of a customer with no product open at the end of the run's month.
NONE_HELD = "none"
#: Each filter's values in display order (values outside come after, sorted; ``unknown`` last).
ATTRIBUTE_ORDER: dict[str, tuple[str, ...]] = {
    "risk_tolerance": RISK_TOLERANCES, "credit_grade": CREDIT_GRADES, "risk_level_held": (NONE_HELD, *RISK_LEVELS),
    "gender": ("M", "F"),
    "income_band": ("lt_50k", "50k_100k", "100k_200k", "200k_500k", "500k_1m", "ge_1m"),
    "customer_type": ("individual", "private_banking", "small_business_owner"),
}
#: Most rows one SQL customer list returns (a page shows far fewer; exports are capped lower).
MAX_LIST_ROWS = 1_000_000


@dataclass(frozen=True)
class Filters:
    """What the user picked; an empty tuple means "all".

    ``attribute`` is at most one of :data:`ATTRIBUTE_FILTERS` (risk tolerance, credit grade, ...)
    and ``attribute_values`` the values of it kept (empty: all); see :func:`attribute_rows` for why
    only one at a time.
    """

    branches: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    age_bands: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    attribute: str = ""
    attribute_values: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [b for b in self.age_bands if b not in AGE_BANDS]
        if unknown:
            raise ValueError(f"Unknown age band(s) {unknown}; expected some of {', '.join(AGE_BANDS)}")
        if self.attribute and self.attribute not in ATTRIBUTE_FILTERS:
            raise ValueError(f"Unknown filter {self.attribute!r}; expected one of {', '.join(ATTRIBUTE_FILTERS)}")
        if self.attribute_values and not self.attribute:
            raise ValueError("attribute_values need an attribute")

    def as_params(self) -> dict:
        """The filters as plain data, for the audit log."""
        params = {"branches": list(self.branches), "cities": list(self.cities),
                  "age_bands": list(self.age_bands), "tiers": list(self.tiers)}
        if self.attribute_values:
            params[self.attribute] = list(self.attribute_values)
        return params

    @property
    def any(self) -> bool:
        """Whether any filter narrows the customers."""
        return bool(self.branches or self.cities or self.age_bands or self.tiers or self.attribute_values)

    @property
    def by_attribute(self) -> bool:
        """Whether a risk or demographic filter narrows the customers."""
        return bool(self.attribute_values)

    @property
    def base(self) -> Filters:
        """The same filters without the risk or demographic one."""
        return replace(self, attribute="", attribute_values=())


# ---------------------------------------------------------------------------------------------
# Age bands
# ---------------------------------------------------------------------------------------------

def age_bands(birth_year, as_of_year: int) -> np.ndarray:
    """The :data:`AGE_BANDS` label of each birth year (missing -> ``unknown``) at ``as_of_year``."""
    years = pd.to_numeric(pd.Series(birth_year).reset_index(drop=True), errors="coerce").astype(float)
    age = float(as_of_year) - years.to_numpy(dtype=float)
    out = np.full(len(age), "unknown", dtype=object)
    for band, youngest, oldest in AGE_BAND_AGES:
        out[(age >= youngest) & (age <= oldest)] = band
    return out


def age_band_clause(birth_date_column, band: str, as_of_year: int):
    """SQL: the customer is in age ``band`` at ``as_of_year`` (birth dates against year boundaries,
    bound as dates), the same rule as :func:`age_bands`."""
    for name, youngest, oldest in AGE_BAND_AGES:
        if name == band:
            return and_(birth_date_column >= date(as_of_year - oldest, 1, 1),
                        birth_date_column < date(as_of_year - youngest + 1, 1, 1))
    if band == "unknown":
        known = or_(*(age_band_clause(birth_date_column, b, as_of_year) for b, _, _ in AGE_BAND_AGES))
        return or_(birth_date_column.is_(None), ~known)
    raise ValueError(f"Unknown age band {band!r}; expected one of {', '.join(AGE_BANDS)}")


# ---------------------------------------------------------------------------------------------
# Building the cube (the refresh)
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _band_labels() -> tuple[list[str], int]:
    """Every CLV band label in band order (``< 0`` first), from the 1-2-5 edges of
    :func:`analytics.lifecycle.band_edges` up to far beyond any customer's value, and the position
    of the band every histogram reaches at least (the one holding the edges' ``start``, 10)."""
    edges = lifecycle.band_edges([1e15])
    position, labels = lifecycle.assign_bands([10.0], edges)
    return labels, int(position[0])


def _group(cells: np.ndarray, values: np.ndarray, money: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Counts and money sums per (cell, value code) present: ``cell``, ``value``, summary columns."""
    n_values = max(len(labels), 1)
    key = cells.astype(np.int64) * n_values + values.astype(np.int64)
    inverse, present = pd.factorize(key)  # hashing: faster than np.unique's sort at a million rows
    out = {"cell": present // n_values, "value": np.asarray(labels, dtype=object)[present % n_values],
           "customers": np.bincount(inverse, minlength=len(present)).astype(np.int64)}
    for i, col in enumerate(MONEY_COLUMNS):
        out[f"{col}_total"] = np.bincount(inverse, weights=money[:, i], minlength=len(present))
    return pd.DataFrame(out)


def _cells(frame: pd.DataFrame, as_of_year: int, by: str | None = None):
    """Each customer's filter cell (a (branch, age band, tier) code, times a ``by`` value code when
    given), the cells' keys (``by``'s as ``filter_value``), and each key's codes and labels."""
    branch = frame["branch_id"].astype(object).where(frame["branch_id"].notna(), "(missing)").astype(str)
    # A cell is a (branch, age band, tier) code; factorising each key alone and combining the codes
    # is much faster than factorising a MultiIndex of text at a million rows.
    key_codes, key_labels = zip(*(pd.factorize(pd.Series(v).reset_index(drop=True)) for v in (
        branch, age_bands(frame["birth_year"], as_of_year), frame["value_tier"].astype(str))), strict=True)
    sizes = [len(labels) for labels in key_labels]
    code = (key_codes[0] * sizes[1] + key_codes[1]) * sizes[2] + key_codes[2]
    extra_codes = extra_labels = None
    if by is not None:
        extra = frame[by].astype(object).where(frame[by].notna(), UNKNOWN).astype(str).reset_index(drop=True)
        extra_codes, extra_labels = pd.factorize(extra)
        code = code.astype(np.int64) * len(extra_labels) + extra_codes
    cells, present = pd.factorize(code)
    if by is not None:
        extra_at, present = present % len(extra_labels), present // len(extra_labels)
    cell_keys = pd.DataFrame({
        "branch_id": np.asarray(key_labels[0], dtype=object)[present // (sizes[1] * sizes[2])],
        "age_band": np.asarray(key_labels[1], dtype=object)[(present // sizes[2]) % sizes[1]],
        "value_tier": np.asarray(key_labels[2], dtype=object)[present % sizes[2]],
    })
    if by is not None:
        cell_keys["filter_value"] = np.asarray(extra_labels, dtype=object)[extra_at]
    return cells, cell_keys, key_codes, key_labels


CLUSTER_CUBE_COLUMNS = ("cluster_name", "feature", *CUBE_KEYS, "customers", "z_sum")


def cluster_cube_rows(frame: pd.DataFrame, z: pd.DataFrame, *, as_of_year: int) -> pd.DataFrame:
    """The ``cluster_cube`` rows of one run: per cluster, feature and filter cell, the customers and
    the sum of their standardised feature (``z``, in ``frame``'s row order, one column per feature;
    :meth:`analytics.segmentation.BehaviourClusterer.standardised`).

    ``frame`` has ``branch_id``, ``birth_year``, ``value_tier`` and ``cluster_name`` per customer.
    """
    if len(z) != len(frame):
        raise ValueError("z must have one row per customer of frame")
    if frame.empty or z.shape[1] == 0:
        return pd.DataFrame(columns=list(CLUSTER_CUBE_COLUMNS))
    cells, cell_keys, _, _ = _cells(frame, as_of_year)
    cluster_codes, cluster_names = pd.factorize(frame["cluster_name"].astype(str).reset_index(drop=True))
    key, present = pd.factorize(cells.astype(np.int64) * len(cluster_names) + cluster_codes)
    customers = np.bincount(key, minlength=len(present)).astype(np.int64)
    values = z.to_numpy(dtype=float)
    parts = []
    for j, feature in enumerate(z.columns):
        column = np.nan_to_num(values[:, j])
        parts.append(pd.DataFrame({
            "cell": present // len(cluster_names),
            "cluster_name": np.asarray(cluster_names, dtype=object)[present % len(cluster_names)],
            "feature": str(feature), "customers": customers,
            "z_sum": np.bincount(key, weights=column, minlength=len(present)),
        }))
    out = pd.concat(parts, ignore_index=True).join(cell_keys, on="cell").drop(columns="cell")
    return out[list(CLUSTER_CUBE_COLUMNS)]


def add_up_cells(total: pd.DataFrame | None, part: pd.DataFrame, sums: Sequence[str]) -> pd.DataFrame:
    """Rows of cube cells (counts and sums by key columns) of two sets of customers added up: one
    row per key, in the order the keys first appear, with the ``sums`` columns added."""
    if total is None:
        return part
    keys = [c for c in part.columns if c not in sums]
    both = pd.concat([total, part], ignore_index=True)
    return both.groupby(keys, sort=False, dropna=False)[list(sums)].sum().reset_index()[list(part.columns)]


def combine_cluster_cube(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """:func:`cluster_cube_rows` of two consecutive blocks of customers added up: folded over every
    block in order, the rows one call over all of them gives (the sums to rounding), in its order
    (by feature, then by first appearance)."""
    both = add_up_cells(total, part, ("customers", "z_sum"))
    position = {f: i for i, f in enumerate(dict.fromkeys(both["feature"]))}
    order = np.argsort(both["feature"].map(position).to_numpy(), kind="stable")
    return both.iloc[order].reset_index(drop=True)


def read_cluster_cube(engine: Engine, run_id: int) -> pd.DataFrame:
    """The ``cluster_cube`` rows of a run (clusters × features × filter cells: aggregates only)."""
    return read_frame(engine, select(*(cluster_cube.c[c] for c in CLUSTER_CUBE_COLUMNS))
                      .where(cluster_cube.c.run_id == int(run_id)))


def cluster_profiles(rows: pd.DataFrame, cube: Cube, filters: Filters = Filters()) -> pd.DataFrame:
    """Each cluster's mean standardised features over the customers ``filters`` keep: one row per
    cluster with ``cluster_name``, ``customers`` and ``z_<feature>`` (the frame
    :func:`analytics.charts_segments.cluster_profile_heatmap` draws), largest cluster first."""
    columns = ["cluster_name", "customers"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    keep = np.ones(len(rows), dtype=bool)
    if filters.branches:
        keep &= rows["branch_id"].isin(list(filters.branches)).to_numpy()
    if filters.cities:
        in_cities = [b for b, city in cube.branch_cities.items() if city in set(filters.cities)]
        keep &= rows["branch_id"].isin(in_cities).to_numpy()
    if filters.age_bands:
        keep &= rows["age_band"].isin(list(filters.age_bands)).to_numpy()
    if filters.tiers:
        keep &= rows["value_tier"].isin(list(filters.tiers)).to_numpy()
    kept = rows[keep]
    if kept.empty:
        return pd.DataFrame(columns=columns)
    sums = kept.groupby(["cluster_name", "feature"], sort=False)[["customers", "z_sum"]].sum()
    means = (sums["z_sum"] / sums["customers"]).unstack("feature")
    sizes = sums["customers"].groupby(level="cluster_name").first()
    features = list(dict.fromkeys(rows["feature"]))  # the clusterer's feature order
    out = means[features].add_prefix("z_")
    out.insert(0, "customers", sizes.reindex(out.index).astype(np.int64))
    out = out.reset_index().sort_values(["customers", "cluster_name"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


def cube_rows(frame: pd.DataFrame, *, as_of_year: int, tag_names: Sequence[str] = (),
              tag_flags: pd.DataFrame | None = None, by: str | None = None,
              dimensions: Sequence[str] | None = None,
              clv_edges: Mapping[int, np.ndarray] | None = None) -> pd.DataFrame:
    """The ``segment_cube`` rows of one run from its per-customer results.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per customer with :data:`CUBE_INPUT_COLUMNS` (``birth_year`` may be missing) and,
        unless ``tag_flags`` is given, ``tags`` (comma-separated names).
    as_of_year : int
        The run's year, for the age bands.
    tag_names : sequence of str
        The tags to count (file order); default: the columns of ``tag_flags``.
    tag_flags : pandas.DataFrame, optional
        Boolean tag columns in ``frame``'s row order (from :func:`analytics.tags.evaluate_tags`);
        read from ``frame["tags"]`` when absent.
    by : str, optional
        A column of ``frame`` that splits every cell further (missing -> ``unknown``); its value
        is the rows' ``filter_value`` (:func:`attribute_rows`).
    dimensions : sequence of str, optional
        The dimensions to count (default: every one of :data:`CUBE_DIMENSIONS`).
    clv_edges : mapping of int to numpy.ndarray, optional
        Each horizon's CLV band edges (default: :func:`analytics.lifecycle.band_edges` of
        ``frame``'s values). A run summed a block of customers at a time passes the whole run's
        (:func:`segmented_clv_edges`), so every block is cut on the same bands.

    Returns
    -------
    pandas.DataFrame
        ``dimension``, ``value``, :data:`CUBE_KEYS` (and ``filter_value`` with ``by``) and
        :data:`SUMMARY_COLUMNS`: one row per dimension value per non-empty cell. CLV bands use one set of edges for the whole run
        (:func:`analytics.lifecycle.band_edges` of every customer's value), so they add up across
        cells like every other dimension.
    """
    missing = [c for c in CUBE_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"Required column {missing[0]} missing")
    columns = ["dimension", "value", *CUBE_KEYS, *(["filter_value"] if by else []), *SUMMARY_COLUMNS]
    if by is not None and by not in frame.columns:
        raise ValueError(f"Required column {by} missing")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    cells, cell_keys, key_codes, key_labels = _cells(frame, as_of_year, by)
    money = np.column_stack([pd.to_numeric(frame[c], errors="coerce").fillna(0.0).to_numpy(dtype=float)
                             for c in MONEY_COLUMNS])

    def by_codes(dimension: str, codes: np.ndarray, labels) -> pd.DataFrame:
        return _group(cells, codes, money, np.asarray(labels, dtype=object)).assign(dimension=dimension)

    def by_values(dimension: str, values) -> pd.DataFrame:
        codes, labels = pd.factorize(pd.Series(values).reset_index(drop=True))
        return by_codes(dimension, codes, [str(v) for v in labels])

    wanted = set(CUBE_DIMENSIONS if dimensions is None else dimensions)
    rf = frame["rfm_r"].to_numpy(dtype=np.int64) * 10 + frame["rfm_f"].to_numpy(dtype=np.int64)
    builders = {
        "rfm_rf": lambda: by_values("rfm_rf", rf),
        "rfm_segment": lambda: by_values("rfm_segment", frame["rfm_segment"].astype(str)),
        "value_tier": lambda: by_codes("value_tier", key_codes[2], [str(v) for v in key_labels[2]]),
        "cluster_name": lambda: by_values("cluster_name", frame["cluster_name"].astype(str)),
        "lifecycle_stage": lambda: by_values("lifecycle_stage", frame["lifecycle_stage"].astype(str)),
        "branch_id": lambda: by_codes("branch_id", key_codes[0], [str(v) for v in key_labels[0]]),
    }
    parts = [build() for dimension, build in builders.items() if dimension in wanted]
    for years in lifecycle.CLV_HORIZONS_YEARS:
        if f"clv_band_{years}y" not in wanted:
            continue
        values = money[:, MONEY_COLUMNS.index(f"clv_margin_{years}y")]
        edges = lifecycle.band_edges(values) if clv_edges is None else clv_edges[years]
        position, labels = lifecycle.assign_bands(values, edges)
        parts.append(by_codes(f"clv_band_{years}y", position, labels))
    if "tag" not in wanted:
        tag_names, tag_flags = (), pd.DataFrame(index=frame.index)
    if tag_flags is None:
        names = list(tag_names)
        # Customers share few tag combinations: test each distinct text once, then spread.
        combos, texts = pd.factorize(frame["tags"].fillna("").astype(str))
        fenced = pd.Series("," + texts.astype(str) + ",")
        flags = {n: fenced.str.contains(f",{n},", regex=False).to_numpy(dtype=bool)[combos] for n in names}
    else:
        names = list(tag_names) or list(tag_flags.columns)
        flags = {n: tag_flags[n].to_numpy(dtype=bool) for n in names}
    for name in names:
        mask = flags[name]
        if mask.any():
            part = _group(cells[mask], np.zeros(int(mask.sum()), dtype=np.int64), money[mask],
                          np.asarray([name], dtype=object))
            parts.append(part.assign(dimension="tag"))
    out = pd.concat(parts, ignore_index=True)
    out = out.join(cell_keys, on="cell").drop(columns="cell")
    return out[columns]


_STACKED_ROWS = 250_000  # at most this many customer rows per cube_rows call of attribute_rows
_SEP = "\x1f"


def attribute_rows(frame: pd.DataFrame, *, as_of_year: int, tag_names: Sequence[str] = (),
                   tag_flags: pd.DataFrame | None = None,
                   clv_edges: Mapping[int, np.ndarray] | None = None) -> pd.DataFrame:
    """The ``segment_cube_filters`` rows of one run: :func:`cube_rows` split further by each of
    :data:`ATTRIBUTE_FILTERS` in turn (``filter_key``), one attribute at a time.

    ``frame`` is :func:`cube_rows`' input plus one column per attribute (:func:`customer_attributes`).

    Why one attribute at a time, and not all seven in the cell key: the cells would multiply
    (branch × age band × tier × 5 tolerances × 7 grades × 6 held levels × 3 genders × 7 income
    bands × 13 occupations × 3 types) until nearly every customer is a cell of their own (18,990
    cells for 20,000 demo customers). Stored one at a time, the rows grow with the *sum* of the
    attributes' sizes, not their product: each attribute splits a cell into at most its number of
    values, and never more rows than the customers in it. Two attributes at once are not offered:
    an intersection like "women, CCC, 60+, branch X" is the kind of cell that names a person, and a
    page computing it from customer rows would hand customer rows to aggregate-only roles. The
    Segments page says so, and offers one risk or demographic filter at a time (several values of
    it may be kept: their rows add up).

    Only the dimensions the Segments page draws are split (:data:`ATTRIBUTE_DIMENSIONS`: the R×F
    grid, RFM segments, value tiers, clusters and tags), not the Lifecycle page's stages, branches
    and CLV bands: 249,594 rows for the 20,000-customer demo (``segment_cube``: 25,945), where all
    dimensions would take 445,947. The rows are bounded by cells × values × attribute values,
    whatever the number of customers.

    Returns
    -------
    pandas.DataFrame
        ``filter_key``, ``filter_value``, ``dimension``, ``value``, :data:`CUBE_KEYS` and
        :data:`SUMMARY_COLUMNS`. For each ``filter_key`` the rows add up, over its values, to
        :func:`cube_rows` of the same customers (one set of CLV band edges for the whole run).
    """
    columns = ["filter_key", "filter_value", "dimension", "value", *CUBE_KEYS, *SUMMARY_COLUMNS]
    missing = [c for c in ATTRIBUTE_FILTERS if c not in frame.columns]
    if missing:
        raise ValueError(f"Required column {missing[0]} missing")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if tag_flags is None:  # read the tags once, not once per attribute
        names = list(tag_names)
        combos, texts = pd.factorize(frame["tags"].fillna("").astype(str))
        fenced = pd.Series("," + texts.astype(str) + ",")
        tag_flags = pd.DataFrame({n: fenced.str.contains(f",{n},", regex=False).to_numpy(dtype=bool)[combos]
                                  for n in names})
    # A cube_rows call costs a fixed ~25 ms of pandas overhead on top of its per-row work: on a small
    # store, stacking the frame once per attribute and splitting by "attribute<US>value" in one call
    # is several times faster than seven calls; a large store goes one attribute at a time (memory).
    needed = [c for c in CUBE_INPUT_COLUMNS if c in frame.columns]
    per_call = max(1, _STACKED_ROWS // len(frame))
    parts = []
    for i in range(0, len(ATTRIBUTE_FILTERS), per_call):
        keys = ATTRIBUTE_FILTERS[i:i + per_call]
        stacked = pd.concat([frame[needed].assign(_split=key + _SEP + frame[key].astype(object)
                                                  .where(frame[key].notna(), UNKNOWN).astype(str))
                             for key in keys], ignore_index=True)
        flags = pd.concat([tag_flags.reset_index(drop=True)] * len(keys), ignore_index=True)
        rows = cube_rows(stacked, as_of_year=as_of_year, tag_names=tag_names, tag_flags=flags, by="_split",
                         dimensions=ATTRIBUTE_DIMENSIONS, clv_edges=clv_edges)
        split = rows["filter_value"].str.split(_SEP, n=1, expand=True)
        parts.append(rows.assign(filter_key=split[0], filter_value=split[1]))
    return pd.concat(parts, ignore_index=True)[columns]


def customer_attributes(engine: Engine, as_of_end: date, viewer: access.Viewer | None = None, *,
                        customers=None) -> pd.DataFrame:
    """Each customer's :data:`ATTRIBUTE_FILTERS` values (in ``viewer``'s scope when given, of the
    ``customers`` filter when given, as :func:`segmented_customers`), by
    ``customer_id``: the store's columns, missing -> ``unknown``, and ``risk_level_held``, the
    highest risk level (``R1`` .. ``R5``) of the products the customer holds open at ``as_of_end``
    (opened on or before it, not closed by then), ``none`` for a customer holding none.

    Aggregates only leave this module: the frame feeds :func:`attribute_rows` in the refresh.
    """
    from sqlalchemy import text

    table = _customers_table
    c, h, p = table.c, holdings.c, products.c
    held = (select(func.max(p.risk_level)).select_from(holdings.join(products, p.product_id == h.product_id))
            .where(h.customer_id == c.customer_id, h.opened_on <= as_of_end,
                   or_(h.closed_on.is_(None), h.closed_on > as_of_end))
            .scalar_subquery())
    stmt = select(c.customer_id, *(func.coalesce(c[k], UNKNOWN).label(k) for k in ATTRIBUTE_FILTERS
                                   if k != "risk_level_held"),
                  func.coalesce(held, NONE_HELD).label("risk_level_held"))
    if viewer is not None:
        stmt = stmt.where(viewer.scope_condition(table))
    if customers is not None:
        condition, params = customers.sql(f"{table.name}.customer_id", engine)
        stmt = stmt.where(text(condition).bindparams(**params))
    return read_frame(engine, stmt)


#: The catalog family naming each filter's values (``data/i18n.yaml``; credit grades are shown as their codes).
ATTRIBUTE_FAMILIES = {"risk_tolerance": "seg_tolerance", "risk_level_held": "seg_risk_level", "gender": "gender",
                      "income_band": "income_band", "occupation": "occupation", "customer_type": "customer_type"}


def attribute_label(key: str, value, lang: str) -> str:
    """Filter ``key``'s ``value`` in the catalog's words (``unknown``, ``none`` included)."""
    from analytics import i18n

    if value == UNKNOWN:
        return i18n.tr("seg_filter.unknown", lang)
    if key == "risk_level_held" and value == NONE_HELD:
        return i18n.tr("seg_filter.none_held", lang)
    family = ATTRIBUTE_FAMILIES.get(key)
    return i18n.label(family, value, lang) if family else str(value)


def attribute_values(key: str, present) -> list[str]:
    """``present`` values of filter ``key`` in display order (:data:`ATTRIBUTE_ORDER`, others
    sorted, ``unknown`` last)."""
    order = {v: i for i, v in enumerate(ATTRIBUTE_ORDER.get(key, ()))}
    return sorted({str(v) for v in present}, key=lambda v: (v == UNKNOWN, order.get(v, len(order)), v))


# ---------------------------------------------------------------------------------------------
# Reading the cube (the pages)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CubePart:
    """One dimension of a cube, as arrays: each row's value, filter-cell codes and sums.

    ``values`` are the dimension's values, sorted; ``value`` indexes them per row. ``branch`` and
    ``tier`` index the cube's ``branches`` and ``tiers``, ``age`` indexes :data:`AGE_BANDS`.
    ``sums`` holds :data:`SUMMARY_COLUMNS` per row. Summing a filter over these takes
    microseconds, where a pandas group-by over text takes milliseconds on every page run.
    """

    values: np.ndarray
    value: np.ndarray
    branch: np.ndarray
    age: np.ndarray
    tier: np.ndarray
    sums: np.ndarray

    def __len__(self) -> int:
        return len(self.value)


@dataclass(frozen=True)
class Cube:
    """A run's ``segment_cube`` rows by dimension, and each branch's city. Aggregates only."""

    run_id: int
    parts: Mapping[str, CubePart] = field(default_factory=dict, repr=False)
    branches: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    branch_cities: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: The risk or demographic filter ``by_value`` splits the cube by (one of :data:`ATTRIBUTE_FILTERS`).
    attribute: str = ""
    #: Per value of ``attribute``, the cube of its customers (``segment_cube_filters``).
    by_value: Mapping[str, Cube] = field(default_factory=dict, repr=False)

    def with_attribute(self, attribute: str, by_value: Mapping[str, Cube]) -> Cube:
        """This cube with its split by ``attribute`` (:func:`read_attribute_cubes`)."""
        return replace(self, attribute=attribute, by_value=dict(by_value))

    def attribute_values(self) -> list[str]:
        """The values of ``attribute`` some customer has, in display order."""
        return attribute_values(self.attribute, self.by_value)

    @property
    def empty(self) -> bool:
        part = self.parts.get("value_tier")
        return part is None or len(part) == 0

    def cities(self) -> list[str]:
        """The cities of the cube's branches, sorted."""
        return sorted({self.branch_cities[b] for b in self.branches if self.branch_cities.get(b)})

    def rows(self, dimension: str) -> pd.DataFrame:
        """One dimension's rows as a frame: ``value``, :data:`CUBE_KEYS`, :data:`SUMMARY_COLUMNS`."""
        part = _part(self, dimension)
        frame = pd.DataFrame({"value": part.values[part.value],
                              "branch_id": np.asarray(self.branches, dtype=object)[part.branch],
                              "age_band": np.asarray(AGE_BANDS, dtype=object)[part.age],
                              "value_tier": np.asarray(self.tiers, dtype=object)[part.tier]})
        for i, col in enumerate(SUMMARY_COLUMNS):
            frame[col] = part.sums[:, i].astype(np.int64) if col == "customers" else part.sums[:, i]
        return frame

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, branch_cities: Mapping[str, str], run_id: int = 0) -> Cube:
        """A cube from ``segment_cube`` rows (``dimension``, ``value``, :data:`CUBE_KEYS`,
        :data:`SUMMARY_COLUMNS`), e.g. those of :func:`cube_rows`."""
        text = {c: rows[c].astype(str).to_numpy(dtype=object) for c in ("dimension", "value", *CUBE_KEYS)}
        branch_list = tuple(sorted(set(text["branch_id"])))
        tier_list = tuple(sorted(set(text["value_tier"])))
        codes = {
            "branch": np.searchsorted(np.asarray(branch_list, dtype=object), text["branch_id"]),
            "tier": np.searchsorted(np.asarray(tier_list, dtype=object), text["value_tier"]),
            "age": pd.Series(text["age_band"]).map({b: i for i, b in enumerate(AGE_BANDS)}).to_numpy(),
        }
        if np.isnan(codes["age"].astype(float)).any():
            raise ValueError(f"segment_cube holds an age band outside {', '.join(AGE_BANDS)}")
        sums = rows[list(SUMMARY_COLUMNS)].to_numpy(dtype=float)
        parts = {}
        for dimension in sorted(set(text["dimension"])):
            at = np.flatnonzero(text["dimension"] == dimension)
            values, value = np.unique(text["value"][at], return_inverse=True)
            parts[str(dimension)] = CubePart(
                values=values.astype(object), value=value.astype(np.int32), branch=codes["branch"][at].astype(np.int32),
                age=codes["age"][at].astype(np.int32), tier=codes["tier"][at].astype(np.int32), sums=sums[at])
        return cls(run_id=int(run_id), parts=parts, branches=branch_list, tiers=tier_list,
                   branch_cities=dict(branch_cities))


# The run metric that lists the run's tags in rule-file order (put by the segments stage).
TAG_NAMES_METRIC = "segments.tag_names"


def tag_names_of(metrics: Mapping) -> list[str]:
    """The run's tags in rule-file order, from its run metrics (:data:`TAG_NAMES_METRIC`)."""
    return [name for name in str(metrics.get(TAG_NAMES_METRIC) or "").split(",") if name]


def segmented_customers(engine: Engine, run_id: int, viewer: access.Viewer | None = None, *,
                        customers=None) -> pd.DataFrame:
    """Every customer the run segmented (in ``viewer``'s scope when given; of the ``customers``
    filter when given, an :class:`analytics.partitions.IdRange` or ``Partition``), with the final
    margin CLV, branch and birth year: what the run's summaries and cube are built from.

    Returns
    -------
    pandas.DataFrame
        ``customer_segments``' columns the summaries and the cube need, ``clv_margin_<H>y`` from
        ``customer_clv_margin``, and ``branch_id`` and ``birth_year`` from ``customers`` (NULL for a
        customer no longer in the store), ordered by ``customer_id``.
    """
    from sqlalchemy import text

    clv = ", ".join(f"m.clv_margin_{y}y" for y in lifecycle.CLV_HORIZONS_YEARS)
    scope, params = ("1 = 1", {}) if viewer is None else viewer.scope_sql("c")
    within, within_params = ("1 = 1", {}) if customers is None else customers.sql("s.customer_id", engine)
    return read_frame(engine, text(
        "SELECT s.customer_id, s.rfm_r, s.rfm_f, s.rfm_segment, s.value_tier, s.cluster, s.cluster_name, "
        f"s.lifecycle_stage, s.tags, s.aum, s.annual_margin, {clv}, c.branch_id, "
        f"{BIRTH_YEAR_SQL.format(col='c.birth_date')} AS birth_year "
        "FROM customer_segments s "
        "JOIN customer_clv_margin m ON m.run_id = s.run_id AND m.customer_id = s.customer_id "
        "LEFT JOIN customers c ON c.customer_id = s.customer_id "
        f"WHERE s.run_id = :run_id AND {scope} AND {within} ORDER BY s.customer_id"),
        {**params, **within_params, "run_id": int(run_id)})


def segmented_clv_edges(engine: Engine, run_id: int) -> dict[int, np.ndarray]:
    """Each horizon's CLV band edges (:func:`analytics.lifecycle.band_edges`) over every customer
    of :func:`segmented_customers` for the run, from the largest value, read in the database: the
    one set of edges every block of customers is cut on when the run is summed a block at a time."""
    from sqlalchemy import text

    tops = ", ".join(f"MAX(m.clv_margin_{y}y)" for y in lifecycle.CLV_HORIZONS_YEARS)
    with engine.connect() as conn:
        row = conn.execute(text(
            f"SELECT {tops} FROM customer_segments s "
            "JOIN customer_clv_margin m ON m.run_id = s.run_id AND m.customer_id = s.customer_id "
            "WHERE s.run_id = :run_id"), {"run_id": int(run_id)}).one()
    return {years: lifecycle.band_edges([np.nan if top is None else float(top)])
            for years, top in zip(lifecycle.CLV_HORIZONS_YEARS, row, strict=True)}


def read_cube(engine: Engine, run_id: int, viewer: access.Viewer | None = None) -> Cube:
    """The ``segment_cube`` rows of a run (a few thousand rows per dimension) and the branches' cities.

    For a scoped ``viewer`` the cube holds its customers only: a branch scope keeps the stored
    cells of its branches (the cube is split by branch); a portfolio scope builds the cells from
    its customers' rows (:func:`cube_rows`; a portfolio is small), with CLV bands cut on its own
    values. Every chart drawn from the cube then follows the scope.
    """
    from analytics.runs import get_run_metrics

    if viewer is not None and viewer.scope is not None and viewer.scope.portfolios:
        people = segmented_customers(engine, run_id, viewer)
        metrics = get_run_metrics(engine, run_id)
        rows = cube_rows(people, as_of_year=int(str(metrics.get("as_of_month") or date.today())[:4]),
                         tag_names=tag_names_of(metrics))
    else:
        stmt = (select(segment_cube.c.dimension, segment_cube.c.value, *(segment_cube.c[k] for k in CUBE_KEYS),
                       *(segment_cube.c[c] for c in SUMMARY_COLUMNS))
                .where(segment_cube.c.run_id == int(run_id)))
        if viewer is not None and viewer.scope is not None:  # branches only, possibly none
            stmt = stmt.where(segment_cube.c.branch_id.in_(sorted(viewer.scope.branches)))
        rows = read_frame(engine, stmt)
    cities = read_frame(engine, select(branches.c.branch_id, branches.c.city))
    return Cube.from_rows(rows, dict(zip(cities["branch_id"].astype(str), cities["city"].astype(str), strict=True)),
                          run_id)


def read_attribute_cubes(engine: Engine, run_id: int, attribute: str,
                         viewer: access.Viewer | None = None) -> dict[str, Cube]:
    """Per value of ``attribute`` (one of :data:`ATTRIBUTE_FILTERS`), the cube of the run's
    customers with that value: the run's ``segment_cube_filters`` rows of that filter (aggregates
    only), over ``viewer``'s scope like :func:`read_cube` (a portfolio's built from its customers).
    Empty for a run refreshed before the table existed."""
    from analytics.runs import get_run_metrics
    from analytics.schema import segment_cube_filters as f

    if attribute not in ATTRIBUTE_FILTERS:
        raise ValueError(f"Unknown filter {attribute!r}; expected one of {', '.join(ATTRIBUTE_FILTERS)}")
    if viewer is not None and viewer.scope is not None and viewer.scope.portfolios:
        metrics = get_run_metrics(engine, run_id)
        month = date.fromisoformat(str(metrics.get("as_of_month") or date.today())[:10])
        people = segmented_customers(engine, run_id, viewer)
        people = people.merge(customer_attributes(engine, month_end(month), viewer), on="customer_id", how="left")
        rows = cube_rows(people, as_of_year=month.year, tag_names=tag_names_of(metrics), by=attribute)
    else:
        stmt = (select(f.c.filter_value, f.c.dimension, f.c.value, *(f.c[k] for k in CUBE_KEYS),
                       *(f.c[c] for c in SUMMARY_COLUMNS))
                .where(f.c.run_id == int(run_id), f.c.filter_key == attribute))
        if viewer is not None and viewer.scope is not None:
            stmt = stmt.where(f.c.branch_id.in_(sorted(viewer.scope.branches)))
        rows = read_frame(engine, stmt)
    cities = read_frame(engine, select(branches.c.branch_id, branches.c.city))
    cities = dict(zip(cities["branch_id"].astype(str), cities["city"].astype(str), strict=True))
    return {str(value): Cube.from_rows(part.drop(columns="filter_value"), cities, run_id)
            for value, part in rows.groupby("filter_value", sort=True)}


def _allowed(labels, wanted) -> np.ndarray:
    return np.isin(np.asarray(labels, dtype=object), np.asarray(list(wanted), dtype=object))


def _cell_mask(part: CubePart, cube: Cube, filters: Filters) -> np.ndarray:
    mask = np.ones(len(part), dtype=bool)
    if filters.branches:
        mask &= _allowed(cube.branches, filters.branches)[part.branch]
    if filters.cities:
        in_cities = [b for b in cube.branches if cube.branch_cities.get(b) in set(filters.cities)]
        mask &= _allowed(cube.branches, in_cities)[part.branch]
    if filters.age_bands:
        mask &= _allowed(AGE_BANDS, filters.age_bands)[part.age]
    if filters.tiers:
        mask &= _allowed(cube.tiers, filters.tiers)[part.tier]
    return mask


_NO_PART = CubePart(values=np.zeros(0, dtype=object), value=np.zeros(0, dtype=np.int32),
                    branch=np.zeros(0, dtype=np.int32), age=np.zeros(0, dtype=np.int32),
                    tier=np.zeros(0, dtype=np.int32), sums=np.zeros((0, len(SUMMARY_COLUMNS))))


def _part(cube: Cube, dimension: str) -> CubePart:
    if dimension not in CUBE_DIMENSIONS:
        raise ValueError(f"Unknown dimension {dimension!r}; expected one of {', '.join(CUBE_DIMENSIONS)}")
    return cube.parts.get(dimension, _NO_PART)


def _sums(cube: Cube, dimension: str, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    """The dimension's values and their :data:`SUMMARY_COLUMNS` sums over the kept cells (and,
    with a risk or demographic filter, the kept values' cubes)."""
    if filters.by_attribute:
        if dimension not in ATTRIBUTE_DIMENSIONS:
            raise ValueError(f"{dimension!r} is not split by risk or demographic filters; "
                             f"those are {', '.join(ATTRIBUTE_DIMENSIONS)}")
        if cube.attribute != filters.attribute:
            raise ValueError(f"This cube is not split by {filters.attribute!r}; read it with read_attribute_cubes")
        base = filters.base
        found = [_sums(cube.by_value[v], dimension, base) for v in filters.attribute_values if v in cube.by_value]
        if not found:
            return _part(cube, dimension).values[:0], np.zeros((0, len(SUMMARY_COLUMNS)))
        values = np.unique(np.concatenate([v for v, _ in found]).astype(str)).astype(object)
        totals = np.zeros((len(values), len(SUMMARY_COLUMNS)))
        for v, t in found:
            totals[np.searchsorted(values, v.astype(str))] += t
        return values, totals
    part = _part(cube, dimension)
    mask = _cell_mask(part, cube, filters)
    codes, sums = part.value[mask], part.sums[mask]
    totals = np.zeros((len(part.values), len(SUMMARY_COLUMNS)))
    for i in range(len(SUMMARY_COLUMNS)):
        totals[:, i] = np.bincount(codes, weights=sums[:, i], minlength=len(part.values))
    return part.values, totals


def _hide_small(frame: pd.DataFrame, min_cell: int, sums=(), also=None) -> pd.DataFrame:
    """``frame`` as an aggregate-only role may see it: counts under ``min_cell`` hidden (0: as is),
    and the rows ``also`` marks (:func:`_small_rest`) hidden like them, secondary suppression included."""
    if not min_cell or frame.empty:
        return frame
    if also is not None and np.asarray(also).any():
        frame = frame.copy()
        # Marked as a small cell so that suppress_small_cells hides it (and, when it is the lone
        # hidden row, a second one); the stand-in count is hidden with it, never shown.
        frame.loc[np.asarray(also, dtype=bool), "customers"] = 1
    return access.suppress_small_cells(frame, sums=[c for c in sums if c in frame.columns], k=min_cell)


def _small_rest(base: pd.DataFrame, frame: pd.DataFrame, key: str, min_cell: int) -> np.ndarray:
    """Which rows of ``frame`` (a figure under a risk or demographic filter) leave fewer than
    ``min_cell`` customers, but some, outside the filter: ``base`` is the same figure without it.

    Without this, the figure without the filter minus the figure with it would show the few
    customers the filter leaves out (a difference of two shown figures), a cell the small-cell
    rule hides when asked for directly.
    """
    if not min_cell or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    before = base.set_index(key)["customers"]
    rest = frame[key].map(before).fillna(0).to_numpy(dtype=float) - frame["customers"].to_numpy(dtype=float)
    return (frame["customers"].to_numpy(dtype=float) > 0) & (rest > 0) & (rest < min_cell)


def summary(cube: Cube, dimension: str, filters: Filters = Filters(), *, min_cell: int = 0) -> pd.DataFrame:
    """Counts and totals by one dimension over the cells ``filters`` keep, shaped like the
    ``segment_summary`` rows: ``dimension``, ``value`` (sorted), :data:`SUMMARY_COLUMNS`,
    ``sort_order``. Values without a customer under the filters are left out. With ``min_cell``
    (aggregate-only roles), a value of fewer customers has its count and totals hidden (NaN,
    ``customers_suppressed``).

    ``dimension`` is one of :data:`CUBE_DIMENSIONS`; ``rfm_rf`` values are the R×F cell ``"<R><F>"``.
    """
    values, totals = _sums(cube, dimension, filters)
    present = totals[:, 0] > 0  # every stored row holds at least one customer
    n = int(present.sum())
    columns = {"dimension": np.full(n, dimension, dtype=object), "value": values[present].astype(object)}
    for i, col in enumerate(SUMMARY_COLUMNS):
        columns[col] = np.rint(totals[present, i]).astype(np.int64) if col == "customers" else totals[present, i]
    columns["sort_order"] = np.arange(n)
    frame = pd.DataFrame(columns)
    also = None
    if min_cell and filters.by_attribute:
        also = _small_rest(summary(cube, dimension, filters.base), frame, "value", min_cell)
    return _hide_small(frame, min_cell, SUMMARY_COLUMNS[1:], also)


def headline(cube: Cube, filters: Filters = Filters()) -> dict[str, float]:
    """Customers and money totals of the customers ``filters`` keep (every customer has one value
    tier, so the value-tier rows count each customer once).

    Under a risk or demographic filter an aggregate-only page also checks the customers the filter
    leaves out (``headline(cube, filters.base)`` minus this) against the small-cell rule, for the
    reason :func:`_small_rest` gives."""
    _, totals = _sums(cube, "value_tier", filters)
    out = {c: float(totals[:, i].sum()) for i, c in enumerate(SUMMARY_COLUMNS)}
    out["customers"] = int(round(out["customers"]))
    return out


def clv_bands(cube: Cube, years: int, filters: Filters = Filters(), *, min_cell: int = 0) -> pd.DataFrame:
    """Customers per CLV band for the customers ``filters`` keep: the same frame as
    :func:`analytics.lifecycle.value_bands` of their ``years``-year CLV (``sort_order``,
    ``value``, ``customers``; bands up to the highest one holding a customer, at least to
    ``10–20``; ``< 0`` only when someone is in it)."""
    if years not in lifecycle.CLV_HORIZONS_YEARS:
        raise ValueError(f"years must be one of {lifecycle.CLV_HORIZONS_YEARS}, got {years!r}")
    labels, least_top = _band_labels()
    values, totals = _sums(cube, f"clv_band_{years}y", filters)
    counts = np.zeros(len(labels), dtype=np.int64)
    position = {label: i for i, label in enumerate(labels)}
    for value, count in zip(values, np.rint(totals[:, 0]).astype(np.int64), strict=True):
        counts[position[value]] += count
    # value_bands goes up to the band of max(largest value, 10): at least up to "10–20".
    nonzero = np.flatnonzero(counts[1:])
    top = max(int(nonzero[-1]) + 1 if len(nonzero) else 0, least_top)
    frame = pd.DataFrame({"sort_order": np.arange(top + 1), "value": labels[:top + 1], "customers": counts[:top + 1]})
    return _hide_small(frame[(frame["sort_order"] > 0) | (frame["customers"] > 0)].reset_index(drop=True), min_cell)


def tag_counts(cube: Cube, tag_names: Sequence[str], filters: Filters = Filters(), *,
               min_cell: int = 0, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Customers carrying each tag (``tag``, ``customers``, in ``tag_names`` order; 0 for none).
    A customer may carry several tags, so tags are no partition: each small count is hidden on its own.
    With ``labels`` (name -> label in the reader's language), a ``tag_label`` column follows ``tag``
    (the name stays: it is what a tag expression is written with)."""
    values, totals = _sums(cube, "tag", filters)
    counts = dict(zip(values, np.rint(totals[:, 0]).astype(np.int64), strict=True))
    frame = pd.DataFrame({"tag": list(tag_names), "customers": [int(counts.get(n, 0)) for n in tag_names]})
    if labels is not None:
        frame.insert(1, "tag_label", [labels.get(n, n) for n in tag_names])
    if min_cell:
        small = (frame["customers"] > 0) & (frame["customers"] < min_cell)
        if filters.by_attribute:
            small |= _small_rest(tag_counts(cube, tag_names, filters.base), frame, "tag", min_cell)
        frame["customers_suppressed"] = small.to_numpy()
        frame["customers"] = frame["customers"].astype(float).where(~small)
    return frame


# ---------------------------------------------------------------------------------------------
# Customer lists in SQL (bound parameters, limits)
# ---------------------------------------------------------------------------------------------

def attribute_condition(attribute: str, values: Sequence[str], *, as_of_end: date | None = None):
    """SQL: the customer's ``attribute`` is one of ``values`` (bound), by the rule of
    :func:`customer_attributes` (``risk_level_held`` needs the run's ``as_of_end``)."""
    c, h, p = customers.c, holdings.c, products.c
    if attribute == "risk_level_held":
        if as_of_end is None:
            raise ValueError("the risk level held needs the run's as_of_end")
        held = (select(func.max(p.risk_level)).select_from(holdings.join(products, p.product_id == h.product_id))
                .where(h.customer_id == c.customer_id, h.opened_on <= as_of_end,
                       or_(h.closed_on.is_(None), h.closed_on > as_of_end))
                .scalar_subquery())
        return func.coalesce(held, NONE_HELD).in_(list(values))
    if attribute not in ATTRIBUTE_FILTERS:
        raise ValueError(f"Unknown filter {attribute!r}; expected one of {', '.join(ATTRIBUTE_FILTERS)}")
    return func.coalesce(c[attribute], UNKNOWN).in_(list(values))


def filter_conditions(filters: Filters, *, as_of_year: int, as_of_end: date | None = None) -> list:
    """The filters as SQL conditions on ``customers`` and ``customer_segments`` (values bound,
    never spliced): the customer-level twin of :func:`_cell_mask`. A filter by the risk level held
    needs ``as_of_end`` (:func:`run_month_end`)."""
    conditions = []
    if filters.by_attribute:
        conditions.append(attribute_condition(filters.attribute, filters.attribute_values, as_of_end=as_of_end))
    if filters.branches:
        conditions.append(customers.c.branch_id.in_(list(filters.branches)))
    if filters.cities:
        conditions.append(customers.c.branch_id.in_(
            select(branches.c.branch_id).where(branches.c.city.in_(list(filters.cities))).scalar_subquery()))
    if filters.age_bands:
        conditions.append(or_(*(age_band_clause(customers.c.birth_date, b, as_of_year) for b in filters.age_bands)))
    if filters.tiers:
        conditions.append(customer_segments.c.value_tier.in_(list(filters.tiers)))
    return conditions


def run_month_end(engine: Engine, run_id: int) -> date | None:
    """The last day of the run's month (``as_of_month``), when it has one."""
    from analytics.runs import get_run_metrics

    month = get_run_metrics(engine, run_id).get("as_of_month")
    return month_end(date.fromisoformat(str(month)[:10])) if month else None


def _where(run_id: int, filters: Filters, as_of_year: int, expression: str | None, tag_names,
           engine: Engine | None = None) -> list:
    as_of_end = None
    if filters.attribute == "risk_level_held" and filters.by_attribute and engine is not None:
        as_of_end = run_month_end(engine, run_id)
    conditions = [customer_segments.c.run_id == int(run_id),
                  *filter_conditions(filters, as_of_year=as_of_year, as_of_end=as_of_end)]
    if expression is not None:
        conditions.append(tags.selection_clause(expression, tag_names, customer_segments.c.tags))
    return conditions


def _joined():
    return customer_segments.join(customers, customers.c.customer_id == customer_segments.c.customer_id)


def _joined_with_clv():
    """:func:`_joined` with each customer's margin CLV (``customer_clv_margin``, the figure the pages
    show; ``customer_segments`` keeps the lifecycle-stage CLV the churn stage used)."""
    m = customer_clv_margin.c
    return _joined().join(customer_clv_margin, (m.run_id == customer_segments.c.run_id)
                          & (m.customer_id == customer_segments.c.customer_id))


def tag_selection_counts(engine: Engine, run_id: int, filters: Filters, expression: str,
                         tag_names: Sequence[str], *, as_of_year: int, viewer: access.Viewer) -> dict[str, int]:
    """How many of the filtered customers in ``viewer``'s scope a tag expression selects, how
    many of those have a live marketing consent now, and how many the list holds:
    ``{"selected", "consenting", "no_consent", "listed", "consent"}``. ``consent`` is the consent
    purpose the list is filtered by (:func:`analytics.access.segment_list_purpose`: ``"marketing"``,
    or None for a risk manager, whose list holds every selected customer); ``listed`` is
    ``consenting`` or ``selected`` accordingly. For an aggregate-only viewer a selection of fewer
    than ``MIN_CELL_CUSTOMERS`` is not counted: the counts are -1 (the page shows "<K"); so is one
    that a risk or demographic filter (``filters.attribute``) narrows by fewer than that many, which
    the count without the filter would give away (:func:`_small_rest`).

    Raises
    ------
    analytics.tags.TagRuleError
        For an invalid expression (checked before any SQL runs).
    """
    where = _where(run_id, filters, as_of_year, expression, tag_names, engine)
    consenting_now = live_consent_condition(customers.c.customer_id, "marketing")
    stmt = (select(func.count().label("selected"),
                   func.coalesce(func.sum(case((consenting_now, 1), else_=0)), 0).label("consenting"))
            .select_from(_joined()).where(*where, viewer.scope_condition(customers)))
    with engine.connect() as conn:
        selected, consenting = conn.execute(stmt).one()
    selected, consenting = int(selected or 0), int(consenting or 0)
    purpose = _list_consent(viewer)
    left_out = 0
    if viewer.aggregate_only and filters.by_attribute:  # the few a risk or demographic filter leaves out
        without = select(func.count()).select_from(_joined()).where(
            *_where(run_id, filters.base, as_of_year, expression, tag_names, engine), viewer.scope_condition(customers))
        with engine.connect() as conn:
            left_out = int(conn.execute(without).scalar() or 0) - selected
    if viewer.aggregate_only and (0 < selected < access.min_cell_customers()
                                  or 0 < left_out < access.min_cell_customers()):
        counts = {"selected": -1, "consenting": -1, "no_consent": -1}
    elif viewer.aggregate_only and 0 < min(consenting, selected - consenting) < access.min_cell_customers():
        counts = {"selected": selected, "consenting": -1, "no_consent": -1}
    else:
        counts = {"selected": selected, "consenting": consenting, "no_consent": selected - consenting}
    listed = counts["consenting"] if purpose else counts["selected"]
    return {**counts, "listed": listed, "consent": purpose}


def _list_consent(viewer: access.Viewer) -> str | None:
    """The consent the tag builder's list needs for ``viewer`` (None: oversight, everyone in scope)."""
    return access.PURPOSES[access.segment_list_purpose(viewer.roles)]


def _check_page(limit: int, offset: int) -> tuple[int, int]:
    limit, offset = int(limit), int(offset)
    if not 1 <= limit <= MAX_LIST_ROWS:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_ROWS}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    return limit, offset


def campaign_page(engine: Engine, run_id: int, filters: Filters, expression: str, tag_names: Sequence[str], *,
                  viewer: access.Viewer, as_of_year: int, limit: int = 200, offset: int = 0) -> pd.DataFrame:
    """One page of the campaign list: the selected, filtered customers in ``viewer``'s scope with a
    live marketing consent now, highest 3-year CLV first (then by id), ``limit`` rows from
    ``offset``, released for the viewer. (:func:`tag_selection_counts` counts those left out.)
    For a risk manager the list is a review population, not a contact list: no consent filter
    (:func:`analytics.access.segment_list_purpose`).

    Only ids and analytic columns (:data:`CAMPAIGN_COLUMNS`): contact details come from the bank's
    campaign system, which holds consent and channel preferences, not from this dashboard.
    """
    access.require_rows(viewer)
    limit, offset = _check_page(limit, offset)
    where = _where(run_id, filters, as_of_year, expression, tag_names, engine)
    s, c, m = customer_segments.c, customers.c, customer_clv_margin.c
    stmt = (select(s.customer_id, c.branch_id, c.relationship_manager, s.rfm_segment, s.value_tier,
                   s.lifecycle_stage, m.clv_margin_3y)
            .select_from(_joined_with_clv())
            .where(*where, viewer.scope_condition(customers))
            .order_by(m.clv_margin_3y.desc(), s.customer_id).limit(limit).offset(offset))
    purpose = _list_consent(viewer)
    if purpose is not None:
        stmt = stmt.where(live_consent_condition(c.customer_id, purpose))
    return access.release(read_frame(engine, stmt)[list(CAMPAIGN_COLUMNS)], viewer)


def top_customers(engine: Engine, run_id: int, filters: Filters, *, viewer: access.Viewer, as_of_year: int,
                  n: int = 50, by: str = "clv_margin_3y") -> tuple[pd.DataFrame, dict[str, int]]:
    """The ``n`` filtered customers in ``viewer``'s scope with a live marketing consent and the
    highest ``by`` (then by id), released for the viewer (name masked, AUM banded for marketing);
    a top-CLV list is a contact list, so ``{"consent": n}`` counts the filtered customers in scope
    without consent, who are left out.

    Raises
    ------
    analytics.access.AccessDenied
        For roles that see aggregates only.
    ValueError
        For ``by`` outside :data:`RANK_COLUMNS` or ``n`` out of range.
    """
    access.require_rows(viewer)
    if by not in RANK_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(RANK_COLUMNS)}, got {by!r}")
    n, _ = _check_page(n, 0)
    s, c, m = customer_segments.c, customers.c, customer_clv_margin.c
    where = [*_where(run_id, filters, as_of_year, None, (), engine), viewer.scope_condition(customers)]
    consenting = live_consent_condition(c.customer_id, "marketing")
    stmt = (select(s.customer_id, c.name, c.branch_id, s.value_tier, s.rfm_segment, s.lifecycle_stage, s.aum,
                   m.clv_margin_1y, m.clv_margin_3y, m.clv_margin_5y)
            .select_from(_joined_with_clv()).where(*where, consenting)
            .order_by((s if by == "aum" else m)[by].desc(), s.customer_id).limit(n))
    rows = read_frame(engine, stmt)[list(TOP_CUSTOMER_COLUMNS)]
    with engine.connect() as conn:
        left_out = conn.execute(select(func.count()).select_from(_joined()).where(*where, ~consenting)).scalar()
    return access.release(rows, viewer), {"consent": int(left_out or 0)}


def filter_choices(engine: Engine, run_id: int, viewer: access.Viewer | None = None) -> dict[str, list[str]]:
    """Choices for customer-list filters, from small queries: the run's branches and RFM segments
    (its ``segment_summary`` rows), every relationship manager (``DISTINCT`` over an index), and
    the value tiers; a scoped ``viewer`` is offered only its own branches and portfolios."""
    def values(dimension: str) -> list[str]:
        stmt = (select(segment_summary.c.value).distinct()
                .where(segment_summary.c.run_id == int(run_id), segment_summary.c.dimension == dimension))
        with engine.connect() as conn:
            return sorted(str(v) for v in conn.execute(stmt).scalars() if v is not None and v != "(missing)")

    with engine.connect() as conn:
        managers = conn.execute(select(customers.c.relationship_manager).distinct()
                                .where(customers.c.relationship_manager.is_not(None))
                                .order_by(customers.c.relationship_manager)).scalars().all()
    choices = {"branch_id": values("branch_id"), "rfm_segment": values("rfm_segment"),
               "relationship_manager": [str(m) for m in managers], "value_tier": list(VALUE_TIERS)}
    if viewer is not None and viewer.scope is not None:
        with engine.connect() as conn:
            mine = conn.execute(select(customers.c.branch_id, customers.c.relationship_manager).distinct()
                                .where(viewer.scope_condition(customers))).all()
        choices["branch_id"] = [b for b in choices["branch_id"] if b in {r[0] for r in mine}]
        choices["relationship_manager"] = [m for m in choices["relationship_manager"] if m in {r[1] for r in mine}]
    return choices


__all__ = [
    "ATTRIBUTE_DIMENSIONS", "ATTRIBUTE_FAMILIES", "ATTRIBUTE_FILTERS", "ATTRIBUTE_ORDER", "NONE_HELD", "UNKNOWN", "attribute_condition",
    "attribute_label", "attribute_rows",
    "attribute_values", "customer_attributes", "read_attribute_cubes", "run_month_end",
    "AGE_BANDS", "AGE_BAND_AGES", "CAMPAIGN_COLUMNS", "CUBE_DIMENSIONS", "CUBE_KEYS", "Cube", "CubePart", "Filters",
    "RANK_COLUMNS", "SUMMARY_COLUMNS", "age_band_clause", "age_bands", "campaign_page", "clv_bands", "cube_rows",
    "filter_choices", "filter_conditions", "headline", "read_cube", "summary", "tag_counts",
    "tag_selection_counts", "top_customers", "add_up_cells", "combine_cluster_cube", "cluster_cube_rows",
]
