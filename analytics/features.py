"""Customer features at a point in time: the shared input of segmentation, tags, lifecycle and churn.

:func:`customer_features` returns one row per customer who had opened an account by the end of
``as_of_month``, indexed by ``customer_id``, built **only** from data up to and including that month:
activity rows of later months are never read, holdings count only if open at the end of the month,
contacts only if made by then. So a churn model (issue 5) can build features at a past cut-off
and score the present with the same function, without leaking the future into its training rows.

The heavy lifting is done by the database: one ``GROUP BY customer_id`` over the months the features
need (at most 13 by default, out of however many the store holds), one over open holdings, one over
contacts. Only those aggregates, one row per customer, come back to Python.

Conventions
-----------
* ``m0`` is ``as_of_month``; "the last 3 months" are ``m0`` and the two months before it, "the
  previous 3 months" the three before those, "12 months" ``m0`` and the eleven before.
* A month with no ``customer_monthly`` row for a customer counts as zero balances and no activity
  (before opening, after closing, or not reported).
* Percentage changes (``*_pct_*``, ``*_trend``) are fractions: ``0.25`` is +25 %. They are
  ``(now - before) / before``, clipped to ``[-1, PCT_CAP]``; when ``before`` is zero they are 0 if
  ``now`` is zero too and ``PCT_CAP`` otherwise, so a new balance reads as "grew a lot", never ∞.
* Reference date for ages and ID expiry: the last day of ``as_of_month``.

Columns (the feature glossary; :data:`FEATURE_COLUMNS` holds it as data)
-------------------------------------------------------------------------
See :data:`FEATURE_COLUMNS` for each column's meaning. Besides those, one ``products_<category>``
column per product category in the ``products`` table counts the customer's holdings of that
category open at the end of ``as_of_month`` (e.g. ``products_mortgage``).

Point-in-time caveats: ``risk_tolerance``, ``credit_grade`` and ``marketing_consent`` are the
customer record's values now (the store keeps no history of them); ``status`` is only added when
asked for (``with_status=True``) because for a past cut-off it is the outcome a churn model predicts.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Date, DateTime, Engine, bindparam, false, select, text

from analytics.errors import AnalyticsError
from analytics.partitions import and_customers
from analytics.schema import customer_feature_products, customer_feature_sets
from analytics.schema import customer_features as feature_rows
from analytics.store import bulk_insert, read_for_ids, read_frame

log = logging.getLogger(__name__)

# A relative change above +1000 % is reported as +1000 %: the size of a jump from (almost) nothing
# says little, and unbounded values would dominate any scaler or model downstream.
PCT_CAP = 10.0

# The windows behind the *_3m / *_6m / *_12m columns, in months.
SHORT_WINDOW = 3
MID_WINDOW = 6
LONG_WINDOW = 12

FEATURE_COLUMNS: dict[str, str] = {
    # --- customer record ---
    "gender": "'M' or 'F' (missing when unknown)",
    "age": "whole years at the end of as_of_month (missing without a birth date)",
    "branch_id": "the customer's branch",
    "customer_type": "individual, private_banking, small_business_owner, ...",
    "income_band": "declared income band",
    "onboarding_channel": "branch, mobile_app, online, partner, payroll, ...",
    "tenure_months": "calendar months from the opening month to as_of_month (0 = opened that month)",
    "risk_tolerance": "assessed risk tolerance C1..C5 (current record)",
    "risk_assessment_age_days": "days from the risk assessment to the end of as_of_month (missing if never)",
    "credit_grade": "credit grade AAA..CCC (current record)",
    "marketing_consent": "the customer agreed to marketing contact (current record)",
    "days_to_id_expiry": "days from the end of as_of_month to the ID document's expiry "
                         "(negative = already expired; missing when unknown)",
    # --- balances (CNY) ---
    "aum_latest": "assets under management in as_of_month",
    "deposit_balance_latest": "deposits in as_of_month",
    "loan_balance_latest": "loans outstanding in as_of_month",
    "aum_avg_3m": "mean AUM over the last 3 months",
    "aum_avg_12m": "mean AUM over the last 12 months",
    "aum_change_3m": "AUM now minus AUM 3 months earlier",
    "aum_change_6m": "AUM now minus AUM 6 months earlier",
    "aum_change_12m": "AUM now minus AUM 12 months earlier",
    "aum_change_pct_3m": "relative AUM change over 3 months (fraction, see conventions)",
    "aum_change_pct_6m": "relative AUM change over 6 months",
    "aum_change_pct_12m": "relative AUM change over 12 months",
    "aum_trend": "mean AUM of the last 3 months relative to the previous 3 (quarter on quarter)",
    "deposit_change_6m": "deposits now minus deposits 6 months earlier",
    "loan_change_6m": "loans now minus loans 6 months earlier",
    # --- activity ---
    "txn_count_3m": "customer-initiated transactions in the last 3 months",
    "txn_count_12m": "customer-initiated transactions in the last 12 months",
    "txn_amount_3m": "their amount, last 3 months (CNY)",
    "txn_amount_12m": "their amount, last 12 months (CNY)",
    "txn_count_trend": "transactions of the last 3 months relative to the previous 3",
    "digital_logins_3m": "mobile/online banking logins in the last 3 months",
    "digital_logins_12m": "logins in the last 12 months",
    "digital_logins_trend": "logins of the last 3 months relative to the previous 3",
    "active_months_12m": "months of the last 12 with at least one customer-initiated transaction",
    "months_since_last_txn": "months from the last customer-initiated transaction (or from opening, "
                             "if none since) to as_of_month; months_back + 1 when none in the look-back",
    # --- holdings open at the end of as_of_month ---
    "open_products": "holdings open at the end of as_of_month",
    "open_asset_products": "of which asset products (deposits, wealth, funds, insurance)",
    "open_liability_products": "of which liability products (loans, cards)",
    "open_product_categories": "distinct product categories among them",
    # --- contacts ---
    "complaints_3m": "complaints made in the last 3 months",
    "complaints_6m": "complaints made in the last 6 months",
    "complaints_12m": "complaints made in the last 12 months",
    "unresolved_complaints_6m": "complaints of the last 6 months not (yet) resolved",
    "contacts_6m": "contacts of any kind in the last 6 months",
    "marketing_contacts_6m": "marketing contacts in the last 6 months (contact fatigue)",
}

CATEGORICAL_FEATURES = ("gender", "branch_id", "customer_type", "income_band", "onboarding_channel",
                        "risk_tolerance", "credit_grade")


class FeatureError(AnalyticsError):
    """Features cannot be built (no activity data, or a month outside the store)."""


def add_months(month: date, k: int) -> date:
    """The first day of the month ``k`` months after ``month`` (negative ``k``: before)."""
    index = month.year * 12 + (month.month - 1) + k
    return date(index // 12, index % 12 + 1, 1)


def month_end(month: date) -> date:
    """The last day of ``month``'s calendar month."""
    return add_months(date(month.year, month.month, 1), 1) - timedelta(days=1)


