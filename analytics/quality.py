"""Data quality: a rule engine over the customer store, scores per run, history and drill-down.

Rules live in ``data/dq_rules.yaml`` (see that file for every kind, its parameters and its
denominator). The refresh's ``data_quality`` stage (:func:`run_stage`) evaluates them all, stores

* per rule: rows checked, rows failed and the pass rate (``dq_rule_results``);
* per rule and branch / onboarding channel, for rules on ``customers`` (``dq_rule_breakdown``);
* scores in [0, 1] overall, per table, per branch and per channel, each per dimension and overall
  (``dq_scores``);
* the headline figures in ``run_metrics``: ``dq_overall``, ``dq_completeness`` (完整率),
  ``dq_validity`` (准确率), ``dq_freshness`` (鲜活率, the timeliness dimension),
  ``dq_consistency``, ``dq_uniqueness``, and ``dq_as_of``.

**Scores.** The pass rate of a rule is ``(checked - failed) / checked`` (undefined, and left out,
when it checked nothing). A dimension's score is the mean of its rules' pass rates weighted by
severity (high 3, medium 2, low 1); the overall score is the mean of the dimension scores weighted
completeness 0.25, validity 0.25, consistency 0.20, uniqueness 0.10, timeliness 0.20 (a dimension
with nothing checked is left out and the rest re-weighted). Both weight sets are in the rule file.
Every scope (overall, a table, a branch, a channel) is scored by the same formula from its own rules.

**Speed.** Counting is pushed down to SQL wherever SQL can do it: all the row-predicate rules of a
table (not-null, allowed values, range, compare, freshness, expiry) share a single scan with one
``SUM(CASE ...)`` pair per rule, grouped by branch and channel; a foreign key is a ``LEFT JOIN``; a
unique key is a ``GROUP BY ... HAVING COUNT(*) > 1`` joined back. Only what SQL cannot do portably
(the identifier validators, regular expressions, ID/birth-date/gender consistency, normalised
likely duplicates) streams the needed columns once per table in chunks of ``LOAD_CHUNK_ROWS`` and
uses the vectorised masks of :mod:`analytics.validators`. Table and column names come only from the
rule file and are checked against the schema (:data:`analytics.schema.metadata`) before any SQL is
built; every value is a bound parameter.

**Drill-down** (:func:`failing_records`, :func:`fix_list`) re-runs one stored rule definition at
the run's as-of date against the store as it is *now*: a record fixed since the run no longer
shows. Results are unmasked unless ``roles`` is given; pages must pass the user's roles.
"""

from __future__ import annotations

import calendar
import json
import logging
import operator
import re
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
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

from analytics import settings, validators
from analytics.errors import AnalyticsError, ConfigError, StoreNotInitialisedError
from analytics.schema import (
    STORE_TABLES,
    current_run,
    customers,
    dq_rule_breakdown,
    dq_rule_results,
    dq_scores,
    metadata,
    refresh_runs,
)
from analytics.store import bulk_insert, read_frame

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = settings.PROJECT_ROOT / "data" / "dq_rules.yaml"

DIMENSIONS: tuple[str, ...] = ("completeness", "validity", "consistency", "uniqueness", "timeliness")
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
DEFAULT_DIMENSION_WEIGHTS: dict[str, float] = {
    "completeness": 0.25, "validity": 0.25, "consistency": 0.20, "uniqueness": 0.10, "timeliness": 0.20,
}
DEFAULT_SEVERITY_WEIGHTS: dict[str, float] = {"high": 3.0, "medium": 2.0, "low": 1.0}

# run_metrics name -> dimension ("overall" for the overall score). The first four are the figures
# the bank's guidance names: overall, 完整率, 准确率, 鲜活率.
METRIC_DIMENSIONS: dict[str, str] = {
    "dq_overall": "overall",
    "dq_completeness": "completeness",
    "dq_validity": "validity",
    "dq_freshness": "timeliness",
    "dq_consistency": "consistency",
    "dq_uniqueness": "uniqueness",
}

# Per-group breakdowns: scope name -> customers column. Only rules on `customers` are broken down:
# the other tables reach a branch only through a customer, and a holding's defect is not the branch's.
BREAKDOWNS: dict[str, str] = {"branch": "branch_id", "channel": "onboarding_channel"}
BREAKDOWN_TABLE = "customers"
MISSING_GROUP = "(missing)"

ROW_KINDS = frozenset({"not_null", "allowed_values", "range", "compare", "freshness", "expiry"})
SQL_QUERY_KINDS = frozenset({"foreign_key", "unique"})
PYTHON_KINDS = frozenset({"format", "id_consistency", "likely_duplicate"})

# kind -> (required parameters, optional parameters), besides the common keys.
_KIND_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "not_null": (frozenset({"column"}), frozenset()),
    "format": (frozenset({"column"}), frozenset({"pattern", "validator"})),
    "allowed_values": (frozenset({"column", "values"}), frozenset()),
    "range": (frozenset({"column"}), frozenset({"min", "max"})),
    "compare": (frozenset({"column", "op", "other"}), frozenset()),
    "foreign_key": (frozenset({"column", "references"}), frozenset()),
    "unique": (frozenset({"columns"}), frozenset()),
    "likely_duplicate": (frozenset({"columns"}), frozenset({"normalise"})),
    "id_consistency": (frozenset({"column", "field"}), frozenset()),
    "freshness": (frozenset({"column"}), frozenset({"months", "days", "months_setting", "days_setting"})),
    "expiry": (frozenset({"column"}), frozenset({"warn_days"})),
}
_COMMON_KEYS = frozenset({"name", "table", "dimension", "severity", "kind", "where", "description"})
_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")

