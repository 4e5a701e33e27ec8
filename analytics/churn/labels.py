"""The churn label and the model's inputs, read from the store at a cut-off month.

:func:`cutoff_states` (active, inactive or closed at a cut-off), :func:`churn_outcomes` (the three
churn criteria over the horizon after it), :func:`churn_labels` (the label of the active population)
and :func:`churn_features`, as defined in :mod:`analytics.churn` (*The label*); the churn settings
(:func:`churn_settings`) and :class:`ChurnError`.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Date, Engine, bindparam, text

from analytics import settings
from analytics.errors import AnalyticsError, ConfigError
from analytics.features import add_months, customer_features, month_end, to_datetime
from analytics.partitions import and_customers
from analytics.store import read_frame


class ChurnError(AnalyticsError):
    """Churn labels or a churn model cannot be built (too little history, one class only, ...)."""


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

def churn_settings() -> dict:
    """``horizon_months``, ``aum_drop`` and ``sample_size`` from the settings, checked.

    Raises
    ------
    ConfigError
        When a value is out of range (horizon 1..12 months, drop in (0, 1], sample >= 1000).
    """
    horizon = int(settings.get("CHURN_HORIZON_MONTHS"))
    drop = float(settings.get("CHURN_AUM_DROP"))
    sample = int(settings.get("CHURN_SAMPLE_SIZE"))
    if not 1 <= horizon <= 12:
        raise ConfigError(f"Setting CHURN_HORIZON_MONTHS={horizon} must be a whole number of months, 1 to 12")
    if not 0 < drop <= 1:
        raise ConfigError(f"Setting CHURN_AUM_DROP={drop} must be a fraction in (0, 1], e.g. 0.8 for 80 %")
    if sample < 1000:
        raise ConfigError(f"Setting CHURN_SAMPLE_SIZE={sample} must be at least 1000")
    return {"horizon_months": horizon, "aum_drop": drop, "sample_size": sample}


# ---------------------------------------------------------------------------------------------
# The label
# ---------------------------------------------------------------------------------------------

CHURN_STATES = ("active", "inactive", "closed")
# The dimensions churn is stored by (``churn_rates.dimension``). Here rather than with the stage that
# writes them so that the reader, which allows only these, does not import the model.
RATE_DIMENSIONS = ("branch_id", "value_tier", "lifecycle_stage", "rfm_segment")


def first_of_month(value) -> date:
    """The first day of ``value``'s month: a date, datetime, ``pandas.Timestamp`` or ISO string."""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if not isinstance(value, date):  # datetime and pandas.Timestamp are dates too
        raise ChurnError(f"cutoff_month must be a date, not {type(value).__name__}")
    return date(value.year, value.month, 1)


def _last_activity_month(engine: Engine) -> date | None:
    frame = read_frame(engine, "SELECT MAX(month) AS last FROM customer_monthly")
    value = frame["last"].iloc[0]
    if value is None or pd.isna(value):
        return None
    return to_datetime(pd.Series([str(value)[:10]])).iloc[0].date()


def _float_column(frame: pd.DataFrame, col: str) -> pd.Series:
    # Money comes back as Decimal from PostgreSQL through a text() query: coerce to float.
    return pd.to_numeric(frame[col], errors="coerce").astype(float).fillna(0.0)


def _open_holdings(engine: Engine, day: date, column: str, customers=None) -> pd.DataFrame:
    """Open holdings per customer at the end of ``day`` (opened by then, not yet closed), as ``column``."""
    only, params = and_customers(customers, "customer_id", engine)
    return read_frame(engine, text(f"""
        SELECT customer_id, COUNT(*) AS {column} FROM holdings
        WHERE opened_on <= :day AND (closed_on IS NULL OR closed_on > :day){only}
        GROUP BY customer_id
    """).bindparams(bindparam("day", type_=Date)), {"day": day, **params}).set_index("customer_id")


def cutoff_states(engine: Engine, cutoff_month, horizon_months: int = 3, *, customers=None) -> pd.Series:
    """Each customer's state at a cut-off: ``active`` (the label's population), ``inactive`` or ``closed``.

    Uses data up to the end of ``cutoff_month`` only. ``closed``: no holding open at the end of
    the month; ``inactive``: holdings open but no customer-initiated transaction in the
    ``horizon_months`` months up to and including it; ``active``: the rest. Indexed by
    ``customer_id`` (customers opened by the end of the month), named ``churn_state``. ``customers``:
    only these (a filter as in :func:`analytics.features.customer_features`, e.g. a partition).
    """
    if horizon_months < 1:
        raise ChurnError(f"horizon_months must be at least 1, got {horizon_months}")
    m0 = first_of_month(cutoff_month)
    end0 = month_end(m0)
    first = add_months(m0, -(horizon_months - 1))
    only, params = and_customers(customers, "customer_id", engine)
    records = read_frame(engine, text(f"SELECT customer_id FROM customers WHERE open_date <= :e0{only}")
                         .bindparams(bindparam("e0", type_=Date)), {"e0": end0, **params}).set_index("customer_id")
    activity = read_frame(engine, text(f"""
        SELECT customer_id, SUM(txn_count) AS txn_before
        FROM customer_monthly WHERE month >= :first AND month <= :m0{only}
        GROUP BY customer_id
    """).bindparams(bindparam("first", type_=Date), bindparam("m0", type_=Date)),
        {"first": first, "m0": m0, **params}).set_index("customer_id")
    holdings = _open_holdings(engine, end0, "open_cutoff", customers)
    frame = records.join(activity, how="left").join(holdings, how="left").sort_index()
    has_open = _float_column(frame, "open_cutoff") > 0
    transacted = _float_column(frame, "txn_before") > 0
    state = np.where(~has_open, "closed", np.where(transacted, "active", "inactive"))
    return pd.Series(state, index=frame.index, name="churn_state", dtype=object)


