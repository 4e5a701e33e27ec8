"""Audit-log analytics: each signal against small, hand-made logs (table-driven), the entries
behind each signal, the settings read with one clear line when wrong, and the log read back from a
real store (SQLite and PostgreSQL)."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from analytics import audit
from analytics import audit_signals as sig
from analytics.errors import ConfigError

SH = ZoneInfo("Asia/Shanghai")  # UTC+8, no daylight saving
UTC = ZoneInfo("UTC")
DAY0 = dt.datetime(2026, 3, 1)


def log(*rows) -> pd.DataFrame:
    """Entries (at_utc, username, event[, target dict][, client_address]) numbered from seq 1."""
    out = []
    for seq, row in enumerate(rows, start=1):
        at, user, event, *rest = row
        target = next((r for r in rest if isinstance(r, dict)), None)
        address = next((r for r in rest if isinstance(r, str)), None)
        out.append({"seq": seq, "at_utc": at, "username": user, "event": event, "client_address": address,
                    "target": None if target is None else json.dumps(target, sort_keys=True)})
    return pd.DataFrame(out, columns=["seq", "at_utc", "username", "event", "client_address", "target"])


def h(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return DAY0 + dt.timedelta(days=day, hours=hour, minutes=minute)


def _exports(user, day, n, hour=2):
    return [(h(day, hour, k), user, "export") for k in range(n)]


# --- exports per user per day against the 30-day median ------------------------------------------

EXPORT_CASES = [
    # (name, entries, expected [(user, count, median)])
    ("no history: 5 exports on a day, median 0 -> flagged", _exports("ann", 40, 5), [("ann", 5, 0.0)]),
    ("below the day minimum: 4 exports", _exports("ann", 40, 4), []),
    # every one of the 30 days before has 2 exports: median 2; 6 is not > 3 x 2, 7 is
    ("6 against a median of 2 is not a spike",
     [e for d in range(10, 40) for e in _exports("ann", d, 2)] + _exports("ann", 40, 6), []),
    ("7 against a median of 2 is",
     [e for d in range(10, 40) for e in _exports("ann", d, 2)] + _exports("ann", 40, 7), [("ann", 7, 2.0)]),
    # 15 of the 30 days with 2 exports, 15 with none: median 1; 5 > 3 x 1
    ("half the days busy: median 1",
     [e for d in range(10, 40, 2) for e in _exports("bob", d, 2)] + _exports("bob", 40, 5), [("bob", 5, 1.0)]),
    ("another user's exports do not count", _exports("ann", 40, 3) + _exports("bob", 40, 3), []),
]


@pytest.mark.parametrize("name, entries, expected", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_export_spikes(name, entries, expected):
    found = sig.export_spikes(log(*entries), factor=3.0, min_day=5, tz=UTC)
    assert [(r.subject, r.count, r.baseline) for r in found.itertuples()] == expected
    frame = log(*entries)
    for r in found.itertuples():  # the entries behind it are that user's exports of that day
        assert set(frame.loc[frame["seq"].isin(r.seqs), "username"]) == {r.subject}
        assert len(r.seqs) == r.count


def test_export_days_are_local_days():
    # 17:00 and 15:59 UTC on one UTC day are two Shanghai days (01:00 next day, 23:59 that day)
    entries = [(h(5, 15, 59), "ann", "export")] * 3 + [(h(5, 17, 0), "ann", "export")] * 3
    assert sig.export_spikes(log(*entries), factor=3.0, min_day=5, tz=UTC)["count"].tolist() == [6]
    assert sig.export_spikes(log(*entries), factor=3.0, min_day=5, tz=SH).empty


# --- activity outside working hours ---------------------------------------------------------------

OFF_HOURS_CASES = [
    # (name, entries (UTC), expected [(user, count)]); working hours 08:00-20:00 Shanghai = 00:00-12:00 UTC
    ("inside hours", [(h(1, 0, 0), "ann", "page_view"), (h(1, 11, 59), "ann", "export")], []),
    ("20:00 and 23:59 local are outside: one signal for the day",
     [(h(1, 12, 0), "ann", "page_view"), (h(1, 15, 59), "ann", "export")], [("ann", 2)]),
    ("07:59 local is outside, on the next local day",
     [(h(1, 12, 0), "ann", "page_view"), (h(1, 23, 59), "ann", "export")], [("ann", 1), ("ann", 1)]),
    ("two local days are two signals",
     [(h(1, 13), "ann", "page_view"), (h(2, 13), "ann", "page_view")], [("ann", 1), ("ann", 1)]),
    ("entries without a user are not a user's activity", [(h(1, 13), None, "approval_expire")], []),
    ("two users", [(h(1, 13), "bob", "login_ok"), (h(1, 14), "ann", "export")], [("ann", 1), ("bob", 1)]),
]


@pytest.mark.parametrize("name, entries, expected", OFF_HOURS_CASES, ids=[c[0] for c in OFF_HOURS_CASES])
def test_off_hours(name, entries, expected):
    found = sig.off_hours(log(*entries), start=dt.time(8), end=dt.time(20), tz=SH)
    assert [(r.subject, r.count) for r in found.itertuples()] == expected


# --- repeated unmask requests for one customer ---------------------------------------------------

def _ask(at, user, cid):
    return (at, user, "approval_request", {"approval_id": 1, "kind": "unmask", "customer_ids": [cid],
                                            "fields": ["phone"]})


UNMASK_CASES = [
    ("three requests in a day", [_ask(h(1, 1), "ann", "C1"), _ask(h(1, 5), "bob", "C1"), _ask(h(1, 9), "ann", "C1")],
     [("C1", 3)]),
    ("two are not enough", [_ask(h(1, 1), "ann", "C1"), _ask(h(1, 5), "ann", "C1")], []),
    ("spread over more than the window", [_ask(h(1, 1), "ann", "C1"), _ask(h(2, 2), "ann", "C1"),
                                          _ask(h(3, 3), "ann", "C1")], []),
    ("different customers", [_ask(h(1, 1), "ann", "C1"), _ask(h(1, 2), "ann", "C2"), _ask(h(1, 3), "ann", "C3")],
     []),
    ("an approved unmask is not counted twice; a direct one is",
     [_ask(h(1, 1), "ann", "C1"), (h(1, 2), "ann", "unmask", {"approval_id": 1, "customer_ids": ["C1"]}),
      _ask(h(1, 3), "ann", "C1"), (h(1, 4), "ann", "unmask", {"customer_ids": ["C1"], "fields": ["name"]})],
     [("C1", 3)]),
    ("an export request is no unmask",
     [(h(1, k), "ann", "approval_request", {"kind": "export", "customer_ids": ["C1"]}) for k in range(4)], []),
    ("two bursts a week apart", [_ask(h(d, k), "ann", "C1") for d in (1, 8) for k in range(3)],
     [("C1", 3), ("C1", 3)]),
]


@pytest.mark.parametrize("name, entries, expected", UNMASK_CASES, ids=[c[0] for c in UNMASK_CASES])
def test_repeated_unmasks(name, entries, expected):
    found = sig.repeated_unmasks(log(*entries), repeat=3, window=dt.timedelta(hours=24))
    assert [(r.subject, r.count) for r in found.itertuples()] == expected


# --- access-denied bursts -----------------------------------------------------------------------

def _denied(at, user="mia"):
    return (at, user, "access_denied", {"page": "admin"})


DENIED_CASES = [
    ("five in an hour", [_denied(h(1, 1, k * 10)) for k in range(5)], [("mia", 5)]),
    ("four in an hour", [_denied(h(1, 1, k * 10)) for k in range(4)], []),
    # 5 within 24 h ending at the 5th: entries 1..5 are the burst, the 6th joins within the window
    ("a long run is one signal", [_denied(h(1, k * 4)) for k in range(6)], [("mia", 6)]),
    ("five a day apart", [_denied(h(d, 1)) for d in range(5)], []),
    ("two users' denials are not pooled", [_denied(h(1, 1, k), "mia" if k % 2 else "bob") for k in range(8)], []),
]


@pytest.mark.parametrize("name, entries, expected", DENIED_CASES, ids=[c[0] for c in DENIED_CASES])
def test_denied_bursts(name, entries, expected):
    found = sig.denied_bursts(log(*entries), burst=5, window=dt.timedelta(hours=24))
    assert [(r.subject, r.count) for r in found.itertuples()] == expected


# --- logins from a new client address -----------------------------------------------------------

ADDRESS_CASES = [
    ("the first login is not flagged", [(h(1, 1), "ann", "login_ok", "10.0.0.1")], []),
    ("the same address again", [(h(1, 1), "ann", "login_ok", "10.0.0.1"), (h(2, 1), "ann", "login_ok", "10.0.0.1")],
     []),
    ("a new address", [(h(1, 1), "ann", "login_ok", "10.0.0.1"), (h(2, 1), "ann", "login_ok", "10.0.0.9")],
     [("ann", 2, 1)]),
    ("a failed login does not make an address known",
     [(h(1, 1), "ann", "login_failed", "10.0.0.9"), (h(1, 2), "ann", "login_ok", "10.0.0.1"),
      (h(2, 1), "ann", "login_ok", "10.0.0.9")], [("ann", 3, 1)]),
    ("another user's address is new to this one",
     [(h(1, 1), "bob", "login_ok", "10.0.0.9"), (h(1, 2), "ann", "login_ok", "10.0.0.1"),
      (h(2, 1), "ann", "login_ok", "10.0.0.9"), (h(3, 1), "ann", "login_ok", "10.0.0.7")],
     [("ann", 3, 1), ("ann", 4, 2)]),
]


@pytest.mark.parametrize("name, entries, expected", ADDRESS_CASES, ids=[c[0] for c in ADDRESS_CASES])
def test_new_addresses(name, entries, expected):
    found = sig.new_addresses(log(*entries))
    assert [(r.subject, r.seqs[0], r.baseline) for r in found.itertuples()] == expected


# --- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("08:00-20:00", (dt.time(8), dt.time(20))),
                                             (" 7:30 - 18:45 ", (dt.time(7, 30), dt.time(18, 45)))])
def test_working_hours(value, expected):
    assert sig.working_hours(value) == expected


@pytest.mark.parametrize("value", ["8-20", "20:00-08:00", "25:00-26:00", "08:00"])
def test_bad_working_hours_name_the_setting(value):
    with pytest.raises(ConfigError, match="WORKING_HOURS="):
        sig.working_hours(value)


def test_bad_time_zone_names_the_setting():
    with pytest.raises(ConfigError, match="WORKING_HOURS_TZ="):
        sig.time_zone("Mars/Olympus")


# --- from a real store ----------------------------------------------------------------------------

def test_compute_reads_the_log_and_lists_the_entries_behind(engine, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_CHECKPOINT_FILE", str(tmp_path / "ckpt"))
    monkeypatch.setenv("SIGNAL_DENIED_BURST", "3")
    for _ in range(3):
        audit.append(engine, "access_denied", username="mia", roles=["marketing"], target={"page": "admin"})
    audit.append(engine, "login_ok", username="mia", roles=["marketing"], client_address="10.0.0.1")
    audit.append(engine, "login_ok", username="mia", roles=["marketing"], client_address="10.0.0.2")
    now = audit.query(engine)["at_utc"].max()
    found = sig.compute(engine, since=pd.Timestamp(now).to_pydatetime() - dt.timedelta(hours=1),
                        until=pd.Timestamp(now).to_pydatetime() + dt.timedelta(seconds=1))
    by_kind = {r.signal: r for r in found.itertuples()}
    assert by_kind["denied_burst"].seqs == [1, 2, 3] and by_kind["new_address"].seqs == [5]
    behind = sig.entries_behind(engine, by_kind["denied_burst"].seqs)
    assert behind["seq"].tolist() == [1, 2, 3] and set(behind["event"]) == {"access_denied"}
    # a window that ends before the entries finds none of them
    assert sig.compute(engine, since=pd.Timestamp(now).to_pydatetime() - dt.timedelta(days=3),
                       until=pd.Timestamp(now).to_pydatetime() - dt.timedelta(days=2)).empty


# --- the burst rule, against a brute-force reading of its definition ------------------------------

@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=40), st.integers(min_value=1, max_value=6),
       st.integers(min_value=1, max_value=60))
def test_bursts_mark_exactly_the_entries_of_a_full_window(minutes, threshold, window_minutes):
    times = sorted(DAY0 + dt.timedelta(minutes=m) for m in minutes)
    window = dt.timedelta(minutes=window_minutes)
    bursts = sig._bursts(pd.Series(times, dtype="datetime64[ns]"), threshold, window)
    marked = [k for burst in bursts for k in burst]
    expected = set()
    for j, tj in enumerate(times):  # entry j closes a window holding >= threshold entries
        inside = [i for i in range(j + 1) if tj - times[i] <= window]
        if len(inside) >= threshold:
            expected |= set(inside)
    assert sorted(marked) == sorted(expected) and len(marked) == len(set(marked))
    for burst in bursts:  # within a burst no gap exceeds the window; between bursts every gap does
        assert all(times[b] - times[a] <= window for a, b in zip(burst, burst[1:], strict=False))
    for first, second in zip(bursts, bursts[1:], strict=False):
        assert times[second[0]] - times[first[-1]] > window
