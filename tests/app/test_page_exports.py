"""AppTest, issue #7 "its exports are masked and audited": for every page with export buttons and
every role allowed on it, on the demo store.

A role that may see customer rows gets CSV and Excel buttons; each is "clicked" the way the browser
does it (the deferred download's callable runs and hands over the bytes). The file must hold the
list the page shows, no raw personal value (names, ID numbers, phones, e-mails, addresses, account
numbers, read straight from the store), and each click must leave one ``export`` audit entry by
that user with the file's row count and SHA-256. A role that sees aggregates only gets no button.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from analytics import access, cross_sell, quality, settings
from analytics.access import Viewer
from tests.app import pagekit as kit

pages = kit.pages_fixture("exp")


def _segments(at, engine, role=None):
    # Marketing's list holds consenting customers only; a risk manager's is not consent-filtered
    # (access.segment_list_purpose).
    at.text_input(key="tag_expr").input("mortgage_holder").run()
    consent = "" if role == "risk" else "AND c.marketing_consent = 1"
    return kit.scalar(engine, f"""
        SELECT COUNT(*) FROM customer_segments s JOIN customers c ON c.customer_id = s.customer_id
        WHERE s.run_id = :r AND (',' || s.tags || ',') LIKE '%,mortgage_holder,%' {consent}
    """, r=kit.run_id(engine))


def _churn(at, engine):
    # A contact list: consenting customers only (the demo's consents follow its marketing flags).
    return min(1000, kit.scalar(engine, "SELECT COUNT(*) FROM churn_scores s JOIN customers c "
                                        "ON c.customer_id = s.customer_id WHERE s.run_id = :r "
                                        "AND s.churn_state = 'active' AND c.marketing_consent = 1",
                                r=kit.run_id(engine)))


def _cross_sell(at, engine):
    category = kit.widget(at, r"categor|类别", kinds=("selectbox", "radio")).value
    return len(cross_sell.campaign_list(engine, kit.run_id(engine), category, viewer=Viewer("t", ("marketing",)),
                                       limit=int(settings.get("EXPORT_MAX_ROWS")))[0])


def _risk(at, engine):
    return kit.scalar(engine, "SELECT COUNT(*) FROM risk_mismatches WHERE run_id = :r", r=kit.run_id(engine))


def _data_quality(at, engine):
    picker = kit.widget(at, kit.BRANCH, kinds=("selectbox",))
    branch = picker.options[0]
    kit.choose(picker, branch)  # the fix list and its export wait for a branch
    return len(quality.fix_list(engine, kit.run_id(engine), branch, viewer=Viewer("t", ("compliance",))))


def _campaigns(at, engine):
    from analytics import campaigns

    chosen = at.selectbox(key="camp_chosen").value
    return len(campaigns.treatment_export(engine, chosen, viewer=Viewer("t", ("marketing",), purpose="marketing"))[0])


# page -> how to bring up its export, returning how many rows the exported list must have
EXPORTS = {"segments": _segments, "churn": _churn, "cross_sell": _cross_sell, "risk": _risk,
           "data_quality": _data_quality, "campaigns": _campaigns}
# A relationship manager (always scoped) is covered by tests/app/test_door_pages.py.
CASES = [(page, role) for page in EXPORTS for role in sorted(access.PAGE_ACCESS[page] - {"relationship_manager"})]


@pytest.fixture(scope="module")
def raw_values(pages):
    return kit.raw_personal_values(pages.engine)


def _last_seq(engine) -> int:
    return int(kit.scalar(engine, "SELECT COALESCE(MAX(seq), 0) FROM audit_log"))


@pytest.mark.parametrize("page, role", CASES)
def test_exports_are_masked_and_audited(pages, raw_values, monkeypatch, page, role):
    engine = pages.engine
    deferred = kit.Deferred(monkeypatch)
    at = pages.open(role, page)
    if not access.can_see_customer_rows([role]):
        if page == "segments":  # the campaign list appears once a tag expression selects customers
            _segments(at, engine)
        assert not at.exception, at.exception
        assert kit.download_buttons(at) == [], f"{role} may not export customer rows from {page}"
        return
    rows_expected = _segments(at, engine, role) if page == "segments" else EXPORTS[page](at, engine)
    assert not at.exception, at.exception
    buttons = kit.download_buttons(at)
    assert len(buttons) >= 2, f"{role} gets no CSV and Excel export on {page}"
    buttons = buttons[:2]  # the page's main list (Risk also exports its balance-drop tab)

    before = _last_seq(engine)
    files = [deferred.click(b) for b in buttons]
    kinds = sorted("xlsx" if data[:2] == b"PK" else "csv" for data, _ in files)
    assert kinds[:2] == ["csv", "xlsx"], kinds
    ids = []
    for data, name in files:
        frame = kit.read_export(data)
        assert len(frame) == rows_expected, f"{name}: {len(frame)} rows, the page's list has {rows_expected}"
        content = kit.export_text(data)
        leaked = [v for v in raw_values if v in content]
        assert leaked == [], f"{role}'s export {name} holds raw personal values, e.g. {leaked[:1]!r}"
        assert "customer_id" in frame.columns
        ids.append(frame["customer_id"].tolist())
    assert all(i == ids[0] for i in ids), "the CSV and the Excel file list different customers"

    entries = kit.frame(engine, "SELECT seq, username, event, target FROM audit_log WHERE seq > :s ORDER BY seq",
                        s=before)
    exports = entries[entries["event"] == "export"]
    assert len(exports) == len(files), f"{len(files)} downloads, {len(exports)} export audit entries"
    assert set(exports["username"]) == {pages.username(role)}
    for (data, name), target in zip(files, exports["target"], strict=True):
        target = json.loads(target)
        assert target["rows"] == rows_expected, (name, target)
        assert target["sha256"] == hashlib.sha256(data).hexdigest(), f"{name}: the audited hash is not the file's"
