"""One catalog of the headline figures: each is defined once, with its label and its definition in
both languages (``metric.<key>`` and ``metric_help.<key>`` in ``data/i18n.yaml``) and its unit.

Every page and the KPI wall name a headline figure through this catalog, and show its definition
as the figure's help text. Two figures that are computed differently have different keys, and so
different labels: "Customers on file" (every record, whatever its status) is not "Customers with
a balance" (the KPI wall's monthly series). ``tests/test_i18n.py`` checks that no two metrics share
a label, and ``tests/app/test_metric_labels.py`` that one label shows one value on every page.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics.i18n import tr

UNITS = ("count", "amount", "rate", "ratio", "decimal")


@dataclass(frozen=True)
class Metric:
    """A headline figure: its key (``metric.<key>`` is its label) and unit (one of :data:`UNITS`)."""

    key: str
    unit: str


METRICS: dict[str, Metric] = {m.key: m for m in (
    # The store at the run (Overview)
    Metric("customers_on_file", "count"),
    Metric("status_active", "count"),
    Metric("status_dormant", "count"),
    Metric("status_closed", "count"),
    Metric("aum_total", "amount"),
    Metric("deposits_total", "amount"),
    Metric("loans_total", "amount"),
    Metric("products_total", "count"),
    # Monthly series (KPI wall)
    Metric("customers_with_balance", "count"),
    Metric("customers_transacting", "count"),
    Metric("new_customers", "count"),
    Metric("churned_customers", "count"),
    # Value (Lifecycle, KPI wall)
    Metric("customers_selected", "count"),
    Metric("customers_tagged", "count"),
    Metric("clv_total", "amount"),
    Metric("clv_average", "amount"),
    # Churn
    Metric("churn_rate", "rate"),
    Metric("expected_churners", "count"),
    Metric("value_at_risk", "amount"),
    Metric("holdout_roc_auc", "decimal"),
    Metric("holdout_pr_auc", "decimal"),
    Metric("holdout_brier", "decimal"),
    Metric("top_decile_lift", "ratio"),
    Metric("top_decile_capture", "rate"),
    # Cross-sell
    Metric("customers_scored", "count"),
    Metric("customers_with_offer", "count"),
    Metric("cross_sell_potential", "amount"),
    Metric("association_rules", "count"),
    # Risk
    Metric("customers_risk_checked", "count"),
    Metric("suitability_mismatches", "count"),
    Metric("assessments_expired_or_missing", "count"),
    Metric("balance_drops", "count"),
    Metric("risk_mix", "rate"),
    # Campaigns: the plan, and a campaign's measured results
    Metric("campaign_audience", "count"),
    Metric("campaign_eligible", "count"),
    Metric("campaign_arms", "count"),
    Metric("campaign_expected_conversions", "count"),
    Metric("campaign_treatment_conversion", "rate"),
    Metric("campaign_control_conversion", "rate"),
    Metric("campaign_uplift", "rate"),
    Metric("campaign_incremental_margin", "amount"),
    # Worklist (the alerts the filters keep)
    Metric("alerts_shown", "count"),
    Metric("alerts_overdue", "count"),
    Metric("alerts_new", "count"),
    # Data quality
    Metric("dq_score", "rate"),
    Metric("dq_completeness", "rate"),
    Metric("dq_accuracy", "rate"),
    Metric("dq_freshness", "rate"),
)}


def _metric(key: str) -> Metric:
    if key not in METRICS:
        raise KeyError(f"{key!r} is not in the metric catalog (analytics.metrics.METRICS)")
    return METRICS[key]


def label(key: str, lang: str, **fields) -> str:
    """The figure's name in ``lang`` (fields such as ``years`` filled in)."""
    return tr(f"metric.{_metric(key).key}", lang, **fields)


def definition(key: str, lang: str, **fields) -> str:
    """How the figure is computed, in ``lang``: the help text shown beside it."""
    return tr(f"metric_help.{_metric(key).key}", lang, **fields)


__all__ = ["METRICS", "UNITS", "Metric", "definition", "label"]