def _as_month(value) -> date:
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise FeatureError(f"as_of_month must be a date, not {type(value).__name__}")
    return date(value.year, value.month, 1)


def to_datetime(values: pd.Series) -> pd.Series:
    """Dates as read from either dialect (ISO text on SQLite, ``date`` objects on PostgreSQL)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if isinstance(values.dtype, pd.StringDtype):
        # ISO text: an explicit format is ~50x faster than inference at a million rows.
        return pd.to_datetime(values.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    return pd.to_datetime(values, errors="coerce")


def relative_change(now, before) -> np.ndarray:
    """``(now - before) / before`` with the zero and cap conventions of this module."""
    now = np.asarray(now, dtype=float)
    before = np.asarray(before, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(before > 0, (now - before) / np.where(before > 0, before, 1.0),
                          np.where(now > 0, PCT_CAP, 0.0))
    return np.clip(change, -1.0, PCT_CAP)


def _column_name(category: str) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", str(category).strip().lower()).strip("_")
    return f"products_{slug or 'other'}"


# The per-customer aggregates over customer_monthly, by name. Each is one SQL expression over the
# rows of months mfirst..m0; its FILTER picks the months it covers. Every bound is a parameter.
# FILTER (SQLite >= 3.30, PostgreSQL >= 9.4) rather than SUM(CASE ...): SQLite then skips the
# aggregate step for rows outside the window, 12 % faster at a million customers.
MONTHLY_AGGREGATES: dict[str, str] = {
    "aum_latest": "SUM(aum) FILTER (WHERE month = :m0)",
    "deposit_balance_latest": "SUM(deposit_balance) FILTER (WHERE month = :m0)",
    "loan_balance_latest": "SUM(loan_balance) FILTER (WHERE month = :m0)",
    "aum_3m_ago": "SUM(aum) FILTER (WHERE month = :m3)",
    "aum_6m_ago": "SUM(aum) FILTER (WHERE month = :m6)",
    "aum_12m_ago": "SUM(aum) FILTER (WHERE month = :m12)",
    "deposit_6m_ago": "SUM(deposit_balance) FILTER (WHERE month = :m6)",
    "loan_6m_ago": "SUM(loan_balance) FILTER (WHERE month = :m6)",
    "aum_sum_3m": "SUM(aum) FILTER (WHERE month >= :m2)",
    "aum_sum_prev_3m": "SUM(aum) FILTER (WHERE month >= :m5 AND month <= :m3)",
    "aum_sum_12m": "SUM(aum) FILTER (WHERE month >= :m11)",
    "txn_count_3m": "SUM(txn_count) FILTER (WHERE month >= :m2)",
    "txn_count_prev_3m": "SUM(txn_count) FILTER (WHERE month >= :m5 AND month <= :m3)",
    "txn_count_12m": "SUM(txn_count) FILTER (WHERE month >= :m11)",
    "txn_amount_3m": "SUM(txn_amount) FILTER (WHERE month >= :m2)",
    "txn_amount_12m": "SUM(txn_amount) FILTER (WHERE month >= :m11)",
    "digital_logins_3m": "SUM(digital_logins) FILTER (WHERE month >= :m2)",
    "digital_logins_prev_3m": "SUM(digital_logins) FILTER (WHERE month >= :m5 AND month <= :m3)",
    "digital_logins_12m": "SUM(digital_logins) FILTER (WHERE month >= :m11)",
    "active_months_12m": "COUNT(*) FILTER (WHERE month >= :m11 AND txn_count > 0)",
    "last_txn_month": "MAX(month) FILTER (WHERE month >= :mback AND txn_count > 0)",
}


def _monthly_aggregates(engine: Engine, m0: date, months_back: int,
                        names: list[str] | None = None, customers=None) -> pd.DataFrame:
    """One row per customer with the raw sums behind the balance and activity features.

    ``names`` picks a subset of :data:`MONTHLY_AGGREGATES` (each costs work on every row read; at a
    million customers the full set takes ~20 s on SQLite, three of them a fraction of that).
    """
    names = list(MONTHLY_AGGREGATES) if names is None else names
    m = {k: add_months(m0, -k) for k in range(max(months_back, LONG_WINDOW) + 1)}
    columns = ",\n          ".join(f"{MONTHLY_AGGREGATES[n]} AS {n}" for n in names)
    # The window is about half the rows of a 24-month store: on SQLite a straight scan beats
    # fetching them row by row through the month index (22 s instead of 31 s at a million
    # customers). NOT INDEXED is SQLite syntax; PostgreSQL's planner makes that choice itself.
    # A partition (customers=) is a small share of the rows: there the customer_id index is used.
    hint = " NOT INDEXED" if engine.dialect.name == "sqlite" and customers is None else ""
    only, only_params = and_customers(customers, "customer_id", engine)
    sql = text(f"""
        SELECT customer_id,
          {columns}
        FROM customer_monthly{hint}
        WHERE month >= :mfirst AND month <= :m0{only}
        GROUP BY customer_id
    """)
    params = {"m0": m0, "m2": m[2], "m3": m[3], "m5": m[5], "m6": m[6], "m11": m[11], "m12": m[12],
              "mback": add_months(m0, -(months_back - 1)), "mfirst": m[max(months_back, LONG_WINDOW)]}
    used = {p: v for p, v in params.items() if re.search(rf":{p}\b", str(sql))}
    sql = sql.bindparams(*(bindparam(p, type_=Date) for p in used))
    return read_frame(engine, sql, used | only_params).set_index("customer_id")


def _holding_counts(engine: Engine, as_of_end: date, customers=None) -> pd.DataFrame:
    """Open holdings per customer at the end of the month: totals, by side and by category."""
    categories = read_frame(engine, "SELECT DISTINCT category FROM products ORDER BY category")["category"].tolist()
    # Category names become bound parameters (never SQL text); the output columns are renamed after.
    arms = ",\n".join(f"SUM(CASE WHEN p.category = :cat{i} THEN 1 ELSE 0 END) AS cat{i}"
                      for i in range(len(categories)))
    only, only_params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.customer_id,
          COUNT(*) AS open_products,
          SUM(CASE WHEN p.balance_side = 'asset' THEN 1 ELSE 0 END) AS open_asset_products,
          SUM(CASE WHEN p.balance_side = 'liability' THEN 1 ELSE 0 END) AS open_liability_products,
          COUNT(DISTINCT p.category) AS open_product_categories{"," if arms else ""}
          {arms}
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on <= :as_of_end AND (h.closed_on IS NULL OR h.closed_on > :as_of_end){only}
        GROUP BY h.customer_id
    """).bindparams(bindparam("as_of_end", type_=Date))
    params = {"as_of_end": as_of_end} | {f"cat{i}": c for i, c in enumerate(categories)} | only_params
    frame = read_frame(engine, sql, params).set_index("customer_id")
    return frame.rename(columns={f"cat{i}": _column_name(c) for i, c in enumerate(categories)})


