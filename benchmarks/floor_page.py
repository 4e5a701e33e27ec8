"""The floor of issue #7's speed target: a page drawn from constant in-memory data.

4 plotly charts (an 11-bar bar chart, a 5×5 heatmap, a 4-bar bar chart and a 15-band histogram,
the shapes the Segments and Lifecycle pages draw), 6 metrics and a 1,000-row table. No store, no
login, no query: whatever a real page costs beyond this is the price of its data.
``benchmarks/bench_pages.py`` times it with AppTest like the real pages.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st


@st.cache_resource(show_spinner=False)
def _data() -> dict:
    # Built once per process and never copied: "constant in-memory data".
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "customer_id": [f"C{i:09d}" for i in range(1000)],
        "branch_id": rng.choice([f"BR{i:03d}" for i in range(1, 49)], 1000),
        "segment": rng.choice(["Champions", "Loyal", "At risk", "Lost"], 1000),
        "value_tier": rng.choice(["mass", "affluent", "wealth", "private"], 1000),
        "churn_probability": rng.random(1000),
        "clv": rng.lognormal(8, 1.5, 1000),
        "value_at_risk": rng.lognormal(7, 1.5, 1000),
        "reason_1": rng.choice(["fewer transactions", "AUM falling", "complaint"], 1000),
    })
    return {"table": table, "segments": rng.integers(1_000, 90_000, 11), "grid": rng.integers(1_000, 60_000, (5, 5)),
            "tiers": rng.integers(1_000, 600_000, 4), "bands": rng.integers(100, 200_000, 15)}


data = _data()
st.title("Floor · 基准页")
for column, (label, value) in zip(st.columns(6), [("Customers", "1,000,000"), ("Active", "870,000"),
                                                  ("AUM", "¥1.2T"), ("Average CLV", "¥12,345"),
                                                  ("Churn rate", "4.2%"), ("Value at risk", "¥321M")],
                                  strict=True):
    column.metric(label, value)
c1, c2 = st.columns(2)
c1.plotly_chart(go.Figure(go.Bar(x=[f"segment {i}" for i in range(11)], y=data["segments"]))
                .update_layout(title="Segments"), width="stretch")
c2.plotly_chart(go.Figure(go.Heatmap(z=data["grid"], x=[1, 2, 3, 4, 5], y=[1, 2, 3, 4, 5], colorscale="Blues"))
                .update_layout(title="RFM"), width="stretch")
c1, c2 = st.columns(2)
c1.plotly_chart(go.Figure(go.Bar(x=["mass", "affluent", "wealth", "private"], y=data["tiers"]))
                .update_layout(title="Tiers"), width="stretch")
c2.plotly_chart(go.Figure(go.Bar(x=[f"band {i}" for i in range(15)], y=data["bands"]))
                .update_layout(title="CLV"), width="stretch")
st.dataframe(data["table"], hide_index=True, width="stretch")
