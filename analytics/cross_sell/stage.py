"""The refresh stage ``cross_sell``: rules, propensities and next-best products, written per run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, time

import numpy as np
import pandas as pd
from sqlalchemy import Date, bindparam, select, text

from analytics import settings
from analytics.cross_sell.association import association_rules, cooccurrence, itemset_text
from analytics.cross_sell.config import cross_sell_settings
from analytics.cross_sell.holdings import (
    _as_date,
    acquisitions,
    holding_balances,
    holding_matrix,
    pivot_holdings,
    product_categories,
)
from analytics.cross_sell.propensity import CrossSellPropensity
from analytics.cross_sell.recommend import (
    CREDIT_COMPLAINT_CATEGORIES,
    CREDIT_COMPLAINT_MONTHS,
    CampaignPools,
    ExpectedBalances,
    TierShares,
    assessment_valid,
    combine_summaries,
    propensity_json,
    recommend,
    rising_to_next_tier,
)
from analytics.features import add_months, month_end
from analytics.features_stage import feature_blocks, stage_feature_count, stage_features
from analytics.partitions import and_customers, id_ranges
from analytics.runs import Laps, RefreshContext, no_rows
from analytics.schema import (
    contacts,
    cross_sell_categories,
    cross_sell_cooccurrence,
    cross_sell_customer,
    cross_sell_funnel_cells,
    cross_sell_opportunities,
    cross_sell_rules,
    customers,
    next_best_product,
    products,
)
from analytics.segmentation import value_tier_thresholds, value_tiers
from analytics.store import bulk_insert, read_for_ids, read_frame

log = logging.getLogger(__name__)


def _write_rows(engine, table, rows: pd.DataFrame, chunk: int) -> int:
    """Write ``rows`` to ``table`` in one transaction of its own, ``chunk`` rows per insert."""
    with engine.begin() as conn:
        for start in range(0, len(rows), chunk):
            bulk_insert(engine, table, rows.iloc[start:start + chunk], conn=conn)
    return len(rows)


class _OfferStats:
    """The run's counts of stored offers, added up as they are written (a block at a time, then the
    pooled ones): every offer, up-sells, and the rank-1 offers' customers, up-sells and expected value."""

    def __init__(self) -> None:
        self.offers = self.up_sell = self.up_sell_first = self.customers_with_offer = 0
        self.next_best_expected_value = 0.0

    def add(self, offers: pd.DataFrame) -> None:
        if offers.empty:
            return
        up_sell = offers["offer_kind"].to_numpy(dtype=object) == "up_sell"
        first = offers["rank"].to_numpy() == 1
        self.offers += len(offers)
        self.up_sell += int(up_sell.sum())
        self.up_sell_first += int((up_sell & first).sum())
        self.customers_with_offer += int(offers["customer_id"][first].nunique())  # a block's customers are its own
        self.next_best_expected_value += float(offers["expected_value"].to_numpy(dtype=float)[first].sum())


def _closed_rows(closed_ids: pd.Index) -> pd.DataFrame:
    """The ``cross_sell_customer`` rows of closed customers: not candidates and not scored, so no
    offer and empty propensities (``'{}'``)."""
    return pd.DataFrame({
        "customer_id": closed_ids.to_numpy(dtype=object),
        "next_best_category": None, "next_best_product_id": None, "next_best_expected_value": np.nan,
        "next_best_offer_kind": None,
        "no_offer_reason": "closed", "propensities": "{}",
    }, index=range(len(closed_ids)))


def _customer_rows(per_customer: pd.DataFrame, propensity: pd.DataFrame) -> pd.DataFrame:
    """The ``cross_sell_customer`` rows of the scored customers (closed ones: :func:`_closed_rows`)."""
    scored = per_customer.reindex(propensity.index)
    rows = pd.DataFrame({
        "customer_id": propensity.index.to_numpy(dtype=object),
        "next_best_category": scored["next_best_category"].to_numpy(dtype=object),
        "next_best_product_id": scored["next_best_product_id"].to_numpy(dtype=object),
        "next_best_expected_value": scored["next_best_expected_value"].to_numpy(dtype=float),
        "next_best_offer_kind": scored["next_best_offer_kind"].to_numpy(dtype=object),
        "no_offer_reason": scored["no_offer_reason"].to_numpy(dtype=object),
        "propensities": propensity_json(propensity),
    })
    return rows


