"""The stages read only what they need (issue 16: memory that does not grow with the whole feature
frame): churn its samples by id, a narrow frame for the rate dimensions and the reason coder's
reference a block of customers at a time, in two passes; segments a narrow frame; cross-sell its scores a block of
customers at a time. Each gives exactly what the whole frame gave."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.churn import stage as churn_stage
from analytics.churn.labels import churn_settings, cutoff_states
from analytics.churn.reasons import ReasonCoder, ReferenceCounter
from analytics.features import read_features
from analytics.runs import current_run_id
from analytics.store import read_frame


def test_a_reference_merged_from_column_blocks_is_the_whole_frames():
    frame = pd.DataFrame({"a": [1.0, 2.0, 10.0], "flag": [True, True, False], "kind": ["x", "y", "y"],
                          "b": [np.nan, 4.0, 6.0]})
    whole = ReasonCoder().fit(frame)
    merged = ReasonCoder().fit(frame[["a", "flag"]]).reference_ | ReasonCoder().fit(frame[["kind", "b"]]).reference_
    coder = ReasonCoder.from_reference(merged, list(frame.columns))
    assert coder.reference_ == whole.reference_ == {"a": 2.0, "flag": True, "kind": "y", "b": 5.0}
    assert coder.columns_ == whole.columns_ and coder.groups_.keys() == whole.groups_.keys()
    with pytest.raises(ValueError, match="No reference value for c"):
        ReasonCoder.from_reference(merged, ["a", "c"])


column_values = st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(np.nan), st.floats(-1e3, 1e3)),
                         min_size=1, max_size=80)


@settings(max_examples=120, deadline=None)
@given(numbers=column_values, data=st.data())
def test_a_reference_counted_in_blocks_is_the_whole_frames(numbers, data):
    n = len(numbers)
    frame = pd.DataFrame({
        "x": numbers,
        "flag": data.draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "kind": data.draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n)),
        "empty": np.nan,
    })
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    edges_from = frame.sample(data.draw(st.integers(1, n)), random_state=0)  # any sample: same result
    counter = ReferenceCounter(list(frame.columns), edges_from, bins=data.draw(st.integers(1, 8)))
    blocks = [frame.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    for block in blocks:
        counter.first(block)
    for block in blocks:
        counter.second(block)
    got, whole = counter.reference(), ReasonCoder().fit(frame).reference_
    assert got.keys() == whole.keys()
    for col, value in whole.items():
        assert (got[col] == value) or (pd.isna(value) and pd.isna(got[col])), (col, got[col], value)


def test_the_stage_reads_give_what_the_whole_frame_gives(demo_engine, monkeypatch):
    run_id = current_run_id(demo_engine)
    as_of = read_frame(demo_engine, "SELECT text_value FROM run_metrics WHERE run_id = :r AND "
                                    "name = 'churn.as_of_month'", {"r": run_id})["text_value"].iloc[0]
    ctx = SimpleNamespace(engine=demo_engine, run_id=run_id)
    whole = read_features(demo_engine, run_id, as_of)
    states = cutoff_states(demo_engine, as_of, churn_settings()["horizon_months"]).reindex(whole.index)
    active = whole.index[states.fillna("closed").to_numpy() == "active"]
    assert 0 < len(active) < len(whole)
    monkeypatch.setattr(churn_stage, "REFERENCE_BLOCK_ROWS", 700)  # several blocks, the last one short
    counter = ReferenceCounter(list(whole.columns), whole.sample(200, random_state=1), bins=16)
    blocks = churn_stage._reason_coder(ctx, as_of, churn_settings()["horizon_months"], counter)
    direct = ReasonCoder().fit(whole.loc[active])
    assert blocks.columns_ == direct.columns_
    assert blocks.reference_.keys() == direct.reference_.keys()
    for col, value in direct.reference_.items():
        assert (blocks.reference_[col] == value) or (pd.isna(value) and pd.isna(blocks.reference_[col])), col
    narrow = read_features(demo_engine, run_id, as_of, columns=churn_stage._rate_inputs())
    pd.testing.assert_frame_equal(churn_stage._rate_dimensions(narrow), churn_stage._rate_dimensions(whole))


def test_the_segments_narrow_frame_gives_what_the_whole_frame_gives(demo_engine):
    from analytics import lifecycle, tags
    from analytics.segmentation import rfm_table
    from analytics.segmentation.clusters import BehaviourClusterer
    from analytics.segmentation.stage import CLUSTER_RANDOM_STATE, segment_columns

    run_id = current_run_id(demo_engine)
    as_of = read_frame(demo_engine, "SELECT text_value FROM run_metrics WHERE run_id = :r AND "
                                    "name = 'churn.as_of_month'", {"r": run_id})["text_value"].iloc[0]
    rules = tags.load_tag_rules() + [tags.make_rule("has_fund", "products_fund > 0 and age >= 30")]
    whole = read_features(demo_engine, run_id, as_of, with_status=True)
    columns = segment_columns(rules, list(whole.columns))
    assert "products_fund" in columns and "products_mortgage" in columns and len(columns) < len(whole.columns) - 10
    narrow = read_features(demo_engine, run_id, as_of, with_status=True, columns=columns)
    pd.testing.assert_frame_equal(rfm_table(narrow), rfm_table(whole))
    pd.testing.assert_frame_equal(tags.evaluate_tags(narrow, rules), tags.evaluate_tags(whole, rules))
    pd.testing.assert_series_equal(lifecycle.lifecycle_stage(narrow), lifecycle.lifecycle_stage(whole))
    fitted = [BehaviourClusterer(random_state=CLUSTER_RANDOM_STATE, affluent_aum=50_000.0).fit(frame)
              for frame in (narrow, whole)]
    assert (fitted[0].labels_ == fitted[1].labels_).all() and fitted[0].names_ == fitted[1].names_
    pd.testing.assert_frame_equal(fitted[0].profiles_, fitted[1].profiles_)


def test_cross_sell_scores_read_in_blocks_are_the_whole_frames(demo_engine, monkeypatch):
    from analytics.cross_sell import holding_matrix, product_categories
    from analytics.cross_sell import stage as xsell_stage
    from analytics.cross_sell.propensity import CrossSellPropensity

    run_id = current_run_id(demo_engine)
    as_of = read_frame(demo_engine, "SELECT text_value FROM run_metrics WHERE run_id = :r AND "
                                    "name = 'churn.as_of_month'", {"r": run_id})["text_value"].iloc[0]
    ctx = SimpleNamespace(engine=demo_engine, run_id=run_id)
    whole = read_features(demo_engine, run_id, as_of)
    categories = product_categories(demo_engine)
    held = holding_matrix(demo_engine, as_of, categories).reindex(whole.index, fill_value=False)
    rng = np.random.default_rng(0)
    acquired = pd.DataFrame(rng.random((len(whole), len(categories))) < 0.2, index=whole.index, columns=categories)
    model = CrossSellPropensity(random_state=0).fit(whole, acquired, exclude=held)
    monkeypatch.setattr(xsell_stage, "SCORE_READ_ROWS", 700)  # several blocks, the last one short
    ids = whole.index[::2]
    blocks = list(xsell_stage.scored_blocks(ctx, as_of, model, ids, held.reindex(ids)))
    assert len(blocks) == -(-len(ids) // 700) and all(len(b) == 700 for b in blocks[:-1])
    pd.testing.assert_frame_equal(pd.concat(blocks), model.predict_proba(whole.loc[ids], exclude=held.reindex(ids)))
    empty = list(xsell_stage.scored_blocks(ctx, as_of, model, ids[:0], held.iloc[:0]))
    assert len(empty) == 1 and empty[0].empty and list(empty[0].columns) == list(blocks[0].columns)
    narrow = read_features(demo_engine, run_id, as_of, columns=xsell_stage.GUARD_COLUMNS)
    assert list(narrow.columns) == [c for c in whole.columns if c in xsell_stage.GUARD_COLUMNS]
