"""Page-side helpers of the Segments, Lifecycle and Churn pages: the run's segment cube, the filter
widgets, and cached SQL customer lists. No page here loads all customers.

The cube (:func:`analytics.segment_explorer.read_cube`) holds aggregates only, so one cached copy
serves every role. Customer lists (the campaign list, the top customers) are limited in SQL and
cached with the user's roles in the key, masked before they are cached.
"""

from __future__ import annotations

import streamlit as st

from analytics import access, i18n, tags
from analytics import segment_explorer as sx
from analytics.errors import AnalyticsError
from analytics.segmentation import VALUE_TIERS
from analytics.store import resolve_url
from app_pages import common

# A page shows this many campaign rows at a time (paged in SQL).
CAMPAIGN_PAGE_ROWS = 200


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cube(url: str, run_id: int) -> sx.Cube:
    return sx.read_cube(common._engine(url), run_id)


def explorer_cube(run_id: int) -> sx.Cube:
    """The run's segment cube: counts and totals by filter cell, no customer rows."""
    return _cube(resolve_url(), run_id)


def as_of_year(run_id: int) -> int:
    """The year the run describes (age bands are whole years at it)."""
    m = common.run_metrics(run_id)
    return int(str(m.get("as_of_month") or "2026")[:4])


def segment_filters(cube: sx.Cube, key: str) -> sx.Filters:
    """Branch, city, age band and value-tier filters; returns a ``Filters`` that every chart follows.

    A city is the city of the customer's branch (``branches.city``).
    """
    t = common.t
    with st.expander(t("explorer.filters"), expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        branches = c1.multiselect(t("explorer.branch"), list(cube.branches), key=f"{key}_b", placeholder=t("common.all"))
        cities = c2.multiselect(t("explorer.branch_city"), cube.cities(), key=f"{key}_c", placeholder=t("common.all"))
        ages = c3.multiselect(t("explorer.age_band"), list(sx.AGE_BANDS), key=f"{key}_a", placeholder=t("common.all"))
        tiers = c4.multiselect(t("explorer.value_tier"), list(VALUE_TIERS), key=f"{key}_t", placeholder=t("common.all"),
                               format_func=lambda v: i18n.label("tier", v, common.lang()))
    return sx.Filters(tuple(branches), tuple(cities), tuple(ages), tuple(tiers))


def filtered_customers(engine, user: dict, run_id: int, page: str) -> tuple[sx.Cube, sx.Filters]:
    """The run's cube and the user's filters, with the filter widgets drawn and the filter audited;
    stops the page with a message when there is nothing to show."""
    from app_pages import auth

    try:
        cube = explorer_cube(run_id)
    except AnalyticsError as exc:
        st.error(str(exc))
        st.stop()
    if cube.empty:
        st.warning(common.t("explorer.this_run_has_no_segmentation"))
        st.stop()
    filters = segment_filters(cube, page)
    total = sx.headline(cube)["customers"]
    shown = sx.headline(cube, filters)["customers"] if filters.any else total
    if filters.any:
        auth.audit_filter(engine, user, page, filters.as_params(), rows=shown)
    st.caption(common.t("explorer.n_of_total_customers", n=common.fmt_count(shown), total=common.fmt_count(total)))
    if not shown:
        st.info(common.t("explorer.no_customer_matches_these_filters"))
        st.stop()
    return cube, filters


@st.cache_data(ttl=600, show_spinner=False, max_entries=200)
def _tag_counts(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...],
                year: int) -> dict:
    return sx.tag_selection_counts(common._engine(url), run_id, filters, expression, names, as_of_year=year)


def tag_selection(run_id: int, filters: sx.Filters, expression: str, names) -> dict:
    """How many filtered customers a tag expression selects (and how many gave consent), in SQL.

    Raises :class:`analytics.tags.TagRuleError` for an invalid expression.
    """
    return _tag_counts(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _campaign(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...], year: int,
              limit: int, offset: int, roles: tuple[str, ...]):
    frame = sx.campaign_page(common._engine(url), run_id, filters, expression, names, as_of_year=year,
                             limit=limit, offset=offset)
    return access.mask_frame(frame, roles)


def campaign(run_id: int, filters: sx.Filters, expression: str, names, roles, *, limit: int, offset: int = 0):
    """Rows ``offset`` .. ``offset + limit`` of the campaign list (consenting selected customers,
    highest 3-year CLV first), masked for ``roles``."""
    return _campaign(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id), int(limit),
                     int(offset), tuple(roles))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _top(url: str, run_id: int, filters: sx.Filters, roles: tuple[str, ...], by: str, year: int):
    return sx.top_customers(common._engine(url), run_id, filters, roles, as_of_year=year, n=50, by=by)


def top_customers(run_id: int, filters: sx.Filters, roles, by: str):
    """The 50 filtered customers with the highest ``by``, masked for ``roles`` (SQL, limited)."""
    return _top(resolve_url(), run_id, filters, tuple(roles), by, as_of_year(run_id))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _early_warning(url: str, run_id: int, params: tuple, roles: tuple[str, ...]):
    from analytics import churn

    frame = churn.early_warning(common._engine(url), run_id, limit=1000, **dict(params))
    return access.mask_frame(frame, roles)


def early_warning(run_id: int, params: dict, roles):
    """The run's early-warning list (at most 1,000 rows, in SQL) for ``params``, masked for ``roles``."""
    return _early_warning(resolve_url(), run_id, tuple(sorted(params.items())), tuple(roles))


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _churn_card(url: str, run_id: int) -> dict:
    from analytics import churn

    engine = common._engine(url)
    return {"metrics": churn.read_churn_metrics(engine, run_id), "lift": churn.read_churn_lift(engine, run_id),
            "calibration": churn.read_churn_calibration(engine, run_id),
            "importance": churn.read_churn_importance(engine, run_id)}


