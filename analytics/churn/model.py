"""The churn model: :class:`ChurnModel`, a calibrated classifier for any tabular frame (boosted trees,
a regularised logistic regression or a blend of the two, chosen by inner cross-validation), and the
two calibrators it chooses between. How it fits is
summarised in :mod:`analytics.churn` (*The model*) and detailed in the class docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
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


class _LogitAverage(ClassifierMixin, BaseEstimator):
    """The mean on the logit scale of the probabilities of several binary classifiers, each fitted
    on the same rows (the trees on two encodings of the wide categorical columns)."""

    def __init__(self, models):
        self.models = models

    def fit(self, X, y):
        self.models_ = [clone(model).fit(X, y) for model in self.models]
        self.classes_ = self.models_[0].classes_
        return self

    def predict_proba(self, X):
        p = _expit(np.mean([_logit(model.predict_proba(X)[:, 1]) for model in self.models_], axis=0))
        return np.column_stack([1.0 - p, p])


def _candidate_scores(models: list, Z: np.ndarray) -> np.ndarray:
    """Rows × models: each model's probability of class 1. Pipelines that share one fitted
    preparation (:meth:`ChurnModel._fit_linears`) transform ``Z`` once between them."""
    prepared: dict[int, object] = {}
    columns = []
    for model in models:
        if isinstance(model, Pipeline) and len(model.steps) == 2 and model.steps[0][0] == "prepare":
            prepare, final = model.steps[0][1], model.steps[1][1]
            if id(prepare) not in prepared:
                prepared[id(prepare)] = prepare.transform(Z)
            columns.append(final.predict_proba(prepared[id(prepare)])[:, 1])
        else:
            columns.append(model.predict_proba(Z)[:, 1])
    return np.column_stack(columns)


# The candidates the model chooses among (see ChurnModel): two tree models, "gbm" (ours) and
# "default" (scikit-learn's defaults), both on the encoding of ChurnModel._tree_model, logistic
# regressions of these inverse L2 strengths (half decades: with whole decades the best C of a small
# set often fell between two of them), and the blend weights of the trees between them.
TREE_CANDIDATES: tuple[str, ...] = ("default",)
LINEAR_CS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
WEIGHTS: list[float] = [float(w) for w in np.round(np.linspace(0, 1, 11), 1)]
# A blend replaces the best single model only when its out-of-fold ROC AUC gain exceeds this many
# standard errors of the per-fold gains (see ChurnModel, step 3).
BLEND_MIN_SE = 2.0


class ChurnModel(ClassifierMixin, BaseEstimator):
    """A calibrated binary classifier for any tabular frame: boosted trees + logistic regression.

    Numeric columns (numbers and booleans) and categorical ones (object, string, category) are
    told apart by dtype; missing values are allowed everywhere. Fitting:

    1. Categories: each categorical column keeps its ``max_categories - 1`` most frequent values;
       the rest, and values never seen in ``fit``, become one ``"(other)"`` category.
    2. Out-of-fold scores: with at most ``cv_max_rows`` rows, ``n_folds`` stratified folds give
       every row a score from each candidate base model that did not see it; with more rows, one
       stratified hold-out of ``validation_fraction`` does (the base models fitted on the rest are
       then kept as they are: with that much data a refit adds little and would double the time).
       Every base model is fitted on the same folds.
    3. Choice: the single model with the highest out-of-fold ROC AUC, among the gradient-boosting
       model alone and each logistic regression alone (``C`` in :data:`LINEAR_CS`), unless a blend
       does better: every weight ``w`` in 0.1, .., 0.9 of ``w * logit(p_trees) + (1 - w) *
       logit(p_logistic)`` for every (trees, C) pair is scored, and the best blend replaces the
       best single model only when its gain, measured fold by fold (in hold-out mode: on
       ``n_folds`` stratified parts of the hold-out), exceeds :data:`BLEND_MIN_SE` standard errors
       of those per-fold gains (``blend_gain_``). A plain argmax over the 71 candidates picked, on
       small sets, blends whose edge was within the noise of the choice and that then lost to the
       single model out of sample. Ties to 6 decimals go to a single model before a blend, then the
       weight nearest 0.5, then the larger C. The blends are scored from the folds' predictions:
       they cost no further fit. Only the training data is used; the choice is kept in
       ``candidate_``.
    4. Calibration: isotonic and sigmoid calibrators are compared by 5-fold cross-validated Brier
       score on the out-of-fold blended scores; the lower wins (``calibration="auto"``) and is
       fitted on all of them, as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does.
    5. Small data: the chosen base models (one, or the two of a blend) are refitted on every row.

    The gradient-boosting model is ``HistGradientBoostingClassifier`` with scikit-learn's defaults
    (the plain baseline the model must never lose to), with native categorical splits for columns
    of at most ``native_max_categories`` categories (native splits over many categories overfit
    small data). Wider columns get a cross-fitted target encoding; with at most ``cv_max_rows``
    rows the trees are the mean on the logit scale of two tree models, one on that encoding and one
    on one-hot columns (on ``mlc_churn``, 51 states, either encoding beat the other by up to 0.011
    ROC AUC depending on the fold; see :meth:`_tree_model`). That costs about three tree fits
    instead of one (the one-hot model sees more columns): 7.8 s -> 11.8 s of CPU for a 30,000-row
    fit with a 48-value column; frames without wide columns, and larger ones, are unchanged. An earlier tuned configuration (at
    most 500 trees, L2 1.0, early stopping after 20 rounds; ``_gbm``) is kept as a candidate name
    ``"gbm"`` for :data:`TREE_CANDIDATES`, not tried by default: it doubled the fitting time for no
    gain on the public sets of ``tests/analytics/test_churn_public.py``. The logistic regression (``C``) sees
    median-imputed numbers with missing-value indicators, standardised; columns whose skewness
    exceeds ``skew_threshold`` (balances, amounts) a second time as ``sign(x) log(1 + |x|)``,
    standardised, so that the penalty weighs the raw and the log scale; and one-hot categories
    (those seen fewer than 5 times pooled).

    Parameters
    ----------
    calibration : {"auto", "isotonic", "sigmoid", "none"}
    blend : "auto" or float
        ``"auto"`` chooses among the candidates as above; a number fixes the weight of the trees
        (1: trees only, 0: logistic regression only) and only the (trees, C) pair is chosen.
    n_folds : int
    cv_max_rows : int
    validation_fraction : float
    max_categories : int
    native_max_categories : int
    skew_threshold : float
    C : "auto" or float
        Inverse L2 strength of the logistic regression: ``"auto"`` tries each of
        :data:`LINEAR_CS`; a number fixes it.
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
        The trees and the logistic regression; ``None`` when the choice does not use it.
    weight_ : float
        Weight of the boosted trees in the blend (1: trees only, 0: logistic regression only).
    candidate_ : dict
        The chosen candidate: ``kind`` ("trees", "logistic" or "blend"), ``trees`` (the tree
        model's name or None), ``C`` (or None), ``weight`` and ``cv_auc`` (its out-of-fold ROC AUC).
    cv_scores_ : dict[str, float]
        Out-of-fold ROC AUC of each single model ("trees default", "logistic C=0.1", ...) and of
        the best blend ("blend").
    blend_auc_ : dict[float, float]
        Out-of-fold ROC AUC of each weight for the chosen (trees, C) pair.
    blend_gain_ : dict or None
        When a blend scored best: ``gain`` (mean per-fold ROC AUC gain over the best single
        model), ``se`` (its standard error) and ``chosen`` (whether the gain passed the bar);
        None when a single model scored best.
    calibration_ : str
        ``"isotonic"``, ``"sigmoid"`` or ``"none"``.
    calibration_brier_ : dict[str, float]
        Cross-validated Brier score of each calibrator compared (empty unless ``"auto"``).
    fit_mode_ : str
        ``"5-fold"`` (or fewer folds) or ``"hold-out"``.
    wide_encoding_ : str
        How the trees see categorical columns wider than ``native_max_categories``:
        ``"target+onehot"`` (the mean of two tree models; at most ``cv_max_rows`` rows) or
        ``"target"`` (see :meth:`_tree_model`).

    The training frame is never kept: only aggregate statistics (categories, medians, bin edges,
    trees, coefficients, calibration steps) are.
    """

    def __init__(self, *, calibration="auto", blend="auto", n_folds=5, cv_max_rows=30000,
                 validation_fraction=0.2, max_categories=100, native_max_categories=16,
                 skew_threshold=2.0, C="auto", n_threads=1, random_state=None):
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

    def _tree_model(self, **params):
        """``HistGradientBoostingClassifier(**params)`` with native categorical splits for the narrow
        categorical columns. Wide ones (more than ``native_max_categories`` categories) are encoded
        twice, and the model is then the mean on the logit scale of two tree models fitted on the
        same rows (:class:`_LogitAverage`): one on a cross-fitted target encoding of the wide
        columns, one on their one-hot columns.

        Native splits over many categories overfit small data; of the two encodings, neither was
        the better one fold by fold. On ``mlc_churn`` of ``tests/analytics/test_churn_public.py``
        (``state``, 51 values; 10 outer folds) the target-encoded trees alone scored -0.0067 to
        +0.0090 ROC AUC against the baseline's trees on one-hot columns (+0.0019 on average), the
        one-hot ones -0.0046 to +0.0055 (+0.0009), their mean -0.0023 to +0.0050 (+0.0018).

        Only on small data (at most ``cv_max_rows`` rows, ``wide_encoding_`` "target+onehot"): on
        more rows the target encoding is estimated well, and the second model doubled the churn
        stage of a 100,000-customer refresh (73 s -> 145 s, every score and reason code predicts
        twice) for no gain (hold-out ROC AUC 0.9604 with the target encoding alone, 0.9590 with
        the mean); there ``wide_encoding_`` is "target"."""
        _, _, narrow, wide = self._positions()
        kept = [j for j in range(self.n_features_in_) if j not in wide]

        def trees(n_encoded: int):
            # After an encoder the encoded columns come first, then the others in order.
            mask = [False] * n_encoded + [j in narrow for j in kept]
            return HistGradientBoostingClassifier(categorical_features=mask if any(mask) else None,
                                                  random_state=self.random_state, **params)

        if not wide:
            return trees(0)
        folds = StratifiedKFold(5, shuffle=True, random_state=self.random_state)
        target = ColumnTransformer([("target", TargetEncoder(cv=folds), wide)], remainder="passthrough")
        if getattr(self, "wide_encoding_", "target+onehot") == "target":
            return make_pipeline(target, trees(len(wide)))
        # The codes of every kept category (see _prepare); a missing value has no column of its own.
        codes = [np.arange(len(self.categories_[self.categorical_features_[j - len(self.numeric_features_)]]),
                           dtype=float) for j in wide]
        onehot = ColumnTransformer([("onehot", OneHotEncoder(categories=codes, handle_unknown="ignore",
                                                             sparse_output=False), wide)],
                                   remainder="passthrough")
        return _LogitAverage([make_pipeline(target, trees(len(wide))),
                              make_pipeline(onehot, trees(sum(len(c) for c in codes)))])

    def _gbm(self):
        return self._tree_model(learning_rate=0.1, max_iter=500, max_leaf_nodes=31, min_samples_leaf=20,
                                l2_regularization=1.0, early_stopping=True, validation_fraction=0.1,
                                n_iter_no_change=20)

    def _default_trees(self):
        """``HistGradientBoostingClassifier`` with scikit-learn's defaults, on the same encoding as
        :meth:`_gbm` (see :meth:`_tree_model`)."""
        return self._tree_model()

    def _trees(self, name: str):
        return self._gbm() if name == "gbm" else self._default_trees()

    def _Cs(self) -> list[float]:
        if isinstance(self.C, str):
            if self.C != "auto":
                raise ValueError(f"C must be 'auto' or a positive number, not {self.C!r}")
            return list(LINEAR_CS)
        if not float(self.C) > 0:
            raise ValueError(f"C must be 'auto' or a positive number, not {self.C!r}")
        return [float(self.C)]

    def _linear(self, C=None):
        def numbers():
            return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)

        plain, skewed, narrow, wide = self._positions()
        parts = []
        if plain or skewed:
            parts.append(("plain", make_pipeline(numbers(), StandardScaler()), sorted(plain + skewed)))
        if skewed:
            # Skewed columns enter twice, as they are and as a signed log: the L2 penalty weighs the
            # two (a fixed switch at the skewness threshold flipped with the sample and cost up to
            # 0.007 ROC AUC on a public set where the raw scale was the better one).
            parts.append(("skewed", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                                  FunctionTransformer(_signed_log), StandardScaler()), skewed))
        if narrow or wide:
            parts.append(("categories", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5),
                          sorted(narrow + wide)))
        return Pipeline([("prepare", ColumnTransformer(parts)),
                         ("logistic", LogisticRegression(C=float(C if C is not None else self._Cs()[0]),
                                                         max_iter=5000))])

    def _fit_linears(self, Z: np.ndarray, y: np.ndarray, Cs: list[float]) -> list[Pipeline]:
        """:meth:`_linear` fitted for every ``C`` of ``Cs``, the preparation fitted once: it does not
        depend on ``C`` (medians, means, categories), and fitting it once per ``C`` cost as much as
        the regressions. The pipelines share the one fitted preparation; each is the pipeline
        ``_linear(C).fit(Z, y)`` gives."""
        template = self._linear(Cs[0])
        prepare = template.named_steps["prepare"]
        A = prepare.fit_transform(Z, y)
        return [Pipeline([("prepare", prepare),
                          ("logistic", clone(template.named_steps["logistic"]).set_params(C=float(C)).fit(A, y))])
                for C in Cs]

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
        # Wide categorical columns: both encodings on small data, where either one's noise decides a
        # fold; the target encoding alone on more rows (see _tree_model).
        self.wide_encoding_ = "target+onehot" if len(Z) <= self.cv_max_rows else "target"
        seeds = np.random.RandomState(self.random_state).randint(0, 2**31 - 1, size=3)

        if self.blend != "auto" and not (isinstance(self.blend, (int, float)) and 0 <= self.blend <= 1):
            raise ValueError(f"blend must be 'auto' or a weight in [0, 1], not {self.blend!r}")
        Cs = self._Cs()
        weight_grid = WEIGHTS if self.blend == "auto" else [float(self.blend)]
        trees = [] if max(weight_grid) == 0 else list(TREE_CANDIDATES)
        linears = [] if min(weight_grid) == 1 else Cs
        # Column j of ``scores``: the trees in ``trees`` order, then a logistic regression per C.
        names = [*trees, *(f"logistic C={C:g}" for C in linears)]

        def fit_all(rows) -> list:
            return ([self._trees(t).fit(Z[rows], target[rows]) for t in trees]
                    + (self._fit_linears(Z[rows], target[rows], linears) if linears else []))

        if len(Z) <= self.cv_max_rows:
            folds = max(2, min(self.n_folds, minority))
            scores = np.zeros((len(Z), len(names)))
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seeds[0])
            parts = []
            # Every candidate on the same folds: each blend is then scored from these out-of-fold
            # predictions at no further fitting cost.
            for train, val in splitter.split(Z, target):
                scores[val] = _candidate_scores(fit_all(train), Z[val])
                parts.append(val)
            y_val = target
            fitted = None
            self.fit_mode_ = f"{folds}-fold"
        else:
            train, val = train_test_split(np.arange(len(Z)), test_size=self.validation_fraction, stratify=target,
                                          random_state=seeds[0])
            fitted = fit_all(train)
            scores = _candidate_scores(fitted, Z[val])
            y_val = target[val]
            self.fit_mode_ = "hold-out"
            # The hold-out in stratified parts, for the standard error of a blend's gain.
            n_parts = max(2, min(self.n_folds, int(min(y_val.sum(), len(y_val) - y_val.sum()))))
            parts = [part for _, part in StratifiedKFold(n_parts, shuffle=True, random_state=seeds[2])
                     .split(scores, y_val)]

        choice, self.cv_scores_ = self._choose_candidate(scores, y_val, trees, linears, weight_grid, parts)
        self.weight_ = choice["weight"]
        self.candidate_ = choice
        # The blend curve of the chosen pair (a pure choice: paired with the best of the other kind).
        best = {kind: max((k for k in self._blend_aucs_ if k[2] == w), key=self._blend_aucs_.get, default=None)
                for kind, w in (("trees", 1.0), ("logistic", 0.0))}
        pair_t = choice["trees"] if choice["trees"] is not None else (best["trees"] or (None,))[0]
        pair_C = choice["C"] if choice["C"] is not None else (best["logistic"] or (None, None))[1]
        self.blend_auc_ = {w: self._blend_aucs_[key] for w in weight_grid
                           if (key := (pair_t if w > 0 else None, pair_C if w < 1 else None, w)) in self._blend_aucs_}
        tree_j = trees.index(choice["trees"]) if choice["trees"] is not None else None
        linear_j = len(trees) + linears.index(choice["C"]) if choice["C"] is not None else None
        if fitted is None:
            # Small data: the chosen base models are refitted on every row.
            self.gbm_ = self._trees(choice["trees"]).fit(Z, target) if tree_j is not None else None
            self.linear_ = self._linear(choice["C"]).fit(Z, target) if linear_j is not None else None
        else:
            # Large data: the base models fitted on the rest are kept as they are.
            self.gbm_ = fitted[tree_j] if tree_j is not None else None
            self.linear_ = fitted[linear_j] if linear_j is not None else None
        blended = self._blend(scores[:, tree_j] if tree_j is not None else None,
                              scores[:, linear_j] if linear_j is not None else None)
        self.calibration_, self.calibration_brier_ = self._choose_calibration(blended, y_val, seeds[1])
        self.calibrator_ = (None if self.calibration_ == "none"
                            else _CALIBRATORS[self.calibration_]().fit(blended, y_val))
        return self

    def _choose_candidate(self, scores: np.ndarray, y: np.ndarray, trees: list, linears: list,
                          weights: list, parts: list) -> tuple[dict, dict]:
        """The single model (every tree model alone, every logistic regression alone) with the
        highest out-of-fold ROC AUC, or the best blend (every weight of every (tree, logistic)
        pair) when it beats that model by more than :data:`BLEND_MIN_SE` standard errors of the
        per-part gains (``parts``: the folds, or the hold-out's stratified parts).

        Ties (to 6 decimals) go to the simpler candidate: one base model before a blend, then the
        weight nearest 0.5, the scikit-learn default trees before ours, the larger C."""
        logits = _logit(scores)
        n_trees = len(trees)
        aucs: dict[tuple, float] = {}

        def combined(t, C, w):
            return ((w * logits[:, trees.index(t)] if t is not None else 0.0)
                    + ((1 - w) * logits[:, n_trees + linears.index(C)] if C is not None else 0.0))

        for w in weights:
            pairs = ([(t, None) for t in trees] if w == 1 else [(None, C) for C in linears] if w == 0
                     else [(t, C) for t in trees for C in linears])
            for t, C in pairs:
                aucs[(t, C, float(w))] = float(roc_auc_score(y, combined(t, C, w)))
        self._blend_aucs_ = aucs

        def rank(key):
            t, C, w = key
            return (round(aucs[key], 6), w in (0.0, 1.0), -abs(w - 0.5), t == "default", C or 0.0)

        t, C, w = max(aucs, key=rank)
        singles = [key for key in aucs if key[2] in (0.0, 1.0)]
        self.blend_gain_ = None
        if w not in (0.0, 1.0) and singles and len(parts) >= 2:
            # The gain of the best blend over the best single model, part by part: on small data
            # the blend's edge is often within the noise of the choice, and a blend that wins the
            # inner cross-validation by a hair lost to the plain single model out of sample.
            single = max(singles, key=rank)
            z_blend, z_single = combined(t, C, w), combined(*single)
            gains = np.array([roc_auc_score(y[part], z_blend[part]) - roc_auc_score(y[part], z_single[part])
                              for part in parts])
            gain, se = float(gains.mean()), float(gains.std(ddof=1) / np.sqrt(len(gains)))
            self.blend_gain_ = {"gain": gain, "se": se, "chosen": bool(gain > BLEND_MIN_SE * se)}
            if not self.blend_gain_["chosen"]:
                t, C, w = single
        kind = "trees" if w == 1 else "logistic" if w == 0 else "blend"
        choice = {"kind": kind, "trees": t, "C": C, "weight": w, "cv_auc": aucs[(t, C, w)]}
        summary = {}
        for (t2, C2, w2), auc in aucs.items():
            label = (f"trees {t2}" if w2 == 1 else f"logistic C={C2:g}" if w2 == 0
                     else "blend")
            summary[label] = max(summary.get(label, -1.0), auc)
        return choice, summary

    def _blend(self, p_gbm, p_linear) -> np.ndarray:
        if p_linear is None:
            return np.asarray(p_gbm, dtype=float)
        if p_gbm is None:
            return np.asarray(p_linear, dtype=float)
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
        return self._blend(self.gbm_.predict_proba(Z)[:, 1] if self.gbm_ is not None else None,
                           self.linear_.predict_proba(Z)[:, 1] if self.linear_ is not None else None)

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated probabilities, shape ``(n, 2)``: column 1 is ``classes_[1]`` (churn)."""
        check_is_fitted(self, "calibrator_")
        return self.predict_proba_prepared(self.prepare(X))

    def prepare(self, X) -> np.ndarray:
        """``X`` as the float matrix the base models read: column ``j`` is made from
        ``prepared_columns()[j]`` alone and row ``i`` from row ``i`` alone (a category becomes its
        code), so replacing a column's values in the frame replaces that matrix column only.
        ``predict_proba_prepared(prepare(X))`` is ``predict_proba(X)``; the reason codes prepare a
        block once instead of once per reason group (:class:`analytics.churn.reasons.MatrixModel`)."""
        check_is_fitted(self, "calibrator_")
        return self._prepare(X)

    def prepared_columns(self) -> list[str]:
        """The frame column behind each column of :meth:`prepare`'s matrix, in order."""
        check_is_fitted(self, "calibrator_")
        return [*self.numeric_features_, *self.categorical_features_]

    def predict_proba_prepared(self, Z: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` of a matrix :meth:`prepare` made."""
        check_is_fitted(self, "calibrator_")
        with threadpool_limits(limits=self.n_threads):
            p = self._raw_proba(Z)
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
