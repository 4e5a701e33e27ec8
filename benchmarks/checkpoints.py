"""Each benchmark store's own audit checkpoint file.

The audit chain's checkpoint (``AUDIT_CHECKPOINT_FILE``, default ``data/audit.checkpoint``) anchors one
store's chain. Benchmarks refresh and open several stores; sharing the default file, the last store
written re-anchored it, and every page of the other stores then refused to open with the chain
alarm. A benchmark sets the store's own file unless ``AUDIT_CHECKPOINT_FILE`` was set when it started.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import make_url

STORES = Path(__file__).resolve().parent / "stores"
# Set by whoever started the benchmark: then every store uses it, as told.
_GIVEN = os.environ.get("AUDIT_CHECKPOINT_FILE")


def checkpoint_file(url: str) -> Path:
    """The checkpoint file of the store at ``url``: beside a SQLite file (``bench_1000000.db`` ->
    ``bench_1000000.checkpoint``), in ``benchmarks/stores/`` for a server's database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return Path(parsed.database).with_suffix(".checkpoint")
    return STORES / f"{parsed.get_backend_name()}_{parsed.host or 'local'}_{parsed.port or ''}_{parsed.database}.checkpoint"


def use_store_checkpoint(url: str) -> Path:
    """Point ``AUDIT_CHECKPOINT_FILE`` (this process and its children) at ``url``'s own file, unless
    it was set when the benchmark started; return the file in use."""
    if _GIVEN:
        return Path(_GIVEN)
    path = checkpoint_file(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["AUDIT_CHECKPOINT_FILE"] = str(path)
    return path
