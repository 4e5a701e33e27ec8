"""Segmentation: RFM scores and named segments, value tiers by AUM, behavioural clusters.

Everything here works on the feature frame of :func:`analytics.features.customer_features`
(one row per customer, indexed by ``customer_id``) and returns frames on the same index.

RFM
---
* **Recency** ``R``: ``months_since_last_txn``, months since the last customer-initiated
  transaction (fewer is better).
* **Frequency** ``F``: ``txn_count_12m``, customer-initiated transactions over 12 months.
* **Monetary** ``M``: ``aum_avg_12m``, the customer's average AUM over 12 months. AUM rather than
  transaction amount or revenue because a retail bank earns on what customers *keep* with it
  (deposit spread, wealth and fund fees scale with balances), while transaction amounts are flows
  that a salary passing through inflates; revenue would need a margin history per holding that the
  store does not keep (only current balances). The 12-month mean smooths month-end spikes.

Each is scored 1–5 by quintile of its rank (5 = best): ``score = 1 + floor(5 * rank / n)`` with
``rank`` 0 for the worst customer, so the five scores hold equal shares (±1 customer), like
``pd.qcut(x.rank(method="first"), 5)``. Monthly recency and transaction counts have many ties, and
a tie must not be split by the accident of row order, so ties are broken by a related finer measure
and then by ``customer_id`` (deterministic; the smaller id ranks higher): recency by
``txn_count_3m`` (more recent activity ranks higher), frequency by ``txn_amount_12m``, monetary by
``aum_latest``. Read R with that in mind: the store has monthly activity, so most active customers
share a recency of 0 months (89 % in the demo store), and among them R orders by how much they did
in the last quarter; an R of 2 then means "active, but less than most", not "gone".

Named segments come from ``R`` and ``FM = ceil((F + M) / 2)`` (the mean of F and M rounded half
up) by :data:`RFM_SEGMENT_RULES`, which covers each of the 25 (R, FM) cells exactly once::

    R \\ FM   1               2                    3                    4            5
    5        New             Potential loyalists  Potential loyalists  Champions    Champions
    4        Promising       Potential loyalists  Potential loyalists  Loyal        Loyal
    3        About to sleep  About to sleep       Need attention       Loyal        Loyal
    2        Hibernating     Hibernating          At risk              At risk      Can't lose
    1        Lost            Lost                 At risk              At risk      Can't lose

This is the common 11-segment R × F(M) map of RFM practice, made total (every cell named) and with
``Lost`` split off the bottom corner of ``Hibernating``.

Value tiers
-----------
By the AUM of the as-of month (``aum_latest``), with thresholds from the ``VALUE_TIER_THRESHOLDS``
setting (default 50,000 / 500,000 / 6,000,000 CNY): ``mass`` below the first, ``affluent`` from the
first up to (not including) the second, ``wealth`` up to the third, ``private`` from the third up.

Behavioural clusters
--------------------
:class:`BehaviourClusterer` (scikit-learn style): ``log1p`` of the skewed money and count
features, median imputation, standard scaling, k-means; ``k`` chosen by silhouette within
``k_range`` on a random sample, fitted on that sample, then every customer predicted. Clusters are
numbered by size (0 = largest) and named from their profile by :func:`cluster_name`.

The refresh stage
-----------------
:func:`segments_stage` (the refresh's ``segments`` stage) runs all of the above together with the
tags (:mod:`analytics.tags`), lifecycle stages, margin CLV and cohorts (:mod:`analytics.lifecycle`)
and writes ``customer_segments``, ``segment_summary``, ``segment_cube`` (the same totals split by
the pages' filter cells, :mod:`analytics.segment_explorer`), ``cluster_profiles`` and
``cohort_retention`` under the run id; :func:`read_segment_summary` and friends read them back for
the pages and :mod:`analytics.charts_segments`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from analytics import lifecycle, settings, tags
from analytics.errors import ConfigError
from analytics.features import customer_features, to_datetime
from analytics.runs import Laps
from analytics.schema import (
    cluster_cube,
    cluster_profiles,
    cohort_retention,
    customer_segments,
    segment_cube,
    segment_summary,
)
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# RFM
# ---------------------------------------------------------------------------------------------

RFM_RECENCY = "months_since_last_txn"
RFM_FREQUENCY = "txn_count_12m"
RFM_MONETARY = "aum_avg_12m"
# Finer measures that order customers tied on the RFM value itself (see the module docstring).
RFM_TIEBREAKS = {RFM_RECENCY: "txn_count_3m", RFM_FREQUENCY: "txn_amount_12m", RFM_MONETARY: "aum_latest"}

# (segment, R range, FM range), inclusive. Together they cover the 5×5 grid once (tested).
RFM_SEGMENT_RULES: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("Champions", (5, 5), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential loyalists", (4, 5), (2, 3)),
    ("New", (5, 5), (1, 1)),
    ("Promising", (4, 4), (1, 1)),
    ("Need attention", (3, 3), (3, 3)),
    ("About to sleep", (3, 3), (1, 2)),
    ("At risk", (1, 2), (3, 4)),
    ("Can't lose", (1, 2), (5, 5)),
    ("Hibernating", (2, 2), (1, 2)),
    ("Lost", (1, 1), (1, 2)),
)
RFM_SEGMENTS: tuple[str, ...] = tuple(rule[0] for rule in RFM_SEGMENT_RULES)


def _segment_grid() -> np.ndarray:
    """``grid[r - 1, fm - 1]`` = the segment's position in :data:`RFM_SEGMENTS`."""
    grid = np.full((5, 5), -1, dtype=int)
    for position, (_, (r_lo, r_hi), (fm_lo, fm_hi)) in enumerate(RFM_SEGMENT_RULES):
        for r in range(r_lo, r_hi + 1):
            for fm in range(fm_lo, fm_hi + 1):
                if grid[r - 1, fm - 1] != -1:
                    raise AssertionError(f"RFM rules overlap at R={r}, FM={fm}")
                grid[r - 1, fm - 1] = position
    if (grid == -1).any():
        raise AssertionError("RFM rules leave a cell of the R×FM grid without a segment")
    return grid


