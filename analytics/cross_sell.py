"""Cross-sell: the holding matrix, association rules, propensity models, next-best product, campaigns.

Holding matrix
--------------
:func:`holding_matrix` is one row per customer with at least one holding open at the end of the
``as_of`` day (``opened_on <= as_of`` and not closed by then), one boolean column per product
category of the ``products`` table (sorted by name; a category nobody holds is an all-False column).
Customers without any open holding are left out: they say nothing about which products go together
and would only dilute every support.

Association rules
-----------------
:func:`association_rules` finds the same rules as mlxtend's ``apriori`` followed by its
``association_rules(metric="confidence")``, with the same floating-point arithmetic, so supports,
confidences and lifts are equal to the last bit and a rule on a threshold is kept or dropped alike
(tested against mlxtend, which is only a test dependency). Itemsets are counted with boolean matrix
products over row chunks (``X.T @ X`` for pairs, prefix-column products for longer itemsets), so a
million customers by ten categories takes well under a second.

Propensity
----------
:class:`CrossSellPropensity` fits, for each category, a logistic regression of "acquires the
category within the next ``CROSS_SELL_HORIZON_MONTHS`` months" on the customer features of
:func:`analytics.features.customer_features` at a past cut-off (the run's month minus the horizon),
on the customers who did not hold the category at that cut-off; it then scores the customers who do
not hold it now. Logistic regression is fitted by maximum likelihood with an unpenalised intercept, so
its probabilities are calibrated in the large (their mean on the training rows equals the observed
rate) and, being a smooth low-variance model, well calibrated across the range as well; the hold-out
Brier score and ROC AUC of each category are stored. A category with fewer than
:data:`MIN_POSITIVES` acquisitions (or non-acquisitions) in the training sample gets its observed
rate as a constant instead (``model = "base_rate"``): too few events to learn from. At most
``CROSS_SELL_SAMPLE_SIZE`` training customers are sampled, once for all categories.

Next-best product and expected value
------------------------------------
For a customer and a category the offered product is the category's product with the highest
``annual_margin`` among those the customer may hold (risk level not above the tolerance; ties: the
lower risk level, then the product id). Its expected value is::

    expected_value = propensity * annual_margin * expected_balance

where ``expected_balance`` is the median balance of the category (summed over a holder's open
holdings of it) among current holders in the customer's value tier (by AUM, the rule of
:func:`analytics.segmentation.value_tiers`); a tier without holders uses the median of all holders,
a category without holders 0. The customer's offers are ranked by expected value (ties: category
name); rank 1 is the *next-best product*.

Guards (never relaxed)
----------------------
Every non-holder of a category is a candidate; the first rule it fails, in this order, excludes it:

1. ``expired_assessment``: the customer's risk assessment is missing (no tolerance or no assessment
   date) or older than ``RISK_ASSESSMENT_VALID_DAYS`` days at the end of the run's month. Such a
   customer gets **no recommendation at all**, not even an R1 deposit: the issue's rule is that a
   customer whose assessment has expired is not recommended to, and re-assessment comes first.
2. ``suitability``: no product of the category has a risk level at or below the customer's
   tolerance (``R`` number > ``C`` number for all of them). A product above the tolerance is never
   offered.
3. ``consent``: the customer has not agreed to marketing. They keep their next-best product (an
   adviser may discuss it when the customer comes in) but are never on a campaign list.

Closed customers are not candidates at all. :func:`campaign_list` checks the guards again against
the customer's *current* record (a consent withdrawn or a tolerance lowered after the run removes
the customer) and reports every exclusion by reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sqlalchemy import Date, Engine, bindparam, select, text
from threadpoolctl import threadpool_limits

from analytics import settings
from analytics.errors import ConfigError
from analytics.features import add_months, customer_features, month_end, to_datetime
from analytics.risk import risk_number
from analytics.runs import Laps, get_run_metrics
from analytics.schema import (
    RISK_TOLERANCES,
    cross_sell_categories,
    cross_sell_cooccurrence,
    cross_sell_customer,
    cross_sell_opportunities,
    cross_sell_rules,
    customers,
    next_best_product,
    products,
)
from analytics.segmentation import VALUE_TIERS, value_tier_thresholds, value_tiers
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

RULE_COLUMNS = ("antecedents", "consequents", "antecedent support", "consequent support", "support",
                "confidence", "lift", "leverage", "conviction")
EXCLUSION_REASONS = ("expired_assessment", "suitability", "consent")

# Below this many acquisitions (or non-acquisitions) in a category's training rows a model would
# learn noise: the category gets its observed rate instead.
MIN_POSITIVES = 20
# Share of a category's training rows held out to report AUC and Brier score.
HOLDOUT_SHARE = 0.25
# Rows scored per chunk: bounds the memory of the encoded matrix (rows x ~70 floats) at 1M customers.
SCORE_CHUNK_ROWS = 200_000
# Rows per exact float32 matrix product (every count stays below 2^24).
_EXACT_ROWS = 1 << 24

# Features the propensity models do not use. gender: a product offer must not depend on it (fair
# treatment); branch_id: 48 one-hot levels over a few hundred acquisitions overfit; status: the
# scoring population already excludes closed customers.
PROPENSITY_EXCLUDED = ("gender", "branch_id", "status")
PROPENSITY_CATEGORICAL = ("customer_type", "income_band", "onboarding_channel", "risk_tolerance",
                          "credit_grade")


class CrossSellError(ValueError):
    """Invalid input to the cross-sell analytics (a holding frame that is not 0/1, a bad threshold)."""


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def _setting_fraction(name: str, *, low_open: bool) -> float:
    value = float(settings.get(name))
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ConfigError(f"Setting {name}={value!r} must be a fraction in {'(0, 1]' if low_open else '[0, 1]'}")
    return value


def _setting_positive_int(name: str) -> int:
    value = int(settings.get(name))
    if value < 1:
        raise ConfigError(f"Setting {name}={value!r} must be a positive whole number")
    return value


def cross_sell_settings() -> dict:
    """The cross-sell settings, checked: thresholds of the rules, horizon, sample, list sizes."""
    return {
        "min_support": _setting_fraction("CROSS_SELL_MIN_SUPPORT", low_open=True),
        "min_confidence": _setting_fraction("CROSS_SELL_MIN_CONFIDENCE", low_open=False),
        "horizon_months": _setting_positive_int("CROSS_SELL_HORIZON_MONTHS"),
        "sample_size": _setting_positive_int("CROSS_SELL_SAMPLE_SIZE"),
        "top_n": _setting_positive_int("CROSS_SELL_TOP_N"),
        "campaign_size": _setting_positive_int("CROSS_SELL_CAMPAIGN_SIZE"),
        "valid_days": _setting_positive_int("RISK_ASSESSMENT_VALID_DAYS"),
    }


# ---------------------------------------------------------------------------------------------
# Holding matrix
# ---------------------------------------------------------------------------------------------


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


def holding_balances(engine: Engine, as_of) -> pd.DataFrame:
    """Balances by customer and category of the holdings open at the end of ``as_of``.

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id``, ``category`` and ``balance`` (the sum over the customer's open
        holdings of the category, CNY), one row per pair.
    """
    sql = text("""
        SELECT h.customer_id, p.category, SUM(h.balance) AS balance
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :as_of)
        GROUP BY h.customer_id, p.category
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": _as_date(as_of)})
    frame["balance"] = pd.to_numeric(frame["balance"], errors="coerce").fillna(0.0).astype(float)
    return frame


