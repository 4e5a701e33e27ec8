"""Customer tags (标签): named boolean rules over the feature frame, configured in a YAML file.

The rule file (``data/tags.yaml`` by default, the ``TAGS_FILE`` setting) lists tags::

    tags:
      - name: mortgage_holder          # lower_snake_case, unique
        label: Mortgage holder
        label_zh: 按揭客户
        rule: products_mortgage > 0

Rule language
-------------
A rule is a small boolean expression, parsed with :mod:`ast` and checked against a whitelist of
node types before anything is evaluated. Nothing in the file is ever executed: there is no
``eval``, ``exec`` or ``pandas.eval``, and evaluation walks the checked tree itself. Allowed:

* a comparison of a feature column with a literal: ``aum_latest >= 500000``,
  ``onboarding_channel == 'payroll'``; operators ``== != < <= > >=``; a range written as a chain,
  ``0 <= days_to_id_expiry <= 30`` (one column, the other operands literals);
* membership in a list of literals: ``risk_tolerance in ['C4', 'C5']``, ``not in``;
* a true/false column on its own: ``marketing_consent``;
* ``and``, ``or``, ``not`` and parentheses.

Literals are numbers (a leading ``-`` allowed), quoted text and ``True``/``False``. Columns must be
feature columns (:data:`analytics.features.FEATURE_COLUMNS`, ``status``, or ``products_<category>``);
anything else (function calls, attributes, indexing, arithmetic, names that are not columns,
comprehensions, ...) is rejected with a :class:`TagRuleError` saying what is not allowed.

A missing value fails every comparison (``!=`` and ``not in`` included), so "ID expires within 30
days" is false for a customer without an expiry date; ``not (...)`` of such a comparison is true.
A ``products_<category>`` column for a category the store does not have counts as 0.

Selecting customers by tags
---------------------------
:func:`select` takes the boolean tag frame and an expression over tag *names* with
``and``/``or``/``not`` (``AND``/``OR``/``NOT`` also accepted) and parentheses, e.g.
``"mortgage_holder and not digital_active"``. :func:`selection_clause` turns the same checked
expression into a SQL condition on the stored comma-separated tags (``customer_segments.tags``),
so a selection over a million customers runs in the store instead of in memory.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analytics import settings
from analytics.errors import ConfigError
from analytics.features import FEATURE_COLUMNS
from analytics.store import read_frame

MAX_EXPRESSION_CHARS = 1000
MAX_EXPRESSION_NODES = 200
TAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PRODUCT_COLUMN = re.compile(r"^products_[a-z0-9_]+$")
EXTRA_COLUMNS = frozenset({"status"})

_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_SYMBOL = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
           ast.In: "in", ast.NotIn: "not in"}
# What to call a rejected node in the error message.
_FORBIDDEN = {
    ast.Call: "function calls", ast.Attribute: "attribute access (.)", ast.Subscript: "indexing ([])",
    ast.BinOp: "arithmetic", ast.Lambda: "lambda", ast.IfExp: "if/else expressions",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.NamedExpr: "assignment (:=)", ast.Starred: "unpacking (*)",
    ast.JoinedStr: "f-strings", ast.Dict: "dictionaries", ast.Set: "sets", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield",
}


class TagRuleError(ConfigError):
    """A tag rule or a tag selection is invalid; the message names the rule and what is wrong."""


@dataclass(frozen=True)
class TagRule:
    """One tag: a name, labels in English and Chinese, and its checked rule."""

    name: str
    rule: str
    label: str = ""
    label_zh: str = ""
    description: str = ""
    tree: ast.Expression = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def columns(self) -> set[str]:
        """The feature columns the rule reads."""
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}


def tag_label(rule: TagRule, lang: str) -> str:
    """The tag's label in ``lang`` ("en" or "zh") from the tag file (``label``, ``label_zh``); the
    other language's label, then the name, when the file gives none."""
    first, second = (rule.label_zh, rule.label) if lang == "zh" else (rule.label, rule.label_zh)
    return (first or second or rule.name).strip()


def known_column(name: str) -> bool:
    """Whether ``name`` is a feature column a rule may use."""
    return name in FEATURE_COLUMNS or name in EXTRA_COLUMNS or bool(PRODUCT_COLUMN.match(name))


