"""The refresh stage ``customer_features``: every cut-off's feature frame, built once per run.

Segments, cross-sell and churn all start from :func:`analytics.features.customer_features`, at the
run's month and at past cut-offs (cross-sell's training month, churn's training and hold-out
cut-offs). Each of them declares the cut-offs it reads through one function of ``as_of_month``
(:func:`analytics.segmentation.stage.feature_cutoffs`, :func:`analytics.cross_sell.stage.feature_cutoffs`,
:func:`analytics.churn.labels.feature_cutoffs`) and uses that same function to pick what it reads, so
what is built and what is read cannot drift apart. This stage takes the union of those cut-offs
(the same month asked by two stages is built once: with the default 3-month horizons, cross-sell's
training month is churn's hold-out cut-off), builds each frame in the database
(:func:`~analytics.features.customer_features`, its aggregations pushed down to SQL) a range of
customer ids at a time (:data:`BUILD_BLOCK_ROWS`), writes each block under the run
(:func:`~analytics.features.store_feature_rows`, then the set's
:func:`~analytics.features.store_feature_set`) and lets it go before the next, so one block's
frame is in memory at a time. Later stages read them with :func:`stage_features`.

The rows are run-keyed result tables, so a failed run's are deleted and old runs' pruned with every
other result (:func:`analytics.refresh.result_tables`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import date

import numpy as np
import pandas as pd

from analytics import settings
from analytics.features import (
    FeatureError,
    customer_features,
    product_columns,
    read_features,
    store_feature_rows,
    store_feature_set,
)
from analytics.partitions import id_ranges
from analytics.runs import Laps, RefreshContext

log = logging.getLogger(__name__)

# Customers built and written at a time, a range of ids each (analytics.partitions.id_ranges): what the
# stage holds is one block's frame, however many customers the store has. A million customers'
# frame and its aggregations peaked at 1.6 GB (49 s for one cut-off); in four ranges, read through
# the customer_id indexes, the same cut-off peaked at 0.5 GB and took 42 s.
BUILD_BLOCK_ROWS = 250_000

# A stage's declaration: the cut-offs (first days of months) it reads features at, given the run's month.
CutoffFunction = Callable[[date], Iterable[date]]


def needed_cutoffs(as_of_month: date, declarations: Iterable[CutoffFunction]) -> list[date]:
    """The union of the declared cut-offs, as first days of months, oldest first."""
    months = {date(c.year, c.month, 1) for declare in declarations for c in declare(as_of_month)}
    return sorted(months)


def features_stage_for(declarations: Iterable[CutoffFunction]) -> Callable[[RefreshContext], None]:
    """The ``customer_features`` stage for these declarations (analytics/refresh.py passes the stages')."""
    declarations = tuple(declarations)

    def customer_features_stage(ctx: RefreshContext) -> None:
        """Build and store the features at every declared cut-off under ``ctx.run_id``."""
        if ctx.as_of_month is None:
            log.info("customer_features: no activity data, nothing to build")
            ctx.put_metrics({"features.cutoffs": 0})
            return
        chunk = int(settings.get("LOAD_CHUNK_ROWS"))
        cutoffs = needed_cutoffs(ctx.as_of_month, declarations)
        lap = Laps()
        # One block: no filter at all (a small store, and a store without customers).
        ranges = id_ranges(ctx.engine, BUILD_BLOCK_ROWS)
        ranges = ranges if len(ranges) > 1 else [None]
        rows = 0
        for cutoff in cutoffs:
            built, products = 0, None
            for block in ranges:
                frame = customer_features(ctx.engine, cutoff, with_status=True, customers=block)
                lap(f"build_{cutoff:%Y_%m}")
                if products is None:
                    products = product_columns(frame)
                elif product_columns(frame) != products:  # they come from the products table: never
                    raise FeatureError(f"The product columns changed between blocks of {cutoff:%Y-%m}")
                with ctx.engine.begin() as conn:
                    built += store_feature_rows(conn, ctx.run_id, cutoff, frame, chunk_rows=chunk)
                lap(f"write_{cutoff:%Y_%m}")
                del frame
            with ctx.engine.begin() as conn:
                store_feature_set(conn, ctx.run_id, cutoff, customers=built, products=products or [])
            rows += built
        ctx.row_counts["customer_features"] = rows
        ctx.metrics.update({f"features_seconds.{name}": s for name, s in lap.seconds.items()})
        ctx.put_metrics({"features.cutoffs": len(cutoffs), "features.rows": rows,
                         "features.cutoff_months": ",".join(f"{c:%Y-%m}" for c in cutoffs)})

    return customer_features_stage


def stage_features(ctx: RefreshContext, cutoff, *, with_status: bool = False, customer_ids=None,
                   columns=None, customers=None) -> pd.DataFrame:
    """The features of this run at ``cutoff``, as the ``customer_features`` stage stored them: what a
    later stage reads instead of building them again (see :func:`analytics.features.read_features`:
    ``customer_ids``, ``customers`` and ``columns`` read a part of the frame)."""
    return read_features(ctx.engine, ctx.run_id, cutoff, with_status=with_status, customer_ids=customer_ids,
                         columns=columns, customers=customers)


def stage_feature_count(ctx: RefreshContext, cutoff) -> int:
    """Customers this run stored features for at ``cutoff``."""
    from sqlalchemy import func, select

    from analytics.features import _as_month
    from analytics.schema import customer_features

    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(customer_features).where(
            customer_features.c.run_id == ctx.run_id, customer_features.c.cutoff == _as_month(cutoff))).scalar() or 0)


