"""Behavioural clusters: k-means on behaviour features, k by silhouette, fitted on a sample and
named from the clusters' profiles (see :mod:`analytics.segmentation`)."""

from __future__ import annotations

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

from analytics import settings
from analytics.errors import ConfigError
from analytics.segmentation.rfm import require_columns
from analytics.segmentation.tiers import parse_number_list

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
        require_columns(X, features)
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
        require_columns(X, features)
        with threadpool_limits(limits=1):
            return self.relabel_[self.pipeline_.predict(X[features].astype(float))]

    def standardised(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each row's clustering features as the fitted model sees them (imputed, logged where
        configured, scaled): the ``z_<feature>`` of :attr:`profiles_` are their means per cluster."""
        features, logged = self._columns()
        require_columns(X, features)
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




__all__ = ["CLUSTER_FEATURES", "FEATURE_LABELS", "LOG_FEATURES", "BehaviourClusterer", "cluster_name",
           "cluster_settings"]
