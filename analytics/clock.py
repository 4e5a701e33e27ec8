"""Time as the store keeps it: naive UTC (timestamps carry no zone, the same on both dialects)."""

from __future__ import annotations

import datetime as dt


def naive_utc(now: dt.datetime | None = None) -> dt.datetime:
    """``now`` as naive UTC: the current time when None, an aware time converted, a naive one taken
    as UTC already."""
    if now is None:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if now.tzinfo is not None:
        return now.astimezone(dt.UTC).replace(tzinfo=None)
    return now


__all__ = ["naive_utc"]
