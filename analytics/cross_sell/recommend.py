"""Cross-sell: next-best products with their expected value, under the guards.

Next-best product and expected value
------------------------------------
For a customer and a category the offered product is the category's product with the highest
``annual_margin`` among those the customer may hold (risk level not above the tolerance; ties: the
lower risk level, then the product id). Its expected value is the margin expected over the
propensity horizon, not a lifetime balance's margin::

    expected_value = propensity * annual_margin * expected_balance * horizon_months / 12

``propensity`` is the probability of acquiring the category within ``CROSS_SELL_HORIZON_MONTHS``;
``annual_margin`` is a yearly rate on the balance, so over the horizon it earns ``horizon_months / 12``
of it. (Before, the horizon factor was missing and large loan balances outweighed everything else.)

where ``expected_balance`` is the median balance of the category (summed over a holder's open
holdings of it) among current holders in the customer's value tier (by AUM, the rule of
:func:`analytics.segmentation.value_tiers`); a tier without holders uses the median of all holders,
a category without holders 0. The customer's offers are ranked by expected value (ties: category
name); rank 1 is the *next-best product*.

Guards (never relaxed)
----------------------
Every non-holder of a category is a candidate; the first rule it fails, in this order, excludes it:

1. ``expired_assessment``: the customer's risk assessment is missing (no tolerance or no assessment
   date) or older than ``RISK_ASSESSMENT_VALID_DAYS`` days at the end of the run's month. Such a
   customer gets **no recommendation at all**, not even an R1 deposit: the issue's rule is that a
   customer whose assessment has expired is not recommended to, and re-assessment comes first.
2. ``suitability``: no product of the category has a risk level at or below the customer's
   tolerance (``R`` number > ``C`` number for all of them). A product above the tolerance is never
   offered.
3. ``credit_grade`` (credit products only: :data:`CREDIT_CATEGORIES`): the customer's credit grade
   is below ``CREDIT_OFFER_MIN_GRADE`` (AAA best .. CCC) or missing. No bank markets credit to its
   weakest borrowers.
4. ``credit_complaint`` (credit products only): a complaint about credit in the last
   :data:`CREDIT_COMPLAINT_MONTHS` months (a ``complaint`` contact whose category is one of
   :data:`CREDIT_COMPLAINT_CATEGORIES`; the stage reads them).
5. ``consent``: the customer has not agreed to marketing. They keep their next-best product (an
   adviser may discuss it when the customer comes in) but are never on a campaign list.

Up-sell
-------
An up-sell (向上销售) offer stays within what the customer already holds; it is ranked with the
cross-sell offers by the same expected value and passes the same guards, and is stored with
``offer_kind = 'up_sell'`` (else ``'cross_sell'``):

* **A better tier of a held category** (cards: classic -> gold -> platinum, ``products.tier_rank``):
  a holder whose highest held tier is below the category's top one is offered the next tier's
  product within their tolerance (lowest rank above the held one; ties: the higher margin, then the
  product id). Its propensity is the probability of moving up within the horizon
  (``upgrade_propensity``; the stage uses the observed rate, see
  :func:`analytics.cross_sell.stage.upgrade_rates`) and its expected value is
  ``propensity * annual_margin * expected_balance * horizon_months / 12`` with the category's
  expected balance, as for cross-sell. These candidates are counted apart in the funnel
  (``upsell_candidates``, ``upsell_eligible``); the funnel's other columns count non-holders.
* **Up a ladder of categories** (:data:`UPSELL_LADDERS`): wealth management offered to a customer
  holding a time deposit is an up-sell of the deposit. It is the same offer as the cross-sell one
  (the highest-margin wealth product at or below the tolerance), only labelled up-sell.
* **A rising AUM into the next value tier's products**: a customer whose AUM grew by at least
  :data:`RISING_AUM_MIN_CHANGE` over 3 months and has reached :data:`RISING_AUM_REACH` of the next
  value tier's threshold (:func:`rising_to_next_tier`) is offered the next tier's products as an
  up-sell. A tier's products are the asset categories (money to place, never a loan) its customers
  hold markedly more than the tier below (:func:`tier_categories`: a holder rate of at least :data:`TIER_CATEGORY_MIN_RATE` and
  :data:`TIER_CATEGORY_LIFT` times the lower tier's). Again the offer is the cross-sell one, with
  the expected balance of the customer's *current* tier (the move is not yet made, so the expected
  value is not raised by it), only labelled up-sell.

Closed customers are not candidates at all. :func:`~analytics.cross_sell.read.campaign_list`
checks the guards again against the customer's *current* record (a consent withdrawn or a tolerance
lowered after the run removes the customer) and reports every exclusion by reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analytics.cross_sell.errors import CrossSellError
from analytics.risk import risk_number
from analytics.schema import CREDIT_GRADES, RISK_TOLERANCES
from analytics.segmentation import VALUE_TIERS

EXCLUSION_REASONS = ("expired_assessment", "suitability", "credit_grade", "credit_complaint", "consent")
# The product categories that lend: offered only to a good enough credit grade without a recent
# credit complaint.
CREDIT_CATEGORIES = ("consumer_loan", "credit_card", "mortgage")
# Complaint categories about credit, and how far back one blocks a credit offer. The demo's complaint
# categories (fees, service, app, wait_time, product) name no credit topic, so on the demo store this
# guard excludes nobody; a bank's own contact categories should be mapped to these names on import.
CREDIT_COMPLAINT_CATEGORIES = ("credit", "credit_card", "consumer_loan", "loan", "mortgage")
CREDIT_COMPLAINT_MONTHS = 6
OFFER_KINDS = ("cross_sell", "up_sell")
# Category offered -> the held categories it up-sells (a customer holding one of them).
UPSELL_LADDERS = {"wealth_management": ("time_deposit",)}
# A rising AUM (see the module docstring): grown by at least 10 % over 3 months, and at least 80 %
# of the way to the next value tier's threshold.
RISING_AUM_MIN_CHANGE = 0.10
RISING_AUM_REACH = 0.80
# A value tier's products: held by at least 10 % of the tier, and 1.5 times as often as in the tier below.
TIER_CATEGORY_MIN_RATE = 0.10
TIER_CATEGORY_LIFT = 1.5


def rising_to_next_tier(aum_latest, aum_change_pct_3m, value_tier, thresholds) -> np.ndarray:
    """True where a customer's AUM is rising into the next value tier: it grew by at least
    :data:`RISING_AUM_MIN_CHANGE` over 3 months and is at least :data:`RISING_AUM_REACH` of the
    threshold of the tier above the customer's (``thresholds``: the three of
    :func:`analytics.segmentation.value_tier_thresholds`). The top tier has no tier above it; a
    missing AUM or change is not rising."""
    aum = pd.to_numeric(pd.Series(aum_latest), errors="coerce").to_numpy(dtype=float)
    change = pd.to_numeric(pd.Series(aum_change_pct_3m), errors="coerce").to_numpy(dtype=float)
    tier_pos = {t: i for i, t in enumerate(VALUE_TIERS)}
    tier = pd.Series(value_tier, dtype=object).map(tier_pos).to_numpy(dtype=float)
    below_top = ~np.isnan(tier) & (tier < len(VALUE_TIERS) - 1)
    bounds = np.asarray(list(thresholds) + [np.inf], dtype=float)
    next_threshold = bounds[np.where(below_top, tier, len(bounds) - 1).astype(np.int64)]
    with np.errstate(invalid="ignore"):
        return (below_top & (change >= RISING_AUM_MIN_CHANGE) & (aum >= RISING_AUM_REACH * next_threshold)
                & (aum < next_threshold))


class TierShares:
    """The holder rates :func:`tier_categories` reads, added up over blocks of customers: each
    block's customers x categories True/False frame and value tiers go to :meth:`add`, and
    :meth:`categories` gives what one call over every customer gives (the rates are counts over
    counts, so the split does not change them)."""

    def __init__(self, categories) -> None:
        self.columns = [str(c) for c in categories]
        self._holders = pd.DataFrame(0, index=pd.Index([], dtype=object), columns=self.columns, dtype=np.int64)
        self._customers = pd.Series(0, index=pd.Index([], dtype=object), dtype=np.int64)

    def add(self, held: pd.DataFrame, value_tier: pd.Series) -> TierShares:
        vt = value_tier.reindex(held.index).astype(object).to_numpy()
        counts = held.reindex(columns=self.columns, fill_value=False).astype(np.int64).groupby(vt)
        self._holders = self._holders.add(counts.sum(), fill_value=0).astype(np.int64)
        self._customers = self._customers.add(counts.size(), fill_value=0).astype(np.int64)
        return self

    def categories(self) -> dict[str, tuple[str, ...]]:
        rates = self._holders.div(self._customers, axis=0)
        out: dict[str, tuple[str, ...]] = {}
        for lower, upper in zip(VALUE_TIERS, VALUE_TIERS[1:], strict=False):
            if lower not in rates.index or upper not in rates.index:
                out[upper] = ()
                continue
            low, up = rates.loc[lower], rates.loc[upper]
            out[upper] = tuple(c for c in self.columns
                               if up[c] >= TIER_CATEGORY_MIN_RATE and up[c] >= TIER_CATEGORY_LIFT * low[c])
        return out


def tier_categories(held: pd.DataFrame, value_tier: pd.Series) -> dict[str, tuple[str, ...]]:
    """Each value tier above the lowest -> its products: the categories (columns of ``held``, a
    customers x categories True/False frame) that at least :data:`TIER_CATEGORY_MIN_RATE` of the
    tier's customers hold, and at least :data:`TIER_CATEGORY_LIFT` times the share of the tier
    below (a category nobody in the tier below holds counts once the rate is met). A tier or the
    tier below it without customers has none. (:class:`TierShares` over one block.)"""
    return TierShares(held.columns).add(held, value_tier).categories()


def credit_grade_ok(credit_grade, min_grade: str) -> np.ndarray:
    """True where the grade is at or above ``min_grade`` (AAA best); a missing or unknown grade is not."""
    order = {g: i for i, g in enumerate(CREDIT_GRADES)}
    limit = order[min_grade]
    ranks = pd.Series(credit_grade, dtype=object).map(order)
    return (ranks.notna() & (ranks.fillna(len(order)) <= limit)).to_numpy(dtype=bool)


def assessment_valid(risk_tolerance, assessment_age_days, valid_days: int) -> np.ndarray:
    """True where a tolerance is recorded and the assessment is at most ``valid_days`` days old.

    Missing tolerance or assessment date (age NaN) is not valid; a date after the reference day
    (negative age) counts as valid: it is the data-quality rules' business, not a reason to withhold
    the customer's own tolerance.
    """
    age = np.asarray(assessment_age_days, dtype=float)
    return (risk_number(risk_tolerance, "C") > 0) & ~np.isnan(age) & (np.nan_to_num(age, nan=np.inf) <= valid_days)


def best_products(products_frame: pd.DataFrame, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The product offered per category and tolerance: highest margin within the tolerance.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``index[k, c]`` the row of ``products_frame`` offered for category ``k`` to tolerance
        ``c`` (0 = unknown, 1..5 = C1..C5), -1 when none is allowed; ``margin[k, c]`` its margin.
    """
    risk = risk_number(products_frame["risk_level"], "R")
    margin = products_frame["annual_margin"].astype(float).to_numpy()
    cats = products_frame["category"].astype(str).to_numpy()
    pids = products_frame["product_id"].astype(str).to_numpy()
    index = np.full((len(categories), len(RISK_TOLERANCES) + 1), -1, dtype=np.int64)
    for k, category in enumerate(categories):
        rows = [r for r in np.flatnonzero(cats == category) if risk[r] > 0]
        # Highest margin first; ties: the lower risk level, then the product id.
        rows.sort(key=lambda r: (-margin[r], risk[r], pids[r]))
        for tol in range(1, len(RISK_TOLERANCES) + 1):
            allowed = [r for r in rows if risk[r] <= tol]
            if allowed:
                index[k, tol] = allowed[0]
    margins = np.where(index >= 0, margin[np.maximum(index, 0)] if len(margin) else 0.0, 0.0)
    return index, margins


