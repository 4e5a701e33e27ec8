"""Two past campaigns of the demo store, with a known true uplift (issue 13).

Both offer a credit card (``credit_card``: a new card opened with a zero balance changes no AUM or
loan total) to a random half of their members, the other half held out as control:

========================================  =========  ==========  =========  ===========  ============
campaign                                   start      control     treatment  true uplift  members
========================================  =========  ==========  =========  ===========  ============
Credit card welcome offer · 信用卡迎新礼    as-of - 9  6.0 %       10.0 %     +4.0 pp      half the pool
Credit card e-newsletter · 信用卡电子刊     as-of - 6  6.0 %       6.0 %      0.0 pp       the other half
========================================  =========  ==========  =========  ===========  ============

(start: months before the demo's as-of day, on the first of the month.) The pool is every customer
active today who opened before the first start, had a live marketing consent then, held no credit
card at either start and opened none by themselves from the first start to the as-of day. So every
conversion in the pool is one drawn here, at its arm's rate, as a card opened on a random day within
the first 60 days of the campaign (inside any ``CROSS_SELL_HORIZON_MONTHS`` of 2 or more): the
refresh's ``campaigns`` stage measures them like any campaign's, and the true uplift of the two
campaigns is exactly +4.0 and 0.0 percentage points in expectation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from analytics import schema
from analytics.campaigns.plan import assign_arms
from analytics.demo.reference import PRODUCT_INDEX
from analytics.segmentation import value_tiers
from analytics.store import bulk_insert, read_frame

CARD_PRODUCT = "P021"
CATEGORY = "credit_card"
#: A conversion's yearly margin at planning: the card's 8 % margin on a 10,000 CNY balance.
VALUE_IF_CONVERTED = 800.0
#: The planner's expected value is the margin over the propensity horizon (3 months, the default
#: CROSS_SELL_HORIZON_MONTHS), as for the cross-sell offers: a quarter of the yearly value.
HORIZON_SHARE = 3 / 12
CONVERSION_DAYS = 60
DEMO_CAMPAIGNS: tuple[dict, ...] = (
    {"name": "Credit card welcome offer · 信用卡迎新礼", "months_before": 9, "control_rate": 0.06,
     "treatment_rate": 0.10, "message": "Welcome gift and first-year fee waiver for a new credit card."},
    {"name": "Credit card e-newsletter · 信用卡电子刊", "months_before": 6, "control_rate": 0.06,
     "treatment_rate": 0.06, "message": "Monthly e-newsletter presenting the credit card's benefits."},
)
#: The true uplift of each demo campaign, in percentage points (treatment rate - control rate).
TRUE_UPLIFT_PP = tuple(round(100 * (c["treatment_rate"] - c["control_rate"]), 1) for c in DEMO_CAMPAIGNS)
CONTROL_SHARE = 0.5


def _start(as_of: date, months_before: int) -> date:
    return (pd.Timestamp(as_of.replace(day=1)) - pd.DateOffset(months=months_before)).date()


def _pool(engine: Engine, first: date, last: date, as_of: date) -> pd.DataFrame:
    sql = text("""
        SELECT c.customer_id FROM customers c
        WHERE c.status = 'active' AND c.open_date < :first
          AND EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = c.customer_id AND k.purpose = 'marketing'
                      AND k.granted_at <= :first_ts AND (k.withdrawn_at IS NULL OR k.withdrawn_at > :first_ts))
          AND NOT EXISTS (SELECT 1 FROM holdings h JOIN products p ON p.product_id = h.product_id
                          WHERE h.customer_id = c.customer_id AND p.category = :category
                            AND h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :first))
        ORDER BY c.customer_id
    """)
    return read_frame(engine, sql, {"first": first, "first_ts": datetime.combine(first, datetime.min.time()),
                                    "as_of": as_of, "category": CATEGORY, "last": last})


def draw_conversions(arms: pd.Series, control_rate: float, treatment_rate: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Who converts: each member at their arm's rate (independent draws)."""
    rate = np.where(arms.to_numpy() == "treatment", treatment_rate, control_rate)
    return rng.random(len(arms)) < rate


