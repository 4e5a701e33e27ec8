"""Reason codes: :class:`ReasonCoder` explains each row's churn probability by group replacement
over :data:`REASON_GROUPS` (see :mod:`analytics.churn`, *Reason codes*); the phrase helpers turn a
group's columns into a stored reason from the customer's own values: a code and its parameters as
JSON (``aum_down {"months": 3, "pct": 12}``), which :func:`reason_text` says in the reader's
language through ``churn_reason.<code>`` in ``data/i18n.yaml``.

Runs stored before reasons were codes hold English phrases; :func:`reason_text` shows those as they
are (the next refresh stores codes).
"""

from __future__ import annotations

import json
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


def _prior_months(row) -> float:
    """Months of the 12-month window before the last 3 the customer had (at most 9, at least 1)."""
    return float(np.clip(_number(row, "tenure_months", 12.0) + 1 - 3, 1, 9))


def _monthly_rates(row, now_col: str, year_col: str) -> tuple[float, float]:
    now = _number(row, now_col) / 3.0
    before = max(_number(row, year_col) - _number(row, now_col), 0.0) / _prior_months(row)
    return before, now


def encode(code: str, **params) -> str:
    """A stored reason: its code, then its parameters as JSON (``aum_down {"pct": 12, "months": 3}``),
    rendered in the reader's language by :func:`reason_text`."""
    return f"{code} {json.dumps(params, ensure_ascii=False, sort_keys=True)}" if params else code


def _whole(value: float) -> int:
    return int(round(value))


def _phrase_aum(row) -> str:
    for k in (3, 6, 12):
        change = _number(row, f"aum_change_pct_{k}m", np.nan)
        if not np.isnan(change) and change <= -0.05:
            return encode("aum_down", pct=_whole(abs(change) * 100), months=k)
    change = _number(row, "aum_change_pct_3m")
    return encode("aum_change", pct=_whole(change * 100))


def _phrase_balance(row) -> str:
    return encode("aum_balance", amount=round(_number(row, "aum_latest"), 2))


def _phrase_loans(row) -> str:
    change = _number(row, "loan_change_6m")
    if change < 0:
        return encode("loans_down", amount=round(-change, 2))
    return encode("loan_balance", amount=round(_number(row, "loan_balance_latest"), 2))


def _phrase_transactions(row) -> str:
    inactive = _number(row, "months_since_last_txn")
    if inactive >= 2:
        return encode("no_transactions", months=_whole(inactive))
    before, now = _monthly_rates(row, "txn_count_3m", "txn_count_12m")
    if before > now and round(before) != round(now):
        return encode("transactions_fell", before=_whole(before), now=_whole(now))
    return encode("transactions", n=_whole(now))


def _phrase_logins(row) -> str:
    before, now = _monthly_rates(row, "digital_logins_3m", "digital_logins_12m")
    if before > now and round(before) != round(now):
        return encode("logins_fell", before=_whole(before), now=_whole(now))
    return encode("logins", n=_whole(now))


def _phrase_complaints(row) -> str:
    # Six months when there were any (the 3-month count is inside it), else the year.
    recent = _number(row, "complaints_6m")
    if recent > 0:
        unresolved = _number(row, "unresolved_complaints_6m")
        if unresolved > 0:
            return encode("complaints_6m_unresolved", n=_whole(recent), unresolved=_whole(unresolved))
        return encode("complaints_6m", n=_whole(recent))
    year = _number(row, "complaints_12m")
    if year > 0:
        return encode("complaints_12m", n=_whole(year))
    return encode("no_complaints")


def _phrase_contacts(row) -> str:
    marketing = _number(row, "marketing_contacts_6m")
    if marketing > 0:
        return encode("marketing_contacts", n=_whole(marketing))
    return encode("contacts", n=_whole(_number(row, "contacts_6m")))


def _phrase_products(row) -> str:
    n = _number(row, "open_products")
    return encode("one_product") if n == 1 else encode("products", n=_whole(n))


