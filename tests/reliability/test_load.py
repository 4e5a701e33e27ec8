"""Load (issue 17): concurrent sessions, spread over the roles, use the dashboard on the demo store
for a fixed time; the error count, the page times and the server's memory are reported.

One ``streamlit run app.py`` on loopback. The first ``LOAD_BROWSER_SESSIONS`` sessions (default 4)
are browser contexts of one headless Chromium (Debian's, as the browser tests use); the others are
websocket clients (``tests/reliability/ws_client.py``) that speak the app's own protocol, as the
frontend does, without rendering: twenty browser contexts took three quarters of the two cores and
the figures timed Chromium, not the server. All are driven from one asyncio loop. Each session logs
in as its own user (two-factor codes as the user's authenticator app gives them), then, until the
time is up, with a seeded random choice and one to three seconds of reading between actions:

- opens another page of its role (the sidebar link; for a websocket client, the page's run);
- changes a filter (a radio or a select box of the page, on screen and outside a form);
- on Segments, types a tag expression; pages through a paged list (a number input's step);
- exports (a CSV or Excel download: the server builds and audits the file, the client fetches it).

Display (kiosk) sessions stay on the KPI wall and count its ticks (``KPI_REFRESH_SECONDS``, here
``LOAD_KPI_SECONDS``). A page time is the time from the click (or the run request) to the end of the
script run it started: the server's ``script_finished`` message on the session's websocket, then,
in a browser, the page idle again; no action is timed by sleeping. Errors: an exception element on
the page, a console error, an uncaught page error, an HTTP status of 400 or more (a download's
file included), a failed fragment tick, and an action that did not end within
``LOAD_ACTION_TIMEOUT`` seconds. The server's resident memory is sampled every
``LOAD_SAMPLE_SECONDS`` (psutil).

Bounded: ``LOAD_SESSIONS`` sessions (default 20) for ``LOAD_SECONDS`` (default 300) after the last
login, loopback only. The figures are printed and written to benchmarks/results.json under "load".
Runs on demand (``make reliability``); it is not part of ``make test``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import time
import urllib.error
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from analytics import scopes, users
from analytics.access import can_see_customer_rows, pages_for
from analytics.store import make_engine
from tests import totp
from tests.browser.conftest import CHROMIUM, PASSWORD, SECRET_ENV, start_server
from tests.reliability.ws_client import FINISHED, WsSession

pytestmark = pytest.mark.reliability_long

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results.json"

SESSIONS = int(os.environ.get("LOAD_SESSIONS", "20"))
# Of those, this many are browser contexts (the first ones, one role each); the rest are websocket
# clients (tests/reliability/ws_client.py), which load the server as a browser does without
# rendering: twenty Chromium contexts took three quarters of the two cores and timed the browsers.
BROWSER_SESSIONS = int(os.environ.get("LOAD_BROWSER_SESSIONS", "4"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "300"))
KPI_SECONDS = int(os.environ.get("LOAD_KPI_SECONDS", "10"))
SAMPLE_SECONDS = float(os.environ.get("LOAD_SAMPLE_SECONDS", "5"))
# A guard against a hung page, not a measurement: a slower action is counted as an error.
ACTION_TIMEOUT = float(os.environ.get("LOAD_ACTION_TIMEOUT", "120"))
# Logins start this far apart: twenty at once on two cores would measure the login queue.
LOGIN_SPACING = 2.0
# A folder for a screenshot of each browser session whose login failed (off when empty).
SHOTS = os.environ.get("LOAD_SHOTS", "")

FULL_RUN_FINISHED = FINISHED.FINISHED_SUCCESSFULLY
ROLE_CYCLE = ("executive", "marketing", "risk", "compliance", "admin", "display", "relationship_manager")
TAG_EXPRESSIONS = ("not mortgage_holder", "credit_card_holder or payroll_customer", "not credit_card_holder")

IDLE_JS = """() =>
  document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'"""
MAIN = '[data-testid="stMain"]'


