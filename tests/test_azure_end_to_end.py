"""End to end on Azurite: Blob source, Azure Table ledger, Delta table at abfs://.

Every distinct content lands in the Delta table exactly once, whatever reruns,
copies, racing worker processes or mid-read overwrites happen.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import random
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import id_counts, run_cli
from test_azure_blob_source import overwrite_once_reading_starts

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.azure.auth import delta_storage_options
from ingest_core.ledger import SUCCEEDED

pytestmark = pytest.mark.azurite


def parquet_bytes(start: int, rows: int = 3) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(start, start + rows)),
                             "amount": [i * 1.5 for i in range(rows)]}), out)
    return out.getvalue()


class Lake:
    """A landing container, a lake container and a ledger table, unique to one test."""

    def __init__(self, connection: str, name: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.connection = connection
        self.storage = StorageConfig(connection_string=connection)
        self.service = BlobServiceClient.from_connection_string(connection)
        self.landing = self.service.create_container(f"{name}-landing")
        self.service.create_container(f"{name}-lake")
        self.root = f"abfs://{name}-landing/raw/"
        self.table = f"abfs://{name}-lake/orders"
        self.ledger = f"azure-table://{name}ledger"

    def put(self, name: str, data: bytes) -> None:
        self.landing.upload_blob(f"raw/{name}", data, overwrite=True)

    def ingestor(self) -> IdempotentIngestor:
        return IdempotentIngestor(table=self.table, ledger=self.ledger, storage=self.storage)

    def ids(self):
        return id_counts(self.table, delta_storage_options(self.table, self.storage))


@pytest.fixture
def lake(azurite, unique_name):
    lake = Lake(azurite, unique_name)
    yield lake
    for container in (f"{unique_name}-landing", f"{unique_name}-lake"):
        lake.service.delete_container(container)


def test_blobs_are_ingested_once_and_a_rerun_skips_them(lake):
    for i in range(3):
        lake.put(f"f{i}.parquet", parquet_bytes(i * 10))
    with lake.ingestor() as ing:
        stats = ing.ingest_directory(lake.root)
    assert (stats.ingested, stats.rows) == (3, 9)
    with lake.ingestor() as ing:
        again = ing.ingest_directory(lake.root)
        rows = ing.ledger.records(table=ing.table, status=SUCCEEDED)
    assert (again.skipped, again.ingested) == (3, 0)
    assert sorted(lake.ids()) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert set(lake.ids().values()) == {1}
    assert sorted(r.path for r in rows) == [f"{lake.root}f{i}.parquet" for i in range(3)]


def test_a_renamed_copy_is_skipped_and_its_path_recorded(lake):
    lake.put("orders.parquet", parquet_bytes(0))
    with lake.ingestor() as ing:
        first = ing.ingest_directory(lake.root)
        lake.put("archive/orders copy #1.parquet", parquet_bytes(0))
        second = ing.ingest_directory(lake.root)
        [row] = ing.ledger.records(table=ing.table)
    assert first.ingested == 1
    assert (second.ingested, second.skipped) == (0, 2)
    assert row.seen_paths == [f"{lake.root}archive/orders%20copy%20%231.parquet"]
    assert set(lake.ids().values()) == {1}


def _race(table: str, ledger: str, connection: str, root: str, seed: int) -> dict[str, int]:
    """One worker process: ingest every blob under `root`, in its own order."""
    ing = IdempotentIngestor(table=table, ledger=ledger,
                             storage=StorageConfig(connection_string=connection), batch_files=5)
    try:
        files = ing.list_sources([root])
        random.Random(seed).shuffle(files)
        return ing.run(files).counts
    finally:
        ing.close()


@pytest.mark.slow
def test_four_racing_worker_processes_ingest_each_blob_once(lake):
    for i in range(24):
        lake.put(f"f{i:02d}.parquet", parquet_bytes(i * 10))
    lake.put("dup-of-f00.parquet", parquet_bytes(0))
    lake.ingestor().close()  # create the ledger table before the race
    context = multiprocessing.get_context("spawn")
    args = [(lake.table, lake.ledger, lake.connection, lake.root, seed) for seed in range(4)]
    with context.Pool(4) as pool:
        counts = pool.starmap(_race, args)
    assert sum(c["ingested"] for c in counts) >= 24
    assert sum(c["failed"] + c["quarantined"] for c in counts) == 0
    ids = lake.ids()
    assert sorted(ids) == sorted(i * 10 + k for i in range(24) for k in range(3))
    assert set(ids.values()) == {1}
    with lake.ingestor() as ing:
        final = ing.ingest_directory(lake.root)
    assert (final.skipped, final.ingested) == (25, 0)


def test_a_blob_overwritten_mid_read_is_refused_and_the_retry_takes_the_new_content(
    lake, tmp_path, monkeypatch
):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = b"id,amount\n" + b"".join(b"%d,1.5\n" % i for i in range(6_000_000))  # ~60 MB
    lake.put("orders.csv", big)
    with overwrite_once_reading_starts(
        spool, lambda: lake.put("orders.csv", b"id,amount\n7,1.0\n8,2.0\n")
    ), lake.ingestor() as ing:
        [failed] = ing.ingest_directory(lake.root).files
    assert failed.status == "failed"
    assert f"{lake.root}orders.csv was overwritten while it was being read" in failed.error
    assert list(spool.iterdir()) == []
    with lake.ingestor() as ing:
        [retried] = ing.ingest_directory(lake.root).files
    assert (retried.status, retried.rows) == ("ingested", 2)
    assert sorted(lake.ids()) == [7, 8]


def test_the_command_line_runs_unchanged_with_the_connection_in_the_environment(lake):
    for i in range(2):
        lake.put(f"f{i}.parquet", parquet_bytes(i * 10))
    args = ("run", lake.root, "--table", lake.table, "--ledger", lake.ledger, "--json")
    first = run_cli(*args, env={"INGEST_STORAGE_CONNECTION": lake.connection})
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["ingested"] == 2
    again = run_cli(*args, env={"INGEST_STORAGE_CONNECTION": "UseDevelopmentStorage=true"})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 2
    assert "AccountKey" not in first.stderr + again.stderr
    status = run_cli("status", "--ledger", lake.ledger, "--state", "succeeded", "--json",
                     env={"INGEST_STORAGE_CONNECTION": lake.connection})
    assert status.returncode == 0, status.stderr
    assert sorted(r["path"] for r in json.loads(status.stdout)) == [
        f"{lake.root}f{i}.parquet" for i in range(2)
    ]
    assert set(lake.ids().values()) == {1}
