"""Churn: the label worked out by hand, point-in-time features, the estimator's contract, metrics
against hand-computed values, reason codes, and the refresh stage on the demo store."""

from __future__ import annotations

import json
import pickle
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import brier_score_loss, roc_auc_score
from sqlalchemy import text

from analytics import churn, consent
from analytics.access import AccessDenied, Scope, Viewer
from analytics.churn import (
    EARLY_WARNING_COLUMNS,
    ChurnError,
    ChurnModel,
    ReasonCoder,
    ReasonGroup,
    calibration_table,
    churn_features,
    churn_labels,
    churn_outcomes,
    cutoff_states,
    early_warning,
    holdout_metrics,
    lift_table,
    permutation_importance_table,
    read_churn_calibration,
    read_churn_importance,
    read_churn_lift,
    read_churn_metrics,
    read_churn_rates,
    reasons,
)
from analytics.churn import model as churn_model
from analytics.churn.reasons import MatrixModel
from analytics.errors import ConfigError
from analytics.features import add_months
from analytics.runs import RefreshContext, current_run_id
from analytics.schema import branches, contacts, customer_monthly, customers, holdings, products
from analytics.store import bulk_insert, read_frame
from tests.analytics import store_rows

CUTOFF = date(2026, 6, 1)
MONTHS = [date(2026, m, 1) for m in range(1, 10)]  # 2026-01 .. 2026-09: the cut-off + a 3-month horizon

RM_ALL = Viewer("tester", ("risk",))  # bank-wide, exact amounts


# ---------------------------------------------------------------------------------------------
# A hand-made store whose labels at 2026-06 (horizon 3: July, August, September) are known
# ---------------------------------------------------------------------------------------------

def _rows(cid, aum=None, txns=None, months=MONTHS):
    """Monthly rows: ``aum``/``txns`` map a month number to a value (default 10000 / 2)."""
    aum, txns = aum or {}, txns or {}
    return [{"customer_id": cid, "month": m, "aum": float(aum.get(m.month, 10000.0)),
             "deposit_balance": float(aum.get(m.month, 10000.0)), "loan_balance": 0.0,
             "txn_count": int(txns.get(m.month, 2)), "txn_amount": 50.0, "digital_logins": 3} for m in months]


# customer -> (open date, holdings [(opened, closed)], monthly rows, expected state, expected criteria)
CASES = {
    "K01": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K01"), "active", ()),
    "K02": (date(2025, 1, 1), [(date(2025, 1, 1), date(2026, 8, 15))], _rows("K02"), "active", ("closed",)),
    "K03": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K03", aum={7: 6000, 8: 4000, 9: 2000}),
            "active", ("aum_dropped",)),  # exactly 80 %
    "K04": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K04", aum={9: 2500}), "active", ()),  # 75 %
    "K05": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K05", txns={7: 0, 8: 0, 9: 0}),
            "active", ("dormant",)),
    "K06": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K06", txns={4: 0, 5: 0, 6: 0}),
            "inactive", ()),
    "K07": (date(2025, 1, 1), [(date(2025, 1, 1), date(2026, 5, 20))], _rows("K07"), "closed", ("closed",)),
    "K08": (date(2026, 7, 10), [(date(2026, 7, 10), None)], _rows("K08", months=MONTHS[6:]), None, ()),
    "K09": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K09", aum={7: 500}), "active", ()),  # recovers
    "K10": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K10", months=MONTHS[:6]),
            "active", ("aum_dropped", "dormant")),  # no rows at all after the cut-off
    "K11": (date(2025, 1, 1), [(date(2025, 1, 1), date(2026, 7, 1)), (date(2026, 8, 1), None)], _rows("K11"),
            "active", ()),  # switched products: still holds one
    "K12": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K12", txns={5: 0, 6: 0, 7: 0, 8: 0}),
            "active", ()),  # active: last transaction in April, inside the look-back; one in September
    "K13": (date(2025, 1, 1), [(date(2025, 1, 1), None)], _rows("K13", txns={4: 0, 5: 0, 6: 0, 3: 1}),
            "inactive", ()),  # March is just outside the 3-month look-back
    "K14": (date(2025, 1, 1), [(date(2025, 1, 1), date(2026, 9, 30))], _rows("K14"), "active", ("closed",)),
}


def fill_labels(engine) -> None:
    bulk_insert(engine, branches, store_rows.BRANCHES)
    bulk_insert(engine, products, store_rows.PRODUCTS)
    bulk_insert(engine, customers, pd.DataFrame([
        {"customer_id": cid, "branch_id": "BR001", "open_date": opened, "status": "active",
         "marketing_consent": True, "gender": "F", "birth_date": date(1980, 1, 1)}
        for cid, (opened, *_rest) in CASES.items()]))
    hold, monthly = [], []
    for cid, (_, spans, rows, *_rest) in CASES.items():
        hold += [{"customer_id": cid, "product_id": "P01", "opened_on": o, "closed_on": c, "balance": 10000.0}
                 for o, c in spans]
        monthly += rows
    bulk_insert(engine, holdings, pd.DataFrame(hold).assign(holding_id=lambda f: np.arange(1, len(f) + 1)))
    bulk_insert(engine, customer_monthly, pd.DataFrame(monthly))
    bulk_insert(engine, contacts, pd.DataFrame([
        {"contact_id": 1, "customer_id": "K01", "contacted_at": datetime(2026, 5, 3, 10, 0), "channel": "phone",
         "kind": "complaint", "resolved": False}]))


