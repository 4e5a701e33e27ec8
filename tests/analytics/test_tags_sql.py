"""A tag selection in SQL (tags.selection_clause) selects exactly what tags.select selects in pandas,
on both databases: table-driven cases and a property test over random expressions and tag sets."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, Text, delete, insert, select

from analytics import tags

# Names chosen to trip a naive LIKE: "_" is a LIKE wildcard ("a_b" must not match "axb"), and
# names that are prefixes or suffixes of others ("a" in "a_b", "b" in "a_b").
POOL = ["a", "b", "a_b", "axb", "ab", "b_"]

_meta = MetaData()
probe = Table("tag_probe", _meta, Column("id", Integer, primary_key=True), Column("tags", Text, nullable=False))


@pytest.fixture
def probe_engine(engine):
    probe.create(engine)
    return engine


def _sql_select(engine, rows: list[list[str]], expression: str) -> list[int]:
    with engine.begin() as conn:
        conn.execute(delete(probe))
        if rows:
            conn.execute(insert(probe), [{"id": i, "tags": ",".join(t for t in POOL if t in r)}
                                         for i, r in enumerate(rows)])
        clause = tags.selection_clause(expression, POOL, probe.c.tags)
        return conn.execute(select(probe.c.id).where(clause).order_by(probe.c.id)).scalars().all()


def _pandas_select(rows: list[list[str]], expression: str) -> list[int]:
    frame = pd.DataFrame({t: [t in r for r in rows] for t in POOL}, index=pd.RangeIndex(len(rows)), dtype=bool)
    return tags.select(frame, expression).tolist()


ROWS = [["a"], ["a_b"], ["axb"], ["a", "b"], [], ["ab", "b_"], ["b"], POOL]
CASES = [
    ("a", [0, 3, 7]),
    ("a_b", [1, 7]),  # not "axb"
    ("axb", [2, 7]),
    ("b", [3, 6, 7]),  # not inside "a_b", "ab" or "b_"
    ("not a", [1, 2, 4, 5, 6]),
    ("a AND b", [3, 7]),
    ("a OR a_b", [0, 1, 3, 7]),
    ("NOT (a or b) and not ab", [1, 2, 4]),
    ("(a_b or axb) and not (a and b)", [1, 2]),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_sql_selection_table(probe_engine, expression, expected):
    assert _sql_select(probe_engine, ROWS, expression) == expected
    assert _pandas_select(ROWS, expression) == expected


def test_sql_selection_binds_tag_names_as_parameters():
    clause = tags.selection_clause("a_b and not axb", POOL, probe.c.tags)
    sql = str(clause.compile(compile_kwargs={"render_postcompile": True}))
    assert "a_b" not in sql and "axb" not in sql  # only placeholders; names travel as parameters


@pytest.mark.parametrize("bad", ["__import__('os')", "a; DROP TABLE tag_probe", "c", "a + b", "a.b", "'a'", ""])
def test_sql_selection_rejects_what_select_rejects(bad):
    with pytest.raises(tags.TagRuleError):
        tags.selection_clause(bad, POOL, probe.c.tags)
    with pytest.raises(tags.TagRuleError):
        _pandas_select(ROWS, bad)


def _expressions():
    leaf = st.sampled_from(POOL)

    def extend(children):
        op = st.sampled_from(["and", "or", "AND", "OR"])
        return st.one_of(
            st.tuples(children, op, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(["not", "NOT"]), children).map(lambda t: f"{t[0]} {t[1]}"),
        )

    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.sampled_from(POOL), unique=True), max_size=12), expression=_expressions())
def test_sql_selection_equals_pandas_selection(probe_engine, rows, expression):
    assert _sql_select(probe_engine, rows, expression) == _pandas_select(rows, expression)