def credit_complainers(engine, month) -> pd.Index:
    """Customers with a complaint about credit (:data:`CREDIT_COMPLAINT_CATEGORIES`) in the
    :data:`CREDIT_COMPLAINT_MONTHS` calendar months ending with ``month`` (the run's month)."""
    k = contacts.c
    start = datetime.combine(add_months(month, 1 - CREDIT_COMPLAINT_MONTHS), time())
    end = datetime.combine(add_months(month, 1), time())
    frame = read_frame(engine, select(k.customer_id).distinct().where(
        k.kind == "complaint", k.category.in_(CREDIT_COMPLAINT_CATEGORIES),
        k.contacted_at >= start, k.contacted_at < end))
    return pd.Index(frame["customer_id"].astype(str))


def feature_cutoffs(as_of_month: date) -> list[date]:
    """The cut-offs the cross-sell stage reads features at: the training month
    (``CROSS_SELL_HORIZON_MONTHS`` before the run's month) and the run's month, in that order."""
    m0 = date(as_of_month.year, as_of_month.month, 1)
    return [add_months(m0, -cross_sell_settings()["horizon_months"]), m0]


def held_tiers(engine, as_of, categories: list[str], *, customers=None) -> pd.DataFrame:
    """Customer x category: the highest ``tier_rank`` among the customer's holdings open at the end
    of ``as_of`` (tiered products only; NaN where the customer holds no tiered product of it);
    ``customers``: a filter's customers alone (:func:`analytics.partitions.and_customers`)."""
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.customer_id, p.category, MAX(p.tier_rank) AS tier_rank
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE p.tier_rank IS NOT NULL AND h.opened_on <= :as_of AND (h.closed_on IS NULL OR h.closed_on > :as_of){only}
        GROUP BY h.customer_id, p.category
    """).bindparams(bindparam("as_of", type_=Date))
    frame = read_frame(engine, sql, {"as_of": _as_date(as_of), **params})
    frame["customer_id"] = frame["customer_id"].astype(str)
    wide = frame.pivot(index="customer_id", columns="category", values="tier_rank") if len(frame) else pd.DataFrame()
    return wide.reindex(columns=categories).astype(float)


def tier_upgrades(engine, after, until, categories: list[str], *, customers=None) -> pd.DataFrame:
    """Customer x category: the highest ``tier_rank`` opened in ``(after, until]`` (NaN: none);
    ``customers`` as for :func:`held_tiers`."""
    only, params = and_customers(customers, "h.customer_id", engine)
    sql = text(f"""
        SELECT h.customer_id, p.category, MAX(p.tier_rank) AS tier_rank
        FROM holdings h JOIN products p ON p.product_id = h.product_id
        WHERE p.tier_rank IS NOT NULL AND h.opened_on > :after AND h.opened_on <= :until{only}
        GROUP BY h.customer_id, p.category
    """).bindparams(bindparam("after", type_=Date), bindparam("until", type_=Date))
    frame = read_frame(engine, sql, {"after": _as_date(after), "until": _as_date(until), **params})
    frame["customer_id"] = frame["customer_id"].astype(str)
    wide = frame.pivot(index="customer_id", columns="category", values="tier_rank") if len(frame) else pd.DataFrame()
    return wide.reindex(columns=categories).astype(float)


def upgrade_rates(tiers_then: pd.DataFrame, opened: pd.DataFrame, value_tier: pd.Series) -> pd.DataFrame:
    """The observed tier-upgrade rate over the last horizon, the tier up-sell's propensity.

    Among customers whose highest held tier of a category was ``t`` at the training cut-off, the
    share who opened a better tier of it (rank above ``t``) by the as-of day: per category, held
    tier and value tier (at the cut-off). Returns rows ``category``, ``tier_rank``, ``value_tier``,
    ``holders``, ``upgraded`` and ``rate``, plus one row per (category, tier) over all value tiers
    (``value_tier`` ``None``) for a value tier without holders.
    """
    rows = []
    for category in tiers_then.columns:
        held = tiers_then[category].dropna()
        if held.empty:
            continue
        later = opened[category].reindex(held.index) if category in opened.columns else pd.Series(np.nan, held.index)
        up = later.to_numpy(dtype=float) > held.to_numpy(dtype=float)
        vt = value_tier.reindex(held.index).astype(object).to_numpy()
        frame = pd.DataFrame({"tier_rank": held.to_numpy(), "value_tier": vt, "up": up})
        for (t, v), g in frame.groupby(["tier_rank", "value_tier"], dropna=True):
            rows.append((category, float(t), v, len(g), int(g["up"].sum())))
        for t, g in frame.groupby("tier_rank"):
            rows.append((category, float(t), None, len(g), int(g["up"].sum())))
    out = pd.DataFrame(rows, columns=["category", "tier_rank", "value_tier", "holders", "upgraded"])
    out["rate"] = out["upgraded"] / out["holders"]
    return out


def combine_upgrade_rates(parts) -> pd.DataFrame:
    """:func:`upgrade_rates` of blocks of customers added up: the rows one call over all of them
    gives (holders and upgrades are counts, so the rates are the same), in another order."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return upgrade_rates(pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=object))
    keys = ["category", "tier_rank", "value_tier"]
    out = (pd.concat(frames, ignore_index=True).groupby(keys, dropna=False, sort=False)[["holders", "upgraded"]]
           .sum().reset_index())
    out["value_tier"] = out["value_tier"].astype(object).where(out["value_tier"].notna(), None)
    out["rate"] = out["upgraded"] / out["holders"]
    return out