_COMPARE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne,
}
AS_OF = "as_of"  # a range bound meaning the run's as-of date


class QualityError(AnalyticsError):
    """A data-quality result asked for does not exist (unknown rule, or a run without results)."""


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def _mask_bank_card(values: pd.Series) -> npt.NDArray[np.bool_]:
    return np.fromiter(map(validators.is_valid_bank_card, values), dtype=bool, count=len(values))


def _mask_email(values: pd.Series) -> npt.NDArray[np.bool_]:
    return np.fromiter(map(validators.is_valid_email, values), dtype=bool, count=len(values))


def _mask_uscc(values: pd.Series) -> npt.NDArray[np.bool_]:
    return np.fromiter(map(validators.is_valid_uscc, values), dtype=bool, count=len(values))


# Named validators a format rule may use: name -> f(values, as_of) -> bool mask. The resident ID takes
# the as-of date as "today", so a re-run on the same data gives the same answer next year.
VALIDATORS: dict[str, Callable[[pd.Series, date], npt.NDArray[np.bool_]]] = {
    "resident_id": lambda s, as_of: validators.valid_resident_id_mask(s, today=as_of),
    "cn_mobile": lambda s, as_of: validators.valid_cn_mobile_mask(s),
    "email": lambda s, as_of: _mask_email(s),
    "bank_card": lambda s, as_of: _mask_bank_card(s),
    "uscc": lambda s, as_of: _mask_uscc(s),
}

NORMALISERS = ("text", "phone", "date")


