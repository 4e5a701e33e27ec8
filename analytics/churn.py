"""Churn early warning: the label, a calibrated general-purpose classifier, honest hold-out metrics,
reason codes in words, and a list of customers ranked by value at risk.

The label
---------
:func:`churn_labels` works at a *cut-off month* ``m0`` with a horizon of ``H`` months
(``CHURN_HORIZON_MONTHS``, default 3) and an AUM-drop threshold ``d`` (``CHURN_AUM_DROP``, 0.8).

*Population* (the customers "active at the cut-off") — every customer who

* opened by the last day of ``m0``,
* holds at least one product open at the end of ``m0`` (a holding opened on or before that day
  and not closed by it), and
* made at least one customer-initiated transaction (``txn_count > 0``) in the ``H`` months up to
  and including ``m0``.

Customers outside it are not at risk of churning: they already have. ``closed`` ones hold no open
product; ``inactive`` ones hold products but made no transaction for ``H`` months, which is the
dormancy the label looks for. They are kept out of training and evaluation, where they would
inflate every metric with easy cases, and are scored separately (see *Scoring* below).

*Churn within the horizon* — a customer of the population churns when, over months
``m0 + 1 .. m0 + H``, at least one of

* **closed**: no holding is open at the end of month ``m0 + H`` (every product closed, none new);
* **AUM drop**: AUM of month ``m0 + H`` is at most ``(1 - d)`` times AUM of ``m0`` (only when AUM
  of ``m0`` is positive): with ``d = 0.8``, a fall of 80 % or more, held to the horizon's end
  (a dip that recovers by then is not churn);
* **dormant**: no customer-initiated transaction in any month of the horizon (``txn_count`` is 0,
  or the month has no row, for each of the ``H`` months).

A month without a ``customer_monthly`` row counts as zero balances and no activity, as in
:mod:`analytics.features`. The store must hold activity up to ``m0 + H``, or the label is not
defined and :class:`ChurnError` says so.

Training, hold-out and scoring
------------------------------
At the run's month ``A``: a model is trained on features at ``A - 2H`` with labels over the next
``H`` months, then evaluated on features at ``A - H`` with labels over ``A - H + 1 .. A`` — a
time-based hold-out the model never saw. Every metric stored with a run comes from that hold-out
only. The model that scores today's customers is then refitted on both periods and applied to the
features at ``A``. Features come from :func:`analytics.features.customer_features`, built only from
data up to their cut-off; ``status`` (today's outcome) is never a feature. At most
``CHURN_SAMPLE_SIZE`` customers (random, seeded) are used per fit and for the hold-out metrics, so a
million-customer store fits in minutes; every customer is scored.

Scoring every customer: the *active* population gets the model's probability and reason codes;
*inactive* customers get the share of inactive customers at ``A - H`` who met the churn label over
the following ``H`` months (a measured rate, not the model's extrapolation); *closed* customers get
1. Only active customers are on the early-warning list: the others are a reactivation question.

The model
---------
:class:`ChurnModel` is a scikit-learn classifier for any tabular frame with numeric and categorical
columns and missing values: a gradient-boosting model (``HistGradientBoostingClassifier``, native
categorical splits for columns of up to 16 categories, cross-fitted target encoding for wider
ones, early stopping) and a regularised logistic regression (imputed, standardised, signed-log of
heavily skewed columns, one-hot categories), blended on the logit scale with a weight chosen on
out-of-fold predictions, then calibrated by isotonic or sigmoid (Platt) regression, whichever has
the lower cross-validated Brier score on those out-of-fold predictions. See its docstring.

Reason codes
------------
:class:`ReasonCoder` explains one customer's probability by *group replacement*: for each group
of related features (:data:`REASON_GROUPS`, e.g. every AUM-change column), the probability is
recomputed with that group set to the population's typical values (median, or most frequent
category); the drop ``p - p_group`` is the group's contribution. The three groups with the largest
positive contributions (at least :data:`MIN_REASON_CONTRIBUTION`) become phrases built from the
customer's own values ("AUM down 45 % in 3 months", "logins fell from 12 to 2 a month",
"3 complaints in 6 months"). It costs one prediction per group, not a game-theoretic attribution,
and it is exact for what it says: "with typical values here, the probability would be this much
lower".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler, TargetEncoder
from sklearn.utils.validation import check_is_fitted
from sqlalchemy import Date, Engine, bindparam, text
from threadpoolctl import threadpool_limits

from analytics import settings
from analytics.errors import AnalyticsError, ConfigError
from analytics.features import FEATURE_COLUMNS, add_months, customer_features, month_end, to_datetime
from analytics.runs import Laps
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)


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


def _month(value) -> date:
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


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    # Money comes back as Decimal from PostgreSQL through a text() query: coerce to float.
    return pd.to_numeric(frame[col], errors="coerce").astype(float).fillna(0.0)


def _open_holdings(engine: Engine, day: date, column: str) -> pd.DataFrame:
    """Open holdings per customer at the end of ``day`` (opened by then, not yet closed), as ``column``."""
    return read_frame(engine, text(f"""
        SELECT customer_id, COUNT(*) AS {column} FROM holdings
        WHERE opened_on <= :day AND (closed_on IS NULL OR closed_on > :day)
        GROUP BY customer_id
    """).bindparams(bindparam("day", type_=Date)), {"day": day}).set_index("customer_id")


def cutoff_states(engine: Engine, cutoff_month, horizon_months: int = 3) -> pd.Series:
    """Each customer's state at a cut-off: ``active`` (the label's population), ``inactive`` or ``closed``.

    Uses data up to the end of ``cutoff_month`` only. ``closed``: no holding open at the end of
    the month; ``inactive``: holdings open but no customer-initiated transaction in the
    ``horizon_months`` months up to and including it; ``active``: the rest. Indexed by
    ``customer_id`` (customers opened by the end of the month), named ``churn_state``.
    """
    if horizon_months < 1:
        raise ChurnError(f"horizon_months must be at least 1, got {horizon_months}")
    m0 = _month(cutoff_month)
    end0 = month_end(m0)
    first = add_months(m0, -(horizon_months - 1))
    records = read_frame(engine, text("SELECT customer_id FROM customers WHERE open_date <= :e0")
                         .bindparams(bindparam("e0", type_=Date)), {"e0": end0}).set_index("customer_id")
    activity = read_frame(engine, text("""
        SELECT customer_id, SUM(txn_count) AS txn_before
        FROM customer_monthly WHERE month >= :first AND month <= :m0
        GROUP BY customer_id
    """).bindparams(bindparam("first", type_=Date), bindparam("m0", type_=Date)),
        {"first": first, "m0": m0}).set_index("customer_id")
    holdings = _open_holdings(engine, end0, "open_cutoff")
    frame = records.join(activity, how="left").join(holdings, how="left").sort_index()
    has_open = _num(frame, "open_cutoff") > 0
    transacted = _num(frame, "txn_before") > 0
    state = np.where(~has_open, "closed", np.where(transacted, "active", "inactive"))
    return pd.Series(state, index=frame.index, name="churn_state", dtype=object)


def churn_outcomes(engine: Engine, cutoff_month, horizon_months: int = 3, aum_drop: float = 0.8) -> pd.DataFrame:
    """The three churn criteria over the ``horizon_months`` after ``cutoff_month``, for every customer
    opened by the end of the cut-off month (whatever their state); see :func:`churn_labels`.

    Columns: ``churn_state`` (at the cut-off), ``closed``, ``aum_dropped``, ``dormant``, ``churned``
    (any of the three), ``aum_cutoff``, ``aum_end``.

    Raises
    ------
    ChurnError
        When the store holds no activity for month ``cutoff + horizon``.
    """
    if not 0 < aum_drop <= 1:
        raise ChurnError(f"aum_drop must be a fraction in (0, 1], got {aum_drop}")
    m0 = _month(cutoff_month)
    mh = add_months(m0, horizon_months)
    last = _last_activity_month(engine)
    if last is None or last < mh:
        raise ChurnError(f"Churn labels at {m0:%Y-%m} need activity up to {mh:%Y-%m}; the store holds "
                         f"{'none' if last is None else f'up to {last:%Y-%m}'}. Use an earlier cut-off.")
    states = cutoff_states(engine, m0, horizon_months)
    monthly = read_frame(engine, text("""
        SELECT customer_id,
          SUM(CASE WHEN month > :m0 THEN txn_count ELSE 0 END) AS txn_after,
          SUM(CASE WHEN month = :m0 THEN aum END) AS aum_cutoff,
          SUM(CASE WHEN month = :mh THEN aum END) AS aum_end
        FROM customer_monthly WHERE month >= :m0 AND month <= :mh
        GROUP BY customer_id
    """).bindparams(bindparam("m0", type_=Date), bindparam("mh", type_=Date)),
        {"m0": m0, "mh": mh}).set_index("customer_id")
    holdings = _open_holdings(engine, month_end(mh), "open_end")
    frame = pd.DataFrame(index=states.index).join(monthly, how="left").join(holdings, how="left")
    out = pd.DataFrame({"churn_state": states}, index=states.index)
    aum0, aum_end = _num(frame, "aum_cutoff"), _num(frame, "aum_end")
    out["closed"] = (_num(frame, "open_end") == 0).to_numpy()
    # A small tolerance so that exactly an 80 % fall counts despite binary floating point.
    out["aum_dropped"] = ((aum0 > 0) & (aum_end <= (1.0 - aum_drop) * aum0 + 1e-9 * aum0)).to_numpy()
    out["dormant"] = (_num(frame, "txn_after") == 0).to_numpy()
    out["churned"] = out["closed"] | out["aum_dropped"] | out["dormant"]
    out["aum_cutoff"] = aum0.to_numpy()
    out["aum_end"] = aum_end.to_numpy()
    return out


def churn_labels(engine: Engine, cutoff_month, horizon_months: int = 3, aum_drop: float = 0.8) -> pd.DataFrame:
    """Who of the customers active at ``cutoff_month`` churns within the next ``horizon_months``.

    The population and the three criteria (closed, AUM drop, dormant) are defined in the module
    docstring. Only data up to ``cutoff + horizon_months`` is read.

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


