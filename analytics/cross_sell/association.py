"""Cross-sell: co-occurrence counts and association rules of a 0/1 holding frame.

Association rules
-----------------
:func:`association_rules` finds the same rules as mlxtend's ``apriori`` followed by its
``association_rules(metric="confidence")``, with the same floating-point arithmetic, so supports,
confidences and lifts are equal to the last bit and a rule on a threshold is kept or dropped alike
(tested against mlxtend, which is only a test dependency). Itemsets are counted with boolean matrix
products over row chunks (``X.T @ X`` for pairs, prefix-column products for longer itemsets), so a
million customers by ten categories takes well under a second.
"""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd

from analytics.cross_sell.errors import CrossSellError

RULE_COLUMNS = ("antecedents", "consequents", "antecedent support", "consequent support", "support",
                "confidence", "lift", "leverage", "conviction")
# Rows per exact float32 matrix product (every count stays below 2^24).
_EXACT_ROWS = 1 << 24


def cooccurrence(holdings: pd.DataFrame) -> pd.DataFrame:
    """Customers holding both categories (diagonal: holders of one), a category x category frame."""
    counts = _gram(_as_bool_matrix(holdings).astype(np.float32))
    return pd.DataFrame(counts, index=holdings.columns, columns=holdings.columns)


def _as_bool_matrix(holdings: pd.DataFrame) -> np.ndarray:
    """The frame as an (n, p) boolean array; every column must be boolean or 0/1 without missing."""
    if not isinstance(holdings, pd.DataFrame):
        raise CrossSellError(f"holdings must be a pandas DataFrame, not {type(holdings).__name__}")
    if holdings.columns.has_duplicates:
        raise CrossSellError("holdings has duplicate column names")
    out = np.empty(holdings.shape, dtype=bool)
    for j, name in enumerate(holdings.columns):
        col = holdings.iloc[:, j]
        if col.isna().any():
            raise CrossSellError(f"Column {name!r} of holdings has missing values; use 0/1 or True/False")
        if pd.api.types.is_bool_dtype(col.dtype):
            out[:, j] = col.to_numpy(dtype=bool)
        elif pd.api.types.is_numeric_dtype(col.dtype):
            values = col.to_numpy(dtype=float)
            if not np.isin(values, (0.0, 1.0)).all():
                raise CrossSellError(f"Column {name!r} of holdings must hold only 0 and 1")
            out[:, j] = values == 1.0
        else:
            raise CrossSellError(f"Column {name!r} of holdings must be boolean or 0/1, not {col.dtype}")
    return out


def _gram(block: np.ndarray) -> np.ndarray:
    """``block.T @ block`` as exact int64 counts for a 0/1 float32 block."""
    counts = np.zeros((block.shape[1], block.shape[1]), dtype=np.int64)
    # Float32 holds every integer up to 2^24 exactly: sum at most that many rows per product.
    for start in range(0, block.shape[0], _EXACT_ROWS):
        part = block[start:start + _EXACT_ROWS]
        counts += np.rint(part.T @ part).astype(np.int64)
    return counts


def _frequent_itemsets(x: np.ndarray, min_support: float, max_len: int | None) -> dict[tuple[int, ...], float]:
    """Every itemset (sorted column positions) of at most ``max_len`` items with support >= min_support.

    Apriori by levels: a (k+1)-itemset can only be frequent if the k-itemset of its first k items
    is. Candidates ``Q + (a, b)`` (with ``Q + (a,)`` frequent, ``b > a``) are counted for a whole
    condition ``Q`` at once: the rows holding all of ``Q``, then one Gram matrix ``X.T @ X`` over
    them counts every ``(a, b)``. Support is anti-monotone, so this finds exactly the itemsets
    mlxtend's apriori (join and prune) finds; supports are ``count / float(n)``, the expression
    mlxtend evaluates, so a support on the threshold is decided alike.
    """
    n = x.shape[0]
    singles = x.sum(axis=0) / float(n)
    items = np.flatnonzero(singles >= min_support)
    frequent: dict[tuple[int, ...], float] = {(int(j),): float(singles[j]) for j in items}
    if len(items) == 0:
        return frequent
    xf = x[:, items].astype(np.float32)  # only frequent items can be in a frequent itemset
    level: list[tuple[int, ...]] = [(p,) for p in range(len(items))]  # positions in `items`
    k = 1
    while level and (max_len is None or k < max_len):
        by_condition: dict[tuple[int, ...], list[int]] = {}
        for itemset in level:
            by_condition.setdefault(itemset[:-1], []).append(itemset[-1])
        next_level = []
        for condition, lasts in by_condition.items():
            if len(lasts) < 2:
                continue
            rows = xf if not condition else xf[x[:, items[list(condition)]].all(axis=1)]
            support = _gram(rows) / float(n)
            for i, a in enumerate(lasts):
                for b in lasts[i + 1:]:
                    # b is frequent after a: its k-itemset Q + (b,) is frequent too (pre-pruned).
                    if support[a, b] >= min_support:
                        itemset = (*condition, a, b)
                        next_level.append(itemset)
                        frequent[tuple(int(items[q]) for q in itemset)] = float(support[a, b])
        level = sorted(next_level)
        k += 1
    return frequent


