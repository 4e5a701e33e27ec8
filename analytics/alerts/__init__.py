"""Alert worklists (issue 13): detection at each refresh, one standing alert per customer and kind,
status changes with outcome notes, and the daily digest per relationship manager.

``detect`` finds candidates, ``stage`` merges them into ``alerts`` (the refresh stage ``alerts``),
``read`` is the door the Worklist page and the digest read through, ``digest`` writes and mails the
per-manager files.
"""

from analytics.alerts.read import (
    KIND_ACCESS,
    RISK_KINDS,
    AlertError,
    change_status,
    counts,
    history,
    kinds_for,
    labelled,
    trend,
    worklist,
)
from analytics.alerts.stage import alerts_stage, merge

__all__ = ["KIND_ACCESS", "RISK_KINDS", "AlertError", "alerts_stage", "change_status", "counts", "history", "kinds_for", "labelled",
           "merge", "trend", "worklist"]
