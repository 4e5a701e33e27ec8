"""The language switch: the whole page follows it, and a logged-in user's choice is remembered for
their next session (stored per user, not per browser)."""

from analytics import users
from analytics.store import make_engine
from tests.app.conftest import ROLE_USERS, login, new_app


def test_a_chosen_language_is_remembered_at_the_next_login(monkeypatch, store_url):
    first = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
    assert first.radio(key="ui_lang").value == "English"
    first.radio(key="ui_lang").set_value("中文").run()
    assert not first.exception
    assert first.title[0].value == "概览"
    assert users.get_language(make_engine(store_url), ROLE_USERS["marketing"]) == "zh"

    # A new session (another browser, another day): the same user gets Chinese without choosing.
    second = login(new_app(monkeypatch, store_url), ROLE_USERS["marketing"])
    assert not second.exception
    assert second.radio(key="ui_lang").value == "中文"
    assert second.title[0].value == "概览"
    assert {m.label for m in second.metric} >= {"在册客户数", "管理资产"}
    # The role under the user's name is named in the language too, not shown as its key.
    assert any(m.value.endswith("营销人员") for m in second.sidebar.markdown), [m.value for m in second.sidebar.markdown]

    # Another user is not affected.
    other = login(new_app(monkeypatch, store_url), ROLE_USERS["risk"])
    assert other.radio(key="ui_lang").value == "English"
    assert other.title[0].value == "Overview"
    assert any(m.value.endswith("Risk manager") for m in other.sidebar.markdown)


def test_switching_back_is_remembered_too(monkeypatch, store_url):
    at = login(new_app(monkeypatch, store_url), ROLE_USERS["executive"])
    at.radio(key="ui_lang").set_value("中文").run()
    at.radio(key="ui_lang").set_value("English").run()
    assert users.get_language(make_engine(store_url), ROLE_USERS["executive"]) == "en"
    again = login(new_app(monkeypatch, store_url), ROLE_USERS["executive"])
    assert again.title[0].value == "Overview"


def test_the_login_page_follows_the_switch(monkeypatch, store_url):
    at = new_app(monkeypatch, store_url)
    at.run()
    assert at.title[0].value == "Customer insight"
    at.radio(key="ui_lang").set_value("中文").run()
    assert not at.exception
    assert at.title[0].value == "客户洞察"
