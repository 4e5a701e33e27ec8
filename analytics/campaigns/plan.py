"""Planning a campaign: the audience, who is left out and why, the expected outcome, the control
group, and storing it all (``campaigns``, ``campaign_members``).

The audience is the customers of the published run that the Segments filters keep
(:func:`analytics.segment_explorer.filter_conditions`), that a tag expression selects
(:func:`analytics.tags.selection_clause`) and that are in the planner's scope. Each is then left out
for the **first** of these reasons that applies (so the counts add up to the audience less the
eligible):

``closed_dormant``      the customer's status is closed or dormant;
``consent``             no live marketing consent now (``consents``);
``complaint``           an unresolved complaint (a ``complaint`` contact not marked resolved);
``cooldown``            a marketing contact within ``CONTACT_COOLDOWN_DAYS`` before the run's as-of
                        day, or in the treatment arm of a campaign created within that many days;
``holds_category``      already holds the campaign's product category at the run (with a product);
``expired_assessment``  no risk tolerance, or assessed more than ``RISK_ASSESSMENT_VALID_DAYS``
                        before the run's as-of day (with a product);
``suitability``         every product of the category is above the customer's tolerance (with a
                        product).
``credit_grade``        a credit category (mortgage, consumer loan, credit card) and the customer's
                        credit grade is below ``CREDIT_OFFER_MIN_GRADE`` or missing;
``credit_complaint``    a credit category and a complaint about credit in the last six calendar months
                        (the cross-sell stage's rule, :mod:`analytics.cross_sell.recommend`).

**Expected outcome** (with a product category). Assumption: a treated customer converts with the
run's cross-sell propensity for the category (``cross_sell_customer.propensities``: the model's
probability of acquiring it within ``CROSS_SELL_HORIZON_MONTHS``, fitted on past behaviour, so it
is the rate *without* this campaign's effect: the campaign's own effect is what the control group
measures). One conversion is worth (``value_if_converted``) a year's margin: the category's expected
balance (median balance of its holders at the run) times the yearly margin rate of the best product
within the customer's tolerance. A member's ``expected_value`` is on the recommendations' basis, the
margin expected over the propensity horizon (:mod:`analytics.cross_sell.recommend`)::

    expected_value = propensity * value_if_converted * horizon_months / 12

with the run's horizon (``cross_sell.horizon_months``). Expected conversions and margin (the sum of
the ``expected_value``) are over the treatment arm.

**Control group.** ``CONTROL_SHARE`` of the eligible customers (``round(share * eligible)``) are
held out: the eligible ids, sorted, are permuted by ``numpy.random.default_rng(seed)``, and the
first ones are the control arm. The seed is stored with the campaign, so the assignment can be
re-derived and checked (:func:`assign_arms`).
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import (
    JSON,
    Date,
    Engine,
    Float,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)

from analytics import access, settings, tags
from analytics import segment_explorer as sx
from analytics.campaigns.errors import CampaignError
from analytics.campaigns.playbooks import default_message
from analytics.consent import live_consent_condition
from analytics.cross_sell.config import credit_min_grade
from analytics.cross_sell.holdings import product_categories
from analytics.cross_sell.recommend import (
    CREDIT_CATEGORIES,
    CREDIT_COMPLAINT_CATEGORIES,
    CREDIT_COMPLAINT_MONTHS,
    assessment_valid,
    best_products,
    credit_grade_ok,
)
from analytics.features import add_months, to_datetime
from analytics.risk import risk_number
from analytics.runs import current_run_id, get_run_metrics, utcnow
from analytics.schema import (
    campaign_members,
    campaigns,
    contacts,
    cross_sell_categories,
    cross_sell_customer,
    customer_segments,
    customers,
    holdings,
    products,
)
from analytics.store import read_frame

EXCLUSION_REASONS = ("closed_dormant", "consent", "complaint", "cooldown", "holds_category",
                     "expired_assessment", "suitability", "credit_grade", "credit_complaint")
PRODUCT_REASONS = ("holds_category", "expired_assessment", "suitability", "credit_grade", "credit_complaint")
MAX_CONTROL_SHARE = 0.5
NAME_MAX = 100
MEMBER_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "value_tier", "rfm_segment", "propensity",
                  "value_if_converted", "expected_value")


@dataclass(frozen=True)
class Definition:
    """What a campaign targets: a name, the Segments filters, a tag expression, a product category
    and the control share (None: the ``CONTROL_SHARE`` setting)."""

    name: str
    filters: sx.Filters = field(default_factory=sx.Filters)
    tags: str | None = None
    product: str | None = None
    control_share: float | None = None
    message: str | None = None

    def as_json(self, control_share: float) -> str:
        return json.dumps({"filters": self.filters.as_params(), "tags": self.tags, "product": self.product,
                           "control_share": control_share}, ensure_ascii=False, sort_keys=True)


@dataclass
class Plan:
    """An audience as planned: its size, exclusions by reason, the eligible customers (not released:
    for :func:`create_campaign` only) and the expected outcome of the treatment arm."""

    run_id: int
    as_of: date
    audience: int
    excluded: dict[str, int]
    eligible: pd.DataFrame
    control_share: float
    expected_conversions: float | None
    expected_margin: float | None

    @property
    def eligible_count(self) -> int:
        return len(self.eligible)

    @property
    def control_count(self) -> int:
        return control_size(self.eligible_count, self.control_share)

    @property
    def treatment_count(self) -> int:
        return self.eligible_count - self.control_count

    def summary(self) -> dict:
        """The plan's figures (counts and expectations: no customer rows)."""
        return _figures(self.audience, self.eligible_count, self.excluded, self.control_share,
                        self.expected_conversions, self.expected_margin)


