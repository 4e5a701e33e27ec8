"""AppTest: the Overview page with data, on an empty store, without a refresh, and without a store."""

import pytest

from tests.app.conftest import ROLE_USERS, login, make_store, new_app


@pytest.mark.parametrize("role", sorted(set(ROLE_USERS) - {"display"}))
def test_overview_shows_headline_counts_to_every_role(monkeypatch, store_url, role):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS[role])
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    # Hand-computed from tests/analytics/store_rows.py.
    assert metrics["Customers on file"] == "3"
    assert metrics["Status: active"] == "2"
    assert metrics["Total AUM"] == "CNY 6,000"
    assert metrics["Loans"] == "CNY 250,000"


def test_overview_in_chinese_counts_in_wan(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["executive"])
    at.radio(key="ui_lang").set_value("中文").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["在册客户数"] == "3"
    assert metrics["管理资产"] == "¥6,000"
    assert metrics["贷款余额"] == "¥25.00万"
    assert at.title[0].value == "概览"


@pytest.mark.parametrize("fill, refresh", [(False, False), (True, False)])
def test_overview_without_data_says_how_to_create_it(monkeypatch, tmp_path, fill, refresh):
    url = make_store(tmp_path, fill=fill, refresh=refresh)
    at = login(new_app(monkeypatch, url), ROLE_USERS["executive"])
    assert not at.exception
    text = " ".join(e.value for e in [*at.warning, *at.error])
    assert "python -m analytics" in text
    assert not at.metric


def test_missing_store_folder_says_how_to_create_it(monkeypatch, tmp_path):
    at = new_app(monkeypatch, f"sqlite:///{tmp_path}/absent/s.db")
    at.run()
    assert not at.exception
    text = " ".join(e.value for e in at.error)
    assert "make run" in text and "python -m analytics demo" in text
    assert len(at.text_input) == 0


def test_stale_figures_and_a_failed_refresh_are_announced(monkeypatch, store_url):
    import datetime as dt

    from sqlalchemy import insert

    from analytics.schema import refresh_runs
    from analytics.store import make_engine

    at = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
    assert not at.warning  # a fresh run, nothing failed: no notice

    engine = make_engine(store_url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(insert(refresh_runs).values(run_id=999, started_at=now, finished_at=now, status="failed",
                                                 stage="churn"))
    monkeypatch.setenv("DATA_STALE_HOURS", "0")
    import streamlit

    streamlit.cache_data.clear()  # the notice is cached for a minute, like the run's figures
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
    text = " ".join(w.value for w in at.warning)
    assert "run 999" in text and "churn" in text
    assert "hours ago" in text
    assert at.metric  # the figures are still shown


def test_imports_after_the_refresh_are_announced_in_the_right_number(monkeypatch, store_url):
    import datetime as dt

    import streamlit
    from sqlalchemy import delete, insert

    from analytics.schema import load_batches
    from analytics.store import make_engine

    engine = make_engine(store_url)
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=1)
    batch = {"loaded_at": later, "table_name": "customers", "source_file": "c.csv", "file_sha256": "0" * 64,
             "rows_read": 1, "rows_loaded": 1, "rows_rejected": 0}
    try:
        with engine.begin() as conn:
            conn.execute(insert(load_batches).values(**batch))
        streamlit.cache_data.clear()  # the notice is cached for a minute, like the run's figures
        at = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
        assert "One import batch was loaded after this refresh" in " ".join(i.value for i in at.info)
        with engine.begin() as conn:
            conn.execute(insert(load_batches).values(**{**batch, "source_file": "d.csv"}))
        streamlit.cache_data.clear()
        at = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
        assert "2 import batches were loaded after this refresh" in " ".join(i.value for i in at.info)
    finally:
        with engine.begin() as conn:
            conn.execute(delete(load_batches).where(load_batches.c.loaded_at == later))
        streamlit.cache_data.clear()
        engine.dispose()
