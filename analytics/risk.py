"""Risk tiers: tolerance and credit distributions, suitability, expired assessments, abnormal drops.

Population
----------
Every customer who had opened an account by the end of the run's month and is not ``closed``
(a closed customer holds nothing and has no risk to monitor). Reference day: the last day of the
run's month (``as_of``).

Rules
-----
* **Suitability mismatch**: a holding open at ``as_of`` whose product risk level is above the
  holder's risk tolerance, by number (``R4`` held by a ``C3`` customer: 4 > 3). A customer without
  a recorded tolerance has no mismatch (there is nothing to compare); they are flagged as an
  assessment missing instead. The mismatch rate the demo documents is over customers holding an
  open R4/R5 product: :func:`suitability_summary` reports the same ratio.
* **Expired assessment**: the tolerance or its assessment date is missing, or the assessment is
  more than ``RISK_ASSESSMENT_VALID_DAYS`` days old at ``as_of`` (exactly that many days is still
  valid). ``assessment_expired`` includes the missing ones; ``assessment_missing`` marks those.
* **Abnormal balance drop** (:func:`balance_drops`): the month-on-month AUM change
  ``(now - before) / before`` of a customer whose AUM the month before was at least
  ``BALANCE_DROP_MIN_AUM`` is compared with the customers of the same value tier (the tier of the
  month before: a customer falling from affluent to mass is judged among affluent peers). The tier's
  threshold is ``median - BALANCE_DROP_MAD_Z * 1.4826 * MAD`` of those changes (the median absolute
  deviation scaled to a standard deviation: robust to the very drops it looks for). A drop is
  abnormal when the change is at or below the threshold **and** is a fall of at least
  ``BALANCE_DROP_MIN_PCT`` (a tier of very steady balances would otherwise flag a 5 % dip). A tier
  with fewer than :data:`MIN_TIER_CUSTOMERS` checked customers uses the threshold of all of them.
  Each flagged customer gets its reason in words.
* **Concentration**: the share of asset balances (open asset holdings) in R4/R5 products, by branch.

Distributions of tolerance and credit grade by branch, RFM segment and value tier are cross-tabs
over the stored flags (:func:`risk_crosstab`); the RFM segment comes from the same run's
``customer_segments`` when the segments stage wrote it.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Date, Engine, bindparam, text

from analytics import settings
from analytics.access import Viewer, release, require_rows, suppress_small_cells
from analytics.errors import ConfigError, StoreNotInitialisedError
from analytics.features import add_months, month_end, to_datetime
from analytics.i18n import coded
from analytics.partitions import and_customers, id_ranges
from analytics.runs import Laps, resolve_run
from analytics.schema import CREDIT_GRADES, RISK_TOLERANCES, risk_branch_summary, risk_flags, risk_mismatches
from analytics.segmentation import RFM_SEGMENTS, VALUE_TIERS, value_tier_thresholds, value_tiers
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

MISSING = "(missing)"
# Fewer checked customers than this in a value tier: its median and MAD would be noise.
MIN_TIER_CUSTOMERS = 30
# MAD x 1.4826 estimates the standard deviation of normally distributed changes.
MAD_TO_SD = 1.4826

# The dimensions risk_crosstab groups by: name -> SQL expression over risk_flags f (and
# customer_segments s). Names are checked against this allow-list; no caller text reaches SQL.
CROSSTAB_DIMENSIONS = {
    "branch_id": "f.branch_id",
    "value_tier": "f.value_tier",
    "risk_tolerance": "f.risk_tolerance",
    "credit_grade": "f.credit_grade",
    "rfm_segment": "s.rfm_segment",
}
# Display order of each dimension's values (others follow, sorted).
DIMENSION_ORDER = {
    "risk_tolerance": RISK_TOLERANCES,
    "credit_grade": CREDIT_GRADES,
    "value_tier": VALUE_TIERS,
    "rfm_segment": RFM_SEGMENTS,
}


class RiskError(ValueError):
    """Invalid input to the risk analytics (an unknown dimension, a bad setting)."""


def risk_number(codes, prefix: str) -> np.ndarray:
    """``"C3"`` -> 3, ``"R4"`` -> 4 (with ``prefix`` "C" or "R"); 0 for missing or malformed codes."""
    values = pd.Series(codes, dtype=object)
    text_values = values.where(values.notna(), "").astype(str).str.strip().str.upper()
    ok = text_values.str.fullmatch(prefix + r"[1-5]").to_numpy(dtype=bool)
    return np.where(ok, text_values.str.slice(1).where(ok, "0").astype(int).to_numpy(), 0)


def is_mismatch(risk_level, risk_tolerance) -> np.ndarray:
    """True where a product's risk level is above a known tolerance (R number > C number)."""
    tol = risk_number(risk_tolerance, "C")
    return (tol > 0) & (risk_number(risk_level, "R") > tol)


def assessment_status(risk_tolerance, assessed_at, as_of: date, valid_days: int) -> tuple[np.ndarray, np.ndarray]:
    """``(expired, missing)`` booleans: missing = no tolerance or no date; expired includes missing.

    An assessment exactly ``valid_days`` days old at ``as_of`` is still valid.
    """
    assessed = to_datetime(pd.Series(assessed_at, dtype=object) if not isinstance(assessed_at, pd.Series)
                           else assessed_at)
    age = (pd.Timestamp(as_of) - assessed).dt.days.to_numpy(dtype=float)
    missing = (risk_number(risk_tolerance, "C") == 0) | np.isnan(age)
    expired = missing | (np.nan_to_num(age, nan=0.0) > valid_days)
    return expired, missing