SEGMENT_GRID = _segment_grid()


def quintile_scores(values: pd.Series, *, higher_is_better: bool = True,
                    tiebreak: pd.Series | None = None) -> pd.Series:
    """Scores 1–5 by quintile of rank; ties broken by ``tiebreak`` (same direction), then the index.

    Parameters
    ----------
    values : pandas.Series
        The measure to score. Missing values rank worst.
    higher_is_better : bool
        Whether a larger value earns a higher score (False for recency in months).
    tiebreak : pandas.Series, optional
        A finer measure, same index, ordering customers tied on ``values`` (larger is better when
        ``higher_is_better``, smaller otherwise).

    Returns
    -------
    pandas.Series
        ``int8`` scores, ``1 + floor(5 * rank / n)`` where ``rank`` 0 is the worst customer.
    """
    n = len(values)
    if n == 0:
        return pd.Series([], index=values.index, dtype="int8")
    sign = 1.0 if higher_is_better else -1.0
    worst = -np.inf
    primary = np.nan_to_num(sign * values.to_numpy(dtype=float), nan=worst)
    secondary = (np.zeros(n) if tiebreak is None
                 else np.nan_to_num(sign * tiebreak.reindex(values.index).to_numpy(dtype=float), nan=worst))
    # The index is the last key: rank by position in the index sorted ascending, so the result does
    # not depend on the frame's row order.
    index_order = np.empty(n, dtype=np.int64)
    index_order[np.argsort(values.index.to_numpy(), kind="stable")] = np.arange(n)
    order = np.lexsort((-index_order, secondary, primary))  # last key is the primary one
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return pd.Series((1 + (5 * rank) // n).astype("int8"), index=values.index)


def rfm_segment(r: np.ndarray | pd.Series, fm: np.ndarray | pd.Series) -> np.ndarray:
    """The named segment of each (R, FM) score pair, by :data:`RFM_SEGMENT_RULES`."""
    r = np.asarray(r, dtype=int)
    fm = np.asarray(fm, dtype=int)
    return np.asarray(RFM_SEGMENTS, dtype=object)[SEGMENT_GRID[r - 1, fm - 1]]


def rfm_table(features: pd.DataFrame) -> pd.DataFrame:
    """RFM values, scores and segments for every customer of a feature frame.

    Parameters
    ----------
    features : pandas.DataFrame
        From :func:`analytics.features.customer_features` (or any frame with the columns named in
        :data:`RFM_RECENCY`, :data:`RFM_FREQUENCY`, :data:`RFM_MONETARY` and their tie-breaks).

    Returns
    -------
    pandas.DataFrame
        Same index; columns ``rfm_recency_months``, ``rfm_frequency``, ``rfm_monetary`` (the raw
        values), ``rfm_r``, ``rfm_f``, ``rfm_m`` (1–5), ``rfm_fm`` (1–5), ``rfm_score`` (text such as
        ``"545"``) and ``rfm_segment``.
    """
    _require(features, [RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values()])
    out = pd.DataFrame(index=features.index)
    out["rfm_recency_months"] = features[RFM_RECENCY].astype(float)
    out["rfm_frequency"] = features[RFM_FREQUENCY].astype(float)
    out["rfm_monetary"] = features[RFM_MONETARY].astype(float)
    out["rfm_r"] = quintile_scores(features[RFM_RECENCY], higher_is_better=False,
                                   tiebreak=-features[RFM_TIEBREAKS[RFM_RECENCY]])
    out["rfm_f"] = quintile_scores(features[RFM_FREQUENCY], tiebreak=features[RFM_TIEBREAKS[RFM_FREQUENCY]])
    out["rfm_m"] = quintile_scores(features[RFM_MONETARY], tiebreak=features[RFM_TIEBREAKS[RFM_MONETARY]])
    # Half up: (F + M + 1) // 2 == ceil((F + M) / 2).
    out["rfm_fm"] = ((out["rfm_f"].astype(int) + out["rfm_m"].astype(int) + 1) // 2).astype("int8")
    out["rfm_score"] = (out["rfm_r"].astype(str) + out["rfm_f"].astype(str) + out["rfm_m"].astype(str))
    out["rfm_segment"] = rfm_segment(out["rfm_r"], out["rfm_fm"])
    out["rfm_segment"] = out["rfm_segment"].astype(str)
    return out


# ---------------------------------------------------------------------------------------------
# Value tiers
# ---------------------------------------------------------------------------------------------

VALUE_TIERS: tuple[str, ...] = ("mass", "affluent", "wealth", "private")


def parse_number_list(name: str, raw, *, count: int | None = None) -> tuple[float, ...]:
    """A comma-separated setting value as numbers, with a ``ConfigError`` naming the setting."""
    if isinstance(raw, (tuple, list)):
        parts = list(raw)
    else:
        parts = [p for p in str(raw).replace(" ", "").split(",") if p]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"Setting {name}={raw!r} must be comma-separated numbers") from None
    if count is not None and len(numbers) != count:
        raise ConfigError(f"Setting {name}={raw!r} must hold {count} numbers, not {len(numbers)}")
    return numbers


def value_tier_thresholds() -> tuple[float, float, float]:
    """The three AUM thresholds (CNY) of the ``VALUE_TIER_THRESHOLDS`` setting, checked ascending."""
    raw = settings.get("VALUE_TIER_THRESHOLDS")
    thresholds = parse_number_list("VALUE_TIER_THRESHOLDS", raw, count=len(VALUE_TIERS) - 1)
    if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)) or thresholds[0] <= 0:
        raise ConfigError(f"Setting VALUE_TIER_THRESHOLDS={raw!r} must be positive and strictly increasing")
    return thresholds  # type: ignore[return-value]


