"""What the refresh's stages hold between blocks and stages: ``runs.no_rows`` (a frame's columns
without its rows, nor its memory) and ``runs.release_memory`` (what was freed goes back to the system).

A stage that kept ``offers.iloc[:0].copy()`` per block of customers grew by every block's strings:
the empty copy of an Arrow text column shares the whole column's buffers. And the text pandas frees
stays in Arrow's own pool until it is asked to give it back.
"""

import gc

import numpy as np
import pandas as pd
import pyarrow as pa

from analytics.runs import no_rows, release_memory


def _text_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [f"C{i:09d}" for i in range(rows)],
                         "category": pd.Series(["deposits", "loans"] * (rows // 2), dtype="str"),
                         "expected_value": np.linspace(0, 1, rows), "rank": np.arange(rows) % 3 + 1},
                        index=pd.RangeIndex(rows))


def _arrow_buffer_bytes(frame: pd.DataFrame) -> int:
    total = 0
    for column in frame.columns:
        arrow = getattr(frame[column].array, "_pa_array", None)
        if arrow is not None:
            total += sum(b.size for chunk in arrow.chunks for b in chunk.buffers() if b is not None)
    return total


def test_no_rows_keeps_columns_dtypes_and_index_type():
    frame = _text_frame(10).set_index("customer_id")
    empty = no_rows(frame)
    assert len(empty) == 0
    assert list(empty.columns) == list(frame.columns)
    assert empty.dtypes.to_dict() == frame.dtypes.to_dict()
    assert empty.index.dtype == frame.index.dtype and empty.index.name == "customer_id"
    # It concatenates with a block's rows as the frame itself would.
    assert pd.concat([empty, frame]).equals(frame)


def test_no_rows_holds_none_of_the_frames_text():
    gc.collect()
    before = pa.total_allocated_bytes()
    frame = _text_frame(200_000)
    assert pa.total_allocated_bytes() - before > 1_000_000  # the text columns live in Arrow's pool
    empty = no_rows(frame)
    assert _arrow_buffer_bytes(empty) < 1024
    del frame
    gc.collect()
    assert pa.total_allocated_bytes() - before < 64 * 1024
    assert len(empty) == 0


def test_no_rows_of_an_empty_frame_is_empty():
    empty = no_rows(_text_frame(0))
    assert len(empty) == 0 and list(empty.columns) == ["customer_id", "category", "expected_value", "rank"]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_release_memory_gives_back_the_text_arrow_freed():
    release_memory()
    texts = [pd.Series([f"customer-{i}-{j}" for i in range(200_000)], dtype="str") for j in range(20)]
    kept = texts[::5]  # some still alive between the freed ones, as a stage's sums are
    del texts
    gc.collect()
    before = _rss_mib()
    release_memory()
    # Arrow freed about 75 MiB; glibc's trim alone gives back a few of them.
    assert before - _rss_mib() > 40
    assert all(len(t) == 200_000 for t in kept)
