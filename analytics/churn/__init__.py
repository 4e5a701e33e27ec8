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
columns and missing values. Its inner cross-validation, on the training data alone, chooses among
a gradient-boosting model (``HistGradientBoostingClassifier`` with scikit-learn's defaults, native
categorical splits for columns of up to 16 categories, cross-fitted target encoding for wider
ones, and on small data the mean on the logit scale of those trees and trees on one-hot columns of
the wide ones), regularised logistic regressions (imputed, standardised, skewed columns both raw and as a
signed log, one-hot categories; C on half decades from 0.01 to 10) and their blends on the logit
scale, by out-of-fold ROC AUC: the best single model, replaced by the best blend only when the
blend's gain over it, fold by fold, exceeds two standard errors (``blend_gain_``); the choice is
kept in ``candidate_`` and recorded by the refresh as
``churn.model_candidate``. The chosen model is then calibrated by isotonic or sigmoid (Platt) regression, whichever has
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

Where things are
----------------
:mod:`analytics.churn.labels` (the label, cut-off states, features, settings),
:mod:`analytics.churn.model` (:class:`ChurnModel`), :mod:`analytics.churn.reasons` (reason codes),
:mod:`analytics.churn.stage` (the refresh stage) and :mod:`analytics.churn.read` (what the pages
read). The hold-out metrics, lift, calibration and permutation importance are
:mod:`analytics.evaluation`'s, for any model; this package re-exports them under their old names.
"""

from analytics.churn.labels import (
    CHURN_STATES,
    RATE_DIMENSIONS,
    ChurnError,
    churn_features,
    churn_labels,
    churn_outcomes,
    churn_settings,
    cutoff_states,
)
from analytics.churn.model import ChurnModel
from analytics.churn.read import (
    EARLY_WARNING_COLUMNS,
    early_warning,
    read_churn_calibration,
    read_churn_importance,
    read_churn_lift,
    read_churn_metrics,
    read_churn_rates,
    scope_churn,
    scope_churn_rates,
)
from analytics.churn.reasons import MIN_REASON_CONTRIBUTION, REASON_GROUPS, ReasonCoder, ReasonGroup
from analytics.churn.stage import churn_rates, churn_stage, customer_value
from analytics.evaluation import calibration_table, holdout_metrics, lift_table, permutation_importance_table

__all__ = [
    "CHURN_STATES", "EARLY_WARNING_COLUMNS", "MIN_REASON_CONTRIBUTION", "RATE_DIMENSIONS", "REASON_GROUPS",
    "ChurnError", "ChurnModel", "ReasonCoder", "ReasonGroup", "calibration_table", "churn_features",
    "churn_labels", "churn_outcomes", "churn_rates", "churn_settings", "churn_stage", "customer_value",
    "cutoff_states", "early_warning", "holdout_metrics", "lift_table", "permutation_importance_table",
    "read_churn_calibration", "read_churn_importance", "read_churn_lift", "read_churn_metrics",
    "read_churn_rates", "scope_churn", "scope_churn_rates",
]
