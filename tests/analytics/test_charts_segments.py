"""Chart builders: figures built from aggregates, checked by their data and titles (never pixels),
and free of personal data."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics import charts_segments as charts
from analytics.lifecycle import cohort_retention, value_bands
from analytics.segmentation import (
    RFM_SEGMENTS,
    read_cluster_profiles,
    read_cohort_retention,
    read_segment_summary,
)


def _summary(values, customers, **totals):
    frame = pd.DataFrame({"value": values, "customers": customers, "sort_order": range(len(values))})
    for name, column in totals.items():
        frame[name] = column
    return frame


def test_rfm_heatmap_places_counts_in_their_cells():
    cells = _summary(["55", "51", "15", "11", "54"], [10, 3, 7, 20, 1])
    fig = charts.rfm_heatmap(cells)
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text == "RFM: customers by recency and frequency score"
    z = np.asarray(fig.data[0].z)
    assert z.shape == (5, 5)
    assert z[4, 4] == 10 and z[4, 0] == 3 and z[0, 4] == 7 and z[0, 0] == 20 and z[4, 3] == 1
    assert z.sum() == 41


def test_segment_bar_in_canonical_order_with_shares():
    summary = _summary(["Lost", "Champions", "At risk"], [50, 30, 20], aum_total=[1.0, 8.0, 1.0])
    fig = charts.segment_bar(summary)
    bar = fig.data[0]
    assert list(bar.x) == ["Champions", "At risk", "Lost"]  # RFM_SEGMENTS order
    assert list(bar.y) == [30, 20, 50]
    assert list(bar.text) == ["30.0%", "20.0%", "50.0%"]
    assert fig.layout.title.text == "RFM segments: customers"
    by_aum = charts.segment_bar(summary, metric="aum_total", lang="zh")
    assert list(by_aum.data[0].x) == ["冠军客户", "流失风险客户", "已流失客户"]
    assert list(by_aum.data[0].y) == [8.0, 1.0, 1.0]
    assert by_aum.layout.title.text == "RFM 客户分群：资产规模 (元)"


def test_value_tier_and_lifecycle_bars():
    tiers = charts.value_tier_bar(_summary(["private", "mass", "wealth", "affluent"], [1, 70, 9, 20]))
    assert list(tiers.data[0].x) == ["Mass", "Affluent", "Wealth", "Private banking"]
    assert list(tiers.data[0].y) == [70, 20, 9, 1]
    stages = charts.lifecycle_bar(_summary(["churned", "new", "mature"], [5, 10, 85]))
    assert list(stages.data[0].x) == ["New", "Mature", "Churned"]
    assert list(stages.data[0].marker.color) == ["#6fa8dc", "#38761d", "#cc4125"]
    assert stages.layout.title.text == "Lifecycle stages: customers"


def test_cluster_profile_heatmap():
    profiles = pd.DataFrame({"cluster": [0, 1], "cluster_name": ["savers", "young digital savers"],
                             "customers": [700, 300], "z_age": [0.4, -0.9], "z_digital_logins_3m": [-0.3, 1.5],
                             "median_age": [50, 28]})
    fig = charts.cluster_profile_heatmap(profiles)
    heat = fig.data[0]
    assert list(heat.y) == ["savers (700)", "young digital savers (300)"]
    assert list(heat.x) == ["age", "digital logins"]
    assert np.asarray(heat.z).tolist() == [[0.4, -0.3], [-0.9, 1.5]]
    assert heat.zmin == -1.5 and heat.zmax == 1.5  # symmetric around the average customer


def test_cluster_names_are_rendered_from_their_codes_in_chinese():
    profiles = pd.DataFrame({"cluster": [0, 1], "cluster_name": ["savers", "high:loan_balance_latest low:age #1"],
                             "customers": [700, 300], "z_age": [0.4, -0.9]})
    heat = charts.cluster_profile_heatmap(profiles, lang="zh").data[0]
    assert list(heat.y) == ["储蓄客户 (700)", "高贷款、低年龄（第1组） (300)"]
    summary = pd.DataFrame({"value": ["savers", "dormant low_balance"], "customers": [700, 300]})
    bar = charts.cluster_bar(summary, lang="zh").data[0]
    assert list(bar.x) == ["储蓄客户", "休眠低余额客户"] and list(bar.y) == [700, 300]
    assert list(charts.cluster_bar(summary, lang="en").data[0].x) == ["savers", "dormant low-balance customers"]


def test_cohort_heatmap_shows_percentages():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "open_date": pd.to_datetime(["2026-01-05", "2026-02-01"])})
    activity = pd.DataFrame({"customer_id": ["a", "a", "b"], "month": pd.to_datetime(["2026-01-01", "2026-02-01",
                                                                                       "2026-02-01"]),
                             "txn_count": [1, 0, 2]})
    fig = charts.cohort_heatmap(cohort_retention(customers, activity))
    heat = fig.data[0]
    assert list(heat.y) == ["2026-01 (1)", "2026-02 (1)"]
    z = np.asarray(heat.z, dtype=float)
    assert z[0, 0] == 100 and z[0, 1] == 0 and z[1, 0] == 100 and np.isnan(z[1, 1])
    assert fig.layout.xaxis.title.text == "months since opening"


def test_clv_histogram_from_bands():
    bands = value_bands([0, 5, 15, 1500, 1600])
    fig = charts.clv_histogram(bands, horizon_years=5)
    assert fig.layout.title.text == "Distribution of 5-year margin CLV"
    counts = dict(zip(fig.data[0].x, fig.data[0].y, strict=True))
    assert counts["0–10"] == 2 and counts["10–20"] == 1 and counts["1k–2k"] == 2
    assert sum(fig.data[0].y) == 5
    assert fig.layout.xaxis.tickangle == -45  # the last band labels stay inside the chart


@pytest.mark.parametrize("builder", [charts.rfm_heatmap, charts.segment_bar, charts.value_tier_bar,
                                     charts.lifecycle_bar, charts.clv_histogram])
def test_empty_summaries_say_what_to_do(builder):
    fig = builder(pd.DataFrame(columns=["value", "customers", "sort_order"]))
    assert fig.data == ()
    assert "run a refresh" in fig.layout.annotations[0].text


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="lang"):
        charts.segment_bar(_summary(["Lost"], [1]), lang="fr")


def test_demo_charts_carry_no_personal_data(demo_engine):
    from analytics.store import read_frame

    figures = [
        charts.rfm_heatmap(read_segment_summary(demo_engine, "rfm_rf")),
        charts.segment_bar(read_segment_summary(demo_engine, "rfm_segment"), metric="clv_margin_3y_total"),
        charts.value_tier_bar(read_segment_summary(demo_engine, "value_tier")),
        charts.lifecycle_bar(read_segment_summary(demo_engine, "lifecycle_stage")),
        charts.cluster_profile_heatmap(read_cluster_profiles(demo_engine)),
        charts.cohort_heatmap(read_cohort_retention(demo_engine)),
        charts.clv_histogram(read_segment_summary(demo_engine, "clv_band_3y")),
    ]
    assert all(fig.data for fig in figures)
    assert set(figures[1].data[0].x) <= set(RFM_SEGMENTS)
    people = read_frame(demo_engine, "SELECT customer_id, name, id_number, phone FROM customers LIMIT 200")
    text = " ".join(fig.to_json() for fig in figures)
    for column in people.columns:
        for value in people[column].dropna():
            assert str(value) not in text, column


def test_cluster_profiles_without_counts_name_the_clusters_only():
    from analytics.charts_segments import cluster_profile_heatmap

    profiles = pd.DataFrame({"cluster_name": ["Savers", "Spenders"], "z_aum": [1.0, -0.5], "z_txn": [-0.2, 0.8]})
    fig = cluster_profile_heatmap(profiles)
    assert list(fig.data[0].y) == ["Savers", "Spenders"]
    counted = cluster_profile_heatmap(profiles.assign(customers=[1200, 30]))
    assert list(counted.data[0].y) == ["Savers (1,200)", "Spenders (30)"]
