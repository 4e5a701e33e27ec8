"""Campaigns (营销活动): plan an audience with a control group, store it, measure the uplift.

* :mod:`.plan`: audience, exclusions by reason, expected outcome, seeded control group, storing.
* :mod:`.results`: the campaign list, the treatment arm's export, results with the uplift and its
  Newcombe 95 % interval (:mod:`.stats`), by segment with small cells suppressed.
* :mod:`.stage`: the refresh stage that measures conversions (``campaign_outcomes``).
* :mod:`.playbooks`: the segment playbooks of ``data/playbooks.yaml``.
"""

from analytics.campaigns.errors import CampaignError
from analytics.campaigns.plan import (
    EXCLUSION_REASONS,
    MAX_CONTROL_SHARE,
    NAME_MAX,
    Definition,
    Plan,
    assign_arms,
    control_share,
    control_size,
    create_campaign,
    plan,
    plan_summary,
)
from analytics.campaigns.playbooks import default_message, playbook_table, playbooks
from analytics.campaigns.results import (
    campaign_results,
    get_campaign,
    list_campaigns,
    results_json,
    segment_uplift,
    treatment_export,
)
from analytics.campaigns.stage import campaigns_stage
from analytics.campaigns.stats import newcombe_interval, uplift, wilson_interval

__all__ = ["EXCLUSION_REASONS", "MAX_CONTROL_SHARE", "NAME_MAX", "CampaignError", "Definition", "Plan", "assign_arms", "campaign_results",
           "campaigns_stage", "control_share", "control_size", "create_campaign", "default_message",
           "get_campaign", "list_campaigns", "newcombe_interval", "plan", "plan_summary", "playbook_table", "playbooks",
           "results_json", "segment_uplift", "treatment_export", "uplift", "wilson_interval"]
