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
    affluent_aum : float
        3-month mean AUM (CNY) from which a member counts as an affluent saver (the affluent value
        tier's threshold) when the name is checked against the members.

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
        (the three largest deviations in words), ``name`` (a code, see :func:`cluster_label`) and
        ``name_shares`` (the share of members having each word of the centroid's name).
    names_ : dict[int, str]
    """

    def __init__(self, k_range=(3, 8), random_state=0, sample_size=50000, features=None,
                 log_features=None, n_init=4, silhouette_sample=5000, affluent_aum=50000.0):
        self.k_range = k_range
        self.random_state = random_state
        self.sample_size = sample_size
        self.features = features
        self.log_features = log_features
        self.n_init = n_init
        self.silhouette_sample = silhouette_sample
        self.affluent_aum = affluent_aum

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
        # Rows are taken a chunk at a time (and the sample's): a copy of the features of every
        # customer would cost 80 bytes each.
        n = len(X)
        if n == 0:
            raise ValueError("Cannot cluster an empty frame")
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(rng.choice(n, self.sample_size, replace=False)) if n > self.sample_size else np.arange(n)
        sample = X.iloc[rows][features].astype(float)

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

        # Every row a chunk at a time: the standardised features of every customer are never held
        # at once, only their sums per cluster (a million customers' would be 80 MB more).
        raw_labels = np.empty(n, dtype=np.int64)
        z_sums = np.zeros((best_k, len(features)))
        for start in range(0, n, PREDICT_CHUNK_ROWS):
            z_part = self.pipeline_[:-1].transform(X.iloc[start:start + PREDICT_CHUNK_ROWS][features].astype(float))
            labels_part = models[best_k].predict(z_part)
            raw_labels[start:start + len(labels_part)] = labels_part
            for j in range(z_part.shape[1]):
                z_sums[:, j] += np.bincount(labels_part, weights=z_part[:, j], minlength=best_k)
        # Number clusters by size, largest first; ties by k-means' own label (deterministic).
        counts = np.bincount(raw_labels, minlength=best_k)
        order = np.lexsort((np.arange(best_k), -counts))
        self.relabel_ = np.empty(best_k, dtype=np.int64)
        self.relabel_[order] = np.arange(best_k)
        self.labels_ = self.relabel_[raw_labels]
        del raw_labels
        # The transformer emits the logged columns first, then the plain ones.
        z_columns = logged + [c for c in features if c not in logged]
        z_means = pd.DataFrame(z_sums[order] / np.maximum(counts[order], 1)[:, None], columns=z_columns)[features]
        self.profiles_ = self._profiles(z_means, self.labels_, features, X)
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

    def _profiles(self, z_means: pd.DataFrame, labels: np.ndarray, features: list[str],
                  X: pd.DataFrame) -> pd.DataFrame:
        """One row per cluster (see :attr:`profiles_`) from the members' features (``X``), their
        labels and each cluster's mean standardised features (``z_means``, a row per cluster)."""
        k = self.n_clusters_
        n = len(X)
        members = [np.flatnonzero(labels == cluster) for cluster in range(k)]
        medians = {col: [float(pd.Series(X[col].to_numpy(dtype=float)[at]).median()) if len(at) else math.nan
                         for at in members]
                   for col in features}
        rows = []
        for cluster in range(k):
            size = len(members[cluster])
            row: dict = {"cluster": cluster, "customers": size, "share": size / n if n else 0.0}
            z_row = z_means.iloc[cluster] if size else pd.Series(0.0, index=features)
            for col in features:
                row[f"median_{col}"] = medians[col][cluster]
            for col in features:
                row[f"z_{col}"] = float(z_row[col])
            top = sorted(features, key=lambda c: (-abs(z_row[c]), c))[:3]
            row["sets_apart"] = ", ".join(
                f"{'high' if z_row[c] > 0 else 'low'} {FEATURE_LABELS.get(c, c)} ({z_row[c]:+.1f} sd)"
                for c in top)
            rows.append(row)
        profiles = pd.DataFrame(rows).set_index("cluster")
        aum = pd.to_numeric(X["aum_avg_3m"], errors="coerce") if "aum_avg_3m" in X.columns else None
        aum_median = float(aum.median()) if aum is not None and aum.notna().any() else math.nan
        del aum
        words_of = [cluster_name(profiles.loc[c], features).split() for c in range(k)]
        having = self._members_having(X, labels, sorted({w for words in words_of for w in words}),
                                      aum_median=aum_median)
        base, shares_by_cluster = [], []
        for c in range(k):
            size = len(members[c])
            words, shares = [], {}
            for word in words_of[c]:
                share = float(having[word][c] / size) if size else 0.0
                shares[word] = round(share, 4)
                if share >= NAME_MIN_SHARE:
                    words.append(word)
                elif word in MONEY_WORDS:
                    # Not true of enough members: the centroid in neutral words instead.
                    words.extend(centroid_parts(profiles.loc[c], features))
            if not words:
                words = centroid_parts(profiles.loc[c], features)
            base.append(" ".join(words))
            shares_by_cluster.append(shares)
        profiles["name_shares"] = shares_by_cluster
        names = list(base)
        for c in range(k):
            if base.count(base[c]) > 1:
                # Clusters sharing the same words: add what sets each apart most.
                apart = centroid_parts(profiles.loc[c], features, n=1)[0]
                names[c] = f"{base[c]} ({apart})"
        # Still equal (same top feature and direction): the cluster number makes them unique.
        names = [f"{name} #{c}" if names.count(name) > 1 else name for c, name in enumerate(names)]
        profiles["name"] = names
        return profiles

    def _members_having(self, X: pd.DataFrame, labels: np.ndarray, words: list[str], *,
                        aum_median: float) -> dict[str, np.ndarray]:
        """Per word, the members of each cluster having it (:func:`member_has`), counted a chunk
        of rows at a time."""
        k = self.n_clusters_
        counts = {word: np.zeros(k, dtype=np.int64) for word in words}
        for start in range(0, len(X), PREDICT_CHUNK_ROWS):
            part = X.iloc[start:start + PREDICT_CHUNK_ROWS]
            part_labels = labels[start:start + PREDICT_CHUNK_ROWS]
            for word in words:
                has = member_has(word, part, aum_median=aum_median,
                                 affluent_aum=float(self.affluent_aum)).to_numpy(dtype=bool)
                counts[word] += np.bincount(part_labels[has], minlength=k)
        return counts


# Rows transformed and predicted at a time after the fit.
PREDICT_CHUNK_ROWS = 100_000


def cluster_name(profile: pd.Series, features: Sequence[str]) -> str:
    """A cluster's name from its profile, by fixed rules, as word codes, e.g. "young digital savers".

    The name is a code (:func:`cluster_label` renders it in a language; see :data:`NAME_WORDS`).
    These are the centroid's words; :class:`BehaviourClusterer` then keeps a word only when at
    least :data:`NAME_MIN_SHARE` of the members have it (:func:`member_has`). Words, in this order
    (a word whose feature was not clustered on is left out):

    * life stage, only when age sets the cluster apart (mean age at least 0.3 sd from average),
      from the median age: under 35 "young", under 55 "mid_career", else "senior";
    * "new" when the median tenure is 12 months or less;
    * engagement: median months inactive >= 6 "dormant"; else digital logins >= +0.5 sd
      "digital", <= -0.5 sd "branch_based";
    * money: loans >= +0.5 sd with a positive median loan "borrowers"; else AUM >= +1 sd
      "affluent_savers", >= 0 sd "savers", <= -0.5 sd "low_balance", otherwise "everyday".
    """
    def z(col: str) -> float:
        return float(profile.get(f"z_{col}", 0.0)) if col in features else 0.0

    def median(col: str) -> float:
        return float(profile.get(f"median_{col}", np.nan)) if col in features else math.nan

    words = []
    age = median("age")
    if not math.isnan(age) and abs(z("age")) >= 0.3:
        words.append("young" if age < 35 else "mid_career" if age < 55 else "senior")
    tenure = median("tenure_months")
    if not math.isnan(tenure) and tenure <= 12:
        words.append("new")
    inactive = median("months_since_last_txn")
    if not math.isnan(inactive) and inactive >= 6:
        words.append("dormant")
    elif "digital_logins_3m" in features and z("digital_logins_3m") >= 0.5:
        words.append("digital")
    elif "digital_logins_3m" in features and z("digital_logins_3m") <= -0.5:
        words.append("branch_based")
    loans = median("loan_balance_latest")
    if "loan_balance_latest" in features and z("loan_balance_latest") >= 0.5 and loans > 0:
        words.append("borrowers")
    elif "aum_avg_3m" in features:
        aum_z = z("aum_avg_3m")
        words.append("affluent_savers" if aum_z >= 1.0 else "savers" if aum_z >= 0
                     else "low_balance" if aum_z <= -0.5 else "everyday")
    else:
        words.append("customers")
    return " ".join(words)


# A name may name a product, a behaviour or a trait only when at least this share of the cluster's
# members have it; otherwise the word is left out (the money word: replaced by the centroid's
# largest deviations in neutral words, "high AUM, low transactions").
NAME_MIN_SHARE = 0.6
# Words that claim nothing of a member (no test): kept as they are.
NEUTRAL_WORDS = ("everyday", "customers")
MONEY_WORDS = ("borrowers", "affluent_savers", "savers", "low_balance", "everyday", "customers")
# Every word code a name can hold; each has a catalog entry ``cluster.word.<code>`` (en + zh).
NAME_WORDS = ("young", "mid_career", "senior", "new", "dormant", "digital", "branch_based", *MONEY_WORDS)
# Categories whose open holding makes a member a borrower (credit cards are not loans here).
LOAN_CATEGORIES = ("mortgage", "consumer_loan")
# The feature columns :func:`member_has` reads.
NAME_COLUMNS = ("age", "tenure_months", "months_since_last_txn", "digital_logins_3m", "aum_avg_3m",
                "loan_balance_latest", *(f"products_{c}" for c in LOAN_CATEGORIES))


def member_has(word: str, X: pd.DataFrame, *, aum_median: float, affluent_aum: float) -> pd.Series:
    """Whether each row of ``X`` (a member, with the feature columns) has what ``word`` says.

    young: age under 35; mid_career: 35-54; senior: 55 or more; new: tenure of 12 months or less;
    dormant: no transaction for 6 months or more; digital: at least 3 digital logins in 3 months
    (one a month); branch_based: none; borrowers: an open mortgage or consumer loan
    (``products_mortgage`` / ``products_consumer_loan``; without those columns a loan balance
    above 0); affluent_savers: 3-month mean AUM at least ``affluent_aum`` (the affluent value
    tier's threshold); savers: at least the median customer's (``aum_median``); low_balance:
    below it. A missing value does not have the word.
    """
    def col(name: str) -> pd.Series:
        return pd.to_numeric(X[name], errors="coerce") if name in X.columns else pd.Series(np.nan, index=X.index)

    if word == "young":
        return col("age") < 35
    if word == "mid_career":
        return (col("age") >= 35) & (col("age") < 55)
    if word == "senior":
        return col("age") >= 55
    if word == "new":
        return col("tenure_months") <= 12
    if word == "dormant":
        return col("months_since_last_txn") >= 6
    if word == "digital":
        return col("digital_logins_3m") >= 3
    if word == "branch_based":
        return col("digital_logins_3m") == 0
    if word == "borrowers":
        held = [f"products_{c}" for c in LOAN_CATEGORIES if f"products_{c}" in X.columns]
        if held:
            return X[held].fillna(0).sum(axis=1) > 0
        return col("loan_balance_latest") > 0
    if word == "affluent_savers":
        return col("aum_avg_3m") >= affluent_aum
    if word == "savers":
        return col("aum_avg_3m") >= aum_median
    if word == "low_balance":
        return col("aum_avg_3m") < aum_median
    if word in NEUTRAL_WORDS:
        return pd.Series(True, index=X.index)
    raise ValueError(f"Unknown cluster name word {word!r}")


def centroid_parts(profile: pd.Series, features: Sequence[str], n: int = 2) -> list[str]:
    """The centroid's ``n`` largest deviations as neutral codes, e.g. ``["high:aum_avg_3m",
    "low:txn_count_3m"]`` (rendered "high AUM, low transactions")."""
    top = sorted(features, key=lambda f: (-abs(float(profile.get(f"z_{f}", 0.0))), f))[:n]
    return [f"{'high' if float(profile.get(f'z_{f}', 0.0)) > 0 else 'low'}:{f}" for f in top]


def cluster_label(code, lang: str) -> str:
    """A stored cluster name (word codes, ``high:<feature>``/``low:<feature>`` parts, an optional
    ``(high:<feature>)`` that sets it apart and ``#<n>``) in ``lang``.

    A value that is not such a code (a run stored before names were codes) is shown as it is.
    """
    from analytics.i18n import has, label, tr

    text = "" if code is None or (isinstance(code, float) and math.isnan(code)) else str(code)
    words, parts, apart, number = [], [], None, None
    for token in text.split():
        if token.startswith("#") and token[1:].isdigit():
            number = token[1:]
        elif token.startswith("(") and token.endswith(")"):
            apart = token[1:-1]
        elif ":" in token:
            parts.append(token)
        elif has(f"cluster.word.{token}"):
            words.append(token)
        else:
            return text

    def part(token: str) -> str:
        direction, feature = token.split(":", 1)
        if direction not in ("high", "low"):
            raise ValueError(token)
        return tr("cluster.high" if direction == "high" else "cluster.low", lang,
                  feature=label("feature", feature, lang))

    try:
        joiner = " " if lang == "en" else ""
        name = joiner.join(tr(f"cluster.word.{w}", lang) for w in words)
        if parts:
            rendered = tr("cluster.list_separator", lang).join(part(p) for p in parts)
            name = tr("cluster.words_and_parts", lang, words=name, parts=rendered) if name else rendered
        if apart:
            name = tr("cluster.set_apart", lang, name=name, part=part(apart))
    except ValueError:
        return text
    return tr("cluster.numbered", lang, name=name, n=number) if number else name


def cluster_settings() -> dict:
    """``k_range`` and ``sample_size`` for :class:`BehaviourClusterer` from the settings."""
    raw = settings.get("CLUSTER_K_RANGE")
    lo, hi = parse_number_list("CLUSTER_K_RANGE", raw, count=2)
    if not (lo == int(lo) and hi == int(hi) and 2 <= lo <= hi):
        raise ConfigError(f"Setting CLUSTER_K_RANGE={raw!r} must be two whole numbers 2 <= low <= high")
    return {"k_range": (int(lo), int(hi)), "sample_size": int(settings.get("CLUSTER_SAMPLE_SIZE"))}




__all__ = ["CLUSTER_FEATURES", "FEATURE_LABELS", "LOG_FEATURES", "NAME_COLUMNS", "NAME_MIN_SHARE", "NAME_WORDS",
           "BehaviourClusterer", "centroid_parts", "cluster_label", "cluster_name", "cluster_settings",
           "member_has"]
