"""Helpers for the page-by-page AppTests: one logged-in session per role, the UI language, widgets
found by a loosely matched label, figures of metrics, KPI tiles and plotly charts, SQL over the
store, and the files behind deferred download buttons.

The tests that use this compare what a page shows with what the store says, so they read pages
by behaviour (a metric whose label mentions "churn rate", a bar chart whose values are the counts
by tier) rather than by widget index, which moves whenever a page is reworked.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import text
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from analytics import users
from analytics.store import make_engine
from tests.app import figures
from tests.app.conftest import APP, PASSWORD, TIMEOUT, login

LANG_OPTIONS = {"en": "English", "zh": "中文"}
ROOT = Path(APP).parent


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

def frame(engine, sql: str, **params) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def run_id(engine) -> int:
    return int(scalar(engine, "SELECT run_id FROM current_run WHERE id = 1"))


def run_metric(engine, name: str):
    """A named result of the current run, read straight from ``run_metrics``."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT value, text_value FROM run_metrics WHERE run_id = "
                                "(SELECT run_id FROM current_run WHERE id = 1) AND name = :n"), {"n": name}).first()
    if row is None:
        return None
    return row[1] if row[1] is not None else row[0]


AGE_BAND_SQL = """CASE
    WHEN c.birth_date IS NULL THEN 'unknown'
    WHEN :year - CAST(SUBSTR(CAST(c.birth_date AS TEXT), 1, 4) AS INTEGER) <= 29 THEN '<30'
    WHEN :year - CAST(SUBSTR(CAST(c.birth_date AS TEXT), 1, 4) AS INTEGER) <= 44 THEN '30-44'
    WHEN :year - CAST(SUBSTR(CAST(c.birth_date AS TEXT), 1, 4) AS INTEGER) <= 59 THEN '45-59'
    ELSE '60+' END"""


def raw_personal_values(engine) -> set[str]:
    """Every raw personal value of the store (as the leak test gathers them)."""
    from tests.app.test_leaks import _raw_values

    return _raw_values(engine)


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------

def page_exists(key: str) -> bool:
    """True when the page's script is built (a page may be listed before its script exists)."""
    return (ROOT / "app_pages" / f"{key}.py").exists()


class Pages:
    """Logged-in AppTest sessions on one store, one per role, reused across a module's tests.

    :meth:`open` puts a session on a page afresh: it goes through the role's landing page first,
    so the widgets of an earlier visit are dropped and the page starts from its defaults.
    """

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = prefix
        self.engine = make_engine(url)
        self._apps: dict[str, AppTest] = {}

    def username(self, role: str) -> str:
        return f"{self.prefix}_{role}"

    def app(self, role: str) -> AppTest:
        if role not in self._apps:
            username = self.username(role)
            if users.get_user(self.engine, username) is None:
                users.add_user(self.engine, username, PASSWORD, [role])
            at = login(AppTest.from_file(APP, default_timeout=TIMEOUT), username)
            assert not at.exception, at.exception
            self._apps[role] = at
        return self._apps[role]

    def open(self, role: str, page: str, lang: str = "en") -> AppTest:
        at = self.app(role)
        landing = "kpi_wall" if role == "display" else "overview"
        at.switch_page(f"app_pages/{landing}.py").run()
        set_lang(at, lang)
        if page != landing:
            at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, f"{role} on {page} ({lang}): {at.exception}"
        return at

    def close(self) -> None:
        set_bare_lang("en")
        self.engine.dispose()


def pages_fixture(prefix: str):
    """A module-scoped fixture of :class:`Pages` on the session's demo store."""

    @pytest.fixture(scope="module")
    def pages(demo_store_url):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CUSTOMER_STORE_URL", demo_store_url)
            kit = Pages(demo_store_url, prefix)
            yield kit
            kit.close()

    return pages


