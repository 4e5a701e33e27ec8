"""The campaign planner's error: a refused definition or a bad request, in one line."""

from analytics.errors import AnalyticsError


class CampaignError(AnalyticsError):
    """A campaign definition or request that cannot be carried out (the message names the problem)."""


__all__ = ["CampaignError"]
