"""AppTest: the Overview page on the demo store, on an empty store, and on a store without a run."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics.store import init_schema, make_engine
from tests.analytics import store_rows

TIMEOUT = 30
APP = str(Path(__file__).resolve().parents[2] / "app.py")


def run_app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("CUSTOMER_STORE_URL", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


def test_overview_shows_headline_counts(monkeypatch, tmp_path):
    from analytics.refresh import run_refresh

    url = f"sqlite:///{tmp_path}/s.db"
    engine = make_engine(url, create_dir=True)
    init_schema(engine)
    store_rows.fill(engine)
    run_refresh(engine)
    at = run_app(monkeypatch, url)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Customers · 客户数"] == "3"
    assert metrics["Active · 活跃"] == "2"
    assert metrics["Total AUM · 管理资产"] == "¥6,000"
    assert metrics["Loans · 贷款"] == "¥250,000"


@pytest.mark.parametrize("prepare", ["missing_folder", "empty_store", "no_refresh"])
def test_overview_without_data_says_how_to_create_it(monkeypatch, tmp_path, prepare):
    url = f"sqlite:///{tmp_path}/s.db"
    if prepare == "missing_folder":
        url = f"sqlite:///{tmp_path}/absent/s.db"
    else:
        engine = make_engine(url, create_dir=True)
        init_schema(engine)
        if prepare == "no_refresh":
            store_rows.fill(engine)
    at = run_app(monkeypatch, url)
    assert not at.exception
    text = " ".join(e.value for e in [*at.warning, *at.error])
    assert "python -m analytics" in text
    assert not at.metric