def churn_features(engine: Engine, cutoff_month) -> pd.DataFrame:
    """The model's features at a cut-off: :func:`analytics.features.customer_features` without
    ``status`` (for a past cut-off it is the outcome). Nothing after the cut-off month is read."""
    return customer_features(engine, _month(cutoff_month), with_status=False)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Hold-out metrics
# ---------------------------------------------------------------------------------------------

def holdout_metrics(y_true, y_prob) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), Brier score, log loss, base rate and mean prediction.

    ``roc_auc`` and ``pr_auc`` are NaN when the hold-out holds one class only.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_prob, dtype=float)
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1])) if len(y) else float("nan"),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_probability": float(p.mean()) if len(p) else float("nan"),
        "customers": float(len(y)),
    }


def lift_table(y_true, y_score, n_bins: int = 10) -> pd.DataFrame:
    """Lift and capture by score decile (``n_bins`` equal-count groups, highest scores first).

    Rows are ranked by score, highest first (ties: original order, a stable sort), and row ``i``
    of ``n`` goes to group ``floor(i * n_bins / n) + 1``, so group sizes differ by at most one.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``decile`` (1 = highest scores), ``customers``, ``churners``,
        ``mean_probability``, ``churn_rate``, ``lift`` (churn rate / overall rate),
        ``cumulative_customers``, ``cumulative_churners``, ``capture`` (share of all churners in
        groups 1..k) and ``cumulative_lift`` (capture / share of customers in groups 1..k).
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_score, dtype=float)
    n = len(y)
    columns = ["decile", "customers", "churners", "mean_probability", "churn_rate", "lift",
               "cumulative_customers", "cumulative_churners", "capture", "cumulative_lift"]
    if n == 0:
        return pd.DataFrame(columns=columns)
    order = np.argsort(-p, kind="stable")
    group = (np.arange(n) * n_bins) // n + 1
    frame = pd.DataFrame({"decile": group, "y": y[order], "p": p[order]})
    table = frame.groupby("decile").agg(customers=("y", "size"), churners=("y", "sum"),
                                        mean_probability=("p", "mean")).reset_index()
    overall = y.mean()
    table["churn_rate"] = table["churners"] / table["customers"]
    table["lift"] = table["churn_rate"] / overall if overall > 0 else np.nan
    table["cumulative_customers"] = table["customers"].cumsum()
    table["cumulative_churners"] = table["churners"].cumsum()
    total = y.sum()
    table["capture"] = table["cumulative_churners"] / total if total > 0 else np.nan
    table["cumulative_lift"] = table["capture"] / (table["cumulative_customers"] / n) if total > 0 else np.nan
    return table[columns]


def calibration_table(y_true, y_prob, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against the observed rate in ``n_bins`` equal-width bins of [0, 1].

    Bin ``k`` (0-based) holds probabilities in ``[k/n_bins, (k+1)/n_bins)``; the last bin also holds
    1.0. Empty bins are left out.

    Returns
    -------
    pandas.DataFrame
        ``bin``, ``lower``, ``upper``, ``customers``, ``mean_predicted``, ``observed_rate``.
    """
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(y_prob, dtype=float), 0.0, 1.0)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p})
    table = frame.groupby("bin").agg(customers=("y", "size"), mean_predicted=("p", "mean"),
                                     observed_rate=("y", "mean")).reset_index()
    table["lower"] = table["bin"] / n_bins
    table["upper"] = (table["bin"] + 1) / n_bins
    return table[["bin", "lower", "upper", "customers", "mean_predicted", "observed_rate"]]


