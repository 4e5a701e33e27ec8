"""Per-customer work in partitions: which partition a customer is in, and where partitions run.

A refresh stage fits its models on a bounded sample, then scores every customer partition by
partition: each partition is read, computed and written on its own (under the unpublished run's id),
so what one partition holds in memory is about ``customers / REFRESH_PARTITIONS`` rows.

The partition function
----------------------
``partition_of(customer_id, n)`` is the first 28 bits of the MD5 digest of the id's UTF-8 text, modulo
``n``. Not Python's ``hash()``: that is salted per process, and a partition must be the same set of
customers in every worker process and on every machine. MD5 rather than CRC-32 because both
databases can compute it: PostgreSQL has ``md5()`` built in, and on SQLite the same Python function
is registered on each connection (:func:`_register_sqlite`). So a partition's restriction is pushed
into the SQL of every query that reads it (:meth:`Partition.sql`: ``customer_id IN (SELECT ... FROM
customers WHERE <hash> = :partno)``), no list of ids travels to a worker, and the database reads only
that partition's rows of the large tables through their ``customer_id`` index. 28 bits keep the
PostgreSQL expression inside a positive ``int`` (``('x' || 7 hex digits)::bit(28)::int``).
tests/analytics/test_partitions.py checks that SQL and Python agree on both databases.

Executors
---------
:func:`run_partitions` runs a picklable task ``fn(partition)`` for every partition on the executor the
settings name (:func:`executor_from_settings`):

* ``DASK_SCHEDULER_ADDRESS`` set: a Dask cluster (``dask.distributed.Client``), the engine for more
  than one machine; every worker needs the project's code and packages and must reach the store;
* else ``REFRESH_WORKERS`` > 0: a local pool of that many processes (``concurrent.futures``);
* else in this process, one partition after another (the default).

A task gets only picklable inputs (the store URL, the run id, a partition number, a fitted model),
opens its own engine, and writes its rows in one transaction that first deletes what an earlier
attempt of the same partition wrote (Dask reruns a task whose worker died). The run stays atomic: a
failed partition raises :class:`PartitionError` once every partition has stopped (so no worker
writes after the refresh deletes the failed run's rows), the refresh marks the run failed and
nothing is published. A killed pool worker breaks the pool, which fails the run the same way.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from analytics import settings
from analytics.errors import AnalyticsError, ConfigError, describe

log = logging.getLogger(__name__)

# Hex digits of the MD5 digest that make the partition hash: 28 bits, a positive int in PostgreSQL.
HASH_HEX_DIGITS = 7
SQLITE_FUNCTION = "customer_partition_hash"

# Test-only fault injection, the same variables as analytics.refresh (which imports the stages, so it
# cannot be imported from here): REFRESH_PAUSE_AT=partition:<stage>:writing makes partition 0 of that
# stage write the marker file and wait inside its write transaction, rows written, COMMIT not sent.
PAUSE_ENV = "REFRESH_PAUSE_AT"
PAUSE_MARKER_ENV = "REFRESH_PAUSE_MARKER"
PAUSE_SECONDS = 600
PARTITIONED_STAGES = ("churn",)
PAUSE_POINTS = tuple(f"partition:{stage}:writing" for stage in PARTITIONED_STAGES)


class PartitionError(AnalyticsError):
    """A partition of a refresh stage failed (the run fails with it)."""


def partition_hash(customer_id) -> int:
    """The 28-bit hash a customer's partition is taken from (see the module docstring)."""
    digest = hashlib.md5(str(customer_id).encode("utf-8"), usedforsecurity=False).hexdigest()
    return int(digest[:HASH_HEX_DIGITS], 16)


