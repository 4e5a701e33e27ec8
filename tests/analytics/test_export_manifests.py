"""Export manifests: every customer of an export is recorded, not only the first 1,000."""

import pytest

from analytics import export_manifests


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_large_export_is_fully_accounted_for(engine):
    ids = [f"C{i:09d}" for i in range(12_345)]
    first = export_manifests.record(engine, username="ann", file_sha256="a" * 64, rows=12_346,
                                    customer_ids=[*ids, ids[0], None])
    assert len(first) == 32
    assert export_manifests.customers_of(engine, first) == ids  # distinct, sorted, none dropped
    second = export_manifests.record(engine, username="bob", file_sha256="b" * 64, rows=1, customer_ids=[ids[-1]])
    holding = export_manifests.exports_holding(engine, ids[-1])
    assert set(holding["manifest_id"]) == {first, second}
    assert export_manifests.exports_holding(engine, ids[0])["username"].tolist() == ["ann"]
    assert export_manifests.customers_of(engine, "no-such-manifest") == []
