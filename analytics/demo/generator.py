"""The demo store's generator: customers made chunk by chunk from the reference data, then written.

See :mod:`analytics.demo` for what it makes, the injected defects and why a seed gives the
same rows on any machine.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text
from tqdm import tqdm

from analytics import schema, settings
from analytics.demo.reference import (
    BEHAVIOUR_RATES,
    BRANCHES,
    CARD_UPGRADE_PROB,
    COMPLAINT_CATEGORIES,
    CONTACT_CHANNELS,
    CREDIT_CARD_BINS,
    CREDIT_GRADE_CUTS,
    CREDIT_GRADES,
    DEBIT_CARD_BINS,
    DEFECT_RATES,
    EMAIL_DOMAIN_SHARES,
    EMAIL_DOMAINS,
    FRESHNESS_MONTHS,
    INCOME_BANDS,
    INCOME_CUTS,
    MARKETING_CATEGORIES,
    MOBILE_PREFIXES,
    OCCUPATIONS,
    ONBOARDING_CHANNELS,
    PRODUCT_INDEX,
    PRODUCT_RISK_LEVEL,
    PRODUCT_TIERS,
    PRODUCTS,
    REGIONS,
    RISK_ASSESSMENT_VALID_DAYS,
    RISK_TOLERANCE_CUTS,
    RISK_TOLERANCES,
    SERVICE_CATEGORIES,
    VALUE_TIER_CUTS,
    expected_defect_counts,
    name_and_address_pools,
)
from analytics.store import bulk_insert, bulk_load
from analytics.validators import luhn_check_digits, resident_id_check_digits

log = logging.getLogger(__name__)

DEFAULT_AS_OF = date(2026, 10, 31)
# Ages (days before as_of) of the assessments made due soon: they expire 30 down to 4 days after as_of.
_DUE_AGE_DAYS = (RISK_ASSESSMENT_VALID_DAYS - 29, RISK_ASSESSMENT_VALID_DAYS - 3)
# Fixed, not a setting: the chunk is the unit of randomness, so changing it would change the data.
CHUNK_CUSTOMERS = 50_000

STORE_TABLE_NAMES = ("branches", "products", "customers", "holdings", "customer_monthly", "contacts", "consents")

# Consents by purpose besides marketing (which follows the customer's marketing flag): the share
# of customers who agreed to profiling and to third-party sharing when they opened their account.
CONSENT_RATES = {"profiling": 0.85, "third_party": 0.2}
# Of the customers without marketing consent today, the share who once gave it and withdrew it.
MARKETING_WITHDRAWN_RATE = 0.2


def consent_frame(customers: pd.DataFrame, as_of: date, seed: int, chunk: int) -> pd.DataFrame:
    """The ``consents`` rows of a chunk of customers, from a random stream of their own (so the
    other tables stay what they were for a seed).

    A live marketing consent exactly when ``customers.marketing_consent`` is true (granted within a
    month of opening); some customers without it granted and later withdrew it; profiling and
    third-party consents at :data:`CONSENT_RATES`, granted at opening.
    """
    rng = np.random.default_rng([seed, 0xC0, chunk])
    n = len(customers)
    opened = pd.to_datetime(customers["open_date"]).to_numpy(dtype="datetime64[s]")
    as_of_s = np.datetime64(as_of, "s")
    flag = customers["marketing_consent"].to_numpy(dtype=bool)
    withdrew = ~flag & (rng.random(n) < MARKETING_WITHDRAWN_RATE)
    after_open = (rng.integers(0, 30 * 86400, n)).astype("timedelta64[s]")
    granted = np.minimum(opened + after_open, as_of_s)
    span = np.maximum((as_of_s - granted).astype(np.int64), 1)
    withdrawn = granted + (rng.random(n) * span).astype(np.int64).astype("timedelta64[s]")
    parts = [_frame({"customer_id": customers["customer_id"].to_numpy()[flag | withdrew],
                     "purpose": "marketing", "granted_at": granted[flag | withdrew],
                     "withdrawn_at": np.where(withdrew, withdrawn, np.datetime64("NaT"))[flag | withdrew]})]
    for purpose, rate in CONSENT_RATES.items():
        keep = rng.random(n) < rate
        parts.append(_frame({"customer_id": customers["customer_id"].to_numpy()[keep], "purpose": purpose,
                             "granted_at": opened[keep], "withdrawn_at": np.datetime64("NaT")}))
    return pd.concat(parts, ignore_index=True)

_EPOCH = date(1970, 1, 1)
_DAY_SECONDS = 86_400


# ---------------------------------------------------------------------------------------------
# Small vectorised helpers
# ---------------------------------------------------------------------------------------------


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _add_months(d: date, months: int) -> date:
    """``d`` moved by whole calendar months, the day clamped to the month's length."""
    y, m = divmod(d.year * 12 + d.month - 1 + months, 12)
    m += 1
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return date(y, m, min(d.day, (nxt - date(y, m, 1)).days))


def _month_of(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of day numbers."""
    return days.astype("M8[D]").astype("M8[M]").astype(np.int64)


def _month_start(months: np.ndarray) -> np.ndarray:
    """Day number of the first day of months-since-1970 values."""
    return np.asarray(months, dtype=np.int64).astype("M8[M]").astype("M8[D]").astype(np.int64)


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers as datetime64[s] (pandas has no day unit); bulk_insert formats them per column type."""
    return np.asarray(days, dtype=np.int64).astype("M8[D]").astype("M8[s]")


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype=np.int64).astype("M8[s]")


