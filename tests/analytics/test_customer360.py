"""Customer 360 data layer: masked for the role, aggregate roles refused, unmask audited with a reason."""

import json

import pytest

from analytics import audit, customer360
from analytics.access import AccessDenied
from tests.analytics import store_rows


@pytest.fixture
def filled(sqlite_engine, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_HMAC_KEY", "k" * 40)
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "ckpt"))
    store_rows.fill(sqlite_engine)
    return sqlite_engine


@pytest.mark.parametrize("roles", [["marketing"], ["risk"], ["compliance"]])
def test_profile_is_masked(filled, roles):
    p = customer360.profile(filled, "C000000001", roles).iloc[0]
    assert p["name"] == "张*"
    assert p["id_number"] == "110105********002X"
    assert p["phone"] == "013*****5678"
    assert str(p["birth_date"]).startswith("1949-**")
    h = customer360.holdings_of(filled, "C000000001", roles)
    assert "6222020200112233445" not in set(h["account_number"])
    assert h["account_number"].iloc[0] == "622202*********3445"


@pytest.mark.parametrize("roles", [["executive"], ["admin"]])
def test_aggregate_roles_get_no_customer(filled, roles):
    with pytest.raises(AccessDenied):
        customer360.profile(filled, "C000000001", roles)


@pytest.mark.parametrize("bad", ["", "C1' OR 1=1 --", "x" * 40])
def test_bad_ids_are_refused_cleanly(filled, bad):
    with pytest.raises(customer360.CustomerNotFound):
        customer360.profile(filled, bad, ["risk"])


def test_unknown_customer(filled):
    with pytest.raises(customer360.CustomerNotFound, match="No customer"):
        customer360.profile(filled, "C999", ["risk"])


def test_monthly_and_contacts(filled):
    m = customer360.monthly(filled, "C000000001", ["risk"])
    assert m["aum"].tolist() == [900.0, 1000.5]
    assert customer360.contacts_of(filled, "C000000001", ["risk"]).empty


def test_unmask_needs_compliance_and_a_reason_and_is_audited(filled):
    with pytest.raises(AccessDenied):
        customer360.unmask_field(filled, "C000000001", "phone", roles=["marketing"],
                                 reason="call back about complaint 123", username="m")
    with pytest.raises(AccessDenied, match="reason"):
        customer360.unmask_field(filled, "C000000001", "phone", roles=["compliance"], reason="x",
                                 username="c")
    assert audit.query(filled, event="unmask").empty
    value = customer360.unmask_field(filled, "C000000001", "phone", roles=["compliance"],
                                     reason="verify identity for case 2026-118", username="c")
    assert value == "013812345678"
    entry = audit.query(filled, event="unmask").iloc[0]
    assert json.loads(entry["target"]) == {"customer_ids": ["C000000001"], "fields": ["phone"]}
    assert entry["reason"] == "verify identity for case 2026-118"
    assert "013812345678" not in json.dumps(entry.to_dict(), default=str)