@dataclass(frozen=True)
class Rule:
    """One data-quality rule, validated against the schema.

    Attributes
    ----------
    name, table, dimension, severity, kind : str
        As in the rule file.
    columns : tuple of str
        The checked column(s); single-column kinds have one.
    params : dict
        The kind's parameters with settings resolved (``months_setting`` becomes ``months``) and
        range dates parsed.
    where : dict
        Column -> tuple of values: only rows matching every entry are checked.
    description : str
    """

    name: str
    table: str
    dimension: str
    severity: str
    kind: str
    columns: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    where: dict[str, tuple] = field(default_factory=dict)
    description: str = ""

    @property
    def column(self) -> str:
        """The first (for most kinds, the only) checked column."""
        return self.columns[0]

    def related_columns(self) -> tuple[str, ...]:
        """Columns worth showing next to a failing row: the checked ones and those they are compared with."""
        extra = []
        if self.kind == "compare":
            extra.append(self.params["other"])
        if self.kind == "id_consistency":
            extra.append(self.params["field"])
        out = list(self.columns) + extra + list(self.where)
        return tuple(dict.fromkeys(out))

    def definition(self) -> dict[str, Any]:
        """The rule as a JSON-ready dict that :func:`parse_rule` turns back into the same rule."""
        out: dict[str, Any] = {"name": self.name, "table": self.table, "dimension": self.dimension,
                               "severity": self.severity, "kind": self.kind}
        if self.kind in ("unique", "likely_duplicate"):
            out["columns"] = list(self.columns)
        else:
            out["column"] = self.column
        for key, value in self.params.items():
            out[key] = value.isoformat() if isinstance(value, date) else value
        if self.where:
            out["where"] = {k: list(v) for k, v in self.where.items()}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class RuleSet:
    """The rules of a rule file and the weights that turn their pass rates into scores."""

    rules: tuple[Rule, ...]
    dimension_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DIMENSION_WEIGHTS))
    severity_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_WEIGHTS))

    def get(self, name: str) -> Rule:
        """The rule called ``name``; :class:`QualityError` if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise QualityError(f"No data-quality rule named {name!r}.")


def _table(name: Any, where: str) -> Table:
    if name not in STORE_TABLES:
        raise ConfigError(f"{where}: unknown table {name!r}; expected one of {', '.join(STORE_TABLES)}.")
    return metadata.tables[name]


def _column_name(table: Table, name: Any, where: str) -> str:
    if not isinstance(name, str) or name not in table.c:
        raise ConfigError(f"{where}: table {table.name} has no column {name!r}.")
    return name


def _parse_bound(value: Any, coltype, where: str) -> Any:
    """A range bound: ``as_of``, a number, or a date (YAML date or ISO text) for a date column."""
    if value == AS_OF:
        return AS_OF
    if isinstance(coltype, (Date, DateTime)):
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a date (YYYY-MM-DD) or 'as_of'.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: range bound {value!r} is not a number.")
    return value


def _positive_int(value: Any, where: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(f"{where}: expected a {'non-negative' if allow_zero else 'positive'} integer, "
                          f"got {value!r}.")
    return value


def parse_rule(raw: Mapping[str, Any]) -> Rule:
    """Validate one rule entry (a mapping from the rule file) and return the :class:`Rule`.

    Raises
    ------
    ConfigError
        Naming the rule and what is wrong: an unknown key, table, column, kind, dimension, severity,
        validator or setting; a missing parameter; a bad regular expression or bound.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"A data-quality rule must be a mapping, got {type(raw).__name__}.")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"Data-quality rule name {name!r} must be lower_snake_case (at most 80 characters).")
    where = f"data-quality rule {name}"
    kind = raw.get("kind")
    if kind not in _KIND_PARAMS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; expected one of {', '.join(_KIND_PARAMS)}.")
    required, optional = _KIND_PARAMS[kind]
    unknown = set(raw) - _COMMON_KEYS - required - optional
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for kind {kind}.")
    missing = [k for k in ("table", "dimension", "severity", *sorted(required)) if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}.")
    if raw["dimension"] not in DIMENSIONS:
        raise ConfigError(f"{where}: dimension must be one of {', '.join(DIMENSIONS)}.")
    if raw["severity"] not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {', '.join(SEVERITIES)}.")
    table = _table(raw["table"], where)

    if "columns" in required:
        cols = raw["columns"]
        if not isinstance(cols, list) or not cols:
            raise ConfigError(f"{where}: columns must be a non-empty list.")
        columns = tuple(_column_name(table, c, where) for c in cols)
    else:
        columns = (_column_name(table, raw["column"], where),)
    col = table.c[columns[0]]

    params: dict[str, Any] = {}
    if kind == "format":
        if ("pattern" in raw) == ("validator" in raw):
            raise ConfigError(f"{where}: a format rule needs exactly one of pattern or validator.")
        if "validator" in raw:
            if raw["validator"] not in VALIDATORS:
                raise ConfigError(f"{where}: unknown validator {raw['validator']!r}; expected one of "
                                  f"{', '.join(VALIDATORS)}.")
            params["validator"] = raw["validator"]
        else:
            try:
                re.compile(raw["pattern"])
            except (re.error, TypeError) as exc:
                raise ConfigError(f"{where}: invalid regular expression: {exc}") from None
            params["pattern"] = raw["pattern"]
    elif kind == "allowed_values":
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: values must be a non-empty list.")
        params["values"] = list(values)
    elif kind == "range":
        if "min" not in raw and "max" not in raw:
            raise ConfigError(f"{where}: a range rule needs min, max or both.")
        for key in ("min", "max"):
            if key in raw:
                params[key] = _parse_bound(raw[key], col.type, where)
    elif kind == "compare":
        if raw["op"] not in _COMPARE_OPS:
            raise ConfigError(f"{where}: op must be one of {' '.join(_COMPARE_OPS)}.")
        params["op"] = raw["op"]
        params["other"] = _column_name(table, raw["other"], where)
    elif kind == "foreign_key":
        ref = raw["references"]
        if not isinstance(ref, str) or ref.count(".") != 1:
            raise ConfigError(f"{where}: references must be 'table.column'.")
        ref_table_name, ref_col_name = ref.split(".")
        ref_table = _table(ref_table_name, where)
        _column_name(ref_table, ref_col_name, where)
        ref_col = ref_table.c[ref_col_name]
        # A LEFT JOIN on a non-unique column would multiply rows and miscount.
        if not (ref_col.primary_key and len(ref_table.primary_key.columns) == 1) and not ref_col.unique:
            raise ConfigError(f"{where}: {ref} is not a unique column, so it cannot be referenced.")
        params["references"] = ref
    elif kind in ("unique", "likely_duplicate"):
        if len(table.primary_key.columns) != 1:
            raise ConfigError(f"{where}: {kind} needs a table with a single-column primary key.")
        if kind == "likely_duplicate":
            norm = raw.get("normalise", {}) or {}
            if not isinstance(norm, Mapping) or set(norm) - set(columns):
                raise ConfigError(f"{where}: normalise must map some of the rule's columns to a normaliser.")
            bad = {v for v in norm.values() if v not in NORMALISERS}
            if bad:
                raise ConfigError(f"{where}: unknown normaliser(s) {bad}; expected {', '.join(NORMALISERS)}.")
            params["normalise"] = {c: norm.get(c, _default_normaliser(table, c)) for c in columns}
    elif kind == "id_consistency":
        if raw["field"] not in ("birth_date", "gender"):
            raise ConfigError(f"{where}: field must be birth_date or gender.")
        params["field"] = _column_name(table, raw["field"], where)
    elif kind == "freshness":
        given = [k for k in ("months", "days", "months_setting", "days_setting") if k in raw]
        if len(given) != 1:
            raise ConfigError(f"{where}: a freshness rule needs exactly one of months, days, "
                              "months_setting, days_setting.")
        key = given[0]
        if key.endswith("_setting"):
            setting = raw[key]
            if setting not in settings.SETTINGS:
                raise ConfigError(f"{where}: unknown setting {setting!r}.")
            unit = key.removesuffix("_setting")
            params[unit] = _positive_int(int(settings.get(setting)), f"{where} ({setting})")
        else:
            params[key] = _positive_int(raw[key], where)
        if not isinstance(col.type, (Date, DateTime)):
            raise ConfigError(f"{where}: freshness needs a date or timestamp column.")
    elif kind == "expiry":
        params["warn_days"] = _positive_int(raw.get("warn_days", 0), where, allow_zero=True)
        if not isinstance(col.type, (Date, DateTime)):
            raise ConfigError(f"{where}: expiry needs a date or timestamp column.")

    where_raw = raw.get("where") or {}
    if not isinstance(where_raw, Mapping):
        raise ConfigError(f"{where}: where must map column names to a value or a list of values.")
    where_clause: dict[str, tuple] = {}
    for wcol, wval in where_raw.items():
        _column_name(table, wcol, where)
        values = tuple(wval) if isinstance(wval, list) else (wval,)
        if not values or any(v is None for v in values):
            raise ConfigError(f"{where}: where {wcol} needs at least one non-null value.")
        where_clause[wcol] = values
    description = raw.get("description") or ""
    return Rule(name=name, table=table.name, dimension=raw["dimension"], severity=raw["severity"],
                kind=kind, columns=columns, params=params, where=where_clause, description=str(description))


