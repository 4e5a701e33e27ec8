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

:func:`acquisition_truth` replays the generator's random streams (the same seed, size and as-of
day give the same customers) up to the holdings, without writing anything, so a test can compare a
model's propensities and expected values with the truth.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from analytics.demo.generator import DEFAULT_AS_OF, _day, _Generator, chunk_plan
from analytics.features import add_months, month_end

# Product category -> the generator's holding draw. A demand deposit is everyone's from the day they
# open: nobody is at risk of acquiring one, so it has no truth.
CATEGORY_DRAWS = {
    "time_deposit": "td", "wealth_management": "wm", "fund": "fund", "insurance": "insurance",
    "credit_card": "card", "mortgage": "mortgage", "consumer_loan": "consumer_loan", "precious_metal": "gold",
}


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
    as_of = as_of or DEFAULT_AS_OF
    gen = _Generator(customers, months, seed, as_of)
    month = date(as_of.year, as_of.month, 1)
    window_after = _day(month_end(add_months(month, -horizon_months)))  # the training month's last day
    window_end = _day(month_end(month))
    sizes, quotas = chunk_plan(customers)
    parts, start = [], 0
    for i, m in enumerate(sizes):
        m = int(m)
        # The chunk's steps up to the holdings, in the generator's order: the same random numbers.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
        c = gen._identity(rng, m)
        gen._inject_identity_defects(rng, c, m, {k: int(v[i]) for k, v in quotas.items()})
        gen._profile(rng, c, m)
        gen._churn_plan(rng, c, m)
        hold = gen._holdings(rng, c, m)
        columns = {}
        for category, draw in CATEGORY_DRAWS.items():
            q = np.asarray(hold["prob"][draw], dtype=float)
            lo = hold["window"]["consumer_loan_lo" if draw == "consumer_loan" else "lo"]
            hi = hold["window"]["hi"]
            if draw == "consumer_loan":
                q = np.where(lo <= hi, q, 0.0)  # no loan taken out after a churner's decline began
            span = np.maximum(hi - lo, 0) + 1
            before = np.clip(np.minimum(hi, window_after) - lo + 1, 0, span)
            inside = np.clip(np.minimum(hi, window_end) - np.maximum(lo, window_after + 1) + 1, 0, span)
            # 0/0 (NaN) only where the customer held the category for certain before the window:
            # not at risk of acquiring it, so no truth.
            with np.errstate(invalid="ignore", divide="ignore"):
                columns[category] = q * (inside / span) / (1.0 - q * (before / span))
        ids = np.strings.add("C", (100_000_001 + start + np.arange(m)).astype(str))
        parts.append(pd.DataFrame(columns, index=pd.Index(ids.astype(object), name="customer_id")))
        start += m
    return pd.concat(parts)


__all__ = ["CATEGORY_DRAWS", "acquisition_truth"]