def permutation_importance_table(model, X: pd.DataFrame, y, *, n_repeats: int = 3, max_rows: int = 20000,
                                 random_state=0, top: int | None = None) -> pd.DataFrame:
    """Drop in ROC AUC when each column is shuffled: permutation importance on (hold-out) data.

    For each column, its values are permuted ``n_repeats`` times (the other columns kept) and the
    AUC of ``model.predict_proba(X)[:, 1]`` recomputed; the importance is the baseline AUC minus the
    permuted one (mean and standard deviation over the repeats), as in scikit-learn's
    ``permutation_importance`` with ``scoring="roc_auc"``. The repeats of one column go through the
    model in one call (fewer, larger predictions), and a column with a single value is 0 without
    a call. At most ``max_rows`` rows (a seeded random sample) are used.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``importance_mean``, ``importance_std``, ``rank`` (1 = most important; ties
        by name), sorted by rank; the first ``top`` rows when given.
    """
    y = np.asarray(y).astype(int)
    rng = np.random.default_rng(random_state)
    if len(X) > max_rows:
        rows = np.sort(rng.choice(len(X), max_rows, replace=False))
        X, y = X.iloc[rows], y[rows]
    n = len(X)
    baseline = roc_auc_score(y, model.predict_proba(X)[:, 1])
    stacked = pd.concat([X] * n_repeats, ignore_index=True)
    records = []
    for col in X.columns:
        if X[col].nunique(dropna=False) <= 1:
            records.append((str(col), 0.0, 0.0))
            continue
        shuffled = stacked.copy()
        values = X[col].to_numpy()
        shuffled[col] = np.concatenate([values[rng.permutation(n)] for _ in range(n_repeats)])
        if isinstance(X[col].dtype, pd.CategoricalDtype):
            shuffled[col] = pd.Categorical(shuffled[col], categories=X[col].cat.categories)
        p = model.predict_proba(shuffled)[:, 1].reshape(n_repeats, n)
        drops = np.array([baseline - roc_auc_score(y, p[k]) for k in range(n_repeats)])
        records.append((str(col), float(drops.mean()), float(drops.std())))
    table = pd.DataFrame(records, columns=["feature", "importance_mean", "importance_std"])
    table = table.sort_values(["importance_mean", "feature"], ascending=[False, True], kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    table = table.reset_index(drop=True)
    return table.head(top) if top else table


# ---------------------------------------------------------------------------------------------
# Reason codes
# ---------------------------------------------------------------------------------------------

def _f(row, col, default=0.0) -> float:
    value = row.get(col, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return default if np.isnan(value) else value


def _money(value: float) -> str:
    value = float(value)
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.1f}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:,.0f}k"
    return f"{value:,.0f}"


def _prior_months(row) -> float:
    """Months of the 12-month window before the last 3 the customer had (at most 9, at least 1)."""
    return float(np.clip(_f(row, "tenure_months", 12.0) + 1 - 3, 1, 9))


def _rates(row, now_col: str, year_col: str) -> tuple[float, float]:
    now = _f(row, now_col) / 3.0
    before = max(_f(row, year_col) - _f(row, now_col), 0.0) / _prior_months(row)
    return before, now


def _phrase_aum(row) -> str:
    for k in (3, 6, 12):
        change = _f(row, f"aum_change_pct_{k}m", np.nan)
        if not np.isnan(change) and change <= -0.05:
            return f"AUM down {abs(change) * 100:.0f} % in {k} months"
    change = _f(row, "aum_change_pct_3m")
    return f"AUM {change * 100:+.0f} % in 3 months"


def _phrase_balance(row) -> str:
    return f"AUM of {_money(_f(row, 'aum_latest'))} CNY"


def _phrase_loans(row) -> str:
    change = _f(row, "loan_change_6m")
    if change < 0:
        return f"loans down {_money(-change)} CNY in 6 months"
    return f"loan balance {_money(_f(row, 'loan_balance_latest'))} CNY"