def _phrase_tenure(row) -> str:
    return encode("tenure", months=_whole(_number(row, "tenure_months")))


def _phrase_profile(row) -> str:
    parts = {}
    age = _number(row, "age", np.nan)
    if not np.isnan(age):
        parts["age"] = _whole(age)
    for col in ("customer_type", "income_band", "onboarding_channel"):
        value = row.get(col)
        if value is not None and not pd.isna(value):
            parts[col] = str(value)
    return encode("profile", **parts) if parts else encode("profile_none")


def _phrase_branch(row) -> str:
    return encode("branch", branch=str(row.get("branch_id")))


def _phrase_risk(row) -> str:
    parts = {col: str(row.get(col)) for col in ("risk_tolerance", "credit_grade")
             if row.get(col) is not None and not pd.isna(row.get(col))}
    return encode("risk", **parts) if parts else encode("risk_none")


def _phrase_records(row) -> str:
    days = _number(row, "days_to_id_expiry", np.nan)
    if not np.isnan(days) and days < 0:
        return encode("id_expired")
    age = _number(row, "risk_assessment_age_days", np.nan)
    if not np.isnan(age) and age > 365:
        return encode("assessment_old", years=round(age / 365, 1))
    if not np.isnan(days):
        return encode("id_expires", days=_whole(days))
    return encode("records")


# Every code a stored reason may have; each is ``churn_reason.<code>`` in data/i18n.yaml.
REASON_CODES = (
    "aum_down", "aum_change", "aum_balance", "loans_down", "loan_balance", "no_transactions", "transactions_fell",
    "transactions", "logins_fell", "logins", "complaints_6m_unresolved", "complaints_6m", "complaints_12m",
    "no_complaints", "marketing_contacts", "contacts", "one_product", "products", "tenure", "profile",
    "profile_none", "branch", "risk", "risk_none", "id_expired", "assessment_old", "id_expires", "records",
    "feature", "all_products_closed",
)
# The parts of a ``profile`` or ``risk`` reason, each ``churn_reason.part.<name>`` but the customer type.
REASON_PARTS = ("age", "customer_type", "income_band", "onboarding_channel", "risk_tolerance", "credit_grade")
# Parameters that are amounts of money, written in the reader's language (CNY 1,234 / ¥12.34万).
_MONEY_PARAMS = frozenset({"amount"})
# Parameters that are keys of a catalog family (their label is shown).
_PART_FAMILIES = {"customer_type": "customer_type", "income_band": "income_band", "onboarding_channel": "channel"}


def decode(stored) -> tuple[str, dict] | None:
    """``(code, params)`` of a stored reason, or None for text that is not a code (a run from before
    reasons were stored as codes kept its English phrases; they are shown as they are)."""
    if not isinstance(stored, str) or not stored:
        return None
    code, _, params = stored.partition(" ")
    if code not in REASON_CODES:
        return None
    if not params:
        return code, {}
    try:
        values = json.loads(params)
    except ValueError:
        return None
    return (code, values) if isinstance(values, dict) else None


def reason_text(stored, lang: str) -> str | None:
    """A stored reason in words of ``lang`` ("en" or "zh"); text that is no code as it is; None
    for none."""
    from analytics import formatting, i18n  # here: the stage imports this module before the catalog is needed

    if stored is None or (not isinstance(stored, str) and pd.isna(stored)):
        return None
    found = decode(stored)
    if found is None:
        return str(stored)
    code, params = found
    fields = {k: formatting.amount(v, lang) if k in _MONEY_PARAMS else v for k, v in params.items()}
    if code == "feature":
        value = params.get("value")
        if isinstance(value, float):
            value = f"{value:,.4g}"
        fields = {"feature": i18n.label("feature", params.get("column"), lang), "value": value}
    elif code in ("profile", "risk"):
        parts = []
        for part in REASON_PARTS:
            if part in params:
                value = params[part]
                if part in _PART_FAMILIES:
                    value = i18n.label(_PART_FAMILIES[part], value, lang)
                # a customer type reads as itself ("Individual"); the other parts name what they are
                parts.append(value if part == "customer_type" else i18n.tr(f"churn_reason.part.{part}", lang,
                                                                          value=value))
        fields = {"parts": i18n.tr("cluster.list_separator", lang).join(parts)}
    try:
        return i18n.tr(f"churn_reason.{code}", lang, **fields)
    except (KeyError, IndexError, ValueError):  # a stored reason without a field its text names
        return str(stored)


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
        if isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool | np.bool_):
            value = None if np.isnan(float(value)) else float(value)
        elif isinstance(value, bool | np.bool_):
            value = bool(value)
        elif value is not None:
            value = str(value)
        return encode("feature", column=col, value=value)
    return phrase


