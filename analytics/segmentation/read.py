"""Readers of a run's segmentation results for the pages and :mod:`analytics.charts_segments`:
``segment_summary`` and ``cohort_retention`` (written by the ``aggregates`` stage) and
``cluster_profiles`` (written by the ``segments`` stage)."""

from __future__ import annotations

import json

import pandas as pd

from analytics.features import to_datetime
from analytics.runs import read_run_table


def read_segment_summary(engine, dimension: str, run_id: int | None = None) -> pd.DataFrame:
    """The ``segment_summary`` rows of one dimension for a run (default: the published run)."""
    return read_run_table(engine, "segment_summary", run_id, "sort_order, value",
                          where="dimension = :dimension", params={"dimension": dimension})


def read_cluster_profiles(engine, run_id: int | None = None) -> pd.DataFrame:
    """Cluster profiles of a run with the JSON profile expanded into ``median_*``/``z_*`` columns."""
    frame = read_run_table(engine, "cluster_profiles", run_id, "cluster")
    if frame.empty:
        return frame
    expanded = pd.DataFrame([json.loads(p) if isinstance(p, str) else p for p in frame.pop("profile")])
    return pd.concat([frame.reset_index(drop=True), expanded], axis=1)


def read_cohort_retention(engine, run_id: int | None = None) -> pd.DataFrame:
    """The ``cohort_retention`` rows of a run, ``cohort_month`` as timestamps."""
    frame = read_run_table(engine, "cohort_retention", run_id, "cohort_month, months_since_open")
    frame["cohort_month"] = to_datetime(frame["cohort_month"])
    return frame


__all__ = ["read_cluster_profiles", "read_cohort_retention", "read_segment_summary"]