def add_demo_campaigns(engine: Engine, *, seed: int, as_of: date, account_numbers: Callable) -> dict:
    """Write the demo's past campaigns, their members and the cards the converters opened
    (``account_numbers(rng, holding_ids, product_index, branch_index)``: the generator's card numbers).

    Returns ``{"campaigns": n, "campaign_members": m, "conversions": k}``.
    """
    rng = np.random.default_rng([seed, 13])
    starts = [_start(as_of, c["months_before"]) for c in DEMO_CAMPAIGNS]
    pool = _pool(engine, min(starts), max(starts), as_of)["customer_id"].astype(str).to_numpy()
    halves = np.array_split(rng.permutation(pool), len(DEMO_CAMPAIGNS))
    with engine.connect() as conn:
        next_hid = int(conn.execute(text("SELECT COALESCE(MAX(holding_id), 0) FROM holdings")).scalar()) + 1
    counts = {"campaigns": 0, "campaign_members": 0, "conversions": 0}
    for number, (spec, start, ids) in enumerate(zip(DEMO_CAMPAIGNS, starts, halves, strict=True), start=1):
        if len(ids) == 0:
            continue
        assignment_seed = int(rng.integers(2**31))
        arms = assign_arms(ids, CONTROL_SHARE, assignment_seed)
        aum = read_frame(engine, text("SELECT customer_id, aum FROM customer_monthly WHERE month = :m"),
                         {"m": start.replace(day=1)}).set_index("customer_id")["aum"]
        tiers = value_tiers(aum.reindex(arms.index).fillna(0.0)).astype(str)
        converted = draw_conversions(arms, spec["control_rate"], spec["treatment_rate"], rng)
        treated = int((arms == "treatment").sum())
        campaign = {"campaign_id": number, "name": spec["name"], "product_category": CATEGORY,
                    "definition": json.dumps({"filters": {}, "tags": None, "product": CATEGORY,
                                              "control_share": CONTROL_SHARE, "demo": True}),
                    "message": spec["message"], "source_run_id": 0, "owner": "demo",
                    "created_at": datetime.combine(start, datetime.min.time()), "starts_on": start,
                    "control_share": CONTROL_SHARE, "seed": assignment_seed, "eligible": len(arms),
                    "excluded": json.dumps({}), "expected_conversions": spec["control_rate"] * treated,
                    "expected_margin": spec["control_rate"] * treated * VALUE_IF_CONVERTED * HORIZON_SHARE}
        bulk_insert(engine, schema.campaigns, pd.DataFrame([campaign]))
        members = pd.DataFrame({"campaign_id": number, "customer_id": arms.index, "arm": arms.to_numpy(),
                                "propensity": spec["control_rate"], "value_if_converted": VALUE_IF_CONVERTED,
                                "expected_value": spec["control_rate"] * VALUE_IF_CONVERTED * HORIZON_SHARE,
                                "value_tier": tiers.to_numpy(), "rfm_segment": None})
        bulk_insert(engine, schema.campaign_members, members)
        buyers = arms.index[converted]
        counts["campaigns"] += 1
        counts["campaign_members"] += len(members)
        if len(buyers) == 0:
            continue
        hid = next_hid + np.arange(len(buyers), dtype=np.int64)
        next_hid += len(buyers)
        pid = np.full(len(buyers), PRODUCT_INDEX[CARD_PRODUCT])
        opened = [start + pd.Timedelta(days=int(d)) for d in rng.integers(0, CONVERSION_DAYS, size=len(buyers))]
        cards = pd.DataFrame({"holding_id": hid, "customer_id": list(buyers), "product_id": CARD_PRODUCT,
                              "account_number": account_numbers(rng, hid, pid, np.zeros(len(hid), int)),
                              "opened_on": opened, "closed_on": pd.NaT, "balance": 0.0})
        bulk_insert(engine, schema.holdings, cards)
        counts["conversions"] += len(buyers)
    return counts


__all__ = ["CONTROL_SHARE", "DEMO_CAMPAIGNS", "TRUE_UPLIFT_PP", "add_demo_campaigns", "draw_conversions"]
