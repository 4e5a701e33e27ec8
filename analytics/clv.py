"""Transactional customer-lifetime-value models: BG/NBD purchase counts and Gamma-Gamma spend.

The two models split a customer's future value into *how many* repeat transactions they will
make (BG/NBD, Fader, Hardie & Lee 2005a) and *how much* each one is worth (Gamma-Gamma, Fader,
Hardie & Lee 2005b). Both work on one row per customer, which `summary_from_transactions` builds
from a transaction log:

frequency
    Number of repeat purchase periods: periods with a purchase, minus the first one.
recency
    Time from the first to the last purchase period (0 when ``frequency == 0``).
T
    Age of the customer at the end of the observation window: time from the first purchase
    period to ``observation_end``.
monetary_value
    Mean amount per repeat purchase period (the first purchase is excluded, 0 when
    ``frequency == 0``).

``recency`` and ``T`` are in units of ``freq`` (days by default); fitted rates are per that unit.

The estimators follow scikit-learn's conventions: ``__init__`` stores hyper-parameters only,
``fit`` validates its inputs, learns attributes ending in ``_`` and returns ``self``, and the
training data (customer data) is never kept on the model.

References
----------
.. [1] Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005a), "Counting Your Customers the Easy
   Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284.
.. [2] Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005b), "RFM and CLV: Using Iso-Value Curves
   for Customer Base Analysis", Journal of Marketing Research 42(4), 415-430.
.. [3] Fader, P. S., Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value",
   http://brucehardie.com/notes/025/
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

__all__ = [
    "BetaGeoModel",
    "GammaGammaModel",
    "summary_from_transactions",
    "PERIODS_PER_MONTH",
]

#: Length of a month in each supported time unit, used to turn a horizon in months into the
#: model's time unit. A month is 30 days, as in ``lifetimes``, so results are comparable with it.
PERIODS_PER_MONTH = {"D": 30.0, "W": 4.345, "M": 1.0, "H": 30.0 * 24.0}

# pandas period aliases for the supported units (pandas spells "hour" in lower case).
_PANDAS_PERIOD_ALIAS = {"D": "D", "W": "W", "M": "M", "H": "h"}

# Log-parameters are kept inside +-_LOG_BOUND during optimisation: exp(30) ~ 1e13 is far beyond
# any meaningful estimate, and the bound keeps gammaln/digamma finite while the line search
# probes wild steps.
_LOG_BOUND = 30.0

# BG/NBD is fitted with time rescaled so that the oldest customer's age is 1, as lifetimes
# does: alpha then has the same size whether T is in hours or weeks, so one starting point suits
# every data set and the penalty on alpha (same value as lifetimes') ignores the time unit.
_BG_TIME_SCALE_TARGET = 1.0


# ----------------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------------
def _as_float_array(name: str, values) -> np.ndarray:
    """Return ``values`` as a float array or raise ValueError naming ``name``."""
    if isinstance(values, (pd.Series, pd.Index)):
        # nullable pandas dtypes (Int64, Float64) hold pd.NA, which np.asarray cannot cast
        values = values.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D array, got shape {arr.shape}")
    return arr


def _check_finite_nonnegative(name: str, arr: np.ndarray) -> None:
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(f"{name} has {n_bad} missing or infinite value(s)")
    n_neg = int(np.count_nonzero(arr < 0))
    if n_neg:
        raise ValueError(f"{name} must be non-negative; {n_neg} value(s) are negative (min {arr.min():g})")


def _check_frequency(frequency) -> np.ndarray:
    x = _as_float_array("frequency", frequency)
    _check_finite_nonnegative("frequency", x)
    n_frac = int(np.count_nonzero(x != np.floor(x)))
    if n_frac:
        example = x[x != np.floor(x)].flat[0]
        raise ValueError(
            f"frequency must be a whole number of repeat purchases; {n_frac} value(s) are not "
            f"(e.g. {example:g})"
        )
    return x


def _broadcast(names: tuple[str, ...], arrays: tuple[np.ndarray, ...], same_length: bool):
    if same_length:
        lengths = {name: arr.size for name, arr in zip(names, arrays, strict=True)}
        if any(arr.ndim != 1 for arr in arrays) or len(set(lengths.values())) != 1:
            described = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise ValueError(f"{', '.join(names)} must be 1-D arrays of the same length; got {described}")
        if arrays[0].size == 0:
            raise ValueError("cannot fit on zero customers: the inputs are empty")
        return arrays
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError:
        shapes = ", ".join(f"{n}{a.shape}" for n, a in zip(names, arrays, strict=True))
        raise ValueError(f"{', '.join(names)} have incompatible shapes: {shapes}") from None


def _check_rft(frequency, recency, T, *, same_length: bool):
    """Validate a (frequency, recency, T) triple; return float arrays of one shape."""
    x = _check_frequency(frequency)
    tx = _as_float_array("recency", recency)
    age = _as_float_array("T", T)
    _check_finite_nonnegative("recency", tx)
    _check_finite_nonnegative("T", age)
    x, tx, age = _broadcast(("frequency", "recency", "T"), (x, tx, age), same_length)
    n_late = int(np.count_nonzero(tx > age))
    if n_late:
        raise ValueError(
            f"recency must not exceed T (the last purchase cannot be after the observation end); "
            f"{n_late} customer(s) have recency > T"
        )
    n_orphan = int(np.count_nonzero((x == 0) & (tx != 0)))
    if n_orphan:
        raise ValueError(
            f"recency must be 0 when frequency is 0 (no repeat purchase, so no time between first "
            f"and last); {n_orphan} customer(s) break this"
        )
    return x, tx, age


def _check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_float_array("weights", weights)
    if w.ndim != 1 or w.size != n:
        raise ValueError(
            f"weights must be a 1-D array with one entry per customer ({n}), got shape {w.shape}"
        )
    _check_finite_nonnegative("weights", w)
    if not w.sum() > 0:
        raise ValueError("weights must not all be zero")
    return w


def _check_penalizer(penalizer_coef) -> float:
    try:
        pen = float(penalizer_coef)
    except (TypeError, ValueError):
        raise ValueError(f"penalizer_coef must be a number, got {penalizer_coef!r}") from None
    if not (np.isfinite(pen) and pen >= 0):
        raise ValueError(f"penalizer_coef must be a finite number >= 0, got {penalizer_coef!r}")
    return pen


def _scalar_or_array(arr: np.ndarray):
    # 0-d in, numpy scalar out: `model.probability_alive(2, 30.4, 38.9)` reads as a number
    return arr[()] if arr.ndim == 0 else arr


@functools.cache
def _threadpool_controller() -> ThreadpoolController:
    # scanning the loaded BLAS libraries takes ~30 ms: do it once per process
    return ThreadpoolController()


def _minimize_log_params(objective, n_params: int, x0, args, model_name: str):
    # L-BFGS-B does tiny (n_params-sized) BLAS calls; on a busy machine OpenBLAS's worker threads
    # then wait for a core on every call and a 2 ms fit took 100-400 ms. One thread is enough.
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        result = minimize(
            objective,
            x0=np.asarray(x0, dtype=float),
            args=args,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * n_params,
            # tighter than scipy's defaults: the known-answer tests want 4 significant digits
            # and each iteration costs only a few vectorised passes over the data
            options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
        )
    if not result.success:
        warnings.warn(
            f"{model_name} fit did not converge ({result.message}); try a larger penalizer_coef.",
            ConvergenceWarning,
            stacklevel=3,
        )
    at_bound = np.abs(result.x) >= _LOG_BOUND - 1e-6
    if np.any(at_bound):
        warnings.warn(
            f"{model_name} fit hit a parameter bound (an estimate went to 0 or infinity); the data "
            "may not identify the model, try a larger penalizer_coef.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


# ----------------------------------------------------------------------------------------------
# BG/NBD
# ----------------------------------------------------------------------------------------------
class _BGNBDData(NamedTuple):
    """Sufficient pieces of the training data for the BG/NBD likelihood (time already rescaled).

    Terms that depend on frequency only are evaluated once per distinct frequency, and customers
    without repeat purchases once per distinct age, because both are few even for millions of
    customers and gammaln/digamma/log are the expensive part of each iteration.
    """

    ux: np.ndarray  # distinct frequencies
    wx: np.ndarray  # total weight per distinct frequency
    w_total: float
    T0: np.ndarray  # distinct ages of customers with frequency 0
    w0: np.ndarray  # their total weights
    x1: np.ndarray  # customers with frequency > 0: frequency, recency, age, weight
    tx1: np.ndarray
    T1: np.ndarray
    w1: np.ndarray


def _bgnbd_data(x, tx, age, w) -> _BGNBDData:
    ux, inv = np.unique(x, return_inverse=True)
    wx = np.bincount(inv, weights=w, minlength=ux.size)
    zero = x == 0
    T0, inv0 = np.unique(age[zero], return_inverse=True)
    w0 = np.bincount(inv0, weights=w[zero], minlength=T0.size)
    rep = ~zero
    return _BGNBDData(ux, wx, float(w.sum()), T0, w0, x[rep], tx[rep], age[rep], w[rep])


def _bgnbd_objective(log_params, d: _BGNBDData, penalizer_coef: float):
    """Mean negative log-likelihood of BG/NBD ([1]_ eq. 6) and its gradient in log-parameters.

    Per customer, ``LL = A1 + A2 + log(exp(A3) + [x > 0] exp(A4))`` with
    ``A1 = lnG(r+x) - lnG(r) + r ln(alpha)``,
    ``A2 = lnB(a, b+x) - lnB(a, b)``,
    ``A3 = -(r+x) ln(alpha+T)`` and
    ``A4 = ln(a) - ln(b+x-1) - (r+x) ln(alpha+t_x)``; the mixture is done with logaddexp so
    neither branch under- or overflows.
    """
    params = np.exp(log_params)
    r, alpha, a, b = params
    ux, wx = d.ux, d.wx
    log_alpha = np.log(alpha)

    # A1 + A2 and their derivatives: once per distinct frequency
    ll = wx @ (
        gammaln(r + ux) - gammaln(r) + gammaln(a + b) + gammaln(b + ux) - gammaln(b) - gammaln(a + b + ux)
    )
    ll += d.w_total * r * log_alpha
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + ux)
    g_r = wx @ (digamma(r + ux) - digamma(r)) + d.w_total * log_alpha
    g_alpha = d.w_total * r / alpha
    g_a = wx @ (psi_ab - psi_abx)
    g_b = wx @ (psi_ab + digamma(b + ux) - digamma(b) - psi_abx)

    # customers with no repeat purchase: only A3, with x = 0
    log_T0 = np.log(alpha + d.T0)
    w0_log_T0 = d.w0 @ log_T0
    ll -= r * w0_log_T0
    g_r -= w0_log_T0
    g_alpha -= r * (d.w0 @ (1.0 / (alpha + d.T0)))

    # repeat customers: alive-at-T branch (A3) and dropped-out-after-t_x branch (A4)
    rx = r + d.x1
    log_T = np.log(alpha + d.T1)
    log_R = np.log(alpha + d.tx1)
    a3 = -rx * log_T
    a4 = np.log(a) - np.log(b + d.x1 - 1.0) - rx * log_R
    ll += d.w1 @ np.logaddexp(a3, a4)
    # posterior probability of each branch, i.e. the softmax weights of the log-sum-exp
    p4 = expit(a4 - a3)
    p3 = 1.0 - p4
    g_r -= d.w1 @ (p3 * log_T + p4 * log_R)
    g_alpha -= d.w1 @ (rx * (p3 / (alpha + d.T1) + p4 / (alpha + d.tx1)))
    g_a += (d.w1 @ p4) / a
    g_b -= d.w1 @ (p4 / (b + d.x1 - 1.0))

    grad_params = np.array([g_r, g_alpha, g_a, g_b])
    value = -ll / d.w_total + penalizer_coef * np.sum(params**2)
    # chain rule for the log-parameterisation: d/d(log p) = p * d/dp
    grad = -grad_params * params / d.w_total + 2.0 * penalizer_coef * params**2
    return value, grad


def _bgnbd_survival_term(t, x, age, r, alpha, a, b):
    """``((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))``.

    The textbook form overflows (inf * 0) for large frequencies or horizons. Applying Pfaff's
    transformation twice gives the equal product
    ``(1 + t/(alpha+T))**(1-a) * 2F1(a+b-1-r, a-1; a+b+x-1; t/(alpha+T+t))``, whose
    hypergeometric series has a large third parameter when x is large and so converges fast;
    checked against 30-digit mpmath for x up to 1000 and t up to 1e7.
    """
    rel = t / (alpha + age)
    z = t / (alpha + age + t)
    return np.exp((1.0 - a) * np.log1p(rel)) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)


def _bgnbd_conditional_expected(t, x, tx, age, r, alpha, a, b):
    """[1]_ eq. 10, assuming ``a != 1``."""
    head = (a + b + x - 1.0) / (a - 1.0)
    body = 1.0 - _bgnbd_survival_term(t, x, age, r, alpha, a, b)
    return head * body * _bgnbd_probability_alive(x, tx, age, r, alpha, a, b)


def _bgnbd_probability_alive(x, tx, age, r, alpha, a, b):
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))**(r+x))."""
    log_odds_dead = (
        (r + x) * (np.log(alpha + age) - np.log(alpha + tx))
        + np.log(a)
        - np.log(b + np.maximum(x, 1.0) - 1.0)
    )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