def association_rules(holdings: pd.DataFrame, min_support: float, min_confidence: float,
                      max_len: int | None = 3) -> pd.DataFrame:
    """Association rules between the columns of a 0/1 holding frame, sorted by lift.

    Gives exactly the rules of ``mlxtend.frequent_patterns.apriori(holdings, min_support,
    use_colnames=True, max_len=max_len)`` followed by ``association_rules(frequent,
    metric="confidence", min_threshold=min_confidence)``, with the same metric values.

    Parameters
    ----------
    holdings : pandas.DataFrame
        One row per customer (basket), one boolean or 0/1 column per product; no missing values.
    min_support : float
        Smallest support, in (0, 1], of an itemset behind a rule: ``count / rows >= min_support``.
    min_confidence : float
        Smallest confidence, in [0, 1], of a rule kept.
    max_len : int or None
        Largest itemset (antecedent plus consequent); None for no limit.

    Returns
    -------
    pandas.DataFrame
        Columns ``antecedents`` and ``consequents`` (frozensets of column names), ``antecedent
        support``, ``consequent support``, ``support`` (of both), ``confidence`` (support /
        antecedent support), ``lift`` (confidence / consequent support), ``leverage`` (support -
        antecedent support * consequent support) and ``conviction`` ((1 - consequent support) /
        (1 - confidence), inf when confidence is 1). Sorted by lift descending; lifts equal to 12
        decimals are ties (A -> B and B -> A have the same lift, but rounding may differ in the last
        bit), broken by support descending, confidence descending, the smaller antecedent, then the
        column order of the antecedent's and consequent's items. Index 0..n-1. Empty (same columns)
        when nothing qualifies, where mlxtend raises on an empty itemset frame.

    Raises
    ------
    CrossSellError
        On a frame that is not 0/1 or boolean, or thresholds out of range.
    """
    if not 0.0 < float(min_support) <= 1.0:
        raise CrossSellError(f"min_support must be in (0, 1], got {min_support!r}")
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise CrossSellError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    if max_len is not None and (isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1):
        raise CrossSellError(f"max_len must be a positive whole number or None, got {max_len!r}")
    x = _as_bool_matrix(holdings)
    names = list(holdings.columns)
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in ("antecedents", "consequents") else float)
                          for c in RULE_COLUMNS})
    if x.shape[0] == 0:
        return empty
    frequent = _frequent_itemsets(x, float(min_support), None if max_len is None else int(max_len))
    rules = []
    for itemset in sorted(frequent, key=lambda s: (len(s), s)):
        if len(itemset) < 2:
            continue
        s_ac = frequent[itemset]
        for size in range(len(itemset) - 1, 0, -1):
            for ante in combinations(itemset, size):
                cons = tuple(i for i in itemset if i not in ante)
                s_a, s_c = frequent[ante], frequent[cons]
                confidence = s_ac / s_a  # mlxtend's expression, so the threshold decides alike
                if confidence >= min_confidence:
                    rules.append((ante, cons, s_a, s_c, s_ac, confidence, confidence / s_c))
    if not rules:
        return empty
    rules.sort(key=lambda r: (-round(r[6], 12), -r[4], -r[5], len(r[0]), r[0], r[1]))
    s_a = np.array([r[2] for r in rules])
    s_c = np.array([r[3] for r in rules])
    s_ac = np.array([r[4] for r in rules])
    confidence = np.array([r[5] for r in rules])
    conviction = np.full(len(rules), np.inf)
    below = confidence < 1.0
    conviction[below] = (1.0 - s_c[below]) / (1.0 - confidence[below])
    return pd.DataFrame({
        "antecedents": [frozenset(names[i] for i in r[0]) for r in rules],
        "consequents": [frozenset(names[i] for i in r[1]) for r in rules],
        "antecedent support": s_a,
        "consequent support": s_c,
        "support": s_ac,
        "confidence": confidence,
        "lift": np.array([r[6] for r in rules]),
        "leverage": s_ac - s_a * s_c,
        "conviction": conviction,
    })


def itemset_text(items) -> str:
    """A rule side as stored: a JSON array of the category names, sorted."""
    return json.dumps(sorted(str(i) for i in items), ensure_ascii=False)


__all__ = ["RULE_COLUMNS", "association_rules", "cooccurrence", "itemset_text"]