# ---------------------------------------------------------------------------------------------
# Abnormal balance drops
# ---------------------------------------------------------------------------------------------


def drop_settings() -> dict:
    """The balance-drop settings, checked."""
    z = float(settings.get("BALANCE_DROP_MAD_Z"))
    min_pct = float(settings.get("BALANCE_DROP_MIN_PCT"))
    min_aum = float(settings.get("BALANCE_DROP_MIN_AUM"))
    if z <= 0:
        raise ConfigError(f"Setting BALANCE_DROP_MAD_Z={z!r} must be positive")
    if not 0 <= min_pct <= 1:
        raise ConfigError(f"Setting BALANCE_DROP_MIN_PCT={min_pct!r} must be a fraction in [0, 1]")
    if min_aum < 0:
        raise ConfigError(f"Setting BALANCE_DROP_MIN_AUM={min_aum!r} must not be negative")
    return {"z": z, "min_pct": min_pct, "min_aum": min_aum}


def balance_drops(aum_before: pd.Series, aum_now: pd.Series, *, z: float = 3.5, min_pct: float = 0.3,
                  min_aum: float = 10_000.0, thresholds=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Abnormal month-on-month AUM drops against a robust threshold per value tier.

    Parameters
    ----------
    aum_before, aum_now : pandas.Series
        AUM (CNY) of the previous and the current month, same index; missing counts as 0.
    z : float
        Robust standard deviations below the tier median that make a change abnormal.
    min_pct : float
        The fall (as a fraction) an abnormal drop must also reach.
    min_aum : float
        Customers with less AUM the month before are not checked.
    thresholds : sequence of 3 floats, optional
        Value-tier thresholds; default the ``VALUE_TIER_THRESHOLDS`` setting.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Per customer (same index): ``checked``, ``change`` (fraction; NaN when not checked),
        ``value_tier`` (of the month before), ``threshold``, ``balance_drop`` and ``reason``
        (missing unless flagged). Per tier: ``customers`` checked, ``median``, ``mad``, ``threshold``
        and ``pooled`` (True when the tier had too few customers and took the overall threshold).
    """
    before = pd.to_numeric(aum_before, errors="coerce").reindex(aum_now.index).fillna(0.0).to_numpy(dtype=float)
    now = pd.to_numeric(aum_now, errors="coerce").fillna(0.0).to_numpy(dtype=float)
    tiers = drop_thresholds(before, now, z=z, min_aum=min_aum, thresholds=thresholds)
    return flag_drops(before, now, tiers, index=aum_now.index, min_pct=min_pct, min_aum=min_aum,
                      thresholds=thresholds), tiers


def _changes(before: np.ndarray, now: np.ndarray, min_aum: float, thresholds) -> tuple:
    """Who is checked, their change and the value tier of the month before (see :func:`balance_drops`),
    as its position in :data:`VALUE_TIERS` (a byte each, not a text object)."""
    checked = before >= max(min_aum, np.finfo(float).tiny)
    change = np.full(len(now), np.nan)
    with np.errstate(invalid="ignore"):  # an infinite balance (a malformed store) has no change: NaN, not a drop
        change[checked] = (now[checked] - before[checked]) / before[checked]
    tier = value_tiers(pd.Series(before), thresholds).cat.codes.to_numpy()
    return checked, change, tier


def drop_thresholds(before: np.ndarray, now: np.ndarray, *, z: float = 3.5, min_aum: float = 10_000.0,
                    thresholds=None) -> pd.DataFrame:
    """The per-tier half of :func:`balance_drops` (every customer's AUM of the two months, as floats,
    missing as 0): per value tier the customers checked, ``median``, ``mad``, ``threshold`` and
    ``pooled``. A stage that flags its customers a block at a time computes these once."""
    checked, change, tier = _changes(before, now, min_aum, thresholds)

    def robust(values: np.ndarray) -> tuple[float, float]:
        if len(values) == 0:
            return 0.0, 0.0
        median = float(np.median(values))
        return median, float(np.median(np.abs(values - median)))

    overall_median, overall_mad = robust(change[checked])
    rows = []
    for name in VALUE_TIERS:
        in_tier = checked & (tier == VALUE_TIERS.index(name))
        count = int(in_tier.sum())
        pooled = count < MIN_TIER_CUSTOMERS
        median, mad = (overall_median, overall_mad) if pooled else robust(change[in_tier])
        threshold = median - z * MAD_TO_SD * mad
        rows.append({"value_tier": name, "customers": count, "median": median, "mad": mad,
                     "threshold": threshold, "pooled": pooled})
    return pd.DataFrame(rows).set_index("value_tier")


def flag_drops(before: np.ndarray, now: np.ndarray, tiers: pd.DataFrame, *, index: pd.Index, min_pct: float = 0.3,
               min_aum: float = 10_000.0, thresholds=None) -> pd.DataFrame:
    """The per-customer half of :func:`balance_drops`: each customer (``index``) against their
    tier's threshold (:func:`drop_thresholds`)."""
    checked, change, tier = _changes(before, now, min_aum, thresholds)
    limit = np.full(len(now), np.nan)
    for name, row in tiers.iterrows():
        limit[checked & (tier == VALUE_TIERS.index(name))] = row["threshold"]
    flagged = checked & (change <= limit) & (change <= -min_pct)
    tier = np.asarray(VALUE_TIERS, dtype=object)[tier]
    reasons = np.full(len(now), None, dtype=object)
    for i in np.flatnonzero(flagged):
        t = tiers.loc[tier[i]]
        # stored as a code and parameters, said in the reader's language (risk_reason.* in the catalog)
        reasons[i] = coded("balance_drop_pooled" if t["pooled"] else "balance_drop", drop=f"{-change[i]:.0%}",
                           before=round(float(before[i])), now=round(float(now[i])), tier=str(tier[i]),
                           threshold=f"{t['threshold']:+.1%}", median=f"{t['median']:+.1%}", mad=f"{t['mad']:.1%}")
    return pd.DataFrame({"checked": checked, "change": change, "value_tier": tier, "threshold": limit,
                         "balance_drop": flagged, "reason": reasons}, index=index)


# ---------------------------------------------------------------------------------------------
# Reading the store
# ---------------------------------------------------------------------------------------------


def _customers(engine: Engine, as_of: date, customers=None) -> pd.DataFrame:
    only, params = and_customers(customers, "customer_id", engine)
    sql = text(f"""
        SELECT customer_id, branch_id, risk_tolerance, risk_assessed_at, credit_grade, status
        FROM customers WHERE open_date <= :as_of{only}
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": as_of, **params}).set_index("customer_id").sort_index()
    return frame[frame["status"].astype(object) != "closed"]


def _monthly_aum(engine: Engine, m0: date, customers=None) -> pd.DataFrame:
    only, params = and_customers(customers, "customer_id", engine)
    sql = text(f"""
        SELECT customer_id,
               SUM(CASE WHEN month = :m0 THEN aum END) AS aum_now,
               SUM(CASE WHEN month = :m1 THEN aum END) AS aum_before
        FROM customer_monthly WHERE month >= :m1 AND month <= :m0{only}
        GROUP BY customer_id
    """).bindparams(bindparam("m0", type_=Date), bindparam("m1", type_=Date))
    frame = read_frame(engine, sql, {"m0": m0, "m1": add_months(m0, -1), **params}).set_index("customer_id")
    return frame.apply(pd.to_numeric, errors="coerce").astype(float)


def _asset_balances(engine: Engine, as_of: date, customers=None) -> pd.DataFrame:
    """Per customer: open asset balance, of which in R4/R5 products, and open R4/R5 holdings."""
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.customer_id,
               SUM(CASE WHEN p.balance_side = 'asset' THEN h.balance ELSE 0 END) AS asset_balance,
               SUM(CASE WHEN p.balance_side = 'asset' AND p.risk_level IN ('R4', 'R5')
                        THEN h.balance ELSE 0 END) AS asset_r4_r5,
               SUM(CASE WHEN p.risk_level IN ('R4', 'R5') THEN 1 ELSE 0 END) AS r4_r5_holdings
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :as_of){only}
        GROUP BY h.customer_id
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": as_of, **params}).set_index("customer_id")
    return frame.apply(pd.to_numeric, errors="coerce").fillna(0.0).astype(float)


def risky_holdings(engine: Engine, as_of, customers=None) -> pd.DataFrame:
    """Holdings open at the end of ``as_of`` of products above R1 (the only ones that can mismatch);
    of the customers a filter selects when ``customers`` is given."""
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.holding_id, h.customer_id, h.product_id, p.category, p.risk_level, h.balance
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE p.risk_level <> 'R1'
          AND h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :as_of){only}
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": as_of, **params})
    frame["balance"] = pd.to_numeric(frame["balance"], errors="coerce").fillna(0.0).astype(float)
    return frame


def suitability_mismatches(holdings: pd.DataFrame, customer_frame: pd.DataFrame) -> pd.DataFrame:
    """The holdings above their holder's tolerance, with the holder's tolerance and branch.

    Parameters
    ----------
    holdings : pandas.DataFrame
        ``holding_id``, ``customer_id``, ``product_id``, ``category``, ``risk_level``, ``balance``.
    customer_frame : pandas.DataFrame
        Indexed by ``customer_id``: ``risk_tolerance`` and ``branch_id``. Holdings of customers not
        in it are ignored (closed or not yet open).
    """
    joined = holdings.join(customer_frame[["risk_tolerance", "branch_id"]], on="customer_id", how="inner")
    return joined[is_mismatch(joined["risk_level"], joined["risk_tolerance"])].reset_index(drop=True)


def suitability_summary(mismatches: pd.DataFrame, r4_r5_holders: pd.Index) -> dict:
    """Mismatch counts and the rate over customers holding an open R4/R5 product (the demo's ratio)."""
    high = mismatches[mismatches["risk_level"].astype(str).isin(["R4", "R5"])]
    mismatched_high = int(high["customer_id"].nunique())  # each holds an open R4/R5 product
    holders = len(r4_r5_holders)
    return {"mismatch_customers": int(mismatches["customer_id"].nunique()), "mismatch_holdings": len(mismatches),
            "r4_r5_holders": holders, "r4_r5_mismatch_customers": mismatched_high,
            "r4_r5_mismatch_rate": mismatched_high / holders if holders else None}


# ---------------------------------------------------------------------------------------------
# The refresh stage
# ---------------------------------------------------------------------------------------------


def customer_flags(people: pd.DataFrame, aum_now: np.ndarray, mismatches: pd.DataFrame, expired: np.ndarray,
                   missing: np.ndarray, drops: pd.DataFrame, thresholds) -> pd.DataFrame:
    """The ``risk_flags`` rows of ``people`` (their AUM now, mismatched holdings, assessment status
    and balance drops)."""
    per_customer = mismatches.groupby("customer_id").agg(holdings=("holding_id", "size"), balance=("balance", "sum"))
    per_customer = per_customer.reindex(people.index).fillna(0.0)
    return pd.DataFrame({
        "customer_id": people.index.to_numpy(),
        "branch_id": people["branch_id"].to_numpy(),
        "risk_tolerance": people["risk_tolerance"].to_numpy(),
        "credit_grade": people["credit_grade"].to_numpy(),
        "value_tier": value_tiers(pd.Series(aum_now, index=people.index), thresholds).astype(str).to_numpy(),
        "aum": aum_now,
        "suitability_mismatch": per_customer["holdings"].to_numpy() > 0,
        "mismatch_holdings": per_customer["holdings"].astype(int).to_numpy(),
        "mismatch_balance": per_customer["balance"].to_numpy(),
        "assessment_expired": expired,
        "assessment_missing": missing,
        "balance_drop": drops["balance_drop"].to_numpy(),
        "aum_change_pct": drops["change"].to_numpy(),
        "balance_drop_reason": drops["reason"].to_numpy(),
    })


def branch_sums(flags: pd.DataFrame, expired: np.ndarray, missing: np.ndarray, assets: pd.DataFrame) -> pd.DataFrame:
    """The ``risk_branch_summary`` sums of a set of customers' flags, by branch (without the R4/R5
    share, a ratio of two of them: :func:`add_branch_sums` adds two sets up)."""
    branch = flags["branch_id"].astype(object).where(flags["branch_id"].notna(), MISSING).to_numpy()
    return pd.DataFrame({
        "branch_id": branch,
        "customers": 1,
        "suitability_mismatch_customers": flags["suitability_mismatch"].to_numpy(dtype=int),
        "mismatch_holdings": flags["mismatch_holdings"].to_numpy(),
        "mismatch_balance": flags["mismatch_balance"].to_numpy(),
        "assessments_expired": expired.astype(int),
        "assessments_missing": missing.astype(int),
        "balance_drops": flags["balance_drop"].to_numpy(dtype=int),
        "asset_balance_total": assets["asset_balance"].to_numpy(),
        "asset_balance_r4_r5": assets["asset_r4_r5"].to_numpy(),
    }).groupby("branch_id", sort=True).sum().reset_index()


def add_branch_sums(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """Two sets of customers' :func:`branch_sums` added up, by branch."""
    if total is None:
        return part
    return pd.concat([total, part]).groupby("branch_id", sort=True).sum().reset_index()


BRANCH_SUMS = ("branch_id", "customers", "suitability_mismatch_customers", "mismatch_holdings", "mismatch_balance",
               "assessments_expired", "assessments_missing", "balance_drops", "asset_balance_total",
               "asset_balance_r4_r5")
#: Customers per block of the risk stage (read, flagged and written together).
BLOCK_ROWS = 250_000


def risk_stage(ctx, block_rows: int | None = None) -> None:
    """The refresh stage ``risk``: per-customer flags, mismatched holdings and branch aggregates.

    Writes ``risk_flags`` (one row per customer), ``risk_mismatches`` and ``risk_branch_summary``
    under ``ctx.run_id`` in one transaction, and headline metrics (``risk.*``) in ``run_metrics``.
    """
    if ctx.as_of_month is None:
        log.info("risk: no activity data, nothing to do")
        ctx.put_metrics({"risk.customers": 0})
        return
    valid_days = int(settings.get("RISK_ASSESSMENT_VALID_DAYS"))
    if valid_days < 1:
        raise ConfigError(f"Setting RISK_ASSESSMENT_VALID_DAYS={valid_days!r} must be a positive whole number")
    drop_conf = drop_settings()
    thresholds = value_tier_thresholds()
    chunk = int(settings.get("LOAD_CHUNK_ROWS"))
    lap = Laps()
    timings = lap.seconds

    engine = ctx.engine
    m0 = ctx.as_of_month
    as_of = month_end(m0)
    blocks = id_ranges(engine, block_rows or BLOCK_ROWS)
    # Every customer's AUM of the two months (two floats each, no ids) for the drop thresholds.
    before_parts, now_parts, sizes = [], [], []
    for block in blocks:
        people = _customers(engine, as_of, block)
        aum = _monthly_aum(engine, m0, block).reindex(people.index)
        before_parts.append(aum["aum_before"].fillna(0.0).to_numpy(dtype=float))
        now_parts.append(aum["aum_now"].fillna(0.0).to_numpy(dtype=float))
        sizes.append(len(people))
    before_all, now_all = np.concatenate(before_parts), np.concatenate(now_parts)
    del before_parts, now_parts
    drop_tiers = drop_thresholds(before_all, now_all, z=drop_conf["z"], min_aum=drop_conf["min_aum"],
                                 thresholds=thresholds)
    lap("drop_thresholds")

    run = {"run_id": ctx.run_id}
    totals = dict.fromkeys(("customers", "mismatch_customers", "mismatch_holdings", "mismatch_balance",
                            "r4_r5_holders", "r4_r5_mismatch_customers", "expired", "missing", "drops", "checked",
                            "asset_balance", "asset_r4_r5"), 0)
    by_branch = None
    offset = 0
    for block, size in zip(blocks, sizes, strict=True):
        people = _customers(engine, as_of, block)
        if len(people) != size:
            raise RuntimeError("risk: the customers changed while the stage read them")
        before, now = before_all[offset:offset + size], now_all[offset:offset + size]
        offset += size
        assets = _asset_balances(engine, as_of, block).reindex(people.index).fillna(0.0)
        mismatches = suitability_mismatches(risky_holdings(engine, as_of, block), people)
        r4_r5_holders = people.index[assets["r4_r5_holdings"].to_numpy() > 0]
        summary = suitability_summary(mismatches, r4_r5_holders)
        expired, missing = assessment_status(people["risk_tolerance"], people["risk_assessed_at"], as_of, valid_days)
        drops = flag_drops(before, now, drop_tiers, index=people.index, min_pct=drop_conf["min_pct"],
                           min_aum=drop_conf["min_aum"], thresholds=thresholds)
        flags = customer_flags(people, now, mismatches, expired, missing, drops, thresholds)
        by_branch = add_branch_sums(by_branch, branch_sums(flags, expired, missing, assets))
        for key, value in (("customers", len(flags)), ("mismatch_customers", summary["mismatch_customers"]),
                           ("mismatch_holdings", summary["mismatch_holdings"]),
                           ("mismatch_balance", float(mismatches["balance"].sum())),
                           ("r4_r5_holders", summary["r4_r5_holders"]),
                           ("r4_r5_mismatch_customers", summary["r4_r5_mismatch_customers"]),
                           ("expired", int(expired.sum())), ("missing", int(missing.sum())),
                           ("drops", int(drops["balance_drop"].sum())), ("checked", int(drops["checked"].sum())),
                           ("asset_balance", float(assets["asset_balance"].sum())),
                           ("asset_r4_r5", float(assets["asset_r4_r5"].sum()))):
            totals[key] += value
        mismatch_rows = mismatches[["holding_id", "customer_id", "branch_id", "product_id", "category", "risk_level",
                                    "risk_tolerance", "balance"]]
        with engine.begin() as conn:
            rows = flags.assign(**run)
            for start in range(0, len(rows), chunk):
                bulk_insert(engine, risk_flags, rows.iloc[start:start + chunk], conn=conn)
            bulk_insert(engine, risk_mismatches, mismatch_rows.assign(**run), conn=conn)
        del people, assets, mismatches, flags, rows, mismatch_rows, drops
        lap("blocks")
    del before_all, now_all
    if by_branch is None:  # no customers
        by_branch = pd.DataFrame({c: pd.Series(dtype=object if c == "branch_id" else float) for c in BRANCH_SUMS})
    total = by_branch["asset_balance_total"].to_numpy()
    by_branch["r4_r5_share"] = np.where(total > 0, by_branch["asset_balance_r4_r5"] / np.where(total > 0, total, 1),
                                        np.nan)
    with engine.begin() as conn:
        bulk_insert(engine, risk_branch_summary, by_branch.assign(**run), conn=conn)
    lap("write")

    n = totals["customers"]
    ctx.row_counts.update({"risk_flags": n, "risk_mismatches": totals["mismatch_holdings"],
                           "risk_branch_summary": len(by_branch)})
    for name, seconds in timings.items():
        ctx.metrics[f"risk_seconds.{name}"] = seconds
    holders = totals["r4_r5_holders"]
    metrics: dict[str, float | str | None] = {
        "risk.customers": n,
        "risk.as_of": as_of.isoformat(),
        "risk.suitability_mismatch_customers": totals["mismatch_customers"],
        "risk.mismatch_holdings": totals["mismatch_holdings"],
        "risk.mismatch_balance": totals["mismatch_balance"],
        "risk.r4_r5_holders": holders,
        "risk.r4_r5_mismatch_customers": totals["r4_r5_mismatch_customers"],
        "risk.r4_r5_mismatch_rate": totals["r4_r5_mismatch_customers"] / holders if holders else None,
        "risk.assessments_expired": totals["expired"],
        "risk.assessments_missing": totals["missing"],
        "risk.assessment_expired_rate": totals["expired"] / n if n else None,
        "risk.balance_drops": totals["drops"],
        "risk.balance_drop_checked": totals["checked"],
        "risk.r4_r5_share": (totals["asset_r4_r5"] / totals["asset_balance"] if totals["asset_balance"] > 0
                             else None),
    }
    for tier, row in drop_tiers.iterrows():
        metrics[f"risk.balance_drop_threshold.{tier}"] = float(row["threshold"])
    ctx.put_metrics(metrics)
    log.info("risk: %d customers, %d mismatched holdings, %d expired, %d drops, timings %s", n,
             totals["mismatch_holdings"], totals["expired"], totals["drops"], timings)


# ---------------------------------------------------------------------------------------------
# Readers of the stored results
# ---------------------------------------------------------------------------------------------


def _resolve_run(engine: Engine, run_id: int | None) -> int | None:
    try:
        return resolve_run(engine, run_id)
    except StoreNotInitialisedError:  # no published run yet: every reader returns an empty frame
        return None


def _scope_join(viewer: Viewer, flags_alias: str = "f") -> tuple[str, str, dict]:
    """The join and condition that keep ``viewer``'s customers (nothing for a bank-wide viewer)."""
    if viewer.scope is None:
        return "", "1 = 1", {}
    where, params = viewer.scope_sql("sc")
    return f"JOIN customers sc ON sc.customer_id = {flags_alias}.customer_id", where, params


def _ordered(values, dimension: str) -> list:
    order = DIMENSION_ORDER.get(dimension, ())
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


def risk_crosstab(engine: Engine, run_id: int | None, by: str, of: str = "risk_tolerance", *, viewer: Viewer,
                  value: str = "customers", normalize: bool = False) -> pd.DataFrame:
    """Customers (or their AUM) of a run by two dimensions, e.g. tolerance by branch, over the
    customers in ``viewer``'s scope; for an aggregate-only viewer a cell of fewer than
    ``MIN_CELL_CUSTOMERS`` customers is missing (NaN), like its AUM (see
    :func:`analytics.access.suppress_small_cells`).

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int or None
        The run; None for the published one.
    by : str
        Rows: one of :data:`CROSSTAB_DIMENSIONS` (``branch_id``, ``value_tier``, ``risk_tolerance``,
        ``credit_grade``, ``rfm_segment``).
    of : str
        Columns: another of them (default ``risk_tolerance``).
    value : str
        ``customers`` (count) or ``aum`` (total AUM, CNY).
    normalize : bool
        Each row as shares of its total instead of counts.

    Returns
    -------
    pandas.DataFrame
        Rows and columns in their canonical order (C1..C5, AAA..CCC, mass..private, the RFM
        segments), unknown values after, sorted; ``"(missing)"`` for NULL. Empty for a run with
        no flags.

    Raises
    ------
    RiskError
        On a dimension or value outside the allow-list.
    """
    for name in (by, of):
        if name not in CROSSTAB_DIMENSIONS:
            raise RiskError(f"Unknown dimension {name!r}; use one of {', '.join(CROSSTAB_DIMENSIONS)}")
    if value not in ("customers", "aum"):
        raise RiskError(f"value must be 'customers' or 'aum', not {value!r}")
    run = _resolve_run(engine, run_id)
    if run is None:
        return pd.DataFrame()
    join = ("LEFT JOIN customer_segments s ON s.run_id = f.run_id AND s.customer_id = f.customer_id"
            if "rfm_segment" in (by, of) else "")
    scope_join, scope_where, params = _scope_join(viewer)
    sql = f"""
        SELECT COALESCE({CROSSTAB_DIMENSIONS[by]}, :missing) AS row_key,
               COALESCE({CROSSTAB_DIMENSIONS[of]}, :missing) AS col_key,
               COUNT(*) AS customers, SUM(f.aum) AS aum
        FROM risk_flags f {join} {scope_join}
        WHERE f.run_id = :run_id AND {scope_where}
        GROUP BY COALESCE({CROSSTAB_DIMENSIONS[by]}, :missing), COALESCE({CROSSTAB_DIMENSIONS[of]}, :missing)
    """
    frame = read_frame(engine, sql, {**params, "run_id": run, "missing": MISSING})
    if frame.empty:
        return pd.DataFrame()
    if viewer.aggregate_only:
        frame = suppress_small_cells(frame, sums=["aum"], groups=["row_key"])
    table = frame.pivot_table(index="row_key", columns="col_key", values=value, aggfunc="sum", fill_value=0,
                              dropna=False)
    if viewer.aggregate_only:  # a hidden cell stays hidden (pivot_table would sum it to 0)
        hidden = frame[frame["customers_suppressed"]]
        for row_key, col_key in zip(hidden["row_key"], hidden["col_key"], strict=True):
            table.loc[row_key, col_key] = np.nan
    table = table.reindex(index=_ordered(set(table.index), by), columns=_ordered(set(table.columns), of),
                          fill_value=0)
    table.index.name, table.columns.name = by, of
    table = table.astype(float if value == "aum" or viewer.aggregate_only else np.int64)
    if normalize:
        totals = table.sum(axis=1).replace(0, np.nan)
        table = table.div(totals, axis=0).fillna(0.0)
    return table


def risk_value_matrix(engine: Engine, run_id: int | None = None, *, viewer: Viewer,
                      value: str = "customers") -> pd.DataFrame:
    """Risk tolerance (rows, C1..C5) by value tier (columns): the risk x value heatmap's matrix."""
    return risk_crosstab(engine, run_id, "risk_tolerance", "value_tier", viewer=viewer, value=value)


BRANCH_COUNT_COLUMNS = ("customers", "suitability_mismatch_customers", "mismatch_holdings", "mismatch_balance",
                        "assessments_expired", "assessments_missing", "balance_drops")
BRANCH_ASSET_COLUMNS = ("asset_balance_total", "asset_balance_r4_r5", "r4_r5_share")


def read_branch_summary(engine: Engine, run_id: int | None = None, *, viewer: Viewer) -> pd.DataFrame:
    """Per branch of a run: suitability, assessments, drops and R4/R5 concentration, for the
    customers in ``viewer``'s scope.

    A bank-wide viewer reads the stored summary. A scoped one gets the counts recomputed over its
    customers from ``risk_flags``; the asset-balance columns (from holdings, not kept per customer)
    only for branches wholly in its scope, else missing. For an aggregate-only viewer, a branch of
    fewer than ``MIN_CELL_CUSTOMERS`` customers has its figures hidden.
    """
    run = _resolve_run(engine, run_id)
    stored = read_frame(engine, "SELECT * FROM risk_branch_summary WHERE run_id = :r ORDER BY branch_id",
                        {"r": run if run is not None else -1})
    if viewer.scope is not None and run is not None:
        scope_join, scope_where, params = _scope_join(viewer)
        counts = read_frame(engine, f"""
            SELECT COALESCE(f.branch_id, :missing) AS branch_id, COUNT(*) AS customers,
                   SUM(CASE WHEN f.suitability_mismatch THEN 1 ELSE 0 END) AS suitability_mismatch_customers,
                   SUM(f.mismatch_holdings) AS mismatch_holdings, SUM(f.mismatch_balance) AS mismatch_balance,
                   SUM(CASE WHEN f.assessment_expired THEN 1 ELSE 0 END) AS assessments_expired,
                   SUM(CASE WHEN f.assessment_missing THEN 1 ELSE 0 END) AS assessments_missing,
                   SUM(CASE WHEN f.balance_drop THEN 1 ELSE 0 END) AS balance_drops
            FROM risk_flags f {scope_join}
            WHERE f.run_id = :r AND {scope_where}
            GROUP BY COALESCE(f.branch_id, :missing) ORDER BY 1
        """, {**params, "r": run, "missing": MISSING})
        whole = stored[stored["branch_id"].isin(viewer.scope.branches)].set_index("branch_id")
        for col in BRANCH_ASSET_COLUMNS:
            counts[col] = counts["branch_id"].map(whole[col]) if col in whole else np.nan
        counts.insert(0, "run_id", run)
        stored = counts[[c for c in stored.columns if c in counts.columns]]
    if viewer.aggregate_only and not stored.empty:
        sums = [c for c in (*BRANCH_COUNT_COLUMNS[1:], *BRANCH_ASSET_COLUMNS) if c in stored.columns]
        stored = suppress_small_cells(stored, sums=sums)
    return stored.reset_index(drop=True)


def read_mismatches(engine: Engine, run_id: int | None = None, *, viewer: Viewer, branch_id: str | None = None,
                    limit: int = 10_000) -> pd.DataFrame:
    """Mismatched holdings of a run (largest balance first), optionally of one branch: the
    customers in ``viewer``'s scope, released for the viewer (:func:`analytics.access.release`).
    A risk list: not filtered by marketing consent."""
    require_rows(viewer)
    run = _resolve_run(engine, run_id)
    scope_join, scope_where, params = _scope_join(viewer, "m")
    params.update({"r": run if run is not None else -1, "limit": int(limit)})
    where = f"m.run_id = :r AND {scope_where}"
    if branch_id is not None:
        where += " AND m.branch_id = :branch"
        params["branch"] = str(branch_id)
    frame = read_frame(engine, f"SELECT m.* FROM risk_mismatches m {scope_join} WHERE {where} "
                               "ORDER BY m.balance DESC, m.holding_id LIMIT :limit", params)
    return release(frame.drop(columns=["run_id"], errors="ignore"), viewer)


def read_balance_drops(engine: Engine, run_id: int | None = None, *, viewer: Viewer,
                       branch_id: str | None = None, limit: int = 10_000) -> pd.DataFrame:
    """Customers of a run flagged for an abnormal AUM drop, steepest first, with the reason,
    optionally of one branch (filtered before the limit, so a branch's list is complete): those in
    ``viewer``'s scope, released for the viewer. A risk list: not filtered by marketing consent."""
    require_rows(viewer)
    run = _resolve_run(engine, run_id)
    scope_join, scope_where, params = _scope_join(viewer)
    params.update({"r": run if run is not None else -1, "limit": int(limit)})
    # balance_drop as it stands (not = :flag): only then does the planner see ix_risk_flags_drops,
    # an index of the flagged rows alone, applies.
    where = f"f.run_id = :r AND f.balance_drop AND {scope_where}"
    if branch_id is not None:
        where += " AND f.branch_id = :branch"
        params["branch"] = str(branch_id)
    frame = read_frame(engine, f"""
        SELECT f.customer_id, f.branch_id, f.value_tier, f.aum, f.aum_change_pct, f.balance_drop_reason
        FROM risk_flags f {scope_join} WHERE {where}
        ORDER BY f.aum_change_pct, f.customer_id LIMIT :limit
    """, params)
    return release(frame, viewer)


# ---------------------------------------------------------------------------------------------
# Alert trends and assessments falling due (the Risk page, issue 14)
# ---------------------------------------------------------------------------------------------

#: The alert kinds the Risk page charts: the risk worklist's (analytics.alerts.read.RISK_KINDS, which a
#: test keeps equal; not imported, as the alerts package imports this module's rules).
TREND_KINDS: tuple[str, ...] = ("suitability_mismatch", "assessment_expiring", "balance_drop", "id_expiring",
                                "complaint_unresolved")
#: How far ahead the "assessment due" list looks from the run's as-of date.
ASSESSMENT_DUE_DAYS = 30
ASSESSMENT_DUE_COLUMNS = ("customer_id", "name", "branch_id", "relationship_manager", "risk_tolerance",
                          "risk_assessed_at", "expires_on", "days_left")


def alert_trend(engine: Engine, *, viewer: Viewer, runs: int = 12) -> pd.DataFrame:
    """Alerts standing in each of the last ``runs`` succeeded refresh runs, by kind, over the
    customers in ``viewer``'s scope: one row per (run, kind) with ``run_id``, ``finished_at`` (the
    run's end, the chart's x), ``kind`` (:data:`TREND_KINDS`) and ``alerts``. Aggregates only.

    An alert stands in run ``r`` when the run detected it: ``first_seen_run <= r <= last_seen_run``
    (a refresh that still detects an alert moves its ``last_seen_run``; the first that does not
    clears it), whatever its status: a dismissed alert whose condition stands still counts. A kind
    no run detected is 0. For an aggregate-only viewer a count under ``MIN_CELL_CUSTOMERS`` (but not
    0) is hidden (``alerts`` NaN, ``alerts_suppressed``): a customer may carry several kinds, so
    each count is hidden on its own.
    """
    from analytics.access import min_cell_customers

    scope, params = viewer.scope_sql("c")
    kinds = ", ".join(f":k{i}" for i in range(len(TREND_KINDS)))
    params.update({f"k{i}": k for i, k in enumerate(TREND_KINDS)})
    params.update({"succeeded": "succeeded", "runs": int(runs)})
    chosen = read_frame(engine, "SELECT run_id, finished_at FROM refresh_runs WHERE status = :succeeded "
                                "ORDER BY run_id DESC LIMIT :runs", {"succeeded": "succeeded", "runs": int(runs)})
    columns = ["run_id", "finished_at", "kind", "alerts"]
    if chosen.empty:
        return pd.DataFrame(columns=columns)
    counts = read_frame(engine, f"""
        SELECT r.run_id, a.kind, COUNT(*) AS alerts
        FROM refresh_runs r
        JOIN alerts a ON a.first_seen_run <= r.run_id AND a.last_seen_run >= r.run_id
        JOIN customers c ON c.customer_id = a.customer_id
        WHERE r.status = :succeeded AND r.run_id >= :first AND a.kind IN ({kinds}) AND {scope}
        GROUP BY r.run_id, a.kind""", {**params, "first": int(chosen["run_id"].min())})
    grid = pd.MultiIndex.from_product([sorted(chosen["run_id"].astype(int)), TREND_KINDS], names=["run_id", "kind"])
    alerts_ = (counts.assign(run_id=counts["run_id"].astype(int)).set_index(["run_id", "kind"])["alerts"]
               .reindex(grid, fill_value=0).astype(np.int64))
    out = alerts_.reset_index()
    finished = dict(zip(chosen["run_id"].astype(int), pd.to_datetime(chosen["finished_at"]), strict=True))
    out.insert(1, "finished_at", out["run_id"].map(finished))
    if viewer.aggregate_only:
        small = (out["alerts"] > 0) & (out["alerts"] < min_cell_customers())
        out["alerts_suppressed"] = small.to_numpy()
        out["alerts"] = out["alerts"].astype(float).where(~small)
    return out


def _run_as_of(engine: Engine, run: int) -> date | None:
    from analytics.runs import get_run_metrics

    metrics = get_run_metrics(engine, run)
    if metrics.get("risk.as_of"):  # the risk stage's own reference day
        return date.fromisoformat(str(metrics["risk.as_of"])[:10])
    month = metrics.get("as_of_month")
    return month_end(date.fromisoformat(str(month)[:10])) if month else None


def read_assessments_due(engine: Engine, run_id: int | None = None, *, viewer: Viewer,
                         branch_id: str | None = None, days: int = ASSESSMENT_DUE_DAYS,
                         limit: int = 10_000) -> pd.DataFrame:
    """Customers of a run's risk population whose risk-tolerance assessment is still valid at the
    run's as-of date but expires within ``days`` days of it, soonest first: those in ``viewer``'s
    scope, released for the viewer (name masked). A risk list: not filtered by marketing consent.

    An assessment dated ``d`` is valid through ``d + RISK_ASSESSMENT_VALID_DAYS`` (the rule of
    :func:`assessment_status`) and expires the day after (``expires_on``); the list holds
    ``as_of < expires_on <= as_of + days``, i.e. assessments between ``RISK_ASSESSMENT_VALID_DAYS -
    days + 1`` and ``RISK_ASSESSMENT_VALID_DAYS`` days old. ``days_left`` is ``expires_on - as_of``.
    The assessment is the customer's current record (``customers.risk_assessed_at``). Missing and
    expired assessments are the run's ``assessment_expired`` flags, not listed here.
    """
    require_rows(viewer)
    run = _resolve_run(engine, run_id)
    as_of = _run_as_of(engine, run) if run is not None else None
    if as_of is None:
        return pd.DataFrame(columns=list(ASSESSMENT_DUE_COLUMNS))
    valid = int(settings.get("RISK_ASSESSMENT_VALID_DAYS"))
    days = int(days)
    if days < 1:
        raise RiskError(f"days must be at least 1, got {days}")
    scope_join, scope_where, params = _scope_join(viewer)
    params.update({"r": run, "limit": int(limit), "missing": False,
                   "oldest": as_of - timedelta(days=valid), "newest": as_of - timedelta(days=valid - days + 1)})
    where = (f"f.customer_id = c.customer_id AND f.run_id = :r AND f.assessment_missing = :missing "
             f"AND c.risk_tolerance IS NOT NULL AND c.risk_assessed_at >= :oldest AND c.risk_assessed_at <= :newest "
             f"AND {scope_where}")
    if branch_id is not None:
        where += " AND f.branch_id = :branch"
        params["branch"] = str(branch_id)
    # The customers assessed in the window first (ix_customers_risk_assessed: a month of dates), then
    # their flags by key. CROSS JOIN keeps that order on SQLite, whose planner, without statistics of
    # the run's tables, walked every flag of the run instead (5.7 s at a million customers); on
    # PostgreSQL it is an inner join like any other.
    sql = text(f"""
        SELECT f.customer_id, c.name, f.branch_id, c.relationship_manager, c.risk_tolerance, c.risk_assessed_at
        FROM customers c CROSS JOIN risk_flags f {scope_join}
        WHERE {where} ORDER BY c.risk_assessed_at, f.customer_id LIMIT :limit
    """).bindparams(bindparam("oldest", type_=Date), bindparam("newest", type_=Date))
    frame = read_frame(engine, sql, params)
    assessed = pd.to_datetime(frame["risk_assessed_at"])
    frame["risk_assessed_at"] = assessed.dt.date
    frame["expires_on"] = (assessed + pd.Timedelta(days=valid + 1)).dt.date
    frame["days_left"] = (assessed + pd.Timedelta(days=valid + 1) - pd.Timestamp(as_of)).dt.days.astype(np.int64)
    return release(frame[list(ASSESSMENT_DUE_COLUMNS)], viewer)


__all__ = [
    "ASSESSMENT_DUE_COLUMNS", "ASSESSMENT_DUE_DAYS", "TREND_KINDS", "alert_trend", "read_assessments_due",
    "CROSSTAB_DIMENSIONS", "MISSING", "RiskError", "assessment_status", "balance_drops", "drop_settings",
    "is_mismatch", "read_balance_drops", "read_branch_summary", "read_mismatches", "risk_crosstab",
    "risk_number", "risk_stage", "risk_value_matrix", "risky_holdings", "suitability_mismatches",
    "suitability_summary",
]