def _phrase_transactions(row) -> str:
    inactive = _f(row, "months_since_last_txn")
    if inactive >= 2:
        return f"no transactions for {inactive:.0f} months"
    before, now = _rates(row, "txn_count_3m", "txn_count_12m")
    if before > now and round(before) != round(now):
        return f"transactions fell from {before:.0f} to {now:.0f} a month"
    return f"{now:.0f} transactions a month"


def _phrase_logins(row) -> str:
    before, now = _rates(row, "digital_logins_3m", "digital_logins_12m")
    if before > now and round(before) != round(now):
        return f"logins fell from {before:.0f} to {now:.0f} a month"
    return f"{now:.0f} digital logins a month"


def _phrase_complaints(row) -> str:
    # Six months when there were any (the 3-month count is inside it), else the year.
    recent = _f(row, "complaints_6m")
    if recent > 0:
        unresolved = _f(row, "unresolved_complaints_6m")
        extra = f" ({unresolved:.0f} unresolved)" if unresolved > 0 else ""
        return f"{recent:.0f} complaint{'s' if recent != 1 else ''} in 6 months{extra}"
    year = _f(row, "complaints_12m")
    if year > 0:
        return f"{year:.0f} complaint{'s' if year != 1 else ''} in 12 months"
    return "no complaints in 12 months"


def _phrase_contacts(row) -> str:
    marketing = _f(row, "marketing_contacts_6m")
    if marketing > 0:
        return f"{marketing:.0f} marketing contacts in 6 months"
    return f"{_f(row, 'contacts_6m'):.0f} contacts in 6 months"


def _phrase_products(row) -> str:
    n = _f(row, "open_products")
    return f"holds only {n:.0f} product" if n == 1 else f"holds {n:.0f} products"


def _phrase_tenure(row) -> str:
    return f"customer for {_f(row, 'tenure_months'):.0f} months"


def _phrase_profile(row) -> str:
    parts = []
    age = _f(row, "age", np.nan)
    if not np.isnan(age):
        parts.append(f"age {age:.0f}")
    for col, template in (("customer_type", "{}"), ("income_band", "income {}"),
                          ("onboarding_channel", "joined via {}")):
        value = row.get(col)
        if value is not None and not pd.isna(value):
            value = str(value)
            if col == "income_band":  # lt_50k, 50k_100k, ge_1m -> <50k, 50k-100k, >=1m
                value = value.replace("lt_", "<").replace("ge_", ">=").replace("_", "-")
            parts.append(template.format(value.replace("_", " ")))
    return "profile: " + ", ".join(parts) if parts else "customer profile"


def _phrase_branch(row) -> str:
    return f"branch {row.get('branch_id')}"


def _phrase_risk(row) -> str:
    parts = [f"{label} {row.get(col)}" for col, label in (("risk_tolerance", "risk tolerance"),
                                                            ("credit_grade", "credit grade"))
             if row.get(col) is not None and not pd.isna(row.get(col))]
    return ", ".join(parts) or "risk profile"


def _phrase_records(row) -> str:
    days = _f(row, "days_to_id_expiry", np.nan)
    if not np.isnan(days) and days < 0:
        return "ID document expired"
    age = _f(row, "risk_assessment_age_days", np.nan)
    if not np.isnan(age) and age > 365:
        return f"risk assessment {age / 365:.1f} years old"
    if not np.isnan(days):
        return f"ID document expires in {days:.0f} days"
    return "record details"


@dataclass(frozen=True)
class ReasonGroup:
    """Related feature columns explained together, and how to say it in words."""

    columns: tuple[str, ...]
    phrase: Callable[[dict], str]
    prefix: str | None = None  # also every column starting with this (e.g. ``products_``)


REASON_GROUPS: dict[str, ReasonGroup] = {
    "aum_decline": ReasonGroup(("aum_change_3m", "aum_change_6m", "aum_change_12m", "aum_change_pct_3m",
                                "aum_change_pct_6m", "aum_change_pct_12m", "aum_trend", "deposit_change_6m"),
                               _phrase_aum),
    "balance": ReasonGroup(("aum_latest", "aum_avg_3m", "aum_avg_12m", "deposit_balance_latest"), _phrase_balance),
    "loans": ReasonGroup(("loan_balance_latest", "loan_change_6m"), _phrase_loans),
    "transactions": ReasonGroup(("txn_count_3m", "txn_count_12m", "txn_amount_3m", "txn_amount_12m",
                                 "txn_count_trend", "active_months_12m", "months_since_last_txn"),
                                _phrase_transactions),
    "logins": ReasonGroup(("digital_logins_3m", "digital_logins_12m", "digital_logins_trend"), _phrase_logins),
    "complaints": ReasonGroup(("complaints_3m", "complaints_6m", "complaints_12m", "unresolved_complaints_6m"),
                              _phrase_complaints),
    "contacts": ReasonGroup(("contacts_6m", "marketing_contacts_6m"), _phrase_contacts),
    "products": ReasonGroup(("open_products", "open_asset_products", "open_liability_products",
                             "open_product_categories"), _phrase_products, prefix="products_"),
    "tenure": ReasonGroup(("tenure_months",), _phrase_tenure),
    "profile": ReasonGroup(("gender", "age", "customer_type", "income_band", "onboarding_channel",
                            "marketing_consent"), _phrase_profile),
    "branch": ReasonGroup(("branch_id",), _phrase_branch),
    "risk_profile": ReasonGroup(("risk_tolerance", "credit_grade"), _phrase_risk),
    "records": ReasonGroup(("days_to_id_expiry", "risk_assessment_age_days"), _phrase_records),
}

# A group must raise the probability by at least this much (absolute) to be named as a reason.
MIN_REASON_CONTRIBUTION = 0.001


def _generic_phrase(col: str) -> Callable[[dict], str]:
    def phrase(row) -> str:
        value = row.get(col)
        if isinstance(value, float | np.floating):
            return f"{col} = {value:,.4g}"
        return f"{col} = {value}"
    return phrase


