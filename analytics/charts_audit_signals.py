"""The Audit page's compliance section: audit-log signals as a chart and tables."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analytics.audit_signals import SIGNALS
from analytics.charts_common import ALERT
from analytics.i18n import tr

SIGNAL_KEYS = {"export_spike": "charts.audit_signals.export_spike", "off_hours": "charts.audit_signals.off_hours",
               "repeated_unmask": "charts.audit_signals.repeated_unmask",
               "denied_burst": "charts.audit_signals.denied_burst", "new_address": "charts.audit_signals.new_address"}


def signal_name(kind: str, lang: str = "en") -> str:
    """A signal's name in ``lang``."""
    return tr(SIGNAL_KEYS[kind], lang) if kind in SIGNAL_KEYS else kind


def signal_chart(signals: pd.DataFrame, lang: str = "en") -> go.Figure:
    """How many signals of each kind were found (every kind shown, 0 included)."""
    counts = signals["signal"].value_counts().reindex(list(SIGNALS), fill_value=0) if not signals.empty \
        else pd.Series(0, index=list(SIGNALS))
    fig = go.Figure(go.Bar(x=[int(v) for v in counts.values], y=[signal_name(k, lang) for k in counts.index],
                           orientation="h", marker_color=ALERT,
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(title=tr("charts.audit_signals.title", lang), height=300, margin={"t": 40, "l": 10},
                      xaxis_title=tr("charts.audit_signals.signals", lang), yaxis={"autorange": "reversed"})
    return fig


def signal_table(signals: pd.DataFrame, lang: str = "en") -> pd.DataFrame:
    """One row per signal: kind in words, subject, first and last entry, count, baseline, entries."""
    columns = ["signal", "subject", "first_at", "last_at", "count", "baseline", "entries"]
    if signals.empty:
        return pd.DataFrame(columns=columns)
    out = signals.copy()
    out["signal"] = [signal_name(k, lang) for k in out["signal"]]
    out["entries"] = [", ".join(str(s) for s in seqs[:20]) + (" …" if len(seqs) > 20 else "") for seqs in out["seqs"]]
    return out[columns].reset_index(drop=True)


def signal_label(signals: pd.DataFrame, position: int, lang: str = "en") -> str:
    """A select-box label for one signal: "Access-denied burst · mia · 2026-03-01 09:00 (5)"."""
    row = signals.iloc[int(position)]
    return (f"{signal_name(row['signal'], lang)} · {row['subject']} · "
            f"{pd.Timestamp(row['first_at']):%Y-%m-%d %H:%M} ({int(row['count'])})")