def value_tiers(aum: pd.Series, thresholds: Sequence[float] | None = None) -> pd.Series:
    """The value tier of each AUM: ``mass`` < t1 ≤ ``affluent`` < t2 ≤ ``wealth`` < t3 ≤ ``private``.

    Parameters
    ----------
    aum : pandas.Series
        AUM in CNY; missing counts as 0 (``mass``).
    thresholds : sequence of 3 floats, optional
        Defaults to the ``VALUE_TIER_THRESHOLDS`` setting.

    Returns
    -------
    pandas.Series
        An ordered categorical of :data:`VALUE_TIERS`, same index.
    """
    cuts = np.asarray(value_tier_thresholds() if thresholds is None else thresholds, dtype=float)
    values = np.nan_to_num(aum.to_numpy(dtype=float), nan=0.0)
    # side="right": a balance exactly on a threshold belongs to the higher tier.
    codes = np.searchsorted(cuts, values, side="right")
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(VALUE_TIERS), ordered=True),
                     index=aum.index, name="value_tier")


# ---------------------------------------------------------------------------------------------
# Behavioural clusters
# ---------------------------------------------------------------------------------------------

CLUSTER_FEATURES: tuple[str, ...] = (
    "age", "tenure_months", "aum_avg_3m", "loan_balance_latest", "txn_count_3m", "txn_amount_3m",
    "digital_logins_3m", "open_products", "months_since_last_txn", "aum_trend",
)
# Long-tailed, non-negative: log1p keeps a few millionaires from defining the clusters alone.
LOG_FEATURES: tuple[str, ...] = ("aum_avg_3m", "loan_balance_latest", "txn_count_3m", "txn_amount_3m",
                                 "digital_logins_3m")
# Words for a feature in generated names and "what sets it apart" texts.
FEATURE_LABELS = {
    "age": "age", "tenure_months": "tenure", "aum_avg_3m": "AUM", "loan_balance_latest": "loans",
    "txn_count_3m": "transactions", "txn_amount_3m": "transaction amount", "digital_logins_3m": "digital logins",
    "open_products": "products", "months_since_last_txn": "months inactive", "aum_trend": "AUM trend",
}


def _log1p_nonnegative(x):
    return np.log1p(np.clip(x, 0.0, None))


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in frame.columns:
            raise ValueError(f"Required column {col} missing")