def _parse(expression: str, what: str) -> ast.Expression:
    if not isinstance(expression, str) or not expression.strip():
        raise TagRuleError(f"{what}: the expression is empty", key="errors.tag.empty")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise TagRuleError(f"{what}: the expression is longer than {MAX_EXPRESSION_CHARS} characters",
                          key="errors.tag.too_long", n=MAX_EXPRESSION_CHARS)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise TagRuleError(f"{what}: not a valid expression ({exc.msg}, column {exc.offset})",
                          key="errors.tag.syntax", column=exc.offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise TagRuleError(f"{what}: the expression is too deeply nested or malformed",
                          key="errors.tag.malformed") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise TagRuleError(f"{what}: the expression is too long ({MAX_EXPRESSION_NODES} terms at most)",
                          key="errors.tag.too_many_terms", n=MAX_EXPRESSION_NODES)
    return tree


def _literal(node: ast.AST, what: str):
    """The value of a literal node (number, text, True/False, negative number) or an error."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float, str)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    raise TagRuleError(f"{what}: expected a literal (number, 'text', True/False), found {_describe(node)}")


def _describe(node: ast.AST) -> str:
    if type(node) in _FORBIDDEN:
        return _FORBIDDEN[type(node)]
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    return type(node).__name__


def _check_rule_node(node: ast.AST, what: str, columns) -> None:
    """Raise :class:`TagRuleError` unless ``node`` is in the rule language."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        for value in node.values:
            _check_rule_node(value, what, columns)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_rule_node(node.operand, what, columns)
    elif isinstance(node, ast.Name):
        _check_column(node.id, what, columns)
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for operand in operands:
            # Name what is wrong first (a call, arithmetic, ...) rather than a vaguer shape error.
            if not isinstance(operand, (ast.Name, ast.Constant, ast.UnaryOp, ast.List, ast.Tuple)):
                raise TagRuleError(f"{what}: {_describe(operand)} not allowed; a rule may only compare a "
                                   "column with a literal")
        names = [o for o in operands if isinstance(o, ast.Name)]
        if len(names) != 1:
            raise TagRuleError(f"{what}: a comparison needs exactly one column and literals, "
                               f"found {len(names)} columns")
        _check_column(names[0].id, what, columns)
        for left, op, right in zip(operands[:-1], node.ops, node.comparators, strict=True):
            if type(op) not in _SYMBOL:
                raise TagRuleError(f"{what}: the operator {type(op).__name__} is not allowed "
                                   "(use == != < <= > >= in, not in)")
            if isinstance(op, (ast.In, ast.NotIn)):
                if len(node.ops) != 1 or not isinstance(left, ast.Name):
                    raise TagRuleError(f"{what}: write membership as `column in [literal, ...]`")
                if not isinstance(right, (ast.List, ast.Tuple)) or not right.elts:
                    raise TagRuleError(f"{what}: `in` needs a non-empty list of literals, e.g. ['C4', 'C5']")
                for element in right.elts:
                    _literal(element, what)
                continue
            # Each link of a chain (`0 <= x <= 30`) compares the column with one literal.
            if isinstance(left, ast.Name) == isinstance(right, ast.Name):
                raise TagRuleError(f"{what}: each comparison must have the column on one side and a "
                                   "literal on the other")
            _literal(right if isinstance(left, ast.Name) else left, what)
    else:
        raise TagRuleError(f"{what}: {_describe(node)} not allowed; a rule may only compare a column "
                           "with a literal, test `in [...]`, and combine with and/or/not")


def _check_column(name: str, what: str, columns) -> None:
    if name.startswith("__") or not (name in columns if columns is not None else known_column(name)):
        raise TagRuleError(f"{what}: unknown column {name!r} (see analytics.features.FEATURE_COLUMNS; "
                           "products_<category> for holdings)")


def parse_rule(expression: str, *, name: str = "rule", columns: Iterable[str] | None = None) -> ast.Expression:
    """Parse and check one rule expression; return its tree.

    Parameters
    ----------
    expression : str
        The rule text.
    name : str
        The tag's name, for error messages.
    columns : iterable of str, optional
        The columns allowed; default: every feature column (:func:`known_column`).

    Raises
    ------
    TagRuleError
        When the expression is not in the rule language or uses an unknown column.
    """
    what = f"tag rule {name!r}"
    tree = _parse(expression, what)
    _check_rule_node(tree.body, what, None if columns is None else set(columns))
    return tree


def make_rule(name: str, rule: str, **labels) -> TagRule:
    """A checked :class:`TagRule`."""
    if not isinstance(name, str) or not TAG_NAME.match(name):
        raise TagRuleError(f"tag name {name!r} must be lower_snake_case, at most 40 characters")
    return TagRule(name=name, rule=rule, tree=parse_rule(rule, name=name), **labels)


def tags_file() -> Path:
    """The rule file of the ``TAGS_FILE`` setting (relative paths from the project folder)."""
    path = Path(settings.get("TAGS_FILE"))
    return path if path.is_absolute() else settings.PROJECT_ROOT / path


def load_tag_rules(path: str | Path | None = None) -> list[TagRule]:
    """Read and check every rule of a tag file.

    Raises
    ------
    TagRuleError
        When the file is missing, not YAML, not shaped as ``tags: [{name, rule, ...}]``, has a
        duplicate name, or any rule is invalid.
    """
    path = Path(path) if path is not None else tags_file()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TagRuleError(f"Tag file {path} not found. Hint: set TAGS_FILE or restore data/tags.yaml") from None
    except yaml.YAMLError as exc:
        raise TagRuleError(f"Tag file {path} is not valid YAML: {exc}") from None
    entries = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TagRuleError(f"Tag file {path} must have a top-level `tags:` list")
    rules: list[TagRule] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "name" not in entry or "rule" not in entry:
            raise TagRuleError(f"Tag file {path}: entry {i} needs `name` and `rule`")
        unknown = set(entry) - {"name", "rule", "label", "label_zh", "description"}
        if unknown:
            raise TagRuleError(f"Tag file {path}: entry {i} has unknown keys {sorted(unknown)}")
        if entry["name"] in seen:
            raise TagRuleError(f"Tag file {path}: tag {entry['name']!r} is defined twice")
        seen.add(entry["name"])
        rules.append(make_rule(str(entry["name"]), str(entry["rule"]),
                               label=str(entry.get("label", "")), label_zh=str(entry.get("label_zh", "")),
                               description=str(entry.get("description", ""))))
    return rules


# ---------------------------------------------------------------------------------------------
# Evaluation: walks the checked tree; never eval.
# ---------------------------------------------------------------------------------------------

class _Evaluator:
    def __init__(self, frame: pd.DataFrame, what: str):
        self.frame = frame
        self.what = what
        self.n = len(frame)
        self._cache: dict[str, pd.Series] = {}

    def column(self, name: str) -> pd.Series:
        if name not in self._cache:
            if name in self.frame.columns:
                series = self.frame[name]
            elif PRODUCT_COLUMN.match(name):
                series = pd.Series(0.0, index=self.frame.index)  # a category the store lacks
            else:
                raise TagRuleError(f"{self.what}: the feature frame has no column {name!r}")
            if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
                series = series.astype("str")
            self._cache[name] = series
        return self._cache[name]

    def run(self, node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            parts = [self.run(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return combine.reduce(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.run(node.operand)
        if isinstance(node, ast.Name):
            series = self.column(node.id)
            if not pd.api.types.is_bool_dtype(series):
                raise TagRuleError(f"{self.what}: {node.id!r} is not a true/false column; compare it, "
                                   f"e.g. `{node.id} > 0`")
            return series.fillna(False).to_numpy(dtype=bool)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise TagRuleError(f"{self.what}: {_describe(node)} not allowed")  # unreachable after checks

    def compare(self, node: ast.Compare) -> np.ndarray:
        operands = [node.left, *node.comparators]
        result = np.ones(self.n, dtype=bool)
        for left, op, right in zip(operands[:-1], node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                series = self.column(left.id)
                values = [_literal(e, self.what) for e in right.elts]
                self._check_types(left.id, series, values)
                member = series.isin(values).to_numpy(dtype=bool)
                part = member if isinstance(op, ast.In) else ~member
                result &= part & series.notna().to_numpy()
                continue
            # One side is the column, the other a literal; flip `literal op column` to keep it uniform.
            if isinstance(left, ast.Name):
                series, value, func = self.column(left.id), _literal(right, self.what), _COMPARE[type(op)]
                name = left.id
            else:
                series, value, func = self.column(right.id), _literal(left, self.what), _COMPARE[type(op)]
                name = right.id
                func = _flip(func)
            self._check_types(name, series, [value])
            part = func(series, value).fillna(False).to_numpy(dtype=bool)
            result &= part & series.notna().to_numpy()
        return result

    def _check_types(self, name: str, series: pd.Series, values: Sequence) -> None:
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        for value in values:
            if numeric and isinstance(value, str):
                raise TagRuleError(f"{self.what}: {name!r} is a number but is compared with text {value!r}")
            if not numeric and not pd.api.types.is_bool_dtype(series) and not isinstance(value, str):
                raise TagRuleError(f"{self.what}: {name!r} is text but is compared with {value!r}; quote it")


def _flip(func):
    return {operator.lt: operator.gt, operator.le: operator.ge, operator.gt: operator.lt,
            operator.ge: operator.le}.get(func, func)


def evaluate_rule(features: pd.DataFrame, rule: TagRule | str, *, name: str = "rule") -> pd.Series:
    """One rule over a feature frame: a boolean Series on the frame's index."""
    if isinstance(rule, str):
        rule = TagRule(name=name, rule=rule, tree=parse_rule(rule, name=name))
    values = _Evaluator(features, f"tag rule {rule.name!r}").run(rule.tree.body)
    return pd.Series(values, index=features.index, name=rule.name)


def evaluate_tags(features: pd.DataFrame, rules: Sequence[TagRule] | None = None) -> pd.DataFrame:
    """Every tag for every customer.

    Parameters
    ----------
    features : pandas.DataFrame
        From :func:`analytics.features.customer_features`.
    rules : sequence of TagRule, optional
        Defaults to :func:`load_tag_rules` of the configured file.

    Returns
    -------
    pandas.DataFrame
        One boolean column per tag (in file order), same index as ``features``.
    """
    rules = load_tag_rules() if rules is None else rules
    columns = {rule.name: evaluate_rule(features, rule).to_numpy() for rule in rules}
    return pd.DataFrame(columns, index=features.index)


def tag_counts(tag_frame: pd.DataFrame) -> pd.Series:
    """Customers carrying each tag (int), in the frame's column order."""
    return tag_frame.sum().astype(int).rename("customers")


def _check_selection_node(node: ast.AST, what: str, tags: set[str]) -> None:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, (ast.And, ast.Or)):
        for value in node.values:
            _check_selection_node(value, what, tags)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_selection_node(node.operand, what, tags)
    elif isinstance(node, ast.Name):
        if node.id not in tags:
            raise TagRuleError(f"{what}: unknown tag {node.id!r}", key="errors.tag.unknown_tag", tag=node.id)
    else:
        raise TagRuleError(f"{what}: {_describe(node)} not allowed; combine tag names with and/or/not",
                          key="errors.tag.not_allowed")


def parse_selection(expression: str, tag_names: Iterable[str]) -> ast.Expression:
    """Parse and check a tag selection (tag names, and/or/not, parentheses); return its tree.

    ``AND``/``OR``/``NOT`` are accepted for ``and``/``or``/``not``. :func:`select` (in pandas) and
    :func:`selection_clause` (in SQL) both evaluate the tree this returns, so they accept and
    reject exactly the same expressions.

    Raises
    ------
    TagRuleError
        For an unknown tag or anything beyond names, and/or/not and parentheses.
    """
    what = "tag selection"
    # Tag names are lower case, so upper-case keywords can only be the operators.
    normalised = re.sub(r"\b(AND|OR|NOT)\b", lambda m: m.group(1).lower(), expression or "")
    tree = _parse(normalised, what)
    _check_selection_node(tree.body, what, set(tag_names))
    return tree


def select(tag_frame: pd.DataFrame, expression: str) -> pd.Index:
    """The customers whose tags satisfy ``expression`` (tag names, and/or/not, parentheses).

    Parameters
    ----------
    tag_frame : pandas.DataFrame
        Boolean tag columns, e.g. from :func:`evaluate_tags`.
    expression : str
        E.g. ``"mortgage_holder and not digital_active"``; ``AND``/``OR``/``NOT`` work too.

    Returns
    -------
    pandas.Index
        The selected rows' index values (customer ids), in frame order.

    Raises
    ------
    TagRuleError
        For an unknown tag or anything beyond names, and/or/not and parentheses.
    """
    tree = parse_selection(expression, tag_frame.columns)

    def run(node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            parts = [run(v) for v in node.values]
            return (np.logical_and if isinstance(node.op, ast.And) else np.logical_or).reduce(parts)
        if isinstance(node, ast.UnaryOp):
            return ~run(node.operand)
        return tag_frame[node.id].fillna(False).to_numpy(dtype=bool)

    return tag_frame.index[run(tree.body)]


def has_tag_clause(tags_column, name: str):
    """A SQL condition: the comma-separated ``tags_column`` holds the tag ``name``.

    Fenced with commas (``',' || tags || ','`` LIKE ``'%,name,%'``) so a tag never matches inside
    a longer name; the name is a bound parameter with ``_`` and ``%`` escaped (``_`` is a LIKE
    wildcard and every tag name may contain it).
    """
    from sqlalchemy import literal

    fenced = literal(",") + tags_column + literal(",")
    return fenced.contains(f",{name},", autoescape=True)


def selection_clause(expression: str, tag_names: Iterable[str], tags_column):
    """The SQL condition for a tag selection over a comma-separated tags column.

    Parameters
    ----------
    expression : str
        As for :func:`select`; checked by :func:`parse_selection` first.
    tag_names : iterable of str
        The tags the expression may name.
    tags_column : sqlalchemy column
        A non-null text column of comma-separated tag names (``customer_segments.tags``).

    Returns
    -------
    sqlalchemy.sql.ColumnElement
        A boolean expression built from :func:`has_tag_clause` with ``and_``/``or_``/``not_``:
        user input reaches the database only as bound parameters. It selects exactly the rows
        :func:`select` selects on the same tags (tested).

    Raises
    ------
    TagRuleError
        For an unknown tag or anything beyond names, and/or/not and parentheses.
    """
    from sqlalchemy import and_, not_, or_

    tree = parse_selection(expression, tag_names)

    def run(node: ast.AST):
        if isinstance(node, ast.BoolOp):
            parts = [run(v) for v in node.values]
            return (and_ if isinstance(node.op, ast.And) else or_)(*parts)
        if isinstance(node, ast.UnaryOp):
            return not_(run(node.operand))
        return has_tag_clause(tags_column, node.id)

    return run(tree.body)


def read_tag_frame(engine, run_id: int | None = None) -> pd.DataFrame:
    """The stored tags of a refresh run (default: the published one) as a boolean frame.

    Reads ``customer_segments.tags`` (comma-separated names) and the run's tag list from
    ``segment_summary``; returns one boolean column per tag, in rule-file order, indexed by
    ``customer_id`` — ready for :func:`select`.
    """
    if run_id is None:
        where, params = "run_id = (SELECT run_id FROM current_run WHERE id = 1)", {}
    else:
        where, params = "run_id = :run_id", {"run_id": int(run_id)}
    names = read_frame(engine, f"SELECT value FROM segment_summary WHERE {where} AND dimension = 'tag' "
                               "ORDER BY sort_order", params)["value"].tolist()
    rows = read_frame(engine, f"SELECT customer_id, tags FROM customer_segments WHERE {where} "
                              "ORDER BY customer_id", params)
    # Fenced with commas so that a tag never matches inside a longer name; plain substring search.
    fenced = "," + rows["tags"].fillna("").astype(str) + ","
    flags = {name: fenced.str.contains(f",{name},", regex=False).to_numpy(dtype=bool) for name in names}
    return pd.DataFrame(flags, index=pd.Index(rows["customer_id"], name="customer_id"))

__all__ = [
    "TagRule", "TagRuleError", "evaluate_rule", "evaluate_tags", "known_column", "load_tag_rules",
    "has_tag_clause", "make_rule", "parse_rule", "parse_selection", "read_tag_frame", "select",
    "selection_clause", "tag_counts", "tags_file",
]
