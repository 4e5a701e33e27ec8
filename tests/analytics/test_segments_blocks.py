"""The ``segments`` stage goes through the customers a block at a time (issue 16): the run's
statistics (RFM quintile boundaries, clusters, stage retention) from a narrow read of every
customer, then each block's rows. The rows it stores are those one pass over every customer gives,
and the quintile boundaries score any block as the whole set scores it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import lifecycle, tags
from analytics.features import read_features
from analytics.refresh import latest_activity_month
from analytics.runs import get_run_metrics
from analytics.segment_explorer import cluster_cube_rows, combine_cluster_cube
from analytics.segmentation import stage as segments
from analytics.segmentation.clusters import BehaviourClusterer, cluster_settings
from analytics.segmentation.rfm import QuintileBoundaries, quintile_keys, quintile_scores, rfm_table
from analytics.segmentation.tiers import value_tier_thresholds, value_tiers
from analytics.store import read_frame


def _rank_scores(primary: np.ndarray, secondary: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The definition: rank by (primary, secondary, smaller id higher), score 1 + floor(5 rank / n)."""
    n = len(primary)
    index_order = np.empty(n, dtype=np.int64)
    index_order[np.argsort(ids, kind="stable")] = np.arange(n)
    order = np.lexsort((-index_order, secondary, primary))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return 1 + (5 * rank) // n


