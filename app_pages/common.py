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


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _explorer(url: str, run_id: int, year: int):
    from analytics import segment_explorer

    return segment_explorer.explorer_frame(_engine(url), run_id, year)


def explorer_frame(run_id: int):
    """Per-customer segmentation results of a run, without personal fields (see segment_explorer)."""
    m = run_metrics(run_id)
    year = int(str(m.get("as_of_month") or "2026")[:4])
    return _explorer(resolve_url(), run_id, year)


def segment_filters(frame, key: str):
    """Branch, city, age band and value-tier filters; returns a ``Filters`` that every chart follows."""
    from analytics import segment_explorer

    with st.expander(t("Filters", "筛选"), expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        branches = c1.multiselect(t("Branch", "网点"), sorted(frame["branch_id"].dropna().unique()), key=f"{key}_b")
        cities = c2.multiselect(t("City", "城市"), sorted(frame["city"].dropna().unique()), key=f"{key}_c")
        ages = c3.multiselect(t("Age band", "年龄段"), list(segment_explorer.AGE_BANDS), key=f"{key}_a")
        tiers = c4.multiselect(t("Value tier", "价值层级"), ["mass", "affluent", "wealth", "private"],
                               key=f"{key}_t")
    return segment_explorer.Filters(tuple(branches), tuple(cities), tuple(ages), tuple(tiers))


def filtered_customers(engine, user: dict, run_id: int, page: str):
    """The run's per-customer segmentation frame and its filtered view, with the filter widgets drawn
    and the filter audited; stops the page with a message when there is nothing to show."""
    from analytics import segment_explorer
    from app_pages import auth

    try:
        frame = explorer_frame(run_id)
    except AnalyticsError as exc:
        st.error(str(exc))
        st.stop()
    if frame.empty:
        st.warning(t("This run has no segmentation results. Run a refresh.", "本次刷新没有分群结果，请运行刷新。"))
        st.stop()
    filters = segment_filters(frame, page)
    view = segment_explorer.apply_filters(frame, filters)
    if any(filters.as_params().values()):
        auth.audit_event(engine, "filter", user, target={"page": page, "rows": len(view)},
                         parameters=filters.as_params())
    st.caption(t(f"{len(view):,} of {len(frame):,} customers", f"{len(frame):,} 位客户中的 {len(view):,} 位"))
    if view.empty:
        st.info(t("No customer matches these filters.", "没有符合筛选条件的客户。"))
        st.stop()
    return frame, view, filters
