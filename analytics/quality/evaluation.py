"""Evaluating rules against the store: counts pushed down to SQL, the rest streamed through Python.

All the row-predicate rules of a table share one scan with a ``SUM(CASE ...)`` pair per rule,
grouped by branch and channel; a foreign key is a ``LEFT JOIN``; a unique key is a
``GROUP BY ... HAVING COUNT(*) > 1`` joined back. The identifier validators, regular expressions,
ID consistency and normalised likely duplicates stream the needed columns once per table in chunks
of ``LOAD_CHUNK_ROWS``. The SQL building blocks here also serve the drill-down
(:mod:`analytics.quality.drilldown`), so a listed record fails by the very test that counted it.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import time as _time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Date,
    DateTime,
    Engine,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from analytics import settings
from analytics.quality.rules import (
    _COMPARE_OPS,
    AS_OF,
    HIGH_RISK_CREDIT_GRADES,
    HIGH_RISK_TOLERANCES,
    PYTHON_KINDS,
    ROW_KINDS,
    VALIDATORS,
    Rule,
    RuleSet,
)
from analytics.schema import metadata

log = logging.getLogger(__name__)

# Per-group breakdowns: scope name -> customers column. Only rules on `customers` are broken down:
# the other tables reach a branch only through a customer, and a holding's defect is not the branch's.
BREAKDOWNS: dict[str, str] = {"branch": "branch_id", "channel": "onboarding_channel"}
BREAKDOWN_TABLE = "customers"
MISSING_GROUP = "(missing)"


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


def as_of_date(as_of_month: date | None) -> date:
    """The as-of date of a run: the last day of the activity month it describes (today if none)."""
    if as_of_month is None:
        return date.today()
    return as_of_month.replace(day=calendar.monthrange(as_of_month.year, as_of_month.month)[1])


def months_before(day: date, months: int) -> date:
    """``day`` moved back ``months`` calendar months, the day clipped to the month's length."""
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def _is_datetime(col) -> bool:
    return isinstance(col.type, DateTime)


def _before_day(col, day: date) -> ColumnElement:
    """``col`` falls before calendar day ``day`` (a timestamp on ``day`` itself does not)."""
    return col < (datetime.combine(day, time()) if _is_datetime(col) else day)


def _after_day(col, day: date) -> ColumnElement:
    """``col`` falls after calendar day ``day`` (a timestamp on ``day`` itself does not)."""
    if _is_datetime(col):
        return col >= datetime.combine(day + timedelta(days=1), time())
    return col > day


def _cutoff(rule: Rule, as_of: date) -> date:
    if "months" in rule.params:
        return months_before(as_of, int(rule.params["months"]))
    return as_of - timedelta(days=int(rule.params["days"]))


# ---------------------------------------------------------------------------------------------
# SQL building blocks (names from validated rules only, values bound)
# ---------------------------------------------------------------------------------------------


def _present(col) -> ColumnElement:
    """A value is present: not NULL, and for text not empty or only spaces (as SQL TRIM sees it)."""
    if isinstance(col.type, String):
        return and_(col.is_not(None), func.trim(col) != "")
    return col.is_not(None)


def _where_expr(rule: Rule, t: Table) -> ColumnElement:
    parts = []
    for name, values in rule.where.items():
        col = t.c[name]
        parts.append(col == values[0] if len(values) == 1 else col.in_(values))
    return and_(true(), *parts)


def _checked_expr(rule: Rule, t: Table) -> ColumnElement:
    """The rows a rule checks (its denominator), as a SQL predicate: ``where`` matched and every
    column the rule reads present. (id_consistency further needs a valid ID, checked in Python.)"""
    where = _where_expr(rule, t)
    if rule.kind == "not_null":
        return where
    cols = [t.c[c] for c in rule.columns]
    if rule.kind == "compare":
        cols.append(t.c[rule.params["other"]])
    if rule.kind == "id_consistency":
        cols.append(t.c[rule.params["field"]])
    return and_(where, *[_present(c) for c in cols])