@dataclass(frozen=True)
class MatrixModel:
    """A model that reads a float matrix made from the frame column by column, for the reason codes.

    ``prepare(frame)`` makes the matrix: its column ``j`` from the frame's column ``columns[j]``
    alone, its row ``i`` from row ``i`` alone (:meth:`analytics.churn.model.ChurnModel.prepare`);
    ``predict(matrix)`` gives the probability of each row. Setting a group's columns to their
    reference in the frame then sets those matrix columns to the prepared reference and nothing
    else, so :meth:`ReasonCoder.contributions` prepares a block once instead of once per group,
    and predicts again only the rows whose values of the group differ from the reference (for the
    others the replacement changes nothing: their contribution is 0).
    """

    prepare: Callable[[pd.DataFrame], np.ndarray]
    predict: Callable[[np.ndarray], np.ndarray]
    columns: Sequence[str]

    @classmethod
    def of(cls, model) -> MatrixModel:
        """The churn model's matrix form (``prepare``, ``prepared_columns``, ``predict_proba_prepared``)."""
        return cls(prepare=model.prepare, predict=lambda Z: model.predict_proba_prepared(Z)[:, 1],
                   columns=tuple(model.prepared_columns()))


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

    @classmethod
    def from_reference(cls, reference: dict, columns: Sequence[str], **kwargs) -> ReasonCoder:
        """A coder fitted already: ``reference`` holds the typical value of each of ``columns`` (as
        :meth:`fit` learns them; a stage that reads its frame a block of columns at a time merges
        the blocks' references)."""
        coder = cls(**kwargs)
        missing = [c for c in columns if c not in reference]
        if missing:
            raise ValueError(f"No reference value for {', '.join(missing)}")
        coder.reference_ = {c: reference[c] for c in columns}
        coder.columns_ = list(columns)
        coder.groups_ = coder._resolve(coder.columns_)
        return coder

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

    def contributions(self, predict: Callable[[pd.DataFrame], np.ndarray] | MatrixModel, X: pd.DataFrame, *,
                      base: np.ndarray | None = None) -> pd.DataFrame:
        """``p(X) - p(X with the group set to its reference)`` for every group: rows × groups.

        ``predict`` is a function of a frame, or a :class:`MatrixModel` (the same numbers, with one
        preparation of ``X`` and only the rows a group's reference changes predicted again).
        ``base``, when given, is the probabilities of ``X`` already computed (scoring has them:
        one model call of the fourteen a block of customers costs is saved).
        """
        if isinstance(predict, MatrixModel):
            return self._matrix_contributions(predict, X, base)
        base = predict(X) if base is None else np.asarray(base, dtype=float)
        if base.shape != (len(X),):
            raise ValueError(f"base holds {base.shape} probabilities for {len(X)} rows")
        out = {}
        for name, (cols, _) in self.groups_.items():
            replaced = X.copy()
            for col in cols:
                replaced[col] = self.reference_[col]
            out[name] = base - predict(replaced)
        return pd.DataFrame(out, index=X.index)

    def _matrix_contributions(self, model: MatrixModel, X: pd.DataFrame, base) -> pd.DataFrame:
        Z = model.prepare(X)
        base = model.predict(Z) if base is None else np.asarray(base, dtype=float)
        if base.shape != (len(X),):
            raise ValueError(f"base holds {base.shape} probabilities for {len(X)} rows")
        # The reference as one prepared row: the first row of X with every column the coder knows
        # set to its reference, as the frame path sets a whole column.
        row = X.iloc[:1].copy() if len(X) else X.reindex([0])
        for col in self.columns_:
            if col in row.columns:
                row[col] = self.reference_[col]
        reference = model.prepare(row)[0]
        position = {col: j for j, col in enumerate(model.columns)}
        out = {}
        for name, (cols, _) in self.groups_.items():
            js = [position[c] for c in cols if c in position]
            contribution = np.zeros(len(X))
            if js:
                values, ref = Z[:, js], reference[js]
                same = (values == ref) | (np.isnan(values) & np.isnan(ref))
                rows = np.flatnonzero(~same.all(axis=1))
                if rows.size:
                    replaced = Z[rows]
                    replaced[:, js] = ref
                    contribution[rows] = base[rows] - model.predict(replaced)
            out[name] = contribution
        return pd.DataFrame(out, index=X.index)

    def explain(self, predict: Callable[[pd.DataFrame], np.ndarray] | MatrixModel, X: pd.DataFrame, *,
                base: np.ndarray | None = None) -> pd.DataFrame:
        """The top reasons of each row, in words.

        Parameters
        ----------
        predict : callable or MatrixModel
            Frame -> probability of churn per row (e.g. ``lambda f: model.predict_proba(f)[:, 1]``),
            or the model's :class:`MatrixModel` (the same reasons, faster).
        X : pandas.DataFrame
            Rows to explain, with the columns seen in :meth:`fit`.
        base : numpy.ndarray, optional
            ``predict(X)``, when the caller has it already.

        Returns
        -------
        pandas.DataFrame
            Same index: ``reason_1`` .. ``reason_<top>`` (stored reasons: :func:`encode`; None when fewer groups push the
            probability up by at least ``min_contribution``) and ``group_1`` .. (the group names).
        """
        contrib = self.contributions(predict, X, base=base)
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


