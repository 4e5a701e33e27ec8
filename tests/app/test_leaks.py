"""Leak test: every page, rendered for every role on the demo store, holds no raw personal value,
no customer outside a scoped user's scope, and no figure of too few customers for an
aggregate-only role.

Raw values are read straight from the store (names, ID numbers, phones, e-mails, addresses, card
and account numbers) and searched for in everything the app rendered (text, metrics, tables,
chart specs and their hovers), in every export offered, and in the app's log. No role sees a raw
value without an explicit, audited unmask.
"""

import base64
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from google.protobuf.json_format import MessageToJson
from sqlalchemy import text

from analytics import access, exports, scopes, users
from analytics.store import make_engine
from tests.app.conftest import PASSWORD, capture_exports, login, new_app

ROLES = ("executive", "marketing", "risk", "compliance", "admin", "display", "relationship_manager",
         "scoped_marketing")


def _raw_values(engine) -> set[str]:
    values = set()
    with engine.connect() as conn:
        for col in ("name", "id_number", "phone", "email", "address"):
            values |= {v for v in conn.execute(text(f"SELECT {col} FROM customers")).scalars() if v}
        values |= {v for v in conn.execute(text("SELECT account_number FROM holdings")).scalars() if v}
    # One-character values can't be told apart from ordinary text; every real name has two or more.
    return {v for v in values if len(v) >= 2}


def _rendered_text(node) -> list[str]:
    out = []
    value = getattr(node, "value", None)
    if hasattr(value, "to_csv"):
        out.append(value.to_csv())
    proto = getattr(node, "proto", None)
    if proto is not None:
        out.append(MessageToJson(proto, ensure_ascii=False))
    for child in getattr(node, "children", {}).values():
        out.extend(_rendered_text(child))
    return out


def _seed_approvals(engine, viewer, customer_id) -> None:
    """Requests for the Approvals page to show: the user's own approved export (and, for
    compliance, an approved unmask), and another officer's pending unmask in the queue."""
    from analytics import approvals
    from analytics.access import Viewer

    if "display" in viewer.roles:
        return
    second = Viewer("leak_second_officer", ("compliance",))
    reason = "leak test: a request to list on the Approvals page"
    frame = pd.DataFrame({"customer_id": [customer_id], "value_tier": ["mass"]})
    own = approvals.request_export(engine, frame, viewer=viewer, stem="leak", fmt="csv",
                                   context={"page": "leak"}, reason=reason)
    approvals.approve(engine, own, approver=second, comment="ok")
    if access.can_unmask(viewer.roles):
        mine = approvals.request_unmask(engine, customer_id, "phone", viewer=viewer, reason=reason)
        approvals.approve(engine, mine, approver=second, comment="ok")
        approvals.request_unmask(engine, customer_id, "name", viewer=second, reason=reason)


@pytest.fixture(scope="module")
def raw_values(demo_store_url):
    return _raw_values(make_engine(demo_store_url))


