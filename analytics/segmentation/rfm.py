"""RFM: recency, frequency and monetary scores 1–5 by quintile, and the named segment of each
(R, FM) cell. The rules and the reasons for each measure are in :mod:`analytics.segmentation`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def quintile_keys(values, *, higher_is_better: bool = True, tiebreak=None) -> tuple[np.ndarray, np.ndarray]:
    """The two sort keys of :func:`quintile_scores` (larger ranks higher): the measure and its
    tie-break as floats, negated when smaller is better, missing values as ``-inf`` (worst)."""
    sign = 1.0 if higher_is_better else -1.0
    primary = np.nan_to_num(sign * np.asarray(values, dtype=float), nan=-np.inf)
    secondary = (np.zeros(len(primary)) if tiebreak is None
                 else np.nan_to_num(sign * np.asarray(tiebreak, dtype=float), nan=-np.inf))
    return primary, secondary


@dataclass(frozen=True)
class QuintileBoundaries:
    """Where the scores 2-5 start in the order of :func:`quintile_scores`: the keys of the customers
    ranked ``ceil(k * n / 5)``, k = 1..4 (those that exist), and ``n``. A customer's score is
    1 plus the number of boundaries their keys reach (:meth:`scores`), so a block of customers is
    scored exactly as the whole set would be from the boundaries alone.

    Keys are ``(primary, secondary, position)`` with ``position`` the customer's place in the
    ascending order of ids, the last tie-break (the smaller id ranks higher)."""

    primary: tuple[float, ...]
    secondary: tuple[float, ...]
    position: tuple[int, ...]
    n: int

    @classmethod
    def of(cls, primary: np.ndarray, secondary: np.ndarray) -> QuintileBoundaries:
        """The boundaries of every customer's keys, rows in ascending order of ids."""
        n = len(primary)
        order = np.lexsort((-np.arange(n), secondary, primary))  # last key is the primary one
        at = [order[r] for r in (-(-k * n // 5) for k in range(1, 5)) if r < n]
        return cls(tuple(float(primary[i]) for i in at), tuple(float(secondary[i]) for i in at),
                   tuple(int(i) for i in at), n)

    def scores(self, primary: np.ndarray, secondary: np.ndarray, position: np.ndarray) -> np.ndarray:
        """``int8`` scores 1-5 of customers with these keys (``position`` as in :meth:`of`)."""
        score = np.ones(len(primary), dtype=np.int8)
        for p, s, at in zip(self.primary, self.secondary, self.position, strict=True):
            score += (primary > p) | ((primary == p) & ((secondary > s) | ((secondary == s) & (position <= at))))
        return score


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
    primary, secondary = quintile_keys(values, higher_is_better=higher_is_better,
                                       tiebreak=None if tiebreak is None else tiebreak.reindex(values.index))
    # The index is the last key: rank by position in the index sorted ascending, so the result does
    # not depend on the frame's row order.
    by_index = np.argsort(values.index.to_numpy(), kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[by_index] = np.arange(n)
    bounds = QuintileBoundaries.of(primary[by_index], secondary[by_index])
    return pd.Series(bounds.scores(primary, secondary, position), index=values.index)


def rfm_segment(r: np.ndarray | pd.Series, fm: np.ndarray | pd.Series) -> np.ndarray:
    """The named segment of each (R, FM) score pair, by :data:`RFM_SEGMENT_RULES`."""
    r = np.asarray(r, dtype=int)
    fm = np.asarray(fm, dtype=int)
    return np.asarray(RFM_SEGMENTS, dtype=object)[SEGMENT_GRID[r - 1, fm - 1]]


# Each score: (column, measure, larger is better, tie-break, the tie-break's direction).
RFM_SCORES: tuple[tuple[str, str, bool, str, float], ...] = (
    ("rfm_r", RFM_RECENCY, False, RFM_TIEBREAKS[RFM_RECENCY], -1.0),  # more recent activity ranks higher
    ("rfm_f", RFM_FREQUENCY, True, RFM_TIEBREAKS[RFM_FREQUENCY], 1.0),
    ("rfm_m", RFM_MONETARY, True, RFM_TIEBREAKS[RFM_MONETARY], 1.0),
)
RFM_COLUMNS: tuple[str, ...] = (RFM_RECENCY, RFM_FREQUENCY, RFM_MONETARY, *RFM_TIEBREAKS.values())


def _rfm_keys(features: pd.DataFrame, measure: str, higher: bool, tiebreak: str, direction: float):
    return quintile_keys(features[measure], higher_is_better=higher,
                         tiebreak=direction * features[tiebreak].to_numpy(dtype=float))


def rfm_boundaries(features: pd.DataFrame) -> dict[str, QuintileBoundaries]:
    """The quintile boundaries of R, F and M over every customer of ``features`` (rows in ascending
    order of ``customer_id``; only :data:`RFM_COLUMNS` are read): what :func:`rfm_table` needs to
    score a block of those customers as it scores them all."""
    require_columns(features, RFM_COLUMNS)
    return {score: QuintileBoundaries.of(*_rfm_keys(features, measure, higher, tiebreak, direction))
            for score, measure, higher, tiebreak, direction in RFM_SCORES}


def rfm_table(features: pd.DataFrame, boundaries: dict[str, QuintileBoundaries] | None = None,
              positions: np.ndarray | None = None) -> pd.DataFrame:
    """RFM values, scores and segments for every customer of a feature frame.

    Parameters
    ----------
    features : pandas.DataFrame
        From :func:`analytics.features.customer_features` (or any frame with the columns named in
        :data:`RFM_RECENCY`, :data:`RFM_FREQUENCY`, :data:`RFM_MONETARY` and their tie-breaks).
    boundaries, positions : optional
        Score a block of a larger set of customers: the set's :func:`rfm_boundaries`, and each
        row's place among the set's customers in ascending order of ids. Without them the frame is
        scored on its own.

    Returns
    -------
    pandas.DataFrame
        Same index; columns ``rfm_recency_months``, ``rfm_frequency``, ``rfm_monetary`` (the raw
        values), ``rfm_r``, ``rfm_f``, ``rfm_m`` (1–5), ``rfm_fm`` (1–5), ``rfm_score`` (text such as
        ``"545"``) and ``rfm_segment``.
    """
    require_columns(features, RFM_COLUMNS)
    if (boundaries is None) != (positions is None):
        raise ValueError("boundaries and positions go together")
    out = pd.DataFrame(index=features.index)
    out["rfm_recency_months"] = features[RFM_RECENCY].astype(float)
    out["rfm_frequency"] = features[RFM_FREQUENCY].astype(float)
    out["rfm_monetary"] = features[RFM_MONETARY].astype(float)
    for score, measure, higher, tiebreak, direction in RFM_SCORES:
        if boundaries is None:
            out[score] = quintile_scores(features[measure], higher_is_better=higher,
                                         tiebreak=direction * features[tiebreak])
        else:
            keys = _rfm_keys(features, measure, higher, tiebreak, direction)
            out[score] = boundaries[score].scores(*keys, np.asarray(positions))
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


__all__ = ["RFM_COLUMNS", "RFM_FREQUENCY", "RFM_MONETARY", "RFM_RECENCY", "RFM_SCORES", "RFM_SEGMENTS",
           "RFM_SEGMENT_RULES", "RFM_TIEBREAKS", "QuintileBoundaries", "quintile_keys", "rfm_boundaries",
           "SEGMENT_GRID", "quintile_scores", "require_columns", "rfm_segment", "rfm_table"]
