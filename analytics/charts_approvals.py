"""Tables of the Approvals page: requests as an approver or a requester reads them."""

from __future__ import annotations

import json

import pandas as pd

from analytics.i18n import tr

STATUS_KEYS = {"pending": "charts.approvals.pending", "approved": "charts.approvals.approved",
               "rejected": "charts.approvals.rejected", "expired": "charts.approvals.expired"}
KIND_KEYS = {"unmask": "charts.approvals.unmask", "export": "charts.approvals.export"}
USED_KEY = "charts.approvals.used"


def describe(kind: str, definition: str, rows, lang: str = "en") -> str:
    """What a request asks for, in one line: the field and customer, or the file, its rows and filters."""
    try:
        what = json.loads(definition)
    except (TypeError, ValueError):
        return str(definition)
    if kind == "unmask":
        return tr("charts.approvals.what_unmask", lang, field=what.get("field"), customer=what.get("customer_id"))
    context = ", ".join(f"{k}={v}" for k, v in sorted((what.get("context") or {}).items())
                        if v not in (None, "", [], {}))
    customers = what.get("customers")
    return tr("charts.approvals.what_export", lang, file=what.get("file_name"),
              rows=f"{int(rows or 0):,}", customers="—" if customers is None else f"{int(customers):,}",
              filters=context or "—")


def request_table(requests: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """Requests (as :func:`analytics.approvals.pending` / ``requests_of`` return them) for display:
    a "what" line instead of the stored definition, kinds and statuses in words (an approval
    already used reads "used")."""
    columns = ["request_id", "kind", "requested_by", "requested_at", "what", "reason", "status", "expires_at",
               "decided_by", "decided_at", "comment"]
    if requests.empty:
        return pd.DataFrame(columns=columns)
    out = requests.copy()
    out["what"] = [describe(k, d, r, lang) for k, d, r in zip(out["kind"], out["definition"], out["rows"],
                                                               strict=True)]
    used = out["used_at"].notna()
    out["status"] = [tr(USED_KEY if u else STATUS_KEYS.get(s, ""), lang) if (u or s in STATUS_KEYS) else s
                     for s, u in zip(out["status"], used, strict=True)]
    out["kind"] = [tr(KIND_KEYS[k], lang) if k in KIND_KEYS else k for k in out["kind"]]
    return out[columns].reset_index(drop=True)


def request_label(requests: pd.DataFrame, request_id: int, lang: str = "en") -> str:
    """A select-box label for one request: "#12 · export · file.csv (6,000 rows ...)"."""
    row = requests.loc[requests["request_id"] == request_id].iloc[0]
    kind = tr(KIND_KEYS[row["kind"]], lang) if row["kind"] in KIND_KEYS else row["kind"]
    return f"#{int(request_id)} · {kind} · {describe(row['kind'], row['definition'], row['rows'], lang)}"
