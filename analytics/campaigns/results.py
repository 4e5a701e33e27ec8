"""Reading campaigns back: the list, the treatment arm's export, and the results with the uplift.

A member **converts** when the refresh found them acquiring the campaign's product category within
``CROSS_SELL_HORIZON_MONTHS`` of its start (``campaign_outcomes`` of the published run; both arms
alike), or when an imported response (``campaign_responses``) says ``converted``. Results read the
members in the viewer's scope only; a segment whose treatment or control arm has fewer than
``MIN_CELL_CUSTOMERS`` members shows no rates (too few to say anything, and too few to show).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, case, func, or_, select

from analytics import access
from analytics.campaigns.errors import CampaignError
from analytics.campaigns.stats import uplift
from analytics.consent import live_consent_condition
from analytics.runs import current_run_id
from analytics.schema import campaign_members, campaign_outcomes, campaign_responses, campaigns, customers
from analytics.store import read_frame

LIST_COLUMNS = ("campaign_id", "campaign_name", "product_category", "owner", "created_at", "starts_on", "control_share",
                "members", "treatment", "control", "expected_conversions", "expected_margin")
EXPORT_COLUMNS = ("customer_id", "branch_id", "relationship_manager", "value_tier", "rfm_segment", "propensity",
                  "expected_value")
SEGMENT_DIMENSIONS = ("value_tier", "rfm_segment")


def _members_in_scope(viewer: access.Viewer):
    m = campaign_members.c
    return campaign_members.join(customers, customers.c.customer_id == m.customer_id), viewer.scope_condition(customers)


def list_campaigns(engine: Engine, *, viewer: access.Viewer) -> pd.DataFrame:
    """Every campaign with members in ``viewer``'s scope (aggregates: counts of its members in scope),
    newest first. A scoped viewer's expected figures are its members' share of the treatment arm."""
    m, g = campaign_members.c, campaigns.c
    source, in_scope = _members_in_scope(viewer)
    treated = m.arm == "treatment"
    counts = (select(m.campaign_id, func.count().label("members"),
                     func.sum(case((treated, 1), else_=0)).label("treatment"),
                     func.sum(case((treated, 0), else_=1)).label("control"),
                     func.sum(case((treated, m.propensity), else_=0.0)).label("expected_conversions"),
                     func.sum(case((treated, m.expected_value), else_=0.0)).label("expected_margin"))
              .select_from(source).where(in_scope).group_by(m.campaign_id).subquery())
    frame = read_frame(engine, select(g.campaign_id, g.name.label("campaign_name"), g.product_category, g.owner, g.created_at, g.starts_on,
                                      g.control_share, counts.c.members, counts.c.treatment, counts.c.control,
                                      counts.c.expected_conversions, counts.c.expected_margin)
                       .select_from(campaigns.join(counts, counts.c.campaign_id == g.campaign_id))
                       .order_by(g.created_at.desc(), g.campaign_id.desc()))
    no_product = frame["product_category"].isna()
    frame.loc[no_product, ["expected_conversions", "expected_margin"]] = np.nan
    if viewer.aggregate_only:
        frame = access.suppress_small_cells(frame, count="members",
                                            sums=["treatment", "control", "expected_conversions", "expected_margin"])
        frame = frame.drop(columns=["members_suppressed"])
    return frame[list(LIST_COLUMNS)].reset_index(drop=True)


def get_campaign(engine: Engine, campaign: int | str) -> dict:
    """One campaign's row by id or name (definition and exclusions parsed from JSON).

    Raises
    ------
    CampaignError
        For an unknown campaign.
    """
    g = campaigns.c
    stmt = select(campaigns)
    if isinstance(campaign, int) or (isinstance(campaign, str) and campaign.strip().isdigit()):
        stmt = stmt.where(g.campaign_id == int(campaign))
    else:
        stmt = stmt.where(func.lower(g.name) == " ".join(str(campaign).split()).lower())
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        raise CampaignError(f"no campaign {campaign!r}")
    out = dict(row)
    out["definition"] = json.loads(out["definition"])
    out["excluded"] = json.loads(out["excluded"])
    return out


def treatment_export(engine: Engine, campaign_id: int, *, viewer: access.Viewer) -> tuple[pd.DataFrame, dict]:
    """The treatment arm for the bank's execution system, keyed by ``customer_id``: its members in
    ``viewer``'s scope with a live marketing consent now, released (no contact details: those are
    joined downstream). Returns the frame and ``{"consent": n}``, the members left out because their
    consent was withdrawn since the campaign was created."""
    access.require_rows(viewer)
    m, c = campaign_members.c, customers.c
    source, in_scope = _members_in_scope(viewer)
    consent = live_consent_condition(m.customer_id, "marketing")
    where = [m.campaign_id == int(campaign_id), m.arm == "treatment", in_scope]
    rows = read_frame(engine, select(m.customer_id, c.branch_id, c.relationship_manager, m.value_tier, m.rfm_segment,
                                     m.propensity, m.expected_value)
                      .select_from(source).where(*where, consent).order_by(m.customer_id))
    with engine.connect() as conn:
        left_out = conn.execute(select(func.count()).select_from(source).where(*where, ~consent)).scalar()
    return access.release(rows[list(EXPORT_COLUMNS)], viewer), {"consent": int(left_out or 0)}


def _member_outcomes(engine: Engine, campaign_id: int, run_id: int | None, viewer: access.Viewer) -> pd.DataFrame:
    """Members in scope with arm, frozen segment, value of a conversion and whether they converted."""
    m, o, r = campaign_members.c, campaign_outcomes.c, campaign_responses.c
    source, in_scope = _members_in_scope(viewer)
    source = (source.outerjoin(campaign_outcomes, and_(o.campaign_id == m.campaign_id, o.customer_id == m.customer_id,
                                                       o.run_id == (run_id if run_id is not None else -1)))
              .outerjoin(campaign_responses, and_(r.campaign_id == m.campaign_id, r.customer_id == m.customer_id)))
    converted = case((or_(o.customer_id.is_not(None), r.outcome == "converted"), 1), else_=0)
    return read_frame(engine, select(m.customer_id, m.arm, m.value_tier, m.rfm_segment, m.value_if_converted,
                                     converted.label("converted"))
                      .select_from(source).where(m.campaign_id == int(campaign_id), in_scope))


def _arm_counts(frame: pd.DataFrame) -> tuple[int, int, int, int]:
    t = frame["arm"] == "treatment"
    conv = pd.to_numeric(frame["converted"]).fillna(0).astype(int)
    return int(conv[t].sum()), int(t.sum()), int(conv[~t].sum()), int((~t).sum())


def campaign_results(engine: Engine, campaign: int | str, *, viewer: access.Viewer,
                     run_id: int | None = None) -> dict:
    """Conversion per arm, the uplift in percentage points with its Newcombe 95 % interval, the
    incremental yearly margin (uplift times the treatment arm's value of a conversion, with the
    interval's bounds), and the uplift by value tier and RFM segment (frozen at creation).

    Aggregates only; a small arm (fewer than ``MIN_CELL_CUSTOMERS`` members in scope) shows no rates.
    """
    info = get_campaign(engine, campaign)
    run_id = run_id if run_id is not None else current_run_id(engine)
    members = _member_outcomes(engine, info["campaign_id"], run_id, viewer)
    k = access.min_cell_customers()
    x_t, n_t, x_c, n_c = _arm_counts(members)
    small = 0 < min(n_t, n_c) < k or (viewer.aggregate_only and 0 < n_t + n_c < k)
    result = uplift(x_t, n_t, x_c, n_c).as_dict()
    value = pd.to_numeric(members.loc[members["arm"] == "treatment", "value_if_converted"], errors="coerce")
    has_value = info["product_category"] is not None and value.notna().any()
    treated_value = float(value.fillna(0.0).sum())
    if small:
        result.update({key: None for key in ("treatment_rate", "control_rate", "uplift_pp", "ci_low_pp", "ci_high_pp",
                                             "treatment_converted", "control_converted")})
        if viewer.aggregate_only:
            result.update(treatment=None, control=None)
    incremental = {"incremental_margin": None, "incremental_margin_low": None, "incremental_margin_high": None}
    if has_value and result["uplift_pp"] is not None:
        incremental = {"incremental_margin": result["uplift_pp"] / 100 * treated_value,
                       "incremental_margin_low": result["ci_low_pp"] / 100 * treated_value,
                       "incremental_margin_high": result["ci_high_pp"] / 100 * treated_value}
    return {"campaign_id": int(info["campaign_id"]), "name": info["name"], "product_category": info["product_category"],
            "starts_on": str(info["starts_on"])[:10], "control_share": info["control_share"], "seed": info["seed"],
            "source_run_id": info["source_run_id"], "measured_run_id": run_id, "small_arms_suppressed": bool(small),
            **result, **incremental,
            "by_segment": {d: segment_uplift(members, d, k) for d in SEGMENT_DIMENSIONS}}


def segment_uplift(members: pd.DataFrame, dimension: str, k: int) -> pd.DataFrame:
    """The uplift per value of ``dimension``; a value with an arm of fewer than ``k`` members has its
    counts and rates hidden (``suppressed`` True)."""
    columns = ["value", "treatment", "treatment_converted", "control", "control_converted", "treatment_rate",
               "control_rate", "uplift_pp", "ci_low_pp", "ci_high_pp", "suppressed"]
    rows = []
    values = members[dimension].astype(object).where(members[dimension].notna(), "(missing)")
    for value, part in members.groupby(values, sort=True):
        x_t, n_t, x_c, n_c = _arm_counts(part)
        row = {"value": value, **uplift(x_t, n_t, x_c, n_c).as_dict()}
        row["suppressed"] = bool(min(n_t, n_c) < k)
        if row["suppressed"]:
            row.update({c: None for c in columns[1:-1]})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def results_json(engine: Engine, *, viewer: access.Viewer) -> list[dict]:
    """Every campaign's results in scope, segments as lists of records (for ``campaign results --json``)."""
    out = []
    for campaign_id in list_campaigns(engine, viewer=viewer)["campaign_id"]:
        result = campaign_results(engine, int(campaign_id), viewer=viewer)
        result["by_segment"] = {d: json.loads(f.to_json(orient="records")) for d, f in result["by_segment"].items()}
        out.append(result)
    return out


__all__ = ["EXPORT_COLUMNS", "LIST_COLUMNS", "campaign_results", "get_campaign", "list_campaigns", "results_json",
           "segment_uplift", "treatment_export"]