def _contact_counts(engine: Engine, m0: date, customers=None) -> pd.DataFrame:
    until = datetime.combine(add_months(m0, 1), datetime.min.time())
    since = {k: datetime.combine(add_months(m0, -(k - 1)), datetime.min.time()) for k in (3, 6, 12)}
    only, only_params = and_customers(customers, "customer_id", engine)
    sql = text(f"""
        SELECT customer_id,
          SUM(CASE WHEN kind = 'complaint' AND contacted_at >= :s3 THEN 1 ELSE 0 END) AS complaints_3m,
          SUM(CASE WHEN kind = 'complaint' AND contacted_at >= :s6 THEN 1 ELSE 0 END) AS complaints_6m,
          SUM(CASE WHEN kind = 'complaint' THEN 1 ELSE 0 END) AS complaints_12m,
          SUM(CASE WHEN kind = 'complaint' AND contacted_at >= :s6 AND (resolved IS NULL OR NOT resolved)
                   THEN 1 ELSE 0 END) AS unresolved_complaints_6m,
          SUM(CASE WHEN contacted_at >= :s6 THEN 1 ELSE 0 END) AS contacts_6m,
          SUM(CASE WHEN kind = 'marketing' AND contacted_at >= :s6 THEN 1 ELSE 0 END) AS marketing_contacts_6m
        FROM contacts
        WHERE contacted_at >= :s12 AND contacted_at < :until{only}
        GROUP BY customer_id
    """).bindparams(*(bindparam(n, type_=DateTime) for n in ("s3", "s6", "s12", "until")))
    params = {"s3": since[3], "s6": since[6], "s12": since[12], "until": until} | only_params
    return read_frame(engine, sql, params).set_index("customer_id")