def _figures(audience: int, eligible: int, excluded: dict[str, int], share: float,
             expected_conversions: float | None, expected_margin: float | None) -> dict:
    """A plan's figures as :meth:`Plan.summary` and :func:`plan_summary` give them."""
    control = control_size(eligible, share)
    return {"audience": audience, "eligible": eligible, "excluded": dict(excluded),
            "treatment": eligible - control, "control": control, "control_share": share,
            "expected_conversions": expected_conversions, "expected_margin": expected_margin}


def control_share(value: float | None = None) -> float:
    """The control share: ``value`` or the ``CONTROL_SHARE`` setting, checked to be within 0-0.5."""
    raw = settings.get("CONTROL_SHARE") if value is None else value
    try:
        share = float(raw)
    except (TypeError, ValueError):
        raise CampaignError(f"control share must be a number from 0 to {MAX_CONTROL_SHARE}, got {raw!r}",
                            key="errors.campaign.control_share", max=MAX_CONTROL_SHARE) from None
    if math.isnan(share) or not 0.0 <= share <= MAX_CONTROL_SHARE:
        raise CampaignError(f"control share must be from 0 to {MAX_CONTROL_SHARE}, got {raw!r}",
                            key="errors.campaign.control_share", max=MAX_CONTROL_SHARE)
    return share


def control_size(eligible: int, share: float) -> int:
    """How many of ``eligible`` customers the control arm holds: ``share * eligible`` rounded half up."""
    return int(math.floor(share * eligible + 0.5))


def assign_arms(customer_ids, share: float, seed: int) -> pd.Series:
    """The arm of each customer (``treatment``/``control``), indexed by id, re-derivable from the seed."""
    ids = sorted(str(c) for c in customer_ids)
    order = np.random.default_rng(int(seed)).permutation(len(ids))
    arms = np.full(len(ids), "treatment", dtype=object)
    arms[order[:control_size(len(ids), share)]] = "control"
    return pd.Series(arms, index=pd.Index(ids, name="customer_id"), name="arm")


def _cooldown_days() -> int:
    days = int(settings.get("CONTACT_COOLDOWN_DAYS"))
    if days < 0:
        raise CampaignError(f"Setting CONTACT_COOLDOWN_DAYS={days} must not be negative")
    return days


