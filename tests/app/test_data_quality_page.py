"""AppTest: the Data quality page for each role allowed to open it, on the demo store."""

import io

import pandas as pd
import pytest

from analytics import audit
from analytics.access import Viewer
from analytics.store import make_engine
from app_pages import widgets
from tests.app.conftest import open_page


def _open(monkeypatch, url, role):
    return open_page(monkeypatch, url, role, "data_quality", prefix="dq")


@pytest.mark.parametrize("role", ["executive", "admin"])
def test_aggregate_roles_see_scores_but_no_records(monkeypatch, demo_store_url, role):
    at = _open(monkeypatch, demo_store_url, role)
    assert len(at.get("plotly_chart")) >= 4
    rules = at.dataframe[0].value
    assert {"rule", "dimension", "checked", "failed", "pass_rate"} <= set(rules.columns)
    assert len(at.dataframe) == 1  # no failing records, no fix list
    assert any("compliance" in i.value for i in at.info)


def test_compliance_drills_down_to_masked_records(monkeypatch, demo_store_url):
    at = _open(monkeypatch, demo_store_url, "compliance")
    assert len(at.dataframe) == 2  # rules, failing records; the fix list waits for a branch
    assert at.selectbox[1].value is None and any("Choose a branch" in c.value for c in at.caption)
    at.selectbox[1].set_value(at.selectbox[1].options[0]).run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 3  # rules, failing records, fix list
    rule = at.selectbox[0].value
    records = at.dataframe[1].value
    assert len(records) > 0 and "customer_id" in records.columns
    raw = pd.read_sql("SELECT phone, id_number, name FROM customers", make_engine(demo_store_url).connect())
    for col in ("phone", "id_number", "name"):
        if col in records.columns:
            shown = set(records[col].dropna())
            assert not shown & set(raw[col].dropna()), f"raw {col} shown"
    events = audit.query(make_engine(demo_store_url), event="filter")
    assert any(rule in (p or "") for p in events["parameters"])


def test_fix_list_export_is_masked_safe_and_audited(monkeypatch, demo_store_url):
    engine = make_engine(demo_store_url)
    user = {"username": "dq_compliance", "roles": ("compliance",), "session_id": None}
    from analytics import quality

    fixes = quality.fix_list(engine, None, "BR001", viewer=Viewer("t", ("compliance",)))
    data = widgets.audited_export(engine, user, fixes, "fix", "csv", {"branch_id": "BR001"})
    back = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str)
    assert len(back) == len(fixes)
    import hashlib
    import json

    target = json.loads(audit.query(engine, event="export").iloc[0]["target"])
    assert target["rows"] == len(fixes)
    assert target["sha256"] == hashlib.sha256(data).hexdigest()
