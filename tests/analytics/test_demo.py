"""Tests of the demo-data generator: determinism, defect rates measured from the stored rows,
identifier check digits, behavioural signal and referential integrity.

One store of 2,000 customers x 24 months is built once per module (about a second); the
determinism and multi-chunk tests build their own smaller stores.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date

import numpy as np
import pandas as pd
import pytest

from analytics import demo, schema
from analytics.demo import generator, reference
from analytics.store import init_schema, make_engine

try:  # written by another helper; the tests also compute every check independently
    from analytics import validators
except ImportError:  # pragma: no cover
    validators = None

N = 2000
MONTHS = 24
AS_OF = demo.DEFAULT_AS_OF
STALE_BEFORE = pd.Timestamp(date(2024, 10, 31))  # AS_OF minus FRESHNESS_MONTHS (24) months
RISK_BEFORE = pd.Timestamp(AS_OF) - pd.Timedelta(days=365)

_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_MOBILE = re.compile(r"1[3-9][0-9]{9}")


def id_check_char(first17: str) -> str:
    """GB 11643 check character, written out independently of the generator."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def id_is_valid(value: str) -> bool:
    return bool(re.fullmatch(r"[0-9]{17}[0-9X]", value)) and id_check_char(value[:17]) == value[17]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def build(path, **kwargs) -> dict:
    engine = make_engine(f"sqlite:///{path}", create_dir=True)
    init_schema(engine)
    summary = demo.generate(engine, progress=False, **kwargs)
    engine.dispose()
    return summary


def read_tables(path) -> dict[str, pd.DataFrame]:
    with sqlite3.connect(path) as conn:
        return {t: pd.read_sql(f'SELECT * FROM "{t}"', conn) for t in demo.STORE_TABLE_NAMES}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "bank.db"
    summary = build(path, customers=N, months=MONTHS, seed=7)
    t = read_tables(path)
    cu = t["customers"]
    for col in ("birth_date", "id_expiry_date", "open_date", "risk_assessed_at", "updated_at"):
        cu[col] = pd.to_datetime(cu[col])
    t["customer_monthly"]["month"] = pd.to_datetime(t["customer_monthly"]["month"])
    for col in ("opened_on", "closed_on"):
        t["holdings"][col] = pd.to_datetime(t["holdings"][col])
    t["contacts"]["contacted_at"] = pd.to_datetime(t["contacts"]["contacted_at"])
    return {"path": path, "summary": summary, **t}


def valid_id_rows(cu: pd.DataFrame) -> pd.Series:
    return cu["id_number"].map(id_is_valid)


def id_gender(ids: pd.Series) -> pd.Series:
    return np.where(ids.str[16].astype(int) % 2 == 1, "M", "F")


def id_birth(ids: pd.Series) -> pd.Series:
    return pd.to_datetime(ids.str[6:14], format="%Y%m%d")


# --------------------------------------------------------------------------- shape


def test_row_counts_match_summary_and_tables(store):
    s = store["summary"]
    for table in demo.STORE_TABLE_NAMES:
        assert s["row_counts"][table] == len(store[table]), table
    assert len(store["customers"]) == N
    assert 30 <= len(store["branches"]) <= 60
    assert len(store["products"]) == len(demo.PRODUCTS)
    per_customer = store["customer_monthly"].groupby("customer_id").size()
    assert per_customer.index.size == N  # everyone has at least their opening month
    assert per_customer.max() == MONTHS
    assert s["as_of"] == AS_OF.isoformat() and s["months"] == MONTHS


def test_monthly_rows_start_at_the_opening_month_and_end_at_as_of(store):
    mo, cu = store["customer_monthly"], store["customers"]
    first = mo.groupby("customer_id")["month"].min()
    opened = cu.set_index("customer_id")["open_date"]
    start = pd.Timestamp(AS_OF.replace(day=1)) - pd.DateOffset(months=MONTHS - 1)
    expected = opened.dt.to_period("M").dt.to_timestamp().clip(lower=start)
    pd.testing.assert_series_equal(first.sort_index(), expected.sort_index(), check_names=False)
    assert mo["month"].max() == pd.Timestamp(AS_OF.replace(day=1))
    assert (mo.groupby("customer_id")["month"].max() == mo["month"].max()).all()


