"""The rule file: its parser and validator, the rules it yields and the weights of their scores.

Rules live in ``data/dq_rules.yaml`` (see that file for every kind, its parameters and its
denominator). :func:`load_rules` reads it, :func:`parse_rules` and :func:`parse_rule` check every
entry against the schema (:data:`analytics.schema.metadata`) before any SQL is built from it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from sqlalchemy import Date, DateTime, Table

from analytics import settings, validators
from analytics.errors import AnalyticsError, ConfigError
from analytics.schema import CREDIT_GRADES, STORE_TABLES, metadata

DEFAULT_RULES_PATH = settings.PROJECT_ROOT / "data" / "dq_rules.yaml"

DIMENSIONS: tuple[str, ...] = ("completeness", "validity", "consistency", "uniqueness", "timeliness")
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
DEFAULT_DIMENSION_WEIGHTS: dict[str, float] = {
    "completeness": 0.25, "validity": 0.25, "consistency": 0.20, "uniqueness": 0.10, "timeliness": 0.20,
}
DEFAULT_SEVERITY_WEIGHTS: dict[str, float] = {"high": 3.0, "medium": 2.0, "low": 1.0}

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
    "freshness": (frozenset({"column"}), frozenset({"months", "days", "months_setting", "days_setting",
                                                    "high_risk_months", "high_risk_months_setting"})),
    "expiry": (frozenset({"column"}), frozenset({"warn_days"})),
}
_COMMON_KEYS = frozenset({"name", "table", "dimension", "severity", "kind", "where", "description"})
_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")

_COMPARE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne,
}
AS_OF = "as_of"  # a range bound meaning the run's as-of date

#: Customers whose record must be fresher (a freshness rule's ``high_risk_months``): a risk
#: tolerance of C4 or C5, or a credit grade of B or below on the scale AAA, AA, A, BBB, BB, B, CCC.
HIGH_RISK_TOLERANCES = ("C4", "C5")
HIGH_RISK_CREDIT_GRADES = CREDIT_GRADES[CREDIT_GRADES.index("B"):]


class QualityError(AnalyticsError):
    """A data-quality result asked for does not exist (unknown rule, or a run without results)."""



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
        if "high_risk_months" in self.params:
            extra += ["risk_tolerance", "credit_grade"]
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
        high = [k for k in ("high_risk_months", "high_risk_months_setting") if k in raw]
        if len(high) > 1:
            raise ConfigError(f"{where}: give high_risk_months or high_risk_months_setting, not both.")
        if high:
            # Judged on the customer's own risk tolerance and credit grade.
            if table.name != "customers":
                raise ConfigError(f"{where}: high_risk_months needs the customers table.")
            if high[0] == "high_risk_months_setting":
                setting = raw["high_risk_months_setting"]
                if setting not in settings.SETTINGS:
                    raise ConfigError(f"{where}: unknown setting {setting!r}.")
                params["high_risk_months"] = _positive_int(int(settings.get(setting)), f"{where} ({setting})")
            else:
                params["high_risk_months"] = _positive_int(raw["high_risk_months"], where)
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
