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


# --------------------------------------------------------------------------------------------
# Lookup by customer id, resident ID number or mobile: exact match only, scoped, audited by kind
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "value"), [("customer_id", "C000000002"), ("id_number", "310115199001010048"),
                                              ("mobile", "13900001111"), ("mobile", " 139 0000 1111 ")])
def test_find_by_each_kind_of_key(filled, kind, value):
    found = customer360.find(filled, kind, value, viewer=v("marketing"))
    assert found["customer_id"].tolist() == ["C000000002"]
    assert found["name"].tolist() == ["李*"]  # masked like everywhere else


@pytest.mark.parametrize(("kind", "value"), [
    ("id_number", "310115199001"),           # a prefix
    ("id_number", "%"), ("id_number", "310115199001010_48"), ("id_number", "3101151990010100%"),
    ("mobile", "1390000111"),                # one digit short
    ("mobile", "139%"), ("mobile", "1390000111_"),
    ("customer_id", "C00000000"), ("customer_id", "C%"), ("customer_id", "C00000000_"),
    ("id_number", "310115199001010048 1"),   # only spaces are dropped: the rest must match
])
def test_a_partial_or_wildcard_key_finds_nothing(filled, kind, value):
    assert customer360.find(filled, kind, value, viewer=v("marketing")).empty


def test_out_of_scope_reads_like_not_found(filled):
    # C000000002 is at BR002; a BR001 manager finds nothing, as for a number nobody has.
    manager = v("relationship_manager", scope=Scope(branches={"BR001"}))
    outside = customer360.find(filled, "id_number", "310115199001010048", viewer=manager)
    nobody = customer360.find(filled, "id_number", "110101199001010000", viewer=manager)
    assert outside.empty and nobody.empty and list(outside.columns) == list(nobody.columns)
    assert customer360.find(filled, "mobile", "013812345678", viewer=manager)["customer_id"].tolist() == ["C000000001"]
    denied = audit.query(filled, event="access_denied")
    assert len(denied) == 1 and "C000000002" in denied.iloc[0]["target"]


def test_lookup_is_audited_with_the_kind_of_key_never_the_value(filled):
    customer360.find(filled, "id_number", "310115199001010048", viewer=v("marketing"), session_id="s1")
    customer360.find(filled, "mobile", "13900001111", viewer=v("marketing"))
    customer360.candidates(filled, "李四", "BR002", viewer=v("marketing"))
    entries = audit.query(filled, event="filter").sort_values("seq")
    targets = [json.loads(t) for t in entries["target"]]
    assert [t["lookup"] for t in targets] == ["id_number", "mobile", "name_branch"]
    assert [t["matches"] for t in targets] == [1, 1, 1]
    logged = " ".join(str(x) for x in entries.to_numpy().ravel())
    for value in ("310115199001010048", "13900001111", "李四"):
        assert value not in logged


def test_name_and_branch_list_masked_candidates(filled):
    found = customer360.candidates(filled, " 张三 ", "BR001", viewer=v("risk"))
    assert found["customer_id"].tolist() == ["C000000001"] and found["name"].tolist() == ["张*"]
    assert customer360.candidates(filled, "张", "BR001", viewer=v("risk")).empty      # exact name only
    assert customer360.candidates(filled, "张三", "BR002", viewer=v("risk")).empty    # at that branch
    assert customer360.candidates(filled, "%", "BR001", viewer=v("risk")).empty


def test_name_and_branch_list_at_most_twenty(filled):
    with filled.begin() as conn:
        for i in range(25):
            conn.execute(text("INSERT INTO customers (customer_id, name, branch_id, open_date, status, "
                              "marketing_consent) VALUES (:c, '赵六', 'BR001', '2020-01-01', 'active', 0)"),
                         {"c": f"C9000000{i:02d}"})
    found = customer360.candidates(filled, "赵六", "BR001", viewer=v("marketing"))
    assert len(found) == customer360.MAX_CANDIDATES == 20
    assert set(found["name"]) == {"赵*"}


@pytest.mark.parametrize("roles", [["executive"], ["display"]])
def test_aggregate_roles_cannot_look_up(filled, roles):
    with pytest.raises(AccessDenied):
        customer360.find(filled, "mobile", "13900001111", viewer=v(*roles))
