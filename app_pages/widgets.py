"""Widgets the pages share: the segment filters, tables, audited exports and the language switch.

Text from the store or from a user that a widget shows as Markdown goes through
:func:`analytics.formatting.escape_md` (re-exported here as ``escape_md``).
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from analytics import (
    approvals,
    export_manifests,
    exports,
    i18n,
    metrics,
    scopes,
    settings,
    table_formats,
    users,
)
from analytics import segment_explorer as sx
from analytics.errors import AnalyticsError
from analytics.formatting import escape_md
from analytics.segmentation import VALUE_TIERS
from app_pages import loaders, session
from app_pages.session import fmt_count, lang, t

__all__ = ["metric", "CAMPAIGN_PAGE_ROWS", "EXPORT_MIME", "audited_export", "escape_md", "export_buttons", "export_request_form",
           "filtered_customers", "keep_until_fetched",
           "language_switch", "left_out_notice", "restore_language", "scope_notice", "segment_filters", "show_table"]

log = logging.getLogger("app")

# A page shows this many campaign rows at a time (paged in SQL).
CAMPAIGN_PAGE_ROWS = 200


# --------------------------------------------------------------------------------------------
# Segment filters
# --------------------------------------------------------------------------------------------

def segment_filters(cube: sx.Cube, key: str, split=None) -> sx.Filters:
    """Branch, city, age band and value-tier filters; returns a ``Filters`` that every chart follows.

    A city is the city of the customer's branch (``branches.city``). With ``split`` (a function
    returning the cube split by one risk or demographic attribute), one such filter more: the
    attribute, then its values (:func:`attribute_filter`).
    """
    with st.expander(t("explorer.filters"), expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        branches = c1.multiselect(t("explorer.branch"), list(cube.branches), key=f"{key}_b", placeholder=t("common.all"))
        cities = c2.multiselect(t("explorer.branch_city"), cube.cities(), key=f"{key}_c", placeholder=t("common.all"))
        ages = c3.multiselect(t("explorer.age_band"), list(sx.AGE_BANDS), key=f"{key}_a", placeholder=t("common.all"))
        tiers = c4.multiselect(t("explorer.value_tier"), list(VALUE_TIERS), key=f"{key}_t", placeholder=t("common.all"),
                               format_func=lambda v: i18n.label("tier", v, lang()))
        attribute, values = attribute_filter(key, split) if split is not None else ("", ())
    return sx.Filters(tuple(branches), tuple(cities), tuple(ages), tuple(tiers), attribute, tuple(values))


def attribute_filter(key: str, split) -> tuple[str, list[str]]:
    """One risk or demographic filter (:data:`analytics.segment_explorer.ATTRIBUTE_FILTERS`) and the
    values kept; ``split(attribute)`` gives the cube split by it, whose values are offered."""
    c1, c2 = st.columns([1, 3])
    attribute = c1.selectbox(t("seg_filter.attribute"), ["", *sx.ATTRIBUTE_FILTERS], key=f"{key}_attr",
                             format_func=lambda k: t(f"seg_attr.{k}") if k else t("seg_filter.no_attribute"),
                             help=t("seg_filter.attribute_help"))
    if not attribute:
        return "", []
    values = c2.multiselect(t(f"seg_attr.{attribute}"), split(attribute).attribute_values(),
                            key=f"{key}_attr_{attribute}", placeholder=t("common.all"),
                            format_func=lambda v: sx.attribute_label(attribute, v, lang()))
    return attribute, values


def filtered_customers(engine, user: dict, run_id: int, page: str) -> tuple[sx.Cube, sx.Filters]:
    """The run's cube and the user's filters, with the filter widgets drawn and the filter audited;
    stops the page with a message when there is nothing to show."""
    viewer = user["viewer"]
    try:
        cube = loaders.explorer_cube(run_id, viewer)
    except AnalyticsError as exc:
        session.show_error(exc)
        st.stop()
    scope_notice(viewer)
    if cube.empty:
        st.warning(t("explorer.this_run_has_no_segmentation"))
        st.stop()
    split = (lambda attribute: loaders.explorer_cube(run_id, viewer, attribute)) if page == "segments" else None
    filters = segment_filters(cube, page, split)
    if filters.by_attribute:
        cube = loaders.explorer_cube(run_id, viewer, filters.attribute)
    total = sx.headline(cube)["customers"]
    shown = sx.headline(cube, filters)["customers"] if filters.any else total
    if filters.any:
        session.audit_filter(engine, user, page, filters.as_params(), rows=shown)
    small = loaders.min_cell(viewer)
    if small and 0 < shown < small:
        # An aggregate-only role sees no figure of fewer than MIN_CELL_CUSTOMERS customers.
        st.info(t("explorer.too_few_customers", k=fmt_count(small)))
        st.stop()
    if small and filters.by_attribute and 0 < sx.headline(cube, filters.base)["customers"] - shown < small:
        # Nor the few a risk or demographic filter leaves out, as the page without it minus the page with it.
        st.info(t("seg_filter.too_few_left_out", k=fmt_count(small)))
        st.stop()
    st.caption(t("explorer.n_of_total_customers", n=fmt_count(shown), total=fmt_count(total)))
    if not shown:
        st.info(t("explorer.no_customer_matches_these_filters"))
        st.stop()
    return cube, filters


def scope_notice(viewer) -> None:
    """Say on screen when the figures are those of the user's scope, not the whole bank's."""
    if viewer.scope is None:
        return
    st.info(t("scope.figures_of_your_scope", scope=scopes.scope_words(viewer.scope, lang(), escape_md)),
            icon=":material/filter_alt:")


def left_out_notice(left_out: dict) -> None:
    """Say how many customers a contact list left out for want of marketing consent."""
    if left_out.get("consent"):
        st.caption(t("common.left_out_without_consent", n=fmt_count(left_out["consent"])))


# --------------------------------------------------------------------------------------------
# Tables and exports
# --------------------------------------------------------------------------------------------

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


_COLUMN_TYPES = {"number": st.column_config.NumberColumn, "date": st.column_config.DateColumn,
                 "datetime": st.column_config.DatetimeColumn}


def show_table(frame, **kwargs) -> None:
    """``st.dataframe`` without its toolbar (no unaudited CSV download), formatted like the charts:
    each column by its kind (:mod:`analytics.table_formats`: money, rates, counts, dates, keys in
    words, internal columns left out), its header in the chosen language (``column.<name>`` in
    the catalog). Only the screen copy is formatted; exports keep the raw frame."""
    st.markdown(_HIDE_TABLE_TOOLBAR, unsafe_allow_html=True)
    config = dict(kwargs.pop("column_config", None) or {})
    formats = {}
    if isinstance(frame, list) and frame and all(isinstance(row, dict) for row in frame):
        frame = pd.DataFrame(frame)
    if isinstance(frame, pd.DataFrame):
        frame = table_formats.display_frame(frame, lang())
        formats = table_formats.column_formats(frame, lang())
    for col in _columns_of(frame):
        if col in config:
            continue
        label = t(f"column.{col}") if i18n.has(f"column.{col}") else None
        if col in formats:
            kind, fmt = formats[col]
            config[col] = _COLUMN_TYPES[kind](label, format=fmt)
        elif label is not None:
            config[col] = st.column_config.Column(label)
    st.dataframe(frame, hide_index=True, column_config=config, **kwargs)


def audited_export(engine, user: dict, frame, stem: str, fmt: str, context: dict) -> bytes:
    """Serialise ``frame`` (already released for the user by the data layer) and audit the export.

    Called when the user clicks a download button (a deferred download), so the audit entry
    records an export that happened, with its row count and SHA-256. Every customer the file holds
    is recorded in an export manifest, which the entry names (not a list cut at some length).
    """
    export = (exports.to_excel if fmt == "xlsx" else exports.to_csv)(frame, stem)
    target = {"export": export.file_name, "rows": export.rows, "sha256": export.sha256}
    if "customer_id" in frame.columns:
        ids = frame["customer_id"].astype(str)
        target["manifest_id"] = export_manifests.record(engine, username=user["username"], file_sha256=export.sha256,
                                                        rows=export.rows, customer_ids=ids)
        target["customers"] = int(ids.nunique())
    session.audit_event(engine, "export", user, target=target, parameters=context)
    return export.data


def export_buttons(engine, user: dict, frame, stem: str, context: dict, key: str) -> None:
    """CSV and Excel download buttons for ``frame``; the file is built and audited on click. Above
    ``EXPORT_APPROVAL_ROWS`` rows, a form to request the export instead (four eyes)."""
    frame = table_formats.export_frame(frame, lang())  # stored reason codes in words
    limit = int(settings.get("EXPORT_MAX_ROWS"))
    if len(frame) > limit:
        st.info(t("common.export_limited", rows=fmt_count(len(frame)), limit=fmt_count(limit)))
        return
    if approvals.needs_approval(len(frame)):
        export_request_form(engine, user, frame, stem, context, key)
        return
    c1, c2, _ = st.columns([1, 1, 6])
    for column, fmt, label in ((c1, "csv", t("common.csv")), (c2, "xlsx", t("common.excel"))):
        file_name, mime = f"{stem}.{fmt}", EXPORT_MIME[fmt]
        column.download_button(
            label, file_name=file_name, mime=mime, key=f"{key}_{fmt}", on_click="ignore", icon=":material/download:",
            data=lambda fmt=fmt, file_name=file_name, mime=mime: keep_until_fetched(
                audited_export(engine, user, frame, stem, fmt, context), mime, file_name, user["username"], fmt))


EXPORT_MIME = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def keep_until_fetched(data: bytes, mime: str, file_name: str, username: str, fmt: str, manager=None) -> bytes:
    """Keep a deferred download's file on the server until the browser has fetched it.

    Streamlit stores the bytes a deferred download's callable returns under a content-derived id
    that no session references, and every session's script run ends by collecting unreferenced
    downloads: the second collection deletes the file. With 20 sessions on two cores (the load
    test), two other sessions' runs ended before the browser's GET and the export failed with a
    404. Registering the same bytes (same id: data, type and name) under one slot per user and
    format keeps the file until that user's next export in that format replaces it.
    """
    if manager is None:
        from streamlit import runtime

        if not runtime.exists():
            return data
        manager = runtime.get_instance().media_file_mgr
    manager.add(data, mime, f"export:{username}:{fmt}", file_name=file_name, is_for_static_download=True)
    return data


def export_request_form(engine, user: dict, frame, stem: str, context: dict, key: str) -> None:
    """A large export becomes a request: the file is built now and kept with it; a compliance
    officer other than the requester approves it, then the requester downloads it once from the
    Approvals page."""
    st.info(t("approvals.export_needs_approval", rows=fmt_count(len(frame)),
              limit=fmt_count(int(settings.get("EXPORT_APPROVAL_ROWS")))))
    formats = {t("common.csv"): "csv", t("common.excel"): "xlsx"}
    with st.form(f"{key}_approval", clear_on_submit=True):
        fmt = st.radio(t("approvals.format"), list(formats), horizontal=True, key=f"{key}_approval_fmt")
        reason = st.text_area(t("approvals.reason"), max_chars=500, key=f"{key}_approval_reason")
        go = st.form_submit_button(t("approvals.request_export"))
    if not go:
        return
    try:
        request_id = approvals.request_export(engine, frame, viewer=user["viewer"], stem=stem,
                                              fmt=formats.get(fmt, "csv"), context=context, reason=reason,
                                              session_id=user.get("session_id"),
                                              client_address=session.client_address())
    except AnalyticsError as exc:
        session.show_error(exc)
    else:
        st.success(t("approvals.export_requested", id=request_id))


# --------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------

def restore_language(engine, user: dict | None) -> None:
    """Once per login, put the user's remembered language in the switch (before it is drawn)."""
    if user is None or st.session_state.get("ci_lang_user") == user["username"]:
        return
    st.session_state["ci_lang_user"] = user["username"]
    try:
        saved = users.get_language(engine, user["username"])
    except SQLAlchemyError as exc:  # a preference is not worth failing the page for
        log.warning("language preference unreadable: %s", type(exc).__name__)
        return
    if saved:
        st.session_state[session.LANG_STATE] = i18n.LANGUAGE_NAMES[saved]


def _remember_language(engine, username: str) -> None:
    try:
        users.set_language(engine, username, lang())
    except (AnalyticsError, SQLAlchemyError) as exc:
        log.warning("language preference not saved: %s", type(exc).__name__)


def language_switch(engine, user: dict | None) -> None:
    """The English/中文 switch; a logged-in user's choice is remembered for their next login."""
    on_change, args = (_remember_language, (engine, user["username"])) if user else (None, ())
    st.radio(t("app.language"), list(i18n.LANGUAGE_NAMES.values()), key=session.LANG_STATE, horizontal=True,
             on_change=on_change, args=args)


def metric(col, key: str, value: str, **fields) -> None:
    """A headline figure of the metric catalog (:mod:`analytics.metrics`): its one label, the value
    given, and its definition as the help text. ``fields`` fill the label and definition."""
    lang = session.lang()
    col.metric(metrics.label(key, lang, **fields), value, help=metrics.definition(key, lang, **fields))
