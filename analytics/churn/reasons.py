"""Reason codes in words: :class:`ReasonCoder` explains each row's churn probability by group
replacement over :data:`REASON_GROUPS` (see :mod:`analytics.churn`, *Reason codes*); the phrase
helpers turn a group's columns into words from the customer's own values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def _number(row, col, default=0.0) -> float:
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
    return float(np.clip(_number(row, "tenure_months", 12.0) + 1 - 3, 1, 9))


def _monthly_rates(row, now_col: str, year_col: str) -> tuple[float, float]:
    now = _number(row, now_col) / 3.0
    before = max(_number(row, year_col) - _number(row, now_col), 0.0) / _prior_months(row)
    return before, now


def _phrase_aum(row) -> str:
    for k in (3, 6, 12):
        change = _number(row, f"aum_change_pct_{k}m", np.nan)
        if not np.isnan(change) and change <= -0.05:
            return f"AUM down {abs(change) * 100:.0f} % in {k} months"
    change = _number(row, "aum_change_pct_3m")
    return f"AUM {change * 100:+.0f} % in 3 months"


def _phrase_balance(row) -> str:
    return f"AUM of {_money(_number(row, 'aum_latest'))} CNY"


def _phrase_loans(row) -> str:
    change = _number(row, "loan_change_6m")
    if change < 0:
        return f"loans down {_money(-change)} CNY in 6 months"
    return f"loan balance {_money(_number(row, 'loan_balance_latest'))} CNY"


def _phrase_transactions(row) -> str:
    inactive = _number(row, "months_since_last_txn")
    if inactive >= 2:
        return f"no transactions for {inactive:.0f} months"
    before, now = _monthly_rates(row, "txn_count_3m", "txn_count_12m")
    if before > now and round(before) != round(now):
        return f"transactions fell from {before:.0f} to {now:.0f} a month"
    return f"{now:.0f} transactions a month"


def _phrase_logins(row) -> str:
    before, now = _monthly_rates(row, "digital_logins_3m", "digital_logins_12m")
    if before > now and round(before) != round(now):
        return f"logins fell from {before:.0f} to {now:.0f} a month"
    return f"{now:.0f} digital logins a month"


def _phrase_complaints(row) -> str:
    # Six months when there were any (the 3-month count is inside it), else the year.
    recent = _number(row, "complaints_6m")
    if recent > 0:
        unresolved = _number(row, "unresolved_complaints_6m")
        extra = f" ({unresolved:.0f} unresolved)" if unresolved > 0 else ""
        return f"{recent:.0f} complaint{'s' if recent != 1 else ''} in 6 months{extra}"
    year = _number(row, "complaints_12m")
    if year > 0:
        return f"{year:.0f} complaint{'s' if year != 1 else ''} in 12 months"
    return "no complaints in 12 months"


def _phrase_contacts(row) -> str:
    marketing = _number(row, "marketing_contacts_6m")
    if marketing > 0:
        return f"{marketing:.0f} marketing contacts in 6 months"
    return f"{_number(row, 'contacts_6m'):.0f} contacts in 6 months"


def _phrase_products(row) -> str:
    n = _number(row, "open_products")
    return f"holds only {n:.0f} product" if n == 1 else f"holds {n:.0f} products"


def _phrase_tenure(row) -> str:
    return f"customer for {_number(row, 'tenure_months'):.0f} months"


def _phrase_profile(row) -> str:
    parts = []
    age = _number(row, "age", np.nan)
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
    days = _number(row, "days_to_id_expiry", np.nan)
    if not np.isnan(days) and days < 0:
        return "ID document expired"
    age = _number(row, "risk_assessment_age_days", np.nan)
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
    """Top reasons pushing each row's probability up, by group replacement (:mod:`analytics.churn`).

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


__all__ = ["MIN_REASON_CONTRIBUTION", "REASON_GROUPS", "ReasonCoder", "ReasonGroup"]