class BehaviourClusterer(ClusterMixin, BaseEstimator):
    """K-means on behaviour features, k by silhouette, fitted on a sample, named from profiles.

    Parameters
    ----------
    k_range : (int, int)
        Smallest and largest number of clusters tried (inclusive).
    random_state : int
        Seeds the sample, k-means and the silhouette sample: same data and seed, same clusters.
    sample_size : int
        Rows used to choose k and fit k-means; every row is then predicted. 50,000 is plenty for
        ten features and keeps a million-customer fit to seconds.
    features : sequence of str, optional
        Columns to cluster on; defaults to :data:`CLUSTER_FEATURES`.
    log_features : sequence of str, optional
        Of those, the ones to ``log1p``; defaults to :data:`LOG_FEATURES` among ``features``.
    n_init : int
        K-means restarts per k.
    silhouette_sample : int
        Rows of the sample the silhouette is computed on (it is quadratic in rows).

    A frame with fewer distinct rows than ``k_range`` needs narrows the range to at most
    ``distinct - 1`` clusters; with fewer than 3 distinct rows every row is in cluster 0.

    Attributes
    ----------
    n_clusters_ : int
    silhouette_by_k_ : dict[int, float]
        Silhouette of each k tried (empty when there was no k to choose).
    pipeline_ : sklearn.pipeline.Pipeline
        Imputation, log and scaling, then k-means.
    labels_ : numpy.ndarray
        Cluster of each row passed to ``fit`` (0 = largest cluster).
    profiles_ : pandas.DataFrame
        One row per cluster: ``customers``, ``share``, ``median_<feature>``, ``z_<feature>`` (the
        cluster's mean in standard deviations from the overall mean, after the log), ``sets_apart``
        (the three largest deviations in words) and ``name``.
    names_ : dict[int, str]
    """

    def __init__(self, k_range=(3, 8), random_state=0, sample_size=50000, features=None,
                 log_features=None, n_init=4, silhouette_sample=5000):
        self.k_range = k_range
        self.random_state = random_state
        self.sample_size = sample_size
        self.features = features
        self.log_features = log_features
        self.n_init = n_init
        self.silhouette_sample = silhouette_sample

    def _columns(self) -> tuple[list[str], list[str]]:
        features = list(self.features) if self.features is not None else list(CLUSTER_FEATURES)
        logged = (list(self.log_features) if self.log_features is not None
                  else [c for c in LOG_FEATURES if c in features])
        return features, logged

    def _prepare(self, features: list[str], logged: list[str]) -> ColumnTransformer:
        plain = [c for c in features if c not in logged]
        parts = []
        if logged:
            parts.append(("log", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                               FunctionTransformer(_log1p_nonnegative)), logged))
        if plain:
            parts.append(("plain", SimpleImputer(strategy="median", keep_empty_features=True), plain))
        return ColumnTransformer(parts, remainder="drop")

    def fit(self, X: pd.DataFrame, y=None):
        """Choose k, fit on a sample, label every row and profile the clusters; return self."""
        # One thread (OpenMP and BLAS): k-means and silhouettes on a 50k sample are fast alone, but
        # threads spin-waiting on a busy 2-core host (the dashboard and other jobs running) made
        # this fit 30x slower in our measurements (9 s instead of 0.3 s for 20k rows).
        with threadpool_limits(limits=1):
            return self._fit(X)

    def _fit(self, X: pd.DataFrame):
        features, logged = self._columns()
        _require(X, features)
        k_lo, k_hi = (int(k) for k in self.k_range)
        if not 2 <= k_lo <= k_hi:
            raise ValueError(f"k_range must be (low, high) with 2 <= low <= high, got {self.k_range}")
        data = X[features].astype(float)
        n = len(data)
        if n == 0:
            raise ValueError("Cannot cluster an empty frame")
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(rng.choice(n, self.sample_size, replace=False)) if n > self.sample_size else np.arange(n)
        sample = data.iloc[rows]

        prepare = self._prepare(features, logged)
        z_sample = prepare.fit_transform(sample)
        scaler = StandardScaler().fit(z_sample)
        z_sample = scaler.transform(z_sample)
        # The silhouette needs 2 <= k <= distinct rows - 1: a small store narrows the range, and
        # below 3 distinct rows everyone is one cluster (no k to choose).
        distinct = len(np.unique(z_sample, axis=0))
        k_top = min(k_hi, distinct - 1)
        scores: dict[int, float] = {}
        models: dict[int, KMeans] = {}
        for k in range(min(k_lo, k_top), k_top + 1):
            if k < 2:
                continue
            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(z_sample)
            if len(np.unique(model.labels_)) < 2:
                continue
            scores[k] = float(silhouette_score(z_sample, model.labels_,
                                               sample_size=min(self.silhouette_sample, len(rows)),
                                               random_state=self.random_state))
            models[k] = model
        if not scores:
            models[1] = KMeans(n_clusters=1, n_init=1, random_state=self.random_state).fit(z_sample)
        # Highest silhouette; a tie goes to the smaller k (the simpler answer).
        best_k = max(scores, key=lambda k: (round(scores[k], 12), -k)) if scores else 1
        self.silhouette_by_k_ = scores
        self.n_clusters_ = best_k
        self.pipeline_ = Pipeline([("prepare", prepare), ("scale", scaler), ("kmeans", models[best_k])])
        self.feature_names_in_ = np.asarray(features, dtype=object)

        z_all = self.pipeline_[:-1].transform(data)
        raw_labels = models[best_k].predict(z_all)
        # Number clusters by size, largest first; ties by k-means' own label (deterministic).
        counts = np.bincount(raw_labels, minlength=best_k)
        order = np.lexsort((np.arange(best_k), -counts))
        self.relabel_ = np.empty(best_k, dtype=np.int64)
        self.relabel_[order] = np.arange(best_k)
        self.labels_ = self.relabel_[raw_labels]
        self.profiles_ = self._profiles(data, z_all, self.labels_, features)
        self.names_ = self.profiles_["name"].to_dict()
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The cluster (0 = largest at fit time) of each row of ``X``."""
        features, _ = self._columns()
        _require(X, features)
        with threadpool_limits(limits=1):
            return self.relabel_[self.pipeline_.predict(X[features].astype(float))]

    def standardised(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each row's clustering features as the fitted model sees them (imputed, logged where
        configured, scaled): the ``z_<feature>`` of :attr:`profiles_` are their means per cluster."""
        features, logged = self._columns()
        _require(X, features)
        z = self.pipeline_[:-1].transform(X[features].astype(float))
        columns = logged + [c for c in features if c not in logged]
        return pd.DataFrame(z, columns=columns, index=X.index)[features]

    def fit_predict(self, X: pd.DataFrame, y=None) -> np.ndarray:
        return self.fit(X).labels_

    def _profiles(self, data: pd.DataFrame, z_all: np.ndarray, labels: np.ndarray,
                  features: list[str]) -> pd.DataFrame:
        k = self.n_clusters_
        n = len(data)
        # The transformer emits the logged columns first, then the plain ones.
        _, logged = self._columns()
        z_frame = pd.DataFrame(z_all, columns=logged + [c for c in features if c not in logged])
        rows = []
        for cluster in range(k):
            mask = labels == cluster
            size = int(mask.sum())
            row: dict = {"cluster": cluster, "customers": size, "share": size / n if n else 0.0}
            medians = data.loc[mask].median() if size else pd.Series(np.nan, index=features)
            z_means = z_frame.loc[mask].mean() if size else pd.Series(0.0, index=features)
            for col in features:
                row[f"median_{col}"] = float(medians[col])
            for col in features:
                row[f"z_{col}"] = float(z_means[col])
            top = sorted(features, key=lambda c: (-abs(z_means[c]), c))[:3]
            row["sets_apart"] = ", ".join(
                f"{'high' if z_means[c] > 0 else 'low'} {FEATURE_LABELS.get(c, c)} ({z_means[c]:+.1f} sd)"
                for c in top)
            rows.append(row)
        profiles = pd.DataFrame(rows).set_index("cluster")
        base = [cluster_name(profiles.loc[c], features) for c in range(k)]
        names = list(base)
        for c in range(k):
            if base.count(base[c]) > 1:
                # Clusters sharing the same words: add what sets each apart most.
                top = sorted(features, key=lambda f: (-abs(profiles.loc[c, f"z_{f}"]), f))[0]
                direction = "high" if profiles.loc[c, f"z_{top}"] > 0 else "low"
                names[c] = f"{base[c]} ({direction} {FEATURE_LABELS.get(top, top)})"
        # Still equal (same top feature and direction): the cluster number makes them unique.
        names = [f"{name} #{c}" if names.count(name) > 1 else name for c, name in enumerate(names)]
        profiles["name"] = names
        return profiles


