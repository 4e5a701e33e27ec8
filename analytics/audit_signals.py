"""Audit-log analytics: unusual behaviour read from ``audit_log``, for compliance.

Five signals, each a row naming its subject (a user, or a customer for repeated unmasks), its
first and last entry, a count, a baseline where one applies, and the ``seq`` of every audit entry
behind it (:func:`entries_behind` reads them back):

``export_spike``      a user's exports on one local day reach ``SIGNAL_EXPORT_MIN_DAY`` and exceed
                      ``SIGNAL_EXPORT_MEDIAN_FACTOR`` × their median daily exports over the 30 days
                      before (days without exports count as 0); baseline = that median
``off_hours``         a user's entries on one local day outside ``WORKING_HOURS`` (in
                      ``WORKING_HOURS_TZ``); one signal per user per day
``repeated_unmask``   ``SIGNAL_UNMASK_REPEAT`` or more unmask requests (and unmasks made without a
                      request) for one customer within ``SIGNAL_WINDOW_HOURS``, by anyone
``denied_burst``      ``SIGNAL_DENIED_BURST`` or more ``access_denied`` entries of one user within
                      ``SIGNAL_WINDOW_HOURS``
``new_address``       a successful login from a client address the user had not logged in from
                      before (a user's very first login is not flagged); baseline = addresses known

A burst is a run of entries in which every entry has at least the threshold's number of entries
(itself included) within the window before it, or is within the window before such an entry; runs
further apart than the window are separate signals.

The functions on frames are pure (entries in, signals out) so they are tested table by table;
:func:`compute` reads the log and applies the settings.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from sqlalchemy import Engine, select

from analytics import settings
from analytics.audit import QUERY_COLUMNS
from analytics.errors import ConfigError
from analytics.schema import audit_log
from analytics.store import read_frame

SIGNALS = ("export_spike", "off_hours", "repeated_unmask", "denied_burst", "new_address")
SIGNAL_COLUMNS = ("signal", "subject", "first_at", "last_at", "count", "baseline", "seqs")
MEDIAN_DAYS = 30
MAX_ENTRIES = 500_000  # a window of the log this large is read in one go; narrow the dates beyond it
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in SIGNAL_COLUMNS})


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(SIGNAL_COLUMNS)) if rows else _empty()


def _grouped(kind: str, frame: pd.DataFrame, keys: list[str], subject: str) -> pd.DataFrame:
    """One signal per group of ``frame`` by ``keys`` (in one pass, not a Python loop per group)."""
    if frame.empty:
        return _empty()
    ordered = frame.sort_values([*keys, "at_utc", "seq"])
    out = ordered.groupby(keys, sort=True).agg(first_at=("at_utc", "min"), last_at=("at_utc", "max"),
                                               count=("seq", "size"), seqs=("seq", list)).reset_index()
    out["signal"] = kind
    out["subject"] = out[subject]
    out["baseline"] = None
    out["seqs"] = [[int(s) for s in seqs] for seqs in out["seqs"]]
    return out[list(SIGNAL_COLUMNS)]


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

def working_hours(value: str | None = None) -> tuple[dt.time, dt.time]:
    """``WORKING_HOURS`` ("08:00-20:00") as (start, end); raises ConfigError naming the setting."""
    text = str(settings.get("WORKING_HOURS") if value is None else value)
    m = _HOURS.match(text)
    if m:
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) < (h2, m2):
            return dt.time(h1, m1), dt.time(h2, m2)
    raise ConfigError(f"WORKING_HOURS={text!r} is not a day's range like 08:00-20:00.")


def time_zone(value: str | None = None) -> ZoneInfo:
    """``WORKING_HOURS_TZ`` as a zone; raises ConfigError naming the setting."""
    name = str(settings.get("WORKING_HOURS_TZ") if value is None else value)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"WORKING_HOURS_TZ={name!r} is not a known time zone (e.g. Asia/Shanghai).") from None


def _local(at_utc: pd.Series, tz: ZoneInfo) -> pd.Series:
    return pd.to_datetime(at_utc).dt.tz_localize("UTC").dt.tz_convert(tz)


# ---------------------------------------------------------------------------------------------
# The signals, on a frame of entries (seq, at_utc, username, event, client_address, target)
# ---------------------------------------------------------------------------------------------

def export_spikes(entries: pd.DataFrame, *, factor: float, min_day: int, tz: ZoneInfo) -> pd.DataFrame:
    """Users' days with at least ``min_day`` exports and more than ``factor`` × their median daily
    exports of the :data:`MEDIAN_DAYS` days before."""
    ex = entries.loc[(entries["event"] == "export") & entries["username"].notna()].copy()
    if ex.empty:
        return _empty()
    ex["day"] = _local(ex["at_utc"], tz).dt.tz_localize(None).dt.normalize()
    flagged = []  # (user, day, median)
    for user, daily in ex.groupby(["username", "day"]).size().groupby(level=0, sort=True):
        daily = daily.droplevel(0)
        days = pd.date_range(daily.index.min() - pd.Timedelta(days=MEDIAN_DAYS), daily.index.max(), freq="D")
        counts = daily.reindex(days, fill_value=0)
        baseline = counts.rolling(MEDIAN_DAYS, min_periods=MEDIAN_DAYS).median().shift(1).reindex(daily.index)
        hits = (daily >= min_day) & (daily > factor * baseline)
        flagged += [(user, day, float(baseline[day])) for day in daily.index[hits.to_numpy()]]
    if not flagged:
        return _empty()
    keys = pd.DataFrame(flagged, columns=["username", "day", "median"])
    out = _grouped("export_spike", ex.merge(keys[["username", "day"]], on=["username", "day"]),
                   ["username", "day"], "username")
    out["baseline"] = keys.sort_values(["username", "day"])["median"].to_numpy()
    return out


def off_hours(entries: pd.DataFrame, *, start: dt.time, end: dt.time, tz: ZoneInfo) -> pd.DataFrame:
    """One signal per user per local day with entries before ``start`` or from ``end`` on."""
    mine = entries.loc[entries["username"].notna()].copy()
    if mine.empty:
        return _empty()
    local = _local(mine["at_utc"], tz)
    clock = local.dt.time
    mine = mine.loc[(clock < start) | (clock >= end)].copy()
    mine["day"] = local.loc[mine.index].dt.date
    return _grouped("off_hours", mine, ["username", "day"], "username")


def _bursts(times: pd.Series, threshold: int, window: dt.timedelta) -> list[list[int]]:
    """Positions (in ``times``, sorted ascending) of the entries of each burst."""
    return _bursts_ns(pd.to_datetime(times).to_numpy(dtype="datetime64[ns]").astype("int64").tolist(), threshold,
                      int(window.total_seconds() * 1_000_000_000))


def _bursts_ns(t: list[int], threshold: int, window: int) -> list[list[int]]:
    marked = [False] * len(t)
    lo = 0
    for hi in range(len(t)):
        while t[hi] - t[lo] > window:
            lo += 1
        if hi - lo + 1 >= threshold:
            for k in range(lo, hi + 1):
                marked[k] = True
    out: list[list[int]] = []
    for k, on in enumerate(marked):
        if not on:
            continue
        if out and t[k] - t[out[-1][-1]] <= window:
            out[-1].append(k)
        else:
            out.append([k])
    return out


def _burst_signals(kind: str, frame: pd.DataFrame, key: str, threshold: int, window: dt.timedelta) -> pd.DataFrame:
    # Subjects with fewer entries than the threshold cannot burst: leave them out before looping.
    sizes = frame.groupby(key)[key].transform("size")
    frame = frame.loc[sizes >= threshold].sort_values([key, "at_utc", "seq"])
    if frame.empty:
        return _empty()
    keys = frame[key].astype(str).tolist()
    stamps = pd.to_datetime(frame["at_utc"]).tolist()
    nanos = frame["at_utc"].to_numpy(dtype="datetime64[ns]").astype("int64").tolist()
    seqs = [int(s) for s in frame["seq"]]
    span = int(window.total_seconds() * 1_000_000_000)
    rows = []
    start = 0
    for end in range(1, len(keys) + 1):
        if end < len(keys) and keys[end] == keys[start]:
            continue
        for positions in _bursts_ns(nanos[start:end], threshold, span):
            picked = [start + p for p in positions]
            rows.append({"signal": kind, "subject": keys[start], "first_at": stamps[picked[0]],
                         "last_at": stamps[picked[-1]], "count": len(picked), "baseline": None,
                         "seqs": [seqs[p] for p in picked]})
        start = end
    return _frame(rows)


def _target(value) -> dict:
    try:
        out = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def repeated_unmasks(entries: pd.DataFrame, *, repeat: int, window: dt.timedelta) -> pd.DataFrame:
    """Customers with ``repeat`` or more unmask requests (or direct unmasks) within ``window``.

    An ``unmask`` that used an approval is the same access as its request and is not counted again.
    """
    rows = []
    for entry in entries.loc[entries["event"].isin(("approval_request", "unmask"))].itertuples(index=False):
        target = _target(entry.target)
        if entry.event == "approval_request" and target.get("kind") != "unmask":
            continue
        if entry.event == "unmask" and "approval_id" in target:
            continue
        for cid in target.get("customer_ids") or ([target["customer_id"]] if target.get("customer_id") else []):
            rows.append({"seq": entry.seq, "at_utc": entry.at_utc, "customer_id": str(cid)})
    if not rows:
        return _empty()
    return _burst_signals("repeated_unmask", pd.DataFrame(rows), "customer_id", repeat, window)


def denied_bursts(entries: pd.DataFrame, *, burst: int, window: dt.timedelta) -> pd.DataFrame:
    """Users with ``burst`` or more ``access_denied`` entries within ``window``."""
    denied = entries.loc[(entries["event"] == "access_denied") & entries["username"].notna()]
    if denied.empty:
        return _empty()
    return _burst_signals("denied_burst", denied, "username", burst, window)


def new_addresses(entries: pd.DataFrame) -> pd.DataFrame:
    """Successful logins from an address the user had not logged in from before (not the first login)."""
    logins = entries.loc[(entries["event"] == "login_ok") & entries["username"].notna()
                         & entries["client_address"].notna()].sort_values(["username", "at_utc", "seq"]).copy()
    if logins.empty:
        return _empty()
    logins["client_address"] = logins["client_address"].astype(str)
    first_time = ~logins.duplicated(["username", "client_address"])
    # addresses the user had logged in from before this login
    known = first_time.astype(int).groupby(logins["username"]).cumsum() - first_time.astype(int)
    new = logins.loc[first_time & (known > 0)]
    if new.empty:
        return _empty()
    return pd.DataFrame({"signal": "new_address", "subject": new["username"].to_numpy(),
                         "first_at": new["at_utc"].to_numpy(), "last_at": new["at_utc"].to_numpy(),
                         "count": 1, "baseline": known.loc[new.index].astype(int).to_numpy(),
                         "seqs": [[int(s)] for s in new["seq"]]}, columns=list(SIGNAL_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Reading the log
# ---------------------------------------------------------------------------------------------

def read_entries(engine: Engine, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    """The log's entries from ``since`` (UTC, naive) to before ``until``, oldest first."""
    a = audit_log.c
    frame = read_frame(engine, select(a.seq, a.at_utc, a.username, a.event, a.client_address, a.target)
                       .where(a.at_utc >= since, a.at_utc < until).order_by(a.seq).limit(MAX_ENTRIES))
    frame["at_utc"] = pd.to_datetime(frame["at_utc"])
    return frame


