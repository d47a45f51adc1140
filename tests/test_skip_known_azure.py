"""Blobs on Azurite: a rerun skips a blob by the ETag its row recorded, without downloading
it; a blob rewritten since (a new ETag) is read and ingested."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import id_counts

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.ledger.sqlite import SqliteLedger

pytestmark = pytest.mark.azurite


def _parquet(start: int) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": [start, start + 1]}), out)
    return out.getvalue()


def test_blobs_are_skipped_by_etag_unread_and_a_rewritten_blob_is_ingested(
    azurite, unique_name, tmp_path: Path
):
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    try:
        for i in range(2):
            container.upload_blob(f"raw/f{i}.parquet", _parquet(i * 10))
        storage = StorageConfig(connection_string=azurite)
        table, root = str(tmp_path / "lake" / "t"), f"abfs://{unique_name}/raw/"

        def ingestor() -> IdempotentIngestor:
            return IdempotentIngestor(table=table, ledger=SqliteLedger(tmp_path / "l.sqlite"),
                                      storage=storage)

        with ingestor() as ing:
            assert ing.ingest_directory(root).ingested == 2
        with ingestor() as ing:
            listed = ing.list_sources([root])
            container.delete_blob("raw/f0.parquet")  # only a download would notice
            again = ing.run(listed)
        assert {Path(f.path).name: f.status for f in again.files} == {
            "f0.parquet": "skipped", "f1.parquet": "skipped"}

        container.upload_blob("raw/f1.parquet", _parquet(20), overwrite=True)
        with ingestor() as ing:
            last = ing.ingest_directory(root)
        assert {Path(f.path).name: f.status for f in last.files} == {"f1.parquet": "ingested"}
        assert sorted(id_counts(table)) == [0, 1, 10, 11, 20, 21]
    finally:
        container.delete_container()