def cluster_name(profile: pd.Series, features: Sequence[str]) -> str:
    """A readable name for a cluster from its profile, by fixed rules, e.g. "young digital savers".

    Words, in this order (a word whose feature was not clustered on is left out):

    * life stage, only when age sets the cluster apart (mean age at least 0.3 sd from average),
      from the median age: under 35 "young", under 55 "mid-career", else "senior";
    * "new" when the median tenure is 12 months or less;
    * engagement: median months inactive >= 6 "dormant"; else digital logins >= +0.5 sd
      "digital", <= -0.5 sd "branch-based";
    * money: loans >= +0.5 sd with a positive median loan "borrowers"; else AUM >= +1 sd
      "affluent savers", >= 0 sd "savers", <= -0.5 sd "low-balance customers", otherwise
      "everyday customers".
    """
    def z(col: str) -> float:
        return float(profile.get(f"z_{col}", 0.0)) if col in features else 0.0

    def median(col: str) -> float:
        return float(profile.get(f"median_{col}", np.nan)) if col in features else math.nan

    words = []
    age = median("age")
    if not math.isnan(age) and abs(z("age")) >= 0.3:
        words.append("young" if age < 35 else "mid-career" if age < 55 else "senior")
    tenure = median("tenure_months")
    if not math.isnan(tenure) and tenure <= 12:
        words.append("new")
    inactive = median("months_since_last_txn")
    if not math.isnan(inactive) and inactive >= 6:
        words.append("dormant")
    elif "digital_logins_3m" in features and z("digital_logins_3m") >= 0.5:
        words.append("digital")
    elif "digital_logins_3m" in features and z("digital_logins_3m") <= -0.5:
        words.append("branch-based")
    loans = median("loan_balance_latest")
    if "loan_balance_latest" in features and z("loan_balance_latest") >= 0.5 and loans > 0:
        words.append("borrowers")
    elif "aum_avg_3m" in features:
        aum_z = z("aum_avg_3m")
        words.append("affluent savers" if aum_z >= 1.0 else "savers" if aum_z >= 0
                     else "low-balance customers" if aum_z <= -0.5 else "everyday customers")
    else:
        words.append("customers")
    return " ".join(words)