class ReasonCoder:
    """Top reasons pushing each row's probability up, by group replacement (module docstring).

    Parameters
    ----------
    groups : dict[str, ReasonGroup], optional
        Defaults to :data:`REASON_GROUPS`. A column of the frame in no group is its own group,
        phrased ``"<column> = <value>"``.
    top : int
        Reasons per row.
    min_contribution : float

    Use :meth:`fit` on a reference population (typical values: median of each numeric column,
    most frequent value of each other), then :meth:`explain`.
    """

    def __init__(self, groups: dict[str, ReasonGroup] | None = None, top: int = 3,
                 min_contribution: float = MIN_REASON_CONTRIBUTION):
        self.groups = REASON_GROUPS if groups is None else groups
        self.top = top
        self.min_contribution = min_contribution

    def fit(self, X: pd.DataFrame) -> ReasonCoder:
        """Learn the reference (typical) value of every column of ``X``; return self."""
        reference = {}
        for col in X.columns:
            s = X[col]
            if pd.api.types.is_bool_dtype(s):
                reference[col] = bool(s.mode().iloc[0]) if len(s) else False
            elif pd.api.types.is_numeric_dtype(s):
                reference[col] = float(s.median()) if s.notna().any() else np.nan
            else:
                mode = s.dropna().mode()
                reference[col] = mode.iloc[0] if len(mode) else None
        self.reference_ = reference
        self.columns_ = list(X.columns)
        self.groups_ = self._resolve(self.columns_)
        return self

    def _resolve(self, columns: Sequence[str]) -> dict[str, tuple[tuple[str, ...], Callable]]:
        resolved, used = {}, set()
        for name, group in self.groups.items():
            cols = [c for c in columns if c in group.columns or (group.prefix and c.startswith(group.prefix))]
            if cols:
                resolved[name] = (tuple(cols), group.phrase)
                used.update(cols)
        for col in columns:
            if col not in used:
                resolved[col] = ((col,), _generic_phrase(col))
        return resolved

    def contributions(self, predict: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame) -> pd.DataFrame:
        """``p(X) - p(X with the group set to its reference)`` for every group: rows × groups."""
        base = predict(X)
        out = {}
        for name, (cols, _) in self.groups_.items():
            replaced = X.copy()
            for col in cols:
                replaced[col] = self.reference_[col]
            out[name] = base - predict(replaced)
        return pd.DataFrame(out, index=X.index)

    def explain(self, predict: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame) -> pd.DataFrame:
        """The top reasons of each row, in words.

        Parameters
        ----------
        predict : callable
            Frame -> probability of churn per row (e.g. ``lambda f: model.predict_proba(f)[:, 1]``).
        X : pandas.DataFrame
            Rows to explain, with the columns seen in :meth:`fit`.

        Returns
        -------
        pandas.DataFrame
            Same index: ``reason_1`` .. ``reason_<top>`` (phrases, None when fewer groups push the
            probability up by at least ``min_contribution``) and ``group_1`` .. (the group names).
        """
        contrib = self.contributions(predict, X)
        names = np.asarray(contrib.columns, dtype=object)
        values = contrib.to_numpy()
        order = np.argsort(-values, axis=1, kind="stable")[:, : self.top]
        phrases = {name: phrase for name, (_, phrase) in self.groups_.items()}
        out = {f"reason_{k + 1}": [None] * len(X) for k in range(self.top)}
        out |= {f"group_{k + 1}": [None] * len(X) for k in range(self.top)}
        # Only rows with at least one reason are turned into dicts for the phrases (the slow part).
        explained = np.flatnonzero(values.max(axis=1, initial=-np.inf) >= self.min_contribution)
        for i, row in zip(explained, X.iloc[explained].to_dict("records"), strict=True):
            for k in range(min(self.top, values.shape[1])):
                j = order[i, k]
                if values[i, j] < self.min_contribution:
                    break
                out[f"group_{k + 1}"][i] = names[j]
                out[f"reason_{k + 1}"][i] = phrases[names[j]](row)
        return pd.DataFrame(out, index=X.index)


# ---------------------------------------------------------------------------------------------
# The refresh stage
# ---------------------------------------------------------------------------------------------

RATE_DIMENSIONS = ("branch_id", "value_tier", "lifecycle_stage", "rfm_segment")
RANDOM_STATE = 20240501
# Fewer churners (or non-churners) than this in the training period: no model is fitted.
MIN_CLASS_ROWS = 10
SCORE_CHUNK_ROWS = 100_000
IMPORTANCE_TOP = 20
# Rows of the hold-out the permutation importance is measured on: enough to rank the top features
# (the AUC of 10,000 rows moves by ~0.005 between samples), and a 20k sample cost 25 s at 100k customers.
IMPORTANCE_ROWS = 10_000


def _sample(index: pd.Index, size: int, seed: int) -> pd.Index:
    if len(index) <= size:
        return index
    rows = np.sort(np.random.default_rng(seed).choice(len(index), size, replace=False))
    return index[rows]


def _dimensions(features: pd.DataFrame) -> pd.DataFrame:
    """Branch, value tier, lifecycle stage and RFM segment of every customer of a feature frame,
    by the same rules as the segments stage (computed here so a past cut-off gets them too)."""
    from analytics.lifecycle import lifecycle_stage
    from analytics.segmentation import rfm_table, value_tiers

    return pd.DataFrame({
        "branch_id": features["branch_id"].astype(object).fillna("(missing)"),
        "value_tier": value_tiers(features["aum_latest"]).astype(str),
        "lifecycle_stage": lifecycle_stage(features).astype(str),
        "rfm_segment": rfm_table(features)["rfm_segment"].astype(str),
    }, index=features.index)


