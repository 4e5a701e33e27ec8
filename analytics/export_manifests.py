"""Every customer an export held, kept beside the audit log.

An export's audit entry names a manifest (``manifest_id``) instead of listing customer ids, so an
export of 100,000 rows is fully accounted for: ``export_manifests`` holds who, when, the file's
SHA-256 and the row count; ``export_manifest_customers`` one row per distinct customer of the file.
Compliance can answer "which exports held customer X" with :func:`exports_holding`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

import pandas as pd
from sqlalchemy import Engine, insert, select

from analytics.runs import utcnow
from analytics.schema import export_manifest_customers, export_manifests
from analytics.store import read_frame

_BATCH = 5_000  # rows per INSERT: well under every driver's parameter limit


def record(engine: Engine, *, username: str, file_sha256: str, rows: int, customer_ids: Iterable[str],
           now: dt.datetime | None = None) -> str:
    """Store the manifest of one export and return its id (32 hex characters), in one transaction."""
    manifest_id = secrets.token_hex(16)
    ids = sorted({str(c) for c in customer_ids if c is not None and not (isinstance(c, float) and pd.isna(c))})
    with engine.begin() as conn:
        conn.execute(insert(export_manifests).values(manifest_id=manifest_id, created_at=now or utcnow(),
                                                     username=username, file_sha256=file_sha256, rows=int(rows)))
        for start in range(0, len(ids), _BATCH):
            conn.execute(insert(export_manifest_customers),
                         [{"manifest_id": manifest_id, "customer_id": c} for c in ids[start:start + _BATCH]])
    return manifest_id


def customers_of(engine: Engine, manifest_id: str) -> list[str]:
    """The customer ids an export held, sorted."""
    with engine.connect() as conn:
        return list(conn.execute(select(export_manifest_customers.c.customer_id)
                                 .where(export_manifest_customers.c.manifest_id == manifest_id)
                                 .order_by(export_manifest_customers.c.customer_id)).scalars())


def exports_holding(engine: Engine, customer_id: str) -> pd.DataFrame:
    """The exports that held a customer: manifest_id, created_at, username, file_sha256, rows."""
    m, k = export_manifests.c, export_manifest_customers.c
    return read_frame(engine, select(m.manifest_id, m.created_at, m.username, m.file_sha256, m.rows)
                      .select_from(export_manifests.join(export_manifest_customers, k.manifest_id == m.manifest_id))
                      .where(k.customer_id == str(customer_id)).order_by(m.created_at.desc()))


__all__ = ["customers_of", "exports_holding", "record"]
