"""What the refresh stages share: the run's context, step timings, run metrics and the current run.

Every stage module imports from here, never from :mod:`analytics.refresh` (which imports the stages),
so the stages and the refresh never import each other in a circle.

Reading run-keyed result tables also lives here, once: :func:`run_clause` is the ``WHERE`` that keeps
one run's rows (the published run when no id is given), :func:`resolve_run` turns "the published run"
into its id, and :func:`read_run_table` reads a whole result table of a run.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert, select

from analytics.errors import StoreNotInitialisedError
from analytics.schema import current_run, metadata, run_metrics
from analytics.store import read_frame

# The SQL that names the published run; used where a reader is given no run id.
CURRENT_RUN_SQL = "(SELECT run_id FROM current_run WHERE id = 1)"


def utcnow() -> datetime:
    """Naive UTC now: the store keeps UTC timestamps without a zone, the same on both dialects."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RefreshContext:
    """What a stage gets: the engine, its run id, the activity month it describes, and a place to
    report row counts and metrics."""

    engine: Engine
    run_id: int
    as_of_month: date | None
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    progress: Callable[[str, float], None] | None = None

    def put_metrics(self, values: dict[str, float | str | None]) -> None:
        """Store named scalar results of this run in ``run_metrics``."""
        rows = []
        for name, value in values.items():
            if isinstance(value, str):
                rows.append({"run_id": self.run_id, "name": name, "value": None, "text_value": value})
            else:
                rows.append({"run_id": self.run_id, "name": name,
                             "value": None if value is None else float(value), "text_value": None})
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(run_metrics), rows)


def release_memory() -> None:
    """Give what was freed back to the operating system: a garbage collection, then glibc's
    ``malloc_trim`` (frames a step let go otherwise stay in the C heap, and the next step's peak
    starts from there) and Arrow's pool's unused memory. The refresh calls it between stages. No
    trim where the C library is not glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    # pandas keeps text in Arrow arrays, whose own pool (mimalloc or jemalloc) keeps what they freed.
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def no_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s columns, dtypes and index type with no row, holding none of ``frame``'s memory.

    A slice of a pandas frame shares its arrays, and a text column is an Arrow array whose copy
    shares its buffers too: ``frame.iloc[:0].copy()`` keeps every string of ``frame`` alive. A stage
    that keeps an empty frame per block of customers (for its columns) grew by the blocks' strings,
    about 0.4 KiB a customer in cross-sell, until it let the empties go. Taking no row builds new,
    empty arrays."""
    return frame.iloc[np.array([], dtype=np.intp)]


class Laps:
    """Seconds spent in each named step of a stage: call ``lap("step")`` at the end of each step (a
    step run once per block of customers adds up its laps)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._clock, 3)
        self._clock = now


@dataclass(frozen=True)
class Stage:
    """One step of the refresh: a name (shown in progress and status) and a function of the context."""

    name: str
    run: Callable[[RefreshContext], None]


def current_run_id(engine: Engine) -> int | None:
    """The id of the published run, or None before the first successful refresh."""
    with engine.connect() as conn:
        return conn.execute(select(current_run.c.run_id).where(current_run.c.id == 1)).scalar()


def resolve_run(engine: Engine, run_id: int | None, *, what: str = "results") -> int:
    """``run_id`` itself, or the published run's id when it is None.

    Raises
    ------
    StoreNotInitialisedError
        When no run id is given and no refresh has completed yet.
    """
    if run_id is not None:
        return int(run_id)
    current = current_run_id(engine)
    if current is None:
        raise StoreNotInitialisedError(f"No refresh has completed yet, so there are no {what}. "
                                       "Hint: `python -m analytics refresh`.", key="errors.no_refresh_yet")
    return int(current)


def run_clause(table: str, run_id: int | None) -> tuple[str, dict]:
    """The SQL condition (and its bound parameters) that keeps one run's rows of ``table``.

    ``table`` is a table name or alias written by the caller, never user input. Without a run id
    the condition names the published run, in the same statement, so a reader never mixes runs.
    """
    if run_id is None:
        return f"{table}.run_id = {CURRENT_RUN_SQL}", {}
    return f"{table}.run_id = :run_id", {"run_id": int(run_id)}


def _result_table_names() -> frozenset[str]:
    return frozenset(t.name for t in metadata.sorted_tables if "run_id" in t.c)


def read_run_table(engine: Engine, table: str, run_id: int | None, order_by: str, *,
                   where: str | None = None, params: dict | None = None) -> pd.DataFrame:
    """Every row of one run of a run-keyed result table, in ``order_by`` order.

    Parameters
    ----------
    table : str
        A run-keyed table of the schema (checked: a name from elsewhere is refused).
    run_id : int or None
        The run; None for the published one.
    order_by : str
        Column list of the table's own columns, written by the caller.
    where, params : optional
        A further condition over the table's columns with its bound parameters.
    """
    if table not in _result_table_names():
        raise ValueError(f"{table!r} is not a run-keyed result table")
    clause, bound = run_clause(table, run_id)
    if where:
        clause = f"{clause} AND ({where})"
    return read_frame(engine, f"SELECT * FROM {table} WHERE {clause} ORDER BY {order_by}",
                      {**bound, **(params or {})})


def get_run_metrics(engine: Engine, run_id: int) -> dict[str, float | str | None]:
    """The named scalar results of a run."""
    with engine.connect() as conn:
        rows = conn.execute(select(run_metrics.c.name, run_metrics.c.value, run_metrics.c.text_value)
                            .where(run_metrics.c.run_id == run_id)).all()
    return {name: (text_value if text_value is not None else value) for name, value, text_value in rows}


__all__ = ["CURRENT_RUN_SQL", "Laps", "RefreshContext", "Stage", "current_run_id", "get_run_metrics", "no_rows",
           "read_run_table", "resolve_run", "run_clause", "utcnow"]
