"""Hold-out evaluation of a binary classifier's probabilities, whatever the model: summary metrics
(:func:`holdout_metrics`), lift and capture by score decile (:func:`lift_table`), calibration by
probability bin (:func:`calibration_table`) and permutation importance
(:func:`permutation_importance_table`).

The positive class is called churn in the column names (``churners``, ``churn_rate``) because the
churn stage stores these tables as they are; the arithmetic holds for any positive class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


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


__all__ = ["calibration_table", "holdout_metrics", "lift_table", "permutation_importance_table"]
