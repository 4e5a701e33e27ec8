"""A tiny hand-made store (2 branches, 3 customers, 2 products), for tests that need real rows but
not the demo generator. Values are chosen so headline totals can be checked by hand."""

from datetime import date, datetime

import pandas as pd

from analytics.schema import branches, customer_monthly, customers, holdings, products
from analytics.store import bulk_insert

BRANCHES = pd.DataFrame([
    {"branch_id": "BR001", "name": "北京东城支行", "city": "北京市", "province": "北京市", "region_code": "110101"},
    {"branch_id": "BR002", "name": "上海浦东支行", "city": "上海市", "province": "上海市", "region_code": "310115"},
])
CUSTOMERS = pd.DataFrame([
    {"customer_id": "C000000001", "name": "张三", "gender": "M", "birth_date": date(1949, 12, 31),
     "id_type": "resident_id", "id_number": "11010519491231002X", "phone": "013812345678",
     "branch_id": "BR001", "open_date": date(2015, 3, 1), "status": "active", "marketing_consent": True,
     "risk_tolerance": "C3", "updated_at": datetime(2026, 1, 5, 10, 0)},
    {"customer_id": "C000000002", "name": "李四", "gender": "F", "birth_date": date(1990, 1, 1),
     "id_type": "resident_id", "id_number": "310115199001010048", "phone": "13900001111",
     "branch_id": "BR002", "open_date": date(2020, 6, 1), "status": "dormant", "marketing_consent": False,
     "risk_tolerance": "C1", "updated_at": datetime(2024, 1, 5, 10, 0)},
    {"customer_id": "C000000003", "name": "王五", "gender": "M", "birth_date": date(1985, 5, 5),
     "id_type": "resident_id", "id_number": "110101198505050011", "phone": None,
     "branch_id": "BR001", "open_date": date(2026, 8, 1), "status": "active", "marketing_consent": True,
     "risk_tolerance": None, "updated_at": None},
])
PRODUCTS = pd.DataFrame([
    {"product_id": "P01", "name": "活期存款", "category": "demand_deposit", "risk_level": "R1",
     "annual_margin": 0.015, "balance_side": "asset"},
    {"product_id": "P02", "name": "个人住房贷款", "category": "mortgage", "risk_level": "R1",
     "annual_margin": 0.012, "balance_side": "liability"},
])
HOLDINGS = pd.DataFrame([
    {"holding_id": 1, "customer_id": "C000000001", "product_id": "P01", "account_number": "6222020200112233445",
     "opened_on": date(2015, 3, 1), "closed_on": None, "balance": 1000.50},
    {"holding_id": 2, "customer_id": "C000000001", "product_id": "P02", "account_number": "0012345",
     "opened_on": date(2016, 3, 1), "closed_on": None, "balance": 250000.00},
    {"holding_id": 3, "customer_id": "C000000002", "product_id": "P01", "account_number": "6222020200112233446",
     "opened_on": date(2020, 6, 1), "closed_on": date(2025, 1, 1), "balance": 0.0},
])
MONTHLY = pd.DataFrame([
    {"customer_id": c, "month": m, "aum": aum, "deposit_balance": aum, "loan_balance": loan,
     "txn_count": 3, "txn_amount": 100.0, "digital_logins": 2}
    for c, m, aum, loan in [
        ("C000000001", date(2026, 9, 1), 900.0, 251000.0),
        ("C000000001", date(2026, 10, 1), 1000.5, 250000.0),
        ("C000000002", date(2026, 9, 1), 10.0, 0.0),
        ("C000000002", date(2026, 10, 1), 0.0, 0.0),
        ("C000000003", date(2026, 10, 1), 5000.0, 0.0),
    ]
])
# Latest month (2026-10): AUM 1000.5 + 0 + 5000 = 6000.5; loans 250000.


def fill(engine, *, consents: bool = True) -> None:
    """Write the rows; ``consents``: also the marketing consents the customers' flags stand for
    (granted at 2000-01-01, before every date of the store), as `load` would record them."""
    for table, frame in [(branches, BRANCHES), (customers, CUSTOMERS), (products, PRODUCTS),
                         (holdings, HOLDINGS), (customer_monthly, MONTHLY)]:
        bulk_insert(engine, table, frame)
    if consents:
        from analytics.consent import sync_marketing_flags

        sync_marketing_flags(engine, at=datetime(2000, 1, 1))