def _failed_expr(rule: Rule, t: Table, as_of: date) -> ColumnElement:
    """For a row-predicate rule: a checked row fails when this holds."""
    col = t.c[rule.column]
    kind, p = rule.kind, rule.params
    if kind == "not_null":
        return not_(_present(col))
    if kind == "allowed_values":
        return col.not_in(p["values"])
    if kind == "range":
        parts = []
        if "min" in p:
            lo = as_of if p["min"] == AS_OF else p["min"]
            parts.append(_before_day(col, lo) if isinstance(lo, date) else col < lo)
        if "max" in p:
            hi = as_of if p["max"] == AS_OF else p["max"]
            parts.append(_after_day(col, hi) if isinstance(hi, date) else col > hi)
        return or_(*parts)
    if kind == "compare":
        return not_(_COMPARE_OPS[p["op"]](col, t.c[p["other"]]))
    if kind == "freshness":
        stale = _before_day(col, _cutoff(rule, as_of))
        if "high_risk_months" not in p:
            return stale
        # A missing tolerance or grade is not high risk (coalesce: NOT of a NULL test is NULL).
        high = or_(func.coalesce(t.c.risk_tolerance, "").in_(HIGH_RISK_TOLERANCES),
                   func.coalesce(t.c.credit_grade, "").in_(HIGH_RISK_CREDIT_GRADES))
        stale_high = _before_day(col, months_before(as_of, int(p["high_risk_months"])))
        return or_(and_(high, stale_high), and_(not_(high), stale))
    if kind == "expiry":
        if p["warn_days"] == 0:
            return _before_day(col, as_of)
        return and_(not_(_before_day(col, as_of)), not_(_after_day(col, as_of + timedelta(days=p["warn_days"]))))
    raise AssertionError(f"{kind} is not a row-predicate kind")


def _pk(t: Table):
    return list(t.primary_key.columns)[0]


def _group_columns(t: Table) -> list:
    return [t.c[c] for c in BREAKDOWNS.values()] if t.name == BREAKDOWN_TABLE else []


def _fk_parts(rule: Rule, t: Table):
    ref_table_name, ref_col_name = rule.params["references"].split(".")
    ref = metadata.tables[ref_table_name].alias("ref")
    col = t.c[rule.column]
    return t.outerjoin(ref, col == ref.c[ref_col_name]), ref.c[ref_col_name]


def _dups_subquery(rule: Rule, t: Table):
    """Keys that occur more than once among checked rows, with the smallest primary key of each."""
    keys = [t.c[c] for c in rule.columns]
    pk = _pk(t)
    return (select(*keys, func.min(pk).label("first_pk"))
            .where(_checked_expr(rule, t))
            .group_by(*keys)
            .having(func.count() > 1)
            .subquery("dups"))


def _dup_join(rule: Rule, t: Table):
    dups = _dups_subquery(rule, t)
    on = and_(*[t.c[c] == dups.c[c] for c in rule.columns])
    return t.join(dups, on), dups


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

_COUNT_COLUMNS = ["rule", "branch", "channel", "checked", "failed"]


@dataclass
class QualityResult:
    """What :func:`evaluate` found.

    Attributes
    ----------
    rules : DataFrame
        One row per rule: rule, position, table_name, column_name, kind, dimension, severity,
        checked, failed, pass_rate, as_of, definition.
    breakdown : DataFrame
        rule, scope (branch/channel), scope_value, checked, failed, for rules on customers.
    seconds : dict
        Wall time per table, for the benchmark.
    """

    rules: pd.DataFrame
    breakdown: pd.DataFrame
    seconds: dict[str, float]


def _group_label(value: Any) -> str:
    return MISSING_GROUP if value is None else str(value)