measures = st.lists(st.one_of(st.integers(0, 4).map(float), st.just(np.nan), st.floats(-1e6, 1e6)),
                    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(values=measures, data=st.data())
def test_quintile_boundaries_score_every_block_as_the_ranks_do(values, data):
    n = len(values)
    ties = data.draw(st.lists(st.sampled_from([0.0, 1.0, np.nan]), min_size=n, max_size=n))
    higher = data.draw(st.booleans())
    ids = np.array([f"C{i:05d}" for i in data.draw(st.permutations(range(n)))], dtype=object)
    primary, secondary = quintile_keys(values, higher_is_better=higher, tiebreak=ties)
    expected = _rank_scores(primary, secondary, ids)
    # The in-memory scores, on a frame in any row order.
    series = quintile_scores(pd.Series(values, index=ids), higher_is_better=higher,
                             tiebreak=pd.Series(ties, index=ids))
    assert series.tolist() == expected.tolist()
    # The boundaries of every customer (rows by id) score any block of them the same.
    by_id = np.argsort(ids, kind="stable")
    bounds = QuintileBoundaries.of(primary[by_id], secondary[by_id])
    cut = data.draw(st.integers(0, n))
    block = by_id[:cut]
    got = bounds.scores(primary[block], secondary[block], np.arange(cut))
    assert got.tolist() == expected[block].tolist()
    # Equal shares: each score holds n/5 customers, give or take one.
    counts = np.bincount(expected, minlength=6)[1:]
    assert counts.max() - counts.min() <= 1


def test_quintile_boundaries_by_hand():
    # Ten customers 1..10 (id order), value = position: scores 1,1,2,2,3,3,4,4,5,5.
    primary, secondary = quintile_keys(np.arange(10.0))
    bounds = QuintileBoundaries.of(primary, secondary)
    assert bounds.position == (2, 4, 6, 8) and bounds.n == 10
    assert bounds.scores(primary, secondary, np.arange(10)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # All tied: the smaller id ranks higher, so the last ids score 1.
    flat = np.zeros(10)
    tied = QuintileBoundaries.of(flat, flat)
    assert tied.scores(flat, flat, np.arange(10)).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_cluster_cube_of_blocks_equals_one_call():
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({
        "branch_id": rng.choice(["B1", "B2", None], n), "birth_year": rng.choice([1960.0, 1985.0, np.nan], n),
        "value_tier": rng.choice(["mass", "affluent"], n), "cluster_name": rng.choice(["a", "b", "c"], n)})
    z = pd.DataFrame(rng.normal(size=(n, 3)), columns=["f2", "f1", "f3"])
    whole = cluster_cube_rows(frame, z, as_of_year=2026)
    total = None
    for start, stop in ((0, 90), (90, 91), (91, 250), (250, n)):
        total = combine_cluster_cube(total, cluster_cube_rows(frame.iloc[start:stop], z.iloc[start:stop],
                                                              as_of_year=2026))
    pd.testing.assert_frame_equal(total, whole, check_exact=False, rtol=1e-12, check_dtype=False)


def _latest_run(engine) -> int:
    return int(read_frame(engine, "SELECT max(run_id) AS r FROM refresh_runs WHERE status = 'succeeded'")["r"].iloc[0])


def _one_pass(engine, run_id, as_of_month):
    """``customer_segments`` and ``cluster_cube`` as one pass over every customer makes them (the
    stage before its blocks): every function on the whole feature frame."""
    (now,) = segments.feature_cutoffs(as_of_month)
    features = read_features(engine, run_id, now, with_status=True)
    thresholds = value_tier_thresholds()
    clusterer = BehaviourClusterer(random_state=segments.CLUSTER_RANDOM_STATE, affluent_aum=thresholds[0],
                                   **cluster_settings()).fit(features)
    out = rfm_table(features)
    out["aum"] = features["aum_latest"]
    out["value_tier"] = value_tiers(features["aum_latest"], thresholds).astype(str)
    out["cluster"] = clusterer.labels_
    out["cluster_name"] = pd.Series(clusterer.labels_, index=out.index).map(clusterer.names_)
    out["tags"] = segments._tag_text(tags.evaluate_tags(features, tags.load_tag_rules()))
    stages = lifecycle.lifecycle_stage(features)
    out["lifecycle_stage"] = stages.astype(str)
    retention = lifecycle.observed_stage_retention(engine, as_of_month, stages)
    margin = lifecycle.customer_annual_margin(engine).reindex(out.index).fillna(0.0)
    out["annual_margin"] = margin
    out["retention_rate"] = stages.astype(str).map(retention["annual_retention"]).astype(float).fillna(0.0)
    for years in lifecycle.CLV_HORIZONS_YEARS:
        out[f"clv_margin_{years}y"] = lifecycle.margin_clv(margin, out["retention_rate"],
                                                           discount_rate=lifecycle.clv_discount_rate(), years=years)
    cells = out[["value_tier", "cluster_name"]].assign(branch_id=features["branch_id"].to_numpy(),
                                                       birth_year=segments.birth_years(engine).reindex(out.index))
    cube = cluster_cube_rows(cells, clusterer.standardised(features), as_of_year=as_of_month.year)
    return out.reset_index(), cube, retention, clusterer


def test_the_stage_in_blocks_stores_what_one_pass_gives(blocks_store, monkeypatch):
    """A refresh whose segments ran in blocks of 700 customers, with a cluster sample of 500 drawn
    across the blocks, stored the one-pass rows, cube, profiles and retention."""
    from sqlalchemy import text

    from analytics.store import make_engine
    from tests.conftest import BLOCK_TEST_CLUSTER_SAMPLE, BLOCK_TEST_ROWS

    engine = make_engine(blocks_store["url"])
    monkeypatch.setenv("CLUSTER_SAMPLE_SIZE", str(BLOCK_TEST_CLUSTER_SAMPLE))
    try:
        run_id = blocks_store["run_id"]
        as_of_month = latest_activity_month(engine)
        rows, cube, retention, clusterer = _one_pass(engine, run_id, as_of_month)
        assert len(rows) > 3 * BLOCK_TEST_ROWS > BLOCK_TEST_CLUSTER_SAMPLE  # several blocks, the last one short
        stored = read_frame(engine, text("SELECT * FROM customer_segments WHERE run_id = :r ORDER BY customer_id"),
                            {"r": run_id}).drop(columns="run_id")
        expected = rows[list(stored.columns)].sort_values("customer_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(stored, expected, check_dtype=False, check_exact=False, rtol=1e-12)
        stored_cube = read_frame(engine, text("SELECT * FROM cluster_cube WHERE run_id = :r"), {"r": run_id})
        keys = ["feature", "cluster_name", "branch_id", "age_band", "value_tier"]
        pd.testing.assert_frame_equal(
            stored_cube[list(cube.columns)].sort_values(keys).reset_index(drop=True),
            cube.sort_values(keys).reset_index(drop=True), check_dtype=False, check_exact=False, rtol=1e-9)
        profiles = read_frame(engine, text("SELECT cluster, cluster_name, customers FROM cluster_profiles "
                                           "WHERE run_id = :r ORDER BY cluster"), {"r": run_id})
        assert profiles["cluster_name"].tolist() == clusterer.profiles_["name"].tolist()
        assert profiles["customers"].tolist() == clusterer.profiles_["customers"].tolist()
        metrics = get_run_metrics(engine, run_id)
        for stage, row in retention.iterrows():
            assert metrics[f"lifecycle_retention.{stage}"] == pytest.approx(row["annual_retention"], rel=1e-12)
            assert metrics[f"lifecycle_retention_source.{stage}"] == row["source"]
        assert metrics["segments.customers"] == len(rows)
    finally:
        engine.dispose()
