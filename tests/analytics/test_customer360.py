"""Customer 360 data layer: released for the viewer (masked, balances banded for marketing), scoped
(an out-of-scope customer reads "not found" and is audited), aggregate roles refused, unmask audited
with a reason."""

import json

import pytest
from sqlalchemy import text

from analytics import audit, consent, customer360
from analytics.access import AccessDenied, Scope, Viewer
from tests.analytics import store_rows


def v(*roles, scope=None):
    return Viewer("tester", roles, scope)


@pytest.fixture
def filled(sqlite_engine, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_HMAC_KEY", "k" * 40)
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "ckpt"))
    store_rows.fill(sqlite_engine)
    return sqlite_engine


@pytest.mark.parametrize("roles", [["marketing"], ["risk"], ["compliance"], ["relationship_manager"]])
def test_profile_is_masked(filled, roles):
    viewer = v(*roles, scope=Scope(branches={"BR001"}) if roles == ["relationship_manager"] else None)
    p = customer360.profile(filled, "C000000001", viewer=viewer).iloc[0]
    assert p["name"] == "张*"
    assert p["id_number"] == "110105********002X"
    assert p["phone"] == "013*****5678"
    assert str(p["birth_date"]).startswith("1949-**")
    assert bool(p["marketing_consent"]) is True  # live in consents
    h = customer360.holdings_of(filled, "C000000001", viewer=viewer)
    assert "6222020200112233445" not in set(h["account_number"])
    assert h["account_number"].iloc[0] == "622202*********3445"


def test_balances_are_need_to_know(filled):
    market = customer360.holdings_of(filled, "C000000001", viewer=v("marketing"))
    assert "balance" not in market.columns and set(market["balance_band"]) == {"<10000", "200000-500000"}
    assert customer360.holdings_of(filled, "C000000001", viewer=v("risk"))["balance"].max() == 250000.0
    months = customer360.monthly(filled, "C000000001", viewer=v("marketing"))
    assert not {"aum", "deposit_balance", "loan_balance", "txn_amount"} & set(months.columns)
    assert months["aum_band"].tolist() == ["<10000", "<10000"]


@pytest.mark.parametrize("roles", [["executive"], ["admin"], ["display"]])
def test_aggregate_roles_get_no_customer(filled, roles):
    with pytest.raises(AccessDenied):
        customer360.profile(filled, "C000000001", viewer=v(*roles))


@pytest.mark.parametrize("bad", ["", "C1' OR 1=1 --", "x" * 40])
def test_bad_ids_are_refused_cleanly(filled, bad):
    with pytest.raises(customer360.CustomerNotFound):
        customer360.profile(filled, bad, viewer=v("risk"))


def test_unknown_customer(filled):
    with pytest.raises(customer360.CustomerNotFound, match="No customer"):
        customer360.profile(filled, "C999", viewer=v("risk"))


def test_a_customer_outside_the_scope_is_not_found_and_the_attempt_is_audited(filled):
    with filled.begin() as conn:
        conn.execute(text("UPDATE customers SET relationship_manager = 'rm_li' WHERE customer_id = 'C000000002'"))
    rm = v("relationship_manager", scope=Scope(portfolios={"rm_li"}))
    assert customer360.profile(filled, "C000000002", viewer=rm)["customer_id"].tolist() == ["C000000002"]
    for reader in (customer360.profile, customer360.holdings_of, customer360.monthly, customer360.contacts_of):
        with pytest.raises(customer360.CustomerNotFound) as outside:
            reader(filled, "C000000001", viewer=rm)
        with pytest.raises(customer360.CustomerNotFound) as missing:
            reader(filled, "C999", viewer=rm)
        assert str(outside.value) == "No customer C000000001." and str(missing.value) == "No customer C999."
    with pytest.raises(customer360.CustomerNotFound):
        customer360.scores(filled, 1, "C000000001", viewer=rm)
    denied = audit.query(filled, event="access_denied")
    assert len(denied) == 5 and set(denied["username"]) == {"tester"}
    assert all(json.loads(t)["customer_ids"] == ["C000000001"] for t in denied["target"])
    with pytest.raises(customer360.CustomerNotFound):
        customer360.profile(filled, "C000000002", viewer=v("relationship_manager"))  # no portfolio: nothing


def test_withdrawn_consent_shows_at_once(filled):
    consent.withdraw(filled, "C000000001", "marketing")
    assert bool(customer360.profile(filled, "C000000001", viewer=v("marketing"))["marketing_consent"].iloc[0]) is False


def test_monthly_and_contacts(filled):
    m = customer360.monthly(filled, "C000000001", viewer=v("risk"))
    assert m["aum"].tolist() == [900.0, 1000.5]
    assert customer360.contacts_of(filled, "C000000001", viewer=v("risk")).empty


def test_unmask_needs_compliance_and_a_reason_and_is_audited(filled):
    with pytest.raises(AccessDenied):
        customer360.unmask_field(filled, "C000000001", "phone", viewer=Viewer("m", ("marketing",)),
                                 reason="call back about complaint 123")
    with pytest.raises(AccessDenied, match="reason"):
        customer360.unmask_field(filled, "C000000001", "phone", viewer=Viewer("c", ("compliance",)), reason="x")
    with pytest.raises(customer360.CustomerNotFound):  # outside a scoped officer's branch
        customer360.unmask_field(filled, "C000000001", "phone", reason="verify identity for case 2026-118",
                                 viewer=Viewer("c", ("compliance",), Scope(branches={"BR002"})))
    assert audit.query(filled, event="unmask").empty
    value = customer360.unmask_field(filled, "C000000001", "phone", viewer=Viewer("c", ("compliance",)),
                                     reason="verify identity for case 2026-118")
    assert value == "013812345678"
    entry = audit.query(filled, event="unmask").iloc[0]
    assert json.loads(entry["target"]) == {"customer_ids": ["C000000001"], "fields": ["phone"]}
    assert entry["reason"] == "verify identity for case 2026-118"
    assert "013812345678" not in json.dumps(entry.to_dict(), default=str)