def _uniform_day(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniformly random day in [lo, hi] per row (hi < lo gives lo)."""
    span = np.maximum(hi - lo, 0) + 1
    return lo + np.floor(rng.random(len(lo)) * span).astype(np.int64)


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of a (rows, categories) weight matrix; zero weight is never drawn."""
    c = np.cumsum(probs, axis=1)
    c = c / c[:, -1:]  # x / x is exactly 1.0, so the last column always catches u < 1
    return (rng.random((probs.shape[0], 1)) < c).argmax(axis=1)


def _pick(rng: np.random.Generator, eligible: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of exactly ``min(k, eligible.sum())`` distinct eligible rows.

    With ``weights``: weighted sampling without replacement (Efraimidis-Spirakis keys).
    """
    idx = np.flatnonzero(eligible)
    k = int(min(k, len(idx)))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if weights is None:
        return np.sort(rng.choice(idx, size=k, replace=False))
    keys = rng.exponential(size=len(idx)) / weights[idx]
    return np.sort(idx[np.argpartition(keys, k - 1)[:k]])


def _allocate(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` over chunks proportionally to ``sizes`` (largest remainder; sums exactly)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = total * sizes / max(int(sizes.sum()), 1)
    base = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(sizes)), -(exact - base)))
    base[order[: total - int(base.sum())]] += 1
    return base


def _collisions(keys: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Rows whose key repeats an earlier row's key in this chunk or a key of earlier chunks."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    rep = np.zeros(len(keys), dtype=bool)
    rep[1:] = ks[1:] == ks[:-1]
    out = np.empty_like(rep)
    out[order] = rep
    if used.size:
        pos = np.minimum(np.searchsorted(used, keys), used.size - 1)
        out |= used[pos] == keys
    return out


def _ascii_strings(rng: np.random.Generator, n: int, lengths: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Random ASCII strings with characters in [lo, hi] (code points) and the given lengths."""
    width = int(lengths.max()) if n else 1
    codes = rng.integers(lo, hi + 1, size=(n, width), dtype=np.uint8)
    codes[np.arange(width)[None, :] >= lengths[:, None]] = 0  # NUL bytes are dropped by the S dtype
    return codes.view(f"S{width}").ravel().astype(f"U{width}")


def _text(values: np.ndarray) -> pd.Series:
    """A text column kept as Python strings (numpy ``object``), positions as index.

    pandas 3 would store a numpy string array as Arrow strings, which :func:`~analytics.store.bulk_insert`
    turns back into Python strings one row at a time: building and unbuilding them took a quarter
    of making the chunks (6.0 s of frames and draws at 200k customers, 4.4 s without). The values
    written are the same.
    """
    return pd.Series(values, dtype=object, copy=False)


def _frame(columns: dict) -> pd.DataFrame:
    """A chunk's rows with every numpy text column (``U`` or ``object``) kept as :func:`_text`."""
    return pd.DataFrame({name: _text(v) if isinstance(v, np.ndarray) and v.dtype.kind in "UO" else v
                         for name, v in columns.items()})


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


class _Generator:
    """Holds the run's reference arrays and the state carried between chunks (ids, used keys)."""

    def __init__(self, customers: int, months: int, seed: int, as_of: date) -> None:
        self.n, self.months, self.seed, self.as_of = customers, months, seed, as_of
        self.as_of_d = _day(as_of)
        self.last_m = int(_month_of(np.array([self.as_of_d]))[0])
        self.first_m = self.last_m - months + 1
        self.month_start = _month_start(np.arange(self.first_m, self.last_m + 2))  # one extra: ends
        self.moy = (np.arange(self.first_m, self.last_m + 1) % 12) + 1  # month of year 1..12
        self.fresh_cutoff_d = _day(_add_months(as_of, -FRESHNESS_MONTHS))
        self.pools = name_and_address_pools()

        reg = REGIONS
        self.reg_province = np.array([r[0] for r in reg])
        self.reg_city = np.array([r[1] for r in reg])
        self.reg_district = np.array([r[2] for r in reg])
        self.reg_code = np.array([int(r[3]) for r in reg], dtype=np.int64)
        w = np.array([r[4] for r in reg])
        self.reg_p = w / w.sum()
        self.reg_prefix = np.array([(r[0] if r[0] != r[1] else "") + r[1] + r[2] for r in reg])
        cities = list(dict.fromkeys(r[1] for r in reg))
        self.reg_city_id = np.array([cities.index(r[1]) for r in reg])
        order = np.argsort(self.reg_city_id, kind="stable")
        self.city_districts = order
        self.city_first = np.searchsorted(self.reg_city_id[order], np.arange(len(cities)))
        self.city_count = np.bincount(self.reg_city_id, minlength=len(cities))
        self.tier1_city = np.isin(self.reg_city, ["北京市", "上海市", "广州市", "深圳市"])

        code_index = {int(r[3]): i for i, r in enumerate(reg)}
        self.br_region = np.array([code_index[int(c)] for c, _ in BRANCHES])
        bw = np.array([w for _, w in BRANCHES])
        self.br_p = bw / bw.sum()
        self.br_ids = np.array([f"BR{i + 1:03d}" for i in range(len(BRANCHES))])
        # Relationship managers: 6-16 per branch by size, codes RM<branch><nn>.
        self.rm_count = np.round(4 + 6 * bw).astype(np.int64)
        self.rm_first = np.concatenate([[0], np.cumsum(self.rm_count)[:-1]])
        self.rm_codes = np.array([f"RM{b + 1:02d}{k + 1:02d}" for b in range(len(BRANCHES))
                                  for k in range(self.rm_count[b])])

        self.used_ids = np.empty(0, dtype=np.int64)
        self.used_phones = np.empty(0, dtype=np.int64)
        self.next_holding_id = 1
        self.next_contact_id = 1

    # ------------------------------------------------------------------ reference tables

    def branches(self) -> pd.DataFrame:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        r = self.br_region
        opened = _day(date(1992, 1, 1)) + rng.integers(0, _day(date(2010, 12, 31)) - _day(date(1992, 1, 1)),
                                                        len(r))
        return pd.DataFrame({
            "branch_id": self.br_ids,
            "name": np.strings.add(np.strings.add(self.reg_city[r], self.reg_district[r]), "支行"),
            "city": self.reg_city[r],
            "province": self.reg_province[r],
            "region_code": self.reg_code[r].astype(str),
            "opened_on": _dates(opened),
        })

    @staticmethod
    def products() -> pd.DataFrame:
        frame = pd.DataFrame(list(PRODUCTS), columns=["product_id", "name", "category", "risk_level",
                                                      "annual_margin", "balance_side"])
        frame["tier_rank"] = frame["product_id"].map(PRODUCT_TIERS).astype("Int64")
        return frame

    # ------------------------------------------------------------------ one chunk

    def chunk(self, index: int, start: int, m: int, quota: dict[str, int]) -> tuple[dict[str, pd.DataFrame], dict]:
        """Make the rows of customers ``start .. start + m - 1``; returns frames and counts."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, index]))
        c = self._identity(rng, m)
        stats = self._inject_identity_defects(rng, c, m, quota)
        self._profile(rng, c, m)
        self._churn_plan(rng, c, m)
        hold = self._holdings(rng, c, m)
        # Card upgrades draw from a stream of their own: every other row stays what it was.
        hold["upgrade"] = self._card_upgrades(np.random.default_rng(np.random.SeedSequence([self.seed, 7, index])),
                                              c, hold, m)
        stats.update(self._suitability(rng, c, hold))
        monthly = self._monthly(rng, c, hold, m)
        stats.update(self._record_dates(rng, c, m, quota))
        stats.update(self._assessments_due(index, c, quota))
        hold_df = self._holding_frame(rng, c, hold, monthly)
        contacts = self._contacts(rng, c, m)
        stats.update(self._inject_field_defects(rng, c, m, quota))

        # One Python string per customer, shared by their holdings, months and contacts.
        cust_ids = np.strings.add("C", (100_000_001 + start + np.arange(m)).astype(str)).astype(object)
        c["customer_id"] = cust_ids
        customers = self._customer_frame(c)
        monthly_df = self._monthly_frame(c, monthly)
        hold_df["customer_id"] = _text(cust_ids[hold_df.pop("cust").to_numpy()])
        contacts["customer_id"] = _text(cust_ids[contacts.pop("cust").to_numpy()])
        stats.update({
            "churners": int(c["churner"].sum()),
            "closed": int((c["status"] == "closed").sum()),
            "dormant": int((c["status"] == "dormant").sum()),
            "about_to_churn": int((c["churner"] & (c["t_churn"] >= self.months)).sum()),
            "temporary_dips": int(c["dip"].sum()),
        })
        return {"customers": customers, "holdings": hold_df, "customer_monthly": monthly_df,
                "contacts": contacts}, stats

    # ------------------------------------------------------------------ identity

    def _identity(self, rng: np.random.Generator, m: int) -> dict:
        p = self.pools
        male = rng.random(m) < 0.51
        # Right-skewed adult ages, mode ~35, mean ~42, none under 18 or over 86.
        age = np.minimum(18.1 + rng.gamma(3.2, 7.5, m), 85.9)
        birth = self.as_of_d - (age * 365.2425).astype(np.int64)

        branch = rng.choice(len(self.br_ids), m, p=self.br_p)
        home = self.br_region[branch]
        city = self.reg_city_id[home]
        same_city = self.city_districts[self.city_first[city] + (rng.random(m) * self.city_count[city]).astype(int)]
        home = np.where(rng.random(m) < 0.5, home, same_city)
        moved = rng.random(m) < 0.10  # lives away from the branch's city
        home = np.where(moved, rng.choice(len(self.reg_code), m, p=self.reg_p), home)
        # The ID carries the place of first registration: usually home, often elsewhere.
        id_region = np.where(rng.random(m) < 0.65, home, rng.choice(len(self.reg_code), m, p=self.reg_p))

        surname = p["surnames"][rng.choice(len(p["surnames"]), m, p=p["surname_p"])]
        given = np.where(male, p["male"][rng.choice(len(p["male"]), m, p=p["male_p"])],
                         p["female"][rng.choice(len(p["female"]), m, p=p["female_p"])])

        def draw_phone(rows: np.ndarray) -> np.ndarray:
            return (MOBILE_PREFIXES[rng.integers(len(MOBILE_PREFIXES), size=len(rows))] * 100_000_000
                    + rng.integers(0, 100_000_000, size=len(rows)))

        phone = self._unique(draw_phone, m, "used_phones")
        bd = birth.astype("M8[D]")
        ymd = ((bd.astype("M8[Y]").astype(np.int64) + 1970) * 10_000
               + (bd.astype("M8[M]").astype(np.int64) % 12 + 1) * 100
               + (birth - _month_start(_month_of(birth)) + 1))
        base = self.reg_code[id_region] * 100_000_000_000 + ymd * 1000

        def draw_id(rows: np.ndarray) -> np.ndarray:
            # Sequence digits: the last is odd for men, even for women (GB 11643).
            return base[rows] + rng.integers(0, 500, size=len(rows)) * 2 + male[rows]

        body = self._unique(draw_id, m, "used_ids")
        return {"male": male, "age": age, "birth": birth, "branch": branch, "home": home,
                "surname": surname, "given": given, "phone": phone, "id_body": body}

    def _unique(self, draw, m: int, used_attr: str) -> np.ndarray:
        """Int keys unique within the run: ``draw(rows)`` is called again for colliding rows.

        The keys of earlier chunks are kept (sorted) in ``self.<used_attr>``: a phone number or
        an ID body repeated by chance would look like an undocumented duplicate customer.
        """
        keys = draw(np.arange(m))
        used = getattr(self, used_attr)
        for _ in range(100):
            bad = np.flatnonzero(_collisions(keys, used))
            if bad.size == 0:
                break
            keys[bad] = draw(bad)
        else:  # pragma: no cover - would need keys for a sizeable share of the key space
            raise RuntimeError("could not draw unique identifiers")
        setattr(self, used_attr, np.union1d(used, keys))
        return keys

    def _inject_identity_defects(self, rng, c: dict, m: int, q: dict[str, int]) -> dict:
        """Choose duplicate rows and ID/phone defect rows; copy identities into the duplicates."""
        rows = np.ones(m, dtype=bool)
        dup = _pick(rng, rows, q["duplicate_customer"])
        free = rows.copy()
        free[dup] = False
        picked = {}
        taken = ~free
        for name in ("invalid_id_check_digit", "gender_mismatch_id", "birth_date_mismatch_id"):
            picked[name] = _pick(rng, ~taken, q[name])
            taken[picked[name]] = True
        taken_phone = ~free
        for name in ("missing_phone", "bad_phone_format"):
            picked[name] = _pick(rng, ~taken_phone, q[name])
            taken_phone[picked[name]] = True
        clean = free & ~taken & ~taken_phone
        src = _pick(rng, clean, len(dup))
        src = rng.permutation(src)  # which duplicate copies which source: random pairing
        dup = dup[: len(src)]
        for key in ("male", "age", "birth", "surname", "given", "phone", "id_body"):
            c[key][dup] = c[key][src]

        name = np.strings.add(c["surname"], c["given"])
        # Duplicates are typed again at another counter: sometimes with stray spaces.
        style = rng.choice(4, len(dup), p=[0.4, 0.25, 0.2, 0.15])
        variants = [name[src],
                    np.strings.add(np.strings.add(c["surname"][src], " "), c["given"][src]),
                    np.strings.add(name[src], " "),
                    np.strings.add(np.strings.add(c["surname"][src], "\u3000"), c["given"][src])]
        name = name.astype(object)
        for s in range(4):
            name[dup[style == s]] = variants[s][style == s]
        c["name"] = name

        check = resident_id_check_digits(c["id_body"])
        bad = picked["invalid_id_check_digit"]
        alphabet = np.array(list("0123456789X"))
        pos = np.searchsorted(alphabet, check[bad])  # "X" sorts after digits
        check[bad] = alphabet[(pos + rng.integers(1, 11, len(bad))) % 11]
        c["id_number"] = np.strings.add(c["id_body"].astype(str), check)

        c["gender"] = np.where(c["male"], "M", "F").astype(object)
        flip = picked["gender_mismatch_id"]
        c["gender"][flip] = np.where(c["male"][flip], "F", "M")
        c["birth_field"] = c["birth"].copy()
        shift = rng.choice(np.array([-366, -365, -3, -2, -1, 1, 2, 3, 365, 366]), len(picked["birth_date_mismatch_id"]))
        c["birth_field"][picked["birth_date_mismatch_id"]] += shift

        phone = c["phone"].astype(str).astype(object)
        bp = picked["bad_phone_format"]
        kind = rng.integers(0, 5, len(bp))
        raw = c["phone"][bp].astype(str)
        broken = np.where(kind == 0, np.strings.slice(raw, 0, 10), raw)  # a digit lost
        broken = np.where(kind == 1, np.strings.add(raw, rng.integers(0, 10, len(bp)).astype(str)), broken)
        broken = np.where(kind == 2, np.strings.add(rng.choice(np.array(["10", "11", "12"]), len(bp)),
                                                    np.strings.slice(raw, 2, 11)), broken)
        broken = np.where(kind == 3, np.strings.add(np.strings.add(np.strings.slice(raw, 0, 3), "O"),
                                                    np.strings.slice(raw, 4, 11)), broken)
        landline = np.strings.add(rng.choice(np.array(["010", "021", "020", "0755", "0571"]), len(bp)),
                                  rng.integers(10_000_000, 99_999_999, len(bp)).astype(str))
        broken = np.where(kind == 4, landline, broken)
        phone[bp] = broken
        phone[picked["missing_phone"]] = None
        c["phone_field"] = phone
        c["dup"], c["dup_source"] = dup, src
        return {"duplicate_customer": len(dup), **{k: len(v) for k, v in picked.items()}}

    # ------------------------------------------------------------------ profile

    def _profile(self, rng, c: dict, m: int) -> None:
        age = c["age"]
        z = rng.standard_normal(m)  # latent wealth
        c["z"] = z
        # Tenure: 7 % opened in the last six months, the rest spread over 15 years (more recent).
        recent = rng.random(m) < 0.07
        tenure = np.where(recent, rng.uniform(0, 183, m), 183 + rng.beta(1.1, 1.5, m) * (15 * 365.25 - 183))
        tenure = np.minimum(tenure, (age - 18.05) * 365.2425)  # nobody opens before 18
        c["open"] = self.as_of_d - tenure.astype(np.int64)
        c["open_idx"] = _month_of(c["open"]) - self.first_m

        year = c["open"].astype("M8[D]").astype("M8[Y]").astype(np.int64) + 1970
        modern = year >= 2016
        # branch, mobile_app, online, partner, payroll
        probs = np.where(modern[:, None], [0.30, 0.38, 0.10, 0.09, 0.13], [0.68, 0.0, 0.12, 0.06, 0.14])
        probs = np.where((modern & (age > 55))[:, None], [0.60, 0.15, 0.05, 0.05, 0.15], probs)
        c["channel"] = ONBOARDING_CHANNELS[_choice_rows(rng, probs)]

        # employee professional civil_servant teacher healthcare business_owner self_employed
        # worker farmer freelancer student retired
        young = [0.30, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.10, 0.0, 0.05, 0.55, 0.0]
        middle = [0.33, 0.12, 0.06, 0.05, 0.04, 0.05, 0.08, 0.12, 0.06, 0.09, 0.0, 0.0]
        old = [0.07, 0.0, 0.0, 0.0, 0.0, 0.03, 0.05, 0.0, 0.10, 0.0, 0.0, 0.75]
        probs = np.where((age < 23)[:, None], young, np.where((age >= 60)[:, None], old, middle))
        occ = _choice_rows(rng, probs)
        rich = (z > 1.2) & (age >= 23) & (age < 60) & (rng.random(m) < 0.35)
        occ = np.where(rich, np.where(rng.random(m) < 0.6, 5, 1), occ)
        c["occupation"] = OCCUPATIONS[occ].astype(object)
        occ_effect = np.array([0.0, 0.4, 0.2, 0.1, 0.3, 0.6, 0.1, -0.3, -0.6, 0.0, -1.0, -0.4])[occ]

        z_inc = 0.75 * z + 0.66 * rng.standard_normal(m) + occ_effect
        c["income_idx"] = np.searchsorted(INCOME_CUTS, z_inc)
        c["income_band"] = INCOME_BANDS[c["income_idx"]]
        age_eff = -(((age - 52) / 18) ** 2)
        lw = 9.6 + 0.5 * age_eff + 1.8 * z - 0.8 * (occ == 10)
        level = np.exp(lw)  # AUM the customer would hold at as_of without churn
        c["level"] = level
        c["tier"] = np.searchsorted(VALUE_TIER_CUTS, level, side="right")

        score = 0.55 * z - 0.025 * (age - 42) + 0.9 * rng.standard_normal(m)
        c["tol"] = np.searchsorted(RISK_TOLERANCE_CUTS, score)
        grade_score = 0.5 * z_inc + 0.85 * rng.standard_normal(m)
        c["grade"] = CREDIT_GRADES[np.searchsorted(-CREDIT_GRADE_CUTS, -grade_score)]

        ctype = np.where(np.isin(occ, [5, 6]) & (rng.random(m) < 0.6), "small_business_owner", "individual")
        c["customer_type"] = np.where(level >= VALUE_TIER_CUTS[2], "private_banking", ctype)
        b = c["branch"]
        c["rm"] = self.rm_codes[self.rm_first[b] + (rng.random(m) * self.rm_count[b]).astype(np.int64)]
        c["consent"] = rng.random(m) < BEHAVIOUR_RATES["marketing_consent"]

        # Engagement: logins fall with age and rise for app-onboarded customers.
        login_age = np.where(age < 35, 1.6, np.where(age < 55, 1.0, 0.45))
        c["lam_login"] = np.exp(rng.normal(np.log(7.0), 0.7, m)) * login_age * np.where(
            c["channel"] == "mobile_app", 1.5, 1.0)
        c["lam_txn"] = np.exp(rng.normal(np.log(9.0), 0.6, m)) * (1 + 0.15 * c["tier"])
        c["ticket"] = np.exp(rng.normal(np.log(280.0), 0.5, m)) * (level / 20_000) ** 0.25

    def _churn_plan(self, rng, c: dict, m: int) -> None:
        M = self.months
        t_churn = rng.integers(2, M + 3, m)  # up to 3 months after as_of: "about to churn"
        length = rng.integers(3, 7, m)  # decline months before the churn month
        start = t_churn - length
        eligible = c["open_idx"] < start  # at least one normal month first
        # Newer, poorer customers churn more often.
        w = np.exp(-0.35 * c["z"]) * np.where(self.as_of_d - c["open"] < 730, 1.6, 1.0)
        churner = np.zeros(m, dtype=bool)
        churner[_pick(rng, eligible, round(BEHAVIOUR_RATES["churn"] * m), w)] = True
        past = churner & (t_churn <= M - 1)
        closed = past & (rng.random(m) < BEHAVIOUR_RATES["churn_closed_share"])
        c.update(churner=churner, t_churn=t_churn, decline_start=start, decline_len=length,
                 closed=closed, dormant=past & ~closed, churned=past)
        c["status"] = np.where(closed, "closed", np.where(past, "dormant", "active"))
        tc = np.clip(t_churn, 0, M - 1)
        churn_day = _uniform_day(rng, self.month_start[tc], self.month_start[tc + 1] - 1)
        c["churn_day"] = np.where(past, np.minimum(churn_day, self.as_of_d), np.iinfo(np.int64).max)
        # The last day products could be opened: before the decline for churners.
        decline_day = self.month_start[np.clip(start, 0, M)] - 1
        c["last_open_day"] = np.where(churner, np.maximum(np.minimum(decline_day, self.as_of_d), c["open"]),
                                      self.as_of_d)
        dip = _pick(rng, ~churner, round(BEHAVIOUR_RATES["temporary_dip"] * m))
        c["dip"] = np.zeros(m, dtype=bool)
        c["dip"][dip] = True
        c["dip_start"] = rng.integers(0, M, m)
        c["dip_depth"] = rng.uniform(0.3, 0.5, m)

    # ------------------------------------------------------------------ holdings

    def _holdings(self, rng, c: dict, m: int) -> dict:
        tier, tol, age, inc = c["tier"], c["tol"], c["age"], c["income_idx"]

        def u() -> np.ndarray:  # one fresh uniform per decision
            return rng.random(m)

        has = {}
        has["call"] = u() < np.array([0.03, 0.10, 0.20, 0.25])[tier]
        has["td"] = u() < np.array([0.22, 0.50, 0.65, 0.70])[tier]
        has["wm"] = (u() < np.array([0.05, 0.35, 0.60, 0.75])[tier]) & (tol >= 1)
        fund_mult = np.array([0.0, 0.0, 1.0, 1.4, 1.7])[tol]  # funds are R3+: C3 and above only
        has["fund"] = u() < np.array([0.04, 0.22, 0.45, 0.60])[tier] * fund_mult
        has["mortgage"] = (age >= 25) & (age <= 60) & (u() < 0.03 + 0.045 * inc)
        ins_p = np.array([0.04, 0.12, 0.25, 0.35])[tier]
        ins_p = np.minimum(0.9, ins_p * np.where(has["mortgage"], BEHAVIOUR_RATES["insurance_lift_with_mortgage"], 1))
        has["insurance"] = u() < ins_p
        has["card"] = (age <= 70) & (u() < np.minimum(0.75, 0.22 + 0.09 * inc))
        has["consumer_loan"] = (age >= 22) & (age <= 55) & (u() < 0.07)
        has["gold"] = (u() < np.array([0.01, 0.04, 0.08, 0.10])[tier]) & (tol >= 2)
        # The probability behind each draw above (the demo's truth, read by analytics.demo.truth);
        # computed beside the draws, so it takes no random numbers and changes no row.
        prob = {
            "call": np.array([0.03, 0.10, 0.20, 0.25])[tier],
            "td": np.array([0.22, 0.50, 0.65, 0.70])[tier],
            "wm": np.array([0.05, 0.35, 0.60, 0.75])[tier] * (tol >= 1),
            "fund": np.clip(np.array([0.04, 0.22, 0.45, 0.60])[tier] * fund_mult, 0.0, 1.0),
            "mortgage": ((age >= 25) & (age <= 60)) * np.clip(0.03 + 0.045 * inc, 0.0, 1.0),
            "insurance": np.clip(ins_p, 0.0, 1.0),
            "card": (age <= 70) * np.clip(np.minimum(0.75, 0.22 + 0.09 * inc), 0.0, 1.0),
            "consumer_loan": ((age >= 22) & (age <= 55)) * 0.07,
            "gold": np.array([0.01, 0.04, 0.08, 0.10])[tier] * (tol >= 2),
        }

        def choose(products: list[str], weights: list[float], mask: np.ndarray) -> np.ndarray:
            pidx = np.array([PRODUCT_INDEX[p] for p in products])
            w = np.array(weights)[None, :] * (PRODUCT_RISK_LEVEL[pidx][None, :] <= tol[mask][:, None])
            return pidx[_choice_rows(rng, w)]

        prod = {
            "dd": np.full(m, PRODUCT_INDEX["P001"]),
            "call": np.full(m, PRODUCT_INDEX["P002"]),
            "gold": np.full(m, PRODUCT_INDEX["P025"]),
            "mortgage": np.full(m, PRODUCT_INDEX["P023"]),
            "consumer_loan": np.full(m, PRODUCT_INDEX["P024"]),
        }
        td = np.full(m, -1)
        mass = tier == 0
        td[has["td"] & mass] = choose(["P003", "P004", "P005"], [3, 4, 3], has["td"] & mass)
        td[has["td"] & ~mass] = choose(["P003", "P004", "P005", "P006"], [2, 3, 2, 3], has["td"] & ~mass)
        prod["td"] = td
        for key, plist, w in (("wm", ["P007", "P008", "P009", "P010"], [3, 3, 2, 2]),
                              ("fund", ["P011", "P012", "P013", "P014", "P015", "P016"], [3, 2.5, 2, 2, 1.2, 1]),
                              ("insurance", ["P017", "P018", "P019", "P020"], [2, 2, 3, 1.5])):
            arr = np.full(m, -1)
            arr[has[key]] = choose(plist, w, has[key])
            prod[key] = arr
        # Card tiers: classic for the mass tier; above it, gold or platinum for most (one draw, as before).
        card_u = u()
        prod["card"] = np.where((tier >= 1) & (card_u < 0.35), PRODUCT_INDEX["P022"],
                                np.where((tier >= 1) & (card_u < 0.7), PRODUCT_INDEX["P026"], PRODUCT_INDEX["P021"]))
        has["dd"] = np.ones(m, dtype=bool)

        # Shares of AUM across the customer's asset products (mass customers: mostly demand deposit).
        def g(scale) -> np.ndarray:
            return rng.gamma(2.0, 1.0, m) * scale

        share = {
            "dd": g(np.array([3.0, 1.5, 1.0, 0.6])[tier]), "call": g(0.8), "td": g(2.0), "wm": g(2.0),
            "fund": g(1.5), "insurance": g(1.0), "gold": g(0.3),
        }
        for k in share:
            share[k] = np.where(has[k], share[k], 0.0)
        total = sum(share.values())
        for k in share:
            share[k] = share[k] / total
        c["dep_share"] = share["dd"] + share["call"] + share["td"]

        # Loans: principal, opening day and term.
        lo = c["open"]
        hi = c["last_open_day"]
        opened = {k: _uniform_day(rng, lo, hi) for k in ("call", "td", "wm", "fund", "insurance", "gold",
                                                         "mortgage", "card")}
        opened["dd"] = c["open"].copy()
        cl_lo = np.maximum(lo, self.as_of_d - 4 * 365)
        opened["consumer_loan"] = _uniform_day(rng, cl_lo, hi)
        has["consumer_loan"] &= cl_lo <= hi  # no loan taken out after a churner's decline began
        city_factor = np.where(self.tier1_city[c["home"]], 1.8, 1.0)
        loans = {
            "mortgage_p0": np.exp(rng.normal(np.log(700_000), 0.5, m)) * city_factor,
            "mortgage_term": rng.choice(np.array([240, 300, 360]), m),
            "consumer_p0": np.clip(np.exp(rng.normal(np.log(80_000), 0.7, m)), 10_000, 500_000),
            "card_spend": np.exp(rng.normal(np.log(3_500), 0.7, m)) * (1 + 0.3 * c["income_idx"]),
        }
        # A matured time deposit in the past for some customers: holdings history, balance 0.
        hist = (u() < 0.12) & ~c["churner"] & (c["open"] < self.as_of_d - 200)
        hist_prod = rng.choice(np.array([PRODUCT_INDEX[p] for p in ("P003", "P004", "P005")]), m)
        hist_term = np.array([91, 365, 1096])[hist_prod - PRODUCT_INDEX["P003"]]
        hist_open = _uniform_day(rng, c["open"], np.full(m, self.as_of_d - 120))
        hist_close = hist_open + hist_term
        hist &= hist_close < self.as_of_d
        return {"has": has, "prod": prod, "share": share, "opened": opened, "loans": loans, "prob": prob,
                "window": {"lo": lo, "hi": hi, "consumer_loan_lo": cl_lo},
                "hist": hist, "hist_prod": hist_prod, "hist_open": hist_open, "hist_close": hist_close}

    @staticmethod
    def _card_upgrades(rng, c: dict, hold: dict, m: int) -> dict:
        """Which classic or gold card holders upgrade to the next tier, and when (own random stream).

        A holder upgrades with :data:`CARD_UPGRADE_PROB` of their value tier, on a day uniform between
        the card's opening and the last day they could open products. ``prob`` is that probability per
        customer (0 where the card cannot be upgraded), the demo's truth for the card up-sell.
        """
        card = hold["prod"]["card"]
        next_tier = {PRODUCT_INDEX["P021"]: PRODUCT_INDEX["P026"], PRODUCT_INDEX["P026"]: PRODUCT_INDEX["P022"]}
        target = np.array([next_tier.get(int(p), -1) for p in range(len(PRODUCTS))])[card]
        can = hold["has"]["card"] & (target >= 0)
        prob = np.where(can, np.asarray(CARD_UPGRADE_PROB)[c["tier"]], 0.0)
        upgraded = rng.random(m) < prob
        lo = hold["opened"]["card"]
        hi = np.maximum(c["last_open_day"], lo)
        day = _uniform_day(rng, lo, hi)
        return {"upgraded": upgraded, "product": target, "day": day, "prob": prob, "lo": lo, "hi": hi,
                "rng": rng}

    def _suitability(self, rng, c: dict, hold: dict) -> dict:
        """Lower the tolerance of a few R4/R5 holders (reassessed lower, product still held)."""
        fund_risk = PRODUCT_RISK_LEVEL[np.maximum(hold["prod"]["fund"], 0)]
        high = (fund_risk >= 3) & hold["has"]["fund"] & ~c["churned"]
        k = round(BEHAVIOUR_RATES["suitability_mismatch"] * int(high.sum()))
        rows = _pick(rng, high, k)
        c["tol"] = c["tol"].copy()
        c["tol"][rows] = rng.integers(1, 3, len(rows))  # C2 or C3, below R4
        return {"suitability_mismatch": len(rows), "r4_r5_holders": int(high.sum())}

    # ------------------------------------------------------------------ monthly activity

    def _monthly(self, rng, c: dict, hold: dict, m: int) -> dict:
        M = self.months
        t = np.arange(M)[None, :]
        exists = t >= c["open_idx"][:, None]
        since = np.maximum(t - c["open_idx"][:, None], 0)
        g = rng.normal(0.004, 0.01, m)[:, None]  # monthly growth
        noise = np.empty((m, M))
        noise[:, 0] = rng.normal(0, 0.10, m)
        for k in range(1, M):  # AR(1): balances drift, they don't jump independently each month
            noise[:, k] = 0.75 * noise[:, k - 1] + rng.normal(0, 0.05, m)
        # Quarter ends (deposit campaigns) and the Spring Festival bonus month.
        season = np.array([0, 0.02, 0.04, 0.02, 0, 0, 0.02, 0, 0, 0.02, 0, 0, 0.03])[self.moy][None, :]
        ramp = 1 - 0.6 * np.exp(-since / 2.5)  # new customers move their money in over months

        churner, dormant = c["churner"][:, None], c["dormant"][:, None]
        tc, s, d = c["t_churn"][:, None], c["decline_start"][:, None], c["decline_len"][:, None]
        decline = np.clip((t - s + 1) / d, 0, 1)
        f = np.where(churner, 1 - 0.85 * decline, 1.0)
        after = churner & (t >= tc)
        dip_t = t - c["dip_start"][:, None]
        dip = np.where(c["dip"][:, None] & (dip_t >= 0) & (dip_t < 3),
                       1 - c["dip_depth"][:, None] * np.array([0.6, 1.0, 0.5])[np.clip(dip_t, 0, 2)], 1.0)

        aum = c["level"][:, None] * np.exp(g * (t - (M - 1)) + noise + season) * ramp * f * dip
        residual = np.minimum(c["level"] * 0.02, rng.uniform(50, 3000, m))[:, None] * 1.0003 ** np.maximum(t - tc, 0)
        aum = np.where(after, np.where(dormant, residual, 0.0), aum)
        deposit = np.where(after, aum, aum * c["dep_share"][:, None])

        act = np.where(churner, (1 - 0.85 * decline) ** 1.5, 1.0) * dip
        act = np.where(after, 0.0, act)
        txn_season = np.array([0, 1.0, 1.25, 1.0, 1.0, 1.0, 1.05, 1.0, 1.0, 1.0, 1.0, 1.15, 1.1])[self.moy][None, :]
        txn_count = rng.poisson(c["lam_txn"][:, None] * act * txn_season)
        txn_amount = txn_count * c["ticket"][:, None] * np.exp(rng.normal(0, 0.25, (m, M)))
        logins = rng.poisson(c["lam_login"][:, None] * act)

        # Loans on the month grid: straight-line amortisation, card balances follow spending.
        has, opened, loans = hold["has"], hold["opened"], hold["loans"]
        month_no = (self.first_m + np.arange(M))[None, :]
        mort_k = month_no - _month_of(opened["mortgage"])[:, None]
        mortgage = np.where(has["mortgage"][:, None] & (mort_k >= 0),
                            loans["mortgage_p0"][:, None] * np.clip(1 - mort_k / loans["mortgage_term"][:, None], 0, 1),
                            0.0)
        cl_k = month_no - _month_of(opened["consumer_loan"])[:, None]
        consumer = np.where(has["consumer_loan"][:, None] & (cl_k >= 0) & (cl_k < 36),
                            loans["consumer_p0"][:, None] * (1 - cl_k / 36), 0.0)
        card_k = month_no - _month_of(opened["card"])[:, None]
        card = np.where(has["card"][:, None] & (card_k >= 0),
                        loans["card_spend"][:, None] * np.maximum(act, 0.05) * np.exp(rng.normal(0, 0.5, (m, M))),
                        0.0)
        mortgage, consumer, card = (np.where(after, 0.0, x) for x in (mortgage, consumer, card))
        loan = mortgage + consumer + card
        return {"exists": exists, "aum": aum, "deposit": deposit, "loan": loan, "txn_count": txn_count,
                "txn_amount": txn_amount, "logins": logins, "mortgage": mortgage, "consumer": consumer,
                "card": card, "act": act, "after": after}

    # ------------------------------------------------------------------ record dates

    def _record_dates(self, rng, c: dict, m: int, q: dict[str, int]) -> dict:
        as_of, open_d = self.as_of_d, c["open"]
        rows = np.ones(m, dtype=bool)
        stale_ok = ~c["churned"] & (open_d <= self.fresh_cutoff_d - 90)
        stale = _pick(rng, stale_ok, q["stale_record"])
        is_stale = np.zeros(m, dtype=bool)
        is_stale[stale] = True
        old_ok = ~is_stale & (open_d <= as_of - RISK_ASSESSMENT_VALID_DAYS - 60)
        old_extra = _pick(rng, old_ok, q["risk_old_extra"])
        is_old = is_stale.copy()
        is_old[old_extra] = True

        assessed = _uniform_day(rng, np.maximum(open_d, as_of - RISK_ASSESSMENT_VALID_DAYS + 30), np.full(m, as_of))
        assessed[old_extra] = _uniform_day(rng, open_d[old_extra],
                                           np.full(len(old_extra), as_of - RISK_ASSESSMENT_VALID_DAYS - 30))
        upd_day = np.maximum.reduce([open_d, assessed, np.full(m, self.fresh_cutoff_d + 45),
                                     np.where(c["churned"], c["churn_day"], 0)])
        upd_day = _uniform_day(rng, np.minimum(upd_day, as_of), np.full(m, as_of))
        upd_day[stale] = _uniform_day(rng, open_d[stale], np.full(len(stale), self.fresh_cutoff_d - 45))
        assessed[stale] = _uniform_day(rng, open_d[stale], upd_day[stale])
        c["assessed"] = assessed
        c["updated"] = upd_day * _DAY_SECONDS + rng.integers(8 * 3600, 20 * 3600, m)

        # ID documents: 10 years' validity under 30, 20 years after; issued at 16 or later.
        validity = np.where(c["age"] < 30, 3652, 7305)
        expiry = as_of + 30 + (rng.random(m) * (validity - 30)).astype(np.int64)
        expiry = np.maximum(expiry, c["birth"] + int(16 * 365.2425) + 1 + validity)
        expired = _pick(rng, rows, q["expired_id_document"])
        expiry[expired] = as_of - rng.integers(30, 3 * 365, len(expired))
        c["expiry"] = expiry
        return {"stale_record": len(stale), "risk_assessment_over_a_year_old": int(is_old.sum()),
                "expired_id_document": len(expired)}

    def _assessments_due(self, index: int, c: dict, q: dict[str, int]) -> dict:
        """Move the assessments of ``q["risk_assessment_due"]`` customers to 336-362 days before
        as_of, so they fall due (expire) 4 to 30 days after it: the risk page's "due within 30 days"
        list. A bank renewing yearly has about 30/365 of its assessments due in any 30 days.

        Only customers whose assessment is current (not an old or stale one), who opened at least
        362 days before as_of (an assessment is never before the opening) and who have not churned
        (a closed or dormant customer is not reassessed). The record's ``updated_at`` stays, later
        than the earlier assessment. A random stream of its own (``SeedSequence([seed, 2, chunk])``)
        leaves every other draw of the chunk as it was. The window keeps 3 days from the one-year
        threshold, so a rule counting a year as 365 days or as 12 months finds the same rows.
        """
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, index]))
        as_of, assessed = self.as_of_d, c["assessed"]
        current = assessed > as_of - RISK_ASSESSMENT_VALID_DAYS + 29  # not one of the old assessments
        eligible = current & ~c["churned"] & (c["open"] <= as_of - _DUE_AGE_DAYS[1])
        due = _pick(rng, eligible, q["risk_assessment_due"])
        assessed[due] = as_of - rng.integers(_DUE_AGE_DAYS[0], _DUE_AGE_DAYS[1] + 1, len(due))
        return {"risk_assessment_due": len(due)}

    def _inject_field_defects(self, rng, c: dict, m: int, q: dict[str, int]) -> dict:
        rows = np.ones(m, dtype=bool)
        out = {}
        c["email"] = self._emails(rng, m)
        c["address"] = self._addresses(rng, c, m)
        for name, field in (("missing_email", "email"), ("missing_address", "address"),
                            ("missing_occupation", "occupation")):
            picked = _pick(rng, rows, q[name])
            c[field][picked] = None
            out[name] = len(picked)
        return out

    def _emails(self, rng, m: int) -> np.ndarray:
        qq = rng.random(m) < 0.35  # QQ mail addresses are the QQ number
        qq_user = rng.integers(100_000, 3_999_999_999, m).astype(str)
        letters = _ascii_strings(rng, m, rng.integers(4, 10, m), ord("a"), ord("z"))
        digits = _ascii_strings(rng, m, rng.integers(0, 5, m), ord("0"), ord("9"))
        sep = np.where(rng.random(m) < 0.12, "_", "")
        user = np.strings.add(np.strings.add(letters, sep), digits)
        domain = EMAIL_DOMAINS[rng.choice(len(EMAIL_DOMAINS), m, p=EMAIL_DOMAIN_SHARES)]
        user = np.where(qq, qq_user, user)
        domain = np.where(qq, "qq.com", domain)
        return np.strings.add(np.strings.add(user, "@"), domain).astype(object)

    def _addresses(self, rng, c: dict, m: int) -> np.ndarray:
        p = self.pools
        street = p["streets"][rng.integers(len(p["streets"]), size=m)]
        compound = p["compounds"][rng.integers(len(p["compounds"]), size=m)]
        num = rng.integers(1, 999, m).astype(str)
        bldg = rng.integers(1, 30, m).astype(str)
        unit = rng.integers(1, 6, m).astype(str)
        room = (rng.integers(1, 33, m) * 100 + rng.integers(1, 5, m)).astype(str)
        parts = [self.reg_prefix[c["home"]], street, num, "号", compound, bldg, "栋", unit, "单元", room, "室"]
        out = parts[0]
        for part in parts[1:]:
            out = np.strings.add(out, part)
        return out.astype(object)

    # ------------------------------------------------------------------ frames

    def _customer_frame(self, c: dict) -> pd.DataFrame:
        home = c["home"]
        return _frame({
            "customer_id": c["customer_id"],
            "name": c["name"],
            "gender": c["gender"],
            "birth_date": _dates(c["birth_field"]),
            "id_type": "resident_id",
            "id_number": c["id_number"],
            "id_expiry_date": _dates(c["expiry"]),
            "phone": c["phone_field"],
            "email": c["email"],
            "address": c["address"],
            "city": self.reg_city[home],
            "province": self.reg_province[home],
            "branch_id": self.br_ids[c["branch"]],
            "relationship_manager": c["rm"],
            "customer_type": c["customer_type"],
            "occupation": c["occupation"],
            "income_band": c["income_band"],
            "onboarding_channel": c["channel"],
            "open_date": _dates(c["open"]),
            "risk_tolerance": RISK_TOLERANCES[c["tol"]],
            "risk_assessed_at": _dates(c["assessed"]),
            "credit_grade": c["grade"],
            "status": c["status"],
            "marketing_consent": c["consent"],
            "updated_at": _timestamps(c["updated"]),
        })

    def _monthly_frame(self, c: dict, mo: dict) -> pd.DataFrame:
        M = self.months
        flat = np.flatnonzero(mo["exists"].ravel())
        cust, t = np.divmod(flat, M)
        months = _dates(self.month_start[:M])
        return _frame({
            "customer_id": c["customer_id"][cust],
            "month": months[t],
            "aum": np.round(mo["aum"].ravel()[flat], 2),
            "deposit_balance": np.round(mo["deposit"].ravel()[flat], 2),
            "loan_balance": np.round(mo["loan"].ravel()[flat], 2),
            "txn_count": mo["txn_count"].ravel()[flat].astype(np.int64),
            "txn_amount": np.round(mo["txn_amount"].ravel()[flat], 2),
            "digital_logins": mo["logins"].ravel()[flat].astype(np.int64),
        })

    def _holding_frame(self, rng, c: dict, hold: dict, mo: dict) -> pd.DataFrame:
        has, prod, share, opened = hold["has"], hold["prod"], hold["share"], hold["opened"]
        last_aum = mo["aum"][:, -1]
        churned, dormant = c["churned"], c["dormant"]
        never = np.iinfo(np.int64).max
        churn_close = np.where(churned, c["churn_day"], never)
        parts = []

        def add(mask, product, open_day, close_day, balance):
            idx = np.flatnonzero(mask)
            parts.append((idx, np.broadcast_to(product, mask.shape)[idx], open_day[idx],
                          np.broadcast_to(close_day, mask.shape)[idx], np.broadcast_to(balance, mask.shape)[idx]))

        # Demand deposit stays open for dormant customers, with what is left.
        add(has["dd"], prod["dd"], opened["dd"], np.where(c["closed"], churn_close, never),
            np.where(c["closed"], 0.0, np.where(dormant, last_aum, last_aum * share["dd"])))
        for key in ("call", "td", "wm", "fund", "insurance", "gold"):
            add(has[key], prod[key], opened[key], churn_close, np.where(churned, 0.0, last_aum * share[key]))
        add(has["mortgage"], prod["mortgage"], opened["mortgage"], churn_close, mo["mortgage"][:, -1])
        up = hold["upgrade"]
        # An upgraded card closes on the upgrade day; the new tier's card (below) carries the balance.
        add(has["card"], prod["card"], opened["card"],
            np.where(up["upgraded"], np.minimum(up["day"], churn_close), churn_close),
            np.where(up["upgraded"], 0.0, mo["card"][:, -1]))
        matured = opened["consumer_loan"] + 1096
        cl_close = np.where(matured <= self.as_of_d, np.minimum(matured, churn_close), churn_close)
        add(has["consumer_loan"], prod["consumer_loan"], opened["consumer_loan"], cl_close, mo["consumer"][:, -1])
        add(hold["hist"], hold["hist_prod"], hold["hist_open"], hold["hist_close"], np.zeros(len(last_aum)))

        cust = np.concatenate([p[0] for p in parts])
        pid = np.concatenate([p[1] for p in parts])
        o = np.concatenate([p[2] for p in parts])
        cl = np.concatenate([p[3] for p in parts])
        bal = np.concatenate([p[4] for p in parts])
        order = np.lexsort((o, pid, cust))
        cust, pid, o, cl, bal = cust[order], pid[order], o[order], cl[order], bal[order]
        hid = self.next_holding_id + np.arange(len(cust), dtype=np.int64)
        self.next_holding_id += len(cust)

        frame = self._rows_frame(rng, c, cust, pid, o, cl, bal, hid, never)
        # The upgraded cards: rows after the chunk's others, numbered from the upgrades' own stream.
        ui = np.flatnonzero(up["upgraded"])
        if not len(ui):  # a small chunk may have no upgrade
            return frame
        u_hid = self.next_holding_id + np.arange(len(ui), dtype=np.int64)
        self.next_holding_id += len(ui)
        upgraded = self._rows_frame(up["rng"], c, ui, up["product"][ui], up["day"][ui], churn_close[ui],
                                    mo["card"][ui, -1], u_hid, never)
        return pd.concat([frame, upgraded], ignore_index=True)

    def _rows_frame(self, rng, c, cust, pid, o, cl, bal, hid, never) -> pd.DataFrame:
        closed_on = _dates(np.where(cl == never, 0, cl))
        closed_on[cl == never] = np.datetime64("NaT")
        return _frame({
            "holding_id": hid,
            "cust": cust,
            "product_id": np.array([p[0] for p in PRODUCTS])[pid],
            "account_number": self._account_numbers(rng, hid, pid, c["branch"][cust]),
            "opened_on": _dates(o),
            "closed_on": closed_on,
            "balance": np.round(bal, 2),
        })

    @staticmethod
    def _account_numbers(rng, hid: np.ndarray, pid: np.ndarray, branch: np.ndarray) -> np.ndarray:
        """Card numbers with Luhn digits; internal account numbers for the rest; all unique."""
        n = len(hid)
        # An affine map mod 10^k with a multiplier coprime to 10 is a bijection: unique, random-looking.
        serial12 = (hid * 7_919_113 + 104_729) % 10**12
        serial9 = (hid * 7_919_113 + 104_729) % 10**9
        serial14 = (hid * 7_919_113 + 104_729) % 10**14
        debit = DEBIT_CARD_BINS[rng.integers(len(DEBIT_CARD_BINS), size=n)] * 10**12 + serial12
        credit = CREDIT_CARD_BINS[rng.integers(len(CREDIT_CARD_BINS), size=n)] * 10**9 + serial9
        debit_no = np.strings.add(debit.astype(str), luhn_check_digits(debit))
        credit_no = np.strings.add(credit.astype(str), luhn_check_digits(credit))
        internal = np.strings.add(np.strings.zfill((branch + 1).astype(str), 4),
                                  np.strings.zfill(serial14.astype(str), 14))
        is_card = np.isin(pid, [PRODUCT_INDEX["P021"], PRODUCT_INDEX["P022"], PRODUCT_INDEX["P026"]])
        return np.where(pid == PRODUCT_INDEX["P001"], debit_no, np.where(is_card, credit_no, internal))

    # ------------------------------------------------------------------ contacts

    def _contacts(self, rng, c: dict, m: int) -> pd.DataFrame:
        M = self.months
        t = np.arange(M)[None, :]
        exists = t >= c["open_idx"][:, None]
        tc, s = c["t_churn"][:, None], c["decline_start"][:, None]
        in_decline = c["churner"][:, None] & (t >= s) & (t < tc)
        after = c["churned"][:, None] & (t > tc)
        dip_t = t - c["dip_start"][:, None]
        in_dip = c["dip"][:, None] & (dip_t >= 0) & (dip_t < 3)
        old = (c["age"] > 60)[:, None]

        lam = {
            "service": np.where(in_decline, 0.15, 0.045 + 0.03 * old),
            "marketing": np.where(c["consent"][:, None], 0.03 + 0.03 * (c["tier"] >= 1)[:, None], 0.0)
            * np.where(in_decline, 0.5, 1.0),
            "complaint": np.where(in_decline, 0.09, np.where(in_dip, 0.03, 0.006)),
        }
        frames = []
        for kind_i, kind in enumerate(("service", "marketing", "complaint")):
            rate = np.where(exists & ~after, lam[kind], 0.0)
            if kind != "service":
                rate = np.where(c["churned"][:, None] & (t >= tc), 0.0, rate)
            counts = rng.poisson(rate)
            flat = np.repeat(np.arange(m * M), counts.ravel())
            cust, tt = np.divmod(flat, M)
            frames.append((cust, tt, np.full(len(cust), kind_i), in_decline.ravel()[flat]))
        # A closed customer's last contact: the closure itself, at the branch.
        closed = np.flatnonzero(c["closed"])
        cust = np.concatenate([f[0] for f in frames] + [closed])
        tt = np.concatenate([f[1] for f in frames] + [c["t_churn"][closed]])
        kind = np.concatenate([f[2] for f in frames] + [np.full(len(closed), 3)])
        declining = np.concatenate([f[3] for f in frames] + [np.zeros(len(closed), dtype=bool)])
        n = len(cust)

        lo = np.maximum(self.month_start[tt], c["open"][cust])
        hi = np.minimum.reduce([self.month_start[tt + 1] - 1, np.full(n, self.as_of_d), c["churn_day"][cust]])
        day = _uniform_day(rng, lo, np.maximum(hi, lo))
        day = np.where(kind == 3, c["churn_day"][cust], day)
        secs = day * _DAY_SECONDS + rng.integers(8 * 3600, 21 * 3600, n)

        channel_p = np.array([[0.30, 0.35, 0.20, 0.05, 0.10],   # service
                              [0.10, 0.40, 0.30, 0.00, 0.20],   # marketing
                              [0.25, 0.50, 0.10, 0.05, 0.10],   # complaint
                              [1.00, 0.00, 0.00, 0.00, 0.00]])  # closure
        channel = CONTACT_CHANNELS[_choice_rows(rng, channel_p[kind])]
        category = np.empty(n, dtype=object)
        for k, cats, p_normal, p_decline in (
            (0, SERVICE_CATEGORIES, [0.2, 0.2, 0.2, 0.15, 0.1, 0.1, 0.05], [0.15, 0.15, 0.3, 0.05, 0.2, 0.1, 0.05]),
            (1, MARKETING_CATEGORIES, [0.3, 0.2, 0.15, 0.15, 0.1, 0.1], [0.3, 0.2, 0.15, 0.15, 0.1, 0.1]),
            (2, COMPLAINT_CATEGORIES, [0.15, 0.2, 0.3, 0.25, 0.1], [0.35, 0.2, 0.1, 0.1, 0.25]),
        ):
            rows = np.flatnonzero(kind == k)
            probs = np.where(declining[rows][:, None], p_decline, p_normal)
            category[rows] = cats[_choice_rows(rng, probs)]
        category[kind == 3] = "account_closure"

        resolved_p = np.select([kind == 0, kind == 2, kind == 3], [0.96, np.where(declining, 0.55, 0.82), 1.0], 0.0)
        resolved = pd.array(rng.random(n) < resolved_p, dtype="boolean")
        resolved[kind == 1] = pd.NA  # a marketing call has nothing to resolve
        order = np.lexsort((kind, secs, cust))
        cid = self.next_contact_id + np.arange(n, dtype=np.int64)
        self.next_contact_id += n
        return _frame({
            "contact_id": cid,
            "cust": cust[order],
            "contacted_at": _timestamps(secs[order]),
            "channel": channel[order],
            "kind": np.array(["service", "marketing", "complaint", "service"])[kind[order]],
            "category": category[order],
            "resolved": resolved[order],
        })


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def chunk_plan(customers: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The chunk sizes and, per chunk, the defect quotas of a store of ``customers`` rows."""
    sizes = np.full(customers // CHUNK_CUSTOMERS, CHUNK_CUSTOMERS)
    if customers % CHUNK_CUSTOMERS:
        sizes = np.append(sizes, customers % CHUNK_CUSTOMERS)
    totals = expected_defect_counts(customers)
    quotas = {name: _allocate(total, sizes) for name, total in totals.items()}
    quotas["risk_assessment_due"] = _allocate(
        int(round(BEHAVIOUR_RATES["risk_assessment_due"] * customers)), sizes)
    quotas["risk_old_extra"] = _allocate(
        totals["risk_assessment_over_a_year_old"] - totals["stale_record"], sizes)
    return sizes, quotas


def generate(engine: Engine, *, customers: int = 20000, months: int = 24, seed: int = 42,
             as_of: date | None = None, progress: bool = True) -> dict:
    """(Re)build the store tables with a realistic demo bank.

    Drops and recreates ``branches``, ``products``, ``customers``, ``holdings``,
    ``customer_monthly`` and ``contacts`` (the app's own tables are left alone), then writes
    the customers chunk by chunk, one transaction per chunk.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The store (SQLite or PostgreSQL), e.g. from :func:`analytics.store.make_engine`.
    customers : int
        Total customer rows, the injected duplicates included.
    months : int
        Months of activity, ending with the month of ``as_of``.
    seed : int
        Same seed, size and ``as_of`` give identical rows.
    as_of : datetime.date, optional
        The snapshot date; defaults to the fixed :data:`DEFAULT_AS_OF`, not today, so the demo
        is reproducible.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``row_counts`` (rows per table), ``defects`` (injected rows per defect of
        :data:`DEFECT_RATES`), ``behaviour`` (churners, closed, dormant, about_to_churn,
        temporary_dips, suitability_mismatch and its denominator r4_r5_holders), ``seed``,
        ``months``, ``as_of`` (ISO date) and ``seconds``.

    Raises
    ------
    ValueError
        If ``customers`` or ``months`` is not a positive integer or ``seed`` is negative.
    """
    if isinstance(customers, bool) or not isinstance(customers, int) or customers < 1:
        raise ValueError(f"customers must be a positive integer, not {customers!r}")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 240:
        raise ValueError(f"months must be an integer from 1 to 240, not {months!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    as_of = as_of or DEFAULT_AS_OF
    began = time.perf_counter()
    gen = _Generator(customers, months, seed, as_of)

    # The campaigns are about the replaced customers: they are rebuilt too (issue 13).
    tables = [schema.metadata.tables[name] for name in (*STORE_TABLE_NAMES, *schema.CAMPAIGN_TABLES)]
    with engine.begin() as conn:
        conn.execute(schema.campaign_outcomes.delete())
    schema.metadata.drop_all(engine, tables=tables)
    schema.metadata.create_all(engine, tables=tables)
    rows = {name: 0 for name in STORE_TABLE_NAMES}
    rows["branches"] = bulk_insert(engine, schema.branches, gen.branches())
    rows["products"] = bulk_insert(engine, schema.products, gen.products())

    sizes, quotas = chunk_plan(customers)
    batch = int(settings.get("LOAD_CHUNK_ROWS"))
    defects = dict.fromkeys(DEFECT_RATES, 0)
    behaviour: dict[str, int] = {}

    bar = tqdm(total=customers, desc="demo store", unit="customer", file=sys.stderr, disable=not progress)
    try:
        # One connection for the load, with SQLite's bulk-load settings and the tables' indexes made
        # after it (see analytics.store.bulk_load); the generator makes every foreign key itself.
        with bulk_load(engine, [schema.metadata.tables[name] for name in STORE_TABLE_NAMES]) as conn:
            start = 0
            for i, m in enumerate(sizes):
                bar.set_postfix_str(f"chunk {i + 1}/{len(sizes)}: generating")
                frames, stats = gen.chunk(i, start, int(m), {k: int(v[i]) for k, v in quotas.items()})
                frames["consents"] = consent_frame(frames["customers"], as_of, seed, i)
                bar.set_postfix_str(f"chunk {i + 1}/{len(sizes)}: writing")
                with conn.begin():
                    for name in ("customers", "holdings", "customer_monthly", "contacts", "consents"):
                        df = frames[name]
                        for lo in range(0, len(df), batch):
                            rows[name] += bulk_insert(engine, schema.metadata.tables[name], df.iloc[lo:lo + batch],
                                                      conn=conn, multirow=True)
                del frames  # freed before the next chunk is made, not after: the peak held both
                for k, v in stats.items():
                    if k in defects:
                        defects[k] += v
                    else:
                        behaviour[k] = behaviour.get(k, 0) + v
                start += int(m)
                bar.update(int(m))
            bar.set_postfix_str("making indexes")
    finally:
        bar.close()
    from analytics.demo.campaigns import add_demo_campaigns

    past = add_demo_campaigns(engine, seed=seed, as_of=as_of, account_numbers=_Generator._account_numbers)
    rows["holdings"] += past["conversions"]
    rows["campaigns"], rows["campaign_members"] = past["campaigns"], past["campaign_members"]
    _analyze(engine)
    seconds = round(time.perf_counter() - began, 1)
    log.info("demo store built in %.1f s: %s", seconds, rows)
    return {"row_counts": rows, "defects": defects, "behaviour": behaviour, "seed": seed,
            "months": months, "as_of": as_of.isoformat(), "seconds": seconds}


def _analyze(engine: Engine) -> None:
    """Refresh the planner's statistics: the analytics' queries run right after a rebuild."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")  # sampled: seconds, not minutes, at 24M rows
            conn.execute(text("ANALYZE"))
        elif conn.dialect.name == "postgresql":
            for name in STORE_TABLE_NAMES:
                conn.execute(text(f'ANALYZE "{name}"'))
