"""Tests for analytics.clv: known answers (CDNOW), closed forms written out here, invariants."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime
from scipy.special import betaln, gammaln, hyp2f1
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from analytics import clv
from analytics.clv import BetaGeoModel, GammaGammaModel, summary_from_transactions

# Published CDNOW estimates: Fader, Hardie & Lee (2005a) for BG/NBD (LL -9582.4),
# Fader, Hardie & Lee (2005b) for Gamma-Gamma (946 customers with repeat purchases).
PUBLISHED_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BG_LOG_LIKELIHOOD = -9582.4
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def sig3(value: float) -> float:
    return float(f"{value:.3g}")


# ------------------------------------------------------------------------------------------
# CDNOW data: shipped by the lifetimes package (test-only dependency). Read the CSV files from
# the package folder without importing lifetimes, whose modules need autograd and dill.
# ------------------------------------------------------------------------------------------
def _lifetimes_dataset(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        pytest.skip(
            "CDNOW data missing: the test-only package lifetimes==0.11.3 that ships it is not "
            "installed (pip install -r requirements-dev.txt)"
        )
    path = Path(spec.origin).parent / "datasets" / name
    if not path.exists():
        pytest.skip(f"CDNOW data missing: {name} not found in the installed lifetimes package")
    return path


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """2357 CDNOW customers: frequency, recency, T in weeks."""
    return pd.read_csv(_lifetimes_dataset("cdnow_customers_summary.csv"), index_col="ID")


@pytest.fixture(scope="module")
def cdnow_spend() -> pd.DataFrame:
    """The same customers with their mean repeat spend (columns x, t_x, T, zbar)."""
    raw = pd.read_csv(_lifetimes_dataset("cdnow_customers_summary_with_transactions.csv"), index_col="ID")
    return raw.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})


@pytest.fixture(scope="module")
def bg(cdnow) -> BetaGeoModel:
    return BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def gg(cdnow_spend) -> GammaGammaModel:
    return GammaGammaModel().fit(cdnow_spend["frequency"], cdnow_spend["monetary_value"])


def model_with(params: dict) -> BetaGeoModel:
    """A BetaGeoModel at given parameters, to test the formulas away from a fit."""
    model = BetaGeoModel()
    model.params_ = dict(params)
    return model


# ------------------------------------------------------------------------------------------
# Independent closed forms (textbook forms, not the transformed ones the module uses)
# ------------------------------------------------------------------------------------------
def ref_bg_log_likelihood(params, x, tx, T):
    """Fader, Hardie & Lee (2005a) eq. 6, summed over customers."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, tx, T = (np.asarray(v, dtype=float) for v in (x, tx, T))
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    alive = np.exp(betaln(a, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + T))
    dead = np.exp(betaln(a + 1, b + x - 1) - betaln(a, b) + common - (r + x) * np.log(alpha + tx))
    return float(np.sum(np.log(alive + np.where(x > 0, dead, 0.0))))


def ref_p_alive(params, x, tx, T):
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x))


def ref_conditional_expected(params, t, x, tx, T):
    """Eq. 10, as printed."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body * ref_p_alive(params, x, tx, T)


def ref_unconditional_expected(params, t):
    """Eq. 9, as printed."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


# ------------------------------------------------------------------------------------------
# Known answers on CDNOW
# ------------------------------------------------------------------------------------------
def test_bg_reproduces_published_cdnow_estimates(bg):
    assert set(bg.params_) == {"r", "alpha", "a", "b"}
    for name, published in PUBLISHED_BG.items():
        assert sig3(bg.params_[name]) == sig3(published), (name, bg.params_[name])


