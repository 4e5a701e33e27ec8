"""Small demo stores for the crash tests: 300 customers, built and refreshed once (run 1 is current)."""

from __future__ import annotations

import pytest

from analytics import demo
from analytics.refresh import run_refresh
from analytics.store import init_schema, make_engine
from tests.conftest import copy_store

SMALL_CUSTOMERS = 300


def _fill(engine) -> None:
    demo.generate(engine, customers=SMALL_CUSTOMERS, months=24, seed=11, progress=False)
    run_refresh(engine)


@pytest.fixture(scope="session")
def small_sqlite_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "bank.db"
    engine = make_engine(f"sqlite:///{path}", create_dir=True)
    init_schema(engine)
    _fill(engine)
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.fixture
def small_sqlite_url(small_sqlite_store, tmp_path):
    """A private copy of the small store (audit checkpoint anchored), for one test to crash."""
    return copy_store(small_sqlite_store, tmp_path / "store.db")


@pytest.fixture
def small_pg_url(pg_engine):
    _fill(pg_engine)
    return pg_engine.url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def small_url(request):
    return request.getfixturevalue("small_sqlite_url" if request.param == "sqlite" else "small_pg_url")