def cluster_settings() -> dict:
    """``k_range`` and ``sample_size`` for :class:`BehaviourClusterer` from the settings."""
    raw = settings.get("CLUSTER_K_RANGE")
    lo, hi = parse_number_list("CLUSTER_K_RANGE", raw, count=2)
    if not (lo == int(lo) and hi == int(hi) and 2 <= lo <= hi):
        raise ConfigError(f"Setting CLUSTER_K_RANGE={raw!r} must be two whole numbers 2 <= low <= high")
    return {"k_range": (int(lo), int(hi)), "sample_size": int(settings.get("CLUSTER_SAMPLE_SIZE"))}



# ---------------------------------------------------------------------------------------------
# The refresh stage and readers of its results
# ---------------------------------------------------------------------------------------------

SUMMARY_TOTALS = ("aum", "annual_margin", "clv_margin_1y", "clv_margin_3y", "clv_margin_5y")
CLUSTER_RANDOM_STATE = 0


def _summary(frame: pd.DataFrame, dimension: str, keys: pd.Series, order: Sequence[str] | None = None
             ) -> pd.DataFrame:
    """Counts and money totals of ``frame`` grouped by ``keys``, as ``segment_summary`` rows."""
    grouped = frame[list(SUMMARY_TOTALS)].groupby(keys.to_numpy(), observed=True, sort=True)
    out = grouped.sum().rename(columns={c: f"{c}_total" for c in SUMMARY_TOTALS})
    out.insert(0, "customers", grouped.size())
    out.index = out.index.astype(str)
    if order is not None:
        rank = {str(v): i for i, v in enumerate(order)}
        out["sort_order"] = [rank.get(v, len(rank)) for v in out.index]
    else:
        out["sort_order"] = np.arange(len(out))
    out = out.rename_axis("value").reset_index()
    out.insert(0, "dimension", dimension)
    return out


def _tag_text(tag_frame: pd.DataFrame) -> np.ndarray:
    """Comma-separated true tags per row, in column order (vectorised: no per-row Python join)."""
    text_values = np.full(len(tag_frame), "", dtype=object)
    for name in tag_frame.columns:
        mask = tag_frame[name].to_numpy(dtype=bool)
        text_values[mask] = text_values[mask] + (name + ",")
    return np.array([t[:-1] for t in text_values], dtype=object)


def birth_years(engine) -> pd.Series:
    """Each customer's birth year (float, NaN when unknown), indexed by ``customer_id``."""
    from analytics.segment_explorer import BIRTH_YEAR_SQL

    frame = read_frame(engine, f"SELECT customer_id, {BIRTH_YEAR_SQL.format(col='birth_date')} AS birth_year "
                               "FROM customers")
    return frame.set_index("customer_id")["birth_year"].astype(float)


