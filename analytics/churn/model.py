"""The churn model: :class:`ChurnModel`, a calibrated classifier for any tabular frame (boosted trees
blended with a logistic regression), and the two calibrators it chooses between. How it fits is
summarised in :mod:`analytics.churn` (*The model*) and detailed in the class docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler, TargetEncoder
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

OTHER = "(other)"
_EPS = 1e-6


def _signed_log(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _expit(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


class _Sigmoid:
    """Platt scaling on the logit of a probability: ``expit(a * logit(p) + b)``."""

    def fit(self, p, y):
        self.lr_ = LogisticRegression(C=1e6).fit(_logit(p)[:, None], y)
        return self

    def predict(self, p):
        return self.lr_.predict_proba(_logit(p)[:, None])[:, 1]


class _Isotonic:
    """Isotonic regression of the outcome on the probability, with the ties it makes broken."""

    def fit(self, p, y):
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return self

    def predict(self, p):
        # Isotonic regression is a step function: its flat steps tie customers the score told apart,
        # which costs ROC AUC. A 1e-3 share of the raw score breaks those ties (the ranking is the
        # raw score's) while moving no probability by more than 0.001.
        return (1 - 1e-3) * self.iso_.predict(p) + 1e-3 * np.asarray(p, dtype=float)


_CALIBRATORS: dict[str, type] = {"isotonic": _Isotonic, "sigmoid": _Sigmoid}


class ChurnModel(ClassifierMixin, BaseEstimator):
    """A calibrated binary classifier for any tabular frame: boosted trees + logistic regression.

    Numeric columns (numbers and booleans) and categorical ones (object, string, category) are
    told apart by dtype; missing values are allowed everywhere. Fitting:

    1. Categories: each categorical column keeps its ``max_categories - 1`` most frequent values;
       the rest, and values never seen in ``fit``, become one ``"(other)"`` category.
    2. Out-of-fold scores: with at most ``cv_max_rows`` rows, ``n_folds`` stratified folds give
       every row a score from a gradient-boosting model and from a logistic regression that did
       not see it; with more rows, one stratified hold-out of ``validation_fraction`` does (the
       base models fitted on the rest are then kept as they are: with that much data a refit adds
       little and would double the time).
    3. Blend: the weight ``w`` in 0, 0.1, .., 1 of ``w * logit(p_gbm) + (1 - w) * logit(p_lr)``
       with the highest out-of-fold ROC AUC (ties to the weight nearest 0.5).
    4. Calibration: isotonic and sigmoid calibrators are compared by 5-fold cross-validated Brier
       score on the out-of-fold blended scores; the lower wins (``calibration="auto"``) and is
       fitted on all of them, as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does.
    5. Small data: the base models are refitted on every row.

    The gradient-boosting model is ``HistGradientBoostingClassifier`` (learning rate 0.1, 31 leaves,
    20 rows per leaf, L2 1.0, at most 500 trees with early stopping on a 10 % split after 20
    rounds without improvement), with native categorical splits for columns of at most
    ``native_max_categories`` categories and cross-fitted target encoding for wider ones (native
    splits over many categories overfit small data). The logistic regression (``C``) sees
    median-imputed numbers with missing-value indicators, ``sign(x) log(1 + |x|)`` of columns whose
    skewness exceeds ``skew_threshold`` (balances, amounts), standardised, and one-hot categories
    (those seen fewer than 5 times pooled).

    Parameters
    ----------
    calibration : {"auto", "isotonic", "sigmoid", "none"}
    blend : "auto" or float
        ``"auto"`` chooses the weight of the boosted trees as above; a number fixes it (1: trees
        only, 0: logistic regression only).
    n_folds : int
    cv_max_rows : int
    validation_fraction : float
    max_categories : int
    native_max_categories : int
    skew_threshold : float
    C : float
        Inverse L2 strength of the logistic regression.
    n_threads : int or None
        OpenMP/BLAS threads while fitting and predicting. 1 by default: on a busy 2-core host,
        idle threads spin-waiting made a boosted fit ~3x slower than one thread (0.98 s vs
        0.36 s for 5,000 rows in our measurement). ``None`` leaves the libraries' default.
    random_state : int, optional
        Seeds the folds, the splits and the base models.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The two classes, sorted; ``predict_proba[:, 1]`` is the probability of ``classes_[1]``.
    feature_names_in_ : numpy.ndarray
    n_features_in_ : int
    numeric_features_, categorical_features_, skewed_features_ : list of str
    categories_ : dict[str, list[str]]
        Kept categories per categorical column (last: ``"(other)"``).
    gbm_, linear_ : fitted base models
    weight_ : float
        Weight of the boosted trees in the blend.
    blend_auc_ : dict[float, float]
        Out-of-fold ROC AUC of each weight tried.
    calibration_ : str
        ``"isotonic"``, ``"sigmoid"`` or ``"none"``.
    calibration_brier_ : dict[str, float]
        Cross-validated Brier score of each calibrator compared (empty unless ``"auto"``).
    fit_mode_ : str
        ``"5-fold"`` (or fewer folds) or ``"hold-out"``.

    The training frame is never kept: only aggregate statistics (categories, medians, bin edges,
    trees, coefficients, calibration steps) are.
    """

    def __init__(self, *, calibration="auto", blend="auto", n_folds=5, cv_max_rows=30000,
                 validation_fraction=0.2, max_categories=100, native_max_categories=16,
                 skew_threshold=2.0, C=1.0, n_threads=1, random_state=None):
        self.calibration = calibration
        self.blend = blend
        self.n_folds = n_folds
        self.cv_max_rows = cv_max_rows
        self.validation_fraction = validation_fraction
        self.max_categories = max_categories
        self.native_max_categories = native_max_categories
        self.skew_threshold = skew_threshold
        self.C = C
        self.n_threads = n_threads
        self.random_state = random_state

    # --- preprocessing -------------------------------------------------------------------------

    @staticmethod
    def _as_frame(X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        array = np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"Expected a 2-D table, got an array of shape {array.shape}")
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])

    def _learn_columns(self, X: pd.DataFrame) -> None:
        numeric, categorical, categories, skewed = [], [], {}, []
        for col in X.columns:
            s = X[col]
            if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
                numeric.append(col)
                values = s.astype(float)
                if values.nunique() > 2 and abs(float(values.skew())) > self.skew_threshold:
                    skewed.append(col)
            else:
                categorical.append(col)
                counts = s.dropna().astype(str).value_counts(sort=True)
                # Most frequent first; ties by value, so the kept set does not depend on row order.
                counts = counts.rename_axis("v").reset_index().sort_values(["count", "v"], ascending=[False, True])
                keep = sorted(str(v) for v in counts["v"].iloc[: max(1, self.max_categories - 1)])
                categories[col] = [*keep, OTHER] if OTHER not in keep else keep
        self.numeric_features_ = numeric
        self.categorical_features_ = categorical
        self.categories_ = categories
        self.skewed_features_ = skewed

    def _prepare(self, X) -> np.ndarray:
        """The frame as one float matrix: numeric columns, then each categorical column as the
        index of its category in ``categories_`` (unseen values: ``"(other)"``; missing: NaN).

        Integer codes rather than pandas categoricals: the boosted trees take them as categories
        directly, and the one-hot encoder maps numbers with NumPy instead of a Python loop over
        strings (3x faster predictions, which permutation importance and reason codes repeat).
        """
        X = self._as_frame(X)
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"Required column {missing[0]} missing")
        n_numeric = len(self.numeric_features_)
        out = np.empty((len(X), n_numeric + len(self.categorical_features_)), dtype=float)
        for j, col in enumerate(self.numeric_features_):
            values = X[col]
            if pd.api.types.is_bool_dtype(values):
                values = values.astype(float)
            out[:, j] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        for j, col in enumerate(self.categorical_features_, start=n_numeric):
            cats = self.categories_[col]
            # Factorize first: the string lookups then run once per distinct value, not per row.
            codes, uniques = pd.factorize(X[col], use_na_sentinel=True)
            lookup = pd.Index(cats).get_indexer(pd.Index(uniques).astype(str)) if len(uniques) else np.array([])
            lookup = np.where(lookup == -1, cats.index(OTHER), lookup).astype(float)
            out[:, j] = np.where(codes >= 0, lookup[np.maximum(codes, 0)] if len(lookup) else np.nan, np.nan)
        return out

    def _positions(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """Column positions in the prepared matrix: plain numbers, skewed numbers, narrow and wide
        categories."""
        n_numeric = len(self.numeric_features_)
        plain = [j for j, c in enumerate(self.numeric_features_) if c not in self.skewed_features_]
        skewed = [j for j, c in enumerate(self.numeric_features_) if c in self.skewed_features_]
        narrow = [n_numeric + i for i, c in enumerate(self.categorical_features_)
                  if len(self.categories_[c]) <= self.native_max_categories]
        wide = [n_numeric + i for i, c in enumerate(self.categorical_features_)
                if len(self.categories_[c]) > self.native_max_categories]
        return plain, skewed, narrow, wide

    # --- base learners -------------------------------------------------------------------------

    def _gbm(self):
        _, _, narrow, wide = self._positions()
        width = self.n_features_in_
        kept = [j for j in range(width) if j not in wide]
        # After the target encoder the wide columns come first, then the others in order.
        mask = [False] * len(wide) + [j in narrow for j in kept]
        trees = HistGradientBoostingClassifier(
            categorical_features=mask if any(mask) else None, learning_rate=0.1, max_iter=500,
            max_leaf_nodes=31, min_samples_leaf=20, l2_regularization=1.0, early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=20, random_state=self.random_state)
        if not wide:
            return trees
        folds = StratifiedKFold(5, shuffle=True, random_state=self.random_state)
        encode = ColumnTransformer([("target", TargetEncoder(cv=folds), wide)], remainder="passthrough")
        return make_pipeline(encode, trees)

    def _linear(self):
        def numbers():
            return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)

        plain, skewed, narrow, wide = self._positions()
        parts = []
        if plain:
            parts.append(("plain", make_pipeline(numbers(), StandardScaler()), plain))
        if skewed:
            parts.append(("skewed", make_pipeline(numbers(), FunctionTransformer(_signed_log), StandardScaler()),
                          skewed))
        if narrow or wide:
            parts.append(("categories", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5),
                          sorted(narrow + wide)))
        return Pipeline([("prepare", ColumnTransformer(parts)),
                         ("logistic", LogisticRegression(C=self.C, max_iter=5000))])

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, X, y):
        """Fit on a frame ``X`` and binary labels ``y``; return self.

        Raises
        ------
        ValueError
            When ``y`` does not hold exactly two classes, the rarer has fewer than 2 rows, or
            ``X`` and ``y`` differ in length.
        """
        with threadpool_limits(limits=self.n_threads):
            return self._fit(X, y)

    def _fit(self, X, y):
        if not 2 <= int(self.max_categories) <= 255:
            # The trees take category codes below their 255 bins.
            raise ValueError(f"max_categories must be between 2 and 255, not {self.max_categories}")
        if self.calibration not in ("auto", "isotonic", "sigmoid", "none", None):
            raise ValueError(f"calibration must be auto, isotonic, sigmoid or none, not {self.calibration!r}")
        X = self._as_frame(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has shape {y.shape}")
        if pd.isna(pd.Series(y)).any():
            raise ValueError("y has missing values")
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"ChurnModel needs exactly two classes in y, got {len(self.classes_)}")
        target = (y == self.classes_[1]).astype(int)
        minority = int(min(target.sum(), len(target) - target.sum()))
        if minority < 2:
            raise ValueError("The rarer class has fewer than 2 rows: nothing to learn from")
        X = X.set_axis([str(c) for c in X.columns], axis=1)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self._learn_columns(X)
        Z = self._prepare(X)
        seeds = np.random.RandomState(self.random_state).randint(0, 2**31 - 1, size=3)

        if len(Z) <= self.cv_max_rows:
            folds = max(2, min(self.n_folds, minority))
            scores = np.zeros((len(Z), 2))
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seeds[0])
            for train, val in splitter.split(Z, target):
                scores[val, 0] = self._gbm().fit(Z[train], target[train]).predict_proba(Z[val])[:, 1]
                scores[val, 1] = self._linear().fit(Z[train], target[train]).predict_proba(Z[val])[:, 1]
            y_val = target
            self.gbm_ = self._gbm().fit(Z, target)
            self.linear_ = self._linear().fit(Z, target)
            self.fit_mode_ = f"{folds}-fold"
        else:
            train, val = train_test_split(np.arange(len(Z)), test_size=self.validation_fraction, stratify=target,
                                          random_state=seeds[0])
            self.gbm_ = self._gbm().fit(Z[train], target[train])
            self.linear_ = self._linear().fit(Z[train], target[train])
            scores = np.column_stack([self.gbm_.predict_proba(Z[val])[:, 1],
                                      self.linear_.predict_proba(Z[val])[:, 1]])
            y_val = target[val]
            self.fit_mode_ = "hold-out"

        self.weight_, self.blend_auc_ = self._choose_weight(scores, y_val)
        blended = self._blend(scores[:, 0], scores[:, 1])
        self.calibration_, self.calibration_brier_ = self._choose_calibration(blended, y_val, seeds[1])
        self.calibrator_ = (None if self.calibration_ == "none"
                            else _CALIBRATORS[self.calibration_]().fit(blended, y_val))
        return self

    def _choose_weight(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        grid = np.round(np.linspace(0, 1, 11), 1) if self.blend == "auto" else [float(self.blend)]
        if self.blend != "auto" and not 0 <= grid[0] <= 1:
            raise ValueError(f"blend must be 'auto' or a weight in [0, 1], not {self.blend!r}")
        logits = _logit(scores)
        aucs = {float(w): float(roc_auc_score(y, w * logits[:, 0] + (1 - w) * logits[:, 1])) for w in grid}
        best = max(aucs, key=lambda w: (round(aucs[w], 6), -abs(w - 0.5)))
        return best, aucs

    def _blend(self, p_gbm, p_linear) -> np.ndarray:
        return _expit(self.weight_ * _logit(p_gbm) + (1 - self.weight_) * _logit(p_linear))

    def _choose_calibration(self, p: np.ndarray, y: np.ndarray, seed) -> tuple[str, dict]:
        if self.calibration in (None, "none"):
            return "none", {}
        if self.calibration != "auto":
            return self.calibration, {}
        folds = max(2, min(5, int(min(y.sum(), len(y) - y.sum()))))
        brier = dict.fromkeys(_CALIBRATORS, 0.0)
        for train, val in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p, y):
            for name, calibrator in _CALIBRATORS.items():
                fitted = calibrator().fit(p[train], y[train])
                brier[name] += brier_score_loss(y[val], np.clip(fitted.predict(p[val]), 0, 1)) * len(val)
        brier = {k: v / len(y) for k, v in brier.items()}
        # The lower Brier wins; a tie goes to sigmoid (two parameters, the smoother answer).
        return min(brier, key=lambda k: (round(brier[k], 12), k != "sigmoid")), brier

    # --- predict -------------------------------------------------------------------------------

    def _raw_proba(self, Z: np.ndarray) -> np.ndarray:
        return self._blend(self.gbm_.predict_proba(Z)[:, 1], self.linear_.predict_proba(Z)[:, 1])

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``: column 1 is ``classes_[1]`` (churn)."""
        check_is_fitted(self, "calibrator_")
        with threadpool_limits(limits=self.n_threads):
            p = self._raw_proba(self._prepare(X))
            if self.calibrator_ is not None:
                p = np.clip(self.calibrator_.predict(p), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict_proba_uncalibrated(self, X) -> np.ndarray:
        """The blended probabilities before calibration, shape ``(n, 2)`` (for comparison)."""
        check_is_fitted(self, "calibrator_")
        with threadpool_limits(limits=self.n_threads):
            p = self._raw_proba(self._prepare(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The more probable class of each row (probability of ``classes_[1]`` at least 0.5)."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


__all__ = ["OTHER", "ChurnModel"]
