"""AppTest: the Churn page for executive (aggregates only), marketing and risk (early-warning list)."""

import pytest

from analytics import audit, runs
from analytics.segmentation import read_segment_summary
from analytics.store import make_engine, read_frame
from tests.app.conftest import open_page


def _open(monkeypatch, url, role):
    return open_page(monkeypatch, url, role, "churn", prefix="churn")


@pytest.mark.parametrize("role", ["executive", "marketing", "risk"])
def test_churn_page_model_card(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Hold-out ROC AUC"]) > 0.7
    assert len(at.get("plotly_chart")) == 4
    # The model card says which candidate the inner cross-validation chose for the scores shown.
    chosen = [c.value for c in at.caption if c.value.startswith("Model chosen by cross-validation")]
    assert len(chosen) == 1 and any(w in chosen[0] for w in ("gradient boosting", "logistic regression")), chosen
    has_list = any("value_at_risk" in d.value.columns for d in at.dataframe)
    assert has_list == (role != "executive")
    # The "Churn by" choices read as options, each capitalised (the same words are lower-case in titles).
    assert at.radio[0].options == ["RFM segment", "Branch", "Value tier", "Lifecycle stage"]


def test_early_warning_filters_and_export(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "marketing")
    full = at.dataframe[-1].value
    assert full["value_at_risk"].is_monotonic_decreasing
    branch = full["branch_id"].iloc[0]
    at.selectbox[0].select(branch).run()
    assert not at.exception
    narrowed = at.dataframe[-1].value
    assert (narrowed["branch_id"] == branch).all() and len(narrowed) <= len(full)
    assert len(at.get("download_button")) == 2
    events = audit.query(make_engine(demo_store_url), event="filter")
    assert any(branch in (p or "") for p in events["parameters"])


def test_early_warning_filter_choices_come_from_small_queries(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    run_id = runs.current_run_id(engine)
    at = _open(monkeypatch, demo_store_url, "risk")
    branch, segment, manager, tier = (at.selectbox[i] for i in range(4))
    assert branch.options == ["(all)", *sorted(read_segment_summary(engine, "branch_id", run_id)["value"])]
    assert segment.options == ["(all)", *sorted(read_segment_summary(engine, "rfm_segment", run_id)["value"])]
    managers = read_frame(engine, "SELECT DISTINCT relationship_manager AS rm FROM customers "
                                  "WHERE relationship_manager IS NOT NULL")["rm"]
    assert manager.options == ["(all)", *sorted(managers)] and len(manager.options) > 1
    assert tier.options == ["(all)", "Mass", "Affluent", "Wealth", "Private banking"]  # shown in words
    manager.select(manager.options[1]).run()
    assert not at.exception
    listed = at.dataframe[-1].value
    assert (listed["relationship_manager"] == manager.options[1]).all()


def test_a_filter_is_audited_once_per_change_not_per_rerun(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    at = open_page(monkeypatch, demo_store_url, "marketing", "churn", prefix="once")

    def filters_logged():
        entries = audit.query(engine, user="once_marketing", event="filter")
        return [e for e in entries.to_dict("records") if '"churn"' in str(e["target"])]

    first = len(filters_logged())
    assert first == 1  # the unfiltered list, once
    at.run()
    at.run()
    assert len(filters_logged()) == first  # reruns of the same view add nothing
    at.selectbox[0].select(at.selectbox[0].options[1]).run()
    at.run()
    assert len(filters_logged()) == first + 1  # a new branch: one more entry