def _customer_records(engine: Engine, as_of_end: date, with_status: bool, customers=None) -> pd.DataFrame:
    from analytics.consent import live_consent_sql

    status = ", status" if with_status else ""
    # Marketing consent is a live consent in `consents` (the legacy customers.marketing_consent
    # flag only feeds that table when customers are loaded).
    consent, params = live_consent_sql("c.customer_id", "marketing")
    only, only_params = and_customers(customers, "c.customer_id", engine)
    sql = text(f"""
        SELECT customer_id, gender, birth_date, branch_id, customer_type, income_band,
               onboarding_channel, open_date, id_expiry_date, risk_tolerance, risk_assessed_at,
               credit_grade, CASE WHEN {consent} THEN 1 ELSE 0 END AS marketing_consent{status}
        FROM customers c WHERE open_date <= :as_of_end{only}
    """).bindparams(bindparam("as_of_end", type_=Date))
    return read_frame(engine, sql, {**params, **only_params, "as_of_end": as_of_end}).set_index("customer_id")


def _tenure_months(open_date: pd.Series, m0: date) -> pd.Series:
    opened = to_datetime(open_date)
    return ((m0.year - opened.dt.year) * 12 + (m0.month - opened.dt.month)).astype(float)


def _months_since_last_txn(last_txn_month: pd.Series, tenure: pd.Series, m0: date, months_back: int) -> pd.Series:
    last = to_datetime(last_txn_month)
    since_txn = (m0.year - last.dt.year) * 12 + (m0.month - last.dt.month)
    # No transaction in the look-back: count from opening if that is within it, else "beyond it".
    since_open = tenure.clip(upper=months_back + 1)
    return since_txn.fillna(since_open).fillna(months_back + 1).astype(float)