def _stacked(parts, ids: pd.Index, categories: list[str]) -> pd.DataFrame:
    """Blocks' customer x category True/False frames as one frame over ``ids``, in their order."""
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=categories, dtype=bool)
    return frame.reindex(index=ids, columns=categories, fill_value=False).astype(bool)


def upgrade_propensity(tiers_now: pd.DataFrame, value_tier: pd.Series, rates: pd.DataFrame) -> pd.DataFrame:
    """Customer x category: the upgrade rate of the customer's held tier and value tier (:func:`upgrade_rates`;
    the tier's rate over all value tiers when theirs had no holders); NaN where no tier is held or
    no rate was observed for it."""
    out = pd.DataFrame(np.nan, index=tiers_now.index, columns=tiers_now.columns)
    vt = value_tier.reindex(tiers_now.index).astype(object)
    for category in tiers_now.columns:
        part = rates[rates["category"] == category]
        if part.empty:
            continue
        by_cell = {(r.tier_rank, r.value_tier): r.rate for r in part.itertuples() if not pd.isna(r.value_tier)}
        by_tier = {r.tier_rank: r.rate for r in part.itertuples() if pd.isna(r.value_tier)}
        held = tiers_now[category].to_numpy(dtype=float)
        values = [by_cell.get((t, v), by_tier.get(t, np.nan)) if not np.isnan(t) else np.nan
                  for t, v in zip(held, vt.to_numpy(), strict=True)]
        out[category] = np.asarray(values, dtype=float)
    return out


# The feature columns the guards, the value tiers and the rising-AUM up-sell read, for every customer.
GUARD_COLUMNS = ("aum_latest", "aum_change_pct_3m", "risk_tolerance", "risk_assessment_age_days",
                 "marketing_consent", "credit_grade")
# Customers a block of the stage's passes covers (a range of ids); the whole feature rows of a
# block are read, scored and given their offers SCORE_READ_ROWS customers at a time.
BLOCK_ROWS = 250_000
# Customers whose whole feature rows are read, scored and given their offers at a time. At a million
# customers, blocks of 100,000 took the stage to 1,378 MiB and blocks of 50,000 to 1,282 MiB.
SCORE_READ_ROWS = 50_000