def churn_rates(dims_now: pd.DataFrame, probability: pd.Series, dims_then: pd.DataFrame,
                churned_then: pd.Series) -> pd.DataFrame:
    """Churn by branch, value tier, lifecycle stage and RFM segment.

    ``customers``/``mean_probability``/``expected_churners``: today's active customers and their
    predicted probabilities; ``holdout_*``: the hold-out period's active customers (grouped by
    their dimensions at its cut-off) and the share who churned.
    """
    rows = []
    for dim in RATE_DIMENSIONS:
        now = pd.DataFrame({"value": dims_now[dim], "p": probability}).groupby("value")["p"].agg(
            customers="size", mean_probability="mean", expected_churners="sum")
        then = pd.DataFrame({"value": dims_then[dim], "y": churned_then.astype(float)}).groupby("value")["y"].agg(
            holdout_customers="size", holdout_churners="sum")
        table = now.join(then, how="outer").reset_index()
        table["dimension"] = dim
        rows.append(table)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    for col in ("customers", "holdout_customers", "holdout_churners", "expected_churners"):
        out[col] = out[col].fillna(0.0)
    out["holdout_churn_rate"] = np.where(out["holdout_customers"] > 0,
                                         out["holdout_churners"] / out["holdout_customers"].where(
                                             out["holdout_customers"] > 0, 1), np.nan)
    out = out.sort_values(["dimension", "value"]).reset_index(drop=True)
    out["sort_order"] = out.groupby("dimension").cumcount()
    return out[["dimension", "value", "sort_order", "customers", "mean_probability", "expected_churners",
                "holdout_customers", "holdout_churners", "holdout_churn_rate"]]


def customer_value(engine: Engine, run_id: int | None, customer_ids: pd.Index) -> pd.Series:
    """The value a churn would lose, per customer: the margin CLV of the segments stage when this
    run has one (``customer_segments.clv_margin_<CLV_HORIZON_YEARS>y``), else the yearly margin of
    the open holdings (``sum(balance * annual_margin)``) over the same horizon, discounted at
    ``CLV_DISCOUNT_RATE``, as if the customer stays."""
    from analytics import lifecycle

    years = lifecycle.clv_horizon_years()
    column = f"clv_margin_{years}y"
    frame = pd.DataFrame()
    if run_id is not None:
        frame = read_frame(engine, text(f"SELECT customer_id, {column} AS clv FROM customer_segments "
                                        "WHERE run_id = :run_id"), {"run_id": int(run_id)})
    if not frame.empty:
        return pd.to_numeric(frame.set_index("customer_id")["clv"], errors="coerce").reindex(customer_ids).fillna(0.0)
    margin = lifecycle.customer_annual_margin(engine).reindex(customer_ids).fillna(0.0)
    return pd.Series(lifecycle.margin_clv(margin, 1.0, discount_rate=lifecycle.clv_discount_rate(), years=years),
                     index=customer_ids)