def _as_of(engine: Engine, run_id: int) -> date:
    meta = get_run_metrics(engine, run_id)
    raw = meta.get("cross_sell.as_of")
    if raw:
        return date.fromisoformat(str(raw)[:10])
    month = meta.get("as_of_month")
    if month:
        first = date.fromisoformat(str(month)[:10])
        return (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    return utcnow().date()


def check_definition(engine: Engine, definition: Definition, tag_names) -> float:
    """Refuse a bad definition in one line; return its control share."""
    name = (definition.name or "").strip()
    if not name:
        raise CampaignError("a campaign needs a name", key="errors.campaign.name_required")
    if len(name) > NAME_MAX:
        raise CampaignError(f"campaign name is too long ({len(name)} characters, at most {NAME_MAX})",
                            key="errors.campaign.name_too_long", max=NAME_MAX)
    share = control_share(definition.control_share)
    if definition.product is not None:
        known = product_categories(engine)
        if definition.product not in known:
            raise CampaignError(f"unknown product category {definition.product!r}; known: {', '.join(known)}",
                                key="errors.campaign.unknown_product")
    if definition.tags:
        tags.parse_selection(definition.tags, tag_names)
    return share


def _audience_parts(run_id: int, definition: Definition, viewer: access.Viewer, tag_names, as_of: date):
    """The audience's flag columns (the exclusion reasons' inputs), its FROM clause and its WHERE
    conditions: shared by the customer rows of :func:`plan` and the grouped counts of :func:`plan_summary`."""
    s, c, k = customer_segments.c, customers.c, contacts.c
    where = [s.run_id == int(run_id), *sx.filter_conditions(definition.filters, as_of_year=as_of.year),
             viewer.scope_condition(customers)]
    if definition.tags:
        where.append(tags.selection_clause(definition.tags, tag_names, s.tags))
    cutoff = datetime.combine(as_of - timedelta(days=_cooldown_days()), datetime.min.time())
    recent_campaign = utcnow() - timedelta(days=_cooldown_days())
    m, g = campaign_members.c, campaigns.c
    flags = [
        c.status, c.risk_tolerance, c.credit_grade,
        live_consent_condition(s.customer_id, "marketing").label("consent_now"),
        exists(select(k.contact_id).where(k.customer_id == s.customer_id, k.kind == "complaint",
                                          or_(k.resolved.is_(None), k.resolved.is_(False)))).label("complaint_open"),
        exists(select(k.contact_id).where(
            k.customer_id == s.customer_id, k.kind == "complaint", k.category.in_(CREDIT_COMPLAINT_CATEGORIES),
            k.contacted_at >= datetime.combine(add_months(as_of, 1 - CREDIT_COMPLAINT_MONTHS), datetime.min.time()),
            k.contacted_at < datetime.combine(add_months(as_of, 1), datetime.min.time()))).label("credit_complaint"),
        or_(exists(select(k.contact_id).where(k.customer_id == s.customer_id, k.kind == "marketing",
                                              k.contacted_at >= cutoff)),
            exists(select(m.customer_id).select_from(campaign_members.join(campaigns,
                                                                           g.campaign_id == m.campaign_id))
                   .where(m.customer_id == s.customer_id, m.arm == "treatment",
                          g.created_at >= recent_campaign))).label("contacted_recently"),
    ]
    if definition.product is not None:
        h, p = holdings.c, products.c
        flags.append(exists(select(h.holding_id).select_from(holdings.join(products, p.product_id == h.product_id))
                            .where(h.customer_id == s.customer_id, p.category == definition.product,
                                   h.opened_on <= as_of,
                                   or_(h.closed_on.is_(None), h.closed_on > as_of))).label("holds_category"))
        x = cross_sell_customer.c
        source = (customer_segments.join(customers, c.customer_id == s.customer_id)
                  .outerjoin(cross_sell_customer, and_(x.run_id == s.run_id, x.customer_id == s.customer_id)))
    else:
        flags.append(literal(False).label("holds_category"))
        source = customer_segments.join(customers, c.customer_id == s.customer_id)
    return flags, source, where


def _audience_rows(engine: Engine, run_id: int, definition: Definition, viewer: access.Viewer, tag_names,
                   as_of: date) -> pd.DataFrame:
    s, c = customer_segments.c, customers.c
    flags, source, where = _audience_parts(run_id, definition, viewer, tag_names, as_of)
    columns = [s.customer_id, c.branch_id, c.relationship_manager, c.risk_assessed_at, s.value_tier, s.rfm_segment,
               *flags]
    if definition.product is not None:
        columns.append(cross_sell_customer.c.propensities)
    else:
        columns.append(literal(None).label("propensities"))
    return read_frame(engine, select(*columns).select_from(source).where(*where).order_by(s.customer_id))


def _propensity_sql(engine: Engine, product: str, fallback: float):
    """SQL for a customer's stored propensity for ``product`` (``cross_sell_customer.propensities``,
    JSON), or ``fallback`` where it has none: as :func:`plan` reads it in Python."""
    raw = func.nullif(cross_sell_customer.c.propensities, "")
    if engine.dialect.name == "sqlite":
        value = func.json_extract(raw, literal('$."' + product.replace('"', '') + '"'))
    else:
        value = cast(cast(raw, JSON).op("->>")(literal(product)), Float)
    return func.coalesce(value, literal(float(fallback), type_=Float))


def _audience_groups(engine: Engine, run_id: int, definition: Definition, viewer: access.Viewer, tag_names,
                     as_of: date, fallback: float) -> pd.DataFrame:
    """The audience counted in the database by the values its exclusion reasons read: one row per
    combination, with ``customers`` and, with a product, ``propensity`` (their propensities' sum) and
    ``assessment_recent`` (assessed within ``RISK_ASSESSMENT_VALID_DAYS`` of the run's as-of day,
    :func:`assessment_recent_sql`). A million customers come back as a few hundred rows."""
    flags, source, where = _audience_parts(run_id, definition, viewer, tag_names, as_of)
    keys = list(flags)
    values = []
    if definition.product is not None:
        valid_days = int(settings.get("RISK_ASSESSMENT_VALID_DAYS"))
        keys.append(assessment_recent_sql(customers.c.risk_assessed_at, as_of, valid_days))
        values.append(_propensity_sql(engine, definition.product, fallback).label("propensity"))
    rows = select(*keys, *values).select_from(source).where(*where).subquery()
    group = [rows.c[col.name] for col in keys]
    measures = [func.count().label("customers")]
    if definition.product is not None:
        measures.append(func.sum(rows.c.propensity).label("propensity"))
    return read_frame(engine, select(*group, *measures).group_by(*group))


def assessment_recent_sql(column, as_of: date, valid_days: int):
    """SQL twin of the age part of :func:`analytics.cross_sell.recommend.assessment_valid`: the risk
    assessment (a date) is at most ``valid_days`` days before ``as_of`` (a later date counts too);
    missing is not recent. Labelled ``assessment_recent``."""
    oldest = bindparam("assessed_since", as_of - timedelta(days=int(valid_days)), type_=Date)
    return case((column >= oldest, True), else_=False).label("assessment_recent")


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _reasons(rows: pd.DataFrame, definition: Definition, engine: Engine,
             assessed: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each exclusion reason as a mask over ``rows`` (customers, or groups of customers alike), and
    each row's yearly margin rate if converted (the best product within its tolerance; 0 without a
    product). ``assessed``: the risk assessment is recent enough (with a product)."""
    n = len(rows)
    reasons: dict[str, np.ndarray] = {
        "closed_dormant": rows["status"].isin(["closed", "dormant"]).to_numpy(dtype=bool),
        "consent": ~_flag(rows, "consent_now"),
        "complaint": _flag(rows, "complaint_open"),
        "cooldown": _flag(rows, "contacted_recently"),
        "holds_category": _flag(rows, "holds_category"),
    }
    margin = np.zeros(n)
    if definition.product is not None:
        tolerance = risk_number(rows["risk_tolerance"], "C")
        reasons["expired_assessment"] = ~((tolerance > 0) & np.asarray(assessed, dtype=bool))
        index, margins = best_products(read_frame(engine, select(products)), [definition.product])
        reasons["suitability"] = index[0][tolerance] < 0
        margin = margins[0][tolerance]
        credit = definition.product in CREDIT_CATEGORIES
        reasons["credit_grade"] = credit & ~credit_grade_ok(rows["credit_grade"], credit_min_grade())
        reasons["credit_complaint"] = credit & _flag(rows, "credit_complaint")
    else:
        for reason in ("expired_assessment", "suitability", "credit_grade", "credit_complaint"):
            reasons[reason] = np.zeros(n, dtype=bool)
    return reasons, margin


def _first_reasons(reasons: dict[str, np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Rows left out (each for the first reason that applies) and the customers left out per reason."""
    taken = np.zeros(len(weights), dtype=bool)
    excluded = {}
    for reason in EXCLUSION_REASONS:
        first = reasons[reason] & ~taken
        excluded[reason] = int(weights[first].sum())
        taken |= first
    return taken, excluded


def _start(engine: Engine, definition: Definition, viewer: access.Viewer, run_id: int | None):
    access.require_rows(viewer)
    tag_names = _tag_names(engine, run_id)
    share = check_definition(engine, definition, tag_names)
    run_id = run_id if run_id is not None else current_run_id(engine)
    if run_id is None:
        raise CampaignError("no published refresh run: run `python -m analytics refresh` first",
                            key="errors.no_refresh_yet")
    return tag_names, share, int(run_id), _as_of(engine, run_id)


def _product_basis(engine: Engine, run_id: int, product: str) -> tuple[float, float, float]:
    """The category's expected balance and mean propensity at the run (the fallback for a customer
    without one), and the propensity horizon in months."""
    category = read_frame(engine, select(cross_sell_categories.c.expected_balance,
                                         cross_sell_categories.c.mean_propensity)
                          .where(cross_sell_categories.c.run_id == int(run_id),
                                 cross_sell_categories.c.category == product))
    balance = float(category["expected_balance"].iloc[0]) if not category.empty and pd.notna(
        category["expected_balance"].iloc[0]) else 0.0
    fallback = float(category["mean_propensity"].iloc[0]) if not category.empty and pd.notna(
        category["mean_propensity"].iloc[0]) else 0.0
    horizon = get_run_metrics(engine, int(run_id)).get("cross_sell.horizon_months")
    horizon = float(horizon) if horizon is not None else float(settings.get("CROSS_SELL_HORIZON_MONTHS"))
    return balance, fallback, horizon


def plan(engine: Engine, definition: Definition, *, viewer: access.Viewer, run_id: int | None = None) -> Plan:
    """The audience of ``definition`` in ``viewer``'s scope, its exclusions and expected outcome.

    Raises
    ------
    CampaignError
        For a bad definition (no name, unknown product category, control share outside 0-0.5),
        or when no refresh run is published.
    analytics.tags.TagRuleError
        For an invalid tag expression.
    analytics.access.AccessDenied
        For a viewer who may not see customer rows (the plan holds them).
    """
    tag_names, share, run_id, as_of = _start(engine, definition, viewer, run_id)
    rows = _audience_rows(engine, run_id, definition, viewer, tag_names, as_of)
    n = len(rows)
    assessed = None
    if definition.product is not None:
        age = (pd.Timestamp(as_of) - to_datetime(rows["risk_assessed_at"])).dt.days.to_numpy(dtype=float)
        valid_days = int(settings.get("RISK_ASSESSMENT_VALID_DAYS"))
        assessed = assessment_valid(rows["risk_tolerance"], age, valid_days)
    reasons, margin = _reasons(rows, definition, engine, assessed)
    taken, excluded = _first_reasons(reasons, np.ones(n, dtype=np.int64))
    eligible = rows.loc[~taken, ["customer_id", "branch_id", "relationship_manager", "value_tier", "rfm_segment",
                                 "propensities"]].reset_index(drop=True)
    expected_conversions = expected_margin = None
    if definition.product is not None:
        balance, fallback, horizon = _product_basis(engine, run_id, definition.product)
        eligible["propensity"] = [float(json.loads(v or "{}").get(definition.product, fallback))
                                  if isinstance(v, str) else fallback for v in eligible["propensities"]]
        eligible["value_if_converted"] = balance * margin[~taken]
        eligible["expected_value"] = eligible["propensity"] * eligible["value_if_converted"] * horizon / 12.0
        treated = 1.0 - share  # the expected treatment arm: a random share of the eligible
        expected_conversions = float(eligible["propensity"].sum() * treated)
        expected_margin = float(eligible["expected_value"].sum() * treated)
    else:
        eligible["propensity"] = eligible["value_if_converted"] = eligible["expected_value"] = np.nan
    return Plan(run_id, as_of, n, excluded, eligible[list(MEMBER_COLUMNS)], share, expected_conversions,
                expected_margin)


def plan_summary(engine: Engine, definition: Definition, *, viewer: access.Viewer, run_id: int | None = None) -> dict:
    """:meth:`Plan.summary` of :func:`plan` (the same figures), counted in the database.

    The page shows a plan's figures only, and reading every customer of the audience took 15 s at a
    million; here the database counts the customers by the values the exclusion reasons read
    (:func:`_audience_groups`), and the same reasons are applied to those groups. Raises as :func:`plan`.
    """
    tag_names, share, run_id, as_of = _start(engine, definition, viewer, run_id)
    fallback = 0.0
    if definition.product is not None:
        balance, fallback, horizon = _product_basis(engine, run_id, definition.product)
    groups = _audience_groups(engine, run_id, definition, viewer, tag_names, as_of, fallback)
    weights = groups["customers"].to_numpy(dtype=np.int64)
    assessed = _flag(groups, "assessment_recent") if definition.product is not None else None
    reasons, margin = _reasons(groups, definition, engine, assessed)
    taken, excluded = _first_reasons(reasons, weights)
    eligible = int(weights[~taken].sum())
    expected_conversions = expected_margin = None
    if definition.product is not None:
        propensity = pd.to_numeric(groups["propensity"], errors="coerce").fillna(0.0).to_numpy(dtype=float)[~taken]
        treated = 1.0 - share
        expected_conversions = float(propensity.sum() * treated)
        expected_margin = float((propensity * balance * margin[~taken] * horizon / 12.0).sum() * treated)
    return _figures(int(weights.sum()), eligible, excluded, share, expected_conversions, expected_margin)


def _tag_names(engine: Engine, run_id: int | None) -> list[str]:
    run_id = run_id if run_id is not None else current_run_id(engine)
    if run_id is None:
        return []
    return sx.tag_names_of(get_run_metrics(engine, run_id))


def _normalised_name(name: str) -> str:
    return " ".join((name or "").split())


def create_campaign(engine: Engine, definition: Definition, *, viewer: access.Viewer, owner: str,
                    seed: int | None = None, lang: str = "en") -> dict:
    """Plan ``definition`` and store it: the campaign row (frozen definition, run, owner, seed,
    counts, expectations) and one ``campaign_members`` row per eligible customer with its arm.

    Returns
    -------
    dict
        ``campaign_id``, ``name``, ``seed`` and the plan's :meth:`Plan.summary`.

    Raises
    ------
    CampaignError
        As :func:`plan`, and for a duplicate name (case and spacing ignored) or an empty audience.
    """
    name = _normalised_name(definition.name)
    definition = Definition(name, definition.filters, (definition.tags or "").strip() or None,
                            definition.product or None, definition.control_share, definition.message)
    with engine.connect() as conn:
        taken = conn.execute(select(campaigns.c.campaign_id)
                             .where(func.lower(campaigns.c.name) == name.lower())).first()
    if name and taken is not None:
        raise CampaignError(f"a campaign named {name!r} already exists (campaign {taken[0]})",
                            key="errors.campaign.name_taken", id=taken[0])
    planned = plan(engine, definition, viewer=viewer)
    if planned.eligible_count == 0:
        raise CampaignError(f"empty audience: none of the {planned.audience} selected customers is eligible "
                            f"(left out: {_reasons_words(planned.excluded)})", key="errors.campaign.empty_audience",
                            n=f"{planned.audience:,}")
    seed = secrets.randbits(32) if seed is None else int(seed)
    arms = assign_arms(planned.eligible["customer_id"], planned.control_share, seed)
    members = planned.eligible.set_index("customer_id").join(arms).reset_index()
    message = definition.message or default_message(members["rfm_segment"], members["value_tier"], lang)
    now = utcnow()
    treatment = members["arm"] == "treatment"
    row = {"name": name, "definition": definition.as_json(planned.control_share),
           "product_category": definition.product, "message": message, "source_run_id": planned.run_id,
           "owner": owner, "created_at": now, "starts_on": now.date(), "control_share": planned.control_share,
           "seed": seed, "eligible": planned.eligible_count,
           "excluded": json.dumps(planned.excluded, sort_keys=True),
           "expected_conversions": None if definition.product is None else float(members.loc[treatment,
                                                                                              "propensity"].sum()),
           "expected_margin": None if definition.product is None else float(members.loc[treatment,
                                                                                         "expected_value"].sum())}
    with engine.begin() as conn:
        campaign_id = conn.execute(insert(campaigns).values(**row)).inserted_primary_key[0]
        records = members[["customer_id", "arm", "propensity", "value_if_converted", "expected_value", "value_tier",
                           "rfm_segment"]].astype(object).where(members.notna(), None).to_dict("records")
        for lo in range(0, len(records), 5000):
            conn.execute(insert(campaign_members), [{"campaign_id": campaign_id, **r}
                                                    for r in records[lo:lo + 5000]])
    summary = planned.summary()
    summary.update(expected_conversions=row["expected_conversions"], expected_margin=row["expected_margin"])
    return {"campaign_id": int(campaign_id), "name": name, "seed": seed, "message": message, **summary}


def _reasons_words(excluded: dict[str, int]) -> str:
    parts = [f"{reason} {n}" for reason, n in excluded.items() if n]
    return ", ".join(parts) or "none"


__all__ = ["EXCLUSION_REASONS", "MAX_CONTROL_SHARE", "Definition", "Plan", "assessment_recent_sql", "assign_arms",
           "check_definition", "control_share", "control_size", "create_campaign", "plan", "plan_summary"]
