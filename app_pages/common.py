"""Shared helpers for the page scripts: the engine, cached loaders keyed by refresh id, and the
one place that turns a domain error into a message for the user.

Every cached loader takes the refresh run id (so a new run is never hidden by a stale cache) and,
for customer-level data, the user's access level (so a cache shared by all users never hands an
unmasked frame to a masked role).
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from analytics import refresh, settings
from analytics.errors import AnalyticsError, StoreError, StoreNotInitialisedError
from analytics.store import check_store, init_schema, make_engine, redact_url, resolve_url

log = logging.getLogger("app")

PAGES_DIR = Path(__file__).resolve().parent


def page_script(key: str) -> Path:
    """The script of a page of the access matrix (it may not exist yet)."""
    return PAGES_DIR / f"{key}.py"


HOW_TO_CREATE = ("Build the demo store with `make run` (or `python -m analytics demo` then "
                 "`python -m analytics refresh`), or point `CUSTOMER_STORE_URL` at your bank's store.")


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    engine = make_engine(url)
    # The app's own tables (users, sessions, audit log, runs) must exist before the first login.
    init_schema(engine)
    return engine


def engine():
    """The store engine, shared by all sessions (it holds no user data)."""
    return _engine(resolve_url())


def engine_or_stop():
    """The store engine, or a clear message (and stop) when the store cannot be opened."""
    try:
        return engine()
    except StoreError as exc:
        st.error(f"The customer store cannot be opened: {exc}\n\n{HOW_TO_CREATE}")
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(f"The customer store at {redact_url(resolve_url())} cannot be reached. {HOW_TO_CREATE}")
    st.stop()


def current_run_or_stop() -> int:
    """The published refresh run id; stops the page with a clear message when there is none."""
    try:
        eng = engine()
        check_store(eng)
        run_id = refresh.current_run_id(eng)
    except StoreNotInitialisedError as exc:
        st.warning(f"{exc}\n\n{HOW_TO_CREATE}")
        st.stop()
    except StoreError as exc:
        st.error(f"The customer store cannot be opened: {exc}\n\n{HOW_TO_CREATE}")
        st.stop()
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(f"The customer store at {redact_url(resolve_url())} cannot be reached. {HOW_TO_CREATE}")
        st.stop()
    if run_id is None:
        st.warning("The store has data but no completed refresh yet. Run `python -m analytics refresh` "
                   "(or start one from the Admin page).")
        st.stop()
    return run_id


@st.cache_data(ttl=600, show_spinner=False)
def _run_metrics(url: str, run_id: int) -> dict:
    return refresh.get_run_metrics(_engine(url), run_id)


def run_metrics(run_id: int) -> dict:
    """Headline aggregates of a run (no customer-level data, so one cache entry serves every role)."""
    return _run_metrics(resolve_url(), run_id)


@st.cache_data(ttl=60, show_spinner=False)
def _run_record(url: str, run_id: int) -> dict:
    info = refresh.status(_engine(url), limit=50)
    return next((r for r in info["runs"] if r["run_id"] == run_id), {})


def run_record(run_id: int) -> dict:
    """The refresh_runs row of a run, as plain data."""
    return _run_record(resolve_url(), run_id)


def show_error(exc: AnalyticsError) -> None:
    """Render a domain error as a message the user can act on (never a traceback)."""
    st.error(str(exc))


# st.dataframe's toolbar carries its own CSV download, which would skip the audited, masked export.
# Hide the toolbar on every table; exports go through the audited download buttons.
_HIDE_TABLE_TOOLBAR = "<style>[data-testid='stElementToolbar'] {display: none !important;}</style>"


def show_table(frame, **kwargs) -> None:
    """``st.dataframe`` without its toolbar (no unaudited CSV download)."""
    st.markdown(_HIDE_TABLE_TOOLBAR, unsafe_allow_html=True)
    st.dataframe(frame, hide_index=True, **kwargs)


def audited_export(engine, user: dict, frame, stem: str, fmt: str, context: dict) -> bytes:
    """Serialise ``frame`` (already masked for the user's role) and audit the export.

    Called when the user clicks a download button (a deferred download), so the audit entry
    records an export that happened, with its row count and SHA-256.
    """
    from analytics import exports
    from app_pages import auth

    export = (exports.to_excel if fmt == "xlsx" else exports.to_csv)(frame, stem)
    ids = frame["customer_id"].astype(str).tolist() if "customer_id" in frame.columns else None
    target = {"export": export.file_name, "rows": export.rows, "sha256": export.sha256}
    if ids is not None:
        target["customer_ids"] = ids[:1000]  # the full list can be re-derived from the hash's file
    auth.audit_event(engine, "export", user, target=target, parameters=context)
    return export.data


def export_buttons(engine, user: dict, frame, stem: str, context: dict, key: str) -> None:
    """CSV and Excel download buttons for ``frame``; the file is built and audited on click."""
    limit = int(settings.get("EXPORT_MAX_ROWS"))
    if len(frame) > limit:
        st.info(f"{len(frame):,} rows: exports are limited to {limit:,}. Narrow the filters to export.")
        return
    c1, c2, _ = st.columns([1, 1, 6])
    c1.download_button("CSV", data=lambda: audited_export(engine, user, frame, stem, "csv", context),
                       file_name=f"{stem}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                       icon=":material/download:")
    c2.download_button("Excel", data=lambda: audited_export(engine, user, frame, stem, "xlsx", context),
                       file_name=f"{stem}.xlsx", key=f"{key}_xlsx", on_click="ignore",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       icon=":material/download:")


def lang() -> str:
    """The UI language chosen in the sidebar: "en" or "zh"."""
    return "zh" if st.session_state.get("ui_lang") == "中文" else "en"


def t(english: str, chinese: str) -> str:
    """Pick the label for the chosen language."""
    return chinese if lang() == "zh" else english


@st.cache_data(ttl=600, show_spinner=False)
def _dq_frames(url: str, run_id: int) -> dict:
    from analytics import quality

    eng = _engine(url)
    return {"results": quality.rule_results(eng, run_id), "scores": quality.scores(eng, run_id),
            "history": quality.score_history(eng), "change": quality.score_change(eng, run_id)}


def dq_frames(run_id: int) -> dict:
    """Data-quality aggregates of a run (no customer-level data: shared by every role)."""
    return _dq_frames(resolve_url(), run_id)
