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

from analytics import refresh
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