def _cube(ctx, out: pd.DataFrame, branch_ids: pd.Series, tag_frame: pd.DataFrame,
          z: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's ``segment_cube`` and ``cluster_cube`` rows (:mod:`analytics.segment_explorer`)."""
    from analytics.segment_explorer import cluster_cube_rows, cube_rows

    frame = out.assign(branch_id=branch_ids.reindex(out.index).to_numpy(),
                       birth_year=birth_years(ctx.engine).reindex(out.index).to_numpy())
    return (cube_rows(frame, as_of_year=ctx.as_of_month.year, tag_flags=tag_frame.reindex(out.index)),
            cluster_cube_rows(frame, z.reindex(out.index), as_of_year=ctx.as_of_month.year))


def segments_stage(ctx) -> None:
    """The refresh stage ``segments``: features at the run's month, RFM, value tiers, clusters,
    tags, lifecycle stages, margin CLV and cohort retention, written under ``ctx.run_id``.

    Writes ``customer_segments`` (one row per customer), ``segment_summary``, ``segment_cube`` (the
    pages' filter cells), ``cluster_profiles`` and ``cohort_retention``, in chunks of
    ``LOAD_CHUNK_ROWS`` rows within one transaction, and
    puts headline metrics (counts per segment, tier, stage and tag, cluster k and silhouette,
    CLV totals, stage retention) in ``run_metrics``.
    """
    if ctx.as_of_month is None:
        log.info("segments: no activity data, nothing to segment")
        ctx.put_metrics({"segments.customers": 0})
        return
    lap = Laps()
    timings = lap.seconds

    # Read every setting first, so a bad value fails before minutes of work.
    thresholds = value_tier_thresholds()
    clusterer = BehaviourClusterer(random_state=CLUSTER_RANDOM_STATE, **cluster_settings())
    discount = lifecycle.clv_discount_rate()
    headline_years = lifecycle.clv_horizon_years()
    rules = tags.load_tag_rules()
    chunk = int(settings.get("LOAD_CHUNK_ROWS"))

    features = customer_features(ctx.engine, ctx.as_of_month, with_status=True)
    lap("features")
    if features.empty:
        ctx.put_metrics({"segments.customers": 0})
        return
    out = rfm_table(features)
    lap("rfm")
    out["aum"] = features["aum_latest"]
    out["value_tier"] = value_tiers(features["aum_latest"], thresholds).astype(str)
    clusterer.fit(features)
    out["cluster"] = clusterer.labels_
    out["cluster_name"] = pd.Series(clusterer.labels_, index=out.index).map(clusterer.names_)
    lap("clusters")
    tag_frame = tags.evaluate_tags(features, rules)
    out["tags"] = _tag_text(tag_frame)
    lap("tags")
    stages = lifecycle.lifecycle_stage(features)
    out["lifecycle_stage"] = stages.astype(str)
    retention = lifecycle.observed_stage_retention(ctx.engine, ctx.as_of_month, stages)
    lap("stage_retention")
    margin = lifecycle.customer_annual_margin(ctx.engine).reindex(out.index).fillna(0.0)
    out["annual_margin"] = margin
    out["retention_rate"] = stages.astype(str).map(retention["annual_retention"]).astype(float).fillna(0.0)
    for years in lifecycle.CLV_HORIZONS_YEARS:
        out[f"clv_margin_{years}y"] = lifecycle.margin_clv(margin, out["retention_rate"],
                                                           discount_rate=discount, years=years)
    lap("clv")
    cohorts = lifecycle.load_cohort_retention(ctx.engine, ctx.as_of_month)
    lap("cohorts")

    summaries = [
        _summary(out, "rfm_segment", out["rfm_segment"], RFM_SEGMENTS),
        _summary(out, "rfm_rf", out["rfm_r"].astype(str) + out["rfm_f"].astype(str)),
        _summary(out, "value_tier", out["value_tier"], VALUE_TIERS),
        _summary(out, "cluster", out["cluster_name"],
                 [clusterer.names_[c] for c in sorted(clusterer.names_)]),
        _summary(out, "lifecycle_stage", out["lifecycle_stage"], lifecycle.LIFECYCLE_STAGES),
        _summary(out, "branch_id", features["branch_id"].fillna("(missing)")),
    ]
    tag_rows = []
    for position, name in enumerate(tag_frame.columns):
        mask = tag_frame[name].to_numpy(dtype=bool)
        tag_rows.append({"dimension": "tag", "value": name, "sort_order": position, "customers": int(mask.sum()),
                         **{f"{c}_total": float(out[c].to_numpy()[mask].sum()) for c in SUMMARY_TOTALS}})
    summaries.append(pd.DataFrame(tag_rows))
    for years in lifecycle.CLV_HORIZONS_YEARS:
        values = out[f"clv_margin_{years}y"].to_numpy()
        position, labels = lifecycle.assign_bands(values, lifecycle.band_edges(values))
        bands = _summary(out, f"clv_band_{years}y", pd.Series(np.asarray(labels, dtype=object)[position]),
                         labels)
        summaries.append(bands)
    summary = pd.concat(summaries, ignore_index=True)
    lap("summary")
    cube, clusters_by_cell = _cube(ctx, out, features["branch_id"], tag_frame, clusterer.standardised(features))
    lap("cube")

    profiles = clusterer.profiles_
    profile_rows = pd.DataFrame({
        "cluster": profiles.index.astype(int),
        "cluster_name": profiles["name"].to_numpy(),
        "customers": profiles["customers"].astype(int).to_numpy(),
        "share": profiles["share"].astype(float).to_numpy(),
        "sets_apart": profiles["sets_apart"].to_numpy(),
        "profile": [
            {c: (None if pd.isna(v) else round(float(v), 6)) for c, v in row.items()
             if c.startswith(("median_", "z_"))}
            for _, row in profiles.iterrows()
        ],
    })

    rows = out.reset_index()
    rows.insert(0, "run_id", ctx.run_id)
    columns = [c.name for c in customer_segments.columns]
    rows = rows[columns]
    with ctx.engine.begin() as conn:
        for start in range(0, len(rows), chunk):
            bulk_insert(ctx.engine, customer_segments, rows.iloc[start:start + chunk], conn=conn)
        bulk_insert(ctx.engine, segment_summary, summary.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, segment_cube, cube.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, cluster_cube, clusters_by_cell.assign(run_id=ctx.run_id), conn=conn)
        if not cohorts.empty:
            bulk_insert(ctx.engine, cohort_retention, cohorts.assign(run_id=ctx.run_id), conn=conn)
        # JSON goes through SQLAlchemy (bulk_insert writes plain values, not JSON documents).
        conn.execute(cluster_profiles.insert(), [{"run_id": ctx.run_id, **r}
                                                  for r in profile_rows.to_dict("records")])
    lap("write")

    ctx.row_counts.update({"customer_segments": len(rows), "segment_summary": len(summary),
                           "segment_cube": len(cube), "cluster_cube": len(clusters_by_cell),
                           "cohort_retention": len(cohorts), "cluster_profiles": len(profile_rows)})
    for name, seconds in timings.items():
        ctx.metrics[f"segments_seconds.{name}"] = seconds
    metrics: dict[str, float | str | None] = {
        "segments.customers": len(out),
        "clusters.k": clusterer.n_clusters_,
        "clusters.silhouette": clusterer.silhouette_by_k_.get(clusterer.n_clusters_),
        "clv.discount_rate": discount,
        "clv.horizon_years": headline_years,
        "clv_margin_total": float(out[f"clv_margin_{headline_years}y"].sum()),
        "annual_margin_total": float(margin.sum()),
    }
    for years in lifecycle.CLV_HORIZONS_YEARS:
        metrics[f"clv_margin_{years}y_total"] = float(out[f"clv_margin_{years}y"].sum())
    for dimension in ("rfm_segment", "value_tier", "lifecycle_stage", "tag"):
        part = summary[summary["dimension"] == dimension]
        for value, customers in zip(part["value"], part["customers"], strict=True):
            metrics[f"{dimension}.{value}"] = int(customers)
    for stage, row in retention.iterrows():
        metrics[f"lifecycle_retention.{stage}"] = float(row["annual_retention"])
        metrics[f"lifecycle_retention_source.{stage}"] = str(row["source"])
    ctx.put_metrics(metrics)
    log.info("segments: %d customers, %d clusters, timings %s", len(out), clusterer.n_clusters_, timings)


def _run_filter(table: str, run_id: int | None) -> tuple[str, dict]:
    if run_id is None:
        return f"{table}.run_id = (SELECT run_id FROM current_run WHERE id = 1)", {}
    return f"{table}.run_id = :run_id", {"run_id": int(run_id)}


def read_segment_summary(engine, dimension: str, run_id: int | None = None) -> pd.DataFrame:
    """The ``segment_summary`` rows of one dimension for a run (default: the published run)."""
    where, params = _run_filter("segment_summary", run_id)
    return read_frame(engine, f"SELECT * FROM segment_summary WHERE {where} AND dimension = :dimension "
                              "ORDER BY sort_order, value", {**params, "dimension": dimension})


def read_cluster_profiles(engine, run_id: int | None = None) -> pd.DataFrame:
    """Cluster profiles of a run with the JSON profile expanded into ``median_*``/``z_*`` columns."""
    where, params = _run_filter("cluster_profiles", run_id)
    frame = read_frame(engine, f"SELECT * FROM cluster_profiles WHERE {where} ORDER BY cluster", params)
    if frame.empty:
        return frame
    expanded = pd.DataFrame([json.loads(p) if isinstance(p, str) else p for p in frame.pop("profile")])
    return pd.concat([frame.reset_index(drop=True), expanded], axis=1)


def read_cohort_retention(engine, run_id: int | None = None) -> pd.DataFrame:
    """The ``cohort_retention`` rows of a run, ``cohort_month`` as timestamps."""
    where, params = _run_filter("cohort_retention", run_id)
    frame = read_frame(engine, f"SELECT * FROM cohort_retention WHERE {where} "
                               "ORDER BY cohort_month, months_since_open", params)
    frame["cohort_month"] = to_datetime(frame["cohort_month"])
    return frame

__all__ = [
    "CLUSTER_FEATURES", "FEATURE_LABELS", "LOG_FEATURES", "RFM_SEGMENTS", "RFM_SEGMENT_RULES", "SEGMENT_GRID",
    "VALUE_TIERS", "BehaviourClusterer", "cluster_name", "cluster_settings", "parse_number_list",
    "quintile_scores", "read_cluster_profiles", "read_cohort_retention", "read_segment_summary", "rfm_segment",
    "rfm_table", "segments_stage", "value_tier_thresholds", "value_tiers",
]
