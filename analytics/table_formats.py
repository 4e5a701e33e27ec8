"""How each table column is shown: its kind (money, rate, count, date, a translated key...), declared
once, and the display copy of a frame that the one table helper (``app_pages.widgets.show_table``)
draws.

The display copy is for the screen only: exports keep the raw frame. What it does, by kind:

``money``      rounded to 2 decimals; Chinese reads 万/亿 (:func:`analytics.formatting.amount`), as text
``rate``       a fraction (0.1234) shown as a percentage, 12.3 (the column format adds the ``%``)
``points``     already in percentage points (12.34): rounded to 1 decimal
``ratio``      a plain number (lift): 2 decimals
``count``      a whole number, thousands separated
``date``       a calendar date; ``datetime`` a date and time to the second
``code``       an identifier shown verbatim (customer id, rule name, user name): never translated
``enum``       a key of the catalog's families (``category.consumer_loan`` → "Consumer loan")
``reason``     a stored churn reason, alert detail or balance-drop reason (a code and JSON
               parameters), in words of the language
``roles``      a comma-separated list of role names, each in words of the language

A float column of no declared kind is rounded to 2 decimals. Columns in :data:`INTERNAL` are not
shown. No streamlit here: the page helper turns :func:`column_formats` into ``st.column_config``.
"""

from __future__ import annotations

import pandas as pd

from analytics import formatting, i18n
from analytics.churn.reasons import reason_text

MONEY = frozenset({
    "aum", "balance", "deposit_balance", "loan_balance", "txn_amount", "aum_prev", "aum_change", "clv",
    "clv_margin_1y", "clv_margin_3y", "clv_margin_5y", "clv_txn_12m", "value_at_risk", "expected_value",
    "expected_margin", "next_best_expected_value", "mismatch_balance", "annual_margin_total", "aum_total",
    "incremental_margin",
})
RATE = frozenset({
    "support", "confidence", "propensity", "pass_rate", "control_share", "churn_probability", "p_alive",
    "aum_change_pct", "share", "rate", "conversion_rate",
})
POINTS = frozenset({"treatment_rate", "control_rate", "uplift_pp", "ci_low_pp", "ci_high_pp"})
RATIO = frozenset({"lift"})
COUNT = frozenset({
    "customers", "members", "treatment", "control", "treatment_converted", "control_converted", "checked",
    "failed", "passed", "count", "txn_count", "digital_logins", "failed_logins", "failed_attempts",
    "expected_conversions", "days_since_password_change", "rows", "holdings",
})
DATE = frozenset({
    "as_of", "starts_on", "due_date", "first_seen", "opened_on", "closed_on", "month", "birth_date",
    "open_date", "id_expiry_date", "risk_assessed_at", "locked_until",
})
DATETIME = frozenset({
    "contacted_at", "created_at", "at_utc", "first_at", "last_at", "password_changed_at", "last_login",
    "last_activity", "changed_at", "started_at", "finished_at", "requested_at", "decided_at", "expires_at",
    "updated_at",
})
CODE = frozenset({
    "customer_id", "branch_id", "relationship_manager", "product_id", "holding_id", "account_number",
    "table_name", "column_name", "record_id", "username", "display_name", "roles", "session_id", "owner",
    "subject", "changed_by", "requested_by", "decided_by", "tag", "run_id", "alert_id", "seq",
    "request_id", "campaign_id", "client_address", "next_best_product_id", "email", "name", "phone",
    "id_number", "address", "target", "parameters", "row_counts", "roles_granted_since_review",
    "risk_level", "risk_tolerance", "credit_grade",
})
# Column -> the catalog families its values are keys of, tried in order.
ENUM: dict[str, tuple[str, ...]] = {
    "category": ("category", "contact_category"),
    "product_category": ("category",),
    "next_best_category": ("category",),
    "value_tier": ("tier",),
    "tier": ("tier",),
    "lifecycle_stage": ("stage",),
    "stage": ("stage",),
    "rfm_segment": ("segment",),
    "segment": ("segment",),
    "id_type": ("id_type",),
    "gender": ("gender",),
    "status": ("status", "alert_status"),
    "from_status": ("alert_status", "status"),
    "to_status": ("alert_status", "status"),
    "kind": ("dq_kind", "contact_kind", "approval_kind"),
    "channel": ("channel",),
    "onboarding_channel": ("channel",),
    "customer_type": ("customer_type",),
    "occupation": ("occupation",),
    "income_band": ("income_band",),
    "severity": ("severity",),
    "dimension": ("dq_dimension", "dimension"),
    "mfa": ("mfa",),
    "offer_kind": ("offer_kind",),
    "next_best_offer_kind": ("offer_kind",),
    "rule": ("dq_rule",),  # a data-quality rule by its label (a bank's own rule without one: its name)
    "note": ("alert_note",),  # the refresh's own notes in an alert's history ("detected"); a user's as typed
    "scope": ("scope_word",),  # the access review's "whole bank"
    "event": ("audit_event",),  # the audit log's event names (analytics.audit.EVENTS)
}
# Stored churn reasons (analytics.churn.reasons), said in the reader's language.
REASON = frozenset({"reason_1", "reason_2", "reason_3"})
# Other texts stored as a code and parameters (analytics.i18n.coded): column -> catalog family.
CODED = {"detail": "alert_detail", "balance_drop_reason": "risk_reason"}
# Comma-separated role names (the audit log's and the access review's).
ROLE_LISTS = frozenset({"roles", "roles_granted_since_review"})
# Two-column tables of (name, value): the value's kind is that of the column the name names.
PAIRS = (("field", "value"), ("dimension", "value"))
# Columns of the app's own bookkeeping, never shown.
INTERNAL = frozenset({"run"})