@pytest.fixture
def labelled(engine):
    fill_labels(engine)
    return engine


def test_cutoff_states_by_hand(labelled):
    states = cutoff_states(labelled, CUTOFF, 3)
    expected = {cid: case[3] for cid, case in CASES.items() if case[3] is not None}
    assert states.to_dict() == expected


def test_churn_labels_by_hand(labelled):
    labels = churn_labels(labelled, CUTOFF, horizon_months=3, aum_drop=0.8)
    active = sorted(cid for cid, case in CASES.items() if case[3] == "active")
    assert list(labels.index) == active
    for cid in active:
        criteria = CASES[cid][4]
        for name in ("closed", "aum_dropped", "dormant"):
            assert labels.loc[cid, name] == (name in criteria), (cid, name)
        assert labels.loc[cid, "churned"] == bool(criteria), cid
    assert labels.loc["K03", "aum_cutoff"] == 10000 and labels.loc["K03", "aum_end"] == 2000
    assert labels.loc["K10", "aum_end"] == 0


def test_aum_drop_and_horizon_are_parameters(labelled):
    assert churn_labels(labelled, CUTOFF, aum_drop=0.75).loc["K04", "aum_dropped"]
    assert not churn_labels(labelled, CUTOFF, aum_drop=0.8).loc["K04", "aum_dropped"]
    # Horizon 1: only July counts; K02 (closed in August) has not churned yet, K09 (dip) has.
    one = churn_labels(labelled, CUTOFF, horizon_months=1)
    assert not one.loc["K02", "churned"] and one.loc["K09", "aum_dropped"]


def test_outcomes_cover_every_state(labelled):
    outcomes = churn_outcomes(labelled, CUTOFF)
    assert outcomes.loc["K06", "churn_state"] == "inactive" and not outcomes.loc["K06", "churned"]
    assert outcomes.loc["K07", "churned"]  # closed before the cut-off and still closed
    assert "K08" not in outcomes.index


def test_labels_need_the_whole_horizon(labelled):
    with pytest.raises(ChurnError, match="need activity up to 2026-10"):
        churn_labels(labelled, date(2026, 7, 1))


def test_features_and_labels_ignore_the_future(labelled):
    """Changing everything after the cut-off leaves the features alone; after the horizon, the labels."""
    features = churn_features(labelled, CUTOFF)
    labels = churn_labels(labelled, CUTOFF)
    horizon_end = add_months(CUTOFF, 3)
    with labelled.begin() as conn:
        conn.execute(text("UPDATE customer_monthly SET aum = aum * 10, txn_count = 0, digital_logins = 99 "
                          "WHERE month > :m").bindparams(m=CUTOFF))
        conn.execute(text("UPDATE holdings SET closed_on = :d WHERE closed_on IS NULL").bindparams(
            d=date(2026, 7, 15)))
    bulk_insert(labelled, contacts, pd.DataFrame([
        {"contact_id": 10 + i, "customer_id": "K01", "contacted_at": datetime(2026, 7, 1 + i, 9, 0),
         "channel": "app", "kind": "complaint", "resolved": False} for i in range(3)]))
    bulk_insert(labelled, customer_monthly, pd.DataFrame(_rows("K01", months=[add_months(horizon_end, 1)])))
    pd.testing.assert_frame_equal(churn_features(labelled, CUTOFF), features)
    assert "status" not in features.columns  # today's status is the outcome, never a feature

    # Labels read up to the horizon's end only: a later month changes nothing.
    before = churn_labels(labelled, add_months(CUTOFF, -1))
    with labelled.begin() as conn:
        conn.execute(text("UPDATE customer_monthly SET aum = 0, txn_count = 0 WHERE month > :m").bindparams(
            m=add_months(CUTOFF, 2)))
    pd.testing.assert_frame_equal(churn_labels(labelled, add_months(CUTOFF, -1)), before)
    assert not labels.equals(churn_labels(labelled, CUTOFF))  # ... while the cut-off's own horizon did change


@pytest.mark.parametrize(("name", "raw", "match"), [
    ("CHURN_HORIZON_MONTHS", "0", "CHURN_HORIZON_MONTHS"),
    ("CHURN_HORIZON_MONTHS", "13", "CHURN_HORIZON_MONTHS"),
    ("CHURN_AUM_DROP", "1.5", "CHURN_AUM_DROP"),
    ("CHURN_AUM_DROP", "0", "CHURN_AUM_DROP"),
    ("CHURN_SAMPLE_SIZE", "10", "CHURN_SAMPLE_SIZE"),
])
def test_bad_settings_are_config_errors(monkeypatch, name, raw, match):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=match):
        churn.churn_settings()