@pytest.mark.parametrize("role", ROLES)
def test_no_raw_personal_value_reaches_any_page_or_log(monkeypatch, demo_store_url, raw_values, role, caplog):
    engine = make_engine(demo_store_url)
    username = f"leak_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, ["marketing" if role == "scoped_marketing" else role])
    with engine.connect() as conn:  # a relationship manager's portfolio, a marketing user's branch
        if role == "relationship_manager":
            scopes.set_scope(engine, username, portfolios=[conn.execute(text(
                "SELECT MIN(relationship_manager) FROM customers")).scalar()])
        elif role == "scoped_marketing":
            scopes.set_scope(engine, username, branches=[conn.execute(text(
                "SELECT MIN(branch_id) FROM customers")).scalar()])
    role = "marketing" if role == "scoped_marketing" else role
    caplog.set_level(logging.DEBUG)
    # Every export a page offers goes through widgets.export_buttons: keep the frames it is given
    # and check the files they become.
    exported = capture_exports(monkeypatch)
    at = login(new_app(monkeypatch, demo_store_url), username)
    pages = [info["script_path"] for info in at._registered_pages.values() if info.get("script_path")]
    assert pages, "the role got no pages"
    viewer = scopes.viewer_for(engine, username)
    where, params = viewer.scope_sql("c")
    with engine.connect() as conn:  # a customer the user may open (in scope)
        sample_customer = conn.execute(text(f"SELECT MIN(c.customer_id) FROM customers c WHERE {where}"),
                                       params).scalar()
    with engine.connect() as conn:
        in_scope = set(conn.execute(text(f"SELECT c.customer_id FROM customers c WHERE {where}"), params).scalars())
    _seed_approvals(engine, viewer, sample_customer)
    root = Path(__file__).resolve().parents[2]
    for script in pages:
        at.switch_page(str(Path(script).relative_to(root))).run()
        assert not at.exception, script
        if script.endswith("segments.py"):
            at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
        if script.endswith("campaigns.py") and access.can_see_customer_rows([role]):
            at.selectbox(key="camp_product").select("fund").run()  # the builder with a product
        if script.endswith("customer_360.py"):
            at.text_input[0].input(sample_customer)
            at.button[0].click()
            at.run()
            assert at.dataframe, "the lookup showed nothing"
        if script.endswith("worklist.py"):  # the list must be there to be searched
            from analytics.alerts import worklist

            expected_rows = not worklist(engine, viewer=viewer, limit=1)[0].empty
            assert expected_rows or role != "risk", "the demo run gave risk no alert"
            assert bool(at.dataframe) is expected_rows, "the worklist showed no list"
        blob = "\n".join(_rendered_text(at._tree))
        leaked = [v for v in raw_values if v in blob]
        assert leaked == [], f"{role} on {script} sees raw values, e.g. {leaked[:1]!r}"
        if viewer.scope is not None:
            shown = _customer_ids(at)
            assert shown <= in_scope, f"{role} on {script} sees customers outside the scope"
    logged = [v for v in raw_values if v in caplog.text]
    assert logged == []
    if access.can_see_customer_rows([role]):
        assert exported, "no export was offered to a role that may export customer lists"
    for frame in exported:
        for export in (exports.to_csv(frame, "x"), exports.to_excel(frame, "x")):
            text_of_file = export.data.decode("utf-8-sig") if export.file_name.endswith(".csv") else \
                "\n".join(str(c.value) for row in openpyxl.load_workbook(io.BytesIO(export.data)).active.iter_rows()
                          for c in row)
            leaked = [v for v in raw_values if v in text_of_file]
            assert leaked == [], f"{role} export {export.file_name} holds raw values"
        if viewer.scope is not None and "customer_id" in frame.columns:
            assert set(frame["customer_id"].astype(str)) <= in_scope, f"{role} exports customers outside the scope"


def _customer_ids(at) -> set[str]:
    ids = set()
    for frame in at.dataframe:
        value = frame.value
        if hasattr(value, "columns") and "customer_id" in value.columns:
            ids |= set(value["customer_id"].astype(str))
    return ids


def _numbers(fig: dict) -> list[float]:
    out = []
    for trace in fig.get("data", []):
        for key in ("x", "y", "z", "values"):
            value = trace.get(key)
            stack = [value]
            while stack:
                v = stack.pop()
                if isinstance(v, list):
                    stack.extend(v)
                elif isinstance(v, dict) and "bdata" in v:  # a typed array, as plotly writes numpy data
                    raw = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
                    out.extend(float(x) for x in raw)
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    out.append(float(v))
    return out


@pytest.mark.parametrize("role", ["executive", "display"])
def test_aggregate_only_roles_see_no_figure_of_too_few_customers(monkeypatch, demo_store_url, role):
    """With MIN_CELL_CUSTOMERS above the bank's size every customer figure is a small cell: the
    pages an aggregate-only role sees must then show none (cube charts, cross-tabs, the Overview's
    counts and the KPI wall's tiles)."""
    engine = make_engine(demo_store_url)
    username = f"door_{role}"
    if users.get_user(engine, username) is None:
        users.add_user(engine, username, PASSWORD, [role])
    monkeypatch.setenv("MIN_CELL_CUSTOMERS", "1000000")
    at = login(new_app(monkeypatch, demo_store_url), username)
    checked = 0
    for page in ("overview", "kpi_wall", "segments", "lifecycle", "risk", "data_quality"):
        script = f"app_pages/{page}.py"
        if not any(info.get("script_path", "").endswith(script) for info in at._registered_pages.values()):
            continue
        at.switch_page(script).run()
        assert not at.exception, page
        checked += 1
        if page == "overview":
            values = {m.label: m.value for m in at.metric}
            assert values and all(v in ("—", "0") for k, v in values.items() if k != "Products"), values
        if page in ("segments", "lifecycle"):
            assert any("fewer than" in i.value for i in at.info), "no small-population notice"
        if page == "data_quality":
            breakdowns = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                          if "by branch" in json.dumps(json.loads(c.proto.spec).get("layout", {}).get("title"))]
            assert breakdowns and not [v for v in _numbers(breakdowns[0]) if not math.isnan(v)], "a branch is shown"
        if page == "risk":
            assert all(m.value == "—" for m in at.metric), [m.value for m in at.metric]
            for chart in at.get("plotly_chart"):
                fig = json.loads(chart.proto.spec)
                assert not [v for v in _numbers(fig) if not math.isnan(v) and v >= 1], "a cross-tab cell is shown"
        if page == "kpi_wall":
            assert any("fewer than" in i.value for i in at.info) or not at.get("plotly_chart")
    assert checked >= 1