def test_foreign_keys_hold(store):
    with sqlite3.connect(store["path"]) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    ids = set(store["customers"]["customer_id"])
    assert set(store["holdings"]["customer_id"]) <= ids
    assert set(store["customer_monthly"]["customer_id"]) <= ids
    assert set(store["contacts"]["customer_id"]) <= ids
    assert set(store["holdings"]["product_id"]) <= set(store["products"]["product_id"])
    assert set(store["customers"]["branch_id"]) <= set(store["branches"]["branch_id"])


def test_consents_follow_the_marketing_flag_and_keep_withdrawals(store):
    k, cu = store["consents"].copy(), store["customers"]
    assert set(k["customer_id"]) <= set(cu["customer_id"])
    assert set(k["purpose"]) == {"marketing", "profiling", "third_party"}
    k["granted_at"] = pd.to_datetime(k["granted_at"])
    k["withdrawn_at"] = pd.to_datetime(k["withdrawn_at"])
    as_of = pd.Timestamp(AS_OF)
    marketing = k[k["purpose"] == "marketing"]
    live = marketing[(marketing["granted_at"] <= as_of)
                     & (marketing["withdrawn_at"].isna() | (marketing["withdrawn_at"] > as_of))]
    flagged = set(cu.loc[cu["marketing_consent"].astype(bool), "customer_id"])
    assert set(live["customer_id"]) == flagged  # the derived flag and the consents agree
    withdrawn = marketing[marketing["withdrawn_at"].notna()]
    assert len(withdrawn) > 0 and (withdrawn["withdrawn_at"] >= withdrawn["granted_at"]).all()
    assert not k.duplicated(["customer_id", "purpose"]).any()


def test_reference_tables(store):
    br, pr = store["branches"], store["products"]
    assert br["branch_id"].is_unique and br["name"].str.endswith("支行").all()
    assert br["region_code"].str.fullmatch(r"[1-6][0-9]{5}").all()
    assert br["city"].nunique() >= 30
    assert set(pr["risk_level"]) <= set(schema.RISK_LEVELS)
    assert set(pr["balance_side"]) == {"asset", "liability"}
    assert {"demand_deposit", "time_deposit", "wealth_management", "fund", "insurance", "credit_card",
            "mortgage", "consumer_loan"} <= set(pr["category"])


def test_customer_fields_are_well_formed(store):
    cu = store["customers"]
    assert cu["customer_id"].str.fullmatch(r"C[0-9]{9}").all() and cu["customer_id"].is_unique
    assert set(cu["gender"]) == {"M", "F"}
    assert (cu["id_type"] == "resident_id").all()
    assert set(cu["status"]) == set(schema.CUSTOMER_STATUSES)
    assert set(cu["risk_tolerance"]) == set(schema.RISK_TOLERANCES)
    assert set(cu["credit_grade"]) <= set(schema.CREDIT_GRADES)
    assert set(cu["onboarding_channel"]) == {"branch", "mobile_app", "online", "partner", "payroll"}
    assert cu["relationship_manager"].str.fullmatch(r"RM[0-9]{4}").all()
    assert 0.70 < cu["marketing_consent"].mean() < 0.80
    email = cu["email"].dropna()
    assert email.str.fullmatch(r"[a-z0-9_]+@[a-z0-9]+\.(com|net)").all()
    tolerance = cu["risk_tolerance"].value_counts(normalize=True)
    assert tolerance["C2"] + tolerance["C3"] > 0.55  # skewed to the middle
    assert (cu["address"].dropna().str.contains("号")).all()