def lifecycle_inputs(engine: Engine, as_of_month, *, months_back: int = LONG_WINDOW,
                     customers=None) -> pd.DataFrame:
    """Just ``tenure_months``, ``months_since_last_txn`` and ``aum_trend`` at a month.

    The same values as :func:`customer_features` (same code), from a lighter query: what the
    lifecycle stages of a past month need (:func:`analytics.lifecycle.observed_stage_retention`),
    without the cost of every other feature at a million customers. ``customers`` reads only the
    customers a filter selects (as for :func:`customer_features`).
    """
    if months_back < LONG_WINDOW:
        raise FeatureError(f"months_back must be at least {LONG_WINDOW}, got {months_back}")
    m0 = _as_month(as_of_month)
    only, only_params = and_customers(customers, "customer_id", engine)
    sql = text(f"SELECT customer_id, open_date FROM customers WHERE open_date <= :as_of_end{only}").bindparams(
        bindparam("as_of_end", type_=Date))
    records = read_frame(engine, sql, {"as_of_end": month_end(m0)} | only_params).set_index("customer_id")
    monthly = _monthly_aggregates(engine, m0, months_back, ["aum_sum_3m", "aum_sum_prev_3m", "last_txn_month"],
                                  customers=customers)
    frame = records.join(monthly, how="left").sort_index()
    frame.index.name = "customer_id"
    out = pd.DataFrame(index=frame.index)
    out["tenure_months"] = _tenure_months(frame["open_date"], m0)
    out["months_since_last_txn"] = _months_since_last_txn(frame["last_txn_month"], out["tenure_months"], m0,
                                                          months_back)
    sums = {c: pd.to_numeric(frame[c], errors="coerce").fillna(0.0) for c in ("aum_sum_3m", "aum_sum_prev_3m")}
    out["aum_trend"] = relative_change(sums["aum_sum_3m"], sums["aum_sum_prev_3m"])
    return out


