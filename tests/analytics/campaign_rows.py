"""A tiny hand-made store for the campaign planner: one customer per exclusion reason, three
eligible ones, and a fund product, so every count can be checked by hand.

As-of day: 2026-10-31 (the last month of activity is 2026-10). Every customer holds a demand deposit;
C07 also holds the fund (balance 20,000: the only holder, so the fund's expected balance is 20,000
and one conversion is worth 20,000 x 1 % = 200 CNY a year).
"""

from datetime import date, datetime

import pandas as pd

from analytics.schema import branches, contacts, customer_monthly, customers, holdings, products
from analytics.store import bulk_insert

AS_OF = date(2026, 10, 31)
# customer -> the reason it is left out of a fund campaign (None: eligible)
REASONS = {
    "C01": None, "C02": "consent", "C03": "closed_dormant", "C04": "complaint", "C05": "cooldown", "C06": None,
    "C07": "holds_category", "C08": "expired_assessment", "C09": "suitability", "C10": None,
    "C11": "closed_dormant",  # closed and without consent: counted once, under its first reason
}
ELIGIBLE = ["C01", "C06", "C10"]


def _customer(cid: str, **overrides) -> dict:
    row = {"customer_id": cid, "name": f"客户{cid}", "gender": "M", "birth_date": date(1980, 1, 1),
           "id_type": "resident_id", "id_number": None, "phone": None, "branch_id": "BR001",
           "relationship_manager": "RM01", "open_date": date(2020, 1, 1), "status": "active",
           "marketing_consent": True, "risk_tolerance": "C3", "risk_assessed_at": date(2026, 6, 1),
           "updated_at": datetime(2026, 10, 1)}
    row.update(overrides)
    return row


CUSTOMERS = pd.DataFrame([
    _customer("C01"), _customer("C02", marketing_consent=False), _customer("C03", status="dormant"),
    _customer("C04"), _customer("C05"), _customer("C06", relationship_manager="RM02"), _customer("C07"),
    _customer("C08", risk_assessed_at=date(2024, 1, 1)), _customer("C09", risk_tolerance="C1"),
    _customer("C10", branch_id="BR002", relationship_manager="RM02"),
    _customer("C11", status="closed", marketing_consent=False),
])
BRANCHES = pd.DataFrame([
    {"branch_id": "BR001", "name": "北京东城支行", "city": "北京市", "province": "北京市", "region_code": "110101"},
    {"branch_id": "BR002", "name": "上海浦东支行", "city": "上海市", "province": "上海市", "region_code": "310115"},
])
PRODUCTS = pd.DataFrame([
    {"product_id": "P01", "name": "活期存款", "category": "demand_deposit", "risk_level": "R1",
     "annual_margin": 0.015, "balance_side": "asset"},
    {"product_id": "P02", "name": "平衡混合基金", "category": "fund", "risk_level": "R3",
     "annual_margin": 0.01, "balance_side": "asset"},
])
HOLDINGS = pd.DataFrame(
    [{"holding_id": i + 1, "customer_id": cid, "product_id": "P01", "account_number": None,
      "opened_on": date(2020, 1, 1), "closed_on": None, "balance": 5000.0} for i, cid in enumerate(CUSTOMERS.customer_id)]
    + [{"holding_id": 100, "customer_id": "C07", "product_id": "P02", "account_number": None,
        "opened_on": date(2021, 1, 1), "closed_on": None, "balance": 20000.0}])
MONTHLY = pd.DataFrame([
    {"customer_id": cid, "month": m, "aum": 25000.0 if cid == "C07" else 5000.0,
     "deposit_balance": 5000.0, "loan_balance": 0.0, "txn_count": 3, "txn_amount": 100.0, "digital_logins": 2}
    for cid in CUSTOMERS.customer_id for m in (date(2026, 9, 1), date(2026, 10, 1))])
CONTACTS = pd.DataFrame([
    {"contact_id": 1, "customer_id": "C04", "contacted_at": datetime(2026, 3, 1, 10), "channel": "phone",
     "kind": "complaint", "category": "fees", "resolved": False},
    {"contact_id": 2, "customer_id": "C05", "contacted_at": datetime(2026, 10, 20, 10), "channel": "phone",
     "kind": "marketing", "category": "fund", "resolved": None},
    # 60 days before the as-of day: outside the 30-day cooldown
    {"contact_id": 3, "customer_id": "C06", "contacted_at": datetime(2026, 9, 1, 10), "channel": "phone",
     "kind": "marketing", "category": "fund", "resolved": None},
    # a resolved complaint does not exclude
    {"contact_id": 4, "customer_id": "C10", "contacted_at": datetime(2026, 5, 1, 10), "channel": "branch",
     "kind": "complaint", "category": "fees", "resolved": True},
])


def fill(engine) -> None:
    from analytics.consent import sync_marketing_flags

    for table, frame in [(branches, BRANCHES), (customers, CUSTOMERS), (products, PRODUCTS), (holdings, HOLDINGS),
                         (customer_monthly, MONTHLY), (contacts, CONTACTS)]:
        bulk_insert(engine, table, frame)
    sync_marketing_flags(engine, at=datetime(2000, 1, 1))