def feature_blocks(ctx: RefreshContext, cutoff, blocks: Iterable, *, columns=None,
                   with_status: bool = False) -> Iterator[tuple[object, pd.DataFrame]]:
    """Each block's features at ``cutoff`` (``blocks``: ranges of ids in ascending order, from
    :func:`analytics.partitions.id_ranges`), as ``(block, frame)``: the rows of every block, one
    after another, are every customer in ascending order of ids (checked: the positions a stage
    gives rows across blocks rely on it)."""
    last = None
    for block in blocks:
        frame = stage_features(ctx, cutoff, with_status=with_status, columns=columns, customers=block)
        if len(frame):
            if last is not None and not frame.index[0] > last:
                raise RuntimeError(f"The blocks of customer ids are not in ascending order at {frame.index[0]!r}")
            last = frame.index[-1]
        yield block, frame


def feature_array(ctx: RefreshContext, cutoff, blocks: Iterable, columns, *, with_status: bool = False,
                  each_block: Callable | None = None) -> tuple[np.ndarray, list[int]]:
    """``columns`` (numeric) of every customer the run stored features for at ``cutoff``, read a
    block at a time (:func:`feature_blocks`) into one float array without ids (rows in ascending
    order of ids), and each block's customers. ``each_block(block, frame)`` sees every block's
    frame (with ``status`` when ``with_status``) as it is read."""
    columns = list(columns)
    total = stage_feature_count(ctx, cutoff)
    values = np.empty((total, len(columns)))
    sizes: list[int] = []
    for block, frame in feature_blocks(ctx, cutoff, blocks, columns=columns, with_status=with_status):
        filled = sum(sizes)
        if filled + len(frame) > total:
            raise RuntimeError("The run's features changed while they were read")
        values[filled:filled + len(frame)] = frame[columns].to_numpy(dtype=float)
        if each_block is not None:
            each_block(block, frame)
        sizes.append(len(frame))
    if sum(sizes) != total:
        raise RuntimeError("The run's features changed while they were read")
    return values, sizes


__all__ = ["CutoffFunction", "feature_array", "feature_blocks", "features_stage_for", "needed_cutoffs", "stage_feature_count",
           "stage_features"]
