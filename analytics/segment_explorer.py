"""Cross-filtering over a run's segmentation results: filter customers, re-aggregate every chart.

The Segments and Lifecycle pages filter by branch, city, age band and value tier, and every chart
on the page follows. :func:`explorer_frame` reads one row per customer (ids and analytic results,
no personal field: the age band is derived in SQL, the birth date never leaves the store);
:func:`apply_filters` narrows it; :func:`summary` aggregates it into the same shape as the stored
``segment_summary`` rows, so the chart builders of :mod:`analytics.charts_segments` draw both.

Filter values are matched against the frame in pandas, never spliced into SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine

from analytics.store import read_frame

AGE_BANDS = ("<30", "30-44", "45-59", "60+", "unknown")

SUMMARY_COLUMNS = ("customers", "aum_total", "annual_margin_total", "clv_margin_1y_total",
                   "clv_margin_3y_total", "clv_margin_5y_total")


@dataclass(frozen=True)
class Filters:
    """What the user picked; an empty tuple means "all"."""

    branches: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    age_bands: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    extra: Mapping[str, tuple] = field(default_factory=dict)

    def as_params(self) -> dict:
        """The filters as plain data, for the audit log."""
        return {"branches": list(self.branches), "cities": list(self.cities),
                "age_bands": list(self.age_bands), "tiers": list(self.tiers)}


def explorer_frame(engine: Engine, run_id: int, as_of_year: int) -> pd.DataFrame:
    """One row per customer of a run: filter dimensions and results, no personal fields.

    Parameters
    ----------
    as_of_year : int
        The year the age bands are computed for (the run's activity year).
    """
    sql = """
        SELECT s.customer_id, c.branch_id, c.city, c.marketing_consent,
               c.relationship_manager,
               CAST(SUBSTR(CAST(c.birth_date AS TEXT), 1, 4) AS INTEGER) AS birth_year,
               s.rfm_r, s.rfm_f, s.rfm_segment, s.value_tier, s.cluster, s.cluster_name,
               s.lifecycle_stage, s.aum, s.annual_margin, s.clv_margin_1y, s.clv_margin_3y,
               s.clv_margin_5y, s.tags
        FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id
        WHERE s.run_id = :run_id
    """
    frame = read_frame(engine, sql, {"run_id": int(run_id)})
    age = as_of_year - frame.pop("birth_year").astype("Float64")
    bands = pd.cut(age, bins=[-1, 29, 44, 59, 200], labels=list(AGE_BANDS[:4]))
    frame["age_band"] = bands.astype(object).where(bands.notna(), "unknown")
    frame["marketing_consent"] = frame["marketing_consent"].astype(bool)
    return frame


def apply_filters(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows matching every non-empty filter."""
    mask = pd.Series(True, index=frame.index)
    for col, values in (("branch_id", filters.branches), ("city", filters.cities),
                        ("age_band", filters.age_bands), ("value_tier", filters.tiers),
                        *filters.extra.items()):
        if values:
            mask &= frame[col].isin(list(values))
    return frame[mask]


def summary(frame: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """Counts and totals by one dimension, shaped like the ``segment_summary`` rows.

    ``dimension`` is a column of :func:`explorer_frame` (``rfm_segment``, ``value_tier``,
    ``cluster_name``, ``lifecycle_stage``, ``branch_id``, ...) or ``rfm_rf`` (the R×F cell, value
    ``"<R><F>"``).
    """
    if dimension == "rfm_rf":
        keys = frame["rfm_r"].astype(int).astype(str) + frame["rfm_f"].astype(int).astype(str)
    else:
        keys = frame[dimension].astype(str)
    grouped = frame.assign(_key=keys.to_numpy()).groupby("_key", sort=True)
    out = pd.DataFrame({
        "customers": grouped.size(),
        "aum_total": grouped["aum"].sum(),
        "annual_margin_total": grouped["annual_margin"].sum(),
        "clv_margin_1y_total": grouped["clv_margin_1y"].sum(),
        "clv_margin_3y_total": grouped["clv_margin_3y"].sum(),
        "clv_margin_5y_total": grouped["clv_margin_5y"].sum(),
    }).reset_index(names="value")
    out.insert(0, "dimension", dimension)
    out["sort_order"] = range(len(out))
    return out


def tag_flags(frame: pd.DataFrame, tag_names: Sequence[str]) -> pd.DataFrame:
    """Boolean tag columns from the comma-separated ``tags`` column, indexed by customer_id."""
    fenced = "," + frame["tags"].fillna("").astype(str) + ","
    flags = {name: fenced.str.contains(f",{name},", regex=False).to_numpy(dtype=bool) for name in tag_names}
    return pd.DataFrame(flags, index=pd.Index(frame["customer_id"], name="customer_id"))


CAMPAIGN_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "rfm_segment", "value_tier",
                    "lifecycle_stage", "clv_margin_3y")


def campaign_list(frame: pd.DataFrame, selected_ids: pd.Index) -> tuple[pd.DataFrame, int]:
    """The selected customers who gave marketing consent, and how many were excluded for lack of it.

    Only ids and analytic columns: contact details come from the bank's campaign system, which
    holds consent and channel preferences, not from an export of this dashboard.
    """
    chosen = frame[frame["customer_id"].isin(selected_ids)]
    consenting = chosen[chosen["marketing_consent"]]
    return consenting[list(CAMPAIGN_COLUMNS)].sort_values("clv_margin_3y", ascending=False), \
        int(len(chosen) - len(consenting))


def top_customers(engine: Engine, frame: pd.DataFrame, roles, *, n: int = 50,
                  by: str = "clv_margin_3y") -> pd.DataFrame:
    """The ``n`` customers of ``frame`` with the highest ``by``, with their name masked for ``roles``.

    Raises :class:`analytics.access.AccessDenied` for roles that see aggregates only.
    """
    from sqlalchemy import select

    from analytics import access
    from analytics.schema import customers

    if not access.can_see_customer_rows(roles):
        raise access.AccessDenied("Your role sees aggregates only, not individual customers.")
    top = frame.nlargest(n, by)[["customer_id", "branch_id", "value_tier", "rfm_segment", "lifecycle_stage",
                                 "aum", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y"]]
    names = read_frame(engine, select(customers.c.customer_id, customers.c.name)
                       .where(customers.c.customer_id.in_(top["customer_id"].tolist())))
    out = top.merge(names, on="customer_id", how="left")
    out = out[["customer_id", "name", *[c for c in out.columns if c not in ("customer_id", "name")]]]
    return access.mask_frame(out, roles)