class ExpectedBalances:
    """The medians :func:`expected_balances` takes, gathered over blocks of customers: each block's
    balances (``customer_id``, ``category``, ``balance``) and its customers' value tiers go to
    :meth:`add`, which keeps the balances alone (8 bytes a holder and category, no ids), and
    :meth:`table` and :meth:`overall` give what one call over every customer gives (a median does
    not depend on the order of its values)."""

    def __init__(self, categories) -> None:
        self.categories = list(categories)
        self._overall: dict[str, list[np.ndarray]] = {}
        self._by_tier: dict[tuple[str, str], list[np.ndarray]] = {}

    def add(self, balances: pd.DataFrame, tiers: pd.Series) -> ExpectedBalances:
        if balances.empty:
            return self
        frame = balances.assign(value_tier=balances["customer_id"].map(tiers.astype(object)))
        for category, values in frame.groupby("category")["balance"]:
            self._overall.setdefault(category, []).append(values.to_numpy(dtype=float))
        for key, values in frame.dropna(subset=["value_tier"]).groupby(["value_tier", "category"])["balance"]:
            self._by_tier.setdefault(key, []).append(values.to_numpy(dtype=float))
        return self

    def overall(self) -> pd.Series:
        """The median balance of each category's holders (the categories somebody holds)."""
        return pd.Series({c: float(np.median(np.concatenate(v))) for c, v in sorted(self._overall.items())},
                         dtype=float, name="balance").rename_axis("category")

    def table(self) -> pd.DataFrame:
        out = pd.DataFrame(0.0, index=list(VALUE_TIERS), columns=self.categories)
        overall = self.overall()
        for category in self.categories:
            for tier in VALUE_TIERS:
                if (tier, category) in self._by_tier:
                    out.loc[tier, category] = float(np.median(np.concatenate(self._by_tier[(tier, category)])))
                elif category in overall.index:
                    out.loc[tier, category] = float(overall[category])
        return out