def _row_rule_counts(conn, t: Table, rules: Sequence[Rule], as_of: date) -> list[dict]:
    """One scan of ``t`` counting every row-predicate rule's checked and failed rows by group.

    Unique rules also get their checked count here (the rows with a full key); their failures come
    from :func:`_unique_failed`.
    """
    groups = _group_columns(t)
    cols = [g.label(f"g{i}") for i, g in enumerate(groups)]
    for i, rule in enumerate(rules):
        checked = _checked_expr(rule, t)
        cols.append(func.sum(case((checked, 1), else_=0)).label(f"c{i}"))
        if rule.kind in ROW_KINDS:
            cols.append(func.sum(case((and_(checked, _failed_expr(rule, t, as_of)), 1), else_=0)).label(f"f{i}"))
    stmt = select(*cols).select_from(t)
    if groups:
        stmt = stmt.group_by(*groups)
    out = []
    for row in conn.execute(stmt).mappings():
        branch = _group_label(row["g0"]) if groups else None
        channel = _group_label(row["g1"]) if groups else None
        for i, rule in enumerate(rules):
            out.append({"rule": rule.name, "branch": branch, "channel": channel,
                        "checked": int(row[f"c{i}"] or 0), "failed": int(row.get(f"f{i}") or 0)})
    return out


def _fk_counts(conn, rule: Rule, t: Table) -> list[dict]:
    """A foreign key by LEFT JOIN: checked = rows with a value, failed = those with no match."""
    groups = _group_columns(t)
    joined, ref_col = _fk_parts(rule, t)
    stmt = (select(*[g.label(f"g{i}") for i, g in enumerate(groups)],
                   func.count().label("checked"),
                   func.sum(case((ref_col.is_(None), 1), else_=0)).label("failed"))
            .select_from(joined).where(_checked_expr(rule, t)))
    if groups:
        stmt = stmt.group_by(*groups)
    out = []
    for row in conn.execute(stmt).mappings():
        out.append({"rule": rule.name,
                    "branch": _group_label(row["g0"]) if groups else None,
                    "channel": _group_label(row["g1"]) if groups else None,
                    "checked": int(row["checked"] or 0), "failed": int(row["failed"] or 0)})
    return out


def _unique_failed(conn, rule: Rule, t: Table) -> list[dict]:
    """Rows whose key another checked row with a smaller primary key already has (GROUP BY HAVING)."""
    groups = _group_columns(t)
    joined, dups = _dup_join(rule, t)
    stmt = (select(*[g.label(f"g{i}") for i, g in enumerate(groups)], func.count().label("failed"))
            .select_from(joined)
            .where(_checked_expr(rule, t), _pk(t) != dups.c.first_pk))
    if groups:
        stmt = stmt.group_by(*groups)
    return [{"rule": rule.name,
             "branch": _group_label(row["g0"]) if groups else None,
             "channel": _group_label(row["g1"]) if groups else None,
             "checked": 0, "failed": int(row["failed"] or 0)}
            for row in conn.execute(stmt).mappings()]


# --- Python-side rules, streamed in chunks ----------------------------------------------------


# A space next to a CJK character: Chinese is written without spaces, so "张 三" and "张\u3000三"
# are "张三" typed again at another counter, while "Li Wei" and "LiWei" stay different.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u00b7"
_SPACE_BY_CJK = re.compile(rf"(?<=[{_CJK}]) | (?=[{_CJK}])")


def _norm_text(v: Any) -> str | None:
    """Strip, collapse whitespace (any Unicode space, e.g. the ideographic U+3000) to one space,
    drop spaces next to a CJK character, casefold."""
    if not isinstance(v, str):
        return None
    out = _SPACE_BY_CJK.sub("", " ".join(v.split())).casefold()
    return out or None


_NON_DIGITS = re.compile(r"[^0-9]")


