"""Rotating AUDIT_HMAC_KEY (issue 17): the chain verifies across a rotation, each stretch only with
the key the chain names for it; a backup from before a rotation can be restored and carried over.
And the client address the audit log records behind the reverse proxy."""

from __future__ import annotations

import json

import pytest

from analytics import audit, backup
from analytics.cli import main

OLD, NEW = "old-audit-key-" + "o" * 30, "new-audit-key-" + "n" * 30


@pytest.fixture
def old_chain(sqlite_engine, monkeypatch):
    monkeypatch.setenv("AUDIT_HMAC_KEY", OLD)
    monkeypatch.delenv("AUDIT_HMAC_KEYS_RETIRED", raising=False)
    for i in range(3):
        audit.append(sqlite_engine, "page_view", username="u1", target={"page": f"p{i}"})
    assert audit.verify(sqlite_engine).ok
    return sqlite_engine


def _rotated(engine, monkeypatch):
    monkeypatch.setenv("AUDIT_HMAC_KEY", NEW)
    monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", OLD)
    return audit.rotate_key(engine, username="ops")


def _entry(engine, seq) -> dict:
    frame = audit.query(engine)
    return frame[frame["seq"] == seq].iloc[0].to_dict()


def test_the_chain_verifies_across_a_rotation(old_chain, monkeypatch):
    # The new key set but not rotated yet: verify names the situation, not a tampering.
    monkeypatch.setenv("AUDIT_HMAC_KEY", NEW)
    monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", OLD)
    result = audit.verify(old_chain)
    assert not result.ok and "signed with a retired key" in result.message

    rotated = audit.rotate_key(old_chain, username="ops")
    assert rotated.ok and "at entry 4" in rotated.message
    entry = _entry(old_chain, 4)
    assert entry["event"] == "audit_key_rotate"
    assert json.loads(entry["parameters"]) == {"old_key_id": audit.key_id(OLD.encode()),
                                                "new_key_id": audit.key_id(NEW.encode())}
    audit.append(old_chain, "page_view", username="u2")
    result = audit.verify(old_chain)
    assert result.ok and result.checked == 5, result.message
    # Known answer: entry 4 is signed with the old key, entry 5 with the new one.
    with old_chain.connect() as conn:
        rows = {r.seq: r._asdict() for r in conn.execute(audit.select(*[audit.audit_log.c[n] for n in
                                                             (*audit.HASHED_FIELDS, "entry_hash")]))}
    assert audit._entry_hash(OLD.encode(), rows[4]) == rows[4]["entry_hash"]
    assert audit._entry_hash(NEW.encode(), rows[5]) == rows[5]["entry_hash"]

    # Without the retired key the older entries cannot be checked.
    monkeypatch.delenv("AUDIT_HMAC_KEYS_RETIRED")
    assert "Entry 1 was altered" in audit.verify(old_chain).message


def test_a_retired_key_cannot_sign_after_its_rotation(old_chain, monkeypatch):
    _rotated(old_chain, monkeypatch)
    # Someone holding only the old key appends an entry after the rotation, checkpoint and all.
    with old_chain.begin() as conn:
        head = audit._head(conn)
        audit._append_locked(conn, OLD.encode(), {
            "username": "intruder", "roles": None, "session_id": None, "client_address": None,
            "event": "page_view", "target": None, "parameters": None, "reason": None, "run_id": None}, head)
    result = audit.verify(old_chain)
    assert not result.ok and result.first_bad_seq == 5 and "Entry 5 was altered" in result.message


def test_rotation_refusals(old_chain, monkeypatch):
    with pytest.raises(audit.AuditTamperedError, match="already signed with AUDIT_HMAC_KEY"):
        audit.rotate_key(old_chain)
    monkeypatch.setenv("AUDIT_HMAC_KEY", NEW)  # the old key not given as retired
    with pytest.raises(audit.AuditTamperedError, match="does not verify"):
        audit.rotate_key(old_chain)
    with pytest.raises(ValueError, match="Unknown audit event"):
        audit.append(old_chain, "audit_key_rotate")


def test_cli_rotate_then_verify(old_chain, monkeypatch, capsys):
    url = old_chain.url.render_as_string(hide_password=False)
    monkeypatch.setenv("AUDIT_HMAC_KEY", NEW)
    monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", OLD)
    assert main(["audit", "rotate-key", "--db", url]) == 0
    assert "rotated" in capsys.readouterr().out
    assert main(["audit", "verify", "--db", url]) == 0


def test_a_backup_from_before_a_rotation_is_restored_and_carried_over(old_chain, monkeypatch, tmp_path, capsys):
    url = old_chain.url.render_as_string(hide_password=False)
    backup.backup(old_chain, tmp_path / "before.bak")
    _rotated(old_chain, monkeypatch)
    audit.append(old_chain, "page_view", username="u2")

    assert main(["restore", str(tmp_path / "before.bak"), "--db", url, "--force"]) == 2
    assert "signed with the retired key" in capsys.readouterr().out
    assert audit.rotate_key(old_chain, username="ops").ok
    result = audit.verify(old_chain)
    assert result.ok and result.checked == 4, result.message


# (peer as Streamlit reports it, X-Forwarded-For, address recorded): one row a case.
CLIENT_ADDRESSES = [
    (None, None, None),                                  # local, no proxy header (make run)
    (None, "203.0.113.7", "203.0.113.7"),               # through nginx on this host
    ("::1", "2001:db8::5", "2001:db8::5"),
    (None, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the nearest proxy's entry is the last
    ("192.0.2.10", "203.0.113.7", "192.0.2.10"),         # not from the proxy: the header is ignored
    (None, "evil.example", None),                        # not an address: nothing recorded
    (None, "<script>", None),
]


@pytest.mark.parametrize(("peer", "forwarded", "expected"), CLIENT_ADDRESSES)
def test_client_address_trusts_x_forwarded_for_only_from_this_host(peer, forwarded, expected):
    assert audit.client_address(peer, forwarded) == expected