def test_stage_with_too_little_history_is_skipped_with_its_reason(labelled, monkeypatch):
    # Horizon 4 at 2026-09: training at 2026-01 needs activity from 2025-10; the store starts in 2026-01.
    monkeypatch.setenv("CHURN_HORIZON_MONTHS", "4")
    ctx = RefreshContext(engine=labelled, run_id=_new_run(labelled), as_of_month=date(2026, 9, 1))
    churn.churn_stage(ctx)
    assert "needs activity from 2025-10" in read_churn_metrics(labelled, ctx.run_id)["churn.skipped"]
    assert read_frame(labelled, "SELECT COUNT(*) AS n FROM churn_scores")["n"].iloc[0] == 0


def test_stage_with_too_few_churners_is_skipped(labelled):
    from analytics.features_stage import features_stage_for
    from analytics.refresh import FEATURE_CUTOFFS

    ctx = RefreshContext(engine=labelled, run_id=_new_run(labelled), as_of_month=date(2026, 9, 1))
    features_stage_for(FEATURE_CUTOFFS)(ctx)  # the churn stage reads the features this stage stores
    churn.churn_stage(ctx)
    assert "at least 10 of each" in read_churn_metrics(labelled, ctx.run_id)["churn.skipped"]


def _new_run(engine) -> int:
    from analytics.runs import utcnow
    from analytics.schema import refresh_runs

    with engine.begin() as conn:
        return conn.execute(refresh_runs.insert().values(started_at=utcnow(), status="running")).inserted_primary_key[0]


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------

