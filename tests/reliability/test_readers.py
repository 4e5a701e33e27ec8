"""Concurrent readers while refreshes are killed and published (issue 17), on SQLite and on
PostgreSQL (``CUSTOMER_STORE_TEST_PG_URL``): reader threads keep reading the published run's
summaries and per-customer results (segments, CLV) as the pages do (one statement that names the
current run), while one refresh is killed while it writes its segments (staging rows of a table the
readers read), the next inside its publish transaction, the next right after its commit, and a
last one runs to the end.

Each read records the run id, the row count and a checksum. Checked afterwards: every read saw rows
of exactly one run, complete (count and checksum equal to that run's final rows), and each thread's
run ids never went backwards. Runs on demand (``make reliability``): the kills go through ``python -m
analytics refresh`` in new interpreters (a fork would copy the readers' locks).
"""

from __future__ import annotations

import hashlib
import threading

import pytest

from analytics.refresh import run_refresh
from analytics.runs import read_run_table
from analytics.store import make_engine
from tests.reliability.harness import kill_refresh_at

READERS = 3
KILLS = ("stage:segments:writing", "publish:before-commit", "publish:after-commit")
TABLES = {"segment_summary": "dimension, value", "customer_segments": "customer_id", "customer_clv_txn": "customer_id",
          "kpi_monthly": "month, metric"}


def _digest(frame) -> str:
    return hashlib.sha256(frame.drop(columns=["run_id"]).to_csv(index=False).encode()).hexdigest()


@pytest.mark.reliability_long
def test_readers_see_one_complete_run_and_never_go_back(small_url, tmp_path):
    engine = make_engine(small_url)
    stop = threading.Event()
    reads: list[list[tuple[str, int, int, str]]] = [[] for _ in range(READERS)]
    errors: list[str] = []

    def reader(i: int) -> None:
        own = make_engine(small_url)
        try:
            while not stop.is_set():
                for table, order in TABLES.items():
                    frame = read_run_table(own, table, None, order)
                    runs = frame["run_id"].unique().tolist()
                    if len(runs) != 1:
                        errors.append(f"{table}: rows of runs {runs} in one read")
                        continue
                    reads[i].append((table, int(runs[0]), len(frame), _digest(frame)))
        except Exception as exc:  # noqa: BLE001 - reported as a violation below
            errors.append(f"reader {i}: {type(exc).__name__}: {exc}")
        finally:
            own.dispose()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    for t in threads:
        t.start()
    try:
        for point in KILLS:
            kill_refresh_at(small_url, point, tmp_path, mode="exec")
        run_refresh(engine)
    finally:
        stop.set()
        for t in threads:
            t.join()

    final = {(table, run): None for r in reads for table, run, _, _ in r}
    for table, run in final:
        frame = read_run_table(engine, table, run, TABLES[table])
        final[(table, run)] = (len(frame), _digest(frame))
    violations = list(errors)
    for i, thread_reads in enumerate(reads):
        last = {}
        for table, run, count, digest in thread_reads:
            if (count, digest) != final[(table, run)]:
                violations.append(f"reader {i}: {table} of run {run} incomplete or changed ({count} rows)")
            if run < last.get(table, 0):
                violations.append(f"reader {i}: {table} went back from run {last[table]} to {run}")
            last[table] = run
    total = sum(len(r) for r in reads)
    seen = sorted({run for r in reads for _, run, _, _ in r})
    print(f"concurrent readers ({engine.dialect.name}): {total} reads by {READERS} threads, runs seen {seen}, violations {len(violations)}")
    assert total > 0 and len(seen) >= 2, (total, seen)
    assert not violations, violations[:10]
    engine.dispose()