def expected_balances(balances: pd.DataFrame, tiers: pd.Series, categories: list[str]) -> pd.DataFrame:
    """Median category balance among holders per value tier (tier x category), with fallbacks.

    A tier without holders of a category takes the median over all its holders; a category nobody
    holds gets 0. Holders whose customer is missing from ``tiers`` count in the all-tier median only.
    (:class:`ExpectedBalances` over one block.)
    """
    return ExpectedBalances(categories).add(balances, tiers).table()


@dataclass
class Recommendations:
    """What :func:`recommend` returns.

    Attributes
    ----------
    offers : pandas.DataFrame
        Stored offers: ``customer_id``, ``category``, ``product_id``, ``rank``, ``propensity``,
        ``expected_value``, ``marketing_consent``; each customer's ``top_n`` best plus each category's
        ``campaign_size`` best consenting customers. Every row passes the guards.
    funnel : pandas.DataFrame
        Per category: ``non_holders``, ``excluded_expired_assessment``, ``excluded_suitability``,
        ``excluded_credit_grade``, ``excluded_credit_complaint``, ``eligible``, ``excluded_no_consent``, ``campaign_pool``, ``expected_value_total``,
        ``mean_propensity``.
    opportunities : pandas.DataFrame
        Per (category, product_id) offered: ``customers``, ``consenting_customers``,
        ``next_best_customers``, ``expected_value_total``, ``consenting_expected_value_total``,
        ``mean_propensity``.
    no_offer : dict
        Customers without any offer, by reason: ``holds_everything``, ``expired_assessment``,
        ``suitability`` (nothing allowed among what they lack), ``credit_grade`` and
        ``credit_complaint`` (what they lack and may hold is credit, refused by that guard).
    customers : pandas.DataFrame or None
        One row per customer (the index of the propensity frame): ``next_best_category``,
        ``next_best_product_id``, ``next_best_expected_value`` (the rank-1 offer; missing when none)
        and ``no_offer_reason`` (missing when there is an offer; else a key of ``no_offer``).
    funnel_cells : pandas.DataFrame or None
        With ``owners``: the funnel counts per category and owner (``category``, ``branch_id``,
        ``relationship_manager``, ``non_holders``, ``excluded_expired_assessment``,
        ``excluded_suitability``, ``eligible``, ``excluded_no_consent``); summed over the owners
        they are ``funnel``'s. A scoped user's campaign exclusions are summed from them.
    """

    offers: pd.DataFrame
    funnel: pd.DataFrame
    opportunities: pd.DataFrame
    no_offer: dict
    customers: pd.DataFrame | None = None
    funnel_cells: pd.DataFrame | None = None