def synthetic(n: int, seed: int, noise_columns: int = 0):
    """A frame with numbers, a category, a string column and gaps; the log-odds are known."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"balance_drop": rng.normal(size=n), "logins": rng.poisson(5, n).astype(float),
                      "segment": rng.choice(["a", "b", "c"], n),
                      "channel": pd.Categorical(rng.choice(["app", "branch"], n))})
    if noise_columns:
        noise = pd.DataFrame(rng.normal(size=(n, noise_columns)), columns=[f"noise_{k}" for k in range(noise_columns)])
        X = pd.concat([X, noise], axis=1)
    X.loc[rng.random(n) < 0.1, "logins"] = np.nan
    z = -2.0 + 2.5 * X["balance_drop"] - 0.4 * X["logins"].fillna(5) + 2.0 * (X["segment"] == "a")
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = synthetic(3000, 0)
    return ChurnModel(random_state=0).fit(X, y), X, y


def test_known_signal_is_found(fitted):
    model, _, _ = fitted
    X_test, y_test = synthetic(5000, 1)
    p = model.predict_proba(X_test)
    assert p.shape == (5000, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y_test, p[:, 1]) >= 0.9
    # Calibrated: the mean predicted probability matches the observed rate to within 2 points.
    assert abs(p[:, 1].mean() - y_test.mean()) < 0.02


def test_calibration_improves_the_brier_score_of_an_overconfident_blend():
    """A wide frame with few rows: both base models overfit (over-confident), and the calibrator
    fitted on out-of-fold scores pulls them back. Measured on 20,000 fresh rows."""
    X, y = synthetic(800, 2, noise_columns=150)
    X_test, y_test = synthetic(20000, 3, noise_columns=150)
    model = ChurnModel(random_state=0).fit(X, y)
    calibrated = brier_score_loss(y_test, model.predict_proba(X_test)[:, 1])
    raw = brier_score_loss(y_test, model.predict_proba_uncalibrated(X_test)[:, 1])
    assert calibrated < raw
    assert model.calibration_ in ("isotonic", "sigmoid")
    assert set(model.calibration_brier_) == {"isotonic", "sigmoid"}
    assert model.calibration_brier_[model.calibration_] == min(model.calibration_brier_.values())


def test_follows_scikit_learn_conventions(fitted):
    model, X, y = fitted
    params = model.get_params()
    assert params["random_state"] == 0 and clone(model).get_params() == params
    assert not hasattr(clone(model), "classes_")
    fresh = ChurnModel(random_state=0)
    assert fresh.fit(X, y) is fresh
    np.testing.assert_array_equal(fresh.predict_proba(X.head(50)), model.predict_proba(X.head(50)))  # seeded
    assert list(model.classes_) == [0, 1]
    assert set(model.predict(X.head(100))) <= {0, 1}


def test_logistic_candidates_share_one_fitted_preparation_and_equal_separate_fits():
    # The preparation does not depend on C: fitted once, the candidates are the pipelines a fit per C gives.
    X, y = synthetic(1500, 6)
    model = ChurnModel(random_state=0).fit(X, y)
    Z = model._prepare(X)
    Cs = [0.01, 1.0, 10.0]
    shared = model._fit_linears(Z, y, Cs)
    assert len({id(p.named_steps["prepare"]) for p in shared}) == 1
    separate = [model._linear(C).fit(Z, y) for C in Cs]
    for one, alone in zip(shared, separate, strict=True):
        np.testing.assert_array_equal(one.named_steps["logistic"].coef_, alone.named_steps["logistic"].coef_)
        np.testing.assert_array_equal(one.predict_proba(Z), alone.predict_proba(Z))
    np.testing.assert_array_equal(churn_model._candidate_scores(shared, Z),
                                  np.column_stack([p.predict_proba(Z)[:, 1] for p in separate]))


def test_string_labels_and_numpy_input():
    X, y = synthetic(600, 4)
    labels = np.where(y == 1, "yes", "no")
    model = ChurnModel(random_state=0, n_folds=3).fit(X, labels)
    assert list(model.classes_) == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"}
    numbers = X[["balance_drop", "logins"]].to_numpy()
    assert ChurnModel(random_state=0, n_folds=3).fit(numbers, y).predict_proba(numbers).shape == (600, 2)


def test_categories_unseen_missing_and_typed_columns(fitted):
    model, X, _ = fitted
    assert model.categorical_features_ == ["segment", "channel"]
    other = X.head(4).copy()
    other["segment"] = ["zzz", None, "a", "b"]  # unseen and missing categories
    other["channel"] = pd.Categorical(["app", "kiosk", None, "app"])
    other["logins"] = [np.nan, 1.0, 2.0, np.nan]
    other = other.astype({"segment": "string"})
    p = model.predict_proba(other)[:, 1]
    assert np.isfinite(p).all()
    # An unseen category is scored as the pooled "(other)" category, not as an error.
    assert p[0] == pytest.approx(model.predict_proba(other.assign(segment=["(other)", None, "a", "b"]))[0, 1])
    # Columns in another order, extra columns: matched by name.
    shuffled = other[other.columns[::-1]].assign(extra=1)
    np.testing.assert_allclose(model.predict_proba(shuffled)[:, 1], p)


def test_a_wide_category_is_seen_through_two_encodings_on_small_data_only():
    """A categorical column wider than native splits take: on small data the trees are the mean of
    trees on its target encoding and trees on its one-hot columns; on more rows the target encoding
    alone. Both score unseen and missing values of it."""
    X, y = synthetic(1500, 4)
    rng = np.random.default_rng(4)
    X["branch"] = rng.choice([f"b{k:02d}" for k in range(40)], len(X))
    X.loc[X.index[:20], "branch"] = None
    small = ChurnModel(random_state=0, blend=1.0).fit(X, y)
    large = ChurnModel(random_state=0, blend=1.0, cv_max_rows=1000).fit(X, y)
    assert (small.wide_encoding_, large.wide_encoding_) == ("target+onehot", "target")
    assert len(small.gbm_.models_) == 2 and not hasattr(large.gbm_, "models_")
    other = X.head(3).assign(branch=["b99", None, "b01"])  # unseen, missing, known
    for model in (small, large):
        p = model.predict_proba(other)[:, 1]
        assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    # The mean's members: their logit average is the small model's tree score.
    Z = small._prepare(other)
    members = [m.predict_proba(Z)[:, 1] for m in small.gbm_.models_]
    logit = [np.log(q / (1 - q)) for q in members]
    np.testing.assert_allclose(small.gbm_.predict_proba(Z)[:, 1], 1 / (1 + np.exp(-np.mean(logit, axis=0))))


def test_missing_column_and_bad_targets_are_named(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match="Required column logins missing"):
        model.predict_proba(X.drop(columns="logins"))
    with pytest.raises(ValueError, match="exactly two classes"):
        ChurnModel().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="fewer than 2"):
        ChurnModel().fit(X, np.r_[1, np.zeros(len(X) - 1)])
    with pytest.raises(ValueError, match="rows"):
        ChurnModel().fit(X, y[:-1])


def _walk(obj, seen=None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    for child in children:
        yield from _walk(child, seen)


def test_the_training_frame_is_never_kept():
    n = 1013  # a prime: no fitted array is this long by accident
    X, y = synthetic(n, 5)
    model = ChurnModel(random_state=0, n_folds=3).fit(X, y)
    for value in _walk(model):
        assert not isinstance(value, pd.DataFrame | pd.Series), type(value)
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            assert value.shape[0] != n, value.shape
    # The training values themselves are nowhere in the pickled model.
    blob = pickle.dumps(model)
    assert X["balance_drop"].to_numpy()[:20].tobytes() not in blob


def test_large_frames_use_one_hold_out_split():
    X, y = synthetic(1200, 6)
    model = ChurnModel(random_state=0, cv_max_rows=1000).fit(X, y)
    assert model.fit_mode_ == "hold-out"
    assert 0 <= model.weight_ <= 1 and len(model.blend_auc_) == 11
    assert_best_candidate(model)


def assert_best_candidate(model):
    """The choice is the best single model, or the best blend when its gain over that model passed
    the standard-error bar (``blend_gain_``)."""
    singles = max(v for k, v in model.cv_scores_.items() if k != "blend")
    if model.candidate_["kind"] == "blend":
        assert model.blend_gain_["chosen"] and model.blend_gain_["gain"] > 2 * model.blend_gain_["se"]
        assert model.candidate_["cv_auc"] == max(model.cv_scores_.values())
    else:
        assert model.candidate_["cv_auc"] == singles
        assert model.blend_gain_ is None or not model.blend_gain_["chosen"]


def test_trees_are_chosen_where_only_trees_see_the_signal():
    """An XOR of two signs: every linear model is at chance (AUC ~0.5), trees see it; the inner
    cross-validation must use the trees and say so (a chance-level logistic regression barely moves
    a blend's ranking, so a blend may tie the trees alone)."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(1500, 3)), columns=["a", "b", "noise"])
    y = (((X["a"] > 0) ^ (X["b"] > 0)) ^ (rng.random(1500) < 0.1)).astype(int).to_numpy()
    model = ChurnModel(random_state=0, n_folds=3).fit(X, y)
    assert model.weight_ > 0 and model.gbm_ is not None
    assert model.candidate_["trees"] == "default" and model.candidate_["kind"] in ("trees", "blend")
    assert max(v for k, v in model.cv_scores_.items() if k.startswith("logistic")) < 0.6
    assert_best_candidate(model)
    assert model.candidate_["cv_auc"] > 0.85


def test_logistic_regression_is_chosen_where_the_signal_is_linear_and_rows_few():
    """300 rows, one linear signal among 30 noise columns: the trees overfit, a regularised
    logistic regression does not; the blend must lean on the logistic regression, with a C of
    the grid, and the pure trees' inner-CV score must be below the choice's."""
    rng = np.random.default_rng(8)
    X = pd.DataFrame(rng.normal(size=(300, 31)), columns=["signal", *(f"n{k}" for k in range(30))])
    y = (rng.random(300) < 1 / (1 + np.exp(-1.5 * X["signal"]))).astype(int).to_numpy()
    model = ChurnModel(random_state=0, n_folds=3).fit(X, y)
    assert model.weight_ <= 0.5 and model.linear_ is not None
    assert model.candidate_["C"] in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    assert model.cv_scores_["trees default"] < model.candidate_["cv_auc"]
    if model.candidate_["kind"] == "logistic":
        assert model.gbm_ is None  # an unused base model is not refitted


# ---------------------------------------------------------------------------------------------
# Metrics, by hand
# ---------------------------------------------------------------------------------------------

def test_holdout_metrics_by_hand():
    m = holdout_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    # Pairs (positive, negative) ranked right: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: (0.35 < 0.4).
    assert m["roc_auc"] == pytest.approx(3 / 4)
    # Ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): precision 1 at recall 1/2, 2/3 at recall 1.
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    assert m["base_rate"] == 0.5 and m["customers"] == 4
    assert np.isnan(holdout_metrics([0, 0], [0.1, 0.2])["roc_auc"])


def test_lift_table_by_hand():
    y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    scores = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    table = lift_table(y, scores, n_bins=5)
    assert table["decile"].tolist() == [1, 2, 3, 4, 5]
    assert table["customers"].tolist() == [2] * 5
    assert table["churners"].tolist() == [1, 1, 0, 0, 0]
    # Overall rate 0.2; each of the top two groups churns at 0.5: lift 2.5.
    assert table["lift"].tolist() == pytest.approx([2.5, 2.5, 0, 0, 0])
    assert table["capture"].tolist() == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    assert table["cumulative_lift"].tolist() == pytest.approx([2.5, 2.5, 1 / 0.6, 1 / 0.8, 1.0])
    # Unsorted input gives the same table; uneven sizes differ by at most one.
    order = [3, 7, 0, 9, 1, 5, 2, 8, 4, 6]
    pd.testing.assert_frame_equal(lift_table(np.array(y)[order], np.array(scores)[order], n_bins=5), table)
    assert lift_table([1, 0, 0], [0.9, 0.5, 0.1], n_bins=2)["customers"].tolist() == [2, 1]


def test_calibration_table_by_hand():
    table = calibration_table([0, 0, 1, 1, 1], [0.05, 0.15, 0.15, 0.95, 1.0], n_bins=10)
    assert table["bin"].tolist() == [0, 1, 9]
    assert table["customers"].tolist() == [1, 2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.05, 0.15, 0.975])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert table["lower"].tolist() == pytest.approx([0.0, 0.1, 0.9])
    assert table["upper"].tolist() == pytest.approx([0.1, 0.2, 1.0])


