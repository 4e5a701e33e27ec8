"""A refresh that runs out of disk (issue 17): one clear error line that names the full disk, no
traceback, the published run current and unchanged, and after space is freed the next refresh
succeeds and marks the failed one failed.

The store is a copy of the small store (one refresh done) on a tmpfs only a little larger than the
file, so the next refresh's results cannot fit. Mounting needs root and a container allowed to
mount; the test skips, saying so, where it is not. ``fork`` runs the command function
(:func:`analytics.cli.main`) in a forked child, as the other fast crash tests do; ``exec`` runs
``python -m analytics refresh`` in a new interpreter, as an operator would (``make reliability``).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from analytics.cli import main
from analytics.refresh import run_refresh
from analytics.store import make_engine
from tests.conftest import copy_store
from tests.reliability.harness import ROOT, current, newest_run, run_row, snapshot

# Room for the store's write-ahead log to start, far less than one run's results of the small store
# (its file grows by about 1.5 MiB per run).
HEADROOM_KIB = 256


def _mount(folder: Path, size_kib: int, *, remount: bool = False) -> subprocess.CompletedProcess:
    options = f"{'remount,' if remount else ''}size={size_kib}k,mode=0755"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)


@pytest.fixture
def small_disk():
    """An empty tmpfs folder; yields a function that sets its size in KiB."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="full-disk-"))
    done = _mount(folder, 64)
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"mount is not permitted here: {done.stderr.strip()}")

    def resize(size_kib: int) -> None:
        again = _mount(folder, size_kib, remount=True)
        assert again.returncode == 0, again.stderr

    resize.folder = folder
    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def _refresh(url: str, mode: str, capfd) -> tuple[int, str]:
    """Run the refresh command on ``url``; return its exit code and its stderr."""
    capfd.readouterr()
    if mode == "exec":
        done = subprocess.run([sys.executable, "-m", "analytics", "refresh", "--quiet", "--db", url],
                              cwd=ROOT, capture_output=True, text=True)
        return done.returncode, done.stderr
    proc = multiprocessing.get_context("fork").Process(target=lambda: os._exit(main(["refresh", "--quiet", "--db", url])))
    proc.start()
    proc.join()
    return proc.exitcode, capfd.readouterr().err


@pytest.mark.parametrize("mode", ["fork", pytest.param("exec", marks=pytest.mark.reliability_long)])
def test_full_disk_during_refresh(small_sqlite_store, small_disk, mode, capfd):
    path = small_disk.folder / "store.db"
    small_disk(Path(small_sqlite_store.removeprefix("sqlite:///")).stat().st_size // 1024 + 4 * HEADROOM_KIB)
    url = copy_store(small_sqlite_store, path)
    engine = make_engine(url)
    run, runs = current(engine), newest_run(engine)
    before = snapshot(engine, run)
    engine.dispose()
    small_disk(path.stat().st_size // 1024 + HEADROOM_KIB)

    code, err = _refresh(url, mode, capfd)

    assert code == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "disk is full" in lines[0] and "SQLITE_FULL" in lines[0], lines[0]
    assert f"Refresh run {runs + 1} failed" in lines[0] or "could not start" in lines[0], lines[0]
    engine = make_engine(url)
    try:
        assert current(engine) == run
        assert snapshot(engine, run) == before

        small_disk(64 * 1024)  # space freed
        published = run_refresh(engine)
        assert published > runs and current(engine) == published
        for failed in range(runs + 1, published):
            assert run_row(engine, failed)["status"] == "failed"
            # the run's record says why, as the command did (or, if even that write failed, that
            # the next refresh found it abandoned)
            error = run_row(engine, failed)["error"]
            assert "disk is full" in error or error.startswith("abandoned"), error
        assert sum(count for count, _ in snapshot(engine, published).values()) > 0
    finally:
        engine.dispose()


def _folder_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 1024


@pytest.mark.reliability_long
def test_full_disk_during_refresh_on_postgresql(pg_engine, small_disk):
    """The same on PostgreSQL: the result tables live in a tablespace on the small tmpfs (the server
    must run on this machine, as .ci/start-postgres starts it), so the next refresh's rows cannot
    fit; the server answers 53100 (DiskFull) and the refresh says so in one line."""
    import pwd

    from sqlalchemy import text

    from analytics.refresh import result_tables
    from tests.reliability.conftest import _fill

    if pg_engine.url.host not in ("127.0.0.1", "localhost"):
        pytest.skip("the PostgreSQL server is not on this machine: its tablespace cannot be a local tmpfs")
    folder = small_disk.folder
    small_disk(64 * 1024)
    try:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    except KeyError:  # the server runs as this user
        pass
    _fill(pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    tables = [t.name for t in result_tables()]
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE TABLESPACE small_disk LOCATION '{folder}'"))
    try:
        with pg_engine.begin() as conn:
            for name in tables:
                conn.execute(text(f'ALTER TABLE "{name}" SET TABLESPACE small_disk'))
        run, runs = current(pg_engine), newest_run(pg_engine)
        before = snapshot(pg_engine, run)
        small_disk(_folder_kib(folder) + HEADROOM_KIB)

        done = subprocess.run([sys.executable, "-m", "analytics", "refresh", "--quiet", "--db", url],
                              cwd=ROOT, capture_output=True, text=True)

        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, done.stderr
        print("refresh said:", lines[0])
        assert "disk is full" in lines[0] and "DiskFull" in lines[0], lines[0]
        assert current(pg_engine) == run and snapshot(pg_engine, run) == before

        small_disk(64 * 1024)  # space freed
        published = run_refresh(pg_engine)
        assert published > runs and current(pg_engine) == published
        for failed in range(runs + 1, published):
            error = run_row(pg_engine, failed)["error"]
            assert run_row(pg_engine, failed)["status"] == "failed" and "disk is full" in error, error
    finally:
        with pg_engine.begin() as conn:
            for name in tables:
                conn.execute(text(f'ALTER TABLE "{name}" SET TABLESPACE pg_default'))
        with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("DROP TABLESPACE small_disk"))