def _norm_phone(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    digits = _NON_DIGITS.sub("", v)
    # +86 / 86 in front of an 11-digit mobile number is the same number.
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits or None


def _norm_date(v: Any) -> str | None:
    if v is None:
        return None
    out = str(v).strip()[:10]
    return out or None


_NORMALISE: dict[str, Callable[[Any], str | None]] = {"text": _norm_text, "phone": _norm_phone, "date": _norm_date}


def _calc_label(name: str) -> str:
    return f"q_{name}"


def _calc_columns(t: Table, rules: Sequence[Rule]) -> dict[str, Any]:
    """label -> expression for the columns the Python rules compute on (dates as ISO text)."""
    out: dict[str, Any] = {}
    for rule in rules:
        names = list(rule.columns)
        if rule.kind == "id_consistency":
            names.append(rule.params["field"])
        for name in names:
            col = t.c[name]
            # Text keeps the comparison with the ID's digits exact and avoids a per-row date object.
            out[_calc_label(name)] = cast(col, String) if isinstance(col.type, (Date, DateTime)) else col
    return out


def _validity(validator: str, label: str, chunk: Mapping[str, np.ndarray], as_of: date,
              cache: dict) -> np.ndarray:
    """A validator's mask over a whole chunk column, computed once per chunk: the resident-ID check
    serves the format rule and both consistency rules."""
    key = (validator, label)
    if key not in cache:
        cache[key] = VALIDATORS[validator](pd.Series(chunk[label], dtype=object), as_of)
    return cache[key]


def _python_masks(rule: Rule, chunk: Mapping[str, np.ndarray], candidate: np.ndarray, as_of: date,
                  cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a Python-side rule on one chunk.

    ``candidate`` marks the rows SQL already found in scope (``where`` matched, every column read
    present). Returns (checked, failed) for format and id_consistency rules, and (checked, key
    hashes) for likely_duplicate, whose failures need the whole table (:func:`_finish_duplicates`).
    """
    cache = {} if cache is None else cache
    n = len(candidate)
    rows = np.flatnonzero(candidate)
    failed = np.zeros(n, dtype=bool)
    if rule.kind == "format":
        label = _calc_label(rule.column)
        if "validator" in rule.params:
            ok = _validity(rule.params["validator"], label, chunk, as_of, cache)[rows]
        else:
            rx = re.compile(rule.params["pattern"])
            ok = np.fromiter((isinstance(v, str) and rx.fullmatch(v) is not None for v in chunk[label][rows]),
                             dtype=bool, count=len(rows))
        failed[rows] = ~ok
        return candidate, failed
    if rule.kind == "id_consistency":
        id_label = _calc_label(rule.column)
        checked = candidate & _validity("resident_id", id_label, chunk, as_of, cache)
        rows = np.flatnonzero(checked)
        ids, other = chunk[id_label][rows], chunk[_calc_label(rule.params["field"])][rows]
        if rule.params["field"] == "birth_date":
            bad = [f"{i[6:10]}-{i[10:12]}-{i[12:14]}" != str(v).strip()[:10] for i, v in zip(ids, other, strict=True)]
        else:
            # 17th digit odd: male (GB 11643).
            bad = [("M" if int(i[16]) % 2 else "F") != str(v).strip().upper() for i, v in zip(ids, other, strict=True)]
        failed[rows] = np.array(bad, dtype=bool)
        return checked, failed
    if rule.kind == "likely_duplicate":
        parts = [[_NORMALISE[rule.params["normalise"][c]](v) for v in chunk[_calc_label(c)][rows]]
                 for c in rule.columns]
        keys = list(zip(*parts, strict=True))
        # A value that normalises to nothing (a phone of only separators) is missing too.
        full = np.fromiter((all(p is not None for p in k) for k in keys), dtype=bool, count=len(keys))
        checked = np.zeros(n, dtype=bool)
        checked[rows[full]] = True
        hashes = np.zeros(n, dtype=np.uint64)
        joined = np.array(["\x1f".join(k) for k, f in zip(keys, full, strict=True) if f], dtype=object)
        if len(joined):
            hashes[rows[full]] = pd.util.hash_array(joined)
        return checked, hashes
    raise AssertionError(f"{rule.kind} is not a Python-side kind")


def _stream(conn, stmt, chunk_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """Run ``stmt`` and yield its rows in chunks, as column name -> object array."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
    keys = list(result.keys())
    try:
        for part in result.partitions(chunk_rows):
            columns = list(zip(*part, strict=True)) if part else [() for _ in keys]
            chunk = {}
            for k, c in zip(keys, columns, strict=True):
                arr = np.empty(len(c), dtype=object)
                arr[:] = c
                chunk[k] = arr
            yield chunk
    finally:
        result.close()


def _python_select(t: Table, rules: Sequence[Rule], extra: Mapping[str, Any] | None = None):
    """SELECT of what the Python rules need, ordered by primary key (so "first" of a duplicate group
    is the row with the smallest key, as in the SQL unique rule)."""
    cols = [g.label(f"g{i}") for i, g in enumerate(_group_columns(t))]
    cols += [expr.label(label) for label, expr in _calc_columns(t, rules).items()]
    # The rows in scope (where matched, every column read present) are found by SQL, which is far
    # quicker at it than a Python loop; Python then looks only at those.
    cols += [case((_checked_expr(rule, t), 1), else_=0).label(f"w{i}") for i, rule in enumerate(rules)]
    cols += [expr.label(label) for label, expr in (extra or {}).items()]
    return select(*cols).select_from(t).order_by(*t.primary_key.columns)


def _finish_duplicates(checked: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Failed mask of a likely-duplicate rule: every checked row after the first with its key."""
    failed = np.zeros(len(checked), dtype=bool)
    idx = np.flatnonzero(checked)
    dup = pd.Series(hashes[idx]).duplicated(keep="first").to_numpy()
    failed[idx[dup]] = True
    return failed


def _python_counts(conn, t: Table, rules: Sequence[Rule], as_of: date, chunk_rows: int) -> list[dict]:
    """Stream ``t`` once for all its Python-side rules and count checked/failed rows by group."""
    groups = _group_columns(t)
    group_ids: dict[tuple, int] = {}
    codes_parts: list[np.ndarray] = []
    checked_parts: list[list[np.ndarray]] = [[] for _ in rules]
    second_parts: list[list[np.ndarray]] = [[] for _ in rules]
    for chunk in _stream(conn, _python_select(t, rules), chunk_rows):
        n = len(next(iter(chunk.values())))
        if groups:
            pairs = zip(chunk["g0"], chunk["g1"], strict=True)
            codes = np.fromiter((group_ids.setdefault(p, len(group_ids)) for p in pairs), dtype=np.int64, count=n)
        else:
            group_ids.setdefault((None, None), 0)
            codes = np.zeros(n, dtype=np.int64)
        codes_parts.append(codes)
        cache: dict = {}
        for i, rule in enumerate(rules):
            candidate = chunk[f"w{i}"].astype(np.int64) == 1
            checked, second = _python_masks(rule, chunk, candidate, as_of, cache)
            checked_parts[i].append(checked)
            second_parts[i].append(second)
    codes = np.concatenate(codes_parts) if codes_parts else np.zeros(0, dtype=np.int64)
    labels = list(group_ids)
    size = max(len(labels), 1)
    out = []
    for i, rule in enumerate(rules):
        checked = np.concatenate(checked_parts[i]) if codes_parts else np.zeros(0, dtype=bool)
        second = np.concatenate(second_parts[i]) if codes_parts else np.zeros(0, dtype=bool)
        failed = _finish_duplicates(checked, second) if rule.kind == "likely_duplicate" else second & checked
        n_checked = np.bincount(codes[checked], minlength=size)
        n_failed = np.bincount(codes[failed], minlength=size)
        for code, (g0, g1) in enumerate(labels):
            out.append({"rule": rule.name,
                        "branch": _group_label(g0) if groups else None,
                        "channel": _group_label(g1) if groups else None,
                        "checked": int(n_checked[code]), "failed": int(n_failed[code])})
    return out


def evaluate(engine: Engine, ruleset: RuleSet | Sequence[Rule], *, as_of: date,
             chunk_rows: int | None = None) -> QualityResult:
    """Evaluate rules against the store.

    Parameters
    ----------
    engine : Engine
        The customer store.
    ruleset : RuleSet or sequence of Rule
        The rules (from :func:`load_rules`, or built by :func:`parse_rule`).
    as_of : datetime.date
        The date freshness, expiry and "not in the future" are judged at.
    chunk_rows : int, optional
        Rows per streamed chunk for the Python-side rules; default ``LOAD_CHUNK_ROWS``.

    Returns
    -------
    QualityResult
    """
    rules = tuple(ruleset.rules if isinstance(ruleset, RuleSet) else ruleset)
    chunk_rows = int(chunk_rows or settings.get("LOAD_CHUNK_ROWS"))
    counts: list[dict] = []
    seconds: dict[str, float] = {}
    by_table: dict[str, list[Rule]] = {}
    for rule in rules:
        by_table.setdefault(rule.table, []).append(rule)
    with engine.connect() as conn:
        for table_name, table_rules in by_table.items():
            t0 = _time.perf_counter()
            t = metadata.tables[table_name]
            scanned = [r for r in table_rules if r.kind in ROW_KINDS or r.kind == "unique"]
            if scanned:
                counts += _row_rule_counts(conn, t, scanned, as_of)
            for rule in table_rules:
                if rule.kind == "foreign_key":
                    counts += _fk_counts(conn, rule, t)
                elif rule.kind == "unique":
                    counts += _unique_failed(conn, rule, t)
            python_rules = [r for r in table_rules if r.kind in PYTHON_KINDS]
            if python_rules:
                counts += _python_counts(conn, t, python_rules, as_of, chunk_rows)
            seconds[table_name] = round(_time.perf_counter() - t0, 3)
            log.info("data quality: %d rules on %s in %.2f s", len(table_rules), table_name, seconds[table_name])
    long = pd.DataFrame(counts, columns=_COUNT_COLUMNS)
    long = long.astype({"rule": object, "branch": object, "channel": object, "checked": "int64", "failed": "int64"})

    totals = long.groupby("rule", sort=False)[["checked", "failed"]].sum()
    rows = []
    for position, rule in enumerate(rules):
        checked = int(totals.loc[rule.name, "checked"]) if rule.name in totals.index else 0
        failed = int(totals.loc[rule.name, "failed"]) if rule.name in totals.index else 0
        rows.append({"rule": rule.name, "position": position, "table_name": rule.table,
                     "column_name": ",".join(rule.columns), "kind": rule.kind, "dimension": rule.dimension,
                     "severity": rule.severity, "checked": checked, "failed": failed,
                     "pass_rate": (checked - failed) / checked if checked else np.nan,
                     "as_of": as_of, "definition": json.dumps(rule.definition(), ensure_ascii=False,
                                                              sort_keys=True)})
    results = pd.DataFrame(rows, columns=["rule", "position", "table_name", "column_name", "kind", "dimension",
                                          "severity", "checked", "failed", "pass_rate", "as_of", "definition"])

    grouped = long[long["branch"].notna()]
    parts = []
    for scope, col in (("branch", "branch"), ("channel", "channel")):
        g = grouped.groupby(["rule", col], sort=True)[["checked", "failed"]].sum().reset_index()
        g = g.rename(columns={col: "scope_value"})
        g.insert(1, "scope", scope)
        parts.append(g[(g["checked"] > 0) | (g["failed"] > 0)])
    breakdown = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["rule", "scope", "scope_value", "checked", "failed"])
    return QualityResult(rules=results, breakdown=breakdown, seconds=seconds)