def churn_stage(ctx) -> None:
    """The refresh stage ``churn``: train, evaluate on the hold-out, score every customer, write.

    Writes ``churn_scores`` (every customer open at the run's month), ``churn_lift``,
    ``churn_calibration``, ``churn_importance`` and ``churn_rates`` under ``ctx.run_id``, and puts
    the hold-out metrics (``churn.holdout_roc_auc``, ``churn.holdout_pr_auc``,
    ``churn.holdout_brier``, ``churn.top_decile_lift``, ...) in ``run_metrics``. With too little
    history for the two cut-offs it writes nothing and records ``churn.skipped`` with the reason.
    """
    from analytics.schema import churn_calibration, churn_importance, churn_lift, churn_scores
    from analytics.schema import churn_rates as rates_table

    if ctx.as_of_month is None:
        ctx.put_metrics({"churn.skipped": "no activity data"})
        return
    config = churn_settings()
    horizon, drop, sample_size = config["horizon_months"], config["aum_drop"], config["sample_size"]
    chunk_rows = int(settings.get("LOAD_CHUNK_ROWS"))
    as_of = _month(ctx.as_of_month)
    train_cut, hold_cut = add_months(as_of, -2 * horizon), add_months(as_of, -horizon)
    first = read_frame(ctx.engine, "SELECT MIN(month) AS first FROM customer_monthly")["first"].iloc[0]
    first = to_datetime(pd.Series([str(first)[:10]])).iloc[0].date()
    if add_months(train_cut, -(horizon - 1)) < first:
        reason = (f"needs activity from {add_months(train_cut, -(horizon - 1)):%Y-%m} "
                  f"(two {horizon}-month periods before {as_of:%Y-%m}); the store starts at {first:%Y-%m}")
        log.info("churn: skipped, %s", reason)
        ctx.put_metrics({"churn.skipped": reason})
        return
    lap = Laps()
    timings = lap.seconds

    # --- training period: features at A - 2H, outcome over the next H months -----------------
    outcome_train = churn_outcomes(ctx.engine, train_cut, horizon, drop)
    active_train = outcome_train.index[outcome_train["churn_state"] == "active"]
    rows_train = _sample(active_train, sample_size, RANDOM_STATE)
    features_train = churn_features(ctx.engine, train_cut).reindex(rows_train)
    y_train = outcome_train.loc[rows_train, "churned"].to_numpy(dtype=int)
    lap("train_data")
    if min(y_train.sum(), len(y_train) - y_train.sum()) < MIN_CLASS_ROWS:
        # A tiny or unusual store: say why in the run rather than failing the whole refresh.
        reason = (f"{int(y_train.sum())} churners and {int(len(y_train) - y_train.sum())} non-churners among "
                  f"customers active at {train_cut:%Y-%m}; at least {MIN_CLASS_ROWS} of each are needed")
        log.info("churn: skipped, %s", reason)
        ctx.put_metrics({"churn.skipped": reason})
        return

    # --- hold-out period: features at A - H, outcome over A - H + 1 .. A ----------------------
    outcome_hold = churn_outcomes(ctx.engine, hold_cut, horizon, drop)
    features_hold_all = churn_features(ctx.engine, hold_cut)
    active_hold = outcome_hold.index[outcome_hold["churn_state"] == "active"]
    dims_then = _dimensions(features_hold_all).reindex(active_hold)
    churned_then = outcome_hold.loc[active_hold, "churned"]
    inactive_hold = outcome_hold[outcome_hold["churn_state"] == "inactive"]
    inactive_rate = float(inactive_hold["churned"].mean()) if len(inactive_hold) else 1.0
    rows_hold = _sample(active_hold, sample_size, RANDOM_STATE + 1)
    features_hold = features_hold_all.reindex(rows_hold)
    del features_hold_all
    y_hold = outcome_hold.loc[rows_hold, "churned"].to_numpy(dtype=int)
    lap("holdout_data")

    model = ChurnModel(random_state=RANDOM_STATE).fit(features_train, y_train)
    lap("fit_train")
    p_hold = model.predict_proba(features_hold)[:, 1]
    metrics = holdout_metrics(y_hold, p_hold)
    lift = lift_table(y_hold, p_hold)
    calibration = calibration_table(y_hold, p_hold)
    importance = (permutation_importance_table(model, features_hold, y_hold, random_state=RANDOM_STATE,
                                               max_rows=IMPORTANCE_ROWS, top=IMPORTANCE_TOP)
                  if 0 < y_hold.sum() < len(y_hold) else pd.DataFrame(columns=["feature", "importance_mean",
                                                                              "importance_std", "rank"]))
    importance["description"] = importance["feature"].map(lambda c: FEATURE_COLUMNS.get(c, c))
    lap("evaluate")

    # --- final model on both periods, scoring today's customers -------------------------------
    # Both samples are random already: pool them and keep at most sample_size rows.
    both = pd.concat([features_train, features_hold], ignore_index=True)
    y_both = np.concatenate([y_train, y_hold])
    del features_train
    if len(both) > sample_size:
        keep = np.sort(np.random.default_rng(RANDOM_STATE + 2).choice(len(both), sample_size, replace=False))
        both, y_both = both.iloc[keep], y_both[keep]
    final = ChurnModel(random_state=RANDOM_STATE).fit(both, y_both)
    del both
    lap("fit_final")

    features_now = churn_features(ctx.engine, as_of)
    states = cutoff_states(ctx.engine, as_of, horizon).reindex(features_now.index).fillna("closed")
    active_now = features_now.index[states.to_numpy() == "active"]
    coder = ReasonCoder().fit(features_now.loc[active_now])
    dims_now = _dimensions(features_now).reindex(active_now)
    lap("score_data")

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return final.predict_proba(frame)[:, 1]

    probability = pd.Series(np.nan, index=features_now.index)
    reasons = pd.DataFrame(index=features_now.index, columns=["reason_1", "reason_2", "reason_3"], dtype=object)
    for start in range(0, len(active_now), SCORE_CHUNK_ROWS):
        ids = active_now[start:start + SCORE_CHUNK_ROWS]
        part = features_now.loc[ids]
        probability.loc[ids] = predict(part)
        explained = coder.explain(predict, part)
        reasons.loc[ids, ["reason_1", "reason_2", "reason_3"]] = explained[["reason_1", "reason_2", "reason_3"]]
    inactive = states.index[states.to_numpy() == "inactive"]
    closed = states.index[states.to_numpy() == "closed"]
    probability.loc[inactive] = inactive_rate
    probability.loc[closed] = 1.0
    idle = features_now.loc[inactive, "months_since_last_txn"].astype(float)
    reasons.loc[inactive, "reason_1"] = [f"no transactions for {m:.0f} months" for m in idle]
    reasons.loc[closed, "reason_1"] = "all products closed"
    lap("score")

    value = customer_value(ctx.engine, ctx.run_id, features_now.index)
    scores = pd.DataFrame({
        "run_id": ctx.run_id, "customer_id": features_now.index.to_numpy(),
        "churn_state": states.to_numpy(), "churn_probability": probability.to_numpy(dtype=float),
        "clv": value.to_numpy(dtype=float), "value_at_risk": (probability * value).to_numpy(dtype=float),
        "reason_1": reasons["reason_1"].to_numpy(), "reason_2": reasons["reason_2"].to_numpy(),
        "reason_3": reasons["reason_3"].to_numpy(),
    })
    rates = churn_rates(dims_now, probability.loc[active_now], dims_then, churned_then)
    with ctx.engine.begin() as conn:
        for start in range(0, len(scores), chunk_rows):
            bulk_insert(ctx.engine, churn_scores, scores.iloc[start:start + chunk_rows], conn=conn)
        bulk_insert(ctx.engine, churn_lift, lift.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_calibration, calibration.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, churn_importance, importance.assign(run_id=ctx.run_id), conn=conn)
        bulk_insert(ctx.engine, rates_table, rates.assign(run_id=ctx.run_id), conn=conn)
    lap("write")

    ctx.row_counts.update({"churn_scores": len(scores), "churn_lift": len(lift),
                           "churn_calibration": len(calibration), "churn_importance": len(importance),
                           "churn_rates": len(rates)})
    for name, seconds in timings.items():
        ctx.metrics[f"churn_seconds.{name}"] = seconds
    top_lift = float(lift["lift"].iloc[0]) if len(lift) else float("nan")
    values: dict[str, float | str | None] = {
        f"churn.holdout_{k}": (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()
    }
    values |= {
        "churn.top_decile_lift": None if np.isnan(top_lift) else top_lift,
        "churn.top_decile_capture": float(lift["capture"].iloc[0]) if len(lift) else None,
        "churn.as_of_month": as_of.isoformat(),
        "churn.horizon_months": horizon,
        "churn.aum_drop": drop,
        "churn.train_cutoff": train_cut.isoformat(),
        "churn.holdout_cutoff": hold_cut.isoformat(),
        "churn.train_customers": len(y_train),
        "churn.train_base_rate": float(y_train.mean()),
        "churn.final_customers": len(y_both),
        "churn.model_weight_gbm": model.weight_,
        "churn.model_calibration": model.calibration_,
        "churn.final_weight_gbm": final.weight_,
        "churn.final_calibration": final.calibration_,
        "churn.inactive_churn_rate": inactive_rate,
        "churn.customers_active": len(active_now),
        "churn.customers_inactive": len(inactive),
        "churn.customers_closed": len(closed),
        "churn.expected_churners": float(probability.loc[active_now].sum()),
        "churn.value_at_risk_total": float(scores.loc[scores["churn_state"] == "active", "value_at_risk"].sum()),
    }
    ctx.put_metrics(values)
    log.info("churn: %d customers scored, hold-out AUC %.3f, timings %s", len(scores), metrics["roc_auc"], timings)


# ---------------------------------------------------------------------------------------------
# Readers (the pages call these)
# ---------------------------------------------------------------------------------------------

def _run_clause(table: str, run_id: int | None) -> tuple[str, dict]:
    if run_id is None:
        return f"{table}.run_id = (SELECT run_id FROM current_run WHERE id = 1)", {}
    return f"{table}.run_id = :run_id", {"run_id": int(run_id)}


EARLY_WARNING_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "segment", "value_tier",
                         "lifecycle_stage", "churn_probability", "clv", "value_at_risk", "reason_1", "reason_2",
                         "reason_3")


