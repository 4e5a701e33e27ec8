"""Cross-filtering over a run's segments: filters narrow, summaries add up, campaign lists honour consent."""

import pandas as pd
import pytest

from analytics import segment_explorer as sx
from analytics.refresh import current_run_id, run_refresh
from tests.analytics import store_rows


@pytest.fixture
def frame(demo_engine):
    return sx.explorer_frame(demo_engine, current_run_id(demo_engine), 2026)


def test_frame_has_one_row_per_customer_and_no_personal_fields(frame, demo_engine):
    n = pd.read_sql("SELECT COUNT(*) AS n FROM customers", demo_engine.connect())["n"].iloc[0]
    assert len(frame) == n and frame["customer_id"].is_unique
    assert not {"name", "phone", "id_number", "email", "address", "birth_date"} & set(frame.columns)
    assert set(frame["age_band"]) <= set(sx.AGE_BANDS)


@pytest.mark.parametrize("dimension", ["rfm_segment", "value_tier", "lifecycle_stage", "cluster_name", "rfm_rf"])
def test_summaries_add_up(frame, dimension):
    s = sx.summary(frame, dimension)
    assert s["customers"].sum() == len(frame)
    assert s["aum_total"].sum() == pytest.approx(frame["aum"].sum())


def test_rf_cells_are_two_digit_scores(frame):
    cells = sx.summary(frame, "rfm_rf")["value"]
    assert cells.str.fullmatch(r"[1-5][1-5]").all()


def test_filters_narrow_and_combine(frame):
    branch = frame["branch_id"].iloc[0]
    one = sx.apply_filters(frame, sx.Filters(branches=(branch,)))
    assert len(one) == (frame["branch_id"] == branch).sum()
    both = sx.apply_filters(frame, sx.Filters(branches=(branch,), tiers=("mass",)))
    assert len(both) == ((frame["branch_id"] == branch) & (frame["value_tier"] == "mass")).sum()
    assert sx.apply_filters(frame, sx.Filters()).equals(frame)
    assert sx.apply_filters(frame, sx.Filters(cities=("No such city",))).empty


def test_age_band_by_hand(engine):
    store_rows.fill(engine)
    run_id = run_refresh(engine)
    f = sx.explorer_frame(engine, run_id, 2026).set_index("customer_id")
    # Born 1949 -> 77 -> 60+; 1990 -> 36 -> 30-44; 1985 -> 41 -> 30-44.
    assert f.loc["C000000001", "age_band"] == "60+"
    assert f.loc["C000000002", "age_band"] == "30-44"


def test_campaign_list_excludes_customers_without_consent(frame):
    ids = pd.Index(frame["customer_id"])
    chosen, excluded = sx.campaign_list(frame, ids)
    assert excluded == int((~frame["marketing_consent"]).sum())
    assert len(chosen) + excluded == len(frame)
    assert set(chosen.columns) == set(sx.CAMPAIGN_COLUMNS)
    assert frame.set_index("customer_id").loc[chosen["customer_id"], "marketing_consent"].all()
