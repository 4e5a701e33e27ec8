"""Segmentation: RFM scores and named segments, value tiers by AUM, behavioural clusters.

Everything here works on the feature frame of :func:`analytics.features.customer_features`
(one row per customer, indexed by ``customer_id``) and returns frames on the same index.

RFM
---
* **Recency** ``R``: ``months_since_last_txn``, months since the last customer-initiated
  transaction (fewer is better).
* **Frequency** ``F``: ``txn_count_12m``, customer-initiated transactions over 12 months.
* **Monetary** ``M``: ``aum_avg_12m``, the customer's average AUM over 12 months. AUM rather than
  transaction amount or revenue because a retail bank earns on what customers *keep* with it
  (deposit spread, wealth and fund fees scale with balances), while transaction amounts are flows
  that a salary passing through inflates; revenue would need a margin history per holding that the
  store does not keep (only current balances). The 12-month mean smooths month-end spikes.

Each is scored 1–5 by quintile of its rank (5 = best): ``score = 1 + floor(5 * rank / n)`` with
``rank`` 0 for the worst customer, so the five scores hold equal shares (±1 customer), like
``pd.qcut(x.rank(method="first"), 5)``. Monthly recency and transaction counts have many ties, and
a tie must not be split by the accident of row order, so ties are broken by a related finer measure
and then by ``customer_id`` (deterministic; the smaller id ranks higher): recency by
``txn_count_3m`` (more recent activity ranks higher), frequency by ``txn_amount_12m``, monetary by
``aum_latest``. Read R with that in mind: the store has monthly activity, so most active customers
share a recency of 0 months (89 % in the demo store), and among them R orders by how much they did
in the last quarter; an R of 2 then means "active, but less than most", not "gone".

Named segments come from ``R`` and ``FM = ceil((F + M) / 2)`` (the mean of F and M rounded half
up) by :data:`RFM_SEGMENT_RULES`, which covers each of the 25 (R, FM) cells exactly once::

    R \\ FM   1               2                    3                    4            5
    5        New             Potential loyalists  Potential loyalists  Champions    Champions
    4        Promising       Potential loyalists  Potential loyalists  Loyal        Loyal
    3        About to sleep  About to sleep       Need attention       Loyal        Loyal
    2        Hibernating     Hibernating          At risk              At risk      Can't lose
    1        Lost            Lost                 At risk              At risk      Can't lose

This is the common 11-segment R × F(M) map of RFM practice, made total (every cell named) and with
``Lost`` split off the bottom corner of ``Hibernating``.

Value tiers
-----------
By the AUM of the as-of month (``aum_latest``), with thresholds from the ``VALUE_TIER_THRESHOLDS``
setting (default 50,000 / 500,000 / 6,000,000 CNY): ``mass`` below the first, ``affluent`` from the
first up to (not including) the second, ``wealth`` up to the third, ``private`` from the third up.

Behavioural clusters
--------------------
:class:`BehaviourClusterer` (scikit-learn style): ``log1p`` of the skewed money and count
features, median imputation, standard scaling, k-means; ``k`` chosen by silhouette within
``k_range`` on a random sample, fitted on that sample, then every customer predicted. Clusters are
numbered by size (0 = largest) and named from their profile by :func:`cluster_name`.

The package
-----------
:mod:`~analytics.segmentation.rfm`, :mod:`~analytics.segmentation.tiers` and
:mod:`~analytics.segmentation.clusters` hold the rules above.
:func:`analytics.segmentation.stage.segments_stage` (the refresh's ``segments`` stage) runs them
together with the tags (:mod:`analytics.tags`) and lifecycle stages (:mod:`analytics.lifecycle`) and
writes ``customer_segments``, ``cluster_profiles`` and ``cluster_cube`` under the run id. The counts
and totals over those customers (``segment_summary``, ``segment_cube``) and ``cohort_retention``
are the ``aggregates`` stage's (:mod:`analytics.aggregates`); :mod:`~analytics.segmentation.read`
reads them back for the pages and :mod:`analytics.charts_segments`.

This module only re-exports the rules and the readers. The stage is imported from its own module:
it builds the cluster cube with :mod:`analytics.segment_explorer`, which imports
:data:`VALUE_TIERS` from here, and re-exporting it here would make the two import each other.
"""

from analytics.segmentation.clusters import (
    CLUSTER_FEATURES,
    FEATURE_LABELS,
    LOG_FEATURES,
    BehaviourClusterer,
    cluster_label,
    cluster_name,
    cluster_settings,
)
from analytics.segmentation.read import read_cluster_profiles, read_cohort_retention, read_segment_summary
from analytics.segmentation.rfm import (
    RFM_FREQUENCY,
    RFM_MONETARY,
    RFM_RECENCY,
    RFM_SEGMENT_RULES,
    RFM_SEGMENTS,
    RFM_TIEBREAKS,
    SEGMENT_GRID,
    quintile_scores,
    rfm_segment,
    rfm_table,
)
from analytics.segmentation.tiers import VALUE_TIERS, parse_number_list, value_tier_thresholds, value_tiers

__all__ = [
    "CLUSTER_FEATURES", "FEATURE_LABELS", "LOG_FEATURES", "RFM_FREQUENCY", "RFM_MONETARY",
    "RFM_RECENCY", "RFM_SEGMENTS", "RFM_SEGMENT_RULES", "RFM_TIEBREAKS", "SEGMENT_GRID", "VALUE_TIERS",
    "BehaviourClusterer", "cluster_label", "cluster_name", "cluster_settings", "parse_number_list", "quintile_scores",
    "read_cluster_profiles", "read_cohort_retention", "read_segment_summary", "rfm_segment", "rfm_table",
    "value_tier_thresholds", "value_tiers",
]