def partition_of(customer_id, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) of a customer id; the same in every process."""
    return partition_hash(customer_id) % int(partitions)


def _sqlite_hash(value) -> int | None:
    return None if value is None else partition_hash(value)


def _register_sqlite(dbapi_connection, *_args) -> None:
    dbapi_connection.create_function(SQLITE_FUNCTION, 1, _sqlite_hash, deterministic=True)


def hash_sql(column: str, dialect: str) -> str:
    """SQL of :func:`partition_hash` over ``column`` (a column name the caller writes, not input)."""
    if dialect == "postgresql":
        return f"('x' || substr(md5(CAST({column} AS text)), 1, {HASH_HEX_DIGITS}))::bit({HASH_HEX_DIGITS * 4})::int"
    if dialect == "sqlite":
        return f"{SQLITE_FUNCTION}({column})"
    raise ConfigError(f"Partitioned refresh supports SQLite and PostgreSQL, not {dialect}")


def prepare_engine(engine: Engine) -> None:
    """Make :func:`hash_sql` usable on ``engine``: on SQLite, register the hash on every connection
    as it is checked out (also those already in the pool). Idempotent."""
    if engine.dialect.name == "sqlite" and not event.contains(engine, "checkout", _register_sqlite):
        event.listen(engine, "checkout", _register_sqlite)


@dataclass(frozen=True)
class Partition:
    """Partition ``number`` of ``count``: the customers whose :func:`partition_of` is ``number``.

    A customer filter for readers that take one (``customers=`` of
    :func:`analytics.features.customer_features`): :meth:`sql` gives the condition to add to a query.
    """

    number: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.number < self.count:
            raise ValueError(f"partition {self.number} of {self.count} does not exist")

    def sql(self, column: str, engine: Engine) -> tuple[str, dict]:
        """The condition keeping this partition's customers of ``column``, and its bound parameters."""
        prepare_engine(engine)
        if self.count == 1:
            return "1 = 1", {}
        expr = hash_sql("pc.customer_id", engine.dialect.name)
        return (f"{column} IN (SELECT pc.customer_id FROM customers pc WHERE {expr} % :partcount = :partno)",
                {"partcount": self.count, "partno": self.number})

    def contains(self, customer_id) -> bool:
        return partition_of(customer_id, self.count) == self.number


@dataclass(frozen=True)
class IdRange:
    """The customers whose id is at least ``low`` and below ``high`` (at most ``high`` when
    ``through``), in the database's own order of ids: a customer filter like :class:`Partition`
    (``customers=`` of the readers), for work that goes through every customer a block at a time in
    one process. A range reads through the ``customer_id`` indexes with no hash to compute (on
    SQLite the hash is a Python function called for every customer of every query)."""

    low: str
    high: str
    through: bool = False

    def sql(self, column: str, engine: Engine) -> tuple[str, dict]:
        """The condition keeping this range's customers of ``column``, and its bound parameters."""
        return (f"{column} >= :id_low AND {column} {'<=' if self.through else '<'} :id_high",
                {"id_low": self.low, "id_high": self.high})


@dataclass(frozen=True)
class PartitionRange:
    """The customers of ``partition`` whose id is in ``ids``: a customer filter like
    :class:`Partition`, for a partition that goes through its customers a range of ids at a time.
    The partition's subquery is limited to the range too, so each read hashes only the range's
    ids, not every customer's."""

    partition: Partition
    ids: IdRange

    def sql(self, column: str, engine: Engine) -> tuple[str, dict]:
        """The condition keeping these customers of ``column``, and its bound parameters."""
        where, params = self.ids.sql(column, engine)
        if self.partition.count == 1:
            return where, params
        prepare_engine(engine)
        inner, _ = self.ids.sql("pc.customer_id", engine)
        expr = hash_sql("pc.customer_id", engine.dialect.name)
        return (f"{where} AND {column} IN (SELECT pc.customer_id FROM customers pc WHERE {inner} "
                f"AND {expr} % :partcount = :partno)",
                {**params, "partcount": self.partition.count, "partno": self.partition.number})


def and_customers(customers, column: str, engine: Engine) -> tuple[str, dict]:
    """``" AND <condition>"`` keeping the customers a filter selects (a :class:`Partition`,
    :class:`IdRange` or :class:`PartitionRange`, the ``customers=`` of the readers) in ``column``,
    and its bound parameters; ``("", {})`` without a filter, for a read of every customer."""
    if customers is None:
        return "", {}
    condition, params = customers.sql(column, engine)
    return f" AND {condition}", params