def test_dates_are_consistent(store):
    cu, h, ct = store["customers"], store["holdings"], store["contacts"]
    as_of = pd.Timestamp(AS_OF)
    clean = cu[valid_id_rows(cu)]
    id_born = id_birth(clean["id_number"])
    assert (clean["open_date"] >= id_born + pd.DateOffset(years=18) - pd.Timedelta(days=2)).all()
    assert (cu["open_date"] <= as_of).all()
    assert (cu["risk_assessed_at"] >= cu["open_date"]).all()
    assert (cu["updated_at"].dt.normalize() >= cu["risk_assessed_at"]).all()
    assert (cu["updated_at"] <= as_of + pd.Timedelta(days=1)).all()
    opened = h.merge(cu[["customer_id", "open_date"]], on="customer_id")
    assert (opened["opened_on"] >= opened["open_date"]).all()
    assert (h["opened_on"] <= as_of).all()
    closed = h.dropna(subset=["closed_on"])
    assert (closed["closed_on"] >= closed["opened_on"]).all() and (closed["closed_on"] <= as_of).all()
    seen = ct.merge(cu[["customer_id", "open_date"]], on="customer_id")
    assert (seen["contacted_at"] >= seen["open_date"]).all()
    assert (ct["contacted_at"] < as_of + pd.Timedelta(days=1)).all()


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_rows_and_another_seed_does_not(tmp_path):
    kwargs = {"customers": 400, "months": 6}
    build(tmp_path / "a.db", seed=3, **kwargs)
    build(tmp_path / "b.db", seed=3, **kwargs)
    build(tmp_path / "c.db", seed=4, **kwargs)
    a, b, c = (read_tables(tmp_path / f"{x}.db") for x in "abc")
    for table in demo.STORE_TABLE_NAMES:
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)
    assert not a["customers"].equals(c["customers"])


def test_chunks_keep_exact_counts_and_unique_identifiers(tmp_path, monkeypatch):
    # Several chunks without building 100k customers: the defect quotas are split over chunks
    # and the uniqueness of IDs, phones and holding ids must carry across them.
    # Patched where generate() reads it: the package only re-exports the value.
    monkeypatch.setattr(generator, "CHUNK_CUSTOMERS", 500)
    summary = build(tmp_path / "chunks.db", customers=1300, months=6, seed=11)
    t = read_tables(tmp_path / "chunks.db")
    cu = t["customers"]
    assert summary["defects"] == demo.expected_defect_counts(1300)
    assert len(cu) == 1300 and cu["customer_id"].is_unique
    assert cu["id_number"].duplicated().sum() == demo.expected_defect_counts(1300)["duplicate_customer"]
    dup_ids = cu["id_number"].duplicated(keep=False)
    phones = cu.loc[~dup_ids, "phone"].dropna()
    assert phones.is_unique
    assert t["holdings"]["holding_id"].tolist() == list(range(1, len(t["holdings"]) + 1))
    assert t["contacts"]["contact_id"].tolist() == list(range(1, len(t["contacts"]) + 1))
    assert t["holdings"]["account_number"].is_unique


# --------------------------------------------------------------------------- identifiers


def test_resident_ids_pass_the_check_digit_except_the_injected_ones(store):
    cu = store["customers"]
    expected = demo.expected_defect_counts(N)
    valid = valid_id_rows(cu)
    assert (~valid).sum() == expected["invalid_id_check_digit"]
    bad = cu.loc[~valid, "id_number"]
    # Only the last character differs from the right one.
    assert bad.str.fullmatch(r"[0-9]{17}[0-9X]").all()
    assert all(id_check_char(v[:17]) != v[17] for v in bad)
    if validators is not None:
        by_validator = cu["id_number"].map(lambda v: validators.is_valid_resident_id(v, today=AS_OF))
        assert (by_validator == valid).all()