class BetaGeoModel(BaseEstimator):
    """BG/NBD model of repeat-purchase counts (Fader, Hardie & Lee 2005a).

    While alive, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
    after each repeat purchase they drop out for good with probability ``p ~ Beta(a, b)``.
    Fitted by maximum likelihood over log-parameters with L-BFGS-B and an analytic gradient.

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        L2 penalty ``penalizer_coef * (r**2 + alpha**2 + a**2 + b**2)`` added to the mean
        negative log-likelihood, exactly as in ``lifetimes``: ``alpha`` is measured in the
        internal time unit in which the oldest customer's age is 1, so the penalty does not
        depend on whether ``T`` is in days or weeks. Use a small value (0.001-0.1) when the fit
        does not converge.

    Attributes
    ----------
    params_ : dict of str to float
        Fitted ``r``, ``alpha`` (in the time unit of ``T``), ``a`` and ``b``.
    log_likelihood_ : float
        Weighted log-likelihood of the training data at ``params_`` (without the penalty).
    n_iter_ : int
        Number of optimiser iterations.

    Notes
    -----
    The expected-purchase formulas divide by ``a - 1``; at ``a == 1`` exactly (a removable
    singularity) they are evaluated as the mean of ``a = 1 +- 1e-4``.

    Examples
    --------
    >>> model = BetaGeoModel().fit(summary["frequency"], summary["recency"], summary["T"])  # doctest: +SKIP
    >>> model.probability_alive(2, 30.43, 38.86)  # doctest: +SKIP
    """

    def __init__(self, penalizer_coef=0.0):
        self.penalizer_coef = penalizer_coef

    def fit(self, frequency, recency, T, weights=None):
        """Fit the model by maximum likelihood.

        Parameters
        ----------
        frequency : array-like of shape (n_customers,)
            Number of repeat purchases (whole numbers >= 0).
        recency : array-like of shape (n_customers,)
            Time from first to last purchase, ``0 <= recency <= T``; 0 when ``frequency == 0``.
        T : array-like of shape (n_customers,)
            Age of each customer at the end of the observation window.
        weights : array-like of shape (n_customers,), optional
            Number of customers each row stands for (rows may be aggregated histories).

        Returns
        -------
        BetaGeoModel
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the inputs differ in length, are empty, negative, non-finite, if frequency is not
            whole, if ``recency > T`` or ``recency != 0`` where ``frequency == 0``, or if every
            ``T`` is 0.
        """
        pen = _check_penalizer(self.penalizer_coef)
        x, tx, age = _check_rft(frequency, recency, T, same_length=True)
        w = _check_weights(weights, x.size)
        t_max = float(age[w > 0].max())
        if t_max <= 0:
            raise ValueError("T must be positive for at least one customer: all customers have age 0")
        scale = _BG_TIME_SCALE_TARGET / t_max
        data = _bgnbd_data(x, tx * scale, age * scale, w)

        result = _minimize_log_params(_bgnbd_objective, 4, np.zeros(4), (data, pen), "BG/NBD")
        r, alpha_scaled, a, b = (float(v) for v in np.exp(result.x))
        self.params_ = {"r": r, "alpha": alpha_scaled / scale, "a": a, "b": b}
        penalty = pen * (r**2 + alpha_scaled**2 + a**2 + b**2)
        # rescaling time by s multiplies each customer's likelihood by s**-x: undo it so the
        # reported log-likelihood is in the caller's time unit
        ll_scaled = -(float(result.fun) - penalty) * data.w_total
        self.log_likelihood_ = ll_scaled + np.log(scale) * float(w @ x)
        self.n_iter_ = int(result.nit)
        return self

    def _params(self):
        check_is_fitted(self, "params_")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _expected(self, t, x, tx, age):
        r, alpha, a, b = self._params()
        if abs(a - 1.0) < 1e-6:
            return 0.5 * (
                _bgnbd_conditional_expected(t, x, tx, age, r, alpha, 1.0 - 1e-4, b)
                + _bgnbd_conditional_expected(t, x, tx, age, r, alpha, 1.0 + 1e-4, b)
            )
        return _bgnbd_conditional_expected(t, x, tx, age, r, alpha, a, b)

    def conditional_expected_purchases(self, t, frequency, recency, T):
        """Expected number of repeat purchases in the next ``t`` time units, given history.

        [1]_ eq. 10. All arguments broadcast against each other.

        Parameters
        ----------
        t : float or array-like
            Horizon after the end of the observation window, in the time unit of ``T``.
        frequency, recency, T : float or array-like
            Each customer's history, as in `fit`.

        Returns
        -------
        numpy.ndarray or float
            Expected purchases in ``(T, T + t]``; a scalar when every input is a scalar.
        """
        horizon = _as_float_array("t", t)
        _check_finite_nonnegative("t", horizon)
        x, tx, age = _check_rft(frequency, recency, T, same_length=False)
        horizon, x, tx, age = _broadcast(("t", "frequency", "recency", "T"), (horizon, x, tx, age), False)
        return _scalar_or_array(np.asarray(self._expected(horizon, x, tx, age), dtype=float))

    def expected_purchases(self, t):
        """Expected number of repeat purchases by a new customer in ``t`` time units.

        [1]_ eq. 9 (unconditional: a customer just acquired, ``x = t_x = T = 0``).

        Parameters
        ----------
        t : float or array-like
            Time since the first purchase, in the time unit of ``T``.

        Returns
        -------
        numpy.ndarray or float
            Expected repeat purchases in ``(0, t]``.
        """
        horizon = _as_float_array("t", t)
        _check_finite_nonnegative("t", horizon)
        zero = np.zeros_like(horizon)
        return _scalar_or_array(np.asarray(self._expected(horizon, zero, zero, zero), dtype=float))

    def probability_alive(self, frequency, recency, T):
        """Probability that a customer is still active at the end of the observation window.

        ``1 / (1 + [x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))``
        (Fader, Hardie & Lee, "Computing P(alive) using the BG/NBD model", 2008); 1 for a
        customer without repeat purchases, who under BG/NBD cannot have dropped out yet.

        Parameters
        ----------
        frequency, recency, T : float or array-like
            Each customer's history, as in `fit`; they broadcast against each other.

        Returns
        -------
        numpy.ndarray or float
            Probabilities in [0, 1].
        """
        r, alpha, a, b = self._params()
        x, tx, age = _check_rft(frequency, recency, T, same_length=False)
        return _scalar_or_array(np.asarray(_bgnbd_probability_alive(x, tx, age, r, alpha, a, b), dtype=float))