def recommend(propensity: pd.DataFrame, customer_frame: pd.DataFrame, products_frame: pd.DataFrame,
              balance_by_tier: pd.DataFrame, *, top_n: int = 3, campaign_size: int = 20_000,
              owners: pd.DataFrame | None = None, horizon_months: int = 12,
              credit_min_grade: str = "BBB", held: pd.DataFrame | None = None,
              held_tier: pd.DataFrame | None = None,
              upgrade_propensity: pd.DataFrame | None = None,
              rising: pd.Series | None = None,
              next_tier_products: dict[str, tuple[str, ...]] | None = None) -> Recommendations:
    """Next-best products with expected value, under the guards of the module docstring.

    Parameters
    ----------
    propensity : pandas.DataFrame
        Customers x categories, P(acquire); NaN where the customer holds the category (or is not
        a candidate for it).
    customer_frame : pandas.DataFrame
        Same index: ``risk_tolerance`` (C1..C5 or missing), ``assessment_valid`` (bool),
        ``marketing_consent`` (bool) and ``value_tier``; optionally ``credit_grade`` (AAA..CCC; a
        frame without it grades nobody eligible for credit) and ``credit_complaint`` (bool, a
        complaint about credit in the last :data:`CREDIT_COMPLAINT_MONTHS` months; default False).
    products_frame : pandas.DataFrame
        ``product_id``, ``category``, ``risk_level`` (R1..R5) and ``annual_margin``.
    balance_by_tier : pandas.DataFrame
        Value tier x category expected balance (:func:`expected_balances`).
    top_n : int
        Offers kept per customer.
    campaign_size : int
        Consenting customers kept per category, best expected value first, for campaign lists.
    owners : pandas.DataFrame, optional
        ``branch_id`` and ``relationship_manager`` by customer: count the funnel per owner too.
    horizon_months : int
        The propensity horizon: the expected value is the margin over this many months.
    credit_min_grade : str
        Lowest credit grade offered a credit product (``CREDIT_OFFER_MIN_GRADE``).
    held : pandas.DataFrame, optional
        Customers x categories, True where the customer holds the category: labels the ladder
        up-sells (:data:`UPSELL_LADDERS`). Without it no offer is a ladder up-sell.
    held_tier : pandas.DataFrame, optional
        Customers x categories, the highest ``tier_rank`` the customer holds (NaN: none or untiered).
    upgrade_propensity : pandas.DataFrame, optional
        Customers x categories, P(moving to a better tier within the horizon) for tier up-sell
        candidates (NaN elsewhere). Both it and ``held_tier`` are needed for tier up-sells.
    rising : pandas.Series, optional
        True where the customer's AUM is rising into the next value tier
        (:func:`rising_to_next_tier`); missing customers are not.
    next_tier_products : dict, optional
        Value tier -> its products (:func:`tier_categories`). With ``rising``, an offer of a
        category of the tier above the customer's is labelled up-sell.

    Returns
    -------
    Recommendations
    """
    for col in ("risk_tolerance", "assessment_valid", "marketing_consent", "value_tier"):
        if col not in customer_frame.columns:
            raise CrossSellError(f"Required column {col} missing")
    categories = [str(c) for c in propensity.columns]
    cust = customer_frame.reindex(propensity.index)
    n, k_count = propensity.shape
    p = propensity.to_numpy(dtype=float)
    tol = risk_number(cust["risk_tolerance"], "C")
    valid = cust["assessment_valid"].fillna(False).to_numpy(dtype=bool) & (tol > 0)
    consent = cust["marketing_consent"].fillna(False).to_numpy(dtype=bool)
    tier_pos = {t: i for i, t in enumerate(VALUE_TIERS)}
    tier = cust["value_tier"].astype(object).map(tier_pos).fillna(0).to_numpy(dtype=np.int64)
    if credit_min_grade not in CREDIT_GRADES:
        raise CrossSellError(f"credit_min_grade must be one of {', '.join(CREDIT_GRADES)}, got {credit_min_grade!r}")
    grade_ok = credit_grade_ok(cust["credit_grade"] if "credit_grade" in cust.columns else [None] * n,
                               credit_min_grade)
    complaint = (cust["credit_complaint"].astype("boolean").fillna(False).to_numpy(dtype=bool)
                 if "credit_complaint" in cust.columns else np.zeros(n, dtype=bool))
    is_credit = np.isin(np.asarray(categories, dtype=object), CREDIT_CATEGORIES)
    offer_index, _ = best_products(products_frame, categories)
    up_row = _next_tier_rows(products_frame, categories, held_tier, propensity.index, tol)
    p_up = (upgrade_propensity.reindex(index=propensity.index, columns=categories).to_numpy(dtype=float)
            if upgrade_propensity is not None else np.full((n, k_count), np.nan))
    eb = balance_by_tier.reindex(index=list(VALUE_TIERS), columns=categories).fillna(0.0).to_numpy(dtype=float)

    non_holder = ~np.isnan(p)
    # Tier up-sell candidates: holders of a tier below the category's top one, with a propensity.
    up_cand = ~non_holder & (up_row > -2) & ~np.isnan(p_up)
    candidate = non_holder | up_cand
    product_row = np.where(non_holder, offer_index[np.arange(k_count)[None, :], tol[:, None]],
                           np.where(up_cand, up_row, -1))  # (n, K), -1 = none allowed
    p = np.where(non_holder, p, np.where(up_cand, p_up, np.nan))
    expired = candidate & ~valid[:, None]
    unsuitable = candidate & valid[:, None] & (product_row < 0)
    suitable = candidate & valid[:, None] & (product_row >= 0)
    bad_grade = suitable & is_credit[None, :] & ~grade_ok[:, None]
    credit_complaint = suitable & is_credit[None, :] & grade_ok[:, None] & complaint[:, None]
    eligible = suitable & ~bad_grade & ~credit_complaint
    campaign = eligible & consent[:, None]
    product_margin = products_frame["annual_margin"].astype(float).to_numpy()
    margin = np.where(product_row >= 0, product_margin[np.maximum(product_row, 0)] if len(product_margin) else 0.0, 0.0)
    up_sell = up_cand.copy()
    if held is not None:
        held_now = held.reindex(index=propensity.index, columns=categories, fill_value=False).fillna(False)
        for offered, sources in UPSELL_LADDERS.items():
            if offered in categories:
                src = [c for c in sources if c in held_now.columns]
                holds_src = held_now[src].to_numpy(dtype=bool).any(axis=1) if src else np.zeros(n, dtype=bool)
                k = categories.index(offered)
                up_sell[:, k] |= non_holder[:, k] & holds_src
    if rising is not None and next_tier_products:
        rises = rising.reindex(propensity.index).astype("boolean").fillna(False).to_numpy(dtype=bool)
        for t, upper in enumerate(VALUE_TIERS[1:]):
            cols = [categories.index(c) for c in next_tier_products.get(upper, ()) if c in categories]
            if cols:
                moving = rises & (tier == t)
                up_sell[:, cols] |= non_holder[:, cols] & moving[:, None]
    # An offer's kind, looked up only for the offers kept: a customers x categories array of words
    # took 1.5 GiB at a million customers (fixed-width text, then a Python string per cell).
    kind_words = np.array(["cross_sell", "up_sell"], dtype=object)
    # In place, in the order of p * margin * balance * horizon / 12 (the same products, bit for bit),
    # to hold one customers x categories array at a time rather than three.
    ev = np.nan_to_num(p)
    ev *= margin
    ev *= eb[tier]
    ev *= float(horizon_months) / 12.0
    ev[~eligible] = 0.0
    del margin

    # Rank each customer's eligible offers by expected value; a stable sort leaves ties in category order.
    key = np.where(eligible, -ev, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    del key
    best_k = order[:, 0].copy() if k_count else np.zeros(n, dtype=np.int64)
    rank = np.empty((n, k_count), dtype=np.int16)  # at most one rank per category
    rank[np.arange(n)[:, None], order] = np.arange(1, k_count + 1, dtype=np.int16)[None, :]
    del order
    keep = eligible & (rank <= top_n)
    # Each category's best consenting customers; ties by position (the index, sorted by the caller).
    for k in range(k_count):
        rows = np.flatnonzero(campaign[:, k])
        if len(rows) > campaign_size:
            rows = rows[np.argsort(-ev[rows, k], kind="stable")[:campaign_size]]
        keep[rows, k] = True

    pids = products_frame["product_id"].astype(str).to_numpy()
    r_i, r_k = np.nonzero(keep)
    offers = pd.DataFrame({
        "customer_id": propensity.index.to_numpy()[r_i],
        "category": np.asarray(categories, dtype=object)[r_k],
        "product_id": pids[product_row[r_i, r_k]] if len(r_i) else np.array([], dtype=object),
        "rank": rank[r_i, r_k].astype(np.int64),
        "propensity": p[r_i, r_k],
        "expected_value": ev[r_i, r_k],
        "marketing_consent": consent[r_i],
        "offer_kind": kind_words[up_sell[r_i, r_k].astype(np.int8)],
    })

    with np.errstate(invalid="ignore"):
        mean_p = [float(np.nanmean(np.where(eligible[:, k], p[:, k], np.nan))) if eligible[:, k].any() else None
                  for k in range(k_count)]
    nh = non_holder  # the funnel's columns count non-holders; tier up-sells apart
    funnel = pd.DataFrame({
        "category": categories,
        "non_holders": non_holder.sum(axis=0),
        "excluded_expired_assessment": (expired & nh).sum(axis=0),
        "excluded_suitability": (unsuitable & nh).sum(axis=0),
        "excluded_credit_grade": (bad_grade & nh).sum(axis=0),
        "excluded_credit_complaint": (credit_complaint & nh).sum(axis=0),
        "eligible": (eligible & nh).sum(axis=0),
        "excluded_no_consent": (eligible & nh & ~consent[:, None]).sum(axis=0),
        "campaign_pool": (campaign & nh).sum(axis=0),
        "upsell_candidates": up_cand.sum(axis=0),
        "upsell_eligible": (eligible & up_cand).sum(axis=0),
        "expected_value_total": ev.sum(axis=0),
        "mean_propensity": mean_p,
    })

    e_i, e_k = np.nonzero(eligible)
    opp = pd.DataFrame({
        "category": np.asarray(categories, dtype=object)[e_k],
        "product_id": pids[product_row[e_i, e_k]] if len(e_i) else np.array([], dtype=object),
        "consenting": consent[e_i],
        "next_best": rank[e_i, e_k] == 1,
        "expected_value": ev[e_i, e_k],
        "propensity": p[e_i, e_k],
    })
    opp["consenting_ev"] = np.where(opp["consenting"], opp["expected_value"], 0.0)
    opportunities = (opp.groupby(["category", "product_id"], sort=True)
                     .agg(customers=("expected_value", "size"), consenting_customers=("consenting", "sum"),
                          next_best_customers=("next_best", "sum"), expected_value_total=("expected_value", "sum"),
                          consenting_expected_value_total=("consenting_ev", "sum"),
                          mean_propensity=("propensity", "mean"))
                     .reset_index())

    has_offer = eligible.any(axis=1)
    lacks_some = candidate.any(axis=1)  # something to offer: a category lacked or a better tier
    # No offer though assessed: the last guard that stopped any of the customer's categories.
    stopped = lacks_some & valid & ~has_offer
    by_complaint = stopped & credit_complaint.any(axis=1)
    by_grade = stopped & ~by_complaint & bad_grade.any(axis=1)
    reason_masks = {
        "holds_everything": ~lacks_some,
        "expired_assessment": lacks_some & ~valid,
        "suitability": stopped & ~by_complaint & ~by_grade,
        "credit_grade": by_grade,
        "credit_complaint": by_complaint,
    }
    no_offer = {reason: int(mask.sum()) for reason, mask in reason_masks.items()}

    # Each customer's rank-1 offer (best_k: the first of the ranking order when there is any eligible one).
    rows_all = np.arange(n)
    reason = np.full(n, None, dtype=object)
    for name, mask in reason_masks.items():
        reason[mask] = name
    best_row = product_row[rows_all, best_k] if k_count else np.full(n, -1, dtype=np.int64)
    customers_out = pd.DataFrame({
        "next_best_category": np.where(has_offer, np.asarray(categories, dtype=object)[best_k] if k_count
                                       else None, None),
        "next_best_product_id": np.where(has_offer, pids[np.maximum(best_row, 0)] if len(pids) else None, None),
        "next_best_expected_value": np.where(has_offer, ev[rows_all, best_k] if k_count else np.nan, np.nan),
        "next_best_offer_kind": np.where(has_offer, kind_words[up_sell[rows_all, best_k].astype(np.int8)]
                                         if k_count else None, None),
        "no_offer_reason": reason,
    }, index=propensity.index)
    cells = None
    if owners is not None:
        cells = _funnel_cells(owners.reindex(propensity.index), categories, {
            "non_holders": non_holder, "excluded_expired_assessment": expired & nh,
            "excluded_suitability": unsuitable & nh, "excluded_credit_grade": bad_grade & nh,
            "excluded_credit_complaint": credit_complaint & nh, "eligible": eligible & nh,
            "excluded_no_consent": eligible & nh & ~consent[:, None]})
    return Recommendations(offers=offers, funnel=funnel, opportunities=opportunities, no_offer=no_offer,
                           customers=customers_out, funnel_cells=cells)


def _next_tier_rows(products_frame: pd.DataFrame, categories: list[str], held_tier: pd.DataFrame | None,
                    index: pd.Index, tol: np.ndarray) -> np.ndarray:
    """The row of ``products_frame`` a tier up-sell offers per customer and category.

    -2 where there is no tier up-sell to make (no tier held, or nothing ranked above it), -1 where
    a better tier exists but none within the customer's tolerance, else the next tier's row: the
    lowest ``tier_rank`` above the held one at or below the tolerance (ties: higher margin, product id).
    """
    n, k_count = len(index), len(categories)
    out = np.full((n, k_count), -2, dtype=np.int64)
    if held_tier is None or "tier_rank" not in products_frame.columns:
        return out
    ranks = pd.to_numeric(products_frame["tier_rank"], errors="coerce").to_numpy(dtype=float)
    risk = risk_number(products_frame["risk_level"], "R")
    margin = products_frame["annual_margin"].astype(float).to_numpy()
    cats = products_frame["category"].astype(str).to_numpy()
    pids = products_frame["product_id"].astype(str).to_numpy()
    held = held_tier.reindex(index=index, columns=categories).to_numpy(dtype=float)
    for k, category in enumerate(categories):
        rows = [r for r in np.flatnonzero(cats == category) if not np.isnan(ranks[r]) and risk[r] > 0]
        if not rows:
            continue
        rows.sort(key=lambda r: (ranks[r], -margin[r], pids[r]))
        have = held[:, k]
        for t in np.unique(have[~np.isnan(have)]):
            above = [r for r in rows if ranks[r] > t]
            if not above:
                continue
            at = have == t
            out[at, k] = -1
            for c in range(1, len(RISK_TOLERANCES) + 1):
                allowed = [r for r in above if risk[r] <= c]
                if allowed:
                    out[at & (tol == c), k] = allowed[0]
    return out


class CampaignPools:
    """The campaign pools of customers given a block at a time, as one :func:`recommend` call over
    every customer draws them, holding per category only the best ``campaign_size`` consenting
    offers so far and the offers outside their customer's ``top_n`` still among them.

    :meth:`add` takes a block's offers (the blocks in their customers' order, each from
    :func:`recommend` with the same ``top_n`` and ``campaign_size``) and returns the offers kept
    whatever the other blocks hold: each customer's ``top_n`` best. :meth:`extras` gives, once every
    block is in, the offers outside a customer's ``top_n`` that are in the whole pools. A block's
    pool holds the block's best ``campaign_size`` consenting customers per category, and one among
    the best overall is among the best of its block; ties go by position, as in :func:`recommend`.
    The offers carry their position among every block's offers as their index.
    """

    def __init__(self, *, top_n: int, campaign_size: int) -> None:
        self.top_n, self.campaign_size = top_n, campaign_size
        self._pool = pd.DataFrame({"category": pd.Series(dtype=object), "ev": pd.Series(dtype=float),
                                   "position": pd.Series(dtype=np.int64)})
        self._extras: list[pd.DataFrame] = []
        self._seen = 0

    def add(self, offers: pd.DataFrame) -> pd.DataFrame:
        """Take one block's offers; return those within their customers' ``top_n``."""
        position = np.arange(self._seen, self._seen + len(offers), dtype=np.int64)
        self._seen += len(offers)
        offers = offers.set_axis(position)
        consent = offers["marketing_consent"].to_numpy(dtype=bool)
        candidates = pd.DataFrame({"category": offers["category"].to_numpy(dtype=object)[consent],
                                   "ev": offers["expected_value"].to_numpy(dtype=float)[consent],
                                   "position": position[consent]})
        pool = pd.concat([self._pool, candidates], ignore_index=True) if len(self._pool) else candidates
        # per category, best expected value first, ties by position; the first campaign_size stay
        pool = pool.iloc[np.lexsort((pool["position"].to_numpy(), -pool["ev"].to_numpy(),
                                     pool["category"].to_numpy(dtype=str)))]
        self._pool = pool[pool.groupby("category", sort=False).cumcount().to_numpy() < self.campaign_size]
        within = offers["rank"].to_numpy() <= self.top_n
        pooled = self._pool["position"].to_numpy()
        self._extras = [e[e.index.isin(pooled)] for e in (*self._extras, offers[~within])]
        return offers[within]

    def extras(self) -> pd.DataFrame:
        """The offers outside their customer's ``top_n`` that are in the pools of every block added,
        in the blocks' order (empty when no block was added)."""
        pooled = self._pool["position"].to_numpy()
        kept = [e[e.index.isin(pooled)] for e in self._extras if len(e)]
        return pd.concat(kept) if kept else pd.DataFrame()


def combine(parts: list[Recommendations], *, top_n: int, campaign_size: int) -> Recommendations:
    """What one :func:`recommend` call over every customer gives, from its calls over blocks of them.

    ``parts`` are the results of the blocks, in the order of their customers (the blocks split the
    caller's sorted index; each was called with the same ``top_n``, ``campaign_size`` and
    categories). A customer's offers, ranks and reasons are their own, so the blocks' are kept as
    they are, but for the campaign pools (:class:`CampaignPools`): an offer outside a customer's
    ``top_n`` stays only when it is in the whole pool. Counts and totals are summed; mean
    propensities are weighted by what they averaged (:func:`combine_summaries`).
    """
    if not parts:
        raise CrossSellError("No block of customers to combine")
    if len(parts) == 1:
        return parts[0]
    pools = CampaignPools(top_n=top_n, campaign_size=campaign_size)
    kept = [pools.add(r.offers) for r in parts]
    kept = [k for k in (*kept, pools.extras()) if len(k)]
    # A block without rows is left out of the concatenation: its empty columns carry no dtype.
    offers = (pd.concat(kept).sort_index(kind="stable").reset_index(drop=True) if kept
              else parts[0].offers.iloc[:0])
    return replace(combine_summaries(parts), offers=offers)


def combine_summaries(parts: list[Recommendations]) -> Recommendations:
    """:func:`combine` but for the offers (left empty): the funnel, opportunities, reasons for no
    offer, customer rows and funnel cells of the blocks, added up. The refresh takes the offers
    through :class:`CampaignPools` as it goes, and writes them without holding them."""
    if not parts:
        raise CrossSellError("No block of customers to combine")
    if len(parts) == 1:
        return replace(parts[0], offers=parts[0].offers.iloc[:0])
    funnels = [r.funnel for r in parts]
    funnel = funnels[0][["category"]].copy()
    counts = [c for c in funnels[0].columns if c not in ("category", "expected_value_total", "mean_propensity")]
    for col in counts:
        funnel[col] = np.sum([f[col].to_numpy(dtype=np.int64) for f in funnels], axis=0)
    funnel["expected_value_total"] = np.sum([f["expected_value_total"].to_numpy(dtype=float) for f in funnels], axis=0)
    # Each block's mean is over its eligible offers: cross-sell non-holders and tier up-sells.
    weights = np.array([(f["eligible"] + f["upsell_eligible"]).to_numpy(dtype=float) for f in funnels])
    means = np.array([pd.to_numeric(f["mean_propensity"], errors="coerce").to_numpy(dtype=float) for f in funnels])
    total = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(weights > 0, np.nan_to_num(means) * weights, 0.0).sum(axis=0) / total
    funnel["mean_propensity"] = [float(m) if t > 0 else None for m, t in zip(mean, total, strict=True)]

    opp = pd.concat([r.opportunities for r in parts if len(r.opportunities)] or [parts[0].opportunities],
                    ignore_index=True)
    opp["propensity_sum"] = opp["mean_propensity"] * opp["customers"]
    opportunities = (opp.groupby(["category", "product_id"], sort=True)
                     .agg(customers=("customers", "sum"), consenting_customers=("consenting_customers", "sum"),
                          next_best_customers=("next_best_customers", "sum"),
                          expected_value_total=("expected_value_total", "sum"),
                          consenting_expected_value_total=("consenting_expected_value_total", "sum"),
                          propensity_sum=("propensity_sum", "sum"))
                     .reset_index())
    opportunities["mean_propensity"] = opportunities.pop("propensity_sum") / opportunities["customers"]

    no_offer = {reason: sum(r.no_offer.get(reason, 0) for r in parts) for reason in parts[0].no_offer}
    customers = (pd.concat([r.customers for r in parts]) if all(r.customers is not None for r in parts)
                 else None)
    cells = None
    if all(r.funnel_cells is not None for r in parts):
        stacked = pd.concat([r.funnel_cells for r in parts if len(r.funnel_cells)] or [parts[0].funnel_cells],
                            ignore_index=True)
        keys = ["category", "branch_id", "relationship_manager"]
        cells = stacked.groupby(keys, sort=False, dropna=False).sum().reset_index()
        position = {c: i for i, c in enumerate(funnel["category"])}
        cells = cells.iloc[np.argsort(cells["category"].map(position).to_numpy(), kind="stable")]
        cells = cells.reset_index(drop=True)[stacked.columns]
        for col in ("branch_id", "relationship_manager"):
            cells[col] = cells[col].astype(object).where(cells[col].notna(), None)
    return Recommendations(offers=parts[0].offers.iloc[:0], funnel=funnel, opportunities=opportunities,
                           no_offer=no_offer, customers=customers, funnel_cells=cells)


def _funnel_cells(owners: pd.DataFrame, categories: list[str], masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Each (customers x categories) mask of ``masks`` counted per category and owner."""
    branch = owners["branch_id"].astype(object).fillna("").to_numpy()
    manager = owners["relationship_manager"].astype(object).fillna("").to_numpy()
    codes, uniques = pd.factorize(pd.MultiIndex.from_arrays([branch, manager]))
    parts = []
    for k, category in enumerate(categories):
        counts = {name: np.bincount(codes, weights=mask[:, k], minlength=len(uniques)).astype(np.int64)
                  for name, mask in masks.items()}
        part = pd.DataFrame({"category": category, "branch_id": uniques.get_level_values(0),
                             "relationship_manager": uniques.get_level_values(1), **counts})
        parts.append(part[part["non_holders"] > 0])
    columns = ["category", "branch_id", "relationship_manager", *masks]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    for col in ("branch_id", "relationship_manager"):
        out[col] = out[col].astype(object).where(out[col] != "", None)
    return out[columns]


def propensity_json(propensity: pd.DataFrame, decimals: int = 4) -> np.ndarray:
    """Each row of ``propensity`` as a JSON object ``{category: probability}``, NaN cells left out.

    The cells are probabilities (clipped to [0, 1]), written rounded to ``decimals``; a row of NaN
    only gives ``'{}'``. Built without per-cell formatting: at ``decimals`` places a probability takes
    one of ``10**decimals + 1`` values, each formatted once per category and picked by index, so a
    million rows by ten categories takes about a second.
    """
    scale = 10 ** int(decimals)
    values = propensity.to_numpy(dtype=float)
    parts = []
    for k, category in enumerate(propensity.columns):
        col = values[:, k]
        present = ~np.isnan(col)
        if not present.any():
            continue
        prefix = ", " + json.dumps(str(category)) + ": "
        # i / scale is the double nearest to the decimal, as round() gives: its repr is the short
        # decimal itself ("0.1234", "1.0", "0.0"), valid JSON.
        table = np.array([prefix + repr(i / scale) for i in range(scale + 1)] + [""], dtype=object)
        idx = np.rint(np.clip(np.nan_to_num(col), 0.0, 1.0) * scale).astype(np.int64)
        parts.append(table[np.where(present, idx, scale + 1)])
    if not parts:
        return np.full(len(values), "{}", dtype=object)
    return np.array(["{" + "".join(row)[2:] + "}" for row in zip(*parts, strict=True)], dtype=object)


__all__ = ["CREDIT_CATEGORIES", "CREDIT_COMPLAINT_CATEGORIES", "CREDIT_COMPLAINT_MONTHS", "EXCLUSION_REASONS",
           "OFFER_KINDS", "RISING_AUM_MIN_CHANGE", "RISING_AUM_REACH", "TIER_CATEGORY_LIFT", "TIER_CATEGORY_MIN_RATE",
           "UPSELL_LADDERS",
           "CampaignPools", "ExpectedBalances", "Recommendations", "TierShares", "assessment_valid", "credit_grade_ok", "best_products", "combine",
           "combine_summaries", "expected_balances",
           "propensity_json", "recommend", "rising_to_next_tier", "tier_categories"]