class LoadUser:
    """What every simulated user has, in a browser or over a websocket: who it is, the pages its role
    opens, its random choices, and the shared log of its timings and errors."""

    def __init__(self, index: int, role: str, username: str, base: str, store_url: str, log: dict):
        self.index, self.role, self.username, self.base, self.store_url = index, role, username, base, store_url
        self.rng = random.Random(1000 + index)
        self.log = log
        self.pages = [p for p in pages_for([role]) if p not in ("approvals",)]
        self.sees_rows = can_see_customer_rows([role])
        self.page = None

    def error(self, kind: str, detail: str) -> None:
        if len(self.log["errors"]) < 50:
            print(f"load: session {self.index} ({self.role}) {kind}: {detail[:200]}", flush=True)
        self.log["errors"].append({"session": self.index, "role": self.role, "kind": kind, "detail": detail[:300]})

    def timed(self, kind: str, seconds: float, path: str) -> None:
        self.log["actions"].append({"session": self.index, "role": self.role, "kind": kind,
                                    "seconds": round(seconds, 3), "path": path})

    async def act_until(self, deadline: float) -> None:
        """Random actions (navigate, filter, page through, export), 1-3 s apart, until ``deadline``."""
        actions = [(self.navigate, 3), (self.change_filter, 3), (self.page_through, 2), (self.export, 1)]
        while time.monotonic() < deadline:
            act = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
            try:
                done = await act()
            except Exception as exc:  # noqa: BLE001 - a timeout or a vanished element is an error to count
                self.error(act.__name__, f"{self.path()}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                done = True
                await self._recover()
            if done:
                await self.check_page()
                await asyncio.sleep(self.rng.uniform(1, 3))


class Session(LoadUser):
    """One user's browser context."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.runs_finished = 0
        self.fragment_runs = 0  # the KPI wall's ticks

    def path(self) -> str:
        return self.page.url.removeprefix(self.base).split("?")[0] or "/"

    async def open(self, browser) -> None:
        context = await browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        context.set_default_timeout(ACTION_TIMEOUT * 1000)  # the first page of a busy server is slow
        self.page = page = await context.new_page()
        page.on("websocket", self._on_websocket)
        page.on("pageerror", lambda exc: self.error("page error", str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.error("console error", msg.text))
        page.on("response", lambda r: r.status >= 400 and self.error("http", f"{r.status} {r.url}"))

    def _on_websocket(self, ws) -> None:
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        """Count the app's runs as they end (``script_finished``), and the fragments' among them.

        On the KPI wall a fragment's timed tick may end first and count as the click's run: a
        filter there is then timed short, never as an error."""
        if not isinstance(payload, bytes):
            return
        msg = ForwardMsg()
        msg.ParseFromString(payload)
        if msg.WhichOneof("type") == "script_finished":
            # A widget inside a fragment (the KPI wall's ranking switch) reruns only the fragment.
            if msg.script_finished in (FULL_RUN_FINISHED, FINISHED.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                self.runs_finished += 1
            if msg.script_finished == FINISHED.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                self.fragment_runs += 1

    async def settle(self, act) -> float:
        """Run ``act`` (a click), wait for the script run it starts to end; the seconds it took.

        A run's end is the server's ``script_finished`` message on the page's websocket, then the page
        idle again. The page's own attribute is not enough: when a run starts and ends within one
        frame of a busy browser, the attribute never shows "running" and the wait saw no run.
        """
        before = self.runs_finished
        t0 = time.perf_counter()
        await act()
        deadline = t0 + ACTION_TIMEOUT
        while self.runs_finished == before:
            if time.perf_counter() > deadline:
                state = await self.page.evaluate(
                    "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')")
                raise TimeoutError(f"no run ended within {ACTION_TIMEOUT:.0f} s of the click (script state now: {state})")
            await asyncio.sleep(0.02)
        await self.page.wait_for_function(IDLE_JS, timeout=ACTION_TIMEOUT * 1000)
        return time.perf_counter() - t0

    async def check_page(self) -> None:
        if await self.page.locator('[data-testid="stException"]').count():
            self.error("exception", f"{self.path()}: an exception element is shown")

    async def log_in(self) -> None:
        page = self.page
        t0 = time.perf_counter()
        step = "opening the login page"
        try:
            await page.goto(self.base + "/")
            await page.get_by_text("Password").first.wait_for()
            # The cookie component reports after the first run and reruns the page: a click on
            # "Log in" in that moment was lost (the form stayed filled in, no login, in one of
            # three runs with six sessions). A person takes longer than that to type; so does this.
            settle_by = time.perf_counter() + 3
            while self.runs_finished < 2 and time.perf_counter() < settle_by:
                await asyncio.sleep(0.05)
            await page.wait_for_function(IDLE_JS)
            step = "submitting the login form"
            await page.get_by_label("Username", exact=True).fill(self.username)
            await page.get_by_label("Password", exact=True).fill(PASSWORD)
            await page.get_by_role("button", name="Log in", exact=True).click()
            landed = page.locator('[data-testid="stSidebarNav"]').or_(page.get_by_text("Total AUM"))
            mfa = page.get_by_role("heading", name="Two-factor login")
            await landed.first.or_(mfa.first).wait_for(timeout=ACTION_TIMEOUT * 1000)
            if await mfa.count():
                step = "entering the two-factor code"
                await page.get_by_label("Six-digit code", exact=False).fill(totp.next_code(self.store_url, self.username))
                await page.get_by_role("button", name="Verify", exact=True).click()
            step = "waiting for the first page"
            await landed.first.wait_for(timeout=ACTION_TIMEOUT * 1000)
            await page.wait_for_function(IDLE_JS, timeout=ACTION_TIMEOUT * 1000)
        except Exception as exc:
            raise RuntimeError(f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        self.timed("login", time.perf_counter() - t0, self.path())
        await self.check_page()

    async def navigate(self) -> bool:
        here = self.path().strip("/")
        choices = [p for p in self.pages if p != here]
        if not choices:
            return False
        target = self.rng.choice(choices)
        link = self.page.locator(f'[data-testid="stSidebarNav"] a[href$="/{target}"]')
        if not await link.count():
            self.error("navigation", f"no sidebar link to {target}")
            return False
        self.timed("navigate", await self.settle(lambda: link.first.click()), target)
        if target == "segments" and self.sees_rows:
            await self.tag_expression()
        return True

    async def tag_expression(self) -> None:
        box = self.page.locator(f'{MAIN} [data-testid="stTextInput"] input').first
        # A new expression: the box keeps the last one, and the same text again starts no run.
        current = await box.input_value()
        expression = self.rng.choice([e for e in TAG_EXPRESSIONS if e != current])
        await box.fill(expression)
        self.timed("filter", await self.settle(lambda: box.press("Enter")), self.path())

    async def change_filter(self) -> bool:
        # Not a widget inside a form (the export-approval request, the Customer 360 lookup): changing
        # it starts no script run until the form is submitted, so there is nothing to time. An option is
        # a label holding an input: the group's own caption ("Break down by") is a label too.
        # Only what is on screen: a hidden tab's widgets cannot be clicked.
        radios = self.page.locator(f'{MAIN} [data-testid="stRadio"]:not([data-testid="stForm"] *) '
                                   'label:has(input):not(:has(input:checked)):visible')
        selects = self.page.locator(f'{MAIN} [data-testid="stSelectbox"]:not([data-testid="stForm"] *):visible')
        n_radio, n_select = await radios.count(), await selects.count()
        if not n_radio + n_select:
            return False
        pick = self.rng.randrange(n_radio + n_select)
        if pick < n_radio:
            label = radios.nth(pick)
            self.timed("filter", await self.settle(lambda: label.click()), self.path())
            return True
        await selects.nth(pick - n_radio).click()
        options = self.page.locator('[role="listbox"] [role="option"]:not([aria-selected="true"])')
        try:
            await options.first.wait_for(timeout=10000)
        except Exception:  # noqa: BLE001 - a select box with one option: nothing to change
            await self.page.keyboard.press("Escape")
            return False
        option = options.nth(self.rng.randrange(await options.count()))
        self.timed("filter", await self.settle(lambda: option.click()), self.path())
        return True

    async def page_through(self) -> bool:
        up = self.page.locator(f'{MAIN} [data-testid="stNumberInputStepUp"]:visible')
        down = self.page.locator(f'{MAIN} [data-testid="stNumberInputStepDown"]:visible')
        for button in (up, down):
            if await button.count() and await button.first.is_enabled():
                self.timed("page", await self.settle(lambda b=button: b.first.click()), self.path())
                return True
        return False

    async def export(self) -> bool:
        buttons = self.page.locator(f'{MAIN} [data-testid="stDownloadButton"] button:visible')
        if not await buttons.count():
            return False
        button = buttons.nth(self.rng.randrange(await buttons.count()))
        t0 = time.perf_counter()
        async with self.page.expect_download(timeout=ACTION_TIMEOUT * 1000) as info:
            await button.click()
        download = await info.value
        await download.path()  # the whole file is in
        failure = await download.failure()
        if failure:
            self.error("export", f"{self.path()}: {failure}")
        self.timed("export", time.perf_counter() - t0, self.path())
        return True

    async def work(self, deadline: float) -> None:
        if self.role == "display":  # the wall ticks on its own; the session just watches it
            start = self.fragment_runs
            while time.monotonic() < deadline:
                await asyncio.sleep(min(5, max(0.0, deadline - time.monotonic())))
                await self.check_page()
            self.log["wall_ticks"].append(self.fragment_runs - start)
            return
        await self.act_until(deadline)

    async def _recover(self) -> None:
        try:
            await self.page.keyboard.press("Escape")
            await self.page.wait_for_function(IDLE_JS, timeout=ACTION_TIMEOUT * 1000)
        except Exception as exc:  # noqa: BLE001
            self.error("recover", f"{type(exc).__name__}")


class WsUser(LoadUser):
    """One user's session over the app's websocket (``ws_client.WsSession``): the same actions as a
    browser session, without rendering what the server sends."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.here = ""

    def path(self) -> str:
        return "/" + self.here

    async def open(self, browser) -> None:  # noqa: ARG002 - no browser
        self.page = WsSession(self.base, timeout=ACTION_TIMEOUT)
        await self.page.connect()

    async def log_in(self) -> None:
        t0 = time.perf_counter()
        await self.page.log_in(self.username, PASSWORD, lambda: totp.next_code(self.store_url, self.username))
        self.timed("login", time.perf_counter() - t0, self.path())

    async def navigate(self) -> bool:
        choices = [p for p in self.pages if p != self.here and p in self.page.pages]
        if not choices:
            return False
        target = self.rng.choice(choices)
        self.here = target
        self.timed("navigate", await self.page.run(page=target), target)
        tags = self.page.find("text_input", "Tag expression")
        if target == "segments" and self.sees_rows and tags:
            current = self.page.values.get(tags[0].id, ("", ""))[1]
            expression = self.rng.choice([e for e in TAG_EXPRESSIONS if e != current])
            self.timed("filter", await self.page.run(set_values={tags[0]: expression}), self.path())
        return True

    async def change_filter(self) -> bool:
        s = self.page
        choices = [w for w in s.widgets.values() if w.kind in ("radio", "selectbox") and not w.form_id
                   and len(w.options) > 1 and w.label != "Language · 语言"]
        if not choices:
            return False
        widget = self.rng.choice(choices)
        current = s.values.get(widget.id, (None, None))[1]
        if current is None and widget.proto.HasField("default"):
            current = widget.options[widget.proto.default]
        value = self.rng.choice([o for o in widget.options if o != current])
        self.timed("filter", await s.run(set_values={widget: value}), self.path())
        return True

    async def page_through(self) -> bool:
        s = self.page
        for widget in s.find("number_input"):
            if widget.form_id:
                continue
            proto = widget.proto
            current = s.values.get(widget.id, (None, proto.default if proto.HasField("default") else 1))[1]
            up = current + 1
            value = up if not proto.has_max or up <= proto.max else current - 1
            if proto.has_min and value < proto.min or value == current:
                continue
            self.timed("page", await s.run(set_values={widget: float(value)}), self.path())
            return True
        return False

    async def export(self) -> bool:
        if not self.page.downloads:
            return False
        button = self.rng.choice(self.page.downloads)
        t0 = time.perf_counter()
        try:
            data = await self.page.download(button)
        except urllib.error.HTTPError as exc:
            self.error("http", f"{exc.code} {exc.url}")
            return True
        if not data:
            self.error("export", f"{self.path()}: an empty file")
        self.timed("export", time.perf_counter() - t0, self.path())
        return True

    async def check_page(self) -> None:
        pass  # an exception element fails the run itself (ws_client.RunError)

    async def work(self, deadline: float) -> None:
        if self.role == "display":  # the wall's fragment ticks on its own timer
            start = self.page.fragment_ticks
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            self.log["wall_ticks"].append(self.page.fragment_ticks - start)
        else:
            await self.act_until(deadline)
        for failure in self.page.tick_failures:
            self.error("fragment tick", failure)

    async def _recover(self) -> None:
        pass

    async def close(self) -> None:
        await self.page.close()


def _users(store_url: str, sessions: int) -> list[tuple[str, str]]:
    """One user per session (``load_<role>_<n>``), roles taken in turn; MFA roles enrolled."""
    engine = make_engine(store_url)
    with engine.connect() as conn:
        manager = conn.execute(text("SELECT relationship_manager FROM customers WHERE relationship_manager IS NOT NULL "
                                    "GROUP BY relationship_manager ORDER BY count(*) DESC LIMIT 1")).scalar()
    out = []
    for i in range(sessions):
        role = ROLE_CYCLE[i % len(ROLE_CYCLE)]
        username = f"load_{role}_{i}"
        if users.get_user(engine, username) is None:
            users.add_user(engine, username, PASSWORD, [role])
            if role == "relationship_manager":
                scopes.set_scope(engine, username, portfolios=[manager])
            if users.mfa_required([role]):
                totp.enrol(engine, username)
        out.append((role, username))
    engine.dispose()
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core), since boot."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