def customer_features(engine: Engine, as_of_month, *, months_back: int = LONG_WINDOW,
                      with_status: bool = False, customers=None) -> pd.DataFrame:
    """Features of every customer open by the end of ``as_of_month``, from data up to that month.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The customer store.
    as_of_month : datetime.date or str
        The month the features describe (any day in it). Nothing after its last day is read.
    months_back : int
        How far back :data:`months_since_last_txn` looks for a transaction (at least 12; the
        3/6/12-month windows are fixed). Older months are never read.
    with_status : bool
        Add the customer's current ``status`` column (active/dormant/closed). Leave it off for
        features at a past cut-off: it is the outcome, not a predictor.
    customers : optional
        Only these customers: a filter with a ``sql(column, engine) -> (condition, params)`` method,
        such as :class:`analytics.partitions.Partition`. Its condition is added to every query, so
        the database reads only their rows. Each customer's row is the one they have without it.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted); the columns of :data:`FEATURE_COLUMNS`, plus one
        ``products_<category>`` count per product category, plus ``status`` when asked.
        Numeric columns are floats; categorical ones are strings (missing as NaN).

    Raises
    ------
    FeatureError
        When ``months_back`` is below 12 or ``as_of_month`` is not a date.
    """
    if months_back < LONG_WINDOW:
        raise FeatureError(f"months_back must be at least {LONG_WINDOW}, got {months_back}")
    m0 = _as_month(as_of_month)
    as_of_end = month_end(m0)

    records = _customer_records(engine, as_of_end, with_status, customers)
    monthly = _monthly_aggregates(engine, m0, months_back, customers=customers)
    holdings = _holding_counts(engine, as_of_end, customers)
    contacts = _contact_counts(engine, m0, customers)
    log.info("features for %s: %d customers, %d with activity", m0, len(records), len(monthly))

    frame = records.join(monthly, how="left").join(holdings, how="left").join(contacts, how="left")
    frame = frame.sort_index()
    frame.index.name = "customer_id"
    out = pd.DataFrame(index=frame.index)

    # --- customer record ---
    ref = pd.Timestamp(as_of_end)
    birth = to_datetime(frame["birth_date"])
    had_birthday = (birth.dt.month < ref.month) | ((birth.dt.month == ref.month) & (birth.dt.day <= ref.day))
    out["gender"] = frame["gender"]
    out["age"] = (ref.year - birth.dt.year - (~had_birthday).astype(float)).astype(float)
    for col in ("branch_id", "customer_type", "income_band", "onboarding_channel"):
        out[col] = frame[col]
    out["tenure_months"] = _tenure_months(frame["open_date"], m0)
    out["risk_tolerance"] = frame["risk_tolerance"]
    out["risk_assessment_age_days"] = (ref - to_datetime(frame["risk_assessed_at"])).dt.days.astype(float)
    out["credit_grade"] = frame["credit_grade"]
    out["marketing_consent"] = frame["marketing_consent"].astype("boolean").fillna(False).astype(bool)
    out["days_to_id_expiry"] = (to_datetime(frame["id_expiry_date"]) - ref).dt.days.astype(float)

    # --- balances ---
    def num(col: str) -> pd.Series:
        # Text in a number column, and an infinite balance (SQLite and PostgreSQL's numeric both
        # store one), count as missing: the data-quality stage reports them, the models never see them.
        values = pd.to_numeric(frame[col], errors="coerce").astype(float)
        return values.where(np.isfinite(values), 0.0)

    aum = num("aum_latest")
    out["aum_latest"] = aum
    out["deposit_balance_latest"] = num("deposit_balance_latest")
    out["loan_balance_latest"] = num("loan_balance_latest")
    out["aum_avg_3m"] = num("aum_sum_3m") / SHORT_WINDOW
    out["aum_avg_12m"] = num("aum_sum_12m") / LONG_WINDOW
    for k in (3, 6, 12):
        before = num(f"aum_{k}m_ago")
        out[f"aum_change_{k}m"] = aum - before
        out[f"aum_change_pct_{k}m"] = relative_change(aum, before)
    out["aum_trend"] = relative_change(num("aum_sum_3m"), num("aum_sum_prev_3m"))
    out["deposit_change_6m"] = out["deposit_balance_latest"] - num("deposit_6m_ago")
    out["loan_change_6m"] = out["loan_balance_latest"] - num("loan_6m_ago")

    # --- activity ---
    for col in ("txn_count_3m", "txn_count_12m", "txn_amount_3m", "txn_amount_12m",
                "digital_logins_3m", "digital_logins_12m", "active_months_12m"):
        out[col] = num(col)
    out["txn_count_trend"] = relative_change(num("txn_count_3m"), num("txn_count_prev_3m"))
    out["digital_logins_trend"] = relative_change(num("digital_logins_3m"), num("digital_logins_prev_3m"))
    out["months_since_last_txn"] = _months_since_last_txn(frame["last_txn_month"], out["tenure_months"], m0,
                                                          months_back)

    # --- holdings and contacts ---
    for col in holdings.columns:
        out[col] = num(col)
    for col in contacts.columns:
        out[col] = num(col)
    for col in FEATURE_COLUMNS:  # a store without contacts still yields every documented column
        if col not in out:
            out[col] = 0.0
    if with_status:
        out["status"] = frame["status"]
    ordered = list(FEATURE_COLUMNS) + sorted(c for c in out.columns if c.startswith("products_"))
    if with_status:
        ordered.append("status")
    return out[ordered]