def _default_normaliser(table: Table, column: str) -> str:
    return "date" if isinstance(table.c[column].type, (Date, DateTime)) else "text"


def _weights(raw: Any, keys: Sequence[str], default: Mapping[str, float], what: str) -> dict[str, float]:
    if raw is None:
        return dict(default)
    if not isinstance(raw, Mapping) or set(raw) != set(keys):
        raise ConfigError(f"Rule file weights.{what} must give a weight for each of {', '.join(keys)}.")
    out = {}
    for key in keys:
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"Rule file weights.{what}.{key} must be a positive number, got {value!r}.")
        out[key] = float(value)
    return out


def parse_rules(doc: Mapping[str, Any]) -> RuleSet:
    """Validate a whole rule document (``{"weights": ..., "rules": [...]}``) into a :class:`RuleSet`."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        raise ConfigError("The data-quality rule file must hold a `rules:` list.")
    unknown = set(doc) - {"weights", "rules"}
    if unknown:
        raise ConfigError(f"The data-quality rule file has unknown top-level key(s): {', '.join(sorted(unknown))}.")
    rules = tuple(parse_rule(r) for r in doc["rules"])
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"Data-quality rule name(s) used twice: {', '.join(dupes)}.")
    weights = doc.get("weights") or {}
    if not isinstance(weights, Mapping) or set(weights) - {"dimensions", "severity"}:
        raise ConfigError("Rule file weights may hold only `dimensions` and `severity`.")
    return RuleSet(rules=rules,
                   dimension_weights=_weights(weights.get("dimensions"), DIMENSIONS,
                                              DEFAULT_DIMENSION_WEIGHTS, "dimensions"),
                   severity_weights=_weights(weights.get("severity"), SEVERITIES,
                                             DEFAULT_SEVERITY_WEIGHTS, "severity"))


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate the rule file (default ``data/dq_rules.yaml``).

    Raises
    ------
    ConfigError
        When the file is missing, not YAML, or a rule is invalid (the message names the rule).
    """
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Data-quality rule file {path} not found.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Data-quality rule file {path} is not valid YAML: {exc}") from None
    return parse_rules(doc)


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
        return _before_day(col, _cutoff(rule, as_of))
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


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def _score_rows(frame: pd.DataFrame, dimension_weights: Mapping[str, float],
                severity_weights: Mapping[str, float]) -> list[dict]:
    """Dimension and overall scores of one scope from its rules' (dimension, severity, checked, failed)."""
    f = frame[frame["checked"] > 0]
    rows = []
    dim_scores: dict[str, float] = {}
    for dim in DIMENSIONS:
        g = f[f["dimension"] == dim]
        if g.empty:
            continue
        w = np.array([severity_weights[s] for s in g["severity"]], dtype=float)
        rate = 1.0 - g["failed"].to_numpy(dtype=float) / g["checked"].to_numpy(dtype=float)
        dim_scores[dim] = float((w * rate).sum() / w.sum())
        rows.append({"dimension": dim, "score": dim_scores[dim],
                     "checked": int(g["checked"].sum()), "failed": int(g["failed"].sum())})
    if dim_scores:
        total = sum(dimension_weights[d] for d in dim_scores)
        overall = sum(dimension_weights[d] * s for d, s in dim_scores.items()) / total
        rows.append({"dimension": "overall", "score": overall,
                     "checked": int(f["checked"].sum()), "failed": int(f["failed"].sum())})
    return rows