# ----------------------------------------------------------------------------------------------
# Gamma-Gamma
# ----------------------------------------------------------------------------------------------
class _GGData(NamedTuple):
    x: np.ndarray
    log_x: np.ndarray
    log_m: np.ndarray
    mx: np.ndarray  # total spend over the repeat purchases, x * m
    w: np.ndarray
    w_total: float


def _gamma_gamma_objective(log_params, d: _GGData, penalizer_coef: float):
    """Mean negative log-likelihood of the Gamma-Gamma model ([3]_ eq. 5) and its gradient.

    ``LL = lnG(px+q) - lnG(px) - lnG(q) + q ln(g) + (px-1) ln(m) + px ln(x) - (px+q) ln(g+mx)``.
    """
    params = np.exp(log_params)
    p, q, g = params
    px = p * d.x
    pxq = px + q
    log_gmx = np.log(g + d.mx)
    ll = (
        gammaln(pxq)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * d.log_m
        + px * d.log_x
        - pxq * log_gmx
    )
    psi_pxq = digamma(pxq)
    g_p = d.w @ (d.x * (psi_pxq - digamma(px) + d.log_m + d.log_x - log_gmx))
    g_q = d.w @ (psi_pxq - digamma(q) + np.log(g) - log_gmx)
    g_g = d.w @ (q / g - pxq / (g + d.mx))
    value = -(d.w @ ll) / d.w_total + penalizer_coef * np.sum(params**2)
    grad = -np.array([g_p, g_q, g_g]) * params / d.w_total + 2.0 * penalizer_coef * params**2
    return value, grad