def test_id_birth_date_and_gender_agree_except_the_injected_mismatches(store):
    cu = store["customers"]
    expected = demo.expected_defect_counts(N)
    clean = cu[valid_id_rows(cu)]
    gender_off = clean["gender"] != id_gender(clean["id_number"])
    birth_off = clean["birth_date"] != id_birth(clean["id_number"])
    assert gender_off.sum() == expected["gender_mismatch_id"]
    assert birth_off.sum() == expected["birth_date_mismatch_id"]
    assert not (gender_off & birth_off).any()  # disjoint sets
    shift = (clean.loc[birth_off, "birth_date"] - id_birth(clean.loc[birth_off, "id_number"])).dt.days.abs()
    assert shift.between(1, 366).all()
    # The region code is one of the table's real district codes.
    assert cu["id_number"].str[:6].isin({r[3] for r in reference.REGIONS}).all()


def test_duplicates_copy_an_existing_customer(store):
    cu = store["customers"]
    groups = cu[cu["id_number"].duplicated(keep=False)].groupby("id_number")
    assert groups.ngroups == demo.expected_defect_counts(N)["duplicate_customer"]
    for _, g in groups:
        assert len(g) == 2
        assert g["name"].str.replace(r"[\s\u3000]", "", regex=True).nunique() == 1
        assert g["birth_date"].nunique() == 1 and g["gender"].nunique() == 1
        assert g["phone"].nunique() == 1 and g["phone"].notna().all()
        assert id_is_valid(g["id_number"].iloc[0])


def test_phones_are_valid_unique_mobiles_except_the_injected_ones(store):
    cu = store["customers"]
    expected = demo.expected_defect_counts(N)
    phone = cu["phone"]
    assert phone.isna().sum() == expected["missing_phone"]
    shaped = phone.dropna().map(lambda v: bool(_MOBILE.fullmatch(v)))
    assert (~shaped).sum() == expected["bad_phone_format"]
    if validators is not None:
        assert (phone.dropna().map(validators.is_valid_cn_mobile) == shaped).all()
    distinct = cu.loc[~cu["id_number"].duplicated(), "phone"].dropna()
    assert distinct.is_unique


def test_card_numbers_pass_luhn_and_accounts_are_unique(store):
    h = store["holdings"]
    cards = h[h["product_id"].isin(["P001", "P021", "P022", "P026"])]["account_number"]
    assert cards.str.fullmatch(r"[0-9]{16}|[0-9]{19}").all()
    assert cards.map(luhn_ok).all()
    assert h.loc[h["product_id"] == "P001", "account_number"].str.len().eq(19).all()
    assert h.loc[h["product_id"].isin(["P021", "P022", "P026"]), "account_number"].str.len().eq(16).all()
    if validators is not None:
        assert cards.map(validators.is_valid_bank_card).all()
    assert h["account_number"].is_unique
    assert h["holding_id"].is_unique


# --------------------------------------------------------------------------- defect rates


def _measure(name: str, cu: pd.DataFrame) -> int:
    as_of = pd.Timestamp(AS_OF)
    if name.startswith("missing_"):
        return int(cu[name.removeprefix("missing_")].isna().sum())
    if name == "invalid_id_check_digit":
        return int((~valid_id_rows(cu)).sum())
    if name == "bad_phone_format":
        return int((~cu["phone"].dropna().map(lambda v: bool(_MOBILE.fullmatch(v)))).sum())
    if name == "duplicate_customer":
        return int(cu["id_number"].duplicated().sum())
    if name == "stale_record":
        return int((cu["updated_at"] < STALE_BEFORE).sum())
    if name == "expired_id_document":
        return int((cu["id_expiry_date"] < as_of).sum())
    if name == "risk_assessment_over_a_year_old":
        return int((cu["risk_assessed_at"] < RISK_BEFORE).sum())
    clean = cu[valid_id_rows(cu)]
    if name == "gender_mismatch_id":
        return int((clean["gender"] != id_gender(clean["id_number"])).sum())
    if name == "birth_date_mismatch_id":
        return int((clean["birth_date"] != id_birth(clean["id_number"])).sum())
    raise AssertionError(f"no measure for {name}")