async def _sample(pid: int, samples: list, stop: asyncio.Event, t0: float, cpu: list | None = None) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        now = round(time.monotonic() - t0, 1)
        samples.append((now, round(proc.memory_info().rss / 2**20, 1)))
        if cpu is not None:  # (t, the server's CPU seconds, the machine's busy CPU seconds)
            used = proc.cpu_times()
            cpu.append((now, used.user + used.system, _busy_seconds()))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except TimeoutError:
            pass


async def _progress(log: dict, samples: list, stop: asyncio.Event, t0: float) -> None:
    """A line every 30 s, so a long run shows it is alive."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 30)
        except TimeoutError:
            rss = samples[-1][1] if samples else None
            print(f"load: {time.monotonic() - t0:.0f} s, {len(log['actions'])} actions, "
                  f"{len(log['errors'])} errors, server RSS {rss} MiB", flush=True)


async def _run(base: str, store_url: str, pid: int, accounts: list[tuple[str, str]]) -> dict:
    from playwright.async_api import async_playwright

    log = {"actions": [], "errors": [], "wall_ticks": []}
    samples: list = []
    cpu: list = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    sampler = asyncio.create_task(_sample(pid, samples, stop, t0, cpu))
    reporter = asyncio.create_task(_progress(log, samples, stop, t0))
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"])
        sessions = [(Session if i < BROWSER_SESSIONS else WsUser)(i, role, name, base, store_url, log)
                    for i, (role, name) in enumerate(accounts)]

        async def start(s: Session) -> None:
            await asyncio.sleep(s.index * LOGIN_SPACING)
            await s.open(browser)
            try:
                await s.log_in()
            except Exception as exc:  # noqa: BLE001 - counted; the session then sits out
                s.error("login", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                if SHOTS and isinstance(s, Session):
                    await s.page.screenshot(path=str(Path(SHOTS) / f"login-{s.index}.png"))
                s.page = None

        await asyncio.gather(*(start(s) for s in sessions))
        logged_in = time.monotonic()
        deadline = logged_in + SECONDS
        await asyncio.gather(*(s.work(deadline) for s in sessions if s.page is not None))
        ended = time.monotonic()
        for s in sessions:
            if isinstance(s, WsUser) and s.page is not None:
                await s.close()
        await browser.close()
    stop.set()
    await sampler
    await reporter
    return {"log": log, "samples": samples, "cpu": cpu, "login_seconds": round(logged_in - t0, 1),
            "window": (round(logged_in - t0, 1), round(ended - t0, 1)),
            "sessions_working": sum(s.page is not None for s in sessions)}


def summarise(run: dict, sessions: int) -> dict:
    log, samples = run["log"], run["samples"]
    start, end = run["window"]
    page_actions = [a for a in log["actions"] if a["kind"] in ("navigate", "filter", "page")]
    pages = [a["seconds"] for a in page_actions]
    by_kind = {}
    for kind in ("login", "navigate", "filter", "page", "export"):
        values = [a["seconds"] for a in log["actions"] if a["kind"] == kind]
        by_kind[kind] = {"count": len(values), "p50_seconds": _percentile(values, 0.5),
                         "p95_seconds": _percentile(values, 0.95)}
    in_window = [mib for t, mib in samples if start <= t <= end] or [mib for _, mib in samples]
    third = max(1, len(in_window) // 3)
    errors_by_kind: dict[str, int] = {}
    for e in log["errors"]:
        errors_by_kind[e["kind"]] = errors_by_kind.get(e["kind"], 0) + 1
    return {
        "sessions": sessions, "sessions_working": run["sessions_working"],
        "clients": {"browser contexts": min(BROWSER_SESSIONS, sessions),
                    "websocket": max(0, sessions - BROWSER_SESSIONS)},
        "roles": {r: sum(1 for i in range(sessions) if ROLE_CYCLE[i % len(ROLE_CYCLE)] == r) for r in ROLE_CYCLE},
        "seconds": SECONDS, "kpi_refresh_seconds": KPI_SECONDS, "login_phase_seconds": run["login_seconds"],
        "errors": len(log["errors"]), "errors_by_kind": errors_by_kind, "error_samples": log["errors"][:20],
        "page_actions": len(pages), "page_p50_seconds": _percentile(pages, 0.5),
        "page_p95_seconds": _percentile(pages, 0.95), "by_action": by_kind,
        "page_by_client": {kind: {"count": len(v), "p50_seconds": _percentile(v, 0.5),
                                  "p95_seconds": _percentile(v, 0.95)}
                           for kind, v in (("browser", [a["seconds"] for a in page_actions if a["session"] < BROWSER_SESSIONS]),
                                           ("websocket", [a["seconds"] for a in page_actions if a["session"] >= BROWSER_SESSIONS]))},
        "exports": by_kind["export"]["count"], "wall_ticks_per_session": log["wall_ticks"],
        "server_rss_mib": {
            "after_logins": in_window[0], "end": in_window[-1], "max": max(in_window),
            "mean_first_third": round(statistics.mean(in_window[:third]), 1),
            "mean_middle_third": round(statistics.mean(in_window[third:2 * third]), 1),
            "mean_last_third": round(statistics.mean(in_window[-third:]), 1),
            "samples_every_seconds": SAMPLE_SECONDS, "samples": samples,
        },
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        **_cpu_shares(run.get("cpu") or [], start, end),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpu_shares(cpu: list, start: float, end: float) -> dict:
    """Where the machine's CPU went during the measured window: the server's share of the busy time,
    the rest being the load generator (the browsers) and anything else on the machine."""
    window = [c for c in cpu if start <= c[0] <= end]
    if len(window) < 2:
        return {}
    (t_a, server_a, busy_a), (t_b, server_b, busy_b) = window[0], window[-1]
    busy = busy_b - busy_a
    return {"cpu_window_seconds": round(t_b - t_a, 1), "server_cpu_seconds": round(server_b - server_a, 1),
            "machine_busy_cpu_seconds": round(busy, 1),
            "server_share_of_busy_cpu": round((server_b - server_a) / busy, 3) if busy > 0 else None}


def write_results(figures: dict) -> None:
    """Merge the figures into benchmarks/results.json under "load" (other keys are other benchmarks')."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["load"] = figures
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


# pytest-timeout's 600 s would end the run: the store, the logins and the measured time, with room.
@pytest.mark.timeout(int(SECONDS) + 1800)
def test_load(request, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    # LOAD_STORE_URL: a demo store built before (`python -m analytics demo` and a refresh), to
    # repeat a run without building the session's demo store again.
    demo_store_url = os.environ.get("LOAD_STORE_URL") or request.getfixturevalue("demo_store_url")
    accounts = _users(demo_store_url, SESSIONS)
    base, proc, log_path = start_server(demo_store_url, tmp_path,
                                        {**SECRET_ENV, "KPI_REFRESH_SECONDS": str(KPI_SECONDS)})
    try:
        run = asyncio.run(_run(base, demo_store_url, proc.pid, accounts))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    figures = summarise(run, SESSIONS)
    server_log = log_path.read_text(errors="replace")
    figures["server_log_tracebacks"] = server_log.count("Traceback")
    write_results(figures)
    shown = {k: v for k, v in figures.items() if k not in ("error_samples",)}
    shown["server_rss_mib"] = {k: v for k, v in figures["server_rss_mib"].items() if k != "samples"}
    print("load:", json.dumps(shown, indent=1))
    for e in figures["error_samples"]:
        print("  error:", e)

    rss = figures["server_rss_mib"]
    assert figures["sessions_working"] == SESSIONS, figures["errors_by_kind"]
    assert figures["page_actions"] > SESSIONS, figures["by_action"]
    assert not any(t == 0 for t in figures["wall_ticks_per_session"]), figures["wall_ticks_per_session"]
    assert figures["errors"] == 0 and figures["server_log_tracebacks"] == 0, figures["error_samples"]
    # Levels off: the last third of the run grows the server by at most 5 % over the middle third.
    assert rss["mean_last_third"] <= rss["mean_middle_third"] * 1.05, rss
