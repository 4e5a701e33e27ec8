"""A Streamlit session driven over its websocket, without a browser (the load test's light client).

A browser context renders every chart and table it receives: twenty of them on two cores took three
quarters of the machine's CPU in the load test, and measured Chromium's queue rather than the
server. This client speaks the app's own protocol instead (Streamlit's ``BackMsg``/``ForwardMsg``
protobufs on ``/_stcore/stream``), as the frontend does:

- a run is asked for with ``rerun_script`` (the page's script hash, the widget states, the fragment
  for a fragment's tick) and ends with ``script_finished``;
- the widgets of the last finished run are what it can use: it keeps their values as the frontend
  does and sends them with every run; a button is a one-shot trigger;
- a deferred download is a backend operation (``deferred_file``) answered with the file's URL, then
  fetched over HTTP;
- ``auto_rerun`` (the KPI wall's ``run_every`` fragment) is answered with a fragment run at its
  interval, as the frontend's timer does.

Nothing here knows the app's pages: the load test finds widgets by label.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.request

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

FINISHED = ForwardMsg.ScriptFinishedStatus
# Widget kinds and the WidgetState field their value travels in (Streamlit 1.67).
VALUE_FIELD = {"text_input": "string_value", "text_area": "string_value", "radio": "string_value",
               "selectbox": "string_value", "number_input": "double_value", "checkbox": "bool_value",
               "multiselect": "string_array_value"}


class RunError(RuntimeError):
    """The app's run showed an exception, or the server said the page does not exist."""


class Widget:
    def __init__(self, kind: str, proto):
        self.kind, self.proto = kind, proto
        self.id = proto.id
        self.label = getattr(proto, "label", "")
        self.form_id = getattr(proto, "form_id", "")

    @property
    def options(self) -> list[str]:
        return list(getattr(self.proto, "options", []))

    def __repr__(self) -> str:
        return f"<{self.kind} {self.label!r}>"