def set_bare_lang(lang: str) -> None:
    """AppTest evaluates a widget's ``format_func`` between runs, outside any script run, where
    ``st.session_state`` is Streamlit's bare-mode stand-in; a format_func that reads the language
    from it would label the options in English while the page drew them in Chinese, and AppTest
    then fails to find the selected option. Keep the stand-in on the session's language."""
    st.session_state["ui_lang"] = LANG_OPTIONS[lang]


def _lang_widget(at: AppTest):
    for kind in ("radio", "selectbox", "segmented_control"):
        try:
            return getattr(at, kind)(key="ui_lang")
        except (KeyError, AttributeError):
            continue
    raise AssertionError("no language switch (key 'ui_lang') in the app")


def set_lang(at: AppTest, lang: str) -> None:
    widget = _lang_widget(at)
    wanted = next(o for o in widget.options if LANG_OPTIONS[lang] in str(o))
    set_bare_lang(lang)
    if widget.value != wanted:
        widget.set_value(wanted).run()
        assert not at.exception, at.exception


# --------------------------------------------------------------------------------------------
# Reading a page
# --------------------------------------------------------------------------------------------

#: A branch picker's label, not a branch *city* picker's ("Branch city", "网点城市").
BRANCH = r"^(?!.*(city|城市)).*(branch|网点)"


def _match(pattern: str, label: str) -> bool:
    return re.search(pattern, label or "", flags=re.IGNORECASE) is not None


def metric(at: AppTest, pattern: str, position: int | None = None) -> str:
    """The value of the one metric whose label matches ``pattern`` (or, if none or several do, the
    one at ``position``)."""
    found = [m for m in at.metric if _match(pattern, m.label)]
    labels = [m.label for m in at.metric]
    if len(found) != 1 and position is not None and position < len(labels):
        return at.metric[position].value
    assert len(found) == 1, f"{len(found)} metrics match {pattern!r}; labels: {labels}"
    return found[0].value


def display_forms(value) -> set[str]:
    """How a domain value (a status, a tier) may be shown: as it is stored, or as any label the
    translation catalog (data/i18n.yaml) gives a key ending in it, in either language."""
    import yaml

    forms = {str(value), str(value).lower(), str(value).capitalize()}
    catalog = ROOT / "data" / "i18n.yaml"
    if catalog.exists():
        entries = yaml.safe_load(catalog.read_text(encoding="utf-8")) or {}
        for key, texts in entries.items():
            if str(key).rsplit(".", 1)[-1] == str(value) and isinstance(texts, dict):
                forms |= {str(t) for t in texts.values()}
    return forms


def widget(at: AppTest, pattern: str, kinds: Iterable[str] = ("selectbox", "multiselect", "radio")):
    """The first widget of ``kinds`` whose label matches ``pattern``."""
    seen = []
    for kind in kinds:
        for w in getattr(at, kind):
            if _match(pattern, w.label):
                return w
            seen.append(f"{kind}: {w.label}")
    raise AssertionError(f"no widget matches {pattern!r}; widgets: {seen}")


def choose(w, value) -> None:
    """Pick ``value`` in a selectbox or radio, or exactly ``[value]`` in a multiselect, and rerun."""
    if w.type == "multiselect":
        w.set_value([value]).run()
    else:
        w.set_value(value).run()


def texts(at: AppTest, *kinds: str) -> list[str]:
    out = []
    for kind in kinds or ("caption", "markdown", "info", "warning", "subheader", "text"):
        out.extend(str(e.value) for e in getattr(at, kind))
    return out


def text_with(at: AppTest, pattern: str, *kinds: str) -> str:
    found = [t for t in texts(at, *kinds) if _match(pattern, t)]
    assert found, f"no text matches {pattern!r}: {texts(at, *kinds)}"
    return found[0]


TILE = re.compile(r'kpi-label[^>]*>(?P<label>.*?)</div>\s*<div class="kpi-value[^"]*">(?P<value>.*?)</div>'
                  r'\s*(?:<div class="kpi-deltas">)?(?:<span class="kpi-delta[^"]*">(?P<delta>.*?)</span>)?', re.S)