def early_warning(engine: Engine, run_id: int | None = None, *, branch_id: str | None = None,
                  segment: str | None = None, relationship_manager: str | None = None,
                  value_tier: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Active customers ranked by value at risk (churn probability × CLV), with reason codes.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int, optional
        The refresh run; default the published one.
    branch_id, segment, relationship_manager, value_tier : str, optional
        Filters (exact match): ``segment`` is the RFM segment (``customer_segments.rfm_segment``).
    limit : int
        Most rows returned (1 .. 100,000).

    Returns
    -------
    pandas.DataFrame
        :data:`EARLY_WARNING_COLUMNS`: ids and non-personal columns only (the page layer masks
        what a role may not see). ``segment``, ``value_tier`` and ``lifecycle_stage`` are empty
        when the run has no segments. Ordered by value at risk, then probability, then id.
    """
    limit = int(limit)
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be between 1 and 100000, got {limit}")
    where, params = _run_clause("s", run_id)
    clauses = [where, "s.churn_state = 'active'"]
    filters = {"branch_id": ("c.branch_id", branch_id), "segment": ("g.rfm_segment", segment),
               "relationship_manager": ("c.relationship_manager", relationship_manager),
               "value_tier": ("g.value_tier", value_tier)}
    for name, (column, value) in filters.items():
        if value is not None:
            clauses.append(f"{column} = :{name}")  # column names from the fixed map above only
            params[name] = str(value)
    params["limit"] = limit
    sql = f"""
        SELECT s.customer_id, c.branch_id, c.relationship_manager, g.rfm_segment AS segment, g.value_tier,
               g.lifecycle_stage, s.churn_probability, s.clv, s.value_at_risk, s.reason_1, s.reason_2, s.reason_3
        FROM churn_scores s
        JOIN customers c ON c.customer_id = s.customer_id
        LEFT JOIN customer_segments g ON g.run_id = s.run_id AND g.customer_id = s.customer_id
        WHERE {" AND ".join(clauses)}
        ORDER BY s.value_at_risk DESC, s.churn_probability DESC, s.customer_id
        LIMIT :limit
    """
    frame = read_frame(engine, sql, params)
    return frame[list(EARLY_WARNING_COLUMNS)]


def _read(engine: Engine, table: str, run_id: int | None, order: str) -> pd.DataFrame:
    where, params = _run_clause(table, run_id)
    return read_frame(engine, f"SELECT * FROM {table} WHERE {where} ORDER BY {order}", params)


def read_churn_lift(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out lift/capture table of a run (default: the published run)."""
    return _read(engine, "churn_lift", run_id, "decile")


def read_churn_calibration(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out calibration table of a run."""
    return _read(engine, "churn_calibration", run_id, "bin")


def read_churn_importance(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The hold-out permutation importance of a run, most important first."""
    return _read(engine, "churn_importance", run_id, "rank")


def read_churn_rates(engine: Engine, dimension: str, run_id: int | None = None) -> pd.DataFrame:
    """Churn by one of :data:`RATE_DIMENSIONS` for a run (see :func:`churn_rates`)."""
    if dimension not in RATE_DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(RATE_DIMENSIONS)}, not {dimension!r}")
    where, params = _run_clause("churn_rates", run_id)
    return read_frame(engine, f"SELECT * FROM churn_rates WHERE {where} AND dimension = :dimension "
                              "ORDER BY sort_order", {**params, "dimension": dimension})


def read_churn_metrics(engine: Engine, run_id: int | None = None) -> dict[str, float | str | None]:
    """The ``churn.*`` run metrics (hold-out ROC AUC, PR AUC, Brier, top-decile lift, ...)."""
    where, params = _run_clause("run_metrics", run_id)
    frame = read_frame(engine, f"SELECT name, value, text_value FROM run_metrics WHERE {where} "
                               "AND name LIKE 'churn.%'", params)
    return {n: (t if t is not None and not pd.isna(t) else v)
            for n, v, t in zip(frame["name"], frame["value"], frame["text_value"], strict=True)}


__all__ = [
    "CHURN_STATES", "EARLY_WARNING_COLUMNS", "MIN_REASON_CONTRIBUTION", "RATE_DIMENSIONS", "REASON_GROUPS",
    "ChurnError", "ChurnModel", "ReasonCoder", "ReasonGroup", "calibration_table", "churn_features",
    "churn_labels", "churn_outcomes", "churn_rates", "churn_settings", "churn_stage", "customer_value",
    "cutoff_states", "early_warning", "holdout_metrics", "lift_table", "permutation_importance_table",
    "read_churn_calibration", "read_churn_importance", "read_churn_lift", "read_churn_metrics",
    "read_churn_rates",
]
