"""Which customers need an action today: one candidate alert per customer and kind.

Reference day
-------------
Every rule counts days from the run's **reference day**: the last day of the run's activity month
(``as_of``, the same day the risk stage judges assessments by), so a run's alerts are reproducible
from its data alone.

Kinds (:data:`analytics.schema.ALERT_KINDS`)
--------------------------------------------
``churn_value_at_risk``   an active customer of the run's ``churn_scores`` whose value at risk
                          (churn probability x margin CLV) is at least
                          ``ALERT_CHURN_MIN_VALUE_AT_RISK`` CNY. Due ``ALERT_DUE_DAYS`` after the
                          reference day.
``suitability_mismatch``  ``risk_flags.suitability_mismatch`` of the run (an open holding above the
                          customer's tolerance). Due ``ALERT_DUE_DAYS`` after the reference day.
``assessment_expiring``   the risk assessment is missing, expired, or expires within
                          :data:`EXPIRY_WINDOW_DAYS` (assessed_at + ``RISK_ASSESSMENT_VALID_DAYS``).
                          Due on the expiry day (the reference day when missing or expired).
``balance_drop``          ``risk_flags.balance_drop`` of the run. Due ``ALERT_DUE_DAYS`` after.
``id_expiring``           ``customers.id_expiry_date`` on or before the reference day +
                          :data:`EXPIRY_WINDOW_DAYS` (already expired included). Due on the expiry
                          day (the reference day when already past).
``birthday``              the next birthday falls within :data:`BIRTHDAY_WINDOW_DAYS` of the
                          reference day (0 = that very day), and the customer has a live marketing
                          consent: birthday care is a contact the customer must have agreed to.
                          A 29 February birthday falls on 28 February in other years. Due on the
                          birthday.
``complaint_unresolved``  a complaint (``contacts.kind = 'complaint'``) not marked resolved and
                          made more than :data:`COMPLAINT_DAYS` days before the reference day. Due
                          ``ALERT_DUE_DAYS`` after the reference day.

The population is every customer not ``closed`` whose account was opened by the reference day. A
``detail`` says why, with no personal value and no exact amount (the digest shows it to roles that
see balances only as bands): stored as a code and its parameters (:func:`analytics.i18n.coded`),
said in the reader's language through ``alert_detail.<code>`` (:func:`detail_text`).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from analytics import settings
from analytics.consent import live_consent_sql
from analytics.i18n import coded, render_coded
from analytics.partitions import and_customers
from analytics.store import read_frame

EXPIRY_WINDOW_DAYS = 30
BIRTHDAY_WINDOW_DAYS = 7
COMPLAINT_DAYS = 15

CANDIDATE_COLUMNS = ("customer_id", "kind", "owner", "due_date", "detail")


def next_birthday(birth: date, ref: date) -> date:
    """The first birthday on or after ``ref`` (29 February -> 28 February in a common year)."""

    def in_year(year: int) -> date:
        if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
            return date(year, 2, 28)
        return date(year, birth.month, birth.day)

    this_year = in_year(ref.year)
    return this_year if this_year >= ref else in_year(ref.year + 1)


def _as_date(value) -> date | None:
    if value is None or (not isinstance(value, (date, str)) and pd.isna(value)):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _dates(series: pd.Series) -> list[date | None]:
    return [_as_date(v) for v in series]


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def _population(engine: Engine, as_of: date, customers=None) -> pd.DataFrame:
    only, params = and_customers(customers, "customer_id", engine)
    return read_frame(engine, f"""
        SELECT customer_id, relationship_manager, birth_date, id_expiry_date, risk_tolerance, risk_assessed_at
        FROM customers WHERE status <> 'closed' AND open_date <= :as_of{only}
        ORDER BY customer_id""", {"as_of": as_of, **params}).set_index("customer_id")


def churn_candidates(engine: Engine, run_id: int, owners: pd.Series, due: date, min_value: float,
                     customers=None) -> pd.DataFrame:
    only, params = and_customers(customers, "customer_id", engine)
    scores = read_frame(engine, f"""
        SELECT customer_id, churn_probability FROM churn_scores
        WHERE run_id = :run_id AND churn_state = 'active' AND value_at_risk >= :min_value{only}
        ORDER BY customer_id""", {"run_id": run_id, "min_value": float(min_value), **params})
    rows = [{"customer_id": c, "kind": "churn_value_at_risk", "due_date": due,
             "detail": coded("churn_value_at_risk", probability=f"{p:.0%}")}
            for c, p in zip(scores["customer_id"], scores["churn_probability"], strict=True) if c in owners.index]
    return _frame(rows)


def risk_candidates(engine: Engine, run_id: int, owners: pd.Series, due: date, customers=None) -> pd.DataFrame:
    only, params = and_customers(customers, "customer_id", engine)
    flags = read_frame(engine, f"""
        SELECT customer_id, suitability_mismatch, mismatch_holdings, risk_tolerance, balance_drop, aum_change_pct
        FROM risk_flags WHERE run_id = :run_id AND (suitability_mismatch OR balance_drop){only}
        ORDER BY customer_id""", {"run_id": run_id, **params})
    rows = []
    for r in flags.itertuples(index=False):
        if r.customer_id not in owners.index:
            continue
        if bool(r.suitability_mismatch):
            rows.append({"customer_id": r.customer_id, "kind": "suitability_mismatch", "due_date": due,
                         "detail": coded("suitability_mismatch", n=int(r.mismatch_holdings),
                                         tolerance=str(r.risk_tolerance))})
        if bool(r.balance_drop):
            detail = (coded("balance_drop") if pd.isna(r.aum_change_pct)
                      else coded("balance_drop_change", change=f"{r.aum_change_pct:+.0%}"))
            rows.append({"customer_id": r.customer_id, "kind": "balance_drop", "due_date": due, "detail": detail})
    return _frame(rows)


def detail_text(stored, lang: str = "en"):
    """A stored alert detail in words of ``lang`` (an older run's English words as they are)."""
    return render_coded(stored, "alert_detail", lang)


def assessment_candidates(people: pd.DataFrame, as_of: date, valid_days: int) -> pd.DataFrame:
    """Missing, expired, or expiring within :data:`EXPIRY_WINDOW_DAYS` of ``as_of``."""
    rows = []
    horizon = as_of + timedelta(days=EXPIRY_WINDOW_DAYS)
    for customer_id, tolerance, assessed in zip(people.index, people["risk_tolerance"],
                                                _dates(people["risk_assessed_at"]), strict=True):
        if tolerance is None or pd.isna(tolerance) or assessed is None:
            rows.append({"customer_id": customer_id, "kind": "assessment_expiring", "due_date": as_of,
                         "detail": coded("assessment_missing")})
            continue
        # valid through assessed + valid_days (exactly that many days old is still valid, as in risk.py)
        expires = assessed + timedelta(days=valid_days + 1)
        if expires <= as_of:
            rows.append({"customer_id": customer_id, "kind": "assessment_expiring", "due_date": as_of,
                         "detail": coded("assessment_expired", date=expires.isoformat())})
        elif expires <= horizon:
            rows.append({"customer_id": customer_id, "kind": "assessment_expiring", "due_date": expires,
                         "detail": coded("assessment_expires", date=expires.isoformat())})
    return _frame(rows)


def id_expiry_candidates(people: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """ID documents expired, or expiring within :data:`EXPIRY_WINDOW_DAYS` of ``as_of``."""
    horizon = as_of + timedelta(days=EXPIRY_WINDOW_DAYS)
    rows = []
    for customer_id, expiry in zip(people.index, _dates(people["id_expiry_date"]), strict=True):
        if expiry is None or expiry > horizon:
            continue
        code = "id_expired" if expiry < as_of else "id_expires"
        rows.append({"customer_id": customer_id, "kind": "id_expiring", "due_date": max(expiry, as_of),
                     "detail": coded(code, date=expiry.isoformat())})
    return _frame(rows)


def birthday_candidates(people: pd.DataFrame, consenting: set[str], as_of: date) -> pd.DataFrame:
    """Birthdays within :data:`BIRTHDAY_WINDOW_DAYS` of ``as_of``, for consenting customers only."""
    rows = []
    for customer_id, birth in zip(people.index, _dates(people["birth_date"]), strict=True):
        if birth is None or customer_id not in consenting:
            continue
        day = next_birthday(birth, as_of)
        days = (day - as_of).days
        if days <= BIRTHDAY_WINDOW_DAYS:
            rows.append({"customer_id": customer_id, "kind": "birthday", "due_date": day,
                         "detail": coded("birthday_today") if days == 0 else coded("birthday_in", days=days)})
    return _frame(rows)


def complaint_candidates(engine: Engine, owners: pd.Series, as_of: date, due: date, customers=None) -> pd.DataFrame:
    """Customers with a complaint not marked resolved, made more than :data:`COMPLAINT_DAYS` days
    before ``as_of``."""
    # contacted_at is a timestamp: a complaint of day D is older than 15 days on day D + 16.
    cutoff = datetime.combine(as_of - timedelta(days=COMPLAINT_DAYS), datetime.min.time())
    only, params = and_customers(customers, "customer_id", engine)
    frame = read_frame(engine, f"""
        SELECT customer_id, COUNT(*) AS n, MIN(contacted_at) AS oldest FROM contacts
        WHERE kind = 'complaint' AND (resolved IS NULL OR NOT resolved) AND contacted_at < :cutoff{only}
        GROUP BY customer_id ORDER BY customer_id""", {"cutoff": cutoff, **params})
    rows = []
    for customer_id, n, oldest in zip(frame["customer_id"], frame["n"], _dates(frame["oldest"]), strict=True):
        if customer_id in owners.index:
            rows.append({"customer_id": customer_id, "kind": "complaint_unresolved", "due_date": due,
                         "detail": coded("complaints_unresolved", n=int(n), oldest=oldest.isoformat())})
    return _frame(rows)


def detect(engine: Engine, run_id: int, as_of: date, *, now: datetime | None = None,
           customers=None) -> pd.DataFrame:
    """Every candidate alert of run ``run_id`` at reference day ``as_of``.

    Reads the run's ``churn_scores`` and ``risk_flags`` (written by earlier stages) and the store's
    ``customers``, ``contacts`` and ``consents``; ``now`` is when consent is judged (default the
    current UTC time). ``customers`` (a filter such as :class:`analytics.partitions.IdRange`)
    detects the alerts of those customers only: ``engine`` may be a connection.

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`, one row per customer and kind, ``owner`` the customer's
        relationship manager (missing when none), ordered by kind then customer.
    """
    due = as_of + timedelta(days=int(settings.get("ALERT_DUE_DAYS")))
    min_value = float(settings.get("ALERT_CHURN_MIN_VALUE_AT_RISK"))
    valid_days = int(settings.get("RISK_ASSESSMENT_VALID_DAYS"))
    people = _population(engine, as_of, customers)
    owners = people["relationship_manager"]
    consent, params = live_consent_sql("c.customer_id", "marketing", now)
    only, only_params = and_customers(customers, "c.customer_id", engine)
    consenting = set(read_frame(engine, f"SELECT c.customer_id FROM customers c WHERE {consent}{only}",
                                {**params, **only_params})["customer_id"])
    parts = [
        churn_candidates(engine, run_id, owners, due, min_value, customers),
        risk_candidates(engine, run_id, owners, due, customers),
        assessment_candidates(people, as_of, valid_days),
        id_expiry_candidates(people, as_of),
        birthday_candidates(people, consenting, as_of),
        complaint_candidates(engine, owners, as_of, due, customers),
    ]
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else _frame([])
    out["owner"] = out["customer_id"].map(owners).astype(object)
    out["owner"] = out["owner"].where(out["owner"].notna(), None)
    order = {k: i for i, k in enumerate(("churn_value_at_risk", "suitability_mismatch", "assessment_expiring",
                                         "balance_drop", "id_expiring", "birthday", "complaint_unresolved"))}
    out = out.assign(_o=out["kind"].map(order)).sort_values(["_o", "customer_id"]).drop(columns="_o")
    return out.reset_index(drop=True)[list(CANDIDATE_COLUMNS)]


__all__ = ["BIRTHDAY_WINDOW_DAYS", "CANDIDATE_COLUMNS", "COMPLAINT_DAYS", "EXPIRY_WINDOW_DAYS",
           "assessment_candidates", "birthday_candidates", "detect", "id_expiry_candidates", "next_birthday"]