@pytest.mark.parametrize("name", sorted(demo.DEFECT_RATES))
def test_measured_defect_rate_matches_the_documented_rate(store, name):
    cu = store["customers"]
    measured = _measure(name, cu)
    rate = demo.DEFECT_RATES[name]
    assert abs(measured / len(cu) - rate) <= 0.2 * rate, (name, measured)
    # Exact, in fact: the generator injects round(rate * N) rows and the summary says so.
    assert measured == demo.expected_defect_counts(N)[name] == store["summary"]["defects"][name]


def test_defect_thresholds_keep_a_margin(store):
    # A rule counting 24 months as 730 days, or 365 days as a year, finds the same rows.
    cu = store["customers"]
    as_of = pd.Timestamp(AS_OF)
    gap = (cu["updated_at"] - STALE_BEFORE).dt.days.abs()
    assert gap.min() >= 30
    gap = (cu["risk_assessed_at"] - RISK_BEFORE).dt.days.abs()
    due = gap.between(3, 28) & (cu["risk_assessed_at"] > RISK_BEFORE)  # the assessments due soon
    assert gap.min() >= 3 and gap[~due].min() >= 29
    assert (cu["id_expiry_date"] - as_of).dt.days.abs().min() >= 30
    stale = cu["updated_at"] < STALE_BEFORE
    assert (cu.loc[stale, "risk_assessed_at"] < RISK_BEFORE).all()  # stale implies an old assessment
    assert (cu.loc[stale, "status"] == "active").all()


def test_assessments_due_within_30_days_have_the_documented_count_and_window(store):
    # Hand-computed: 6 % of 2,000 rows = 120 assessments that expire 4-30 days after as_of; an
    # assessment dated d expires on d + 366 days (valid through d + 365).
    cu = store["customers"]
    expires = cu["risk_assessed_at"] + pd.Timedelta(days=366)
    days_left = (expires - pd.Timestamp(AS_OF)).dt.days
    due = cu[days_left.between(1, 30)]
    assert len(due) == 120 == store["summary"]["behaviour"]["risk_assessment_due"]
    assert days_left[due.index].between(4, 30).all()
    assert (due["status"] == "active").all()
    assert (due["risk_assessed_at"] >= due["open_date"]).all()
    # every other current assessment is at most 335 days old: none expires within 31 days
    assert (days_left[(days_left > 0) & ~days_left.between(1, 30)] >= 31).all()


def test_defect_rates_are_documented_in_the_module_docstring():
    for name, rate in demo.DEFECT_RATES.items():
        assert re.search(rf"{name}\s+{rate * 100:g} %", demo.__doc__), name


# --------------------------------------------------------------------------- behaviour


def _last_month(store) -> pd.DataFrame:
    mo = store["customer_monthly"]
    return mo[mo["month"] == mo["month"].max()].set_index("customer_id")