def _owners(engine, ids: pd.Index) -> pd.DataFrame:
    """The branch and relationship manager of ``ids``, in their order, read for them alone (a block of
    customers, not the store)."""
    c = customers.c
    frame = read_for_ids(engine, select(c.customer_id, c.branch_id, c.relationship_manager), c.customer_id, ids)
    return frame.set_index("customer_id").reindex(ids)


def scored_blocks(ctx: RefreshContext, cutoff, model: CrossSellPropensity, ids: pd.Index,
                  exclude: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """``model.predict_proba`` of ``ids``' features at ``cutoff`` (``exclude``: their holdings),
    :data:`SCORE_READ_ROWS` customers at a time, in order: each row's score is its own, so the blocks
    are the frame a single call on every row gives, without every row's features in memory at once.
    No ids: one empty block."""
    for start in range(0, max(len(ids), 1), SCORE_READ_ROWS):
        block = ids[start:start + SCORE_READ_ROWS]
        rows = stage_features(ctx, cutoff, customer_ids=block).reindex(block)
        yield model.predict_proba(rows, exclude=exclude.reindex(block))


def cross_sell_stage(ctx: RefreshContext) -> None:
    """The refresh stage ``cross_sell``: rules, propensities, next-best products, written per run.

    Writes ``cross_sell_rules``, ``cross_sell_cooccurrence``, ``next_best_product``,
    ``cross_sell_customer`` (one row per customer, closed ones included), ``cross_sell_categories``,
    ``cross_sell_funnel_cells`` and ``cross_sell_opportunities`` under ``ctx.run_id`` in one transaction, and headline metrics (``cross_sell.*``) in ``run_metrics``.
    """
    if ctx.as_of_month is None:
        log.info("cross_sell: no activity data, nothing to do")
        ctx.put_metrics({"cross_sell.customers_scored": 0})
        return
    conf = cross_sell_settings()
    value_tier_thresholds()  # a bad tier setting fails here, before minutes of work
    chunk = int(settings.get("LOAD_CHUNK_ROWS"))
    lap = Laps()
    timings = lap.seconds

    engine = ctx.engine
    m0 = ctx.as_of_month
    as_of = month_end(m0)
    train_month, now = feature_cutoffs(m0)
    train_end = month_end(train_month)
    categories = product_categories(engine)
    if not categories:
        ctx.put_metrics({"cross_sell.customers_scored": 0})
        return
    products_frame = read_frame(engine, select(products.c.product_id, products.c.category, products.c.risk_level,
                                               products.c.annual_margin, products.c.tier_rank,
                                               products.c.balance_side)
                                .order_by(products.c.product_id))

    # Tiers exist in a few categories: the customer x category frames of held tiers cover those only.
    tiered = sorted(set(products_frame.loc[products_frame["tier_rank"].notna(), "category"]) & set(categories))
    # A rising AUM is money to place: the next tier's asset products (savings, wealth, funds,
    # insurance, gold), never its loans.
    assets = sorted(set(products_frame.loc[products_frame["balance_side"] == "asset", "category"]) & set(categories))
    # The stage goes through the customers BLOCK_ROWS at a time (ranges of ids), three times: the
    # training cut-off's block (the model's sample, its holdings and acquisitions, the tier-upgrade
    # counts), then the run month's twice: first what every offer depends on (the holding matrix
    # for the rules, the expected balances, each tier's products), then each block's scores and
    # offers. No frame of every customer is held (issue 16's flat memory).
    blocks = id_ranges(engine, BLOCK_ROWS)

    # The past cut-off: the model's sample (positions in the ascending order of ids, as one read
    # of every customer gives them), read a block at a time.
    model = CrossSellPropensity(sample_size=conf["sample_size"], random_state=0)
    population_then = stage_feature_count(ctx, train_month)
    positions = model.training_rows(population_then)
    sample: list = []
    held_then_parts, acquired_parts, rate_parts = [], [], []
    seen = 0
    for block, frame in feature_blocks(ctx, train_month, blocks, columns=["aum_latest"]):
        mine = positions[np.searchsorted(positions, seen):np.searchsorted(positions, seen + len(frame))] - seen
        ids = frame.index[mine]
        sample.extend(ids)
        held_then_parts.append(holding_matrix(engine, train_end, categories, customers=block).reindex(
            ids, fill_value=False))
        acquired_parts.append(acquisitions(engine, train_end, as_of, categories, customers=block).reindex(
            ids, fill_value=False))
        rate_parts.append(upgrade_rates(held_tiers(engine, train_end, tiered, customers=block),
                                        tier_upgrades(engine, train_end, as_of, tiered, customers=block),
                                        value_tiers(frame["aum_latest"]).astype(str)))
        seen += len(frame)
        del frame
    sample_ids = pd.Index(sample, dtype=object, name="customer_id")
    train_features = stage_features(ctx, train_month, customer_ids=sample_ids).reindex(sample_ids)
    held_then = _stacked(held_then_parts, sample_ids, categories)
    acquired = _stacked(acquired_parts, sample_ids, categories)
    rates = combine_upgrade_rates(rate_parts)
    lap("training_data")
    model.fit(train_features, acquired, exclude=held_then, population=population_then)
    del train_features, held_then, acquired, held_then_parts, acquired_parts, sample
    lap("fit")

    # The run month, first pass: the holding matrix of every holder (booleans without ids, for the
    # rules and the co-occurrence), the balances' medians and each value tier's holder rates.
    matrix_parts: list[np.ndarray] = []
    balance_medians = ExpectedBalances(categories)
    shares = TierShares(assets)
    for block, frame in feature_blocks(ctx, now, blocks, columns=["aum_latest"], with_status=True):
        balances = holding_balances(engine, as_of, customers=block)
        held_block = pivot_holdings(balances, categories)
        matrix_parts.append(held_block.to_numpy())
        tiers = value_tiers(frame["aum_latest"]).astype(str)
        balance_medians.add(balances, tiers)
        open_ids = frame.index[frame["status"].astype(object) != "closed"]
        shares.add(held_block.reindex(index=open_ids, columns=assets, fill_value=False), tiers.reindex(open_ids))
        del balances, held_block, frame
    held = pd.DataFrame(np.concatenate(matrix_parts) if matrix_parts else np.zeros((0, len(categories)), dtype=bool),
                        columns=categories)
    del matrix_parts
    rules = association_rules(held, conf["min_support"], conf["min_confidence"], max_len=3)
    cooc = cooccurrence(held)
    holders = held.sum(axis=0)
    matrix_customers = len(held)
    del held
    balance_by_tier = balance_medians.table()
    overall_balance = balance_medians.overall()
    next_tier_products = shares.categories()
    complainers = credit_complainers(engine, m0)
    lap("rules")

    # The run month, second pass: a block's customer rows and its customers' top_n offers are
    # theirs alone: written at once, each block in a transaction. Offers beyond a customer's top_n
    # depend on the campaign pools of every block: CampaignPools keeps those that may still be
    # pooled (at most campaign_size a category).
    run = {"run_id": ctx.run_id}
    pools = CampaignPools(top_n=conf["top_n"], campaign_size=conf["campaign_size"])
    parts, customer_rows, offer_stats = [], 0, _OfferStats()
    scored, rising_count, closed_count = 0, 0, 0
    for block, features in feature_blocks(ctx, now, blocks, columns=GUARD_COLUMNS, with_status=True):
        lap("features")
        tiers = value_tiers(features["aum_latest"]).astype(str)
        closed_ids = features.index[features["status"].astype(object) == "closed"]  # not candidates
        population = features[features["status"].astype(object) != "closed"]
        del features
        held_now = holding_matrix(engine, as_of, categories, customers=block).reindex(
            index=population.index, fill_value=False)
        customer_frame = pd.DataFrame({
            "risk_tolerance": population["risk_tolerance"],
            "assessment_valid": assessment_valid(population["risk_tolerance"],
                                                 population["risk_assessment_age_days"], conf["valid_days"]),
            "marketing_consent": population["marketing_consent"].astype(bool),
            "value_tier": tiers.reindex(population.index),
            "credit_grade": (population["credit_grade"].astype(object) if "credit_grade" in population.columns
                             else None),
            "credit_complaint": population.index.isin(complainers),
        }, index=population.index)
        tiers_now = held_tiers(engine, as_of, tiered, customers=block).reindex(population.index)
        # A rising AUM's up-sell: the next tier's products, for customers on their way into it.
        rising = pd.Series(rising_to_next_tier(population["aum_latest"], population["aum_change_pct_3m"],
                                               customer_frame["value_tier"], value_tier_thresholds()),
                           index=population.index)
        scored += len(population)
        rising_count += int(rising.sum())
        lap("recommend")
        for propensity in scored_blocks(ctx, now, model, population.index, held_now):
            lap("score")
            ids = propensity.index
            part = recommend(propensity, customer_frame.loc[ids], products_frame, balance_by_tier,
                             top_n=conf["top_n"], campaign_size=conf["campaign_size"], owners=_owners(engine, ids),
                             horizon_months=conf["horizon_months"],
                             credit_min_grade=conf["credit_min_grade"], held=held_now.loc[ids],
                             held_tier=tiers_now.loc[ids],
                             upgrade_propensity=upgrade_propensity(tiers_now.loc[ids],
                                                                   customer_frame["value_tier"].loc[ids], rates),
                             rising=rising.loc[ids], next_tier_products=next_tier_products)
            rows = _customer_rows(part.customers, propensity)
            offers = pools.add(part.offers)
            offer_stats.add(offers)
            # The offers' columns without the block's rows (a slice would keep its strings: no_rows).
            parts.append(replace(part, customers=None, offers=no_rows(part.offers)))
            del propensity, part
            lap("recommend")
            customer_rows += _write_rows(engine, cross_sell_customer, rows.assign(**run), chunk)
            _write_rows(engine, next_best_product, offers.assign(**run), chunk)
            del rows, offers
            lap("write")
        customer_rows += _write_rows(engine, cross_sell_customer, _closed_rows(closed_ids).assign(**run), chunk)
        closed_count += len(closed_ids)
        del population, customer_frame, held_now, tiers_now, rising, tiers
        lap("write")
    result = combine_summaries(parts)
    pooled = pools.extras()  # the offers beyond their customer's top_n that made a campaign pool
    offer_stats.add(pooled)
    del parts
    lap("recommend")

    report = model.report_.reindex(categories)
    funnel = result.funnel.set_index("category")
    category_rows = pd.DataFrame({
        "category": categories,
        "holders": [int(holders.get(c, 0)) for c in categories],
        **{col: funnel[col].reindex(categories).to_numpy() for col in
           ("non_holders", "excluded_expired_assessment", "excluded_suitability", "excluded_credit_grade",
            "excluded_credit_complaint", "eligible",
            "excluded_no_consent", "campaign_pool", "upsell_candidates", "upsell_eligible", "expected_value_total",
            "mean_propensity")},
        "expected_balance": [float(overall_balance[c]) if c in overall_balance.index else None for c in categories],
        "model": report["model"].fillna("none").to_numpy(),
        **{col: report[col].fillna(0).astype(int).to_numpy() for col in
           ("train_rows", "train_positives", "holdout_rows", "holdout_positives")},
        "holdout_auc": report["holdout_auc"].to_numpy(),
        "holdout_brier": report["holdout_brier"].to_numpy(),
    })
    rule_rows = pd.DataFrame({
        "rule_no": np.arange(1, len(rules) + 1),
        "antecedents": [itemset_text(s) for s in rules["antecedents"]],
        "consequents": [itemset_text(s) for s in rules["consequents"]],
        "antecedent_support": rules["antecedent support"].to_numpy(dtype=float),
        "consequent_support": rules["consequent support"].to_numpy(dtype=float),
        "support": rules["support"].to_numpy(dtype=float),
        "confidence": rules["confidence"].to_numpy(dtype=float),
        "lift": rules["lift"].to_numpy(dtype=float),
    })
    a, b = np.nonzero(np.triu(np.ones((len(categories), len(categories)), dtype=bool)))
    cooc_rows = pd.DataFrame({"category_a": np.asarray(categories, dtype=object)[a],
                              "category_b": np.asarray(categories, dtype=object)[b],
                              "customers": cooc.to_numpy()[a, b]})
    lap("summaries")  # the categories, rules and co-occurrence rows

    with engine.begin() as conn:
        bulk_insert(engine, cross_sell_rules, rule_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_cooccurrence, cooc_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_categories, category_rows.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_opportunities, result.opportunities.assign(**run), conn=conn)
        bulk_insert(engine, cross_sell_funnel_cells, result.funnel_cells.assign(**run), conn=conn)
        for start in range(0, len(pooled), chunk):
            bulk_insert(engine, next_best_product, pooled.iloc[start:start + chunk].assign(**run), conn=conn)
    lap("write")

    ctx.row_counts.update({"cross_sell_rules": len(rule_rows), "next_best_product": offer_stats.offers,
                           "cross_sell_customer": customer_rows,
                           "cross_sell_categories": len(category_rows),
                           "cross_sell_opportunities": len(result.opportunities),
                           "cross_sell_funnel_cells": len(result.funnel_cells)})
    for name, seconds in timings.items():
        ctx.metrics[f"cross_sell_seconds.{name}"] = seconds
    metrics: dict[str, float | str | None] = {
        "cross_sell.matrix_customers": matrix_customers,
        "cross_sell.rules": len(rule_rows),
        "cross_sell.min_support": conf["min_support"],
        "cross_sell.min_confidence": conf["min_confidence"],
        "cross_sell.horizon_months": conf["horizon_months"],
        "cross_sell.train_month": train_month.isoformat(),
        "cross_sell.as_of": as_of.isoformat(),
        "cross_sell.campaign_size": conf["campaign_size"],
        "cross_sell.top_n": conf["top_n"],
        "cross_sell.customers_scored": scored,
        "cross_sell.customers_with_offer": offer_stats.customers_with_offer,
        "cross_sell.up_sell_offers": offer_stats.up_sell,
        "cross_sell.up_sell_first_offers": offer_stats.up_sell_first,
        "cross_sell.rising_aum_customers": rising_count,
        "cross_sell.next_best_expected_value_total": offer_stats.next_best_expected_value,
        "cross_sell.top_rule_lift": float(rules["lift"].iloc[0]) if len(rules) else None,
    }
    for upper, cats in next_tier_products.items():  # what a rising AUM is offered as an up-sell, by tier
        metrics[f"cross_sell.next_tier_products.{upper}"] = ",".join(cats)
    for reason, count in result.no_offer.items():
        metrics[f"cross_sell.no_offer.{reason}"] = count
    metrics["cross_sell.no_offer.closed"] = closed_count
    for _, row in category_rows.iterrows():
        metrics[f"cross_sell.model.{row['category']}"] = str(row["model"])
        if row["holdout_auc"] is not None and not pd.isna(row["holdout_auc"]):
            metrics[f"cross_sell.holdout_auc.{row['category']}"] = float(row["holdout_auc"])
    ctx.put_metrics(metrics)
    log.info("cross_sell: %d rules, %d customers scored, %d offers, timings %s", len(rule_rows), scored,
             offer_stats.offers, timings)


__all__ = ["BLOCK_ROWS", "GUARD_COLUMNS", "SCORE_READ_ROWS", "combine_upgrade_rates", "cross_sell_stage", "feature_cutoffs", "scored_blocks", "held_tiers", "tier_upgrades", "upgrade_propensity", "upgrade_rates"]
