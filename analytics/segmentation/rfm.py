"""RFM: recency, frequency and monetary scores 1–5 by quintile, and the named segment of each
(R, FM) cell. The rules and the reasons for each measure are in :mod:`analytics.segmentation`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

RFM_RECENCY = "months_since_last_txn"
RFM_FREQUENCY = "txn_count_12m"
RFM_MONETARY = "aum_avg_12m"
# Finer measures that order customers tied on the RFM value itself (see the module docstring).
RFM_TIEBREAKS = {RFM_RECENCY: "txn_count_3m", RFM_FREQUENCY: "txn_amount_12m", RFM_MONETARY: "aum_latest"}

# (segment, R range, FM range), inclusive. Together they cover the 5×5 grid once (tested).
RFM_SEGMENT_RULES: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("Champions", (5, 5), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential loyalists", (4, 5), (2, 3)),
    ("New", (5, 5), (1, 1)),
    ("Promising", (4, 4), (1, 1)),
    ("Need attention", (3, 3), (3, 3)),
    ("About to sleep", (3, 3), (1, 2)),
    ("At risk", (1, 2), (3, 4)),
    ("Can't lose", (1, 2), (5, 5)),
    ("Hibernating", (2, 2), (1, 2)),
    ("Lost", (1, 1), (1, 2)),
)
RFM_SEGMENTS: tuple[str, ...] = tuple(rule[0] for rule in RFM_SEGMENT_RULES)


def _segment_grid() -> np.ndarray:
    """``grid[r - 1, fm - 1]`` = the segment's position in :data:`RFM_SEGMENTS`."""
    grid = np.full((5, 5), -1, dtype=int)
    for position, (_, (r_lo, r_hi), (fm_lo, fm_hi)) in enumerate(RFM_SEGMENT_RULES):
        for r in range(r_lo, r_hi + 1):
            for fm in range(fm_lo, fm_hi + 1):
                if grid[r - 1, fm - 1] != -1:
                    raise AssertionError(f"RFM rules overlap at R={r}, FM={fm}")
                grid[r - 1, fm - 1] = position
    if (grid == -1).any():
        raise AssertionError("RFM rules leave a cell of the R×FM grid without a segment")
    return grid


SEGMENT_GRID = _segment_grid()


def quintile_scores(values: pd.Series, *, higher_is_better: bool = True,
                    tiebreak: pd.Series | None = None) -> pd.Series:
    """Scores 1–5 by quintile of rank; ties broken by ``tiebreak`` (same direction), then the index.

    Parameters
    ----------
    values : pandas.Series
        The measure to score. Missing values rank worst.
    higher_is_better : bool
        Whether a larger value earns a higher score (False for recency in months).
    tiebreak : pandas.Series, optional
        A finer measure, same index, ordering customers tied on ``values`` (larger is better when
        ``higher_is_better``, smaller otherwise).

    Returns
    -------
    pandas.Series
        ``int8`` scores, ``1 + floor(5 * rank / n)`` where ``rank`` 0 is the worst customer.
    """
    n = len(values)
    if n == 0:
        return pd.Series([], index=values.index, dtype="int8")
    sign = 1.0 if higher_is_better else -1.0
    worst = -np.inf
    primary = np.nan_to_num(sign * values.to_numpy(dtype=float), nan=worst)
    secondary = (np.zeros(n) if tiebreak is None
                 else np.nan_to_num(sign * tiebreak.reindex(values.index).to_numpy(dtype=float), nan=worst))
    # The index is the last key: rank by position in the index sorted ascending, so the result does
    # not depend on the frame's row order.
    index_order = np.empty(n, dtype=np.int64)
    index_order[np.argsort(values.index.to_numpy(), kind="stable")] = np.arange(n)
    order = np.lexsort((-index_order, secondary, primary))  # last key is the primary one
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return pd.Series((1 + (5 * rank) // n).astype("int8"), index=values.index)


def rfm_segment(r: np.ndarray | pd.Series, fm: np.ndarray | pd.Series) -> np.ndarray:
    """The named segment of each (R, FM) score pair, by :data:`RFM_SEGMENT_RULES`."""
    r = np.asarray(r, dtype=int)
    fm = np.asarray(fm, dtype=int)
    return np.asarray(RFM_SEGMENTS, dtype=object)[SEGMENT_GRID[r - 1, fm - 1]]


def rfm_table(features: pd.DataFrame) -> pd.DataFrame:
    """RFM values, scores and segments for every customer of a feature frame.

    Parameters
    ----------
    features : pandas.DataFrame
        From :func:`analytics.features.customer_features` (or any frame with the columns named in
        :data:`RFM_RECENCY`, :data:`RFM_FREQUENCY`, :data:`RFM_MONETARY` and their tie-breaks).

    Returns
    -------
    pandas.DataFrame
        Same index; columns ``rfm_recency_months``, ``rfm_frequency``, ``rfm_monetary`` (the raw
        values), ``rfm_r``, ``rfm_f``, ``rfm_m`` (1–5), ``rfm_fm`` (1–5), ``rfm_score`` (text such as
        ``"545"``) and ``rfm_segment``.
    """
    require_columns(features, [RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values()])
    out = pd.DataFrame(index=features.index)
    out["rfm_recency_months"] = features[RFM_RECENCY].astype(float)
    out["rfm_frequency"] = features[RFM_FREQUENCY].astype(float)
    out["rfm_monetary"] = features[RFM_MONETARY].astype(float)
    out["rfm_r"] = quintile_scores(features[RFM_RECENCY], higher_is_better=False,
                                   tiebreak=-features[RFM_TIEBREAKS[RFM_RECENCY]])
    out["rfm_f"] = quintile_scores(features[RFM_FREQUENCY], tiebreak=features[RFM_TIEBREAKS[RFM_FREQUENCY]])
    out["rfm_m"] = quintile_scores(features[RFM_MONETARY], tiebreak=features[RFM_TIEBREAKS[RFM_MONETARY]])
    # Half up: (F + M + 1) // 2 == ceil((F + M) / 2).
    out["rfm_fm"] = ((out["rfm_f"].astype(int) + out["rfm_m"].astype(int) + 1) // 2).astype("int8")
    out["rfm_score"] = (out["rfm_r"].astype(str) + out["rfm_f"].astype(str) + out["rfm_m"].astype(str))
    out["rfm_segment"] = rfm_segment(out["rfm_r"], out["rfm_fm"])
    out["rfm_segment"] = out["rfm_segment"].astype(str)
    return out



def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first of ``columns`` that ``frame`` lacks."""
    for col in columns:
        if col not in frame.columns:
            raise ValueError(f"Required column {col} missing")


__all__ = ["RFM_FREQUENCY", "RFM_MONETARY", "RFM_RECENCY", "RFM_SEGMENTS", "RFM_SEGMENT_RULES", "RFM_TIEBREAKS",
           "SEGMENT_GRID", "quintile_scores", "require_columns", "rfm_segment", "rfm_table"]