class ReferenceCounter:
    """The reference :meth:`ReasonCoder.fit` learns (the median of each numeric column, the most
    frequent value of each other one, the smallest of equally frequent ones), from a frame seen a
    block of rows at a time, exactly, in two passes over the blocks in the same order.

    The first pass (:meth:`first`) counts each numeric column's values in bins and counts the other
    columns' values; the second (:meth:`second`) keeps the distinct values, with their counts, of the
    bins that hold a median's middle rows. What is held is the counts and those bins' values, not
    the column: a bin holds a share of the rows (about ``1 / bins`` with ``edges_from`` a sample of
    them), or a single value however often it repeats.

    Parameters
    ----------
    columns : sequence of str
        The frame's columns, in order.
    edges_from : pandas.DataFrame
        A sample of rows (any frame with the numeric columns): each numeric column's bins are cut at
        its quantiles. Only the memory the second pass needs depends on it, never the result.
    bins : int
        Quantile bins per numeric column.
    """

    def __init__(self, columns: Sequence[str], edges_from: pd.DataFrame, bins: int = 1024):
        self.columns = list(columns)
        self.bins = bins
        self._kind: dict[str, str] = {}
        self._edges: dict[str, np.ndarray] = {}
        for col in self.columns:
            if col in edges_from.columns and pd.api.types.is_numeric_dtype(edges_from[col]) \
                    and not pd.api.types.is_bool_dtype(edges_from[col]):
                sample = edges_from[col].to_numpy(dtype=float)
                sample = sample[~np.isnan(sample)]
                self._edges[col] = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1])) \
                    if len(sample) else np.array([])
        self._bin_counts: dict[str, np.ndarray] = {}
        self._value_counts: dict[str, pd.Series] = {}
        self._kept: dict[str, list[pd.Series]] = {}
        self._targets: dict[str, tuple[int, int, set[int], int]] | None = None

    def _bin_of(self, col: str, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._edges[col], values, side="right")

    def first(self, block: pd.DataFrame) -> None:
        """Count a block's values (first pass)."""
        for col in self.columns:
            s = block[col]
            kind = ("bool" if pd.api.types.is_bool_dtype(s) else
                    "number" if pd.api.types.is_numeric_dtype(s) else "other")
            if self._kind.setdefault(col, kind) != kind:
                raise ValueError(f"Column {col} changed type between blocks ({self._kind[col]}, then {kind})")
            if kind == "number":
                if col not in self._bin_counts:
                    self._edges.setdefault(col, np.array([]))
                    self._bin_counts[col] = np.zeros(len(self._edges[col]) + 1, dtype=np.int64)
                values = s.to_numpy(dtype=float)
                values = values[~np.isnan(values)]
                self._bin_counts[col] += np.bincount(self._bin_of(col, values), minlength=len(self._bin_counts[col]))
            else:
                counts = s.dropna().value_counts()
                total = self._value_counts.get(col)
                self._value_counts[col] = counts if total is None else total.add(counts, fill_value=0)

    def _plan(self) -> dict[str, tuple[int, int, set[int], int]]:
        """Per numeric column: the middle ranks, the bins holding them and the rows before them."""
        plan = {}
        for col, counts in self._bin_counts.items():
            m = int(counts.sum())
            if not m:
                continue
            low, high = (m - 1) // 2, m // 2
            ends = np.cumsum(counts)
            wanted = {int(np.searchsorted(ends, low, side="right")), int(np.searchsorted(ends, high, side="right"))}
            before = int(ends[min(wanted)] - counts[min(wanted)])
            plan[col] = (low, high, wanted, before)
        return plan

    def second(self, block: pd.DataFrame) -> None:
        """Keep the distinct values, with counts, of the bins holding each median (second pass)."""
        if self._targets is None:
            self._targets = self._plan()
        for col, (_, _, wanted, _) in self._targets.items():
            values = block[col].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            inside = values[np.isin(self._bin_of(col, values), list(wanted))]
            if len(inside):
                self._kept.setdefault(col, []).append(pd.Series(inside).value_counts())

    def reference(self) -> dict:
        """The reference of every column, as :meth:`ReasonCoder.fit` of the whole frame gives it."""
        targets = self._targets if self._targets is not None else self._plan()
        reference: dict = {}
        for col in self.columns:
            kind = self._kind.get(col, "other")
            if kind == "number":
                if col not in targets:
                    reference[col] = np.nan
                    continue
                low, high, _, before = targets[col]
                kept = self._kept.get(col, [])
                counts = pd.concat(kept).groupby(level=0).sum().sort_index() if kept else pd.Series(dtype=np.int64)
                ends = np.cumsum(counts.to_numpy())
                values = counts.index.to_numpy(dtype=float)
                if not len(ends) or ends[-1] < high - before + 1:
                    raise RuntimeError(f"The second pass over {col} did not see the rows of the first")
                a = values[np.searchsorted(ends, low - before, side="right")]
                b = values[np.searchsorted(ends, high - before, side="right")]
                reference[col] = float(np.mean([a, b])) if low != high else float(a)
            else:
                counts = self._value_counts.get(col, pd.Series(dtype=np.int64))
                if kind == "bool":
                    reference[col] = bool(counts.get(True, 0) > counts.get(False, 0))
                elif len(counts):
                    top = counts[counts == counts.max()]
                    reference[col] = sorted(top.index)[0]
                else:
                    reference[col] = None
        return reference


__all__ = ["MIN_REASON_CONTRIBUTION", "REASON_CODES", "REASON_GROUPS", "REASON_PARTS", "MatrixModel", "ReasonCoder", "ReferenceCounter",
           "ReasonGroup", "decode", "encode", "reason_text"]
