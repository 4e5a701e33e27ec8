"""A websocket session against a real server (the load test's client, issue 17): it logs in, opens
every page of its role without an exception, and exports; the export's file is still there after
other sessions' script runs (Streamlit collects unreferenced downloads at the end of every run:
without ``widgets.keep_until_fetched`` the second collection deleted it, a 404 under load).

Quick (one server, one small demo store): it runs in ``make test``; the 20-session load test in
``test_load.py`` runs on demand.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from analytics import users
from analytics.access import pages_for
from analytics.store import make_engine
from tests import totp
from tests.browser.conftest import PASSWORD, SECRET_ENV, start_server
from tests.reliability.ws_client import WsSession

pytestmark = pytest.mark.slow

ROLE = "marketing"


@pytest.fixture(scope="module")
def server(demo_store_url, tmp_path_factory):
    engine = make_engine(demo_store_url)
    for name in ("ws_session_a", "ws_session_b"):
        if users.get_user(engine, name) is None:
            users.add_user(engine, name, PASSWORD, [ROLE])
            if users.mfa_required([ROLE]):
                totp.enrol(engine, name)
    engine.dispose()
    base, proc, _log = start_server(demo_store_url, tmp_path_factory.mktemp("ws"), dict(SECRET_ENV))
    yield base, demo_store_url
    proc.terminate()
    proc.wait(timeout=30)


async def _session(base: str, url: str, name: str) -> WsSession:
    s = WsSession(base, timeout=120)
    await s.connect()
    await s.log_in(name, PASSWORD, lambda: totp.next_code(url, name))
    return s


def test_every_page_of_the_role_opens_and_an_export_outlives_other_sessions_runs(server):
    base, url = server

    async def scenario():
        a = await _session(base, url, "ws_session_a")
        b = await _session(base, url, "ws_session_b")
        try:
            opened, exported = [], None
            for page in [p for p in pages_for([ROLE]) if p != "approvals"]:
                await a.run(page=page)  # raises on an exception element or a missing page
                opened.append(page)
                if exported is None and a.downloads:
                    csv = next(w for w in a.downloads if w.label == "CSV")
                    exported = (page, await a.request_file(csv))
            assert exported, "no page of the role offers an export"
            page, file_url = exported
            # Other sessions' runs end, each collecting unreferenced downloads.
            for other in [p for p in opened if p != page][:3]:
                await b.run(page=other)
            data = await a.fetch(file_url)
            return opened, page, data
        finally:
            await a.close()
            await b.close()

    # A thread of its own: the browser tests' Playwright (sync API) keeps an event loop running in
    # this one for the whole session, and asyncio.run refuses to start inside it.
    with ThreadPoolExecutor(1) as pool:
        opened, page, data = pool.submit(asyncio.run, scenario()).result()
    assert set(opened) == set(pages_for([ROLE])) - {"approvals"}
    frame = pd.read_csv(io.BytesIO(data))
    assert len(frame) > 0, f"the export of {page} is empty"
