"""Drill-down: the records failing a rule of a run, and a branch's fix list.

Both re-run one stored rule definition at the run's as-of date against the store as it is *now*: a
record fixed since the run no longer shows. Both take the viewer: its scope limits the records
(through the customer they belong to) and the result is released for it (masked, balances banded).
Data-quality lists are compliance work, not contact lists: consent does not filter them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, and_, func, select
from sqlalchemy.sql.elements import ColumnElement

from analytics import settings
from analytics.access import Viewer, release, require_rows
from analytics.quality.evaluation import (
    BREAKDOWN_TABLE,
    _checked_expr,
    _dup_join,
    _failed_expr,
    _fk_parts,
    _pk,
    _python_masks,
    _python_select,
    _stream,
)
from analytics.quality.rules import (
    ROW_KINDS,
    SEVERITIES,
    SQL_QUERY_KINDS,
    QualityError,
    Rule,
    _column_name,
    parse_rule,
)
from analytics.runs import resolve_run
from analytics.schema import customers, dq_rule_results, load_batches, metadata, refresh_runs
from analytics.store import read_frame


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


def _scope_filter(t: Table, viewer: Viewer | None) -> ColumnElement | None:
    """The viewer's scope over table ``t`` (through its customer); None for a bank-wide viewer or a
    reference table without customers (branches, products)."""
    if viewer is None or viewer.scope is None:
        return None
    if t.name == BREAKDOWN_TABLE:
        return viewer.scope_condition(t)
    if "customer_id" in t.c:
        return t.c.customer_id.in_(select(customers.c.customer_id).where(viewer.scope_condition(customers)))
    return None


def _failing_frame(engine: Engine, rule: Rule, as_of: date, *, names: Sequence[str],
                   branch_id: str | None = None, limit: int | None = None,
                   chunk_rows: int | None = None, viewer: Viewer | None = None) -> pd.DataFrame:
    """The rows of the store failing ``rule`` at ``as_of``, with columns ``names`` (unmasked), of
    the customers in ``viewer``'s scope when one is given."""
    t = metadata.tables[rule.table]
    chunk_rows = int(chunk_rows or settings.get("LOAD_CHUNK_ROWS"))
    extra = _branch_filter(t, branch_id)
    if branch_id is not None and extra is None:
        return pd.DataFrame(columns=list(names))  # a table with no path to a branch
    scope = _scope_filter(t, viewer)
    if scope is not None:
        extra = scope if extra is None else and_(extra, scope)
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


# The whole-table pass of a likely-duplicate rule, kept per store state: (store, table, rule, as-of,
# newest load batch, row count, newest refresh start) -> the failing primary keys and the key each
# duplicates. Record keys only, never a personal value or its hash; a load, a refresh or a change in
# the table's row count starts afresh.
_DUPLICATE_PASSES: OrderedDict[tuple, tuple[list, dict]] = OrderedDict()
_DUPLICATE_PASSES_KEPT = 8
_DUPLICATE_PASSES_LOCK = threading.Lock()


def _duplicate_pass(engine: Engine, rule: Rule, t: Table, as_of: date, chunk_rows: int) -> tuple[list, dict]:
    """The failing primary keys of a likely-duplicate rule (in key order) and what each duplicates."""
    pk = _pk(t)
    with engine.connect() as conn:
        state = conn.execute(select(
            select(func.max(load_batches.c.batch_id)).scalar_subquery(),
            select(func.count()).select_from(t).scalar_subquery(),
            select(func.max(refresh_runs.c.started_at)).scalar_subquery())).one()
    key = (engine.url.render_as_string(hide_password=True), t.name, repr(rule), str(as_of), *map(str, state))
    with _DUPLICATE_PASSES_LOCK:
        if key in _DUPLICATE_PASSES:
            _DUPLICATE_PASSES.move_to_end(key)
            return _DUPLICATE_PASSES[key]
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
    result = (failing["pk"].tolist(), dict(zip(failing["pk"], failing["duplicate_of"], strict=True)))
    with _DUPLICATE_PASSES_LOCK:
        _DUPLICATE_PASSES[key] = result
        while len(_DUPLICATE_PASSES) > _DUPLICATE_PASSES_KEPT:
            _DUPLICATE_PASSES.popitem(last=False)
    return result


def _failing_duplicates(engine: Engine, rule: Rule, t: Table, as_of: date, names: Sequence[str],
                        extra: ColumnElement | None, limit: int | None, chunk_rows: int) -> pd.DataFrame:
    """Likely duplicates need the whole table: one pass hashes every checked row's normalised key
    (keeping only hash and primary key; kept for the next call while the table is unchanged:
    :func:`_duplicate_pass`), then the failing rows' fields are read by primary key."""
    pk = _pk(t)
    wanted, lookup = _duplicate_pass(engine, rule, t, as_of, chunk_rows)
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


def failing_records(engine: Engine, run_id: int | None, rule_name: str, *, viewer: Viewer,
                    limit: int | None = 1000, columns: Iterable[str] | None = None) -> pd.DataFrame:
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
    viewer : analytics.access.Viewer
        Who reads: the records of its scope, released for it (aggregate-only roles get
        ``AccessDenied``). Raw values never leave here; unmasking is a separate, audited action.

    Returns
    -------
    DataFrame
        The table's primary key, ``customer_id`` where the table has it, the rule's columns (and
        the column compared with, and the ``where`` columns), the requested columns; for unique and
        likely-duplicate rules also ``duplicate_of``, the primary key of the first record with that key.
    """
    require_rows(viewer)
    run_id = resolve_run(engine, run_id, what="data-quality results")
    rule, as_of = _stored_rule(engine, run_id, rule_name)
    t = metadata.tables[rule.table]
    df = _failing_frame(engine, rule, as_of, names=_output_columns(rule, t, columns), limit=limit, viewer=viewer)
    return release(df, viewer)


_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def fix_list(engine: Engine, run_id: int | None, branch_id: str, *, viewer: Viewer) -> pd.DataFrame:
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
    viewer : analytics.access.Viewer
        Who reads: the branch's customers within its scope, released for it.

    Returns
    -------
    DataFrame
        customer_id, table_name, record_id (the failing row's primary key), rule, dimension, severity,
        column_name, description; sorted by customer, then severity (high first), then rule order.
    """
    require_rows(viewer)
    run_id = resolve_run(engine, run_id, what="data-quality results")
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
        df = _failing_frame(engine, rule, as_of, names=names, branch_id=branch_id, viewer=viewer)
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
        return release(pd.DataFrame(columns=columns), viewer)
    out = pd.concat(frames, ignore_index=True)
    out["_sev"] = out["severity"].map(_SEVERITY_RANK)
    out = out.sort_values(["customer_id", "_sev", "_position", "record_id"], kind="stable")
    return release(out[columns].reset_index(drop=True), viewer)
