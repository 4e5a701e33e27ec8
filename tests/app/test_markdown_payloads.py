"""AppTest: stored text never renders as Markdown (a link, emphasis, an image or HTML).

Customers of a copy of the demo store get Markdown and HTML payloads in their name, address,
e-mail and relationship manager, and the users get one as their display name. Every page is
rendered for every role that may see customer rows (lists, filters, Customer 360 and, for
compliance, the unmasked values on the Approvals page), and every Markdown-rendering text of every element (bodies,
labels, help texts, metric values) is checked: no link, emphasis, image or HTML comes from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from sqlalchemy import text

from analytics import access, approvals, users
from analytics.access import Viewer
from analytics.store import make_engine
from tests.app.conftest import APP, PASSWORD, login, new_app
from tests.conftest import copy_store

PAYLOADS = ("[Click](https://evil.example/login)", "**bold**", "<b>x</b>", "![img](http://x)")
ROLES = ("marketing", "risk", "compliance")
# What a payload becomes once Markdown renders it, looked for after taking out backslash escapes.
ACTIVE = re.compile(r"\]\(https?:|\*\*bold|__bold|<b>|</b>|!\[img\]|https?://(evil|x\b)|www\.evil|[\w.+*-]@evil")
ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")
# Proto fields Streamlit renders as Markdown (an element's body, a label, a help text, a metric's
# value); table cells and chart specs are not Markdown.
MARKDOWN_FIELDS = {"body", "label", "help", "caption", "placeholder"}


@pytest.fixture(scope="module")
def payload_store(demo_store_url, tmp_path_factory):
    url = copy_store(demo_store_url, tmp_path_factory.mktemp("payloads") / "bank.db")
    with make_engine(url).begin() as conn:  # other tests' requests on the shared demo store: not this test's
        conn.execute(text("DELETE FROM approval_requests"))
    engine = make_engine(url)
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT customer_id FROM customers ORDER BY customer_id")).scalars().all()
        for n, cid in enumerate(ids):  # one payload per customer in turn, each field a different one
            k = n % len(PAYLOADS)
            conn.execute(text(
                "UPDATE customers SET name = :name, address = :address, email = :email, "
                "relationship_manager = :rm WHERE customer_id = :cid"),
                {"cid": cid, "name": PAYLOADS[k], "address": f"北京市东城区 {PAYLOADS[(k + 1) % 4]}",
                 "email": f"{PAYLOADS[(k + 2) % 4]}@evil.example", "rm": PAYLOADS[(k + 3) % 4]})
    for role in ROLES:
        users.add_user(engine, f"md_{role}", PASSWORD, [role], display_name=f"{PAYLOADS[0]} {PAYLOADS[1]}")
    first = ids[0]
    engine.dispose()
    return url, first


def markdown_texts(node) -> list[str]:
    """Every Markdown-rendered string of the element tree under ``node``."""
    out: list[str] = []

    def collect(value, key=None):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("spec", "data", "arrowData"):
                    collect(v, k)
        elif isinstance(value, list):
            for v in value:
                collect(v, key)
        elif isinstance(value, str) and key in MARKDOWN_FIELDS:
            out.append(value)

    proto = getattr(node, "proto", None)
    if proto is not None:
        collect(MessageToDict(proto))
    for child in getattr(node, "children", {}).values():
        out.extend(markdown_texts(child))
    return out


def active_payloads(at) -> list[str]:
    return [s for s in markdown_texts(at._tree) if ACTIVE.search(ESCAPED.sub("", s))]


def test_the_checker_sees_a_raw_payload():
    assert ACTIVE.search(PAYLOADS[0]) and ACTIVE.search("**bold**") and ACTIVE.search("z@evil.example")
    assert not ACTIVE.search(ESCAPED.sub("", r"\[Click\]\(https\:" + "\u2060//evil.example/login\\)"))


@pytest.mark.parametrize("role", ROLES)
def test_no_stored_text_renders_as_markdown(monkeypatch, payload_store, role):
    url, customer = payload_store
    at = login(new_app(monkeypatch, url), f"md_{role}")
    assert not at.exception
    shown_payload = []
    to_show = []  # approved unmask requests, used on the Approvals page
    engine = make_engine(url)
    root = Path(APP).parent
    pages = [info["script_path"] for info in at._registered_pages.values() if info.get("script_path")]
    assert pages

    def check(where: str) -> None:
        assert not at.exception, f"{where}: {at.exception}"
        bad = active_payloads(at)
        assert bad == [], f"{role} on {where}: stored text renders as Markdown: {bad[:3]}"
        shown_payload.extend(s for s in markdown_texts(at._tree) if "evil" in s or "bold" in s)

    for script in pages:
        at.switch_page(str(Path(script).relative_to(root))).run()
        check(script)
        name = Path(script).stem
        if name == "segments":
            at.text_input(key="tag_expr").input("mortgage_holder or not mortgage_holder").run()
            check("segments with a tag expression")
        if name == "approvals":
            for request_id in to_show:
                at.selectbox[0].select(request_id)
                next(b for b in at.button if b.label.startswith("Use once")).click()
                at.run()
                check(f"approvals, request {request_id} shown")
                assert any("evil" in i.value or "bold" in i.value or "Click" in i.value for i in at.info), \
                    ([i.value for i in at.info], [e.value for e in at.error], [w.value for w in at.warning])
        if name == "churn" and access.can_see_customer_rows([role]):
            rm = next(s for s in at.selectbox if PAYLOADS[0] in s.options)
            rm.select(PAYLOADS[0]).run()
            check("churn filtered by a relationship manager")
        if name == "customer_360":
            at.text_input[0].input(customer)
            at.button[0].click()
            at.run()
            check("customer 360")
            assert at.dataframe, "the lookup showed nothing"
            if access.can_unmask([role]):
                # Four eyes: each field is requested here, approved by a second officer, and shown
                # once on the Approvals page (below).
                for field in ("name", "address", "email"):
                    at.selectbox[0].select(field)
                    at.text_area[0].input("identity check for complaint case 2026-77")
                    at.button[1].click()
                    at.run()
                    check(f"customer 360, {field} requested")
                    request_id = int(approvals.requests_of(engine, viewer=Viewer(f"md_{role}", (role,)))
                                     ["request_id"].iloc[0])
                    approvals.approve(engine, request_id, approver=Viewer("md_second", ("compliance",)),
                                      comment=f"ok {PAYLOADS[0]}")
                    to_show.append(request_id)
            at.text_input[0].input("[x](https://evil.example)")  # typed input echoed in the message
            at.button[0].click()
            at.run()
            check("customer 360, a lookup of Markdown")
    # The payloads were on screen (escaped), so the check above had something to look at.
    assert shown_payload