def test_aum_is_long_tailed(store):
    aum = _last_month(store)["aum"]
    aum = aum[aum > 0].sort_values(ascending=False)
    assert aum.median() < aum.mean()
    assert aum.median() < 50_000
    top = aum.iloc[: max(1, len(aum) // 100)].sum() / aum.sum()
    assert top > 0.20
    assert aum.max() > 100 * aum.median()


def test_balances_add_up_to_the_monthly_figures(store):
    h, p = store["holdings"], store["products"]
    last = _last_month(store)
    open_h = h[h["closed_on"].isna()].merge(p[["product_id", "balance_side"]], on="product_id")
    by_side = open_h.pivot_table(index="customer_id", columns="balance_side", values="balance",
                                 aggfunc="sum", fill_value=0.0)
    joined = last.join(by_side, how="left").fillna(0.0)
    n_hold = open_h.groupby("customer_id").size().reindex(joined.index, fill_value=0)
    tolerance = 0.01 * n_hold + 0.02  # each balance is rounded to the cent
    assert ((joined["asset"] - joined["aum"]).abs() <= tolerance).all()
    assert ((joined["liability"] - joined["loan_balance"]).abs() <= tolerance).all()
    assert (last["deposit_balance"] <= last["aum"] + 0.01).all()


def test_status_follows_the_churn_process(store):
    cu = store["customers"].set_index("customer_id")
    last = _last_month(store)
    h = store["holdings"]
    closed = cu.index[cu["status"] == "closed"]
    dormant = cu.index[cu["status"] == "dormant"]
    assert len(closed) > 0 and len(dormant) > 0
    assert (last.loc[closed, ["aum", "loan_balance", "txn_count", "digital_logins"]] == 0).all().all()
    assert (last.loc[dormant, ["txn_count", "digital_logins", "loan_balance"]] == 0).all().all()
    assert (last.loc[dormant, "aum"] > 0).all()
    assert h.loc[h["customer_id"].isin(closed), "closed_on"].notna().all()
    still_open = h[h["customer_id"].isin(dormant) & h["closed_on"].isna()]
    assert set(still_open["product_id"]) == {"P001"}  # a little money left on the demand account
    assert store["summary"]["behaviour"]["closed"] == len(closed)


def test_churners_show_it_in_their_activity_first(store):
    mo = store["customer_monthly"]
    cu = store["customers"].set_index("customer_id")
    end = mo["month"].max()
    recent = mo[mo["month"] > end - pd.DateOffset(months=3)].groupby("customer_id")["digital_logins"].mean()
    window = (mo["month"] <= end - pd.DateOffset(months=6)) & (mo["month"] > end - pd.DateOffset(months=9))
    before = mo[window].groupby("customer_id")["digital_logins"].mean()
    both = pd.concat({"recent": recent, "before": before}, axis=1).dropna().join(cu["status"])
    gone = both[both["status"] != "active"]
    active = both[both["status"] == "active"]
    assert gone["recent"].mean() < 0.5 * gone["before"].mean()
    assert 0.85 < active["recent"].mean() / active["before"].mean() < 1.15

    # Per closed customer: the three months before closing are well below months 7-9 before it.
    h = store["holdings"]
    closed_on = h[h["customer_id"].isin(cu.index[cu["status"] == "closed"])].groupby("customer_id")["closed_on"].max()
    closed_month = closed_on.dt.to_period("M").dt.to_timestamp()
    m = mo.join(closed_month.rename("closed_month"), on="customer_id", how="inner")
    ago = (m["closed_month"].dt.year - m["month"].dt.year) * 12 + m["closed_month"].dt.month - m["month"].dt.month
    late = m[ago.between(1, 2)].groupby("customer_id")["aum"].mean()
    early = m[ago.between(7, 9)].groupby("customer_id")["aum"].mean()
    pair = pd.concat({"late": late, "early": early}, axis=1).dropna()
    assert len(pair) > 20
    assert (pair["late"] < pair["early"]).mean() > 0.85

    # Complaints: far more frequent among customers who left.
    ct = store["contacts"]
    complaints = ct[ct["kind"] == "complaint"].groupby("customer_id").size().reindex(cu.index, fill_value=0)
    assert complaints[cu["status"] != "active"].mean() > 2 * complaints[cu["status"] == "active"].mean()


def test_about_to_churn_customers_are_active_but_declining(store):
    b = store["summary"]["behaviour"]
    assert b["churners"] == round(demo.BEHAVIOUR_RATES["churn"] * N)
    assert b["about_to_churn"] > 0
    assert b["closed"] + b["dormant"] + b["about_to_churn"] == b["churners"]


def test_mortgage_holders_buy_insurance_more_often(store):
    h, p = store["holdings"], store["products"]
    cat = h.merge(p[["product_id", "category"]], on="product_id")
    holders = cat.groupby("category")["customer_id"].agg(set)
    n = len(store["customers"])
    p_ins = len(holders["insurance"]) / n
    p_ins_mortgage = len(holders["insurance"] & holders["mortgage"]) / len(holders["mortgage"])
    assert p_ins_mortgage > 1.5 * p_ins


def test_holdings_follow_value_tiers(store):
    h, p = store["holdings"], store["products"]
    last = _last_month(store)
    cat = h[h["closed_on"].isna()].merge(p[["product_id", "category"]], on="product_id")
    wealth_holders = set(cat.loc[cat["category"].isin(["wealth_management", "fund"]), "customer_id"])
    rich = last.index[last["aum"] >= 200_000]
    poor = last.index[(last["aum"] > 0) & (last["aum"] < 20_000)]
    def share(ids) -> float:
        return float(np.mean([i in wealth_holders for i in ids]))

    assert share(rich) > 3 * share(poor)


def test_products_never_exceed_tolerance_except_the_documented_mismatches(store):
    h, p, cu = store["holdings"], store["products"], store["customers"]
    x = h[h["closed_on"].isna()].merge(p[["product_id", "risk_level"]], on="product_id").merge(
        cu[["customer_id", "risk_tolerance"]], on="customer_id")
    above = x["risk_level"].str[1].astype(int) > x["risk_tolerance"].str[1].astype(int)
    mismatched = set(x.loc[above, "customer_id"])
    b = store["summary"]["behaviour"]
    assert len(mismatched) == b["suitability_mismatch"]
    high_holders = set(x.loc[x["risk_level"].isin(["R4", "R5"]), "customer_id"])
    assert mismatched <= high_holders
    assert len(high_holders) == b["r4_r5_holders"]
    assert abs(len(mismatched) - demo.BEHAVIOUR_RATES["suitability_mismatch"] * len(high_holders)) <= 1


def test_marketing_contacts_only_reach_consenting_customers(store):
    ct, cu = store["contacts"], store["customers"]
    marketing = ct[ct["kind"] == "marketing"].merge(cu[["customer_id", "marketing_consent"]], on="customer_id")
    assert len(marketing) > 0 and marketing["marketing_consent"].all()
    assert marketing["resolved"].isna().all()
    assert set(ct["kind"]) == {"service", "marketing", "complaint"}
    assert set(ct["channel"]) <= {"branch", "phone", "app", "online", "wechat"}


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("kwargs", [{"customers": 0}, {"customers": 2.5}, {"months": 0}, {"seed": -1}])
def test_invalid_arguments_raise(tmp_path, kwargs):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", create_dir=True)
    with pytest.raises(ValueError):
        demo.generate(engine, progress=False, **kwargs)


def test_app_tables_are_left_alone_and_store_is_rebuilt(tmp_path):
    from sqlalchemy import insert, select

    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}", create_dir=True)
    init_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(schema.load_batches).values(
            loaded_at=pd.Timestamp("2026-01-01").to_pydatetime(), table_name="customers", source_file="x.csv",
            file_sha256="0" * 64, rows_read=1, rows_loaded=1, rows_rejected=0))
    demo.generate(engine, customers=150, months=3, progress=False)
    second = demo.generate(engine, customers=120, months=3, progress=False)  # replaces, not appends
    with engine.connect() as conn:
        assert conn.execute(select(schema.load_batches.c.source_file)).scalar_one() == "x.csv"
        assert len(conn.execute(select(schema.customers.c.customer_id)).all()) == 120
    assert second["row_counts"]["customers"] == 120
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_store_is_row_for_row_the_sqlite_store(pg_engine, tmp_path):
    # COPY on PostgreSQL and executemany on SQLite must store the same values: read both back
    # through SQLAlchemy's typed columns (dates, timestamps, floats, booleans) and compare.
    from sqlalchemy import select

    kwargs = {"customers": 300, "months": 4, "seed": 5}
    pg_summary = demo.generate(pg_engine, progress=False, **kwargs)
    lite = make_engine(f"sqlite:///{tmp_path / 'lite.db'}", create_dir=True)
    init_schema(lite)
    lite_summary = demo.generate(lite, progress=False, **kwargs)
    assert pg_summary["row_counts"] == lite_summary["row_counts"]
    for name in demo.STORE_TABLE_NAMES:
        table = schema.metadata.tables[name]
        stmt = select(table).order_by(*table.primary_key.columns)
        with pg_engine.connect() as a, lite.connect() as b:
            assert a.execute(stmt).all() == b.execute(stmt).all(), name
    lite.dispose()