def detect(entries: pd.DataFrame) -> pd.DataFrame:
    """Every signal of ``entries`` with the thresholds of the settings, ordered by signal and time."""
    start, end = working_hours()
    tz = time_zone()
    window = dt.timedelta(hours=int(settings.get("SIGNAL_WINDOW_HOURS")))
    parts = [
        export_spikes(entries, factor=float(settings.get("SIGNAL_EXPORT_MEDIAN_FACTOR")),
                      min_day=int(settings.get("SIGNAL_EXPORT_MIN_DAY")), tz=tz),
        off_hours(entries, start=start, end=end, tz=tz),
        repeated_unmasks(entries, repeat=int(settings.get("SIGNAL_UNMASK_REPEAT")), window=window),
        denied_bursts(entries, burst=int(settings.get("SIGNAL_DENIED_BURST")), window=window),
        new_addresses(entries),
    ]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    out["signal"] = pd.Categorical(out["signal"], categories=list(SIGNALS), ordered=True)
    out = out.sort_values(["signal", "first_at", "subject"]).reset_index(drop=True)
    out["signal"] = out["signal"].astype(str)
    return out


def compute(engine: Engine, *, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    """The signals whose last entry falls from ``since`` to before ``until`` (UTC, naive).

    The log is read from :data:`MEDIAN_DAYS` days earlier, so medians, bursts and known addresses
    have their history.
    """
    entries = read_entries(engine, since - dt.timedelta(days=MEDIAN_DAYS), until)
    found = detect(entries)
    if found.empty:
        return found
    return found.loc[pd.to_datetime(found["last_at"]) >= pd.Timestamp(since)].reset_index(drop=True)


def entries_behind(engine: Engine, seqs) -> pd.DataFrame:
    """The audit entries of a signal (as :func:`analytics.audit.query` shows them), oldest first."""
    wanted = sorted({int(s) for s in seqs})
    if not wanted:
        return pd.DataFrame(columns=list(QUERY_COLUMNS))
    a = audit_log.c
    return read_frame(engine, select(*[a[c] for c in QUERY_COLUMNS]).where(a.seq.in_(wanted)).order_by(a.seq))


__all__ = ["SIGNALS", "compute", "denied_bursts", "detect", "entries_behind", "export_spikes", "new_addresses",
           "off_hours", "read_entries", "repeated_unmasks", "time_zone", "working_hours"]