def stored_text(column: str, value, lang: str):
    """A text a result table stores as a code and parameters, in words of ``lang``."""
    if column in CODED:
        return i18n.render_coded(value, CODED[column], lang, _CODED_FORMATS)
    return reason_text(value, lang)


def _tier(value, lang: str) -> str:
    return i18n.label("tier", value, lang)


_CODED_FORMATS = {"before": formatting.amount, "now": formatting.amount, "tier": _tier}


def yes_no(value, lang: str) -> str:
    """A true/false value in words ("Yes"/"是")."""
    return i18n.tr("common.yes" if value in (True, "True") else "common.no", lang)


def roles_label(value, lang: str) -> object:
    """``"marketing,risk"`` as "Marketing, Risk manager" (a name the catalog lacks as it is)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return formatting.MISSING
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    return i18n.tr("cluster.list_separator", lang).join(i18n.label("role", n, lang) for n in names)


def kind_of(column: str) -> str | None:
    """The declared kind of ``column`` (None: not declared)."""
    if column in ROLE_LISTS:
        return "roles"
    for kind, names in (("money", MONEY), ("rate", RATE), ("points", POINTS), ("ratio", RATIO),
                        ("count", COUNT), ("date", DATE), ("datetime", DATETIME), ("code", CODE)):
        if column in names:
            return kind
    if column in ENUM:
        return "enum"
    if column in REASON or column in CODED:
        return "reason"
    return None


def enum_label(column: str, value, lang: str) -> object:
    """``value`` of ``column`` in words, through the first family of :data:`ENUM` that knows it
    (a value none knows is returned as it is; a missing value is the em dash)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return formatting.MISSING
    for family in ENUM.get(column, ()):
        key = f"{family}.{value}"
        if i18n.has(key):
            return i18n.tr(key, lang)
    return value


def _pair_value(name: str, value, lang: str) -> object:
    kind = kind_of(name)
    if kind == "enum":
        return enum_label(name, value, lang)
    if kind == "reason":
        return stored_text(name, value, lang) or formatting.MISSING
    if kind == "roles":
        return roles_label(value, lang)
    if value in (None, "None", "nan", "NaT"):
        return formatting.MISSING
    if isinstance(value, bool) or value in ("True", "False"):
        return yes_no(value, lang)
    if kind == "money":
        return formatting.amount(value, lang, digits=2)
    if kind == "rate":
        return formatting.rate(value, lang)
    return value


def _pair_name(name: str, lang: str) -> str:
    for key in (f"column.{name}", f"dimension.{name}"):
        if i18n.has(key):
            return i18n.tr(key, lang)
    return name