def _plain(html_text: str | None) -> str | None:
    return None if html_text is None else re.sub(r"<[^>]+>", "", html_text).strip()


def tiles(at: AppTest) -> list[tuple[str, str, str | None]]:
    """The KPI wall's tiles as (label, value, change), in page order."""
    out = []
    for md in at.markdown:
        out.extend((_plain(m["label"]), _plain(m["value"]), _plain(m["delta"])) for m in TILE.finditer(md.value))
    if not out:  # tiles drawn as metrics
        out = [(m.label, m.value, m.proto.delta or None) for m in at.metric]
    return out


def tables(at: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe]


def arr(value) -> np.ndarray:
    """A plotly array from a figure spec: a list, or plotly's typed-array form (base64 bytes)."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = tuple(int(x) for x in shape.split(","))
        return out.reshape(shape) if shape else out
    return np.asarray(value, dtype=object)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def traces(at: AppTest, kind: str | None = None) -> list[dict]:
    """Every trace of every chart (``kind``: "bar", "heatmap", "indicator", ...)."""
    out = []
    for fig in charts(at):
        for trace in fig.get("data", []):
            if kind is None or trace.get("type", "scatter") == kind:
                out.append(trace)
    return out


def floats(values) -> list[float]:
    return [float(v) for v in np.ravel(arr(values)) if v is not None and not pd.isna(v)]


def same_values(shown: Iterable[float], expected: Iterable[float], *, tol: float = 1e-6) -> bool:
    """True if the two collections hold the same numbers, whatever their order."""
    a, b = sorted(float(v) for v in shown), sorted(float(v) for v in expected)
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def bar_with_values(at: AppTest, expected: Iterable[float], *, tol: float = 1e-6) -> dict:
    """The bar trace whose values are ``expected`` (in any order); fails listing what the bars hold."""
    expected = list(expected)
    bars = traces(at, "bar")
    for trace in bars:
        values = trace.get("x") if trace.get("orientation") == "h" else trace.get("y")
        if values is not None and same_values(floats(values), expected, tol=tol):
            return trace
    shown = [floats(t.get("x") if t.get("orientation") == "h" else t.get("y"))[:12] for t in bars]
    raise AssertionError(f"no bar chart shows {sorted(expected)[:12]}...; bars hold {shown}")


def assert_figure(shown: str, expected, what: str) -> None:
    figures.assert_shows(shown, expected, what)


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------

class Deferred:
    """Records the callables of deferred download buttons, so a test can "click" one: the browser's
    click asks the server to run the callable and sends back its bytes."""

    def __init__(self, monkeypatch):
        self.calls: dict[str, dict] = {}
        real = MediaFileManager.add_deferred
        recorder = self

        def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
            file_id = real(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)
            recorder.calls[file_id] = {"callable": data_callable, "file_name": file_name, "mimetype": mimetype}
            return file_id

        monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)

    def click(self, button) -> tuple[bytes, str]:
        """The file a download button hands over, and its name."""
        file_id = button.proto.deferred_file_id
        assert file_id, f"download button {button.proto.label!r} is not deferred"
        entry = self.calls[file_id]
        data = entry["callable"]()
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif hasattr(data, "read"):
            data = data.read()
        return bytes(data), entry["file_name"]


def download_buttons(at: AppTest) -> list:
    return list(at.get("download_button"))


def read_export(data: bytes) -> pd.DataFrame:
    """A CSV or Excel export read back as text cells (the format told by the file's bytes)."""
    if data[:2] == b"PK":
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        rows = list(book.active.iter_rows(values_only=True))
        header = [str(c) for c in rows[0]] if rows else []
        return pd.DataFrame([[None if c is None else str(c) for c in r] for r in rows[1:]], columns=header)
    return pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str, keep_default_na=False)


def export_text(data: bytes) -> str:
    if data[:2] == b"PK":
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        return "\n".join(str(c) for row in book.active.iter_rows(values_only=True) for c in row if c is not None)
    return data.decode("utf-8-sig")
