"""The refresh's ``campaigns`` stage: measures every campaign's outcome at each refresh.

A member (either arm, alike) converts when they opened a holding of the campaign's product category
on or after the campaign's start and before ``CROSS_SELL_HORIZON_MONTHS`` months later. The stage
writes ``campaign_outcomes`` only (one row per converted member, with the first such opening),
under the run's id; campaigns without a product category are measured from imported responses.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, insert, select

from analytics.cross_sell.config import setting_positive_int
from analytics.schema import campaign_members, campaign_outcomes, campaigns, holdings, products


def window_end(starts_on, months: int):
    """The first day after the measurement window that starts on ``starts_on``."""
    return (pd.Timestamp(starts_on) + pd.DateOffset(months=int(months))).date()


def campaigns_stage(ctx) -> None:
    engine = ctx.engine
    months = setting_positive_int("CROSS_SELL_HORIZON_MONTHS")
    g, m, h, p = campaigns.c, campaign_members.c, holdings.c, products.c
    with engine.connect() as conn:
        planned = conn.execute(select(g.campaign_id, g.product_category, g.starts_on)
                               .where(g.product_category.is_not(None))).all()
    converted = 0
    with engine.begin() as conn:
        for campaign_id, category, starts_on in planned:
            start = pd.Timestamp(starts_on).date()
            end = window_end(start, months)
            first = (select(ctx.run_id, m.campaign_id, m.customer_id, func.min(h.opened_on))
                     .select_from(campaign_members.join(holdings, h.customer_id == m.customer_id)
                                  .join(products, p.product_id == h.product_id))
                     .where(m.campaign_id == campaign_id, p.category == category, h.opened_on >= start,
                            h.opened_on < end)
                     .group_by(m.campaign_id, m.customer_id))
            converted += conn.execute(insert(campaign_outcomes).from_select(
                ["run_id", "campaign_id", "customer_id", "converted_on"], first)).rowcount or 0
    ctx.row_counts["campaign_outcomes"] = int(converted)
    ctx.put_metrics({"campaigns.measured": float(len(planned)), "campaigns.conversions": float(converted)})


__all__ = ["campaigns_stage", "window_end"]
