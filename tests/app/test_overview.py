"""AppTest: the Overview page with data, on an empty store, without a refresh, and without a store."""

import pytest

from tests.app.conftest import ROLE_USERS, login, make_store, new_app


@pytest.mark.parametrize("role", sorted(set(ROLE_USERS) - {"display"}))
def test_overview_shows_headline_counts_to_every_role(monkeypatch, store_url, role):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS[role])
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    # Hand-computed from tests/analytics/store_rows.py.
    assert metrics["Customers · 客户数"] == "3"
    assert metrics["Active · 活跃"] == "2"
    assert metrics["Total AUM · 管理资产"] == "¥6,000"
    assert metrics["Loans · 贷款"] == "¥250,000"


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