def id_ranges(engine: Engine, rows: int) -> list[IdRange]:
    """Consecutive ranges of the store's customer ids, about ``rows`` customers each, from the
    smallest id through the largest; none for a store without customers.

    Every range has both bounds: with one bound only, SQLite read the monthly table through its
    index on ``month`` instead of the customers' keys, and the block took 2.3 times as long."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    with engine.connect() as conn:
        total = int(conn.execute(text("SELECT count(*) FROM customers")).scalar() or 0)
        if not total:
            return []
        blocks = max(1, -(-total // rows))
        bounds = [conn.execute(text("SELECT customer_id FROM customers ORDER BY customer_id LIMIT 1 OFFSET :k"),
                               {"k": total * i // blocks}).scalar() for i in range(blocks)]
        last = conn.execute(text("SELECT max(customer_id) FROM customers")).scalar()
    edges = [*bounds, last]
    return [IdRange(low, high, through=i == blocks - 1)
            for i, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

def partition_count() -> int:
    """``REFRESH_PARTITIONS``, checked (1 .. 4096)."""
    n = int(settings.get("REFRESH_PARTITIONS"))
    if not 1 <= n <= 4096:
        raise ConfigError(f"Setting REFRESH_PARTITIONS={n} must be a whole number from 1 to 4096")
    return n


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------

Task = Callable[[int], Any]


class InProcess:
    """Every partition in this process, one after another."""

    name = "in-process"

    def run(self, fn: Task, partitions: Sequence[int]) -> list:
        out = []
        for p in partitions:
            try:
                out.append(fn(p))
            except Exception as exc:
                raise PartitionError(f"Partition {p} failed: {describe(exc)}") from exc
        return out


class ProcessPool:
    """A local pool of ``workers`` processes, started fresh (``spawn``: no state of this process,
    open connections included, is inherited)."""

    name = "process-pool"

    def __init__(self, workers: int):
        self.workers = int(workers)

    def run(self, fn: Task, partitions: Sequence[int]) -> list:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(partitions)) or 1, mp_context=context)
        futures = [pool.submit(fn, p) for p in partitions]
        try:
            out = []
            for p, future in zip(partitions, futures, strict=True):
                try:
                    out.append(future.result())
                except Exception as exc:
                    # Stop what has not started and wait for what has: nothing may write after this.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise PartitionError(f"Partition {p} failed: {describe(exc)}") from exc
            return out
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskCluster:
    """A Dask cluster through ``dask.distributed.Client(address)``."""

    name = "dask"

    def __init__(self, address: str):
        self.address = address

    def run(self, fn: Task, partitions: Sequence[int]) -> list:
        from dask.distributed import Client, wait

        with Client(self.address) as client:
            futures = client.map(fn, list(partitions), pure=False)
            # Wait for every partition, failed or not, before raising: a partition still writing after
            # the refresh deleted the failed run's rows would leave rows behind.
            wait(futures)
            for p, future in zip(partitions, futures, strict=True):
                if future.status != "finished":
                    exc = future.exception()
                    raise PartitionError(f"Partition {p} failed on the Dask cluster: {describe(exc)}") from exc
            return client.gather(futures)


def executor_from_settings():
    """The executor the settings name: Dask when ``DASK_SCHEDULER_ADDRESS`` is set, else a process
    pool when ``REFRESH_WORKERS`` > 0, else in-process."""
    address = str(settings.get("DASK_SCHEDULER_ADDRESS") or "").strip()
    if address:
        return DaskCluster(address)
    workers = int(settings.get("REFRESH_WORKERS"))
    if workers < 0:
        raise ConfigError(f"Setting REFRESH_WORKERS={workers} must be 0 (in-process) or a number of processes")
    return ProcessPool(workers) if workers > 0 else InProcess()


def run_partitions(fn: Task, partitions: int, executor=None) -> list:
    """``fn(p)`` for every partition ``p`` of ``partitions``, on ``executor`` (default: the settings');
    the results in partition order.

    Raises
    ------
    PartitionError
        When a partition fails; every other partition has stopped by then.
    """
    executor = executor or executor_from_settings()
    started = time.perf_counter()
    out = executor.run(fn, range(partitions))
    log.info("%d partitions on %s in %.1f s", partitions, executor.name, time.perf_counter() - started)
    return out


def pause_if_asked(point: str, partition: int) -> None:
    """Test-only: wait at ``point`` in partition 0 when ``REFRESH_PAUSE_AT`` names it (see above).

    Only the first attempt waits: once the marker file exists, a rerun of the partition (Dask
    reruns a task whose worker was killed) goes on, so a test sees what the rerun leaves."""
    if partition != 0 or os.environ.get(PAUSE_ENV) != point:
        return
    marker = Path(os.environ.get(PAUSE_MARKER_ENV) or f"refresh-paused-{os.getpid()}")
    if marker.exists():
        return
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(f"{os.getpid()} {point}\n", encoding="ascii")
    os.replace(tmp, marker)
    log.warning("partition %d paused at %s (%s)", partition, point, PAUSE_ENV)
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)


__all__ = ["DaskCluster", "and_customers", "IdRange", "InProcess", "PAUSE_POINTS", "Partition", "PartitionError", "PartitionRange",
           "ProcessPool",
           "executor_from_settings", "hash_sql", "id_ranges", "partition_count", "partition_hash", "partition_of",
           "pause_if_asked", "prepare_engine", "run_partitions"]