def churn_outcomes(engine: Engine, cutoff_month, horizon_months: int = 3, aum_drop: float = 0.8, *,
                   customers=None) -> pd.DataFrame:
    """The three churn criteria over the ``horizon_months`` after ``cutoff_month``, for every customer
    opened by the end of the cut-off month (whatever their state); see :func:`churn_labels`.
    ``customers``: only these (a filter as for :func:`cutoff_states`, e.g. a range of ids).

    Columns: ``churn_state`` (at the cut-off), ``closed``, ``aum_dropped``, ``dormant``, ``churned``
    (any of the three), ``aum_cutoff``, ``aum_end``.

    Raises
    ------
    ChurnError
        When the store holds no activity for month ``cutoff + horizon``.
    """
    if not 0 < aum_drop <= 1:
        raise ChurnError(f"aum_drop must be a fraction in (0, 1], got {aum_drop}")
    m0 = first_of_month(cutoff_month)
    mh = add_months(m0, horizon_months)
    last = _last_activity_month(engine)
    if last is None or last < mh:
        raise ChurnError(f"Churn labels at {m0:%Y-%m} need activity up to {mh:%Y-%m}; the store holds "
                         f"{'none' if last is None else f'up to {last:%Y-%m}'}. Use an earlier cut-off.")
    states = cutoff_states(engine, m0, horizon_months, customers=customers)
    only, params = and_customers(customers, "customer_id", engine)
    monthly = read_frame(engine, text(f"""
        SELECT customer_id,
          SUM(CASE WHEN month > :m0 THEN txn_count ELSE 0 END) AS txn_after,
          SUM(CASE WHEN month = :m0 THEN aum END) AS aum_cutoff,
          SUM(CASE WHEN month = :mh THEN aum END) AS aum_end
        FROM customer_monthly WHERE month >= :m0 AND month <= :mh{only}
        GROUP BY customer_id
    """).bindparams(bindparam("m0", type_=Date), bindparam("mh", type_=Date)),
        {"m0": m0, "mh": mh, **params}).set_index("customer_id")
    holdings = _open_holdings(engine, month_end(mh), "open_end", customers)
    frame = pd.DataFrame(index=states.index).join(monthly, how="left").join(holdings, how="left")
    out = pd.DataFrame({"churn_state": states}, index=states.index)
    aum0, aum_end = _float_column(frame, "aum_cutoff"), _float_column(frame, "aum_end")
    out["closed"] = (_float_column(frame, "open_end") == 0).to_numpy()
    # A small tolerance so that exactly an 80 % fall counts despite binary floating point.
    out["aum_dropped"] = ((aum0 > 0) & (aum_end <= (1.0 - aum_drop) * aum0 + 1e-9 * aum0)).to_numpy()
    out["dormant"] = (_float_column(frame, "txn_after") == 0).to_numpy()
    out["churned"] = out["closed"] | out["aum_dropped"] | out["dormant"]
    out["aum_cutoff"] = aum0.to_numpy()
    out["aum_end"] = aum_end.to_numpy()
    return out


def churn_labels(engine: Engine, cutoff_month, horizon_months: int = 3, aum_drop: float = 0.8) -> pd.DataFrame:
    """Who of the customers active at ``cutoff_month`` churns within the next ``horizon_months``.

    The population and the three criteria (closed, AUM drop, dormant) are defined in the docstring
    of :mod:`analytics.churn`. Only data up to ``cutoff + horizon_months`` is read.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    cutoff_month : datetime.date or str
        Any day of the cut-off month.
    horizon_months : int
        Months after the cut-off the outcome is observed over (also the activity look-back that
        defines "active").
    aum_drop : float
        Fractional AUM fall that counts as churn (0.8: AUM at the horizon's end <= 20 % of AUM at
        the cut-off).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (the population only, sorted): ``churned`` (bool, the label),
        ``closed``, ``aum_dropped``, ``dormant`` (bool, which criteria hold), ``aum_cutoff``,
        ``aum_end`` (CNY).

    Raises
    ------
    ChurnError
        When the store has no activity for the horizon's last month.
    """
    out = churn_outcomes(engine, cutoff_month, horizon_months, aum_drop)
    out = out[out["churn_state"] == "active"].drop(columns="churn_state")
    return out[["churned", "closed", "aum_dropped", "dormant", "aum_cutoff", "aum_end"]]


def feature_cutoffs(as_of_month) -> list[date]:
    """The cut-offs the churn stage reads features at, given the run's month ``A`` and the horizon
    ``H`` (``CHURN_HORIZON_MONTHS``): training ``A - 2H``, hold-out ``A - H`` and scoring ``A``, in that
    order. The refresh's ``customer_features`` stage builds these; the churn stage reads them."""
    as_of = first_of_month(as_of_month)
    horizon = churn_settings()["horizon_months"]
    return [add_months(as_of, -2 * horizon), add_months(as_of, -horizon), as_of]


def churn_features(engine: Engine, cutoff_month) -> pd.DataFrame:
    """The model's features at a cut-off: :func:`analytics.features.customer_features` without
    ``status`` (for a past cut-off it is the outcome). Nothing after the cut-off month is read."""
    return customer_features(engine, first_of_month(cutoff_month), with_status=False)


__all__ = ["CHURN_STATES", "RATE_DIMENSIONS", "ChurnError", "churn_features", "churn_labels", "churn_outcomes",
           "churn_settings", "cutoff_states", "feature_cutoffs", "first_of_month"]
