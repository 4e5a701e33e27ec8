"""The cluster cube: each cluster's standardised features summed by filter cell, so the Segments
page's cluster profile follows its filters (mean over kept cells = the filtered customers' mean)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import segment_explorer as sx
from analytics.refresh import run_refresh
from analytics.segmentation import BehaviourClusterer
from tests.analytics import store_rows
from tests.analytics.test_segment_explorer import BRANCH_CITY, _filtered, customer_frames, filters_strategy


def test_cluster_cube_rows_by_hand():
    frame = pd.DataFrame({"branch_id": ["B1", "B1", "B3"], "birth_year": [1990.0, 1991.0, None],
                          "value_tier": ["mass", "mass", "wealth"], "cluster_name": ["savers", "savers", "savers"]})
    z = pd.DataFrame({"age": [1.0, 3.0, -2.0], "aum": [0.5, np.nan, 1.5]})
    rows = sx.cluster_cube_rows(frame, z, as_of_year=2026)
    got = {(r.feature, r.branch_id, r.age_band, r.value_tier): (r.customers, r.z_sum) for r in rows.itertuples()}
    assert got == {("age", "B1", "30-44", "mass"): (2, 4.0), ("aum", "B1", "30-44", "mass"): (2, 0.5),
                   ("age", "B3", "unknown", "wealth"): (1, -2.0), ("aum", "B3", "unknown", "wealth"): (1, 1.5)}
    cube = sx.Cube.from_rows(sx.cube_rows(frame.assign(rfm_r=1, rfm_f=1, rfm_segment="Lost", lifecycle_stage="new",
                                                       **dict.fromkeys(sx.MONEY_COLUMNS, 0.0), tags=""),
                                          as_of_year=2026), BRANCH_CITY)
    profile = sx.cluster_profiles(rows, cube, sx.Filters(branches=("B1",)))
    assert profile.to_dict("records") == [{"cluster_name": "savers", "customers": 2, "z_age": 2.0, "z_aum": 0.25}]
    assert sx.cluster_profiles(rows, cube, sx.Filters(tiers=("private",))).empty
    with pytest.raises(ValueError):
        sx.cluster_cube_rows(frame, z.iloc[:2], as_of_year=2026)


@settings(max_examples=100, deadline=None)
@given(frame=customer_frames(), filters=filters_strategy, seed=st.integers(0, 2**16))
def test_filtered_profile_equals_the_filtered_customers_mean(frame, filters, seed):
    rng = np.random.default_rng(seed)
    z = pd.DataFrame(rng.normal(size=(len(frame), 3)), columns=["age", "aum", "txn"], index=frame.index)
    rows = sx.cluster_cube_rows(frame, z, as_of_year=2026)
    cube = sx.Cube.from_rows(sx.cube_rows(frame, as_of_year=2026), BRANCH_CITY)
    got = sx.cluster_profiles(rows, cube, filters).set_index("cluster_name")
    view = _filtered(frame, filters)
    if view.empty:
        assert got.empty
        return
    want = z.loc[view.index].groupby(view["cluster_name"]).mean().add_prefix("z_")
    assert sorted(got.index) == sorted(want.index)
    assert got["customers"].to_dict() == view["cluster_name"].value_counts().to_dict()
    np.testing.assert_allclose(got.loc[want.index, want.columns].to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-9)


def test_the_refresh_writes_a_cluster_cube_matching_the_stored_profiles(engine):
    store_rows.fill(engine)
    run_id = run_refresh(engine)
    rows = sx.read_cluster_cube(engine, run_id)
    assert not rows.empty
    cube = sx.read_cube(engine, run_id)
    whole = sx.cluster_profiles(rows, cube).set_index("cluster_name")
    from analytics.segmentation import read_cluster_profiles

    stored = read_cluster_profiles(engine, run_id).set_index("cluster_name")
    assert whole["customers"].to_dict() == stored["customers"].astype(int).to_dict()
    z_cols = [c for c in stored.columns if c.startswith("z_")]
    np.testing.assert_allclose(whole.loc[stored.index, z_cols].to_numpy(dtype=float),
                               stored[z_cols].to_numpy(dtype=float), atol=1e-5)


def test_standardised_features_average_to_the_profiles():
    rng = np.random.default_rng(3)
    from analytics.segmentation import CLUSTER_FEATURES

    frame = pd.DataFrame(rng.gamma(2.0, 1000.0, size=(400, len(CLUSTER_FEATURES))), columns=list(CLUSTER_FEATURES))
    model = BehaviourClusterer(random_state=0, k_range=(2, 3)).fit(frame)
    z = model.standardised(frame)
    means = z.groupby(model.labels_).mean()
    for cluster, row in model.profiles_.iterrows():
        for feature in CLUSTER_FEATURES:
            assert means.loc[cluster, feature] == pytest.approx(row[f"z_{feature}"], abs=1e-9)
