"""The audit log: hash chain, every kind of tampering, concurrent appends, prune, query, safety."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading

import pytest
from sqlalchemy import create_engine, func, insert, select, text

from analytics import audit
from analytics.audit import (
    AuditTamperedError,
    append,
    prune,
    query,
    retire_checkpoint,
    safe_parameters,
    scrub_text,
    session_ref,
    verify,
)
from analytics.errors import ConfigError
from analytics.schema import audit_log, branches
from analytics.store import init_schema, make_engine

KEY = "k" * 48


@pytest.fixture(autouse=True)
def _audit_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_HMAC_KEY", KEY)
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "audit.checkpoint"))
    monkeypatch.setenv("AUDIT_KEY_FILE", str(tmp_path / "audit.key"))
    monkeypatch.delenv("AUDIT_RETENTION_DAYS", raising=False)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url, create_dir=True)
    init_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def chain(engine):
    """Ten entries of assorted events."""
    for i in range(10):
        append(engine, "page_view", username=f"user{i % 3}", roles=["marketing"], session_id=f"sess-{i % 2}",
               client_address="10.0.0.1", target="segments", parameters={"branch_id": f"B{i}"})
    return engine


def _sql(engine, statement, **params):
    with engine.begin() as conn:
        conn.execute(text(statement), params)


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------

def test_an_intact_chain_verifies(chain):
    result = verify(chain)
    assert result.ok and result.checked == 10 and result.first_bad_seq is None
    assert "head at entry 10" in result.message
    with chain.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
    assert [r.seq for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in zip(rows, rows[1:], strict=False))


def test_empty_log_verifies(engine):
    assert verify(engine).ok


TAMPERING = [
    # (what, SQL, first bad seq)
    ("edit a field", "UPDATE audit_log SET username = 'someone_else' WHERE seq = 4", 4),
    ("edit parameters", "UPDATE audit_log SET parameters = '{\"branch_id\":\"B9\"}' WHERE seq = 7", 7),
    ("edit the time", "UPDATE audit_log SET at_utc = '2020-01-01 00:00:00.000000' WHERE seq = 2", 2),
    ("edit an entry hash", "UPDATE audit_log SET entry_hash = '" + "a" * 64 + "' WHERE seq = 5", 5),
    ("edit a prev hash", "UPDATE audit_log SET prev_hash = '" + "b" * 64 + "' WHERE seq = 6", 6),
    ("delete a middle row", "DELETE FROM audit_log WHERE seq = 5", 5),
    ("delete the first rows", "DELETE FROM audit_log WHERE seq <= 2", 1),
    ("truncate the tail", "DELETE FROM audit_log WHERE seq >= 8", 8),
    ("empty the table", "DELETE FROM audit_log", 1),
]


@pytest.mark.parametrize("what, statement, bad_seq", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_is_caught(chain, what, statement, bad_seq):
    _sql(chain, statement)
    result = verify(chain)
    assert not result.ok, what
    assert result.first_bad_seq == bad_seq
    assert result.message


def test_swapping_two_rows_is_caught(chain):
    # Swap the seq numbers of entries 3 and 4, i.e. reorder them.
    _sql(chain, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    _sql(chain, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    _sql(chain, "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    result = verify(chain)
    assert not result.ok and result.first_bad_seq == 3


def test_swapping_two_rows_contents_is_caught(chain):
    with chain.begin() as conn:
        a, b = conn.execute(select(audit_log).where(audit_log.c.seq.in_([3, 4])).order_by(audit_log.c.seq)).all()
        for row, other in ((a, b), (b, a)):
            values = {k: v for k, v in other._asdict().items() if k != "seq"}
            conn.execute(audit_log.update().where(audit_log.c.seq == row.seq).values(**values))
    result = verify(chain)
    assert not result.ok and result.first_bad_seq == 3


def test_a_forged_entry_is_caught(chain):
    with chain.connect() as conn:
        head = conn.execute(select(audit_log).where(audit_log.c.seq == 10)).one()
    forged = head._asdict() | {"seq": 11, "prev_hash": head.entry_hash, "reason": "forged"}
    with chain.begin() as conn:
        conn.execute(insert(audit_log).values(**forged))
    result = verify(chain)
    assert not result.ok and result.first_bad_seq == 11


def test_a_deleted_checkpoint_is_a_failure_not_a_note(chain, tmp_path):
    _sql(chain, "DELETE FROM audit_log WHERE seq >= 8")
    os.remove(tmp_path / "audit.checkpoint")
    result = verify(chain)
    assert not result.ok and result.missing_checkpoint
    assert "no checkpoint" in result.message and "--accept-missing-checkpoint" in result.message


def test_an_altered_checkpoint_is_caught(chain, tmp_path):
    path = tmp_path / "audit.checkpoint"
    data = json.loads(path.read_text())
    (entry,) = data["stores"].values()
    assert entry["seq"] == 10
    entry["seq"] = 7  # hide a truncation of entries 8..10
    path.write_text(json.dumps(data))
    _sql(chain, "DELETE FROM audit_log WHERE seq >= 8")
    result = verify(chain)
    assert not result.ok and "checkpoint" in result.message.lower()


def test_a_wrong_key_fails_verification(chain, monkeypatch):
    monkeypatch.setenv("AUDIT_HMAC_KEY", "z" * 48)
    assert not verify(chain).ok


def test_rebuilt_store_needs_an_explicit_retirement_which_is_recorded(chain):
    with chain.connect() as conn:
        head = conn.execute(text("SELECT entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")).scalar()
    assert retire_checkpoint(chain, username="cli:demo") is None  # the log has entries: nothing retired
    _sql(chain, "DELETE FROM audit_log")
    with pytest.raises(audit.AuditChainBroken):  # the checkpoint still says 10 entries: rightly suspicious
        append(chain, "refresh_start", run_id=1)
    assert not verify(chain).ok
    seq = retire_checkpoint(chain, username="cli:demo")
    assert seq == 1 and verify(chain).ok and audit.chain_alarm(chain) is None
    first = audit.query(chain).set_index("seq").loc[1]
    assert first["event"] == "audit_verify" and first["username"] == "cli:demo"
    retired = json.loads(first["parameters"])["retired_checkpoint"]
    assert retired["seq"] == 10 and retired["hash"] == head
    append(chain, "refresh_start", run_id=1)
    assert verify(chain).ok
    assert retire_checkpoint(chain) is None


# ---------------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------------

def test_eight_threads_append_one_valid_chain(engine, db_url):
    per_thread = 25
    errors = []

    def worker(n):
        own = make_engine(db_url)  # its own engine, pool and connections
        try:
            for i in range(per_thread):
                append(own, "filter", username=f"thread{n}", parameters={"i": i})
        except Exception as exc:  # collected and reported by the assertion below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars().all()
    assert seqs == list(range(1, 8 * per_thread + 1))
    result = verify(engine)
    assert result.ok and result.checked == 8 * per_thread


def test_append_leaves_pooled_connections_transactional(engine):
    # The SQLite append runs its connection in AUTOCOMMIT to issue BEGIN IMMEDIATE; the pool must
    # give the next user an ordinary transactional connection again.
    append(engine, "logout", username="u")
    with engine.connect() as conn:
        conn.execute(insert(branches).values(branch_id="B1", name="x", city="c", province="p"))
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(select(branches)).all() == []


# ---------------------------------------------------------------------------------------------
# Prune
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def aged(engine, monkeypatch):
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for days, n in ((500, 4), (450, 3), (10, 3)):
        monkeypatch.setattr(audit, "_now_utc", lambda d=days: now - dt.timedelta(days=d))
        for _ in range(n):
            append(engine, "page_view", username="old" if days > 400 else "new")
    monkeypatch.setattr(audit, "_now_utc", lambda: now)
    return engine


def test_prune_keeps_the_chain_verifiable(aged):
    assert prune(aged) == 7  # the default retention is 400 days
    result = verify(aged)
    assert result.ok, result.message
    with aged.connect() as conn:
        rows = conn.execute(select(audit_log.c.seq, audit_log.c.event).order_by(audit_log.c.seq)).all()
    assert [r.seq for r in rows] == [8, 9, 10, 11]
    assert rows[-1].event == "audit_prune"
    append(aged, "logout", username="new")
    assert verify(aged).ok
    assert prune(aged, 400) == 0  # nothing old left


def test_prune_everything_continues_the_chain(aged):
    assert prune(aged, 1) == 10
    with aged.connect() as conn:
        (row,) = conn.execute(select(audit_log)).all()
    assert row.seq == 11 and json.loads(row.parameters)["pruned_through_seq"] == 10
    assert verify(aged).ok


def test_deleting_past_the_prune_anchor_is_caught(aged):
    prune(aged)
    _sql(aged, "DELETE FROM audit_log WHERE seq = 8")
    result = verify(aged)
    assert not result.ok and result.first_bad_seq == 8


def test_prune_refuses_a_tampered_log(aged):
    _sql(aged, "UPDATE audit_log SET username = 'x' WHERE seq = 9")
    with pytest.raises(AuditTamperedError):
        prune(aged)
    with pytest.raises(ValueError):
        prune(aged, 0)


def test_prune_keeps_an_old_stamped_entry_after_a_recent_one(engine, monkeypatch):
    # Clocks of two hosts disagree: entry 3 is stamped older than entry 2. Pruning never cuts
    # the chain in the middle, so 3 stays.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for days in (500, 5, 500):
        monkeypatch.setattr(audit, "_now_utc", lambda d=days: now - dt.timedelta(days=d))
        append(engine, "page_view")
    monkeypatch.setattr(audit, "_now_utc", lambda: now)
    assert prune(engine, 400) == 1
    assert verify(engine).ok


# ---------------------------------------------------------------------------------------------
# Keeping personal data and secrets out
# ---------------------------------------------------------------------------------------------

SAFE_CASES = [
    ({"phone": "13812345678"}, {"phone": "138****5678"}),
    ({"customer_name": "张三丰"}, {"customer_name": "张**"}),
    ({"name": "李四"}, {"name": "李*"}),
    ({"branch_name": "朝阳支行", "product_name": "稳健理财"}, {"branch_name": "朝阳支行", "product_name": "稳健理财"}),
    ({"id_number": "11010519491231002X"}, {"id_number": "110105********002X"}),
    ({"filter_id_number": "110105491231002"}, {"filter_id_number": "110105*****1002"}),
    ({"Card-Number": 6222021234567891234}, {"Card-Number": "622202*********1234"}),
    ({"email": "zhang.san@example.com"}, {"email": "z***@example.com"}),
    ({"birthday": dt.date(1990, 5, 17)}, {"birthday": "1990-**-**"}),
    ({"address": "北京市朝阳区建国路88号"}, {"address": "北京市朝阳区****"}),
    ({"phones": None, "mobile": ["13812345678", "13912345678"]}, {"phones": None, "mobile": ["138****5678", "139****5678"]}),
    ({"password": "hunter2hunter2", "api_key": "abc", "session_id": "s"},
     {"password": "[redacted]", "api_key": "[redacted]", "session_id": "[redacted]"}),
    ({"search": "call 13812345678 or zhang.san@example.com"}, {"search": "call 138****5678 or z***@example.com"}),
    ({"q": "ID 11010519491231002x, card 6222021234567891234"},
     {"q": "ID 110105********002x, card 622202*********1234"}),
    ({"filters": {"phone": "13812345678", "segment": "affluent"}},
     {"filters": {"phone": "138****5678", "segment": "affluent"}}),
    ({"customer_ids": ["C0000001", "C0000002"], "limit": 50, "masked": True},
     {"customer_ids": ["C0000001", "C0000002"], "limit": 50, "masked": True}),
    ({"since": dt.date(2026, 1, 1)}, {"since": "2026-01-01"}),
    ({}, {}),
    (None, {}),
]


@pytest.mark.parametrize("params, expected", SAFE_CASES)
def test_safe_parameters(params, expected):
    assert safe_parameters(params) == expected


def test_scrub_text_leaves_ordinary_numbers_and_hashes_alone():
    assert scrub_text("top 100 customers in branch 0101, run 42") == "top 100 customers in branch 0101, run 42"
    digest = "a1" * 32
    assert scrub_text(digest) == digest


def test_append_stores_no_personal_data_and_no_session_id(engine):
    seq = append(engine, "unmask", username="comp1", roles=["compliance"], session_id="secret-session-token",
                 target={"customer_ids": ["C0000007"], "fields": ["phone"]},
                 parameters={"phone": "13812345678"},
                 reason="Customer 13812345678 disputes a transfer, ticket 88")
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).one()
    stored = " ".join(str(v) for v in row)
    assert "13812345678" not in stored
    assert "secret-session-token" not in stored
    assert row.session_id == session_ref("secret-session-token")
    assert json.loads(row.target) == {"customer_ids": ["C0000007"], "fields": ["phone"]}
    assert row.reason == "Customer 138****5678 disputes a transfer, ticket 88"
    assert verify(engine).ok


def test_append_rejects_unknown_and_internal_events(engine):
    with pytest.raises(ValueError, match="Unknown audit event"):
        append(engine, "coffee_break")
    with pytest.raises(ValueError):
        append(engine, "audit_prune")
    with pytest.raises(ValueError):
        append(engine, "login_ok", roles=["root"])


# ---------------------------------------------------------------------------------------------
# Query
# ---------------------------------------------------------------------------------------------

def test_query_filters(engine, monkeypatch):
    t0 = dt.datetime(2026, 1, 10, 12, 0)
    entries = [
        ("login_ok", "alice", None),
        ("page_view", "alice", "customer_360"),
        ("unmask", "carol", {"customer_ids": ["C0000007"], "fields": ["phone"]}),
        ("export", "bob", {"customer_ids": ["C0000007", "C0000008"]}),
        ("page_view", "bob", "C0000009"),
        ("export", "bob", {"customer_ids": ["C00000070"]}),
    ]
    for i, (event, user, target) in enumerate(entries):
        monkeypatch.setattr(audit, "_now_utc", lambda i=i: t0 + dt.timedelta(hours=i))
        append(engine, event, username=user, target=target)

    everything = query(engine)
    assert everything["seq"].tolist() == [6, 5, 4, 3, 2, 1]  # newest first
    assert list(everything.columns) == list(audit.QUERY_COLUMNS)
    assert query(engine, user="alice")["event"].tolist() == ["page_view", "login_ok"]
    assert query(engine, event="export")["seq"].tolist() == [6, 4]
    assert query(engine, event=["unmask", "login_ok"])["seq"].tolist() == [3, 1]
    assert query(engine, customer_id="C0000007")["seq"].tolist() == [4, 3]  # not C00000070
    assert query(engine, customer_id="C0000009")["seq"].tolist() == [5]
    assert query(engine, since=t0 + dt.timedelta(hours=2), until=t0 + dt.timedelta(hours=4))["seq"].tolist() == [4, 3]
    assert query(engine, limit=2)["seq"].tolist() == [6, 5]
    assert query(engine, user="bob", event="export", customer_id="C0000008")["seq"].tolist() == [4]


def test_query_binds_its_parameters(engine):
    append(engine, "login_ok", username="alice")
    assert query(engine, user="alice' OR '1'='1").empty
    assert query(engine, customer_id="%").empty
    assert query(engine, customer_id="_").empty
    assert len(query(engine)) == 1
    with pytest.raises(ValueError):
        query(engine, event="drop table")
    with pytest.raises(ValueError):
        query(engine, limit=0)


# ---------------------------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------------------------

def test_a_key_file_is_made_once_when_no_key_is_configured(engine, tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIT_HMAC_KEY")
    monkeypatch.setattr(audit.settings, "SECRETS_FILE", tmp_path / "no-secrets.toml")
    append(engine, "login_ok", username="alice")
    key_file = tmp_path / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_bytes()
    append(engine, "logout", username="alice")
    assert key_file.read_bytes() == first
    assert verify(engine).ok


def test_a_short_key_is_a_config_error(engine, monkeypatch):
    monkeypatch.setenv("AUDIT_HMAC_KEY", "too-short")
    with pytest.raises(ConfigError, match="32 bytes"):
        append(engine, "login_ok")


def test_a_shared_database_needs_a_configured_key(monkeypatch, tmp_path):
    monkeypatch.delenv("AUDIT_HMAC_KEY")
    monkeypatch.setattr(audit.settings, "SECRETS_FILE", tmp_path / "no-secrets.toml")
    pg = create_engine("postgresql+psycopg://audit@localhost/none")  # never connected
    with pytest.raises(ConfigError, match="AUDIT_HMAC_KEY is not set"):
        audit.audit_key(pg)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the advisory lock
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def pg_engine():
    url = os.environ.get("CUSTOMER_STORE_TEST_PG_URL")
    if not url:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail("REQUIRE_POSTGRES is set but CUSTOMER_STORE_TEST_PG_URL is not")
        pytest.skip("CUSTOMER_STORE_TEST_PG_URL not set")
    # A schema of its own, so other tests sharing the database are not disturbed.
    schema = f"audit_test_{os.getpid()}_{threading.get_ident() % 10**6}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = create_engine(url, connect_args={"options": f"-csearch_path={schema}"}, pool_size=10)
    try:
        init_schema(eng)
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_concurrent_appends_make_one_chain(pg_engine):
    errors = []

    def worker(n):
        try:
            for i in range(15):
                append(pg_engine, "filter", username=f"thread{n}", parameters={"i": i})
        except Exception as exc:  # collected and reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pg_engine.connect() as conn:
        seqs = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars().all()
    assert seqs == list(range(1, 121))
    assert verify(pg_engine).ok
    with pg_engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET reason = 'x' WHERE seq = 50"))
    assert verify(pg_engine).first_bad_seq == 50


# ---------------------------------------------------------------------------------------------
# The checkpoint attacks of the red-team pass (issue 12, F1), on SQLite and PostgreSQL
# ---------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def store(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture
def eight(store):
    for i in range(8):
        append(store, "page_view", username=f"user{i % 2}", target="overview")
    return store


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit_log)).scalar_one()


def _checkpoint_file(tmp_path):
    return tmp_path / "audit.checkpoint"


def test_deleted_tail_then_appends_are_refused_and_alarmed(eight, caplog):
    _sql(eight, "DELETE FROM audit_log WHERE seq >= 7")
    for _ in range(3):  # what failed anonymous logins would do
        with pytest.raises(audit.AuditChainBroken, match="audit verify"):
            append(eight, "login_failed", username="unknown")
    assert _count(eight) == 6  # nothing was written on top of the gap
    assert "audit_chain_broken" in caplog.text and "Entries 7..8 are missing" in caplog.text
    alarm = audit.chain_alarm(eight)
    assert alarm is not None and alarm.count == 3 and "7..8" in alarm.problem
    result = verify(eight)
    assert not result.ok and result.first_bad_seq == 7 and "7..8" in result.message
    assert audit.chain_alarm(eight) is not None  # a failed verify keeps the banner up


def test_a_good_verify_clears_the_alarm(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    saved = path.read_bytes()
    append(eight, "logout", username="user0")
    path.write_bytes(saved)  # stale: the log is now one entry past the checkpoint
    with pytest.raises(audit.AuditChainBroken):
        append(eight, "logout", username="user0")
    assert audit.chain_alarm(eight) is not None
    assert retire_checkpoint(eight) is None  # a log with entries keeps its checkpoint
    os.remove(path)  # an operator's deliberate act: the checkpoint moved aside, the head accepted
    assert audit.accept_missing_checkpoint(eight, username="ops").accepted
    assert verify(eight).ok
    assert audit.chain_alarm(eight) is None


def test_deleted_checkpoint_fails_verify_and_refuses_appends(eight, tmp_path):
    os.remove(_checkpoint_file(tmp_path))
    result = verify(eight)
    assert not result.ok and result.missing_checkpoint and "no checkpoint" in result.message
    with pytest.raises(audit.AuditChainBroken):
        append(eight, "logout")


def test_removing_this_stores_entry_from_the_checkpoint_fails(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    data = json.loads(path.read_text())
    data["stores"] = {"sqlite:////elsewhere.db": {"seq": 1, "hash": "0" * 64, "mac": "0" * 64}}
    path.write_text(json.dumps(data))
    result = verify(eight)
    assert not result.ok and result.missing_checkpoint
    with pytest.raises(audit.AuditChainBroken):
        append(eight, "logout")


def test_an_older_checkpoint_restored_is_stale(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    older = path.read_bytes()  # at entry 8
    for _ in range(3):
        append(eight, "page_view")
    path.write_bytes(older)
    result = verify(eight)
    assert not result.ok and "stale" in result.message and result.first_bad_seq == 9
    with pytest.raises(audit.AuditChainBroken):
        append(eight, "page_view")
    # and with the tail deleted back to the restored copy's head, only an outside copy of the
    # head (AUDIT_CHECKPOINT_SYSLOG) can tell: the README says so.


def test_an_unsigned_or_resigned_checkpoint_fails(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    data = json.loads(path.read_text())
    (entry,) = data["stores"].values()
    del entry["mac"]
    path.write_text(json.dumps(data))
    assert "not signed" in verify(eight).message
    entry["mac"] = "f" * 64
    path.write_text(json.dumps(data))
    assert "not signed by the audit key" in verify(eight).message


def test_a_checkpoint_older_than_the_entry_it_covers_fails(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    data = json.loads(path.read_text())
    (store_id, entry), = data["stores"].items()
    at = (dt.datetime.fromisoformat(entry["at"]) - dt.timedelta(days=2)).isoformat(timespec="microseconds")
    entry["at"] = at
    entry["mac"] = audit._sign_checkpoint(KEY.encode(), store_id, entry["seq"], entry["hash"], at)
    path.write_text(json.dumps(data))
    result = verify(eight)
    assert not result.ok and "older than entry 8" in result.message


def test_accepting_a_missing_checkpoint_is_explicit_and_recorded(eight, tmp_path):
    os.remove(_checkpoint_file(tmp_path))
    assert not verify(eight).ok
    result = audit.accept_missing_checkpoint(eight, username="cli:ops")
    assert result.ok and result.accepted and "accepted at entry 8" in result.message
    (row,) = query(eight, event="audit_verify").itertuples()
    params = json.loads(row.parameters)
    assert params["accepted_missing_checkpoint"] is True and row.username == "cli:ops"
    assert params["anchored_at_seq"] == 8 and "no checkpoint" in params["alarm"]["problem"]
    assert verify(eight).ok and audit.chain_alarm(eight) is None
    append(eight, "logout")
    assert verify(eight).ok


def test_accepting_does_not_cover_other_damage(eight, tmp_path):
    os.remove(_checkpoint_file(tmp_path))
    _sql(eight, "UPDATE audit_log SET username = 'x' WHERE seq = 3")
    result = audit.accept_missing_checkpoint(eight, username="cli:ops")
    assert not result.ok and not result.accepted and result.first_bad_seq == 3
    assert not _checkpoint_file(tmp_path).exists()


def test_checkpoint_and_alarm_files_are_private(eight, tmp_path):
    _sql(eight, "DELETE FROM audit_log WHERE seq = 8")
    with pytest.raises(audit.AuditChainBroken):
        append(eight, "logout")
    for name in ("audit.checkpoint", "audit.checkpoint.alarm", "audit.checkpoint.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_checkpoint_carries_its_time_and_version(eight, tmp_path):
    data = json.loads(_checkpoint_file(tmp_path).read_text())
    (entry,) = data["stores"].values()
    assert data["version"] == 2 and entry["seq"] == 8 and set(entry) == {"seq", "hash", "at", "mac"}


def test_a_version_1_checkpoint_still_verifies(eight, tmp_path):
    path = _checkpoint_file(tmp_path)
    data = json.loads(path.read_text())
    (store_id, entry), = data["stores"].items()
    data["stores"][store_id] = {"seq": entry["seq"], "hash": entry["hash"],
                                "mac": audit._sign_checkpoint(KEY.encode(), store_id, entry["seq"], entry["hash"])}
    path.write_text(json.dumps(data))
    assert verify(eight).ok
    append(eight, "logout")
    assert "at" in json.loads(path.read_text())["stores"][store_id]


def test_the_head_goes_to_syslog_when_asked(engine, monkeypatch):
    import syslog

    sent = []
    monkeypatch.setattr(syslog, "syslog", lambda prio, msg: sent.append(msg))
    monkeypatch.setattr(syslog, "openlog", lambda *a, **k: None)
    append(engine, "logout")
    assert sent == []
    monkeypatch.setenv("AUDIT_CHECKPOINT_SYSLOG", "1")
    append(engine, "logout")
    assert len(sent) == 1 and "seq=2" in sent[0]


# ---------------------------------------------------------------------------------------------
# What each role is shown (issue 12, F5)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def mixed_log(engine):
    append(engine, "unmask", username="comp1", roles=["compliance"],
           target={"customer_ids": ["C0000007"], "fields": ["address"]},
           reason="Customer Wang Fang of 88 Jianguo Road disputes a transfer")
    append(engine, "export", username="mkt1", roles=["marketing"],
           target={"export": "churn.csv", "rows": 3, "sha256": "ab" * 32, "manifest_id": "M42",
                   "customer_ids": ["C1", "C2", "C3"]}, parameters={"page": "churn"})
    append(engine, "login_failed", username="unknown", reason="unknown user")
    return query(engine)


def test_compliance_sees_unmask_reasons_and_customer_ids(mixed_log):
    shown = audit.entries_for_viewer(mixed_log, ["compliance"])
    assert shown.equals(mixed_log)


@pytest.mark.parametrize("roles", [["admin"], ["admin", "risk"], "admin"])
def test_others_see_the_length_of_a_reason_and_counts_of_customers(mixed_log, roles):
    shown = audit.entries_for_viewer(mixed_log, roles)
    by_event = {row.event: row for row in shown.itertuples()}
    reason = "Customer Wang Fang of 88 Jianguo Road disputes a transfer"
    assert by_event["unmask"].reason == f"(reason recorded, {len(reason)} characters)"
    assert "Wang" not in shown.to_string() and "C0000007" not in shown.to_string()
    export = json.loads(by_event["export"].target)
    assert export == {"export": "churn.csv", "rows": 3, "sha256": "ab" * 32, "manifest_id": "M42",
                      "customer_count": 3}
    assert json.loads(by_event["unmask"].target) == {"fields": ["address"], "customer_count": 1}
    assert by_event["login_failed"].reason == "unknown user"  # system reasons stay
    assert mixed_log["reason"].str.contains("Wang").any()  # the input frame is not changed


def test_an_unknown_viewer_role_fails_closed(mixed_log):
    with pytest.raises(ValueError):
        audit.entries_for_viewer(mixed_log, ["root"])


def test_keyed_ref_needs_the_key(engine, monkeypatch):
    a = audit.keyed_ref(engine, "hunter2")
    assert a == audit.keyed_ref(engine, "hunter2") and len(a) == 20 and "hunter2" not in a
    monkeypatch.setenv("AUDIT_HMAC_KEY", "q" * 48)
    assert audit.keyed_ref(engine, "hunter2") != a