def product_columns(features: pd.DataFrame) -> list[str]:
    """The per-category holding counts (``products_<category>``) present in a feature frame."""
    return [c for c in features.columns if c.startswith("products_")]


# ---------------------------------------------------------------------------------------------
# Features stored per run (the refresh's customer_features stage writes them, later stages read them)
# ---------------------------------------------------------------------------------------------


def store_features(conn, run_id: int, cutoff, features: pd.DataFrame, *, chunk_rows: int = 50_000) -> int:
    """Write a frame of :func:`customer_features` (``with_status=True``) as run ``run_id``'s set at
    ``cutoff``, on the open connection ``conn`` (the caller's transaction); return the rows written.

    The fixed columns go to ``customer_features``, the ``products_<category>`` counts above zero to
    ``customer_feature_products``, and the set itself (its product columns, so that a category no
    customer holds still reads back as a column of zeros) to ``customer_feature_sets``.
    """
    store_feature_set(conn, run_id, cutoff, customers=len(features), products=product_columns(features))
    return store_feature_rows(conn, run_id, cutoff, features, chunk_rows=chunk_rows)


def store_feature_set(conn, run_id: int, cutoff, *, customers: int, products: list[str]) -> None:
    """Record run ``run_id``'s set at ``cutoff``: how many customers, and its product columns (so that
    a category no customer holds still reads back as a column of zeros). With
    :func:`store_feature_rows` per block of customers, what :func:`store_features` does at once."""
    conn.execute(customer_feature_sets.insert().values(run_id=run_id, cutoff=_as_month(cutoff), customers=customers,
                                                       product_columns=sorted(products)))


def store_feature_rows(conn, run_id: int, cutoff, features: pd.DataFrame, *, chunk_rows: int = 50_000) -> int:
    """Write the rows of a frame of :func:`customer_features` (``with_status=True``; all customers or a
    block of them) under run ``run_id`` at ``cutoff``, on ``conn``; return the rows written."""
    m0 = _as_month(cutoff)
    products = product_columns(features)
    fixed = [c.name for c in feature_rows.c if c.name not in ("run_id", "cutoff", "customer_id")]
    rows = features.reindex(columns=fixed)
    rows.insert(0, "customer_id", features.index.to_numpy())
    rows.insert(0, "cutoff", m0)
    rows.insert(0, "run_id", run_id)
    for start in range(0, len(rows), chunk_rows):
        bulk_insert(conn.engine, feature_rows, rows.iloc[start:start + chunk_rows], conn=conn)
    del rows
    for column in products:
        held = features[column][features[column] != 0]
        if held.empty:
            continue
        long = pd.DataFrame({"run_id": run_id, "cutoff": m0, "customer_id": held.index.to_numpy(),
                             "product_column": column, "open_count": held.to_numpy(dtype=float)})
        for start in range(0, len(long), chunk_rows):
            bulk_insert(conn.engine, customer_feature_products, long.iloc[start:start + chunk_rows], conn=conn)
    return len(features)


def stored_cutoffs(engine: Engine, run_id: int) -> list[date]:
    """The cut-offs run ``run_id`` stored features for, in order."""
    with engine.connect() as conn:
        values = conn.execute(select(customer_feature_sets.c.cutoff).where(
            customer_feature_sets.c.run_id == run_id).order_by(customer_feature_sets.c.cutoff)).scalars().all()
    return [_as_month(v) for v in values]