class WsSession:
    """One websocket session of the app at ``base`` (``http://host:port``)."""

    def __init__(self, base: str, timeout: float = 120.0):
        self.base = base
        self.timeout = timeout
        self.ws = None
        self.pages: dict[str, str] = {}  # url path ("" for the default page) -> page script hash
        self.page_hash = ""
        self.widgets: dict[str, Widget] = {}  # id -> widget, from the last finished full run
        self.values: dict[str, tuple[str, object]] = {}  # id -> (field, value) as the frontend keeps them
        self.downloads: list[Widget] = []
        self.exceptions: list[str] = []
        self.fragment_ticks = 0
        self.tick_failures: list[str] = []  # a fragment tick that failed (it runs on its own timer)
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._reader = None
        self._auto: dict[str, asyncio.Task] = {}
        self._requests = itertools.count(1)
        self._run_lock = asyncio.Lock()
        self._session_id = ""

    # --- connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        url = self.base.replace("http://", "ws://") + "/_stcore/stream"
        self.ws = await websockets.connect(url, subprotocols=["streamlit"], max_size=None,
                                           open_timeout=self.timeout, ping_interval=None)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        for task in self._auto.values():
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        async for data in self.ws:
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self._session_id = msg.new_session.initialize.session_id
            elif kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
                self.page_hash = msg.navigation.page_script_hash or self.page_hash
            elif kind == "auto_rerun":
                self._schedule(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
            elif kind == "stop_auto_rerun":
                self._unschedule()
            await self._inbox.put(msg)

    def _unschedule(self) -> None:
        for task in self._auto.values():
            task.cancel()
        self._auto.clear()

    def _schedule(self, fragment_id: str, interval: float) -> None:
        if fragment_id in self._auto:
            return

        async def tick():
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.run(fragment_id=fragment_id, auto=True)
                except (RunError, TimeoutError) as exc:
                    self.tick_failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.fragment_ticks += 1

        self._auto[fragment_id] = asyncio.create_task(tick())

    # --- runs ------------------------------------------------------------------------------------

    async def run(self, *, page: str | None = None, set_values: dict | None = None, trigger: Widget | None = None,
                  fragment_id: str = "", auto: bool = False) -> float:
        """Ask for a run and wait for it to finish; the seconds from the request to ``script_finished``.

        ``page``: a url path to open (its script hash from the navigation message); ``set_values``:
        widget -> new value; ``trigger``: a button to press. A fragment's run keeps the full run's
        widgets and only counts as done.
        """
        async with self._run_lock:
            if not fragment_id:
                # A full run draws the page again: its fragments ask for their timers anew (the
                # frontend, too, drops a page's timers when it leaves the page).
                self._unschedule()
            if page is not None:
                if page not in self.pages:
                    raise RunError(f"no page {page!r} in the navigation ({sorted(self.pages)})")
                self.page_hash = self.pages[page]
            for widget, value in (set_values or {}).items():
                self.values[widget.id] = (VALUE_FIELD[widget.kind], value)
            back = BackMsg()
            state = back.rerun_script
            state.query_string = ""
            state.page_script_hash = self.page_hash
            if fragment_id:
                state.fragment_id = fragment_id
                state.is_auto_rerun = auto
            for wid, (field, value) in self.values.items():
                w = state.widget_states.widgets.add()
                w.id = wid
                if field == "string_array_value":
                    w.string_array_value.data.extend(value)
                else:
                    setattr(w, field, value)
            if trigger is not None:
                w = state.widget_states.widgets.add()
                w.id = trigger.id
                w.trigger_value = True
            while not self._inbox.empty():  # what came between runs (nothing this run waits for)
                self._inbox.get_nowait()
            t0 = time.perf_counter()
            await self.ws.send(back.SerializeToString())
            elements: dict[tuple, Widget] = {}
            exceptions: list[str] = []
            while True:
                msg = await asyncio.wait_for(self._inbox.get(), self.timeout)
                kind = msg.WhichOneof("type")
                if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    element = msg.delta.new_element
                    ek = element.WhichOneof("type")
                    if ek == "exception":
                        exceptions.append(element.exception.message[:200] or element.exception.type)
                    elif hasattr(getattr(element, ek), "id") and ek != "component_instance":
                        elements[tuple(msg.metadata.delta_path)] = Widget(ek, getattr(element, ek))
                elif kind == "page_not_found":
                    raise RunError(f"page not found: {msg.page_not_found.page_name!r}")
                elif kind == "script_finished":
                    status = msg.script_finished
                    if status == FINISHED.FINISHED_EARLY_FOR_RERUN:
                        elements, exceptions = {}, []  # a rerun the app asked for (st.rerun): its end counts
                        continue
                    if (status == FINISHED.FINISHED_FRAGMENT_RUN_SUCCESSFULLY) != bool(fragment_id):
                        continue  # the end of a fragment's tick asked before this run
                    break
            seconds = time.perf_counter() - t0
            if exceptions:
                self.exceptions.extend(exceptions)
                raise RunError("the page shows an exception: " + exceptions[0])
            if not fragment_id:
                self.widgets = {w.id: w for w in elements.values()}
                # The frontend drops the state of widgets the run did not draw.
                self.values = {k: v for k, v in self.values.items() if k in self.widgets}
                self.downloads = [w for w in elements.values() if w.kind == "download_button"]
            return seconds

    # --- logging in ------------------------------------------------------------------------------

    async def log_in(self, username: str, password: str, code=None) -> None:
        """Fill in and submit the login form; ``code()`` answers the two-factor step when it comes.
        Raises ``RunError`` when no "Log out" button follows (the login did not take)."""
        await self.run()
        await self.run(set_values={self.one("text_input", "Username"): username,
                                   self.one("text_input", "Password"): password},
                       trigger=self.one("button", "Log in"))
        codes = [w for w in self.find("text_input") if w.label.startswith("Six-digit code")]
        if codes:
            if code is None:
                raise RunError(f"{username} is asked for a two-factor code and none was given")
            await self.run(set_values={codes[0]: code()}, trigger=self.one("button", "Verify"))
        if not self.find("button", "Log out"):
            raise RunError(f"not logged in: {sorted((w.kind, w.label) for w in self.widgets.values())}")

    # --- finding things --------------------------------------------------------------------------

    def find(self, kind: str, label: str | None = None) -> list[Widget]:
        return [w for w in self.widgets.values()
                if w.kind == kind and (label is None or w.label == label)]

    def one(self, kind: str, label: str) -> Widget:
        found = self.find(kind, label)
        if not found:
            raise RunError(f"no {kind} labelled {label!r} on the page "
                           f"(widgets: {sorted((w.kind, w.label) for w in self.widgets.values())})")
        return found[0]

    # --- downloads -------------------------------------------------------------------------------

    async def download(self, button: Widget) -> bytes:
        """Press a deferred download button as the frontend does: ask the server to build the
        file, then fetch it from the URL it answers with. Raises on an error answer or HTTP error."""
        return await self.fetch(await self.request_file(button))

    async def fetch(self, url: str) -> bytes:
        return await asyncio.to_thread(_fetch, url, self.timeout)

    async def request_file(self, button: Widget) -> str:
        """Ask the server to build a deferred download's file; the URL it answers with."""
        file_id = button.proto.deferred_file_id
        if not file_id:
            raise RunError(f"download button {button.label!r} is not deferred")
        back = BackMsg()
        request = back.backend_operation_request
        request.request_id = f"load-{next(self._requests)}"
        request.session_id = self._session_id
        request.deferred_file.file_id = file_id
        async with self._run_lock:
            await self.ws.send(back.SerializeToString())
            while True:
                msg = await asyncio.wait_for(self._inbox.get(), self.timeout)
                if msg.WhichOneof("type") == "backend_operation_response" and \
                        msg.backend_operation_response.request_id == request.request_id:
                    break
        response = msg.backend_operation_response
        if response.error_msg:
            raise RunError(f"download refused: {response.error_msg}")
        return self.base + response.deferred_file.url


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - the test's loopback server
        return r.read()
