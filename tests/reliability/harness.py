"""Kill a refresh with SIGKILL at a pause point, and check what a crash must leave behind.

A refresh is started either as ``python -m analytics refresh`` in a new interpreter (``mode="exec"``,
what an operator or a timer runs), or as a fork of the test process that runs the same command
function, :func:`analytics.cli.main` (``mode="fork"``: the same code path without the 15 s of
imports on a busy two-core machine; the fast tests use it). ``REFRESH_PAUSE_AT`` makes the refresh
write a marker file at the point and wait there (:mod:`analytics.refresh`), so the kill lands at the
same place every time; nothing here depends on timing.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, text

from analytics.refresh import PAUSE_ENV, PAUSE_MARKER_ENV, result_tables
from analytics.schema import current_run, refresh_runs

ROOT = Path(__file__).resolve().parents[2]
# A guard against a hung child, not a measurement: a refresh of the small store reaches its last
# point in well under this.
MARKER_WAIT_SECONDS = 600


def _child(url: str, env: dict) -> None:
    os.environ.update(env)
    from analytics.cli import main

    os._exit(main(["refresh", "--quiet", "--db", url]))


@dataclass
class Killed:
    pid: int
    point: str
    exit_signal: int


def kill_refresh_at(url: str, point: str, tmp_path: Path, *, mode: str = "fork") -> Killed:
    """Start a refresh of ``url``, wait until it pauses at ``point``, SIGKILL it, reap it."""
    marker = tmp_path / f"paused-{point.replace(':', '_')}-{time.monotonic_ns()}"
    env = {PAUSE_ENV: point, PAUSE_MARKER_ENV: str(marker)}
    if mode == "fork":
        proc = multiprocessing.get_context("fork").Process(target=_child, args=(url, env))
        proc.start()
        pid, alive = proc.pid, proc.is_alive
    else:
        log = (tmp_path / f"refresh-{time.monotonic_ns()}.log").open("w")
        popen = subprocess.Popen([sys.executable, "-m", "analytics", "refresh", "--quiet", "--db", url],
                                 cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        pid, alive = popen.pid, (lambda: popen.poll() is None)
    deadline = time.monotonic() + MARKER_WAIT_SECONDS
    while not marker.exists():
        if not alive():
            raise AssertionError(f"the refresh ended before it reached {point}")
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the refresh did not reach {point}")
        time.sleep(0.05)
    assert marker.read_text().split() == [str(pid), point]
    os.kill(pid, signal.SIGKILL)
    if mode == "fork":
        proc.join()
        code = proc.exitcode
    else:
        code = popen.wait()
        log.close()
    assert code == -signal.SIGKILL, code
    return Killed(pid, point, -code)


def current(engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(current_run.c.run_id)).scalar()


def run_row(engine, run_id: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(refresh_runs).where(refresh_runs.c.run_id == run_id)).mappings().one())


def newest_run(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(refresh_runs.c.run_id).order_by(refresh_runs.c.run_id.desc())).scalar()


def snapshot(engine, run_id: int) -> dict[str, tuple[int, str]]:
    """Every run-keyed result table's rows of ``run_id``: (count, SHA-256 over the sorted rows)."""
    out = {}
    with engine.connect() as conn:
        for table in result_tables():
            rows = conn.execute(select(table).where(table.c.run_id == run_id)).all()
            digest = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
            out[table.name] = (len(rows), digest)
    return out


def results_only(shot: dict) -> dict:
    """A :func:`snapshot` without the stored feature frames, which only the current run keeps: a
    later refresh deletes an earlier run's (analytics/features_stage.py), its results stay."""
    return {k: v for k, v in shot.items() if not k.startswith("customer_feature")}


def rows_of(engine, run_id: int) -> int:
    with engine.connect() as conn:
        return sum(conn.execute(select(text("count(*)")).select_from(t).where(t.c.run_id == run_id)).scalar()
                   for t in result_tables())