def export_frame(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """``frame`` for a file export: the values stay raw (numbers stay numbers), except the texts a
    result table stores as codes (:data:`REASON`, :data:`CODED`), which a file's reader could not
    read otherwise; they are written in words of ``lang``. The frame given is not changed."""
    i18n.check_lang(lang)
    coded = [c for c in frame.columns if str(c) in REASON or str(c) in CODED]
    if not coded:
        return frame
    out = frame.copy()
    for column in coded:
        out[column] = [None if v is None or (not isinstance(v, str) and pd.isna(v)) else stored_text(str(column), v, lang)
                       for v in out[column]]
    return out


def display_frame(frame: pd.DataFrame, lang: str) -> pd.DataFrame:
    """A copy of ``frame`` for the screen in ``lang``: internal columns dropped, every column
    formatted by its kind (see the module's docstring). The frame given is not changed."""
    i18n.check_lang(lang)
    out = frame.drop(columns=[c for c in frame.columns if str(c) in INTERNAL]).copy()
    for key, value in PAIRS:
        if key in out.columns and value in out.columns and len(out.columns) <= 3:
            names = out[key].astype(str)
            out[value] = [_pair_value(n, v, lang) for n, v in zip(names, out[value], strict=True)]
            out[key] = [_pair_name(n, lang) for n in names]
            return out
    if "rule" in out.columns and "description" in out.columns:  # a built-in rule's description in the language
        out["description"] = [i18n.tr(f"dq_rule_description.{r}", lang) if i18n.has(f"dq_rule_description.{r}")
                              else d for r, d in zip(out["rule"], out["description"], strict=True)]
    for column in out.columns:
        name = str(column)
        kind = kind_of(name)
        series = out[column]
        if kind == "enum":
            out[column] = series.map(lambda v, n=name: enum_label(n, v, lang))
        elif kind == "reason":
            out[column] = series.map(lambda v, n=name: stored_text(n, v, lang))
        elif kind == "roles":
            out[column] = series.map(lambda v: roles_label(v, lang))
        elif kind == "money":
            numbers = pd.to_numeric(series, errors="coerce").round(2)
            out[column] = numbers if lang == "en" else numbers.map(lambda v: formatting.amount(v, lang, digits=2))
        elif kind == "rate":
            out[column] = (pd.to_numeric(series, errors="coerce") * 100).round(1)
        elif kind == "points":
            out[column] = pd.to_numeric(series, errors="coerce").round(1)
        elif kind == "ratio":
            out[column] = pd.to_numeric(series, errors="coerce").round(2)
        elif kind == "count":
            out[column] = pd.to_numeric(series, errors="coerce").round(0)
        elif kind in ("date", "datetime"):
            times = pd.to_datetime(series, errors="coerce")
            if times.notna().sum() == series.notna().sum():  # a masked date (1949-**-**) stays as it is
                if times.isna().any():  # a date column cannot show the em dash: the dates as text
                    fmt = "%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M:%S"
                    out[column] = [formatting.MISSING if pd.isna(v) else v.strftime(fmt) for v in times]
                else:
                    out[column] = times.dt.date if kind == "date" else times.dt.floor("s")
        elif pd.api.types.is_float_dtype(series):
            out[column] = series.round(2)
        elif pd.api.types.is_bool_dtype(series) or (series.dtype == object and len(series.dropna())
                                                    and series.dropna().map(type).eq(bool).all()):
            out[column] = series.map(lambda v: formatting.MISSING if v is None or v != v else yes_no(v, lang))
        elif (kind in (None, "code") and (pd.api.types.is_string_dtype(series) or series.dtype == object)
              and series.isna().any()
              and series.dropna().map(type).eq(str).all()):  # (an all-empty column is object dtype)
            # A text column's missing value (an alert not yet resolved) reads as the em dash, not "None".
            out[column] = series.map(lambda v: formatting.MISSING if v is None or v != v else v)
    return out


# How a column of each kind is drawn: (column type, format). Money in Chinese is text already.
FORMATS: dict[str, tuple[str, str | None]] = {
    "money": ("number", "CNY %,.2f"),
    "rate": ("number", "%.1f%%"),
    "points": ("number", "%.1f"),
    "ratio": ("number", "%.2f"),
    "count": ("number", "%,d"),
    "date": ("date", "YYYY-MM-DD"),
    "datetime": ("datetime", "YYYY-MM-DD HH:mm:ss"),
}


def column_formats(frame: pd.DataFrame, lang: str) -> dict[str, tuple[str, str | None]]:
    """For each column of a display frame with a kind that has a format: ``(type, format)``, where
    type is ``number``, ``date`` or ``datetime`` (money in Chinese is text, so it has none)."""
    out = {}
    if any(key in frame.columns and value in frame.columns for key, value in PAIRS) and len(frame.columns) <= 3:
        return out
    for column in frame.columns:
        kind = kind_of(str(column))
        series = frame[column]
        if (kind in ("date", "datetime") and not pd.api.types.is_datetime64_any_dtype(series)
                and any(isinstance(v, str) for v in series)):
            continue  # dates shown as text (a masked date, or the em dash for a missing one)
        if kind in FORMATS and not (kind == "money" and lang != "en"):
            out[str(column)] = FORMATS[kind]
    return out


__all__ = ["CODE", "CODED", "ENUM", "INTERNAL", "PAIRS", "REASON", "ROLE_LISTS", "column_formats", "display_frame",
           "enum_label", "kind_of", "roles_label", "stored_text"]
