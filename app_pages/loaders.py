"""Every cached loader of the app: the store engine, and the run's results and figures.

Each loader takes the store URL and the refresh run id in its key, so a new run is never hidden by
a stale cache. Aggregates (metrics, the segment cube, the model card, figures) are shared by every
role. A loader of customer-level rows also keeps the user's roles in its key and masks before it
caches, so a cache shared by all users never hands an unmasked frame to a masked role. The public
functions read the store URL themselves; the language of a figure is an argument (this module does
not read the session, so the session and widget modules may use it without an import cycle).
"""

from __future__ import annotations

import streamlit as st

from analytics import access, refresh, runs, tags
from analytics import segment_explorer as sx
from analytics.i18n import tr
from analytics.store import init_schema, make_engine, resolve_url


@st.cache_resource(show_spinner=False)
def engine_for(url: str):
    """The store engine of ``url``, shared by all sessions (it holds no user data)."""
    engine = make_engine(url)
    # The app's own tables (users, sessions, audit log, runs) must exist before the first login.
    init_schema(engine)
    return engine


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------

@st.cache_data(ttl=60, show_spinner=False)
def _freshness(url: str) -> refresh.Freshness:
    return refresh.freshness(engine_for(url))


def freshness() -> refresh.Freshness:
    """How old the published figures are, and whether a later refresh failed or data awaits one."""
    return _freshness(resolve_url())


@st.cache_data(ttl=600, show_spinner=False)
def _run_metrics(url: str, run_id: int) -> dict:
    return runs.get_run_metrics(engine_for(url), run_id)


def run_metrics(run_id: int) -> dict:
    """Headline aggregates of a run (no customer-level data, so one cache entry serves every role)."""
    return _run_metrics(resolve_url(), run_id)


@st.cache_data(ttl=60, show_spinner=False)
def _run_record(url: str, run_id: int) -> dict:
    info = refresh.status(engine_for(url), limit=50)
    return next((r for r in info["runs"] if r["run_id"] == run_id), {})


def run_record(run_id: int) -> dict:
    """The refresh_runs row of a run, as plain data."""
    return _run_record(resolve_url(), run_id)


def as_of_year(run_id: int) -> int:
    """The year the run describes (age bands are whole years at it)."""
    m = run_metrics(run_id)
    return int(str(m.get("as_of_month") or "2026")[:4])


# --------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------

@st.cache_data(ttl=600, show_spinner=False)
def _dq_frames(url: str, run_id: int) -> dict:
    from analytics import charts_quality, quality

    eng = engine_for(url)
    scores = quality.scores(eng, run_id)
    change = quality.score_change(eng, run_id)
    results = quality.rule_results(eng, run_id)
    return {"results": results, "scores": scores,
            "history": quality.score_history(eng), "change": change,
            **charts_quality.page_parts(results, scores, change)}


def dq_frames(run_id: int) -> dict:
    """Data-quality aggregates of a run (no customer-level data: shared by every role): the rule
    results, scores, history and change, the overall rows, score and previous score, the scores of
    each breakdown scope, and the branches that have scores."""
    return _dq_frames(resolve_url(), run_id)


# --------------------------------------------------------------------------------------------
# The segment cube, tags and customer lists (Segments, Lifecycle, Churn)
# --------------------------------------------------------------------------------------------

@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cube(url: str, run_id: int) -> sx.Cube:
    return sx.read_cube(engine_for(url), run_id)


def explorer_cube(run_id: int) -> sx.Cube:
    """The run's segment cube: counts and totals by filter cell, no customer rows."""
    return _cube(resolve_url(), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=200)
def _tag_counts(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...],
                year: int) -> dict:
    return sx.tag_selection_counts(engine_for(url), run_id, filters, expression, names, as_of_year=year)


def tag_selection(run_id: int, filters: sx.Filters, expression: str, names) -> dict:
    """How many filtered customers a tag expression selects (and how many gave consent), in SQL.

    Raises :class:`analytics.tags.TagRuleError` for an invalid expression.
    """
    return _tag_counts(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _campaign(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...], year: int,
              limit: int, offset: int, roles: tuple[str, ...]):
    frame = sx.campaign_page(engine_for(url), run_id, filters, expression, names, as_of_year=year,
                             limit=limit, offset=offset)
    return access.mask_frame(frame, roles)


