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

from analytics import formatting, i18n, refresh, runs, settings
from analytics.errors import AnalyticsError, StoreError, StoreNotInitialisedError
from analytics.store import check_store, init_schema, make_engine, redact_url, resolve_url

log = logging.getLogger("app")

PAGES_DIR = Path(__file__).resolve().parent


def page_script(key: str) -> Path:
    """The script of a page of the access matrix (it may not exist yet)."""
    return PAGES_DIR / f"{key}.py"


def how_to_create() -> str:
    return t("common.how_to_create")


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
        st.error(t("common.store_cannot_open", error=exc) + "\n\n" + how_to_create())
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(t("common.store_unreachable", url=redact_url(resolve_url())) + " " + how_to_create())
    st.stop()


def current_run_or_stop() -> int:
    """The published refresh run id; stops the page with a clear message when there is none."""
    try:
        eng = engine()
        check_store(eng)
        run_id = runs.current_run_id(eng)
    except StoreNotInitialisedError as exc:
        st.warning(f"{exc}\n\n{how_to_create()}")
        st.stop()
    except StoreError as exc:
        st.error(t("common.store_cannot_open", error=exc) + "\n\n" + how_to_create())
        st.stop()
    except SQLAlchemyError as exc:
        log.warning("store unreachable: %s", type(exc).__name__)
        st.error(t("common.store_unreachable", url=redact_url(resolve_url())) + " " + how_to_create())
        st.stop()
    if run_id is None:
        st.warning(t("common.no_completed_refresh"))
        st.stop()
    freshness_notices()
    return run_id


@st.cache_data(ttl=60, show_spinner=False)
def _freshness(url: str) -> refresh.Freshness:
    return refresh.freshness(_engine(url))


def freshness_notices() -> None:
    """Say so when the figures are old, a later refresh failed, or new data awaits a refresh."""
    try:
        fresh = _freshness(resolve_url())
    except SQLAlchemyError as exc:
        log.warning("freshness unreadable: %s", type(exc).__name__)
        return
    if fresh.failed_run:
        st.warning(t("common.later_refresh_failed", failed=fresh.failed_run["run_id"],
                     stage=fresh.failed_run.get("stage") or "?", shown=fresh.run_id))
    if fresh.stale:
        st.warning(t("common.figures_are_stale", finished=f"{fresh.finished_at:%Y-%m-%d %H:%M}",
                     hours=fmt_count(fresh.age_hours)))
    if fresh.loads_since:
        st.info(t("common.loads_since_refresh", n=fmt_count(fresh.loads_since)))


@st.cache_data(ttl=600, show_spinner=False)
def _run_metrics(url: str, run_id: int) -> dict:
    return runs.get_run_metrics(_engine(url), run_id)


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


def _columns_of(frame) -> list[str]:
    if hasattr(frame, "columns"):
        return [str(c) for c in frame.columns]
    if isinstance(frame, dict):
        return [str(c) for c in frame]
    if isinstance(frame, list) and frame and isinstance(frame[0], dict):
        return [str(c) for c in frame[0]]
    return []


def show_table(frame, **kwargs) -> None:
    """``st.dataframe`` without its toolbar (no unaudited CSV download), its column headers in the
    chosen language (``column.<name>`` in the catalog; exports keep the raw column names)."""
    st.markdown(_HIDE_TABLE_TOOLBAR, unsafe_allow_html=True)
    config = dict(kwargs.pop("column_config", None) or {})
    for col in _columns_of(frame):
        if col not in config and i18n.has(f"column.{col}"):
            config[col] = st.column_config.Column(t(f"column.{col}"))
    st.dataframe(frame, hide_index=True, column_config=config, **kwargs)


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
        st.info(t("common.export_limited", rows=fmt_count(len(frame)), limit=fmt_count(limit)))
        return
    c1, c2, _ = st.columns([1, 1, 6])
    c1.download_button(t("common.csv"), data=lambda: audited_export(engine, user, frame, stem, "csv", context),
                       file_name=f"{stem}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                       icon=":material/download:")
    c2.download_button(t("common.excel"), data=lambda: audited_export(engine, user, frame, stem, "xlsx", context),
                       file_name=f"{stem}.xlsx", key=f"{key}_xlsx", on_click="ignore",
                       mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       icon=":material/download:")


LANG_STATE = "ui_lang"  # the sidebar switch's value: a name of i18n.LANGUAGE_NAMES


def lang() -> str:
    """The UI language chosen in the sidebar: "en" or "zh"."""
    return "zh" if st.session_state.get(LANG_STATE) == i18n.LANGUAGE_NAMES["zh"] else "en"


def restore_language(engine, user: dict | None) -> None:
    """Once per login, put the user's remembered language in the switch (before it is drawn)."""
    if user is None or st.session_state.get("ci_lang_user") == user["username"]:
        return
    from analytics import users

    st.session_state["ci_lang_user"] = user["username"]
    try:
        saved = users.get_language(engine, user["username"])
    except SQLAlchemyError as exc:  # a preference is not worth failing the page for
        log.warning("language preference unreadable: %s", type(exc).__name__)
        return
    if saved:
        st.session_state[LANG_STATE] = i18n.LANGUAGE_NAMES[saved]


def _remember_language(engine, username: str) -> None:
    from analytics import users

    try:
        users.set_language(engine, username, lang())
    except (AnalyticsError, SQLAlchemyError) as exc:
        log.warning("language preference not saved: %s", type(exc).__name__)


def language_switch(engine, user: dict | None) -> None:
    """The English/中文 switch; a logged-in user's choice is remembered for their next login."""
    on_change, args = (_remember_language, (engine, user["username"])) if user else (None, ())
    st.radio(t("app.language"), list(i18n.LANGUAGE_NAMES.values()), key=LANG_STATE, horizontal=True,
             on_change=on_change, args=args)


def t(key: str, **fields) -> str:
    """The catalog text of ``key`` (``data/i18n.yaml``) in the chosen language, fields filled in."""
    return i18n.tr(key, lang(), **fields)


def page_title(key: str) -> str:
    """The name of a page of the access matrix in the chosen language."""
    return i18n.label("page", key, lang())


def fmt_count(value) -> str:
    """A count in the chosen language's style (``1,234,567`` / ``123.46万``)."""
    return formatting.count(value, lang())


def fmt_amount(value, digits: int = 0) -> str:
    """An amount in yuan in the chosen language's style (``CNY 1,234,567`` / ``¥123.46万``)."""
    return formatting.amount(value, lang(), digits=digits)


def fmt_rate(value, digits: int = 1) -> str:
    """A rate as a percentage (``12.3%``)."""
    return formatting.rate(value, lang(), digits=digits)


@st.cache_data(ttl=600, show_spinner=False)
def _dq_frames(url: str, run_id: int) -> dict:
    from analytics import quality

    eng = _engine(url)
    return {"results": quality.rule_results(eng, run_id), "scores": quality.scores(eng, run_id),
            "history": quality.score_history(eng), "change": quality.score_change(eng, run_id)}


def dq_frames(run_id: int) -> dict:
    """Data-quality aggregates of a run (no customer-level data: shared by every role)."""
    return _dq_frames(resolve_url(), run_id)