def read_features(engine: Engine, run_id: int, cutoff, *, with_status: bool = False,
                  customer_ids=None, columns=None, customers=None) -> pd.DataFrame:
    """The features run ``run_id`` stored at ``cutoff``: the frame :func:`customer_features` returned
    then (same rows, columns, order and dtypes), without computing anything.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The store.
    run_id : int
        The refresh run whose ``customer_features`` stage stored them.
    cutoff : datetime.date or str
        The month the features describe (any day in it).
    with_status : bool
        Add the customer's ``status`` column, as :func:`customer_features` does when asked.
    customer_ids : iterable of str, optional
        Read only these customers (a partition of the run's work); ids without features at the
        cut-off are left out. ``None`` reads every customer.
    columns : iterable of str, optional
        Read only these feature columns (names of :data:`FEATURE_COLUMNS` or the set's
        ``products_<category>`` columns), in the frame's usual order: a narrow frame of every
        customer costs a fraction of the whole one. ``None`` reads every column.
    customers : optional
        Only these customers: a filter with a ``sql(column, engine) -> (condition, params)`` method,
        such as :class:`analytics.partitions.Partition`, added to both queries (as ``customers=`` of
        :func:`customer_features`). With ``customer_ids`` too, the customers both keep.

    Raises
    ------
    FeatureError
        When the run stored no features at ``cutoff`` (a stage read a cut-off it did not declare).
    """
    m0 = _as_month(cutoff)
    with engine.connect() as conn:
        products = conn.execute(select(customer_feature_sets.c.product_columns).where(
            customer_feature_sets.c.run_id == run_id, customer_feature_sets.c.cutoff == m0)).scalar()
    if products is None:
        raise FeatureError(f"Refresh run {run_id} stored no customer features at {m0:%Y-%m}: the "
                           "customer_features stage stores only the cut-offs the stages declare "
                           "(analytics/refresh.py FEATURE_CUTOFFS).")
    names = [c.name for c in feature_rows.c if c.name not in ("run_id", "cutoff")]
    if not with_status:
        names.remove("status")
    wanted = None
    if columns is not None:
        wanted = set(columns)
        unknown = wanted - set(FEATURE_COLUMNS) - set(products) - {"status"}  # status: with_status says
        if unknown:
            raise FeatureError(f"No stored feature column {', '.join(sorted(unknown))} at {m0:%Y-%m}")
        names = [n for n in names if n in wanted or n in ("customer_id", "status")]
        products = [c for c in products if c in wanted]
    base = select(*(feature_rows.c[n] for n in names)).where(feature_rows.c.run_id == run_id,
                                                            feature_rows.c.cutoff == m0)
    long_base = select(customer_feature_products.c.customer_id, customer_feature_products.c.product_column,
                       customer_feature_products.c.open_count).where(
        customer_feature_products.c.run_id == run_id, customer_feature_products.c.cutoff == m0)
    if wanted is not None:  # only the product columns asked for (none: nothing from the long table)
        long_base = long_base.where(customer_feature_products.c.product_column.in_(products) if products
                                    else false())
    if customers is not None:
        condition, params = customers.sql("customer_id", engine)
        base = base.where(text(condition).bindparams(**params))
        long_base = long_base.where(text(condition).bindparams(**params))
    if customer_ids is None:
        frame = read_frame(engine, base)
        long = read_frame(engine, long_base)
    else:
        frame = read_for_ids(engine, base, feature_rows.c.customer_id, customer_ids)
        long = read_for_ids(engine, long_base, customer_feature_products.c.customer_id, customer_ids)
    frame = frame.set_index("customer_id").sort_index()
    out = pd.DataFrame(index=frame.index)
    for col in FEATURE_COLUMNS:
        if wanted is not None and col not in wanted:
            continue
        if col in CATEGORICAL_FEATURES:
            out[col] = frame[col]
        elif col == "marketing_consent":
            out[col] = frame[col].astype(bool)
        else:
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    wide = long.pivot(index="customer_id", columns="product_column", values="open_count") if len(long) else None
    for col in products:
        held = wide[col] if wide is not None and col in wide.columns else pd.Series(dtype=float)
        out[col] = held.reindex(out.index).fillna(0.0).astype(float).to_numpy()
    if with_status:
        out["status"] = frame["status"]
    out.index.name = "customer_id"
    return out


__all__ = [
    "CATEGORICAL_FEATURES", "FEATURE_COLUMNS", "FeatureError", "MONTHLY_AGGREGATES", "PCT_CAP", "add_months",
    "customer_features", "lifecycle_inputs", "month_end", "product_columns", "read_features", "relative_change",
    "store_feature_rows", "store_feature_set", "store_features", "stored_cutoffs", "to_datetime",
]