def compute_scores(results: pd.DataFrame, breakdown: pd.DataFrame | None = None, *,
                   dimension_weights: Mapping[str, float] | None = None,
                   severity_weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Scores per scope and dimension from per-rule counts.

    Parameters
    ----------
    results : DataFrame
        One row per rule with rule, table_name, dimension, severity, checked, failed.
    breakdown : DataFrame, optional
        rule, scope, scope_value, checked, failed (per branch / channel).
    dimension_weights, severity_weights : mapping, optional
        Default :data:`DEFAULT_DIMENSION_WEIGHTS` and :data:`DEFAULT_SEVERITY_WEIGHTS`.

    Returns
    -------
    DataFrame
        scope (overall, table, branch, channel), scope_value ("" for overall), dimension (the five
        dimensions and "overall"), score in [0, 1], checked, failed. Dimensions with nothing
        checked in a scope have no row.
    """
    dw = dict(dimension_weights or DEFAULT_DIMENSION_WEIGHTS)
    sw = dict(severity_weights or DEFAULT_SEVERITY_WEIGHTS)
    out: list[dict] = []

    def add(scope: str, value: str, frame: pd.DataFrame) -> None:
        for row in _score_rows(frame, dw, sw):
            out.append({"scope": scope, "scope_value": value, **row})

    add("overall", "", results)
    for table_name, frame in results.groupby("table_name", sort=True):
        add("table", str(table_name), frame)
    if breakdown is not None and not breakdown.empty:
        meta = results[["rule", "dimension", "severity"]]
        merged = breakdown.merge(meta, on="rule", how="inner")
        for (scope, value), frame in merged.groupby(["scope", "scope_value"], sort=True):
            add(str(scope), str(value), frame)
    return pd.DataFrame(out, columns=["scope", "scope_value", "dimension", "score", "checked", "failed"])


# ---------------------------------------------------------------------------------------------
# The refresh stage
# ---------------------------------------------------------------------------------------------


def store_results(engine: Engine, run_id: int, result: QualityResult, scores: pd.DataFrame) -> None:
    """Write a run's rule results, breakdown and scores in one transaction."""
    with engine.begin() as conn:
        for table, frame in ((dq_rule_results, result.rules), (dq_rule_breakdown, result.breakdown),
                             (dq_scores, scores)):
            frame = frame.copy()
            frame.insert(0, "run_id", run_id)
            bulk_insert(engine, table, frame, conn=conn)


def run_stage(ctx) -> None:
    """The refresh's ``data_quality`` stage: evaluate every rule, store results and scores.

    Parameters
    ----------
    ctx : analytics.runs.RefreshContext
    """
    ruleset = load_rules()
    as_of = as_of_date(ctx.as_of_month)
    result = evaluate(ctx.engine, ruleset, as_of=as_of)
    scores = compute_scores(result.rules, result.breakdown, dimension_weights=ruleset.dimension_weights,
                            severity_weights=ruleset.severity_weights)
    store_results(ctx.engine, ctx.run_id, result, scores)
    overall = scores[scores["scope"] == "overall"].set_index("dimension")["score"]
    values: dict[str, float | str | None] = {
        name: (float(overall[dim]) if dim in overall.index else None) for name, dim in METRIC_DIMENSIONS.items()
    }
    values["dq_as_of"] = as_of.isoformat()
    values["dq_rules_failing"] = float((result.rules["failed"] > 0).sum())
    ctx.put_metrics(values)
    # Also in the run record, which outlives result pruning (REFRESH_KEEP_RUNS): the trend needs it.
    for dim in ("overall", *DIMENSIONS):
        if dim in overall.index:
            ctx.metrics[f"dq.{dim}"] = float(overall[dim])
    for table_name, secs in result.seconds.items():
        ctx.metrics[f"dq_seconds.{table_name}"] = secs
    ctx.row_counts["dq_rules"] = len(ruleset.rules)


# ---------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------


def _resolve_run(engine: Engine, run_id: int | None) -> int:
    if run_id is not None:
        return int(run_id)
    with engine.connect() as conn:
        current = conn.execute(select(current_run.c.run_id).where(current_run.c.id == 1)).scalar()
    if current is None:
        raise StoreNotInitialisedError("No refresh has completed yet, so there are no data-quality results. "
                                       "Hint: `python -m analytics refresh`.")
    return int(current)


def rule_results(engine: Engine, run_id: int | None = None) -> pd.DataFrame:
    """Per-rule results of a run (default: the current run), in rule-file order.

    Returns
    -------
    DataFrame
        rule, table_name, column_name, kind, dimension, severity, checked, failed, passed, pass_rate,
        as_of, description.
    """
    run_id = _resolve_run(engine, run_id)
    t = dq_rule_results
    df = read_frame(engine, select(t.c.rule, t.c.table_name, t.c.column_name, t.c.kind, t.c.dimension,
                                   t.c.severity, t.c.checked, t.c.failed, t.c.pass_rate, t.c.as_of,
                                   t.c.definition)
                    .where(t.c.run_id == run_id).order_by(t.c.position))
    df.insert(df.columns.get_loc("failed") + 1, "passed", df["checked"] - df["failed"])
    df["description"] = [json.loads(d).get("description", "") for d in df["definition"]]
    return df.drop(columns=["definition"])


def rule_breakdown(engine: Engine, run_id: int | None = None, *, scope: str = "branch",
                   rule: str | None = None) -> pd.DataFrame:
    """Per-branch (``scope="branch"``) or per-channel counts of each customer rule for a run.

    Returns
    -------
    DataFrame
        rule, scope_value, checked, failed, pass_rate; e.g. filter rule ``customer_id_not_expired``
        and sort by failed to see which branch has the most expired ID documents.
    """
    if scope not in BREAKDOWNS:
        raise QualityError(f"scope must be one of {', '.join(BREAKDOWNS)}.")
    run_id = _resolve_run(engine, run_id)
    t = dq_rule_breakdown
    stmt = (select(t.c.rule, t.c.scope_value, t.c.checked, t.c.failed)
            .where(t.c.run_id == run_id, t.c.scope == scope).order_by(t.c.rule, t.c.scope_value))
    if rule is not None:
        stmt = stmt.where(t.c.rule == rule)
    df = read_frame(engine, stmt)
    df["pass_rate"] = np.where(df["checked"] > 0, 1 - df["failed"] / df["checked"].where(df["checked"] > 0), np.nan)
    return df


def scores(engine: Engine, run_id: int | None = None, *, scope: str | None = None) -> pd.DataFrame:
    """Stored scores of a run (default: the current run), optionally of one scope."""
    run_id = _resolve_run(engine, run_id)
    t = dq_scores
    stmt = (select(t.c.scope, t.c.scope_value, t.c.dimension, t.c.score, t.c.checked, t.c.failed)
            .where(t.c.run_id == run_id).order_by(t.c.scope, t.c.scope_value, t.c.dimension))
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    return read_frame(engine, stmt)


def score_history(engine: Engine, *, scope: str = "overall", scope_value: str = "") -> pd.DataFrame:
    """Scores of every successful run, oldest first, for trend charts.

    Runs whose result rows were pruned (``REFRESH_KEEP_RUNS``) still appear for the overall scope:
    their overall and dimension scores are kept in the run record (``refresh_runs.metrics``).

    Returns
    -------
    DataFrame
        run_id, finished_at, dimension, score; one row per run and dimension.
    """
    with engine.connect() as conn:
        runs = conn.execute(select(refresh_runs.c.run_id, refresh_runs.c.finished_at, refresh_runs.c.metrics)
                            .where(refresh_runs.c.status == "succeeded")
                            .order_by(refresh_runs.c.run_id)).all()
        stored = read_frame(conn, select(dq_scores.c.run_id, dq_scores.c.dimension, dq_scores.c.score)
                            .join(refresh_runs, refresh_runs.c.run_id == dq_scores.c.run_id)
                            .where(refresh_runs.c.status == "succeeded", dq_scores.c.scope == scope,
                                   dq_scores.c.scope_value == scope_value))
    finished = {run_id: at for run_id, at, _ in runs}
    rows = [{"run_id": int(r), "dimension": d, "score": float(s)}
            for r, d, s in zip(stored["run_id"], stored["dimension"], stored["score"], strict=True)]
    have = set(stored["run_id"].astype(int))
    if scope == "overall":
        for run_id, _, metrics in runs:
            if run_id in have or not isinstance(metrics, Mapping):
                continue
            for dim in ("overall", *DIMENSIONS):
                value = metrics.get(f"dq.{dim}")
                if value is not None:
                    rows.append({"run_id": int(run_id), "dimension": dim, "score": float(value)})
    df = pd.DataFrame(rows, columns=["run_id", "dimension", "score"])
    order = {d: i for i, d in enumerate(("overall", *DIMENSIONS))}
    df["_order"] = df["dimension"].map(order)
    df = df.sort_values(["run_id", "_order"]).drop(columns="_order").reset_index(drop=True)
    df.insert(1, "finished_at", pd.to_datetime(pd.Series([finished.get(r) for r in df["run_id"]], dtype=object)))
    return df


def score_change(engine: Engine, run_id: int | None = None, *, scope: str = "overall",
                 scope_value: str = "") -> pd.DataFrame:
    """Each dimension's score in a run (default: current) against the previous successful run.

    Returns
    -------
    DataFrame
        dimension, score, previous_score (NaN when there is no earlier run or it lacks the
        dimension), change (score - previous_score). ``attrs`` holds ``run_id`` and ``previous_run_id``.
    """
    run_id = _resolve_run(engine, run_id)
    history = score_history(engine, scope=scope, scope_value=scope_value)
    now = history[history["run_id"] == run_id][["dimension", "score"]]
    earlier = history[history["run_id"] < run_id]
    previous_run = int(earlier["run_id"].max()) if not earlier.empty else None
    before = (earlier[earlier["run_id"] == previous_run][["dimension", "score"]]
              .rename(columns={"score": "previous_score"}))
    df = now.merge(before, on="dimension", how="left").reset_index(drop=True)
    df["change"] = df["score"] - df["previous_score"]
    df.attrs.update({"run_id": run_id, "previous_run_id": previous_run})
    return df


# ---------------------------------------------------------------------------------------------
# Drill-down
# ---------------------------------------------------------------------------------------------


def _stored_rule(engine: Engine, run_id: int, rule_name: str) -> tuple[Rule, date]:
    t = dq_rule_results
    with engine.connect() as conn:
        row = conn.execute(select(t.c.definition, t.c.as_of)
                           .where(t.c.run_id == run_id, t.c.rule == rule_name)).first()
    if row is None:
        raise QualityError(f"Run {run_id} has no result for data-quality rule {rule_name!r}.")
    as_of = row.as_of if isinstance(row.as_of, date) else date.fromisoformat(str(row.as_of)[:10])
    return parse_rule(json.loads(row.definition)), as_of


def _output_columns(rule: Rule, t: Table, columns: Iterable[str] | None) -> list[str]:
    names = [c.name for c in t.primary_key.columns]
    if "customer_id" in t.c:
        names.append("customer_id")
    names += list(rule.related_columns())
    for c in columns or ():
        names.append(_column_name(t, c, f"drill-down of {rule.name}"))
    return list(dict.fromkeys(names))


def _branch_filter(t: Table, branch_id: str | None) -> ColumnElement | None:
    if branch_id is None:
        return None
    if t.name == BREAKDOWN_TABLE:
        return t.c.branch_id == branch_id
    if "customer_id" in t.c:
        return t.c.customer_id.in_(select(customers.c.customer_id).where(customers.c.branch_id == branch_id))
    return None


def _failing_frame(engine: Engine, rule: Rule, as_of: date, *, names: Sequence[str],
                   branch_id: str | None = None, limit: int | None = None,
                   chunk_rows: int | None = None) -> pd.DataFrame:
    """The rows of the store failing ``rule`` at ``as_of``, with columns ``names`` (unmasked)."""
    t = metadata.tables[rule.table]
    chunk_rows = int(chunk_rows or settings.get("LOAD_CHUNK_ROWS"))
    extra = _branch_filter(t, branch_id)
    if branch_id is not None and extra is None:
        return pd.DataFrame(columns=list(names))  # a table with no path to a branch
    out_cols = [t.c[n].label(n) for n in names]
    pk_cols = list(t.primary_key.columns)
    if rule.kind in ROW_KINDS or rule.kind in SQL_QUERY_KINDS:
        if rule.kind in ROW_KINDS:
            stmt = select(*out_cols).select_from(t).where(_checked_expr(rule, t), _failed_expr(rule, t, as_of))
        elif rule.kind == "foreign_key":
            joined, ref_col = _fk_parts(rule, t)
            stmt = select(*out_cols).select_from(joined).where(_checked_expr(rule, t), ref_col.is_(None))
        else:
            joined, dups = _dup_join(rule, t)
            stmt = (select(*out_cols, dups.c.first_pk.label("duplicate_of")).select_from(joined)
                    .where(_checked_expr(rule, t), _pk(t) != dups.c.first_pk))
        if extra is not None:
            stmt = stmt.where(extra)
        stmt = stmt.order_by(*pk_cols)
        if limit is not None:
            stmt = stmt.limit(limit)
        return read_frame(engine, stmt)

    # Python-side rules: stream, keep failing rows. Output columns are selected raw (typed) beside the
    # text columns the checks use.
    outputs = {f"o_{n}": t.c[n] for n in names}
    rows: list[dict] = []
    if rule.kind == "likely_duplicate":
        return _failing_duplicates(engine, rule, t, as_of, names, extra, limit, chunk_rows)
    stmt = _python_select(t, [rule], outputs)
    if extra is not None:
        stmt = stmt.where(extra)
    with engine.connect() as conn:
        for chunk in _stream(conn, stmt, chunk_rows):
            checked, failed = _python_masks(rule, chunk, chunk["w0"].astype(np.int64) == 1, as_of)
            for i in np.flatnonzero(checked & failed):
                rows.append({n: chunk[f"o_{n}"][i] for n in names})
                if limit is not None and len(rows) >= limit:
                    break
            if limit is not None and len(rows) >= limit:
                break
    return pd.DataFrame(rows, columns=list(names))


_IN_BATCH = 500  # primary keys per IN (...) list: well under every driver's parameter limit


def _failing_duplicates(engine: Engine, rule: Rule, t: Table, as_of: date, names: Sequence[str],
                        extra: ColumnElement | None, limit: int | None, chunk_rows: int) -> pd.DataFrame:
    """Likely duplicates need the whole table: one pass hashes every checked row's normalised key
    (keeping only hash and primary key), then the failing rows' fields are read by primary key."""
    pk = _pk(t)
    hashes_parts: list[np.ndarray] = []
    pk_parts: list[np.ndarray] = []
    with engine.connect() as conn:
        for chunk in _stream(conn, _python_select(t, [rule], {"x_pk": pk}), chunk_rows):
            checked, hashes = _python_masks(rule, chunk, chunk["w0"].astype(np.int64) == 1, as_of)
            hashes_parts.append(hashes[checked])
            pk_parts.append(chunk["x_pk"][checked])
    keys = pd.DataFrame({"h": np.concatenate(hashes_parts) if hashes_parts else np.zeros(0, dtype=np.uint64),
                         "pk": np.concatenate(pk_parts) if pk_parts else np.zeros(0, dtype=object)})
    # Stream order is primary-key order, so "first" is the smallest key, as in the unique rule.
    keys["duplicate_of"] = keys.groupby("h", sort=False)["pk"].transform("first")
    failing = keys[keys["h"].duplicated(keep="first")]
    lookup = dict(zip(failing["pk"], failing["duplicate_of"], strict=True))
    wanted = failing["pk"].tolist()
    frames = []
    found = 0
    for start in range(0, len(wanted), _IN_BATCH):
        stmt = (select(*[t.c[n].label(n) for n in names]).select_from(t)
                .where(pk.in_(wanted[start:start + _IN_BATCH])).order_by(pk))
        if extra is not None:
            stmt = stmt.where(extra)
        frame = read_frame(engine, stmt)
        frames.append(frame)
        found += len(frame)
        if limit is not None and found >= limit:
            break
    columns = [*names, "duplicate_of"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    if limit is not None:
        out = out.head(limit)
    out["duplicate_of"] = [lookup[k] for k in out[pk.name]]
    return out[columns]


def failing_records(engine: Engine, run_id: int | None, rule_name: str, *, limit: int | None = 1000,
                    columns: Iterable[str] | None = None, roles: str | Iterable[str] | None = None
                    ) -> pd.DataFrame:
    """The records failing one rule of a run: the drill-down behind a rule's count.

    Parameters
    ----------
    engine : Engine
    run_id : int or None
        The run (its stored rule definition and as-of date are used); None for the current run.
    rule_name : str
    limit : int or None
        At most this many rows (ordered by primary key); None for all.
    columns : iterable of str, optional
        Further columns of the rule's table to include (checked against the schema).
    roles : str or iterable of str, optional
        When given, the frame goes through :func:`analytics.access.mask_frame` for these roles
        before it is returned (personal fields masked; aggregate-only roles get ``AccessDenied``).
        When None the values are raw: only for the data layer and compliance tooling.

    Returns
    -------
    DataFrame
        The table's primary key, ``customer_id`` where the table has it, the rule's columns (and
        the column compared with, and the ``where`` columns), the requested columns; for unique and
        likely-duplicate rules also ``duplicate_of``, the primary key of the first record with that key.
    """
    run_id = _resolve_run(engine, run_id)
    rule, as_of = _stored_rule(engine, run_id, rule_name)
    t = metadata.tables[rule.table]
    df = _failing_frame(engine, rule, as_of, names=_output_columns(rule, t, columns), limit=limit)
    return _apply_roles(df, roles)


def _apply_roles(df: pd.DataFrame, roles) -> pd.DataFrame:
    if roles is None:
        return df
    from analytics.access import mask_frame  # the access layer depends on nothing here

    return mask_frame(df, roles)


_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def fix_list(engine: Engine, run_id: int | None, branch_id: str, *,
             roles: str | Iterable[str] | None = None) -> pd.DataFrame:
    """What a branch has to fix: one row per failing (customer, rule) for the branch's customers.

    Covers the rules on ``customers`` and on tables with a ``customer_id`` (e.g. a holding of the
    branch's customer with a duplicated account number). No personal values are included: the list
    says which record and which rule, the steward opens the record to fix it.

    Parameters
    ----------
    engine : Engine
    run_id : int or None
        The run whose rules and as-of date are used; None for the current run.
    branch_id : str
    roles : str or iterable of str, optional
        Passed to :func:`analytics.access.mask_frame` when given.

    Returns
    -------
    DataFrame
        customer_id, table_name, record_id (the failing row's primary key), rule, dimension, severity,
        column_name, description; sorted by customer, then severity (high first), then rule order.
    """
    run_id = _resolve_run(engine, run_id)
    t = dq_rule_results
    with engine.connect() as conn:
        stored = conn.execute(select(t.c.rule, t.c.definition, t.c.as_of).where(t.c.run_id == run_id)
                              .order_by(t.c.position)).all()
    if not stored:
        raise QualityError(f"Run {run_id} has no data-quality results.")
    frames = []
    for position, (name, definition, as_of) in enumerate(stored):
        rule = parse_rule(json.loads(definition))
        table = metadata.tables[rule.table]
        if table.name != BREAKDOWN_TABLE and "customer_id" not in table.c:
            continue
        if rule.kind == "foreign_key" and rule.column == "customer_id":
            continue  # an orphan row has no customer, hence no branch
        as_of = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])
        pk = _pk(table).name
        names = list(dict.fromkeys([pk, "customer_id"]))
        df = _failing_frame(engine, rule, as_of, names=names, branch_id=branch_id)
        if df.empty:
            continue
        frames.append(pd.DataFrame({
            "customer_id": df["customer_id"].astype(object), "table_name": rule.table,
            "record_id": df[pk].astype(str).astype(object), "rule": name, "dimension": rule.dimension,
            "severity": rule.severity, "column_name": ",".join(rule.columns), "description": rule.description,
            "_position": position,
        }))
    columns = ["customer_id", "table_name", "record_id", "rule", "dimension", "severity", "column_name",
               "description"]
    if not frames:
        return _apply_roles(pd.DataFrame(columns=columns), roles)
    out = pd.concat(frames, ignore_index=True)
    out["_sev"] = out["severity"].map(_SEVERITY_RANK)
    out = out.sort_values(["customer_id", "_sev", "_position", "record_id"], kind="stable")
    return _apply_roles(out[columns].reset_index(drop=True), roles)


__all__ = [
    "BREAKDOWNS", "DIMENSIONS", "METRIC_DIMENSIONS", "SEVERITIES", "QualityError", "QualityResult", "Rule",
    "RuleSet", "as_of_date", "compute_scores", "evaluate", "failing_records", "fix_list", "load_rules",
    "months_before", "parse_rule", "parse_rules", "rule_breakdown", "rule_results", "run_stage", "score_change",
    "score_history", "scores", "store_results",
]
