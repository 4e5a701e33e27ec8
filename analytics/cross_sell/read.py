"""Readers of the stored cross-sell results of a run, and campaign lists checked against today's records."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from analytics.access import Viewer, min_cell_customers, release, require_rows, suppress_small_cells
from analytics.consent import live_consent_condition
from analytics.cross_sell.config import credit_min_grade, setting_positive_int
from analytics.cross_sell.errors import CrossSellError
from analytics.cross_sell.recommend import (
    CREDIT_CATEGORIES,
    EXCLUSION_REASONS,
    assessment_valid,
    credit_grade_ok,
)
from analytics.features import to_datetime
from analytics.risk import risk_number
from analytics.runs import current_run_id, get_run_metrics, read_run_table, run_clause
from analytics.schema import cross_sell_categories, customers, next_best_product, products
from analytics.store import read_frame


def read_rules(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The stored rules of a run (default: the published one), sides as frozensets, in lift order."""
    frame = read_run_table(engine, "cross_sell_rules", run_id, "rule_no")
    for col in ("antecedents", "consequents"):
        frame[col] = [frozenset(json.loads(v)) for v in frame[col]]
    return frame


def read_cooccurrence(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """The stored co-occurrence counts of a run as a symmetric category x category frame."""
    where, params = run_clause("cross_sell_cooccurrence", run_id)
    frame = read_frame(engine, f"SELECT category_a, category_b, customers FROM cross_sell_cooccurrence "
                               f"WHERE {where}", params)
    names = sorted(set(frame["category_a"].astype(str)) | set(frame["category_b"].astype(str)))
    out = pd.DataFrame(0, index=names, columns=names, dtype=np.int64)
    for a, b, c in zip(frame["category_a"].astype(str), frame["category_b"].astype(str), frame["customers"],
                       strict=True):
        out.loc[a, b] = out.loc[b, a] = int(c)
    return out


def read_categories(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Per category of a run: holders, the guard funnel and the propensity model's report."""
    return read_run_table(engine, "cross_sell_categories", run_id, "category")


def read_opportunities(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Eligible opportunities by product of a run, with the product's name and risk level."""
    where, params = run_clause("cross_sell_opportunities", run_id)
    return read_frame(engine, f"""
        SELECT cross_sell_opportunities.*, p.name AS product_name, p.risk_level
        FROM cross_sell_opportunities LEFT JOIN products p ON p.product_id = cross_sell_opportunities.product_id
        WHERE {where} ORDER BY expected_value_total DESC, category, cross_sell_opportunities.product_id
    """, params)


def scope_offers(engine: Engine, run_id: int | None = None, *, viewer: Viewer) -> tuple[dict, pd.DataFrame]:
    """The cross-sell headline and next-best offers by product of ``viewer``'s scope (aggregates).

    Returns
    -------
    (dict, pandas.DataFrame)
        ``customers_scored`` (the closed customers are not), ``customers_with_offer`` and
        ``next_best_expected_value_total`` (for
        a bank-wide viewer the run's ``cross_sell.*`` metrics of those names); and one row per
        product that is some customer's next-best offer: ``category``, ``product_id``,
        ``product_name``, ``risk_level``, ``next_best_customers`` and ``expected_value_total`` (the
        expected margin of those next-best offers), largest first.
    """
    where, params = run_clause("x", run_id)
    scope, scope_params = viewer.scope_sql("c")
    params.update(scope_params)
    joins = f"""FROM cross_sell_customer x JOIN customers c ON c.customer_id = x.customer_id
        WHERE {where} AND {scope}"""
    head = read_frame(engine, f"""
        SELECT SUM(CASE WHEN x.no_offer_reason = 'closed' THEN 0 ELSE 1 END) AS customers_scored,
               COUNT(x.next_best_product_id) AS customers_with_offer,
               COALESCE(SUM(x.next_best_expected_value), 0) AS next_best_expected_value_total {joins}""", params)
    by_product = read_frame(engine, f"""
        SELECT x.next_best_category AS category, x.next_best_product_id AS product_id,
               p.name AS product_name, p.risk_level, COUNT(*) AS next_best_customers,
               SUM(x.next_best_expected_value) AS expected_value_total
        FROM cross_sell_customer x JOIN customers c ON c.customer_id = x.customer_id
        LEFT JOIN products p ON p.product_id = x.next_best_product_id
        WHERE {where} AND {scope} AND x.next_best_product_id IS NOT NULL
        GROUP BY x.next_best_category, x.next_best_product_id, p.name, p.risk_level
        ORDER BY expected_value_total DESC, category, product_id""", params)
    figures = {k: float(v) if pd.notna(v) else 0.0 for k, v in head.iloc[0].items()}
    return figures, by_product


def first_offer_mix(engine: Engine, run_id: int | None = None, *, viewer: Viewer) -> pd.DataFrame:
    """The mix of first offers (next-best products) by category, over ``viewer``'s scope (aggregates).

    Returns
    -------
    pandas.DataFrame
        One row per category that is some in-scope customer's next-best offer: ``category``,
        ``customers`` (whose first offer is of it), ``up_sell_customers`` (of them, those whose first
        offer is an up-sell), ``share`` (of the in-scope customers with an offer) and
        ``expected_value_total`` (CNY), most customers first (ties: category). For an
        aggregate-only viewer a category of fewer than ``MIN_CELL_CUSTOMERS`` customers is hidden
        (its count, up-sell count, share and sum missing, ``customers_suppressed`` True) by the
        small-cell rule, and so is an up-sell count below it (``up_sell_customers_suppressed``; the
        category's own count stays, it does not give the hidden one away without its cross-sell part).
    """
    where, params = run_clause("x", run_id)
    scope, scope_params = viewer.scope_sql("c")
    params.update(scope_params)
    frame = read_frame(engine, f"""
        SELECT x.next_best_category AS category, COUNT(*) AS customers,
               SUM(CASE WHEN x.next_best_offer_kind = 'up_sell' THEN 1 ELSE 0 END) AS up_sell_customers,
               SUM(x.next_best_expected_value) AS expected_value_total
        FROM cross_sell_customer x JOIN customers c ON c.customer_id = x.customer_id
        WHERE {where} AND {scope} AND x.next_best_category IS NOT NULL
        GROUP BY x.next_best_category""", params)
    frame["customers"] = pd.to_numeric(frame["customers"]).astype(np.int64)
    frame["up_sell_customers"] = pd.to_numeric(frame["up_sell_customers"]).fillna(0).astype(np.int64)
    frame["expected_value_total"] = pd.to_numeric(frame["expected_value_total"]).astype(float)
    frame = frame.sort_values(["customers", "category"], ascending=[False, True], kind="stable")
    total = int(frame["customers"].sum())
    frame["share"] = frame["customers"] / total if total else np.nan
    frame = frame[["category", "customers", "up_sell_customers", "share",
                   "expected_value_total"]].reset_index(drop=True)
    if viewer.aggregate_only:
        frame = suppress_small_cells(frame, count="customers", sums=("share", "expected_value_total",
                                                                     "up_sell_customers"))
        # An up-sell count under the cell size is hidden on its own; each category is its own group
        # (its cross-sell part is never shown, so the hidden count cannot be worked back).
        up = pd.to_numeric(frame["up_sell_customers"], errors="coerce")
        k = min_cell_customers()
        hide = (up > 0) & (up < k)
        frame["up_sell_customers"] = up.astype(float).where(~hide)
        frame["up_sell_customers_suppressed"] = hide.to_numpy(dtype=bool) | frame["customers_suppressed"].to_numpy(dtype=bool)
    else:
        frame["customers_suppressed"] = False
        frame["up_sell_customers_suppressed"] = False
    return frame


def read_customer_offers(engine: Engine, run_id: int | None, customer_id: str) -> dict | None:
    """One customer's row of ``cross_sell_customer`` in a run (None: the published one).

    Returns
    -------
    dict or None
        ``customer_id``, ``next_best_category``, ``next_best_product_id``, ``next_best_product_name``,
        ``next_best_expected_value``, ``next_best_offer_kind`` (``cross_sell`` or ``up_sell``),
        ``no_offer_reason`` and ``propensities`` (a dict
        ``{category: probability}``, highest first); None when the run has no row for the customer.
    """
    where, params = run_clause("cross_sell_customer", run_id)
    frame = read_frame(engine, f"""
        SELECT cross_sell_customer.customer_id, next_best_category, next_best_product_id,
               p.name AS next_best_product_name, next_best_expected_value, next_best_offer_kind, no_offer_reason,
               propensities
        FROM cross_sell_customer
        LEFT JOIN products p ON p.product_id = cross_sell_customer.next_best_product_id
        WHERE {where} AND cross_sell_customer.customer_id = :customer_id
    """, {**params, "customer_id": str(customer_id)})
    if frame.empty:
        return None
    row = {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in frame.iloc[0].items()}
    if row["next_best_expected_value"] is not None:
        row["next_best_expected_value"] = float(row["next_best_expected_value"])
    probabilities = json.loads(row["propensities"] or "{}")
    row["propensities"] = dict(sorted(probabilities.items(), key=lambda kv: (-kv[1], kv[0])))
    return row


def campaign_list(engine: Engine, run_id: int | None, category: str, *, viewer: Viewer, limit: int = 1000
                  ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Customers to contact about ``category``, best expected value first, and who was left out:
    the customers in ``viewer``'s scope, released for the viewer (masked, balances banded).

    The list draws on the run's stored offers of the category to customers who had marketing
    consent at the run (the best ``CROSS_SELL_CAMPAIGN_SIZE`` of them, so a list is never longer),
    then checks each again against the customer's *current* record: a live marketing consent in
    ``consents`` (a withdrawal since the run takes effect now), tolerance still at or above the
    product's risk level, assessment still within ``RISK_ASSESSMENT_VALID_DAYS`` of the run's
    as-of day. A scoped viewer's exclusion counts are its own customers': the run's funnel counted
    per owner (``cross_sell_funnel_cells``) over its scope, plus its stored offers that fail now.

    Parameters
    ----------
    engine : sqlalchemy.Engine
    run_id : int or None
        The run; None for the published one.
    category : str
        A product category.
    limit : int
        Most rows returned.

    Returns
    -------
    (pandas.DataFrame, dict)
        The list: ``customer_id``, ``branch_id``, ``relationship_manager``, ``category``,
        ``product_id``, ``product_name``, ``risk_level``, ``offer_kind`` (``cross_sell`` or
        ``up_sell``; a run before up-sell: ``cross_sell``), ``rank``, ``propensity``,
        ``expected_value``. And the customers excluded, by reason: ``expired_assessment``,
        ``suitability``, ``credit_grade``, ``credit_complaint`` (credit categories only) and
        ``consent`` (the run's funnel counts plus the stored offers that fail against the current
        record: a grade now below ``CREDIT_OFFER_MIN_GRADE`` counts as ``credit_grade``), over all
        non-holders of the category at the run.
    """
    require_rows(viewer)
    if isinstance(limit, bool) or int(limit) != limit or limit < 0:
        raise CrossSellError(f"limit must be a non-negative whole number, got {limit!r}")
    if run_id is None:
        run_id = current_run_id(engine)
        if run_id is None:
            return pd.DataFrame(), dict.fromkeys(EXCLUSION_REASONS, 0)
    funnel = read_frame(engine, select(cross_sell_categories).where(cross_sell_categories.c.run_id == run_id)
                        .where(cross_sell_categories.c.category == category))
    exclusions = dict.fromkeys(EXCLUSION_REASONS, 0)
    if not funnel.empty:
        row = funnel.iloc[0]
        if viewer.scope is not None:  # the funnel of its own customers, summed over its owners' cells
            cells = read_run_table(engine, "cross_sell_funnel_cells", run_id, "branch_id, relationship_manager",
                                   where="category = :category", params={"category": category})
            row = cells[viewer.in_scope(cells["branch_id"], cells["relationship_manager"])].sum(numeric_only=True)
        exclusions = {"expired_assessment": int(row.get("excluded_expired_assessment", 0)),
                      "suitability": int(row.get("excluded_suitability", 0)),
                      "credit_grade": int(row.get("excluded_credit_grade", 0) or 0),
                      "credit_complaint": int(row.get("excluded_credit_complaint", 0) or 0),
                      "consent": int(row.get("excluded_no_consent", 0))}
    meta = get_run_metrics(engine, run_id)
    as_of = pd.Timestamp(str(meta.get("cross_sell.as_of") or date.today().isoformat()))
    # Every still-stored consenting offer of the category is checked (not only the first `limit`), so
    # the exclusion counts do not depend on the length asked for.
    pool = meta.get("cross_sell.campaign_size")
    n, c, p = next_best_product.c, customers.c, products.c
    stmt = (select(n.customer_id, c.branch_id, c.relationship_manager, n.category, n.product_id,
                   p.name.label("product_name"), p.risk_level, n.offer_kind, n.rank, n.propensity,
                   n.expected_value,
                   live_consent_condition(n.customer_id, "marketing").label("consent_now"),
                   c.risk_tolerance.label("tolerance_now"), c.credit_grade.label("grade_now"),
                   c.risk_assessed_at.label("assessed_now"))
            .select_from(next_best_product.outerjoin(customers, c.customer_id == n.customer_id)
                         .outerjoin(products, p.product_id == n.product_id))
            .where(n.run_id == run_id, n.category == category, n.marketing_consent.is_(True),
                   viewer.scope_condition(customers))
            .order_by(n.expected_value.desc(), n.customer_id))
    if pool is not None:
        stmt = stmt.limit(int(pool))
    frame = read_frame(engine, stmt)
    valid_days = setting_positive_int("RISK_ASSESSMENT_VALID_DAYS")
    age = (as_of - to_datetime(frame["assessed_now"])).dt.days.astype(float)
    expired_now = ~assessment_valid(frame["tolerance_now"], age, valid_days)
    unsuitable_now = ~expired_now & (risk_number(frame["risk_level"], "R") > risk_number(frame["tolerance_now"], "C"))
    grade_now = (~expired_now & ~unsuitable_now & (category in CREDIT_CATEGORIES)
                 & ~credit_grade_ok(frame["grade_now"], credit_min_grade()))
    consent_now = frame["consent_now"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    no_consent_now = ~expired_now & ~unsuitable_now & ~grade_now & ~consent_now
    exclusions["expired_assessment"] += int(expired_now.sum())
    exclusions["suitability"] += int(unsuitable_now.sum())
    exclusions["credit_grade"] += int(grade_now.sum())
    exclusions["consent"] += int(no_consent_now.sum())
    ok = ~(expired_now | unsuitable_now | grade_now | no_consent_now)
    frame["offer_kind"] = frame["offer_kind"].astype(object).where(frame["offer_kind"].notna(), "cross_sell")
    out = frame.loc[ok, ["customer_id", "branch_id", "relationship_manager", "category", "product_id", "product_name",
                         "risk_level", "offer_kind", "rank", "propensity", "expected_value"]].head(int(limit))
    return release(out.reset_index(drop=True), viewer), exclusions


__all__ = ["campaign_list", "first_offer_mix", "read_categories", "read_cooccurrence", "read_customer_offers", "read_opportunities",
           "read_rules", "scope_offers"]
