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