def _pivot_holdings(pairs: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Customer x category booleans from (customer_id, category) pairs."""
    cust_codes, cust_ids = pd.factorize(pairs["customer_id"].astype(str), sort=True)
    position = {c: i for i, c in enumerate(categories)}
    cat_codes = pairs["category"].astype(str).map(position).to_numpy()
    matrix = np.zeros((len(cust_ids), len(categories)), dtype=bool)
    known = ~pd.isna(cat_codes)
    matrix[cust_codes[known], cat_codes[known].astype(np.int64)] = True
    return pd.DataFrame(matrix, index=pd.Index(np.asarray(cust_ids, dtype=object), name="customer_id"),
                        columns=list(categories))


def holding_matrix(engine: Engine, as_of, categories: list[str] | None = None) -> pd.DataFrame:
    """Customer x product-category holdings (True = an open holding) at the end of ``as_of``.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The customer store.
    as_of : datetime.date or str
        The day; a holding counts if opened on or before it and not closed on or before it.
    categories : list of str, optional
        The columns, in order; defaults to every category of the ``products`` table, sorted.

    Returns
    -------
    pandas.DataFrame
        Boolean, indexed by ``customer_id`` (sorted), customers with at least one open holding.
    """
    categories = product_categories(engine) if categories is None else list(categories)
    return _pivot_holdings(holding_balances(engine, as_of), categories)


def acquisitions(engine: Engine, after, until, categories: list[str] | None = None) -> pd.DataFrame:
    """Customer x category: True when the customer opened a holding of it in ``(after, until]``."""
    categories = product_categories(engine) if categories is None else list(categories)
    sql = text("""
        SELECT DISTINCT h.customer_id, p.category
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE h.opened_on > :after AND h.opened_on <= :until
    """).bindparams(bindparam("after", type_=Date), bindparam("until", type_=Date))
    pairs = read_frame(engine, sql, {"after": _as_date(after), "until": _as_date(until)})
    return _pivot_holdings(pairs, categories)


def cooccurrence(holdings: pd.DataFrame) -> pd.DataFrame:
    """Customers holding both categories (diagonal: holders of one), a category x category frame."""
    counts = _gram(_as_bool_matrix(holdings).astype(np.float32))
    return pd.DataFrame(counts, index=holdings.columns, columns=holdings.columns)


# ---------------------------------------------------------------------------------------------
# Association rules
# ---------------------------------------------------------------------------------------------


def _as_bool_matrix(holdings: pd.DataFrame) -> np.ndarray:
    """The frame as an (n, p) boolean array; every column must be boolean or 0/1 without missing."""
    if not isinstance(holdings, pd.DataFrame):
        raise CrossSellError(f"holdings must be a pandas DataFrame, not {type(holdings).__name__}")
    if holdings.columns.has_duplicates:
        raise CrossSellError("holdings has duplicate column names")
    out = np.empty(holdings.shape, dtype=bool)
    for j, name in enumerate(holdings.columns):
        col = holdings.iloc[:, j]
        if col.isna().any():
            raise CrossSellError(f"Column {name!r} of holdings has missing values; use 0/1 or True/False")
        if pd.api.types.is_bool_dtype(col.dtype):
            out[:, j] = col.to_numpy(dtype=bool)
        elif pd.api.types.is_numeric_dtype(col.dtype):
            values = col.to_numpy(dtype=float)
            if not np.isin(values, (0.0, 1.0)).all():
                raise CrossSellError(f"Column {name!r} of holdings must hold only 0 and 1")
            out[:, j] = values == 1.0
        else:
            raise CrossSellError(f"Column {name!r} of holdings must be boolean or 0/1, not {col.dtype}")
    return out


def _gram(block: np.ndarray) -> np.ndarray:
    """``block.T @ block`` as exact int64 counts for a 0/1 float32 block."""
    counts = np.zeros((block.shape[1], block.shape[1]), dtype=np.int64)
    # Float32 holds every integer up to 2^24 exactly: sum at most that many rows per product.
    for start in range(0, block.shape[0], _EXACT_ROWS):
        part = block[start:start + _EXACT_ROWS]
        counts += np.rint(part.T @ part).astype(np.int64)
    return counts


def _frequent_itemsets(x: np.ndarray, min_support: float, max_len: int | None) -> dict[tuple[int, ...], float]:
    """Every itemset (sorted column positions) of at most ``max_len`` items with support >= min_support.

    Apriori by levels: a (k+1)-itemset can only be frequent if the k-itemset of its first k items
    is. Candidates ``Q + (a, b)`` (with ``Q + (a,)`` frequent, ``b > a``) are counted for a whole
    condition ``Q`` at once: the rows holding all of ``Q``, then one Gram matrix ``X.T @ X`` over
    them counts every ``(a, b)``. Support is anti-monotone, so this finds exactly the itemsets
    mlxtend's apriori (join and prune) finds; supports are ``count / float(n)``, the expression
    mlxtend evaluates, so a support on the threshold is decided alike.
    """
    n = x.shape[0]
    singles = x.sum(axis=0) / float(n)
    items = np.flatnonzero(singles >= min_support)
    frequent: dict[tuple[int, ...], float] = {(int(j),): float(singles[j]) for j in items}
    if len(items) == 0:
        return frequent
    xf = x[:, items].astype(np.float32)  # only frequent items can be in a frequent itemset
    level: list[tuple[int, ...]] = [(p,) for p in range(len(items))]  # positions in `items`
    k = 1
    while level and (max_len is None or k < max_len):
        by_condition: dict[tuple[int, ...], list[int]] = {}
        for itemset in level:
            by_condition.setdefault(itemset[:-1], []).append(itemset[-1])
        next_level = []
        for condition, lasts in by_condition.items():
            if len(lasts) < 2:
                continue
            rows = xf if not condition else xf[x[:, items[list(condition)]].all(axis=1)]
            support = _gram(rows) / float(n)
            for i, a in enumerate(lasts):
                for b in lasts[i + 1:]:
                    # b is frequent after a: its k-itemset Q + (b,) is frequent too (pre-pruned).
                    if support[a, b] >= min_support:
                        itemset = (*condition, a, b)
                        next_level.append(itemset)
                        frequent[tuple(int(items[q]) for q in itemset)] = float(support[a, b])
        level = sorted(next_level)
        k += 1
    return frequent


def association_rules(holdings: pd.DataFrame, min_support: float, min_confidence: float,
                      max_len: int | None = 3) -> pd.DataFrame:
    """Association rules between the columns of a 0/1 holding frame, sorted by lift.

    Gives exactly the rules of ``mlxtend.frequent_patterns.apriori(holdings, min_support,
    use_colnames=True, max_len=max_len)`` followed by ``association_rules(frequent,
    metric="confidence", min_threshold=min_confidence)``, with the same metric values.

    Parameters
    ----------
    holdings : pandas.DataFrame
        One row per customer (basket), one boolean or 0/1 column per product; no missing values.
    min_support : float
        Smallest support, in (0, 1], of an itemset behind a rule: ``count / rows >= min_support``.
    min_confidence : float
        Smallest confidence, in [0, 1], of a rule kept.
    max_len : int or None
        Largest itemset (antecedent plus consequent); None for no limit.

    Returns
    -------
    pandas.DataFrame
        Columns ``antecedents`` and ``consequents`` (frozensets of column names), ``antecedent
        support``, ``consequent support``, ``support`` (of both), ``confidence`` (support /
        antecedent support), ``lift`` (confidence / consequent support), ``leverage`` (support -
        antecedent support * consequent support) and ``conviction`` ((1 - consequent support) /
        (1 - confidence), inf when confidence is 1). Sorted by lift descending; lifts equal to 12
        decimals are ties (A -> B and B -> A have the same lift, but rounding may differ in the last
        bit), broken by support descending, confidence descending, the smaller antecedent, then the
        column order of the antecedent's and consequent's items. Index 0..n-1. Empty (same columns)
        when nothing qualifies, where mlxtend raises on an empty itemset frame.

    Raises
    ------
    CrossSellError
        On a frame that is not 0/1 or boolean, or thresholds out of range.
    """
    if not 0.0 < float(min_support) <= 1.0:
        raise CrossSellError(f"min_support must be in (0, 1], got {min_support!r}")
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise CrossSellError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    if max_len is not None and (isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1):
        raise CrossSellError(f"max_len must be a positive whole number or None, got {max_len!r}")
    x = _as_bool_matrix(holdings)
    names = list(holdings.columns)
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in ("antecedents", "consequents") else float)
                          for c in RULE_COLUMNS})
    if x.shape[0] == 0:
        return empty
    frequent = _frequent_itemsets(x, float(min_support), None if max_len is None else int(max_len))
    rules = []
    for itemset in sorted(frequent, key=lambda s: (len(s), s)):
        if len(itemset) < 2:
            continue
        s_ac = frequent[itemset]
        for size in range(len(itemset) - 1, 0, -1):
            for ante in combinations(itemset, size):
                cons = tuple(i for i in itemset if i not in ante)
                s_a, s_c = frequent[ante], frequent[cons]
                confidence = s_ac / s_a  # mlxtend's expression, so the threshold decides alike
                if confidence >= min_confidence:
                    rules.append((ante, cons, s_a, s_c, s_ac, confidence, confidence / s_c))
    if not rules:
        return empty
    rules.sort(key=lambda r: (-round(r[6], 12), -r[4], -r[5], len(r[0]), r[0], r[1]))
    s_a = np.array([r[2] for r in rules])
    s_c = np.array([r[3] for r in rules])
    s_ac = np.array([r[4] for r in rules])
    confidence = np.array([r[5] for r in rules])
    conviction = np.full(len(rules), np.inf)
    below = confidence < 1.0
    conviction[below] = (1.0 - s_c[below]) / (1.0 - confidence[below])
    return pd.DataFrame({
        "antecedents": [frozenset(names[i] for i in r[0]) for r in rules],
        "consequents": [frozenset(names[i] for i in r[1]) for r in rules],
        "antecedent support": s_a,
        "consequent support": s_c,
        "support": s_ac,
        "confidence": confidence,
        "lift": np.array([r[6] for r in rules]),
        "leverage": s_ac - s_a * s_c,
        "conviction": conviction,
    })


def itemset_text(items) -> str:
    """A rule side as stored: a JSON array of the category names, sorted."""
    return json.dumps(sorted(str(i) for i in items), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Propensity
# ---------------------------------------------------------------------------------------------


def _signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def propensity_columns(features: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The numeric and categorical columns of a feature frame the propensity models use."""
    categorical = [c for c in PROPENSITY_CATEGORICAL if c in features.columns]
    numeric = [c for c in features.columns
               if c not in categorical and c not in PROPENSITY_EXCLUDED
               and (pd.api.types.is_numeric_dtype(features[c].dtype) or pd.api.types.is_bool_dtype(features[c].dtype))]
    return numeric, categorical


def _prepare(features: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numeric columns as float, categorical ones as plain strings with "(missing)" for NaN."""
    out = pd.DataFrame(index=features.index)
    for col in numeric:
        out[col] = features[col].astype(float) if col in features.columns else np.nan
    for col in categorical:
        values = features[col] if col in features.columns else pd.Series(np.nan, index=features.index)
        out[col] = np.where(values.isna().to_numpy(), "(missing)", values.astype(object).astype(str)).astype(object)
    return out


class CrossSellPropensity(ClassifierMixin, BaseEstimator):
    """One calibrated propensity model per product category, on one shared feature encoding.

    Logistic regression on the customer features: numeric features median-imputed (with missing
    indicators), signed-``log1p`` (balances and counts are long-tailed) and standardised;
    categorical ones one-hot encoded (levels under 0.1 % pooled). A category with fewer than
    ``min_positives`` events (or non-events) in its training rows gets a constant, its observed rate.

    Why logistic regression: on the 100k-customer demo store it matched or beat a
    ``HistGradientBoostingClassifier`` in hold-out ROC AUC and Brier score on every category with
    50+ acquisitions (e.g. funds 0.95 vs 0.91 AUC, precious metal 0.86 vs 0.31), at a fifth of the
    fitting time, and it is calibrated by construction. Its limit: effects are monotone in each
    (signed-log) feature, so a window such as "ages 25-60 only" is learnt as a slope.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength of the logistic regressions.
    min_positives : int
        Fewest acquisitions, and fewest non-acquisitions, a category needs for a fitted model.
    holdout_share : float
        Share of each category's training rows held out for the reported AUC and Brier score.
    sample_size : int
        At most this many training rows (sampled once, for every category).
    random_state : int
        Seeds the sample and the hold-out split.

    Attributes
    ----------
    categories_ : list of str
    models_ : dict
        Per category, a fitted :class:`~sklearn.linear_model.LogisticRegression` or a float rate.
    encoder_ : sklearn.compose.ColumnTransformer
    report_ : pandas.DataFrame
        Per category: ``model`` (logistic, base_rate, none), ``train_rows``, ``train_positives``,
        ``holdout_rows``, ``holdout_positives``, ``holdout_auc``, ``holdout_brier``.
    """

    def __init__(self, C=1.0, min_positives=MIN_POSITIVES, holdout_share=HOLDOUT_SHARE, sample_size=200_000,
                 random_state=0):
        self.C = C
        self.min_positives = min_positives
        self.holdout_share = holdout_share
        self.sample_size = sample_size
        self.random_state = random_state

    def _encoder(self, numeric: list[str], categorical: list[str]) -> ColumnTransformer:
        parts = []
        if numeric:
            parts.append(("num", make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                FunctionTransformer(_signed_log1p), StandardScaler()), numeric))
        if categorical:
            parts.append(("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.001,
                                               sparse_output=False), categorical))
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)

    def fit(self, X: pd.DataFrame, Y: pd.DataFrame, exclude: pd.DataFrame | None = None):
        """Fit one model per column of ``Y``; return self.

        Parameters
        ----------
        X : pandas.DataFrame
            Customer features at the training cut-off (rows = customers).
        Y : pandas.DataFrame
            Same index; one boolean column per category: acquired within the horizon.
        exclude : pandas.DataFrame, optional
            Same index and columns as ``Y``; True where the customer already held the category at
            the cut-off (not at risk of acquiring it: left out of that category's training rows).
        """
        # One BLAS/OpenMP thread: on a busy 2-core host threads spin-waiting made these fits 4-5x
        # slower in our measurements (17 s instead of 3.8 s for 100k customers), as in segmentation.
        with threadpool_limits(limits=1):
            return self._fit(X, Y, exclude)

    def _fit(self, X: pd.DataFrame, Y: pd.DataFrame, exclude: pd.DataFrame | None):
        if not isinstance(X, pd.DataFrame) or not isinstance(Y, pd.DataFrame):
            raise CrossSellError("X and Y must be pandas DataFrames")
        if not X.index.equals(Y.index):
            raise CrossSellError("X and Y must have the same index")
        exclude = (pd.DataFrame(False, index=Y.index, columns=Y.columns) if exclude is None
                   else exclude.reindex(index=Y.index, columns=Y.columns, fill_value=False))
        self.categories_ = [str(c) for c in Y.columns]
        rng = np.random.default_rng(self.random_state)
        n = len(X)
        rows = np.sort(rng.choice(n, int(self.sample_size), replace=False)) if n > self.sample_size else np.arange(n)
        numeric, categorical = propensity_columns(X)
        self.numeric_features_, self.categorical_features_ = numeric, categorical
        sample = _prepare(X.iloc[rows], numeric, categorical)
        # No training rows at all (a store younger than the horizon): every category is "none".
        self.encoder_ = self._encoder(numeric, categorical).fit(sample) if len(sample) else None
        z = self.encoder_.transform(sample) if self.encoder_ is not None else np.empty((0, 0))
        y_all = Y.iloc[rows].to_numpy(dtype=bool)
        at_risk = ~exclude.iloc[rows].to_numpy(dtype=bool)
        self.models_, report = {}, []
        for k, category in enumerate(self.categories_):
            idx = np.flatnonzero(at_risk[:, k])
            y = y_all[idx, k]
            perm = rng.permutation(len(idx))
            cut = int(round(len(idx) * self.holdout_share))
            hold, train = perm[:cut], perm[cut:]
            pos = int(y[train].sum())
            row = {"category": category, "train_rows": len(train), "train_positives": pos,
                   "holdout_rows": len(hold), "holdout_positives": int(y[hold].sum()),
                   "holdout_auc": None, "holdout_brier": None}
            if len(idx) == 0:
                self.models_[category] = 0.0
                row["model"] = "none"
            elif pos < self.min_positives or len(train) - pos < self.min_positives:
                self.models_[category] = float(y.mean())
                row["model"] = "base_rate"
            else:
                model = LogisticRegression(C=self.C, max_iter=2000)
                model.fit(z[idx[train]], y[train])
                self.models_[category] = model
                row["model"] = "logistic"
            if len(hold):
                p = self._predict_one(category, z[idx[hold]])
                row["holdout_brier"] = float(brier_score_loss(y[hold], p)) if len(hold) else None
                if 0 < row["holdout_positives"] < len(hold):
                    row["holdout_auc"] = float(roc_auc_score(y[hold], p))
            report.append(row)
        self.report_ = pd.DataFrame(report).set_index("category") if report else pd.DataFrame()
        self.classes_ = np.array([False, True])
        return self

    def _predict_one(self, category: str, z: np.ndarray) -> np.ndarray:
        model = self.models_[category]
        if isinstance(model, float):
            return np.full(len(z), model)
        return model.predict_proba(z)[:, 1]

    def predict_proba(self, X: pd.DataFrame, exclude: pd.DataFrame | None = None) -> pd.DataFrame:
        """P(acquire within the horizon) per customer and category; NaN where ``exclude`` is True.

        Unlike a plain classifier this returns a frame (rows of ``X`` x categories), since every
        category has its own model; rows are encoded once, in chunks, for all of them.
        """
        out = np.full((len(X), len(self.categories_)), np.nan)
        skip = (np.zeros(out.shape, dtype=bool) if exclude is None
                else exclude.reindex(index=X.index, columns=self.categories_, fill_value=False).to_numpy(dtype=bool))
        with threadpool_limits(limits=1):
            self._score(X, out)
        out[skip] = np.nan
        return pd.DataFrame(out, index=X.index, columns=self.categories_)

    def _score(self, X: pd.DataFrame, out: np.ndarray) -> None:
        for start in range(0, len(X), SCORE_CHUNK_ROWS):
            chunk = X.iloc[start:start + SCORE_CHUNK_ROWS]
            z = (self.encoder_.transform(_prepare(chunk, self.numeric_features_, self.categorical_features_))
                 if self.encoder_ is not None else np.empty((len(chunk), 0)))
            for k, category in enumerate(self.categories_):
                out[start:start + len(chunk), k] = self._predict_one(category, z)


# ---------------------------------------------------------------------------------------------
# Next-best product and guards
# ---------------------------------------------------------------------------------------------


def assessment_valid(risk_tolerance, assessment_age_days, valid_days: int) -> np.ndarray:
    """True where a tolerance is recorded and the assessment is at most ``valid_days`` days old.

    Missing tolerance or assessment date (age NaN) is not valid; a date after the reference day
    (negative age) counts as valid: it is the data-quality rules' business, not a reason to withhold
    the customer's own tolerance.
    """
    age = np.asarray(assessment_age_days, dtype=float)
    return (risk_number(risk_tolerance, "C") > 0) & ~np.isnan(age) & (np.nan_to_num(age, nan=np.inf) <= valid_days)


def best_products(products_frame: pd.DataFrame, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The product offered per category and tolerance: highest margin within the tolerance.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``index[k, c]`` the row of ``products_frame`` offered for category ``k`` to tolerance
        ``c`` (0 = unknown, 1..5 = C1..C5), -1 when none is allowed; ``margin[k, c]`` its margin.
    """
    risk = risk_number(products_frame["risk_level"], "R")
    margin = products_frame["annual_margin"].astype(float).to_numpy()
    cats = products_frame["category"].astype(str).to_numpy()
    pids = products_frame["product_id"].astype(str).to_numpy()
    index = np.full((len(categories), len(RISK_TOLERANCES) + 1), -1, dtype=np.int64)
    for k, category in enumerate(categories):
        rows = [r for r in np.flatnonzero(cats == category) if risk[r] > 0]
        # Highest margin first; ties: the lower risk level, then the product id.
        rows.sort(key=lambda r: (-margin[r], risk[r], pids[r]))
        for tol in range(1, len(RISK_TOLERANCES) + 1):
            allowed = [r for r in rows if risk[r] <= tol]
            if allowed:
                index[k, tol] = allowed[0]
    margins = np.where(index >= 0, margin[np.maximum(index, 0)] if len(margin) else 0.0, 0.0)
    return index, margins


def expected_balances(balances: pd.DataFrame, tiers: pd.Series, categories: list[str]) -> pd.DataFrame:
    """Median category balance among holders per value tier (tier x category), with fallbacks.

    A tier without holders of a category takes the median over all its holders; a category nobody
    holds gets 0. Holders whose customer is missing from ``tiers`` count in the all-tier median only.
    """
    out = pd.DataFrame(0.0, index=list(VALUE_TIERS), columns=list(categories))
    if balances.empty:
        return out
    frame = balances.assign(value_tier=balances["customer_id"].map(tiers.astype(object)))
    overall = frame.groupby("category")["balance"].median()
    by_tier = frame.dropna(subset=["value_tier"]).groupby(["value_tier", "category"])["balance"].median()
    for category in categories:
        for tier in VALUE_TIERS:
            if (tier, category) in by_tier.index:
                out.loc[tier, category] = float(by_tier[(tier, category)])
            elif category in overall.index:
                out.loc[tier, category] = float(overall[category])
    return out


@dataclass
class Recommendations:
    """What :func:`recommend` returns.

    Attributes
    ----------
    offers : pandas.DataFrame
        Stored offers: ``customer_id``, ``category``, ``product_id``, ``rank``, ``propensity``,
        ``expected_value``, ``marketing_consent``; each customer's ``top_n`` best plus each category's
        ``campaign_size`` best consenting customers. Every row passes the guards.
    funnel : pandas.DataFrame
        Per category: ``non_holders``, ``excluded_expired_assessment``, ``excluded_suitability``,
        ``eligible``, ``excluded_no_consent``, ``campaign_pool``, ``expected_value_total``,
        ``mean_propensity``.
    opportunities : pandas.DataFrame
        Per (category, product_id) offered: ``customers``, ``consenting_customers``,
        ``next_best_customers``, ``expected_value_total``, ``consenting_expected_value_total``,
        ``mean_propensity``.
    no_offer : dict
        Customers without any offer, by reason: ``holds_everything``, ``expired_assessment``,
        ``suitability`` (nothing allowed among what they lack).
    customers : pandas.DataFrame or None
        One row per customer (the index of the propensity frame): ``next_best_category``,
        ``next_best_product_id``, ``next_best_expected_value`` (the rank-1 offer; missing when none)
        and ``no_offer_reason`` (missing when there is an offer; else a key of ``no_offer``).
    """

    offers: pd.DataFrame
    funnel: pd.DataFrame
    opportunities: pd.DataFrame
    no_offer: dict
    customers: pd.DataFrame | None = None


def recommend(propensity: pd.DataFrame, customer_frame: pd.DataFrame, products_frame: pd.DataFrame,
              balance_by_tier: pd.DataFrame, *, top_n: int = 3, campaign_size: int = 20_000) -> Recommendations:
    """Next-best products with expected value, under the guards of the module docstring.

    Parameters
    ----------
    propensity : pandas.DataFrame
        Customers x categories, P(acquire); NaN where the customer holds the category (or is not
        a candidate for it).
    customer_frame : pandas.DataFrame
        Same index: ``risk_tolerance`` (C1..C5 or missing), ``assessment_valid`` (bool),
        ``marketing_consent`` (bool) and ``value_tier``.
    products_frame : pandas.DataFrame
        ``product_id``, ``category``, ``risk_level`` (R1..R5) and ``annual_margin``.
    balance_by_tier : pandas.DataFrame
        Value tier x category expected balance (:func:`expected_balances`).
    top_n : int
        Offers kept per customer.
    campaign_size : int
        Consenting customers kept per category, best expected value first, for campaign lists.

    Returns
    -------
    Recommendations
    """
    for col in ("risk_tolerance", "assessment_valid", "marketing_consent", "value_tier"):
        if col not in customer_frame.columns:
            raise CrossSellError(f"Required column {col} missing")
    categories = [str(c) for c in propensity.columns]
    cust = customer_frame.reindex(propensity.index)
    n, k_count = propensity.shape
    p = propensity.to_numpy(dtype=float)
    tol = risk_number(cust["risk_tolerance"], "C")
    valid = cust["assessment_valid"].fillna(False).to_numpy(dtype=bool) & (tol > 0)
    consent = cust["marketing_consent"].fillna(False).to_numpy(dtype=bool)
    tier_pos = {t: i for i, t in enumerate(VALUE_TIERS)}
    tier = cust["value_tier"].astype(object).map(tier_pos).fillna(0).to_numpy(dtype=np.int64)
    offer_index, offer_margin = best_products(products_frame, categories)
    eb = balance_by_tier.reindex(index=list(VALUE_TIERS), columns=categories).fillna(0.0).to_numpy(dtype=float)

    non_holder = ~np.isnan(p)
    product_row = offer_index[np.arange(k_count)[None, :], tol[:, None]]  # (n, K), -1 = none allowed
    expired = non_holder & ~valid[:, None]
    unsuitable = non_holder & valid[:, None] & (product_row < 0)
    eligible = non_holder & valid[:, None] & (product_row >= 0)
    campaign = eligible & consent[:, None]
    margin = offer_margin[np.arange(k_count)[None, :], tol[:, None]]
    ev = np.where(eligible, np.nan_to_num(p) * margin * eb[tier], 0.0)

    # Rank each customer's eligible offers by expected value; a stable sort leaves ties in category order.
    key = np.where(eligible, -ev, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    rank = np.empty((n, k_count), dtype=np.int64)
    rank[np.arange(n)[:, None], order] = np.arange(1, k_count + 1)[None, :]
    keep = eligible & (rank <= top_n)
    # Each category's best consenting customers; ties by position (the index, sorted by the caller).
    for k in range(k_count):
        rows = np.flatnonzero(campaign[:, k])
        if len(rows) > campaign_size:
            rows = rows[np.argsort(-ev[rows, k], kind="stable")[:campaign_size]]
        keep[rows, k] = True

    pids = products_frame["product_id"].astype(str).to_numpy()
    r_i, r_k = np.nonzero(keep)
    offers = pd.DataFrame({
        "customer_id": propensity.index.to_numpy()[r_i],
        "category": np.asarray(categories, dtype=object)[r_k],
        "product_id": pids[product_row[r_i, r_k]] if len(r_i) else np.array([], dtype=object),
        "rank": rank[r_i, r_k],
        "propensity": p[r_i, r_k],
        "expected_value": ev[r_i, r_k],
        "marketing_consent": consent[r_i],
    })

    with np.errstate(invalid="ignore"):
        mean_p = [float(np.nanmean(np.where(eligible[:, k], p[:, k], np.nan))) if eligible[:, k].any() else None
                  for k in range(k_count)]
    funnel = pd.DataFrame({
        "category": categories,
        "non_holders": non_holder.sum(axis=0),
        "excluded_expired_assessment": expired.sum(axis=0),
        "excluded_suitability": unsuitable.sum(axis=0),
        "eligible": eligible.sum(axis=0),
        "excluded_no_consent": (eligible & ~consent[:, None]).sum(axis=0),
        "campaign_pool": campaign.sum(axis=0),
        "expected_value_total": ev.sum(axis=0),
        "mean_propensity": mean_p,
    })

    e_i, e_k = np.nonzero(eligible)
    opp = pd.DataFrame({
        "category": np.asarray(categories, dtype=object)[e_k],
        "product_id": pids[product_row[e_i, e_k]] if len(e_i) else np.array([], dtype=object),
        "consenting": consent[e_i],
        "next_best": rank[e_i, e_k] == 1,
        "expected_value": ev[e_i, e_k],
        "propensity": p[e_i, e_k],
    })
    opp["consenting_ev"] = np.where(opp["consenting"], opp["expected_value"], 0.0)
    opportunities = (opp.groupby(["category", "product_id"], sort=True)
                     .agg(customers=("expected_value", "size"), consenting_customers=("consenting", "sum"),
                          next_best_customers=("next_best", "sum"), expected_value_total=("expected_value", "sum"),
                          consenting_expected_value_total=("consenting_ev", "sum"),
                          mean_propensity=("propensity", "mean"))
                     .reset_index())

    has_offer = eligible.any(axis=1)
    lacks_some = non_holder.any(axis=1)
    reason_masks = {
        "holds_everything": ~lacks_some,
        "expired_assessment": lacks_some & ~valid,
        "suitability": lacks_some & valid & ~has_offer,
    }
    no_offer = {reason: int(mask.sum()) for reason, mask in reason_masks.items()}

    # Each customer's rank-1 offer (the first of the ranking order when there is any eligible one).
    best_k = order[:, 0] if k_count else np.zeros(n, dtype=np.int64)
    rows_all = np.arange(n)
    reason = np.full(n, None, dtype=object)
    for name, mask in reason_masks.items():
        reason[mask] = name
    best_row = product_row[rows_all, best_k] if k_count else np.full(n, -1, dtype=np.int64)
    customers_out = pd.DataFrame({
        "next_best_category": np.where(has_offer, np.asarray(categories, dtype=object)[best_k] if k_count
                                       else None, None),
        "next_best_product_id": np.where(has_offer, pids[np.maximum(best_row, 0)] if len(pids) else None, None),
        "next_best_expected_value": np.where(has_offer, ev[rows_all, best_k] if k_count else np.nan, np.nan),
        "no_offer_reason": reason,
    }, index=propensity.index)
    return Recommendations(offers=offers, funnel=funnel, opportunities=opportunities, no_offer=no_offer,
                           customers=customers_out)


def propensity_json(propensity: pd.DataFrame, decimals: int = 4) -> np.ndarray:
    """Each row of ``propensity`` as a JSON object ``{category: probability}``, NaN cells left out.

    The cells are probabilities (clipped to [0, 1]), written rounded to ``decimals``; a row of NaN
    only gives ``'{}'``. Built without per-cell formatting: at ``decimals`` places a probability takes
    one of ``10**decimals + 1`` values, each formatted once per category and picked by index, so a
    million rows by ten categories takes about a second.
    """
    scale = 10 ** int(decimals)
    values = propensity.to_numpy(dtype=float)
    parts = []
    for k, category in enumerate(propensity.columns):
        col = values[:, k]
        present = ~np.isnan(col)
        if not present.any():
            continue
        prefix = ", " + json.dumps(str(category)) + ": "
        # i / scale is the double nearest to the decimal, as round() gives: its repr is the short
        # decimal itself ("0.1234", "1.0", "0.0"), valid JSON.
        table = np.array([prefix + repr(i / scale) for i in range(scale + 1)] + [""], dtype=object)
        idx = np.rint(np.clip(np.nan_to_num(col), 0.0, 1.0) * scale).astype(np.int64)
        parts.append(table[np.where(present, idx, scale + 1)])
    if not parts:
        return np.full(len(values), "{}", dtype=object)
    return np.array(["{" + "".join(row)[2:] + "}" for row in zip(*parts, strict=True)], dtype=object)


# ---------------------------------------------------------------------------------------------
# The refresh stage
# ---------------------------------------------------------------------------------------------


def _customer_rows(per_customer: pd.DataFrame, propensity: pd.DataFrame, closed_ids: pd.Index) -> pd.DataFrame:
    """The ``cross_sell_customer`` rows: the scored customers, then the closed ones (no offer, ``'{}'``).

    Closed customers are not candidates and are not scored, so their propensities are empty.
    """
    scored = per_customer.reindex(propensity.index)
    rows = pd.DataFrame({
        "customer_id": propensity.index.to_numpy(dtype=object),
        "next_best_category": scored["next_best_category"].to_numpy(dtype=object),
        "next_best_product_id": scored["next_best_product_id"].to_numpy(dtype=object),
        "next_best_expected_value": scored["next_best_expected_value"].to_numpy(dtype=float),
        "no_offer_reason": scored["no_offer_reason"].to_numpy(dtype=object),
        "propensities": propensity_json(propensity),
    })
    if len(closed_ids) == 0:
        return rows
    closed = pd.DataFrame({
        "customer_id": closed_ids.to_numpy(dtype=object),
        "next_best_category": None, "next_best_product_id": None, "next_best_expected_value": np.nan,
        "no_offer_reason": "closed", "propensities": "{}",
    })
    return pd.concat([rows, closed], ignore_index=True)


def cross_sell_stage(ctx) -> None:
    """The refresh stage ``cross_sell``: rules, propensities, next-best products, written per run.

    Writes ``cross_sell_rules``, ``cross_sell_cooccurrence``, ``next_best_product``,
    ``cross_sell_customer`` (one row per customer, closed ones included), ``cross_sell_categories``
    and ``cross_sell_opportunities`` under ``ctx.run_id`` in one transaction, and headline metrics (``cross_sell.*``) in ``run_metrics``.
    """
    if ctx.as_of_month is None:
        log.info("cross_sell: no activity data, nothing to do")
        ctx.put_metrics({"cross_sell.customers_scored": 0})
        return
    conf = cross_sell_settings()
    value_tier_thresholds()  # a bad tier setting fails here, before minutes of work
    chunk = int(settings.get("LOAD_CHUNK_ROWS"))
    lap = Laps()
    timings = lap.seconds

    engine = ctx.engine
    m0 = ctx.as_of_month
    as_of = month_end(m0)
    train_month = add_months(m0, -conf["horizon_months"])
    train_end = month_end(train_month)
    categories = product_categories(engine)
    if not categories:
        ctx.put_metrics({"cross_sell.customers_scored": 0})
        return
    products_frame = read_frame(engine, select(products.c.product_id, products.c.category, products.c.risk_level,
                                               products.c.annual_margin).order_by(products.c.product_id))

    balances = holding_balances(engine, as_of)
    held = _pivot_holdings(balances, categories)
    rules = association_rules(held, conf["min_support"], conf["min_confidence"], max_len=3)
    cooc = cooccurrence(held)
    lap("rules")

    # The past cut-off first, and dropped once fitted: the two feature frames (half a gigabyte each
    # at a million customers) are never held together.
    train_features = customer_features(engine, train_month)
    held_then = holding_matrix(engine, train_end, categories).reindex(train_features.index, fill_value=False)
    acquired = acquisitions(engine, train_end, as_of, categories).reindex(train_features.index, fill_value=False)
    lap("training_data")
    model = CrossSellPropensity(sample_size=conf["sample_size"], random_state=0)
    model.fit(train_features, acquired, exclude=held_then)
    del train_features, held_then, acquired
    lap("fit")

    features = customer_features(engine, m0, with_status=True)
    lap("features")
    tiers = value_tiers(features["aum_latest"]).astype(str)
    # Reassigned, not copied beside the full frame: closed customers are not candidates.
    closed_ids = features.index[features["status"].astype(object) == "closed"]
    population = features[features["status"].astype(object) != "closed"]
    del features
    held_now = held.reindex(index=population.index, columns=categories, fill_value=False)
    propensity = model.predict_proba(population, exclude=held_now)
    lap("score")

    customer_frame = pd.DataFrame({
        "risk_tolerance": population["risk_tolerance"],
        "assessment_valid": assessment_valid(population["risk_tolerance"],
                                             population["risk_assessment_age_days"], conf["valid_days"]),
        "marketing_consent": population["marketing_consent"].astype(bool),
        "value_tier": tiers.reindex(population.index),
    }, index=population.index)
    balance_by_tier = expected_balances(balances, tiers, categories)
    result = recommend(propensity, customer_frame, products_frame, balance_by_tier, top_n=conf["top_n"],
                       campaign_size=conf["campaign_size"])
    lap("recommend")

    report = model.report_.reindex(categories)
    funnel = result.funnel.set_index("category")
    holders = held.sum(axis=0)
    overall_balance = balances.groupby("category")["balance"].median()
    category_rows = pd.DataFrame({
        "category": categories,
        "holders": [int(holders.get(c, 0)) for c in categories],
        **{col: funnel[col].reindex(categories).to_numpy() for col in
           ("non_holders", "excluded_expired_assessment", "excluded_suitability", "eligible",
            "excluded_no_consent", "campaign_pool", "expected_value_total", "mean_propensity")},
        "expected_balance": [float(overall_balance[c]) if c in overall_balance.index else None for c in categories],
        "model": report["model"].fillna("none").to_numpy(),
        **{col: report[col].fillna(0).astype(int).to_numpy() for col in
           ("train_rows", "train_positives", "holdout_rows", "holdout_positives")},
        "holdout_auc": report["holdout_auc"].to_numpy(),
        "holdout_brier": report["holdout_brier"].to_numpy(),
    })
    rule_rows = pd.DataFrame({
        "rule_no": np.arange(1, len(rules) + 1),
        "antecedents": [itemset_text(s) for s in rules["antecedents"]],
        "consequents": [itemset_text(s) for s in rules["consequents"]],
        "antecedent_support": rules["antecedent support"].to_numpy(dtype=float),
        "consequent_support": rules["consequent support"].to_numpy(dtype=float),
        "support": rules["support"].to_numpy(dtype=float),
        "confidence": rules["confidence"].to_numpy(dtype=float),
        "lift": rules["lift"].to_numpy(dtype=float),
    })
    a, b = np.nonzero(np.triu(np.ones((len(categories), len(categories)), dtype=bool)))
    cooc_rows = pd.DataFrame({"category_a": np.asarray(categories, dtype=object)[a],
                              "category_b": np.asarray(categories, dtype=object)[b],
                              "customers": cooc.to_numpy()[a, b]})
    offers = result.offers.sort_values(["customer_id", "rank"], kind="stable")
    customer_rows = _customer_rows(result.customers, propensity, closed_ids)
    del propensity
    lap("customer_rows")

    run = {"run_id": ctx.run_id}
    with engine.begin() as conn:
        bulk_insert(engine, cross_sell_rules, rule_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_cooccurrence, cooc_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_categories, category_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_opportunities, result.opportunities.assign(**run), conn=conn)
        rows = offers.assign(**run)
        for start in range(0, len(rows), chunk):
            bulk_insert(engine, next_best_product, rows.iloc[start:start + chunk], conn=conn)
        for start in range(0, len(customer_rows), chunk):
            bulk_insert(engine, cross_sell_customer, customer_rows.iloc[start:start + chunk].assign(**run), conn=conn)
    lap("write")

    ctx.row_counts.update({"cross_sell_rules": len(rule_rows), "next_best_product": len(offers),
                           "cross_sell_customer": len(customer_rows),
                           "cross_sell_categories": len(category_rows),
                           "cross_sell_opportunities": len(result.opportunities)})
    for name, seconds in timings.items():
        ctx.metrics[f"cross_sell_seconds.{name}"] = seconds
    best = offers[offers["rank"] == 1]
    metrics: dict[str, float | str | None] = {
        "cross_sell.matrix_customers": len(held),
        "cross_sell.rules": len(rule_rows),
        "cross_sell.min_support": conf["min_support"],
        "cross_sell.min_confidence": conf["min_confidence"],
        "cross_sell.horizon_months": conf["horizon_months"],
        "cross_sell.train_month": train_month.isoformat(),
        "cross_sell.as_of": as_of.isoformat(),
        "cross_sell.campaign_size": conf["campaign_size"],
        "cross_sell.top_n": conf["top_n"],
        "cross_sell.customers_scored": len(population),
        "cross_sell.customers_with_offer": int(best["customer_id"].nunique()),
        "cross_sell.next_best_expected_value_total": float(best["expected_value"].sum()),
        "cross_sell.top_rule_lift": float(rules["lift"].iloc[0]) if len(rules) else None,
    }
    for reason, count in result.no_offer.items():
        metrics[f"cross_sell.no_offer.{reason}"] = count
    metrics["cross_sell.no_offer.closed"] = len(closed_ids)
    for _, row in category_rows.iterrows():
        metrics[f"cross_sell.model.{row['category']}"] = str(row["model"])
        if row["holdout_auc"] is not None and not pd.isna(row["holdout_auc"]):
            metrics[f"cross_sell.holdout_auc.{row['category']}"] = float(row["holdout_auc"])
    ctx.put_metrics(metrics)
    log.info("cross_sell: %d rules, %d customers scored, %d offers, timings %s", len(rule_rows), len(population),
             len(offers), timings)


# ---------------------------------------------------------------------------------------------
# Readers of the stored results
# ---------------------------------------------------------------------------------------------


def _run_filter(table: str, run_id: int | None) -> tuple[str, dict]:
    if run_id is None:
        return f"{table}.run_id = (SELECT run_id FROM current_run WHERE id = 1)", {}
    return f"{table}.run_id = :run_id", {"run_id": int(run_id)}


def read_rules(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The stored rules of a run (default: the published one), sides as frozensets, in lift order."""
    where, params = _run_filter("cross_sell_rules", run_id)
    frame = read_frame(engine, f"SELECT * FROM cross_sell_rules WHERE {where} ORDER BY rule_no", params)
    for col in ("antecedents", "consequents"):
        frame[col] = [frozenset(json.loads(v)) for v in frame[col]]
    return frame


def read_cooccurrence(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The stored co-occurrence counts of a run as a symmetric category x category frame."""
    where, params = _run_filter("cross_sell_cooccurrence", run_id)
    frame = read_frame(engine, f"SELECT category_a, category_b, customers FROM cross_sell_cooccurrence "
                               f"WHERE {where}", params)
    names = sorted(set(frame["category_a"].astype(str)) | set(frame["category_b"].astype(str)))
    out = pd.DataFrame(0, index=names, columns=names, dtype=np.int64)
    for a, b, c in zip(frame["category_a"].astype(str), frame["category_b"].astype(str), frame["customers"],
                       strict=True):
        out.loc[a, b] = out.loc[b, a] = int(c)
    return out


def read_categories(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Per category of a run: holders, the guard funnel and the propensity model's report."""
    where, params = _run_filter("cross_sell_categories", run_id)
    return read_frame(engine, f"SELECT * FROM cross_sell_categories WHERE {where} ORDER BY category", params)


def read_opportunities(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Eligible opportunities by product of a run, with the product's name and risk level."""
    where, params = _run_filter("cross_sell_opportunities", run_id)
    return read_frame(engine, f"""
        SELECT cross_sell_opportunities.*, p.name AS product_name, p.risk_level
        FROM cross_sell_opportunities LEFT JOIN products p ON p.product_id = cross_sell_opportunities.product_id
        WHERE {where} ORDER BY expected_value_total DESC, category, cross_sell_opportunities.product_id
    """, params)


def read_customer_offers(engine: Engine, run_id: int | None, customer_id: str) -> dict | None:
    """One customer's row of ``cross_sell_customer`` in a run (None: the published one).

    Returns
    -------
    dict or None
        ``customer_id``, ``next_best_category``, ``next_best_product_id``, ``next_best_product_name``,
        ``next_best_expected_value``, ``no_offer_reason`` and ``propensities`` (a dict
        ``{category: probability}``, highest first); None when the run has no row for the customer.
    """
    where, params = _run_filter("cross_sell_customer", run_id)
    frame = read_frame(engine, f"""
        SELECT cross_sell_customer.customer_id, next_best_category, next_best_product_id,
               p.name AS next_best_product_name, next_best_expected_value, no_offer_reason, propensities
        FROM cross_sell_customer
        LEFT JOIN products p ON p.product_id = cross_sell_customer.next_best_product_id
        WHERE {where} AND cross_sell_customer.customer_id = :customer_id
    """, {**params, "customer_id": str(customer_id)})
    if frame.empty:
        return None
    row = {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in frame.iloc[0].items()}
    if row["next_best_expected_value"] is not None:
        row["next_best_expected_value"] = float(row["next_best_expected_value"])
    probabilities = json.loads(row["propensities"] or "{}")
    row["propensities"] = dict(sorted(probabilities.items(), key=lambda kv: (-kv[1], kv[0])))
    return row


def campaign_list(engine: Engine, run_id: int | None, category: str, *, limit: int = 1000
                  ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Customers to contact about ``category``, best expected value first, and who was left out.

    The list draws on the run's stored offers of the category to customers who had marketing
    consent at the run (the best ``CROSS_SELL_CAMPAIGN_SIZE`` of them, so a list is never longer),
    then checks each again against the customer's *current* record: consent still given,
    tolerance still at or above the product's risk level, assessment still within
    ``RISK_ASSESSMENT_VALID_DAYS`` of the run's as-of day.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int or None
        The run; None for the published one.
    category : str
        A product category.
    limit : int
        Most rows returned.

    Returns
    -------
    (pandas.DataFrame, dict)
        The list: ``customer_id``, ``branch_id``, ``relationship_manager``, ``category``,
        ``product_id``, ``product_name``, ``risk_level``, ``rank``, ``propensity``,
        ``expected_value``. And the customers excluded, by reason: ``expired_assessment``,
        ``suitability`` and ``consent`` (the run's funnel counts plus the stored offers that fail
        against the current record), over all non-holders of the category at the run.
    """
    if isinstance(limit, bool) or int(limit) != limit or limit < 0:
        raise CrossSellError(f"limit must be a non-negative whole number, got {limit!r}")
    if run_id is None:
        with engine.connect() as conn:
            run_id = conn.execute(text("SELECT run_id FROM current_run WHERE id = 1")).scalar()
        if run_id is None:
            return pd.DataFrame(), dict.fromkeys(EXCLUSION_REASONS, 0)
    funnel = read_frame(engine, select(cross_sell_categories).where(cross_sell_categories.c.run_id == run_id)
                        .where(cross_sell_categories.c.category == category))
    exclusions = dict.fromkeys(EXCLUSION_REASONS, 0)
    if not funnel.empty:
        row = funnel.iloc[0]
        exclusions = {"expired_assessment": int(row["excluded_expired_assessment"]),
                      "suitability": int(row["excluded_suitability"]),
                      "consent": int(row["excluded_no_consent"])}
    meta = get_run_metrics(engine, run_id)
    as_of = pd.Timestamp(str(meta.get("cross_sell.as_of") or date.today().isoformat()))
    # Every still-stored consenting offer of the category is checked (not only the first `limit`), so
    # the exclusion counts do not depend on the length asked for.
    pool = meta.get("cross_sell.campaign_size")
    n, c, p = next_best_product.c, customers.c, products.c
    stmt = (select(n.customer_id, c.branch_id, c.relationship_manager, n.category, n.product_id,
                   p.name.label("product_name"), p.risk_level, n.rank, n.propensity, n.expected_value,
                   c.marketing_consent.label("consent_now"), c.risk_tolerance.label("tolerance_now"),
                   c.risk_assessed_at.label("assessed_now"))
            .select_from(next_best_product.outerjoin(customers, c.customer_id == n.customer_id)
                         .outerjoin(products, p.product_id == n.product_id))
            .where(n.run_id == run_id, n.category == category, n.marketing_consent.is_(True))
            .order_by(n.expected_value.desc(), n.customer_id))
    if pool is not None:
        stmt = stmt.limit(int(pool))
    frame = read_frame(engine, stmt)
    valid_days = _setting_positive_int("RISK_ASSESSMENT_VALID_DAYS")
    age = (as_of - to_datetime(frame["assessed_now"])).dt.days.astype(float)
    expired_now = ~assessment_valid(frame["tolerance_now"], age, valid_days)
    unsuitable_now = ~expired_now & (risk_number(frame["risk_level"], "R") > risk_number(frame["tolerance_now"], "C"))
    consent_now = frame["consent_now"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    no_consent_now = ~expired_now & ~unsuitable_now & ~consent_now
    exclusions["expired_assessment"] += int(expired_now.sum())
    exclusions["suitability"] += int(unsuitable_now.sum())
    exclusions["consent"] += int(no_consent_now.sum())
    ok = ~(expired_now | unsuitable_now | no_consent_now)
    out = frame.loc[ok, ["customer_id", "branch_id", "relationship_manager", "category", "product_id", "product_name",
                         "risk_level", "rank", "propensity", "expected_value"]].head(int(limit))
    return out.reset_index(drop=True), exclusions


__all__ = [
    "EXCLUSION_REASONS", "RULE_COLUMNS", "CrossSellError", "CrossSellPropensity", "Recommendations",
    "acquisitions", "assessment_valid", "association_rules", "best_products", "campaign_list", "cooccurrence",
    "cross_sell_settings", "cross_sell_stage", "expected_balances", "holding_balances", "holding_matrix",
    "itemset_text", "product_categories", "propensity_columns", "propensity_json", "read_categories",
    "read_cooccurrence", "read_customer_offers", "read_opportunities", "read_rules", "recommend", "risk_number",
]