def campaign(run_id: int, filters: sx.Filters, expression: str, names, roles, *, limit: int, offset: int = 0):
    """Rows ``offset`` .. ``offset + limit`` of the campaign list (consenting selected customers,
    highest 3-year CLV first), masked for ``roles``."""
    return _campaign(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id), int(limit),
                     int(offset), tuple(roles))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _top(url: str, run_id: int, filters: sx.Filters, roles: tuple[str, ...], by: str, year: int):
    return sx.top_customers(engine_for(url), run_id, filters, roles, as_of_year=year, n=50, by=by)


def top_customers(run_id: int, filters: sx.Filters, roles, by: str):
    """The 50 filtered customers with the highest ``by``, masked for ``roles`` (SQL, limited)."""
    return _top(resolve_url(), run_id, filters, tuple(roles), by, as_of_year(run_id))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _early_warning(url: str, run_id: int, params: tuple, roles: tuple[str, ...]):
    from analytics import churn

    frame = churn.early_warning(engine_for(url), run_id, limit=1000, **dict(params))
    return access.mask_frame(frame, roles)


def early_warning(run_id: int, params: dict, roles):
    """The run's early-warning list (at most 1,000 rows, in SQL) for ``params``, masked for ``roles``."""
    return _early_warning(resolve_url(), run_id, tuple(sorted(params.items())), tuple(roles))


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _churn_card(url: str, run_id: int) -> dict:
    from analytics import churn

    engine = engine_for(url)
    return {"metrics": churn.read_churn_metrics(engine, run_id), "lift": churn.read_churn_lift(engine, run_id),
            "calibration": churn.read_churn_calibration(engine, run_id),
            "importance": churn.read_churn_importance(engine, run_id)}


def churn_card(run_id: int) -> dict:
    """The run's churn metrics and model card (hold-out lift, calibration, importance): aggregates."""
    return _churn_card(resolve_url(), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=10)
def _churn_rates(url: str, run_id: int, dimension: str):
    from analytics import churn

    return churn.read_churn_rates(engine_for(url), dimension, run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_profiles(url: str, run_id: int):
    from analytics import segmentation

    return segmentation.read_cluster_profiles(engine_for(url), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cohorts(url: str, run_id: int):
    from analytics import segmentation

    return segmentation.read_cohort_retention(engine_for(url), run_id)


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
    return sx.filter_choices(engine_for(url), run_id)


def filter_choices(run_id: int) -> dict[str, list[str]]:
    """Branches, RFM segments, relationship managers and tiers to filter customer lists by."""
    return _choices(resolve_url(), run_id)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

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
            title=tr("segments.behavioural_clusters", lang))
    if kind == "branch_bar":
        frame = sx.summary(cube, "branch_id", filters).sort_values(metric, ascending=False)
        return cs.segment_bar(frame, metric, lang=lang).update_layout(
            title=tr("lifecycle.horizon_year_clv_by_branch", lang, horizon=horizon))
    raise ValueError(f"unknown chart {kind!r}")


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_rows(url: str, run_id: int):
    return sx.read_cluster_cube(engine_for(url), run_id)


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


def cube_chart(run_id: int, filters: sx.Filters, kind: str, *, lang: str, metric: str = "customers",
               horizon: int = 3):
    """A chart of the filtered cube (``rfm_heatmap``, ``segment_bar``, ``value_tier_bar``,
    ``cluster_bar``, ``cluster_profiles``, ``lifecycle_bar``, ``clv_histogram``, ``branch_bar``) in
    ``lang``."""
    return _cube_chart(resolve_url(), run_id, filters, kind, metric, lang, int(horizon))


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


def run_chart(run_id: int, kind: str, *, lang: str, dimension: str | None = None):
    """A chart of the run's stored aggregates (``cohorts``, ``churn_rates`` by ``dimension``,
    ``lift``, ``calibration``, ``importance``) in ``lang``."""
    return _run_chart(resolve_url(), run_id, kind, lang, dimension)
