"""Customer 360's chart: one customer's balances month by month (AUM, deposits, loans)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analytics.i18n import tr

# The series drawn, in legend order, with the catalog key of each name.
SERIES = (("aum", "charts.customer.aum"), ("deposit_balance", "charts.customer.deposits"),
          ("loan_balance", "charts.customer.loans"))


def balances_chart(series: pd.DataFrame, lang: str = "en") -> go.Figure:
    """A line per balance over the months of ``series`` (columns month, aum, deposit_balance,
    loan_balance), amounts in yuan."""
    fig = go.Figure()
    for col, key in SERIES:
        name = tr(key, lang)
        fig.add_scatter(x=series["month"], y=series[col], mode="lines+markers", name=name,
                        hovertemplate="%{x|%Y-%m}: ¥%{y:,.0f}<extra>" + name + "</extra>")
    fig.update_layout(height=360, margin={"t": 20}, yaxis_title=tr("common.cny", lang))
    return fig


def profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    """A one-customer profile (one row, already masked) as a two-column table: field, value."""
    return profile.T.reset_index().set_axis(["field", "value"], axis=1).astype(str)