class _OnlyA:
    """A stand-in model whose probability depends on column ``a`` alone: ``expit(2 a)``."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-2 * X["a"].to_numpy(dtype=float)))
        return np.column_stack([1 - p, p])


def test_permutation_importance_finds_the_only_column_that_matters():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400), "constant": 1.0})
    y = (X["a"] + 0.3 * rng.normal(size=400) > 0).astype(int)
    table = permutation_importance_table(_OnlyA(), X, y, n_repeats=3, random_state=0)
    assert table["feature"].tolist() == ["a", "b", "constant"]  # ties (0, 0) by name
    assert table.loc[0, "importance_mean"] > 0.3
    assert table.loc[1:, "importance_mean"].tolist() == [0.0, 0.0]
    assert table["rank"].tolist() == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Reason codes
# ---------------------------------------------------------------------------------------------

def test_reason_codes_name_the_groups_that_push_the_score_up():
    X = pd.DataFrame({"a": [0.0, 3.0, -2.0, 1.0, 0.0], "b": [5.0, 1.0, 2.0, 0.0, 9.0]})
    groups = {"ga": ReasonGroup(("a",), lambda row: f"a is {row['a']:.0f}")}
    coder = ReasonCoder(groups=groups).fit(X)  # reference: medians a = 0, b = 2
    assert coder.reference_ == {"a": 0.0, "b": 2.0}

    def predict(frame):
        return _OnlyA().predict_proba(frame)[:, 1]

    reasons = coder.explain(predict, X)
    # Row 1: a = 3 pushes the probability up (expit(6) - expit(0)); b plays no part (generic group).
    assert reasons.loc[1, "reason_1"] == "a is 3" and reasons.loc[1, "group_1"] == "ga"
    assert reasons.loc[1, "reason_2"] is None
    # Row 2: a below the reference lowers the score: no reason at all.
    assert reasons.loc[2].isna().all()
    contributions = coder.contributions(predict, X)
    assert contributions.loc[1, "ga"] == pytest.approx(1 / (1 + np.exp(-6)) - 0.5)
    assert (contributions["b"] == 0).all()
    # Scoring passes the probabilities it has already: the same reasons, one model call fewer.
    calls = []

    def counted(frame):
        calls.append(len(frame))
        return predict(frame)

    pd.testing.assert_frame_equal(coder.explain(counted, X, base=predict(X)), reasons)
    assert len(calls) == len(coder.groups_)
    with pytest.raises(ValueError, match="probabilities for 5 rows"):
        coder.contributions(predict, X, base=np.zeros(3))


def test_reason_codes_through_the_prepared_matrix_equal_the_frame_path(fitted):
    """Scoring explains through the model's matrix (:class:`MatrixModel`): one preparation per block,
    and a group's replacement predicted only on the rows whose values it changes. The numbers are
    the frame path's; rows already at the reference contribute exactly 0 without a model call."""
    model, X, _ = fitted
    rows = X.head(400).copy()
    rows.loc[rows.index[:60], "segment"] = None  # missing and unseen categories are prepared alike
    rows.loc[rows.index[60:90], "segment"] = "zzz"
    groups = {"money": ReasonGroup(("balance_drop", "logins"), lambda r: "money"),
              "where": ReasonGroup(("segment", "channel"), lambda r: "where")}
    coder = ReasonCoder(groups=groups).fit(X)
    # Rows 0-49 already hold the reference of "money": nothing to replace there.
    rows.loc[rows.index[:50], "balance_drop"] = coder.reference_["balance_drop"]
    rows.loc[rows.index[:50], "logins"] = coder.reference_["logins"]

    def predict(frame):
        return model.predict_proba(frame)[:, 1]

    matrix = MatrixModel.of(model)
    predicted = []
    counted = MatrixModel(prepare=matrix.prepare, columns=matrix.columns,
                          predict=lambda Z: predicted.append(len(Z)) or matrix.predict(Z))
    by_frame = coder.contributions(predict, rows)
    by_matrix = coder.contributions(counted, rows, base=predict(rows))
    pd.testing.assert_frame_equal(by_matrix, by_frame, check_exact=False, rtol=0, atol=1e-12)
    assert (by_matrix.iloc[:50]["money"] == 0).all() and (by_matrix.iloc[50:]["money"] != 0).any()
    assert predicted[0] == len(rows) - 50  # "money": only the rows it changes
    pd.testing.assert_frame_equal(coder.explain(counted, rows), coder.explain(predict, rows))
    np.testing.assert_array_equal(matrix.predict(matrix.prepare(rows)), predict(rows))
    with pytest.raises(ValueError, match="probabilities for 400 rows"):
        coder.contributions(matrix, rows, base=np.zeros(3))


