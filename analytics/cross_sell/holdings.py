"""Cross-sell: the holding matrix and acquisitions, read from the customer store.

Holding matrix
--------------
:func:`holding_matrix` is one row per customer with at least one holding open at the end of the
``as_of`` day (``opened_on <= as_of`` and not closed by then), one boolean column per product
category of the ``products`` table (sorted by name; a category nobody holds is an all-False column).
Customers without any open holding are left out: they say nothing about which products go together
and would only dilute every support.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Date, Engine, bindparam, text

from analytics.cross_sell.errors import CrossSellError
from analytics.partitions import and_customers
from analytics.store import read_frame


def _as_date(value) -> date:
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise CrossSellError(f"as_of must be a date, not {type(value).__name__}")
    return value


def product_categories(engine: Engine) -> list[str]:
    """Every product category of the ``products`` table, sorted."""
    return read_frame(engine, "SELECT DISTINCT category FROM products ORDER BY category")["category"].astype(
        str).tolist()


def holding_balances(engine: Engine, as_of, *, customers=None) -> pd.DataFrame:
    """Balances by customer and category of the holdings open at the end of ``as_of`` (of the
    customers a filter selects, :func:`analytics.partitions.and_customers`, or of every customer).

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id``, ``category`` and ``balance`` (the sum over the customer's open
        holdings of the category, CNY), one row per pair.
    """
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.customer_id, p.category, SUM(h.balance) AS balance
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :as_of){only}
        GROUP BY h.customer_id, p.category
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": _as_date(as_of), **params})
    frame["balance"] = pd.to_numeric(frame["balance"], errors="coerce").fillna(0.0).astype(float)
    return frame


def pivot_holdings(pairs: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Customer x category booleans from (customer_id, category) pairs."""
    cust_codes, cust_ids = pd.factorize(pairs["customer_id"].astype(str), sort=True)
    position = {c: i for i, c in enumerate(categories)}
    cat_codes = pairs["category"].astype(str).map(position).to_numpy()
    matrix = np.zeros((len(cust_ids), len(categories)), dtype=bool)
    known = ~pd.isna(cat_codes)
    matrix[cust_codes[known], cat_codes[known].astype(np.int64)] = True
    return pd.DataFrame(matrix, index=pd.Index(np.asarray(cust_ids, dtype=object), name="customer_id"),
                        columns=list(categories))


def holding_matrix(engine: Engine, as_of, categories: list[str] | None = None, *, customers=None) -> pd.DataFrame:
    """Customer x product-category holdings (True = an open holding) at the end of ``as_of``.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The customer store.
    as_of : datetime.date or str
        The day; a holding counts if opened on or before it and not closed on or before it.
    categories : list of str, optional
        The columns, in order; defaults to every category of the ``products`` table, sorted.
    customers : optional
        A customer filter (:func:`analytics.partitions.and_customers`): their rows alone.

    Returns
    -------
    pandas.DataFrame
        Boolean, indexed by ``customer_id`` (sorted), customers with at least one open holding.
    """
    categories = product_categories(engine) if categories is None else list(categories)
    return pivot_holdings(holding_balances(engine, as_of, customers=customers), categories)


def acquisitions(engine: Engine, after, until, categories: list[str] | None = None, *,
                 customers=None) -> pd.DataFrame:
    """Customer x category: True when the customer opened a holding of it in ``(after, until]``
    (``customers``: a filter's customers alone, as for :func:`holding_matrix`)."""
    categories = product_categories(engine) if categories is None else list(categories)
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT DISTINCT h.customer_id, p.category
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on > :after AND h.opened_on <= :until{only}
    """).bindparams(bindparam("after", type_=Date), bindparam("until", type_=Date))
    pairs = read_frame(engine, sql, {"after": _as_date(after), "until": _as_date(until), **params})
    return pivot_holdings(pairs, categories)


__all__ = ["acquisitions", "holding_balances", "holding_matrix", "pivot_holdings", "product_categories"]
