"""Every cached loader of the app: the store engine, and the run's results and figures.

Each loader takes the store URL and the refresh run id in its key, so a new run is never hidden by
a stale cache. Bank-wide aggregates (metrics, the model card, the stored cube) are shared by every
role. Everything that depends on who reads (customer rows, a scoped cube and its figures, figures
with small cells hidden) takes the viewer (:class:`analytics.access.Viewer`): its ``key()`` is in the
cache key (the viewer object itself is passed unhashed, as ``_viewer``), and the analytics reader
returns rows already scoped and masked, so a cache shared by all users never hands one viewer's
rows to another. The public
functions read the store URL themselves; the language of a figure is an argument (this module does
not read the session, so the session and widget modules may use it without an import cycle).
"""

from __future__ import annotations

from datetime import date

import streamlit as st

from analytics import access, run_status, runs, tags
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
def _freshness(url: str) -> run_status.Freshness:
    return run_status.freshness(engine_for(url))


def freshness() -> run_status.Freshness:
    """How old the published figures are, and whether a later refresh failed or data awaits one."""
    return _freshness(resolve_url())


@st.cache_data(ttl=600, show_spinner=False)
def _run_metrics(url: str, run_id: int) -> dict:
    return runs.get_run_metrics(engine_for(url), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _headline(url: str, run_id: int, scope: tuple | None, small: int, _viewer: access.Viewer) -> dict:
    from analytics.aggregates import headline_figures

    metrics = runs.get_run_metrics(engine_for(url), run_id)
    if scope is None:
        figures = {k: metrics.get(k) for k in ("customers_total", "customers_active", "customers_dormant",
                                               "customers_closed", "products_total", "branches_total",
                                               "holdings_open", "aum_total", "deposits_total", "loans_total")}
    else:
        as_of = metrics.get("as_of_month")
        figures = headline_figures(engine_for(url), date.fromisoformat(str(as_of)[:10]) if as_of else None, _viewer)
    if small:
        total = figures.get("customers_total") or 0
        counts = ("customers_total", "customers_active", "customers_dormant", "customers_closed", "holdings_open")
        for key in figures:
            if total < small and key != "products_total":
                figures[key] = None  # a population this small: no figure of it at all
            elif key in counts and figures[key] is not None and 0 < figures[key] < small:
                figures[key] = None
    return figures


def headline(run_id: int, viewer: access.Viewer) -> dict:
    """The Overview's headline figures as ``viewer`` may see them: the run's bank-wide counts, or
    its own scope's counted when read; counts under ``MIN_CELL_CUSTOMERS`` hidden (None) from an
    aggregate-only viewer."""
    return _headline(resolve_url(), run_id, _scope_key(viewer), min_cell(viewer), viewer)


def run_metrics(run_id: int) -> dict:
    """Headline aggregates of a run (no customer-level data, so one cache entry serves every role)."""
    return _run_metrics(resolve_url(), run_id)


@st.cache_data(ttl=60, show_spinner=False)
def _run_record(url: str, run_id: int) -> dict:
    info = run_status.status(engine_for(url), limit=50)
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


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _dq_breakdown(url: str, run_id: int, scope: str, viewer_scope: tuple | None, small: int,
                  _viewer: access.Viewer):
    from analytics import quality

    return quality.breakdown_for(engine_for(url), run_id, scope=scope, viewer=_viewer)


def dq_breakdown(run_id: int, scope: str, viewer: access.Viewer):
    """Data-quality scores by branch or channel as ``viewer`` may see them: its own branches only
    when scoped, no cell of fewer than ``MIN_CELL_CUSTOMERS`` customers when aggregate-only."""
    return _dq_breakdown(resolve_url(), run_id, scope, _scope_key(viewer), min_cell(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=100)
def _risk_crosstab(url: str, run_id: int, by: str, column: str, normalize: bool, key: tuple, small: int,
                   _viewer: access.Viewer):
    from analytics import risk

    return risk.risk_crosstab(engine_for(url), run_id, by, column, viewer=_viewer, normalize=normalize)


def risk_crosstab(run_id: int, by: str, column: str, viewer: access.Viewer, *, normalize: bool = False):
    """Customers by ``by`` and a risk column (the Risk page's bars), as ``viewer`` may see them; kept per
    viewer (roles, scope, purpose): a GROUP BY over every customer takes a second at a million."""
    return _risk_crosstab(resolve_url(), run_id, by, column, bool(normalize), viewer.key(), min_cell(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _risk_value_matrix(url: str, run_id: int, key: tuple, small: int, _viewer: access.Viewer):
    from analytics import risk

    return risk.risk_value_matrix(engine_for(url), run_id, viewer=_viewer)


def risk_value_matrix(run_id: int, viewer: access.Viewer):
    """The Risk page's tolerance x value-tier heat map, as ``viewer`` may see it; kept per viewer."""
    return _risk_value_matrix(resolve_url(), run_id, viewer.key(), min_cell(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _alert_trend(url: str, run_id: int, key: tuple, small: int, _viewer: access.Viewer):
    from analytics import risk

    return risk.alert_trend(engine_for(url), viewer=_viewer)


def alert_trend(run_id: int, viewer: access.Viewer):
    """Alerts across the recent runs up to ``run_id`` (the current one: a new run reads them again),
    as ``viewer`` may see them; kept per viewer."""
    return _alert_trend(resolve_url(), run_id, viewer.key(), min_cell(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _dq_fix_list(url: str, run_id: int, branch: str, key: tuple, _viewer: access.Viewer):
    from analytics import quality

    return quality.fix_list(engine_for(url), run_id, branch, viewer=_viewer)


def dq_fix_list(run_id: int, branch: str, viewer: access.Viewer):
    """A branch's data-quality fix list (record keys and rules, no personal values), released for
    ``viewer`` and kept per viewer (its roles, scope and purpose): the whole-table rules make it take
    seconds at a million customers."""
    return _dq_fix_list(resolve_url(), run_id, branch, viewer.key(), viewer)


# --------------------------------------------------------------------------------------------
# The segment cube, tags and customer lists (Segments, Lifecycle, Churn)
# --------------------------------------------------------------------------------------------

def min_cell(viewer: access.Viewer) -> int:
    """The small-cell threshold for ``viewer``'s figures: ``MIN_CELL_CUSTOMERS`` for an
    aggregate-only role, 0 (show everything) for the others."""
    return access.min_cell_customers() if viewer.aggregate_only else 0


def _scope_key(viewer: access.Viewer) -> tuple | None:
    return viewer.scope.key() if viewer.scope is not None else None


@st.cache_data(ttl=600, show_spinner=False, max_entries=20)
def _cube(url: str, run_id: int, scope: tuple | None, _viewer: access.Viewer) -> sx.Cube:
    return sx.read_cube(engine_for(url), run_id, _viewer if scope is not None else None)


@st.cache_data(ttl=600, show_spinner=False, max_entries=40)
def _attribute_cubes(url: str, run_id: int, attribute: str, scope: tuple | None,
                     _viewer: access.Viewer) -> dict[str, sx.Cube]:
    return sx.read_attribute_cubes(engine_for(url), run_id, attribute, _viewer if scope is not None else None)


def _with_attribute(url: str, run_id: int, cube: sx.Cube, attribute: str, scope: tuple | None,
                    viewer: access.Viewer) -> sx.Cube:
    return cube.with_attribute(attribute, _attribute_cubes(url, run_id, attribute, scope, viewer))


def explorer_cube(run_id: int, viewer: access.Viewer, attribute: str = "") -> sx.Cube:
    """The run's segment cube over ``viewer``'s scope: counts and totals by filter cell, no customer
    rows; with ``attribute`` (one of :data:`analytics.segment_explorer.ATTRIBUTE_FILTERS`), split by
    it too (``segment_cube_filters``), so that a ``Filters`` on it can be summed."""
    url, scope = resolve_url(), _scope_key(viewer)
    cube = _cube(url, run_id, scope, viewer)
    return _with_attribute(url, run_id, cube, attribute, scope, viewer) if attribute else cube


@st.cache_data(ttl=600, show_spinner=False, max_entries=200)
def _tag_counts(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...],
                year: int, key: tuple, _viewer: access.Viewer) -> dict:
    return sx.tag_selection_counts(engine_for(url), run_id, filters, expression, names, as_of_year=year,
                                   viewer=_viewer)


def tag_selection(run_id: int, filters: sx.Filters, expression: str, names, viewer: access.Viewer) -> dict:
    """How many filtered customers in scope a tag expression selects (and how many have a live
    marketing consent), in SQL; -1 for a count an aggregate-only role may not see.

    Raises :class:`analytics.tags.TagRuleError` for an invalid expression.
    """
    return _tag_counts(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id), _list_key(viewer),
                       viewer)


def _list_key(viewer: access.Viewer) -> tuple:
    """The cache key of a tag-builder list: the viewer's, and whether it is consent-filtered (a risk
    manager's is not, and may share every other part of the key with a risk-and-marketing user)."""
    return (*viewer.key(), access.segment_list_purpose(viewer.roles))


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _campaign(url: str, run_id: int, filters: sx.Filters, expression: str, names: tuple[str, ...], year: int,
              limit: int, offset: int, key: tuple, _viewer: access.Viewer):
    return sx.campaign_page(engine_for(url), run_id, filters, expression, names, viewer=_viewer, as_of_year=year,
                            limit=limit, offset=offset)


def campaign(run_id: int, filters: sx.Filters, expression: str, names, viewer: access.Viewer, *, limit: int,
             offset: int = 0):
    """Rows ``offset`` .. ``offset + limit`` of the campaign list (selected customers in scope with a
    live marketing consent, or every one for a risk manager; highest 3-year CLV first), released for ``viewer``."""
    return _campaign(resolve_url(), run_id, filters, expression, tuple(names), as_of_year(run_id), int(limit),
                     int(offset), _list_key(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _top(url: str, run_id: int, filters: sx.Filters, by: str, year: int, key: tuple, _viewer: access.Viewer):
    return sx.top_customers(engine_for(url), run_id, filters, viewer=_viewer, as_of_year=year, n=50, by=by)


def top_customers(run_id: int, filters: sx.Filters, viewer: access.Viewer, by: str):
    """The 50 filtered, consenting customers in scope with the highest ``by`` (SQL, limited),
    released for ``viewer``, and the count left out for want of consent."""
    return _top(resolve_url(), run_id, filters, by, as_of_year(run_id), viewer.key(), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _early_warning(url: str, run_id: int, params: tuple, key: tuple, _viewer: access.Viewer):
    from analytics import churn

    return churn.early_warning(engine_for(url), run_id, viewer=_viewer, limit=1000, **dict(params))


def early_warning(run_id: int, params: dict, viewer: access.Viewer):
    """The run's early-warning list (at most 1,000 rows, in SQL) for ``params``: consenting customers
    in scope, released for ``viewer``, and the count left out for want of consent."""
    return _early_warning(resolve_url(), run_id, tuple(sorted(params.items())), viewer.key(), viewer)


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


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _churn_headline(url: str, run_id: int, scope: tuple | None, small: int, _viewer: access.Viewer) -> dict:
    from analytics import churn

    if scope is None:
        m = _churn_card(url, run_id)["metrics"]
        figures = {k: m.get(f"churn.{k}") for k in ("customers_active", "expected_churners", "value_at_risk_total")}
        figures = {k: None if v is None or isinstance(v, str) else float(v) for k, v in figures.items()}
    else:
        figures = churn.scope_churn(engine_for(url), run_id, viewer=_viewer)
    if small and 0 < (figures["customers_active"] or 0) < small:
        figures = dict.fromkeys(figures)  # a population this small: no figure of it at all
    return figures


def churn_headline(run_id: int, viewer: access.Viewer) -> dict:
    """Active customers, expected churners and value at risk of ``viewer``'s scope (the run's
    bank-wide figures for a bank-wide viewer); all None for an aggregate-only viewer whose scope
    holds fewer than ``MIN_CELL_CUSTOMERS`` active customers."""
    return _churn_headline(resolve_url(), run_id, _scope_key(viewer), min_cell(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _churn_rates(url: str, run_id: int, dimension: str, scope: tuple | None = None,
                 _viewer: access.Viewer | None = None):
    from analytics import churn

    if scope is None:
        return churn.read_churn_rates(engine_for(url), dimension, run_id)
    return churn.scope_churn_rates(engine_for(url), dimension, run_id, viewer=_viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _cross_sell_figures(url: str, run_id: int, scope: tuple | None, _viewer: access.Viewer) -> dict:
    from analytics import cross_sell

    engine = engine_for(url)
    if scope is None:
        m = runs.get_run_metrics(engine, run_id)
        head = {k: m.get(f"cross_sell.{k}") for k in ("customers_scored", "customers_with_offer",
                                                       "next_best_expected_value_total")}
        return {"headline": head, "opportunities": cross_sell.read_opportunities(engine, run_id),
                "metric": "expected_value_total"}
    head, by_product = cross_sell.scope_offers(engine, run_id, viewer=_viewer)
    return {"headline": head, "opportunities": by_product, "metric": "expected_value_total"}


def cross_sell_figures(run_id: int, viewer: access.Viewer) -> dict:
    """The Cross-sell headline (customers scored, with an offer, expected margin of next-best
    offers) and the opportunities by product, of ``viewer``'s scope: for a bank-wide viewer the
    run's stored figures (every eligible offer), for a scoped one its customers' next-best offers."""
    return _cross_sell_figures(resolve_url(), run_id, _scope_key(viewer), viewer)


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_profiles(url: str, run_id: int):
    from analytics import segmentation

    return segmentation.read_cluster_profiles(engine_for(url), run_id)


@st.cache_data(ttl=600, show_spinner=False, max_entries=20)
def _cohorts(url: str, run_id: int, scope: tuple | None = None, _viewer: access.Viewer | None = None):
    from analytics import lifecycle, segmentation

    if scope is None:
        return segmentation.read_cohort_retention(engine_for(url), run_id)
    as_of = runs.get_run_metrics(engine_for(url), run_id).get("as_of_month")
    return lifecycle.load_cohort_retention(engine_for(url), as_of, viewer=_viewer)


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


@st.cache_data(ttl=600, show_spinner=False, max_entries=8)
def _tag_labels(path: str, modified: float, lang: str) -> dict[str, str]:
    return {rule.name: tags.tag_label(rule, lang) for rule in tags.load_tag_rules(path)}


def tag_labels(lang: str) -> dict[str, str]:
    """Each configured tag's label in ``lang`` (the tag file's ``label`` / ``label_zh``)."""
    path = tags.tags_file()
    try:
        modified = path.stat().st_mtime
    except OSError:
        modified = -1.0
    return _tag_labels(str(path), modified, lang)


@st.cache_data(ttl=600, show_spinner=False, max_entries=20)
def _choices(url: str, run_id: int, scope: tuple | None, _viewer: access.Viewer) -> dict:
    return sx.filter_choices(engine_for(url), run_id, _viewer)


def filter_choices(run_id: int, viewer: access.Viewer) -> dict[str, list[str]]:
    """Branches, RFM segments, relationship managers and tiers to filter customer lists by (a scoped
    viewer's own branches and portfolios only)."""
    return _choices(resolve_url(), run_id, _scope_key(viewer), viewer)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

# Figures are aggregates (no customer rows), so one cached copy per run, filter, measure and language
# serves every role; a warm page then spends its time drawing, not building, its charts. They are
# cached as resources (the same object, not a pickled copy): unpickling a plotly figure re-validates
# every property and costs more than drawing it. Nothing mutates a figure after it is built.
def _cube_figure(cube: sx.Cube, filters: sx.Filters, kind: str, metric: str, lang: str, horizon: int,
                 small: int = 0):
    from analytics import charts_segments as cs

    if kind == "rfm_heatmap":
        return cs.rfm_heatmap(sx.summary(cube, "rfm_rf", filters, min_cell=small), lang=lang)
    if kind == "clv_histogram":
        return cs.clv_histogram(sx.clv_bands(cube, horizon, filters, min_cell=small), horizon, lang=lang)
    if kind == "lifecycle_bar":
        return cs.lifecycle_bar(sx.summary(cube, "lifecycle_stage", filters, min_cell=small), metric, lang=lang)
    if kind == "value_tier_bar":
        return cs.value_tier_bar(sx.summary(cube, "value_tier", filters, min_cell=small), metric, lang=lang)
    if kind == "segment_bar":
        return cs.segment_bar(sx.summary(cube, "rfm_segment", filters, min_cell=small), metric, lang=lang)
    if kind == "cluster_bar":
        return cs.cluster_bar(sx.summary(cube, "cluster_name", filters, min_cell=small), metric,
                              lang=lang).update_layout(title=tr("segments.behavioural_clusters", lang))
    if kind == "branch_bar":
        frame = sx.summary(cube, "branch_id", filters, min_cell=small).sort_values(metric, ascending=False)
        return cs.segment_bar(frame, metric, lang=lang).update_layout(
            title=tr("lifecycle.horizon_year_clv_by_branch", lang, horizon=horizon))
    raise ValueError(f"unknown chart {kind!r}")


@st.cache_data(ttl=600, show_spinner=False, max_entries=2)
def _cluster_rows(url: str, run_id: int):
    return sx.read_cluster_cube(engine_for(url), run_id)


@st.cache_resource(ttl=600, show_spinner=False, max_entries=400)
def _cube_chart(url: str, run_id: int, filters: sx.Filters, kind: str, metric: str, lang: str, horizon: int,
                scope: tuple | None, small: int, _viewer: access.Viewer):
    cube = _cube(url, run_id, scope, _viewer)
    if filters.by_attribute:
        cube = _with_attribute(url, run_id, cube, filters.attribute, scope, _viewer)
    if kind == "cluster_profiles":
        from analytics import charts_segments

        rows = _cluster_rows(url, run_id)
        if scope is not None and _viewer.scope.portfolios:
            # The cluster cube is split by branch, not portfolio: a portfolio sees what each of the
            # model's clusters is (its centroid profile), without the bank's cluster sizes.
            profiles = _cluster_profiles(url, run_id).drop(columns="customers", errors="ignore")
        elif not rows.empty:
            if scope is not None:  # a branch scope: only its branches' cells
                mine = tuple(b for b in (filters.branches or cube.branches) if b in _viewer.scope.branches)
                filters = sx.Filters(mine or ("(none)",), filters.cities, filters.age_bands, filters.tiers)
            profiles = sx.cluster_profiles(rows, cube, filters)
        else:  # a run refreshed before cluster_cube existed has only the whole bank's stored profiles
            profiles = _cluster_profiles(url, run_id)
        if small and "customers" in profiles.columns:
            profiles = profiles[profiles["customers"] >= small]  # a small cluster's means are not shown
        return charts_segments.cluster_profile_heatmap(profiles, lang=lang)
    return _cube_figure(cube, filters, kind, metric, lang, horizon, small)


def cube_chart(run_id: int, filters: sx.Filters, kind: str, *, viewer: access.Viewer, lang: str,
               metric: str = "customers", horizon: int = 3):
    """A chart of the filtered cube over ``viewer``'s scope (``rfm_heatmap``, ``segment_bar``,
    ``value_tier_bar``, ``cluster_bar``, ``cluster_profiles``, ``lifecycle_bar``, ``clv_histogram``,
    ``branch_bar``) in ``lang``; small cells hidden for an aggregate-only viewer."""
    return _cube_chart(resolve_url(), run_id, filters, kind, metric, lang, int(horizon), _scope_key(viewer),
                       min_cell(viewer), viewer)


@st.cache_resource(ttl=600, show_spinner=False, max_entries=60)
def _run_chart(url: str, run_id: int, kind: str, lang: str, dimension: str | None, small: int = 0,
               scope: tuple | None = None, _viewer: access.Viewer | None = None):
    from analytics import charts_churn, charts_segments

    if kind == "cohorts":
        cohorts = _cohorts(url, run_id, scope, _viewer)
        if small:  # a cohort of fewer customers: its retention rates are not shown
            cohorts = cohorts[cohorts["cohort_size"] >= small]
        return charts_segments.cohort_heatmap(cohorts, lang=lang)
    if kind == "churn_rates":
        rates = _churn_rates(url, run_id, dimension, scope, _viewer)
        if small:  # a value of fewer active customers: its rate is not shown
            rates = rates[rates["customers"] >= small]
        return charts_churn.churn_rate_bar(rates, dimension, measure="predicted", lang=lang)
    card = _churn_card(url, run_id)
    if kind == "lift":
        return charts_churn.lift_chart(card["lift"], lang=lang)
    if kind == "calibration":
        return charts_churn.calibration_plot(card["calibration"], lang=lang)
    if kind == "importance":
        return charts_churn.importance_bar(card["importance"], lang=lang)
    raise ValueError(f"unknown chart {kind!r}")


def run_chart(run_id: int, kind: str, *, viewer: access.Viewer, lang: str, dimension: str | None = None):
    """A chart of the run's stored aggregates (``cohorts``, ``churn_rates`` by ``dimension``,
    ``lift``, ``calibration``, ``importance``) in ``lang``; for an aggregate-only viewer, cohorts
    and churn-rate values of fewer than ``MIN_CELL_CUSTOMERS`` customers are left out. Churn rates
    and cohorts are ``viewer``'s scope's; the model card (lift, calibration, importance) is the model's."""
    scope = _scope_key(viewer) if kind in ("churn_rates", "cohorts") else None
    return _run_chart(resolve_url(), run_id, kind, lang, dimension, min_cell(viewer), scope, viewer)


# --------------------------------------------------------------------------------------------
# Campaigns (issue 13)
# --------------------------------------------------------------------------------------------

@st.cache_data(ttl=60, show_spinner=False, max_entries=100)
def _campaign_plan(url: str, run_id: int, definition, key: tuple, _viewer: access.Viewer) -> dict:
    from analytics import campaigns

    return campaigns.plan_summary(engine_for(url), definition, viewer=_viewer, run_id=run_id)


def campaign_plan(run_id: int, definition, viewer: access.Viewer) -> dict:
    """The audience size, exclusions by reason and expected outcome of a definition (counts only).

    Raises :class:`analytics.campaigns.CampaignError` or :class:`analytics.tags.TagRuleError`.
    """
    return _campaign_plan(resolve_url(), run_id, definition, viewer.key(), viewer)


@st.cache_data(ttl=30, show_spinner=False, max_entries=50)
def _campaign_list(url: str, key: tuple, small: int, _viewer: access.Viewer):
    from analytics import campaigns

    return campaigns.list_campaigns(engine_for(url), viewer=_viewer)


def campaign_list(viewer: access.Viewer):
    """Every campaign with members in ``viewer``'s scope (counts only)."""
    return _campaign_list(resolve_url(), viewer.key(), access.min_cell_customers(), viewer)


@st.cache_data(ttl=60, show_spinner=False, max_entries=50)
def _campaign_results(url: str, campaign_id: int, run_id: int, key: tuple, small: int,
                      _viewer: access.Viewer) -> dict:
    from analytics import campaigns

    return campaigns.campaign_results(engine_for(url), campaign_id, viewer=_viewer, run_id=run_id)


def campaign_results(campaign_id: int, run_id: int, viewer: access.Viewer) -> dict:
    """A campaign's results over ``viewer``'s scope, measured in run ``run_id`` (aggregates)."""
    return _campaign_results(resolve_url(), int(campaign_id), int(run_id), viewer.key(), access.min_cell_customers(),
                             viewer)


@st.cache_data(ttl=60, show_spinner=False, max_entries=20)
def _campaign_export(url: str, campaign_id: int, key: tuple, _viewer: access.Viewer):
    from analytics import campaigns

    return campaigns.treatment_export(engine_for(url), campaign_id, viewer=_viewer)


def campaign_export(campaign_id: int, viewer: access.Viewer):
    """The treatment arm in ``viewer``'s scope with a live consent, released, and the count left out."""
    return _campaign_export(resolve_url(), int(campaign_id), viewer.key(), viewer)


def forget_campaigns() -> None:
    """Drop the cached campaign list and plans (after a campaign is created)."""
    _campaign_list.clear()
    _campaign_plan.clear()


# --------------------------------------------------------------------------------------------
# KPI wall: the branch / region ranking
# --------------------------------------------------------------------------------------------

@st.cache_data(ttl=600, show_spinner=False, max_entries=100)
def _kpi_units(url: str, run_id: int, level: str, key: tuple, _viewer: access.Viewer):
    # Every figure of every unit at once: the wall's rotation through the figures reads them once.
    from analytics import kpi as kpi_figures

    as_of = runs.get_run_metrics(engine_for(url), run_id).get("as_of_month")
    if not as_of:
        return None
    return kpi_figures.unit_figures(engine_for(url), date.fromisoformat(str(as_of)[:10]), _viewer, level=level)


def kpi_ranking(run_id: int, kpi: str, level: str, viewer: access.Viewer) -> dict | None:
    """Top and bottom 5 branches (or regions) on ``kpi`` at the run's month, over ``viewer``'s
    customers, without a unit under ``MIN_CELL_CUSTOMERS``; None when the run has no activity data."""
    from analytics import kpi as kpi_figures

    figures = _kpi_units(resolve_url(), int(run_id), level, viewer.key(), viewer)
    return None if figures is None else kpi_figures.rank_units(figures, kpi)


@st.cache_data(ttl=600, show_spinner=False, max_entries=50)
def _cross_sell_offer_mix(url: str, run_id: int, key: tuple, small: int, _viewer: access.Viewer):
    from analytics import cross_sell

    return cross_sell.first_offer_mix(engine_for(url), run_id, viewer=_viewer)


def cross_sell_offer_mix(run_id: int, viewer: access.Viewer):
    """The first offers by category of ``viewer``'s scope (small cells hidden for an aggregate-only
    role; the viewer's key and the threshold are in the cache key, so no role reads another's)."""
    return _cross_sell_offer_mix(resolve_url(), int(run_id), viewer.key(), min_cell(viewer), viewer)