ROW = {"tenure_months": 24, "aum_change_pct_3m": -0.45, "aum_change_pct_6m": -0.5, "aum_change_pct_12m": 0.1,
       "digital_logins_3m": 6, "digital_logins_12m": 114, "txn_count_3m": 9, "txn_count_12m": 99,
       "months_since_last_txn": 0, "complaints_3m": 1, "complaints_6m": 3, "complaints_12m": 4,
       "unresolved_complaints_6m": 2, "open_products": 1, "loan_change_6m": -250000.0, "aum_latest": 3200.0,
       "marketing_contacts_6m": 7, "age": 24.0, "customer_type": "individual", "income_band": "50k_100k",
       "onboarding_channel": "mobile_app", "days_to_id_expiry": -3.0}


@pytest.mark.parametrize(("group", "row", "expected"), [
    ("aum_decline", ROW, "AUM down 45 % in 3 months"),
    ("aum_decline", ROW | {"aum_change_pct_3m": 0.0}, "AUM down 50 % in 6 months"),
    ("aum_decline", ROW | {"aum_change_pct_3m": 0.2, "aum_change_pct_6m": 0.0}, "AUM +20 % in 3 months"),
    ("logins", ROW, "logins fell from 12 to 2 a month"),  # (114 - 6) / 9 before, 6 / 3 now
    ("logins", ROW | {"tenure_months": 5}, "logins fell from 36 to 2 a month"),  # only 3 earlier months
    ("transactions", ROW, "transactions fell from 10 to 3 a month"),
    ("transactions", ROW | {"months_since_last_txn": 3}, "no transactions for 3 months"),
    ("complaints", ROW, "complaints in 6 months: 3 (2 unresolved)"),
    ("complaints", ROW | {"complaints_6m": 0, "complaints_3m": 0}, "complaints in 12 months: 4"),
    ("products", ROW, "holds only 1 product"),
    ("loans", ROW, "loans down CNY 250,000 in 6 months"),
    ("balance", ROW, "AUM of CNY 3,200"),
    ("contacts", ROW, "7 marketing contacts in 6 months"),
    ("profile", ROW, "profile: age 24, Individual, income CNY 50k–100k, joined via Mobile app"),
    ("profile", {"income_band": "ge_1m"}, "profile: income CNY 1m and more"),
    ("records", ROW, "ID document expired"),
    ("tenure", ROW, "customer for 24 months"),
])
def test_reason_phrases(group, row, expected):
    # Stored as a code and parameters, said in words when read.
    stored = churn.REASON_GROUPS[group].phrase(row)
    assert reasons.decode(stored) is not None, stored
    assert reasons.reason_text(stored, "en") == expected