def churn_card(run_id: int) -> dict:
    """The run's churn metrics and model card (hold-out lift, calibration, importance): aggregates."""
    return _churn_card(resolve_url(), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=10)
def _churn_rates(url: str, run_id: int, dimension: str):
    from analytics import churn

    return churn.read_churn_rates(common._engine(url), dimension, run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_profiles(url: str, run_id: int):
    from analytics import segmentation

    return segmentation.read_cluster_profiles(common._engine(url), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cohorts(url: str, run_id: int):
    from analytics import segmentation

    return segmentation.read_cohort_retention(common._engine(url), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=4)
def _tag_names(path: str, modified: float) -> list[str]:
    return [rule.name for rule in tags.load_tag_rules(path)]


def tag_names() -> list[str]:
    """The names of the configured tags, in file order (the file is parsed again when it changes)."""
    path = tags.tags_file()
    try:
        modified = path.stat().st_mtime
    except OSError:
        modified = -1.0  # load_tag_rules says what is wrong
    return _tag_names(str(path), modified)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _choices(url: str, run_id: int) -> dict:
    return sx.filter_choices(common._engine(url), run_id)


def filter_choices(run_id: int) -> dict[str, list[str]]:
    """Branches, RFM segments, relationship managers and tiers to filter customer lists by."""
    return _choices(resolve_url(), run_id)


# Figures are aggregates (no customer rows), so one cached copy per run, filter, measure and language
# serves every role; a warm page then spends its time drawing, not building, its charts. They are
# cached as resources (the same object, not a pickled copy): unpickling a plotly figure re-validates
# every property and costs more than drawing it. Nothing mutates a figure after it is built.
def _cube_figure(cube: sx.Cube, filters: sx.Filters, kind: str, metric: str, lang: str, horizon: int):
    from analytics import charts_segments as cs

    if kind == "rfm_heatmap":
        return cs.rfm_heatmap(sx.summary(cube, "rfm_rf", filters), lang=lang)
    if kind == "clv_histogram":
        return cs.clv_histogram(sx.clv_bands(cube, horizon, filters), horizon, lang=lang)
    if kind == "lifecycle_bar":
        return cs.lifecycle_bar(sx.summary(cube, "lifecycle_stage", filters), metric, lang=lang)
    if kind == "value_tier_bar":
        return cs.value_tier_bar(sx.summary(cube, "value_tier", filters), metric, lang=lang)
    if kind == "segment_bar":
        return cs.segment_bar(sx.summary(cube, "rfm_segment", filters), metric, lang=lang)
    if kind == "cluster_bar":
        return cs.segment_bar(sx.summary(cube, "cluster_name", filters), metric, lang=lang).update_layout(
            title=i18n.tr("segments.behavioural_clusters", lang))
    if kind == "branch_bar":
        frame = sx.summary(cube, "branch_id", filters).sort_values(metric, ascending=False)
        return cs.segment_bar(frame, metric, lang=lang).update_layout(
            title=i18n.tr("lifecycle.horizon_year_clv_by_branch", lang, horizon=horizon))
    raise ValueError(f"unknown chart {kind!r}")


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_rows(url: str, run_id: int):
    return sx.read_cluster_cube(common._engine(url), run_id)


@st.cache_resource(ttl=600, show_spinner=False, max_entries=400)
def _cube_chart(url: str, run_id: int, filters: sx.Filters, kind: str, metric: str, lang: str, horizon: int):
    if kind == "cluster_profiles":
        from analytics import charts_segments

        rows = _cluster_rows(url, run_id)
        # A run refreshed before cluster_cube existed has only the whole bank's stored profiles.
        profiles = sx.cluster_profiles(rows, _cube(url, run_id), filters) if not rows.empty \
            else _cluster_profiles(url, run_id)
        return charts_segments.cluster_profile_heatmap(profiles, lang=lang)
    return _cube_figure(_cube(url, run_id), filters, kind, metric, lang, horizon)


def cube_chart(run_id: int, filters: sx.Filters, kind: str, *, metric: str = "customers", horizon: int = 3):
    """A chart of the filtered cube (``rfm_heatmap``, ``segment_bar``, ``value_tier_bar``,
    ``cluster_bar``, ``cluster_profiles``, ``lifecycle_bar``, ``clv_histogram``, ``branch_bar``) in the
    chosen language."""
    return _cube_chart(resolve_url(), run_id, filters, kind, metric, common.lang(), int(horizon))


@st.cache_resource(ttl=600, show_spinner=False, max_entries=60)
def _run_chart(url: str, run_id: int, kind: str, lang: str, dimension: str | None):
    from analytics import charts_churn, charts_segments

    if kind == "cohorts":
        return charts_segments.cohort_heatmap(_cohorts(url, run_id), lang=lang)
    if kind == "churn_rates":
        return charts_churn.churn_rate_bar(_churn_rates(url, run_id, dimension), dimension, measure="predicted",
                                           lang=lang)
    card = _churn_card(url, run_id)
    if kind == "lift":
        return charts_churn.lift_chart(card["lift"], lang=lang)
    if kind == "calibration":
        return charts_churn.calibration_plot(card["calibration"], lang=lang)
    if kind == "importance":
        return charts_churn.importance_bar(card["importance"], lang=lang)
    raise ValueError(f"unknown chart {kind!r}")


def run_chart(run_id: int, kind: str, dimension: str | None = None):
    """A chart of the run's stored aggregates (``cohorts``, ``churn_rates`` by
    ``dimension``, ``lift``, ``calibration``, ``importance``) in the chosen language."""
    return _run_chart(resolve_url(), run_id, kind, common.lang(), dimension)