class GammaGammaModel(BaseEstimator):
    """Gamma-Gamma model of the mean spend per transaction (Fader, Hardie & Lee 2005b).

    A customer's transaction values are ``Gamma(p, nu)`` with ``nu ~ Gamma(q, gamma)`` across
    customers, so the expected spend of a customer shrinks their observed mean towards the
    population mean ``p * gamma / (q - 1)``, the more so the fewer transactions they have.
    It assumes spend is independent of purchase frequency; check that the correlation between
    ``frequency`` and ``monetary_value`` is weak before relying on it.

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        L2 penalty ``penalizer_coef * (p**2 + q**2 + gamma**2)`` added to the mean negative
        log-likelihood. ``gamma`` is measured with spend divided by its mean over the fitted
        customers, so the penalty does not depend on the currency unit.

    Attributes
    ----------
    params_ : dict of str to float
        Fitted ``p``, ``q`` and ``gamma`` (``gamma`` in the currency unit of the spend).
    log_likelihood_ : float
        Weighted log-likelihood of the customers used in the fit (without the penalty).
    n_iter_ : int
        Number of optimiser iterations.
    n_customers_ : int
        Number of customers with ``frequency > 0`` that the fit used.
    """

    def __init__(self, penalizer_coef=0.0):
        self.penalizer_coef = penalizer_coef

    def fit(self, frequency, monetary_value, weights=None):
        """Fit the model by maximum likelihood on customers with repeat purchases.

        Parameters
        ----------
        frequency : array-like of shape (n_customers,)
            Number of repeat purchases (whole numbers >= 0). Customers with 0 are ignored: they
            have no repeat transaction whose value could be observed.
        monetary_value : array-like of shape (n_customers,)
            Mean value of each customer's repeat transactions; must be positive where
            ``frequency > 0``, and is ignored (may be 0 or missing) where ``frequency == 0``.
        weights : array-like of shape (n_customers,), optional
            Number of customers each row stands for.

        Returns
        -------
        GammaGammaModel
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the inputs differ in length, frequency is negative or not whole, no customer has
            ``frequency > 0``, or a used ``monetary_value`` is not a positive finite number.
        """
        pen = _check_penalizer(self.penalizer_coef)
        x = _check_frequency(frequency)
        m = _as_float_array("monetary_value", monetary_value)
        x, m = _broadcast(("frequency", "monetary_value"), (x, m), same_length=True)
        w = _check_weights(weights, x.size)
        used = (x > 0) & (w > 0)
        if not used.any():
            raise ValueError("no customer has frequency > 0: Gamma-Gamma needs repeat purchases to fit")
        x, m, w = x[used], m[used], w[used]
        n_bad = int(np.count_nonzero(~(np.isfinite(m) & (m > 0))))
        if n_bad:
            raise ValueError(
                f"monetary_value must be a positive finite number for customers with frequency > 0; "
                f"{n_bad} are not (refunds or missing amounts?)"
            )
        scale = float(np.average(m, weights=w))
        m_scaled = m / scale
        data = _GGData(x, np.log(x), np.log(m_scaled), x * m_scaled, w, float(w.sum()))
        # start at q = 2 (finite population mean) and gamma chosen so p*gamma/(q-1) equals the
        # observed mean spend, which is 1 after rescaling
        result = _minimize_log_params(
            _gamma_gamma_objective, 3, [0.0, np.log(2.0), 0.0], (data, pen), "Gamma-Gamma"
        )
        p, q, g_scaled = (float(v) for v in np.exp(result.x))
        self.params_ = {"p": p, "q": q, "gamma": g_scaled * scale}
        penalty = pen * (p**2 + q**2 + g_scaled**2)
        # the spend density has units 1/currency: rescaling by s adds -log(s) per customer
        self.log_likelihood_ = -(float(result.fun) - penalty) * data.w_total - np.log(scale) * data.w_total
        self.n_iter_ = int(result.nit)
        self.n_customers_ = int(x.size)
        return self

    def conditional_expected_spend(self, frequency, monetary_value):
        """Expected mean spend per future transaction, given a customer's history.

        ``p * (gamma + x * m) / (p * x + q - 1)``: a weighted average of the population mean
        ``p * gamma / (q - 1)`` and the customer's own mean ``m``. Customers with
        ``frequency == 0`` get the population mean whatever their ``monetary_value``.

        Parameters
        ----------
        frequency : float or array-like
            Number of repeat purchases (whole numbers >= 0).
        monetary_value : float or array-like
            Observed mean spend per repeat purchase (>= 0 where ``frequency > 0``).

        Returns
        -------
        numpy.ndarray or float
            Expected spend, in the currency unit of ``monetary_value``; ``inf`` where it is
            infinite under the model (``q <= 1`` makes the population mean infinite).
        """
        check_is_fitted(self, "params_")
        p, q, g = self.params_["p"], self.params_["q"], self.params_["gamma"]
        x = _check_frequency(frequency)
        m = _as_float_array("monetary_value", monetary_value)
        x, m = _broadcast(("frequency", "monetary_value"), (x, m), same_length=False)
        m = np.where(x > 0, m, 0.0)  # unused for x == 0; NaN must not leak through 0 * NaN
        n_bad = int(np.count_nonzero(~(np.isfinite(m) & (m >= 0))))
        if n_bad:
            raise ValueError(
                f"monetary_value must be a finite number >= 0 for customers with frequency > 0; {n_bad} are not"
            )
        denom = p * x + q - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            spend = np.where(denom > 0, p * (g + x * m) / denom, np.inf)
        return _scalar_or_array(np.asarray(spend, dtype=float))

    def customer_lifetime_value(
        self, bg_model, frequency, recency, T, monetary_value, time=12, discount_rate=0.01, freq="D"
    ):
        """Discounted value of each customer's expected purchases over the next ``time`` months.

        ``CLV = sum_{k=1..time} E[purchases in month k] * E[spend] / (1 + discount_rate) ** k``,
        with purchases from ``bg_model.conditional_expected_purchases`` and spend from
        `conditional_expected_spend` (the same calculation as ``lifetimes``).

        Parameters
        ----------
        bg_model : BetaGeoModel
            A fitted purchase-count model, fitted in the time unit ``freq``.
        frequency, recency, T : array-like
            Each customer's history, ``recency`` and ``T`` in units of ``freq``.
        monetary_value : array-like
            Observed mean spend per repeat purchase.
        time : int, default 12
            Horizon in months.
        discount_rate : float, default 0.01
            Discount rate per month (0.01 is about 12.7 % a year).
        freq : {"D", "W", "M", "H"}, default "D"
            Time unit of ``recency`` and ``T``; a month is `PERIODS_PER_MONTH` ``[freq]`` units.

        Returns
        -------
        numpy.ndarray or float
            Lifetime value per customer, in the currency unit of ``monetary_value``.
        """
        if freq not in PERIODS_PER_MONTH:
            raise ValueError(f"freq must be one of {sorted(PERIODS_PER_MONTH)}, got {freq!r}")
        if isinstance(time, bool) or not float(time).is_integer() or time < 0:
            raise ValueError(f"time must be a whole number of months >= 0, got {time!r}")
        if not (np.isfinite(discount_rate) and discount_rate > -1):
            raise ValueError(f"discount_rate must be a finite number > -1, got {discount_rate!r}")
        spend = np.asarray(self.conditional_expected_spend(frequency, monetary_value), dtype=float)
        month = PERIODS_PER_MONTH[freq]
        cumulative_before = np.zeros(np.broadcast_shapes(spend.shape, np.shape(recency), np.shape(T)))
        clv = np.zeros_like(cumulative_before)
        # one vectorised pass per month over all customers: memory stays O(customers)
        for k in range(1, int(time) + 1):
            cumulative = np.asarray(bg_model.conditional_expected_purchases(k * month, frequency, recency, T))
            clv = clv + spend * (cumulative - cumulative_before) / (1.0 + discount_rate) ** k
            cumulative_before = cumulative
        return _scalar_or_array(np.asarray(clv, dtype=float))


