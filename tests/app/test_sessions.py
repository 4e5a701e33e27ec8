"""AppTest: the server-side session is checked again on every tick of the KPI wall's fragment.

A tick of ``st.fragment(run_every=...)`` reruns the fragment alone: app.py's login gate does not
run. These tests drive a tick the way the browser's timer does (a rerun request naming the
fragment), and expect a tick after a logout, a disabled account, a role change or an idle timeout
to carry no data: no tile, no sparkline, and the login page instead. A kiosk (display) account
does not idle out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import streamlit.testing.v1.local_script_runner as local_runner
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from analytics import audit, users
from analytics.schema import user_sessions
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, login, nav_pages, new_app


def fragment_tick(at: AppTest, monkeypatch) -> AppTest:
    """Run one tick of the page's auto-refreshing fragment, alone, as its timer does."""
    fragments = list(at._fragment_storage._fragments)
    assert len(fragments) == 1, f"expected the wall's one fragment, found {fragments}"
    real = local_runner.RerunData

    def tick(**kwargs):
        return dataclasses.replace(real(**kwargs), fragment_id_queue=[fragments[0]], is_auto_rerun=True)

    with monkeypatch.context() as m:
        m.setattr(local_runner, "RerunData", tick)
        at.run()
    assert not at.exception, at.exception
    return at


def shows_figures(at: AppTest) -> bool:
    tiles = [md.value for md in at.markdown if "kpi-value" in md.value]
    return bool(tiles) or bool(at.get("plotly_chart"))


def open_wall(monkeypatch, url: str, username: str, role: str) -> AppTest:
    engine = make_engine(url)
    users.add_user(engine, username, PASSWORD, [role])
    at = login(new_app(monkeypatch, url), username)
    if role != "display":
        at.switch_page("app_pages/kpi_wall.py").run()
    assert not at.exception and shows_figures(at)
    return at


def test_a_tick_of_a_live_session_redraws_the_figures(monkeypatch, demo_store_url):
    # The control: a tick alone draws the tiles again (so the tests below see a real tick).
    at = open_wall(monkeypatch, demo_store_url, "tick_live", "executive")
    fragment_tick(at, monkeypatch)
    assert shows_figures(at)
    # The tick ran the fragment alone: app.py (its sidebar's language switch) did not run.
    assert not [r for r in at.radio if r.key == "ui_lang"]


@pytest.mark.parametrize("revoke", ["disable", "set_roles", "logout_elsewhere"])
def test_the_next_tick_after_a_revocation_carries_no_data(monkeypatch, demo_store_url, revoke):
    username = f"tick_{revoke}"
    at = open_wall(monkeypatch, demo_store_url, username, "display")
    engine = make_engine(demo_store_url)
    if revoke == "disable":
        users.disable_user(engine, username)
    elif revoke == "set_roles":
        users.set_roles(engine, username, ["executive"])
    else:
        users.end_user_sessions(engine, username, "logout")
    fragment_tick(at, monkeypatch)
    assert not shows_figures(at)
    assert nav_pages(at) == {"login"} and len(at.text_input) == 2  # the login prompt
    assert any("log in again" in e.value for e in at.error)
    denied = audit.query(engine, user=username, event="access_denied")
    assert len(denied) == 1


def test_a_role_changed_behind_the_apps_back_ends_the_session_at_the_next_tick(monkeypatch, demo_store_url):
    # A change that did not go through set_roles (so did not end the sessions) still ends this one.
    from analytics.schema import users as users_table

    at = open_wall(monkeypatch, demo_store_url, "tick_sql_roles", "display")
    engine = make_engine(demo_store_url)
    with engine.begin() as conn:
        conn.execute(update(users_table).where(users_table.c.username == "tick_sql_roles").values(roles="executive"))
    fragment_tick(at, monkeypatch)
    assert not shows_figures(at) and nav_pages(at) == {"login"}


def _age_sessions(engine, username: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(user_sessions).where(user_sessions.c.username == username)
                     .values(last_seen_at=dt.datetime(2000, 1, 1)))


def test_an_idle_wall_session_ends_at_the_next_tick(monkeypatch, demo_store_url):
    at = open_wall(monkeypatch, demo_store_url, "tick_idle", "executive")
    engine = make_engine(demo_store_url)
    _age_sessions(engine, "tick_idle")
    fragment_tick(at, monkeypatch)
    assert not shows_figures(at) and nav_pages(at) == {"login"}
    assert "timeout" in set(audit.query(engine, user="tick_idle")["event"])


def test_ticks_do_not_keep_a_session_alive(monkeypatch, demo_store_url):
    # The tick is no sign of anyone at the screen: it must not reset the idle clock.
    at = open_wall(monkeypatch, demo_store_url, "tick_clock", "executive")
    engine = make_engine(demo_store_url)
    session_id = at.session_state["ci_session_id"]

    def last_seen():
        with engine.connect() as conn:
            return conn.execute(user_sessions.select().where(user_sessions.c.session_id == session_id)).one().last_seen_at

    before = last_seen()
    fragment_tick(at, monkeypatch)
    assert shows_figures(at) and last_seen() == before
    at.run()  # a rerun (the user did something) does reset it
    assert last_seen() > before


def test_a_kiosk_session_does_not_idle_out_but_ends_on_disable(monkeypatch, demo_store_url):
    at = open_wall(monkeypatch, demo_store_url, "tick_kiosk", "display")
    engine = make_engine(demo_store_url)
    _age_sessions(engine, "tick_kiosk")
    fragment_tick(at, monkeypatch)
    assert shows_figures(at)
    at.run()  # a full rerun (a reload of the wall) keeps it too
    assert shows_figures(at) and nav_pages(at) == {"kpi_wall"}
    users.disable_user(engine, "tick_kiosk")
    fragment_tick(at, monkeypatch)
    assert not shows_figures(at) and nav_pages(at) == {"login"}
