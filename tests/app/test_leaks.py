"""Leak test: every page, rendered for every role on the demo store, holds no raw personal value.

Raw values are read straight from the store (names, ID numbers, phones, e-mails, addresses, card
and account numbers) and searched for in everything the app rendered (text, metrics, tables,
chart specs), and in the app's log. No role sees a raw value without an explicit, audited unmask.
"""

import io
import logging
from pathlib import Path

import openpyxl
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
        blob = "\n".join(_rendered_text(at._tree))
        leaked = [v for v in raw_values if v in blob]
        assert leaked == [], f"{role} on {script} sees raw values, e.g. {leaked[:1]!r}"
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
