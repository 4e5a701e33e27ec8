"""The ``aggregates`` stage sums the run's customers a block at a time (issue 16): the blocks added up
are the rows one pass over every customer gives, in ``segment_summary``, ``segment_cube`` and
``segment_cube_filters``, and the same money totals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics import aggregates
from analytics.features import month_end
from analytics.refresh import latest_activity_month
from analytics.runs import Laps, RefreshContext, get_run_metrics
from analytics.segment_explorer import (
    attribute_rows,
    cube_rows,
    customer_attributes,
    segmented_clv_edges,
    segmented_customers,
    tag_names_of,
)
from analytics.store import read_frame

SUMS = ["customers", "aum_total", "annual_margin_total", "clv_margin_1y_total", "clv_margin_3y_total",
        "clv_margin_5y_total"]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in frame.columns if c not in SUMS and c != "sort_order"]
    return frame.sort_values(keys).reset_index(drop=True)


def _latest_run(engine) -> int:
    return int(read_frame(engine, "SELECT max(run_id) AS r FROM refresh_runs WHERE status = 'succeeded'")["r"].iloc[0])


def _one_pass(engine, run_id, as_of_month):
    """The stage's rows as it made them before the blocks: every customer in one frame."""
    customers = segmented_customers(engine, run_id)
    tag_names = tag_names_of(get_run_metrics(engine, run_id))
    summary = aggregates.segment_summary_rows(customers, tag_names)
    cube = cube_rows(customers, as_of_year=as_of_month.year, tag_names=tag_names)
    attributes = customer_attributes(engine, month_end(as_of_month))
    by_attribute = attribute_rows(customers.merge(attributes, on="customer_id", how="left"),
                                  as_of_year=as_of_month.year, tag_names=tag_names)
    money = {c: float(customers[c].sum()) for c in ("annual_margin", "clv_margin_1y", "clv_margin_3y",
                                                    "clv_margin_5y")}
    return summary, cube, by_attribute, money, len(customers)


@pytest.mark.parametrize("block_rows", [700, 10**9])
def test_blocks_added_up_equal_one_pass_over_every_customer(demo_engine, block_rows):
    run_id = _latest_run(demo_engine)
    as_of_month = latest_activity_month(demo_engine)
    ctx = RefreshContext(engine=demo_engine, run_id=run_id, as_of_month=as_of_month)
    summary, cube, by_attribute, money, customers = _one_pass(demo_engine, run_id, as_of_month)
    assert customers > 3 * 700  # several blocks, the last one short
    got = aggregates._sum_blocks(ctx, Laps(), block_rows=block_rows)
    assert got is not None
    b_summary, b_cube, b_attribute, b_money = got
    pd.testing.assert_frame_equal(_sorted(b_summary), _sorted(summary), check_exact=False, rtol=1e-12)
    assert list(b_summary.columns) == list(summary.columns)
    pd.testing.assert_frame_equal(_sorted(b_cube), _sorted(cube), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(_sorted(b_attribute), _sorted(by_attribute), check_exact=False, rtol=1e-12)
    assert b_money == pytest.approx(money, rel=1e-12)
    # every customer counted once per dimension, whatever the split
    assert (b_summary.groupby("dimension")["customers"].sum().drop("tag") == customers).all()


def test_clv_band_edges_come_from_the_whole_run(demo_engine):
    run_id = _latest_run(demo_engine)
    customers = segmented_customers(demo_engine, run_id)
    from analytics import lifecycle

    edges = segmented_clv_edges(demo_engine, run_id)
    for years in lifecycle.CLV_HORIZONS_YEARS:
        np.testing.assert_array_equal(edges[years], lifecycle.band_edges(customers[f"clv_margin_{years}y"].to_numpy()))


def test_sort_orders_by_value_are_ranked_again_over_every_block():
    # Block 1 holds branches B2 and B3, block 2 holds B1: each ranks its own from 0.
    columns = ["dimension", "value", "customers", *(f"{c}_total" for c in aggregates.SUMMARY_TOTALS), "sort_order"]
    zeros = [0.0] * len(aggregates.SUMMARY_TOTALS)
    one = pd.DataFrame([["branch_id", "B2", 1, *zeros, 0], ["branch_id", "B3", 2, *zeros, 1],
                        ["value_tier", "mass", 3, *zeros, 0]], columns=columns)
    two = pd.DataFrame([["branch_id", "B1", 4, *zeros, 0], ["value_tier", "mass", 4, *zeros, 0]], columns=columns)
    out = aggregates.combine_summary_rows([one, two]).set_index(["dimension", "value"])
    assert out.loc[("branch_id", "B1"), "sort_order"] == 0
    assert out.loc[("branch_id", "B2"), "sort_order"] == 1
    assert out.loc[("branch_id", "B3"), "sort_order"] == 2
    assert out.loc[("value_tier", "mass"), "customers"] == 7


def test_the_stage_writes_what_one_pass_gives(blocks_store):
    """End to end: a refresh whose aggregates ran in blocks of 700 stored the one-pass rows and totals."""
    from sqlalchemy import text

    from analytics.store import make_engine

    engine = make_engine(blocks_store["url"])
    try:
        run_id = blocks_store["run_id"]
        as_of_month = latest_activity_month(engine)
        summary, cube, by_attribute, money, _ = _one_pass(engine, run_id, as_of_month)
        for table, expected in (("segment_summary", summary), ("segment_cube", cube),
                                ("segment_cube_filters", by_attribute)):
            stored = read_frame(engine, text(f"SELECT * FROM {table} WHERE run_id = :r"), {"r": run_id})
            stored = stored.drop(columns="run_id")[list(expected.columns)]
            pd.testing.assert_frame_equal(_sorted(stored), _sorted(expected), check_exact=False, rtol=1e-9,
                                          check_dtype=False, obj=table)
        metrics = get_run_metrics(engine, run_id)
        assert metrics["annual_margin_total"] == pytest.approx(money["annual_margin"], rel=1e-12)
        assert metrics["clv_margin_5y_total"] == pytest.approx(money["clv_margin_5y"], rel=1e-12)
    finally:
        engine.dispose()