@pytest.mark.parametrize(("group", "row", "stored", "expected"), [
    ("aum_decline", ROW, 'aum_down {"months": 3, "pct": 45}', "资产规模 3 个月内下降 45%"),
    ("aum_decline", ROW | {"aum_change_pct_3m": 0.2, "aum_change_pct_6m": 0.0}, 'aum_change {"pct": 20}',
     "资产规模 3 个月内变动 +20%"),
    ("complaints", ROW, 'complaints_6m_unresolved {"n": 3, "unresolved": 2}', "6 个月内投诉 3 次（2 次未解决）"),
    ("loans", ROW, 'loans_down {"amount": 250000.0}', "贷款 6 个月内减少 ¥25.00万"),
    ("profile", ROW, 'profile {"age": 24, "customer_type": "individual", "income_band": "50k_100k", '
                     '"onboarding_channel": "mobile_app"}', "客户画像：24 岁、个人客户、收入 5万–10万元、经手机银行开户"),
    ("risk_profile", {"risk_tolerance": "C3", "credit_grade": "BBB"},
     'risk {"credit_grade": "BBB", "risk_tolerance": "C3"}', "风险画像：风险承受能力 C3、信用等级 BBB"),
    ("records", ROW, "id_expired", "身份证件已过期"),
])
def test_reasons_are_stored_as_codes_and_read_in_chinese(group, row, stored, expected):
    assert churn.REASON_GROUPS[group].phrase(row) == stored
    assert reasons.reason_text(stored, "zh") == expected


def test_a_feature_without_a_group_and_an_older_runs_phrase():
    stored = reasons._generic_phrase("age")({"age": 45.0})
    assert stored == 'feature {"column": "age", "value": 45.0}'
    assert reasons.reason_text(stored, "en") == "age = 45"
    assert reasons.reason_text(stored, "zh") == "年龄：45"
    # A run stored before codes kept English phrases: shown as they are; nothing stays nothing.
    assert reasons.reason_text("AUM down 12 % in 3 months", "zh") == "AUM down 12 % in 3 months"
    assert reasons.reason_text("aum_down {not json", "zh") == "aum_down {not json"
    assert reasons.reason_text(None, "zh") is None


def test_default_groups_cover_every_feature_column(fitted):
    from analytics.features import FEATURE_COLUMNS

    grouped = {c for g in churn.REASON_GROUPS.values() for c in g.columns}
    assert set(FEATURE_COLUMNS) <= grouped


# ---------------------------------------------------------------------------------------------
# The refresh stage and the early-warning list, on the demo store
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_scores(demo_store_url):
    from analytics.store import make_engine

    engine = make_engine(demo_store_url)
    run_id = current_run_id(engine)
    scores = read_frame(engine, "SELECT * FROM churn_scores WHERE run_id = :r", {"r": run_id})
    yield engine, run_id, scores
    engine.dispose()


def test_every_demo_customer_has_a_probability(demo_scores):
    engine, run_id, scores = demo_scores
    as_of = date.fromisoformat(read_churn_metrics(engine, run_id)["churn.as_of_month"])
    opened = read_frame(engine, "SELECT customer_id FROM customers WHERE open_date <= :d",
                        {"d": (add_months(as_of, 1) - pd.Timedelta(days=1)).isoformat()})
    assert sorted(scores["customer_id"]) == sorted(opened["customer_id"]) and len(scores) > 0
    assert scores["churn_probability"].between(0, 1).all()
    np.testing.assert_allclose(scores["value_at_risk"], scores["churn_probability"] * scores["clv"])
    assert set(scores["churn_state"]) <= {"active", "inactive", "closed"}
    closed = scores[scores["churn_state"] == "closed"]
    assert (closed["churn_probability"] == 1).all() and (closed["reason_1"] == "all_products_closed").all()
    active = scores[scores["churn_state"] == "active"]
    assert len(active) > 0.8 * len(scores)
    # The riskiest active customers are explained in words.
    top = active.nlargest(50, "churn_probability")
    assert top["reason_1"].notna().all()
    assert top["reason_1"].str.match(r"(aum|transactions|logins|complaints|no_transactions)").mean() > 0.5
    assert all(reasons.decode(r) is not None for r in top["reason_1"])  # stored as codes