def test_bg_log_likelihood_matches_paper_and_independent_formula(bg, cdnow):
    assert bg.log_likelihood_ == pytest.approx(PUBLISHED_BG_LOG_LIKELIHOOD, abs=0.05)
    independent = ref_bg_log_likelihood(bg.params_, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert bg.log_likelihood_ == pytest.approx(independent, rel=1e-10)
    # the optimum is at least as good as the rounded published point
    published = ref_bg_log_likelihood(PUBLISHED_BG, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert independent >= published


def test_bg_matches_lifetimes_full_precision_estimates(bg):
    # lifetimes 0.11.3 BetaGeoFitter on the same file (its own optimiser and autograd gradient)
    lifetimes_mle = {"r": 0.242593, "alpha": 4.413532, "a": 0.792886, "b": 2.425752}
    for name, value in lifetimes_mle.items():
        assert bg.params_[name] == pytest.approx(value, rel=2e-5), name


def test_bg_published_customer_expectation(bg):
    # Hardie's worked example: x=2, t_x=30.43, T=38.86 expects 1.226 purchases in the next 39 weeks
    assert bg.conditional_expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


@pytest.mark.parametrize("customer_id", [1, 2, 6, 10, 18, 1000, 2357])
@pytest.mark.parametrize("t", [1.0, 10.0, 39.0, 52.0, 260.0])
def test_bg_predictions_match_closed_forms(bg, cdnow, customer_id, t):
    x, tx, T = cdnow.loc[customer_id, ["frequency", "recency", "T"]]
    assert bg.conditional_expected_purchases(t, x, tx, T) == pytest.approx(
        ref_conditional_expected(bg.params_, t, x, tx, T), rel=1e-9
    )
    assert bg.probability_alive(x, tx, T) == pytest.approx(ref_p_alive(bg.params_, x, tx, T), rel=1e-12)


@pytest.mark.parametrize("t", [0.5, 1.0, 39.0, 78.0, 520.0])
def test_bg_unconditional_expectation_matches_closed_form(bg, t):
    assert bg.expected_purchases(t) == pytest.approx(ref_unconditional_expected(bg.params_, t), rel=1e-9)
    # a brand-new customer: no history, age 0
    assert bg.expected_purchases(t) == pytest.approx(bg.conditional_expected_purchases(t, 0, 0, 0), rel=1e-12)


def test_gg_reproduces_published_cdnow_estimates(gg, cdnow_spend):
    assert set(gg.params_) == {"p", "q", "gamma"}
    for name, published in PUBLISHED_GG.items():
        assert sig3(gg.params_[name]) == sig3(published), (name, gg.params_[name])
    assert gg.n_customers_ == 946  # only customers with repeat purchases
    # same fit whether or not the caller filters frequency > 0 first
    repeaters = cdnow_spend[cdnow_spend["frequency"] > 0]
    prefiltered = GammaGammaModel().fit(repeaters["frequency"], repeaters["monetary_value"])
    for name in PUBLISHED_GG:
        assert prefiltered.params_[name] == pytest.approx(gg.params_[name], rel=1e-9)


def test_gg_matches_lifetimes_full_precision_estimates(gg):
    lifetimes_mle = {"p": 6.248802, "q": 3.744588, "gamma": 15.447748}
    for name, value in lifetimes_mle.items():
        assert gg.params_[name] == pytest.approx(value, rel=2e-6), name


@pytest.mark.parametrize(
    ("frequency", "monetary_value"),
    [(2, 22.35), (1, 11.77), (7, 73.74), (0, 0.0), (0, np.nan), (29, 100.0)],
)
def test_gg_conditional_spend_is_the_shrinkage_formula(gg, frequency, monetary_value):
    p, q, g = gg.params_["p"], gg.params_["q"], gg.params_["gamma"]
    population_mean = p * g / (q - 1)
    if frequency == 0:
        expected = population_mean
    else:
        weight = p * frequency / (p * frequency + q - 1)
        expected = (1 - weight) * population_mean + weight * monetary_value
    assert gg.conditional_expected_spend(frequency, monetary_value) == pytest.approx(expected, rel=1e-12)


def test_gg_first_customer_spend_known_value(gg):
    # lifetimes 0.11.3 conditional_expected_average_profit for CDNOW customer 1
    assert gg.conditional_expected_spend(2, 22.35) == pytest.approx(24.6586, abs=1e-4)


# ------------------------------------------------------------------------------------------
# Customer lifetime value
# ------------------------------------------------------------------------------------------
def test_clv_is_discounted_monthly_purchases_times_spend(bg, gg, cdnow_spend):
    rows = cdnow_spend.iloc[:50]
    f, r, T, m = (rows[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    got = gg.customer_lifetime_value(bg, f, r, T, m, time=12, discount_rate=0.01, freq="W")
    spend = gg.conditional_expected_spend(f, m)
    expected = np.zeros(len(rows))
    for month in range(1, 13):
        purchases = bg.conditional_expected_purchases(
            4.345 * month, f, r, T
        ) - bg.conditional_expected_purchases(4.345 * (month - 1), f, r, T)
        expected += spend * purchases / 1.01**month
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # lifetimes 0.11.3 customer_lifetime_value for CDNOW customer 1, same arguments
    assert got[0] == pytest.approx(36.2785, abs=1e-3)


def test_clv_zero_horizon_is_zero_and_discounting_lowers_value(bg, gg):
    assert gg.customer_lifetime_value(bg, 2, 30.43, 38.86, 22.35, time=0, freq="W") == 0.0
    low = gg.customer_lifetime_value(bg, 2, 30.43, 38.86, 22.35, time=12, discount_rate=0.0, freq="W")
    high = gg.customer_lifetime_value(bg, 2, 30.43, 38.86, 22.35, time=12, discount_rate=0.05, freq="W")
    assert low > high > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"freq": "Y"}, "freq must be one of"),
        ({"time": -1}, "time must be"),
        ({"time": 1.5}, "time must be"),
        ({"discount_rate": -1.0}, "discount_rate"),
    ],
)
def test_clv_rejects_bad_arguments(bg, gg, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gg.customer_lifetime_value(bg, 2, 30.43, 38.86, 22.35, **kwargs)


# ------------------------------------------------------------------------------------------
# Invariants and hand-computed cases
# ------------------------------------------------------------------------------------------
def test_no_repeat_purchase_means_alive(bg):
    np.testing.assert_array_equal(bg.probability_alive([0, 0, 0], [0, 0, 0], [0.0, 5.0, 1000.0]), 1.0)


def test_long_silence_lowers_p_alive(bg):
    # same purchases, the longer since the last one the less likely still active
    p = bg.probability_alive(5, 10.0, np.array([10.0, 20.0, 40.0, 80.0]))
    assert np.all(np.diff(p) < 0)
    assert p[0] == pytest.approx(ref_p_alive(bg.params_, 5, 10.0, 10.0))


def test_conditional_expectation_is_zero_at_t0_and_increases(bg):
    t = np.array([0.0, 1.0, 5.0, 10.0, 39.0, 100.0, 1000.0])
    for x, tx, T in [(0, 0.0, 38.86), (2, 30.43, 38.86), (29, 38.4, 38.86), (1, 1.71, 38.86)]:
        e = bg.conditional_expected_purchases(t, x, tx, T)
        assert e[0] == 0.0
        assert np.all(np.diff(e) > 0), (x, tx, T)


def test_predictions_broadcast_and_return_scalars_for_scalars(bg):
    assert np.ndim(bg.probability_alive(2, 30.43, 38.86)) == 0
    assert np.ndim(bg.conditional_expected_purchases(39, 2, 30.43, 38.86)) == 0
    per_horizon = bg.conditional_expected_purchases(np.array([10.0, 39.0]), 2, 30.43, 38.86)
    assert per_horizon.shape == (2,)
    per_customer = bg.conditional_expected_purchases(39.0, [0, 2], [0.0, 30.43], 38.86)
    assert per_customer[1] == pytest.approx(bg.conditional_expected_purchases(39.0, 2, 30.43, 38.86))
    assert bg.expected_purchases([1.0, 2.0]).shape == (2,)


def test_large_frequencies_stay_finite_and_match_closed_form_where_it_works():
    model = model_with(PUBLISHED_BG)
    # the textbook hypergeometric form overflows for these; ours must not
    for x in [100, 1000, 100_000]:
        e = model.conditional_expected_purchases(np.array([1.0, 39.0, 1e4]), x, 38.0, 38.86)
        assert np.all(np.isfinite(e)) and np.all(e >= 0)
    assert model.conditional_expected_purchases(39.0, 50, 38.0, 38.86) == pytest.approx(
        ref_conditional_expected(PUBLISHED_BG, 39.0, 50, 38.0, 38.86), rel=1e-8
    )


def test_a_equal_one_is_the_limit_of_nearby_values():
    base = {"r": 0.5, "alpha": 3.0, "b": 2.0}
    at_one = model_with({**base, "a": 1.0}).conditional_expected_purchases(39.0, 3, 20.0, 38.0)
    below = model_with({**base, "a": 1.0 - 1e-3}).conditional_expected_purchases(39.0, 3, 20.0, 38.0)
    above = model_with({**base, "a": 1.0 + 1e-3}).conditional_expected_purchases(39.0, 3, 20.0, 38.0)
    assert np.isfinite(at_one)
    assert min(below, above) <= at_one <= max(below, above)


params_strategy = st.fixed_dictionaries(
    {
        "r": st.floats(0.01, 50.0),
        "alpha": st.floats(0.01, 500.0),
        "a": st.floats(0.01, 50.0),
        "b": st.floats(0.01, 50.0),
    }
)


@st.composite
def histories(draw):
    T = draw(st.floats(0.0, 5000.0))
    x = draw(st.integers(0, 5000))
    tx = 0.0 if x == 0 else draw(st.floats(0.0, T))
    return x, tx, T


@settings(max_examples=300, deadline=None)
@given(params=params_strategy, history=histories())
def test_p_alive_is_a_probability(params, history):
    p = model_with(params).probability_alive(*history)
    assert 0.0 <= p <= 1.0


@settings(max_examples=200, deadline=None)
@given(history=histories(), t=st.floats(0.0, 1e4))
def test_expected_purchases_are_finite_nonnegative_at_cdnow_params(history, t):
    model = model_with(PUBLISHED_BG)
    e = model.conditional_expected_purchases(np.array([t, t + 1.0]), *history)
    assert np.all(np.isfinite(e))
    assert e[0] >= -1e-12
    assert e[1] >= e[0] - 1e-9


# ------------------------------------------------------------------------------------------
# Fitting mechanics
# ------------------------------------------------------------------------------------------
def test_analytic_gradients_match_finite_differences(cdnow_spend):
    x, tx, T = (cdnow_spend[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    data = clv._bgnbd_data(x, tx / T.max(), T / T.max(), np.ones_like(x))
    for point in [np.zeros(4), np.log([0.3, 0.5, 0.8, 2.5]), np.array([1.0, -2.0, 0.5, -0.5])]:
        for pen in [0.0, 0.1]:
            _, grad = clv._bgnbd_objective(point, data, pen)
            numeric = approx_fprime(point, lambda p, pen=pen: clv._bgnbd_objective(p, data, pen)[0], 1e-7)
            np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)

    rep = cdnow_spend[cdnow_spend["frequency"] > 0]
    fx, m = rep["frequency"].to_numpy(float), rep["monetary_value"].to_numpy(float) / 35.0
    gg_data = clv._GGData(fx, np.log(fx), np.log(m), fx * m, np.ones_like(fx), float(fx.size))
    for point in [np.array([0.0, np.log(2.0), 0.0]), np.log([6.0, 3.7, 0.45])]:
        _, grad = clv._gamma_gamma_objective(point, gg_data, 0.0)
        numeric = approx_fprime(point, lambda p: clv._gamma_gamma_objective(p, gg_data, 0.0)[0], 1e-7)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_weights_equal_repeated_rows(cdnow):
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    assert len(grouped) < len(cdnow)
    weighted = BetaGeoModel().fit(
        grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"]
    )
    plain = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    for name in PUBLISHED_BG:
        assert weighted.params_[name] == pytest.approx(plain.params_[name], rel=1e-6)


def test_time_unit_only_rescales_alpha(cdnow):
    weeks = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    days = BetaGeoModel().fit(cdnow["frequency"], cdnow["recency"] * 7, cdnow["T"] * 7)
    assert days.params_["alpha"] == pytest.approx(7 * weeks.params_["alpha"], rel=1e-6)
    for name in ("r", "a", "b"):
        assert days.params_[name] == pytest.approx(weeks.params_[name], rel=1e-6)
    assert days.conditional_expected_purchases(7 * 39, 2, 7 * 30.43, 7 * 38.86) == pytest.approx(
        weeks.conditional_expected_purchases(39, 2, 30.43, 38.86), rel=1e-6
    )


def test_penalizer_matches_lifetimes_and_shrinks_parameters(cdnow):
    penalised = BetaGeoModel(penalizer_coef=0.01).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    # lifetimes 0.11.3 BetaGeoFitter(penalizer_coef=0.01) on the same data
    for name, value in {"r": 0.24294, "alpha": 4.43244, "a": 0.28564, "b": 0.65845}.items():
        assert penalised.params_[name] == pytest.approx(value, rel=1e-4), name


def simulate(params, n, T, seed):
    """Draw BG/NBD histories customer by customer, the slow obvious way."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        lam = rng.gamma(params["r"], 1 / params["alpha"])
        p = rng.beta(params["a"], params["b"])
        t, x, last = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam)
            if t > T:
                break
            x, last = x + 1, t
            if rng.random() < p:
                break
        rows.append((x, last, T))
    return pd.DataFrame(rows, columns=["frequency", "recency", "T"])


def test_fit_recovers_simulation_parameters():
    truth = {"r": 0.8, "alpha": 5.0, "a": 0.6, "b": 3.0}
    data = simulate(truth, 6000, 52.0, seed=7)
    fitted = BetaGeoModel().fit(data["frequency"], data["recency"], data["T"]).params_
    for name, value in truth.items():
        assert fitted[name] == pytest.approx(value, rel=0.25), (name, fitted)


def test_follows_scikit_learn_conventions(cdnow, cdnow_spend):
    model = BetaGeoModel(penalizer_coef=0.05)
    assert model.get_params() == {"penalizer_coef": 0.05}
    assert clone(model).get_params() == {"penalizer_coef": 0.05}
    assert model.fit(cdnow["frequency"], cdnow["recency"], cdnow["T"]) is model
    # no customer data kept on the model: only hyper-parameters and small learned scalars
    for name, value in vars(model).items():
        assert np.size(value) == 1 or isinstance(value, dict), name
        assert name == "penalizer_coef" or name.endswith("_"), name
    gg = GammaGammaModel()
    assert gg.get_params() == {"penalizer_coef": 0.0}
    assert gg.fit(cdnow_spend["frequency"], cdnow_spend["monetary_value"]) is gg
    for name, value in vars(gg).items():
        assert np.size(value) == 1 or isinstance(value, dict), name


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.probability_alive(1, 1.0, 2.0),
        lambda m: m.conditional_expected_purchases(1.0, 1, 1.0, 2.0),
        lambda m: m.expected_purchases(1.0),
    ],
)
def test_bg_predict_before_fit_raises(call):
    with pytest.raises(NotFittedError):
        call(BetaGeoModel())


def test_gg_predict_before_fit_raises(bg):
    with pytest.raises(NotFittedError):
        GammaGammaModel().conditional_expected_spend(1, 10.0)
    with pytest.raises(NotFittedError):
        GammaGammaModel().customer_lifetime_value(bg, 1, 1.0, 2.0, 10.0)


GOOD = {"frequency": [0, 1, 3], "recency": [0.0, 2.0, 5.0], "T": [4.0, 6.0, 8.0]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"frequency": [0, 1]}, "same length"),
        ({"frequency": [0, -1, 3]}, "frequency must be non-negative"),
        ({"frequency": [0, 1.5, 3]}, "frequency must be a whole number"),
        ({"frequency": [0, np.nan, 3]}, "frequency has 1 missing"),
        ({"frequency": ["a", "b", "c"]}, "frequency must be numeric"),
        ({"recency": [0.0, -2.0, 5.0]}, "recency must be non-negative"),
        ({"recency": [0.0, 7.0, 5.0]}, "recency must not exceed T"),
        ({"recency": [1.0, 2.0, 5.0]}, "recency must be 0 when frequency is 0"),
        ({"T": [4.0, np.inf, 8.0]}, "T has 1 missing or infinite"),
        ({"frequency": [], "recency": [], "T": []}, "zero customers"),
        ({"frequency": [0, 0], "recency": [0.0, 0.0], "T": [0.0, 0.0]}, "T must be positive"),
        ({"weights": [1.0, 2.0]}, "weights must be a 1-D array with one entry per customer"),
        ({"weights": [1.0, -2.0, 1.0]}, "weights must be non-negative"),
        ({"weights": [0.0, 0.0, 0.0]}, "weights must not all be zero"),
    ],
)
def test_bg_fit_rejects_invalid_input(change, message):
    with pytest.raises(ValueError, match=message):
        BetaGeoModel().fit(**{**GOOD, **change})


@pytest.mark.parametrize("penalizer", [-0.1, np.nan, "strong"])
def test_invalid_penalizer_is_reported_at_fit(penalizer):
    with pytest.raises(ValueError, match="penalizer_coef"):
        BetaGeoModel(penalizer_coef=penalizer).fit(**GOOD)
    with pytest.raises(ValueError, match="penalizer_coef"):
        GammaGammaModel(penalizer_coef=penalizer).fit([1, 2], [10.0, 20.0])


def test_bg_predictions_reject_invalid_histories(bg):
    with pytest.raises(ValueError, match="recency must not exceed T"):
        bg.probability_alive(2, 40.0, 38.86)
    with pytest.raises(ValueError, match="t must be non-negative"):
        bg.conditional_expected_purchases(-1.0, 2, 30.43, 38.86)
    with pytest.raises(ValueError, match="incompatible shapes"):
        bg.probability_alive([1, 2], [0.5, 0.5, 0.5], 2.0)


@pytest.mark.parametrize(
    ("frequency", "monetary_value", "message"),
    [
        ([0, 0], [0.0, 0.0], "no customer has frequency > 0"),
        ([1, 2], [10.0, -5.0], "monetary_value must be a positive finite number"),
        ([1, 2], [10.0, np.nan], "monetary_value must be a positive finite number"),
        ([1, 2], [10.0], "same length"),
        ([1, 2.5], [10.0, 20.0], "frequency must be a whole number"),
    ],
)
def test_gg_fit_rejects_invalid_input(frequency, monetary_value, message):
    with pytest.raises(ValueError, match=message):
        GammaGammaModel().fit(frequency, monetary_value)


# ------------------------------------------------------------------------------------------
# summary_from_transactions
# ------------------------------------------------------------------------------------------
def test_summary_hand_computed_daily():
    tx = pd.DataFrame(
        [
            ("A", "2024-01-01 09:00", 10.0),
            ("A", "2024-01-01 17:00", 5.0),  # same day as the first: one purchase of 15
            ("A", "2024-01-04", 20.0),
            ("A", "2024-01-11", 40.0),
            ("A", "2024-01-25", 99.0),  # after the observation end: ignored
            ("B", "2024-01-06", 7.0),
            ("C", "2024-02-01", 1.0),  # first purchase after the end: not a customer yet
        ],
        columns=["cust", "when", "amount"],
    )
    out = summary_from_transactions(tx, "cust", "when", "amount", observation_end="2024-01-21")
    expected = pd.DataFrame(
        {"frequency": [2, 0], "recency": [10.0, 0.0], "T": [20.0, 15.0], "monetary_value": [30.0, 0.0]},
        index=pd.Index(["A", "B"], name="cust"),
    )
    pd.testing.assert_frame_equal(out, expected)


def test_summary_weekly_and_without_amounts():
    tx = pd.DataFrame(
        {"id": [1, 1, 1, 2], "day": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-15", "2024-01-08"])}
    )
    # weeks start on Monday: 1 Jan and 3 Jan are the same week
    out = summary_from_transactions(tx, "id", "day", observation_end=pd.Timestamp("2024-01-29"), freq="W")
    assert list(out.columns) == ["frequency", "recency", "T"]
    assert out.loc[1].tolist() == [1, 2.0, 4.0]
    assert out.loc[2].tolist() == [0, 0.0, 3.0]


def test_summary_matches_a_per_customer_loop():
    rng = np.random.default_rng(3)
    n = 400
    tx = pd.DataFrame(
        {
            "cust": rng.integers(0, 60, n),
            "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 400, n), unit="D"),
            "amount": rng.gamma(2.0, 50.0, n).round(2),
        }
    )
    end = pd.Timestamp("2023-12-31")
    out = summary_from_transactions(tx, "cust", "date", "amount", observation_end=end)
    kept = tx[tx["date"] <= end]
    assert set(out.index) == set(kept["cust"])
    for cust, rows in kept.groupby("cust"):
        per_day = rows.groupby(rows["date"].dt.normalize())["amount"].sum().sort_index()
        first, last = per_day.index[0], per_day.index[-1]
        assert out.loc[cust, "frequency"] == len(per_day) - 1
        assert out.loc[cust, "recency"] == (last - first).days
        assert out.loc[cust, "T"] == (end - first).days
        repeat = per_day.iloc[1:]
        assert out.loc[cust, "monetary_value"] == pytest.approx(repeat.mean() if len(repeat) else 0.0)
    # and the output is valid model input
    BetaGeoModel().fit(out["frequency"], out["recency"], out["T"])


def test_summary_rejects_bad_input():
    tx = pd.DataFrame({"cust": ["A", None], "when": ["2024-01-01", "2024-01-02"], "amount": [1.0, 2.0]})
    with pytest.raises(ValueError, match="Required column 'spend' missing"):
        summary_from_transactions(tx, "cust", "when", "spend", observation_end="2024-02-01")
    with pytest.raises(ValueError, match="missing customer id"):
        summary_from_transactions(tx, "cust", "when", observation_end="2024-02-01")
    tx["cust"] = ["A", "B"]
    with pytest.raises(ValueError, match="freq must be one of"):
        summary_from_transactions(tx, "cust", "when", observation_end="2024-02-01", freq="Q")
    with pytest.raises(ValueError, match="could not be read as dates"):
        summary_from_transactions(
            tx.assign(when=["2024-01-01", "not a date"]), "cust", "when", observation_end="2024-02-01"
        )
    with pytest.raises(ValueError, match="missing date"):
        summary_from_transactions(
            tx.assign(when=["2024-01-01", None]), "cust", "when", observation_end="2024-02-01"
        )
    with pytest.raises(ValueError, match="missing or infinite amount"):
        summary_from_transactions(
            tx.assign(amount=[1.0, np.nan]), "cust", "when", "amount", observation_end="2024-02-01"
        )
    with pytest.raises(TypeError):
        summary_from_transactions(tx, "cust", "when")  # observation_end is required


def test_summary_before_any_purchase_is_empty():
    tx = pd.DataFrame({"cust": ["A"], "when": ["2024-05-01"], "amount": [3.0]})
    out = summary_from_transactions(tx, "cust", "when", "amount", observation_end="2024-01-01")
    assert out.empty
    assert list(out.columns) == ["frequency", "recency", "T", "monetary_value"]
