"""The demo's truth: each customer's true probability of acquiring each product category.

The generator decides whether a customer holds a category with a known probability (its value
tier, risk tolerance, age, income band; see ``_Generator._holdings``) and, if so, opens it on a day
drawn uniformly between the customer's opening day and the last day they could open products (the
start of a churner's decline, else the as-of day). So the true probability that a customer who did
not hold category ``k`` at the end of the training month acquires it in the horizon after it is::

    P = q * w / (1 - q * b)

``q`` the probability of holding ``k`` at all, ``w`` the share of the customer's opening days that
fall in the horizon window and ``b`` the share before it (the customer held it already). It leaves
out the conversions of the demo's past campaigns (:mod:`analytics.demo.campaigns`), a few per mille.

The card up-sell has a truth of its own (:func:`upgrade_truth`): a classic or gold card holder
upgrades to the next tier with a known probability ``q`` on a day uniform between the card's
opening and their last opening day, so the same formula gives the probability of moving up in the
window for a holder who had not upgraded before it. The demo never upgrades twice: a customer who
upgraded (to gold) has a truth of 0.

:func:`acquisition_truth` replays the generator's random streams (the same seed, size and as-of
day give the same customers) up to the holdings, without writing anything, so a test can compare a
model's propensities and expected values with the truth.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from analytics.demo.generator import DEFAULT_AS_OF, _day, _Generator, chunk_plan
from analytics.demo.reference import PRODUCT_INDEX
from analytics.features import add_months, month_end

# Product category -> the generator's holding draw. A demand deposit is everyone's from the day they
# open: nobody is at risk of acquiring one, so it has no truth.
CATEGORY_DRAWS = {
    "time_deposit": "td", "wealth_management": "wm", "fund": "fund", "insurance": "insurance",
    "credit_card": "card", "mortgage": "mortgage", "consumer_loan": "consumer_loan", "precious_metal": "gold",
}


def _window_share(q, lo, hi, window_after, window_end):
    """P(the event of probability ``q``, on a day uniform in [lo, hi], falls in the window | not before it)."""
    span = np.maximum(hi - lo, 0) + 1
    before = np.clip(np.minimum(hi, window_after) - lo + 1, 0, span)
    inside = np.clip(np.minimum(hi, window_end) - np.maximum(lo, window_after + 1) + 1, 0, span)
    with np.errstate(invalid="ignore", divide="ignore"):
        return q * (inside / span) / (1.0 - q * (before / span))


def _replay(customers: int, months: int, seed: int, as_of: date | None, horizon_months: int):
    """Each chunk's customers, holdings and card upgrades, replayed, with the window's days."""
    as_of = as_of or DEFAULT_AS_OF
    gen = _Generator(customers, months, seed, as_of)
    month = date(as_of.year, as_of.month, 1)
    window_after = _day(month_end(add_months(month, -horizon_months)))  # the training month's last day
    window_end = _day(month_end(month))
    sizes, quotas = chunk_plan(customers)
    start = 0
    for i, m in enumerate(sizes):
        m = int(m)
        # The chunk's steps up to the holdings, in the generator's order: the same random numbers.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
        c = gen._identity(rng, m)
        gen._inject_identity_defects(rng, c, m, {k: int(v[i]) for k, v in quotas.items()})
        gen._profile(rng, c, m)
        gen._churn_plan(rng, c, m)
        hold = gen._holdings(rng, c, m)
        upgrade = gen._card_upgrades(np.random.default_rng(np.random.SeedSequence([seed, 7, i])), c, hold, m)
        ids = np.strings.add("C", (100_000_001 + start + np.arange(m)).astype(str))
        yield pd.Index(ids.astype(object), name="customer_id"), hold, upgrade, window_after, window_end
        start += m


def upgrade_truth(customers: int, *, months: int = 24, seed: int = 42, as_of: date | None = None,
                  horizon_months: int = 3) -> pd.Series:
    """Each card holder's true probability of moving up a tier, for the card up-sell offered at the
    as-of day: for a holder of a classic or gold card who has not upgraded, P(upgrading in the
    horizon window | not before it) (as :func:`acquisition_truth`); 0 for one who upgraded from
    classic to gold (the demo upgrades once); NaN for everyone else (no card, or platinum). Same
    arguments as :func:`acquisition_truth`."""
    parts = []
    for ids, hold, up, window_after, window_end in _replay(customers, months, seed, as_of, horizon_months):
        can = hold["has"]["card"] & (up["prob"] > 0)
        p = _window_share(up["prob"], up["lo"], up["hi"], window_after, window_end)
        to_gold = can & up["upgraded"] & (hold["prod"]["card"] == PRODUCT_INDEX["P021"])
        values = np.where(can & ~up["upgraded"], p, np.where(to_gold, 0.0, np.nan))
        parts.append(pd.Series(values, index=ids, name="credit_card"))
    return pd.concat(parts)


def acquisition_truth(customers: int, *, months: int = 24, seed: int = 42, as_of: date | None = None,
                      horizon_months: int = 3) -> pd.DataFrame:
    """Each customer's true P(acquire the category within the horizon | not held at its start).

    Parameters
    ----------
    customers, months, seed, as_of
        The arguments the demo store was generated with (:func:`analytics.demo.generate`).
    horizon_months : int
        The propensity horizon (``CROSS_SELL_HORIZON_MONTHS``): the window is the months after the
        end of the training month (the as-of month minus the horizon) up to the as-of month's end,
        as in the cross-sell stage.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``, one column per category of :data:`CATEGORY_DRAWS`; NaN where the
        customer held the category for certain before the window (not at risk).
    """
    parts = []
    for ids, hold, _, window_after, window_end in _replay(customers, months, seed, as_of, horizon_months):
        columns = {}
        for category, draw in CATEGORY_DRAWS.items():
            q = np.asarray(hold["prob"][draw], dtype=float)
            lo = hold["window"]["consumer_loan_lo" if draw == "consumer_loan" else "lo"]
            hi = hold["window"]["hi"]
            if draw == "consumer_loan":
                q = np.where(lo <= hi, q, 0.0)  # no loan taken out after a churner's decline began
            # 0/0 (NaN) only where the customer held the category for certain before the window:
            # not at risk of acquiring it, so no truth.
            columns[category] = _window_share(q, lo, hi, window_after, window_end)
        parts.append(pd.DataFrame(columns, index=ids))
    return pd.concat(parts)


__all__ = ["CATEGORY_DRAWS", "acquisition_truth", "upgrade_truth"]