def test_demo_holdout_metrics_are_recorded_and_good(demo_scores):
    engine, run_id, _ = demo_scores
    m = read_churn_metrics(engine, run_id)
    assert m["churn.holdout_roc_auc"] > 0.8  # the generator has real signal
    assert m["churn.holdout_pr_auc"] > 3 * m["churn.holdout_base_rate"]
    assert 0 < m["churn.holdout_brier"] < m["churn.holdout_base_rate"]  # beats predicting the base rate
    assert m["churn.top_decile_lift"] > 3
    assert m["churn.holdout_cutoff"] > m["churn.train_cutoff"]
    assert m["churn.model_calibration"] in ("isotonic", "sigmoid")
    for name in ("churn.model_candidate", "churn.final_candidate"):
        candidate = json.loads(m[name])
        assert candidate["kind"] in ("trees", "logistic", "blend") and 0 <= candidate["weight"] <= 1
        assert (candidate["trees"] is None) == (candidate["weight"] == 0)


def test_demo_metric_tables(demo_scores):
    engine, run_id, _ = demo_scores
    lift = read_churn_lift(engine, run_id)
    assert lift["decile"].tolist() == list(range(1, 11))
    assert lift["capture"].is_monotonic_increasing and lift["capture"].iloc[-1] == pytest.approx(1.0)
    assert lift["lift"].iloc[0] == max(lift["lift"])
    cal = read_churn_calibration(engine, run_id)
    assert cal["customers"].sum() == lift["customers"].sum()
    assert cal["mean_predicted"].between(cal["lower"], cal["upper"]).all()
    importance = read_churn_importance(engine, run_id)
    assert 0 < len(importance) <= 20 and importance["rank"].tolist() == list(range(1, len(importance) + 1))
    assert importance.iloc[0]["feature"].startswith(("aum", "txn", "digital", "complaints", "months", "active"))
    rates = read_churn_rates(engine, "branch_id", run_id)
    assert rates["holdout_churn_rate"].dropna().between(0, 1).all()
    assert rates["customers"].sum() == (demo_scores[2]["churn_state"] == "active").sum()
    with pytest.raises(ValueError, match="dimension"):
        read_churn_rates(engine, "name", run_id)


def test_early_warning_is_ranked_by_value_at_risk(demo_scores):
    engine, run_id, _ = demo_scores
    warning, left_out = early_warning(engine, run_id, viewer=RM_ALL, limit=100)
    assert list(warning.columns) == list(EARLY_WARNING_COLUMNS)
    assert len(warning) == 100
    assert warning["value_at_risk"].is_monotonic_decreasing
    # Ids and non-personal columns only: no name, phone, ID number, address, birth date.
    assert not {"name", "phone", "id_number", "address", "birth_date", "email"} & set(warning.columns)
    assert warning["segment"].notna().all()  # the segments stage ran before


@pytest.mark.parametrize("key", ["branch_id", "segment", "relationship_manager", "value_tier"])
def test_early_warning_filters(demo_scores, key):
    engine, run_id, _ = demo_scores
    value = early_warning(engine, run_id, viewer=RM_ALL, limit=1)[0][key].iloc[0]
    filtered, _ = early_warning(engine, run_id, viewer=RM_ALL, **{key: value}, limit=500)
    assert len(filtered) > 0 and (filtered[key] == value).all()
    assert early_warning(engine, run_id, viewer=RM_ALL, **{key: "no such value"})[0].empty


def test_early_warning_defaults_to_the_published_run_and_checks_its_limit(demo_scores):
    engine, run_id, _ = demo_scores
    pd.testing.assert_frame_equal(early_warning(engine, viewer=RM_ALL, limit=5)[0],
                                  early_warning(engine, run_id, viewer=RM_ALL, limit=5)[0])
    with pytest.raises(ValueError, match="limit"):
        early_warning(engine, run_id, viewer=RM_ALL, limit=0)


def test_early_warning_is_a_contact_list_in_scope(demo_scores):
    engine, run_id, _ = demo_scores
    everyone, left_out = early_warning(engine, run_id, viewer=RM_ALL, limit=100_000)
    active = read_frame(engine, "SELECT COUNT(*) AS n FROM churn_scores WHERE run_id = :r AND churn_state = 'active'",
                        {"r": run_id})["n"].iloc[0]
    assert len(everyone) + left_out["consent"] == active and left_out["consent"] > 0
    consenting = set(read_frame(engine, "SELECT customer_id FROM consents WHERE purpose = 'marketing' "
                                        "AND withdrawn_at IS NULL")["customer_id"])
    assert set(everyone["customer_id"]) <= consenting
    # A withdrawal takes effect at the next read.
    first = everyone["customer_id"].iloc[0]
    consent.withdraw(engine, first, "marketing")
    try:
        again, left_again = early_warning(engine, run_id, viewer=RM_ALL, limit=100_000)
    finally:
        consent.grant(engine, first, "marketing")  # the store is shared with later tests
    assert first not in set(again["customer_id"]) and left_again["consent"] == left_out["consent"] + 1
    # A relationship manager sees their own portfolio only; marketing sees AUM bands, not amounts.
    rm = everyone["relationship_manager"].value_counts().index[0]
    mine, _ = early_warning(engine, run_id, viewer=Viewer("rm", ("relationship_manager",), Scope(portfolios={rm})),
                            limit=100_000)
    assert len(mine) > 0 and set(mine["relationship_manager"]) == {rm}
    with pytest.raises(AccessDenied):
        early_warning(engine, run_id, viewer=Viewer("e", ("executive",)))
