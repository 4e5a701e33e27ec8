"""Cross-sell: the holding matrix, association rules, propensity models, next-best product, campaigns.

Imports go one way: :mod:`~analytics.cross_sell.holdings` (the holding matrix read from the store),
:mod:`~analytics.cross_sell.association` (co-occurrence and association rules),
:mod:`~analytics.cross_sell.propensity` (the propensity models) and
:mod:`~analytics.cross_sell.recommend` (next-best products under the guards) at the bottom;
:mod:`~analytics.cross_sell.stage` (the refresh stage) and :mod:`~analytics.cross_sell.read` (the
readers and campaign lists) above them; :mod:`~analytics.cross_sell.config` (the checked settings)
and :mod:`~analytics.cross_sell.errors` sit under all of them. Each module's docstring explains its part.
"""

from analytics.cross_sell.association import RULE_COLUMNS, association_rules, cooccurrence, itemset_text
from analytics.cross_sell.config import cross_sell_settings
from analytics.cross_sell.errors import CrossSellError
from analytics.cross_sell.holdings import acquisitions, holding_balances, holding_matrix, product_categories
from analytics.cross_sell.propensity import CrossSellPropensity, propensity_columns
from analytics.cross_sell.read import (
    campaign_list,
    first_offer_mix,
    read_categories,
    read_cooccurrence,
    read_customer_offers,
    read_opportunities,
    read_rules,
    scope_offers,
)
from analytics.cross_sell.recommend import (
    CREDIT_CATEGORIES,
    EXCLUSION_REASONS,
    Recommendations,
    assessment_valid,
    best_products,
    credit_grade_ok,
    expected_balances,
    propensity_json,
    recommend,
    rising_to_next_tier,
    tier_categories,
)
from analytics.cross_sell.stage import cross_sell_stage
from analytics.risk import risk_number

__all__ = [
    "CREDIT_CATEGORIES", "EXCLUSION_REASONS", "RULE_COLUMNS", "CrossSellError", "CrossSellPropensity", "Recommendations",
    "acquisitions", "assessment_valid", "association_rules", "best_products", "campaign_list", "cooccurrence",
    "credit_grade_ok", "cross_sell_settings", "first_offer_mix", "cross_sell_stage", "expected_balances", "holding_balances", "holding_matrix",
    "itemset_text", "product_categories", "propensity_columns", "propensity_json", "read_categories",
    "read_cooccurrence", "read_customer_offers", "read_opportunities", "read_rules", "recommend", "rising_to_next_tier",
    "risk_number", "tier_categories",
    "scope_offers",
]