# ----------------------------------------------------------------------------------------------
# transaction log -> one row per customer
# ----------------------------------------------------------------------------------------------
def _to_naive_datetimes(values, what: str) -> pd.Series:
    try:
        dates = pd.to_datetime(values)
    except (TypeError, ValueError):
        # pandas infers one format from the first value; ISO 8601 dates with and without a time
        # ("2024-01-04", "2024-01-01 09:00") are unambiguous, so accept them mixed
        try:
            dates = pd.to_datetime(values, format="ISO8601")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} could not be read as dates: {exc}") from None
    if getattr(dates.dt, "tz", None) is not None:
        # keep local wall-clock time: a purchase at 23:30 Beijing time belongs to that day
        dates = dates.dt.tz_localize(None)
    return dates


def summary_from_transactions(
    transactions: pd.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str | None = None,
    *,
    observation_end,
    freq: str = "D",
) -> pd.DataFrame:
    """Summarise a transaction log into frequency, recency, T (and monetary value) per customer.

    Same semantics as ``lifetimes.utils.summary_data_from_transaction_data``: dates are cut to
    periods of ``freq`` and all of a customer's transactions in one period count as one purchase
    (amounts summed); transactions after ``observation_end`` are ignored.

    Parameters
    ----------
    transactions : pandas.DataFrame
        One row per transaction.
    customer_col : str
        Column with the customer id.
    date_col : str
        Column with the transaction date or datetime (naive, or time-zone aware in local time).
    amount_col : str, optional
        Column with the transaction amount; when given, ``monetary_value`` is returned.
    observation_end : str, datetime or pandas.Timestamp
        End of the observation window (inclusive: the period containing it counts). Required,
        so that a refresh never silently measures age up to the latest transaction instead.
    freq : {"D", "W", "M", "H"}, default "D"
        Period length: day, week (Monday-Sunday), calendar month or hour.

    Returns
    -------
    pandas.DataFrame
        Indexed by customer id (sorted), with columns ``frequency`` (int64, repeat purchase
        periods), ``recency`` (float, periods from first to last purchase), ``T`` (float,
        periods from first purchase to ``observation_end``) and, with ``amount_col``,
        ``monetary_value`` (float, mean amount per repeat period; 0 without repeat purchases).

    Raises
    ------
    ValueError
        If a column is missing, ids or dates are missing or unreadable, amounts are not finite
        numbers, or ``freq`` is not supported.
    """
    if freq not in _PANDAS_PERIOD_ALIAS:
        raise ValueError(f"freq must be one of {sorted(_PANDAS_PERIOD_ALIAS)}, got {freq!r}")
    columns = [customer_col, date_col] + ([amount_col] if amount_col is not None else [])
    for col in columns:
        if col not in transactions.columns:
            raise ValueError(f"Required column {col!r} missing from transactions")
    alias = _PANDAS_PERIOD_ALIAS[freq]

    ids = transactions[customer_col]
    n_missing_ids = int(ids.isna().sum())
    if n_missing_ids:
        raise ValueError(f"{customer_col!r} has {n_missing_ids} missing customer id(s)")
    dates = _to_naive_datetimes(transactions[date_col], f"column {date_col!r}")
    n_missing_dates = int(dates.isna().sum())
    if n_missing_dates:
        raise ValueError(f"{date_col!r} has {n_missing_dates} missing date(s)")
    end = _to_naive_datetimes(pd.Series([observation_end]), "observation_end").iloc[0]
    if pd.isna(end):
        raise ValueError("observation_end must be a date, got a missing value")
    end_period = pd.Period(end, freq=alias).ordinal

    frame = pd.DataFrame({"customer": ids.to_numpy(), "period": dates.dt.to_period(alias).array.asi8})
    if amount_col is not None:
        amounts = _as_float_array(f"column {amount_col!r}", transactions[amount_col])
        n_bad = int(np.count_nonzero(~np.isfinite(amounts)))
        if n_bad:
            raise ValueError(f"{amount_col!r} has {n_bad} missing or infinite amount(s)")
        frame["amount"] = amounts
    frame = frame[frame["period"] <= end_period]

    index_name = customer_col
    if frame.empty:
        result = pd.DataFrame(
            {
                "frequency": pd.Series(dtype="int64"),
                "recency": pd.Series(dtype=float),
                "T": pd.Series(dtype=float),
            }
        )
        if amount_col is not None:
            result["monetary_value"] = pd.Series(dtype=float)
        return result.rename_axis(index_name)

    # one row per (customer, period): several transactions in a period are one purchase
    by_period = frame.groupby(["customer", "period"], sort=True)
    periods = (by_period["amount"].sum() if amount_col is not None else by_period.size()).reset_index()
    by_customer = periods.groupby("customer", sort=True)["period"]
    first = by_customer.min()
    result = pd.DataFrame(
        {
            "frequency": (by_customer.size() - 1).astype("int64"),
            "recency": (by_customer.max() - first).astype(float),
            "T": (end_period - first).astype(float),
        }
    )
    if amount_col is not None:
        # lifetimes semantics: the first purchase is excluded from the mean spend
        repeat = periods[periods["period"] != periods.groupby("customer")["period"].transform("min")]
        mean_repeat = repeat.groupby("customer", sort=True)["amount"].mean()
        result["monetary_value"] = mean_repeat.reindex(result.index, fill_value=0.0).astype(float)
    return result.rename_axis(index_name)
