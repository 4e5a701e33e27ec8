"""The benchmarks give each store its own audit checkpoint file (a shared one was re-anchored by the
last store written, and the other stores' pages then refused to open)."""

import importlib
from pathlib import Path

import pytest


@pytest.fixture
def checkpoints(monkeypatch):
    monkeypatch.delenv("AUDIT_CHECKPOINT_FILE", raising=False)
    from benchmarks import checkpoints

    return importlib.reload(checkpoints)  # reads the starting environment, as at a benchmark's start


def test_each_store_gets_its_own_file(checkpoints, tmp_path, monkeypatch):
    one, two = (f"sqlite:///{tmp_path}/bench_{n}.db" for n in (100000, 1000000))
    assert checkpoints.use_store_checkpoint(one) == tmp_path / "bench_100000.checkpoint"
    assert checkpoints.use_store_checkpoint(two) == tmp_path / "bench_1000000.checkpoint"
    import os

    assert os.environ["AUDIT_CHECKPOINT_FILE"] == str(tmp_path / "bench_1000000.checkpoint")
    server = checkpoints.checkpoint_file("postgresql+psycopg://u@db.example:5432/bench_3000000")
    assert server.parent == checkpoints.STORES and "bench_3000000" in server.name
    assert server != checkpoints.checkpoint_file("postgresql+psycopg://u@db.example:5432/bench_1000000")


def test_a_file_set_before_the_benchmark_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "mine.checkpoint"))
    from benchmarks import checkpoints

    checkpoints = importlib.reload(checkpoints)
    assert checkpoints.use_store_checkpoint(f"sqlite:///{tmp_path}/bench_1.db") == Path(tmp_path / "mine.checkpoint")
