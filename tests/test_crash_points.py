"""The crash-point matrix of DESIGN.md section 3, on both ledgers.

A worker process is SIGKILLed at each crash point (INGEST_FAULT_POINT), on the
batched path (small files, one commit) and the streamed path (one commit per
file); then the files are delivered again. After recovery the table holds
each distinct content's rows exactly once and the ledger agrees with the Delta
log. The state each kill leaves is checked too: "during_write" must leave data
files in the table folder that no commit references.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from exactly_once import (
    check_exactly_once,
    kill_at,
    ledger_uri,
    log_commits,
    txn_versions,
    unreferenced_data_files,
)

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.ledger import PROCESSING

ROWS = 20_000
LEASE = 1.0
SPAWN = multiprocessing.get_context("spawn")


def write_ids(path: Path, start: int, rows: int = ROWS) -> str:
    """A parquet file with ids start..start+rows-1 (big enough for several data files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(range(start, start + rows))
    pq.write_table(pa.table({"id": ids, "amount": [i * 7919 % 10007 * 1.5 for i in ids]}), path)
    return str(path)


class Scenario:
    """A landing folder, a table seeded with one file, and a ledger of one kind."""

    def __init__(
        self, tmp_path: Path, ledger: str, connection: str | None, rows: int = ROWS,
        lineage: bool = True,
    ) -> None:
        self.landing = tmp_path / "landing"
        self.table = str(tmp_path / "lake" / "orders")
        self.ledger = ledger
        self.connection = connection
        seed = write_ids(tmp_path / "seed" / "seed.parquet", 1_000_000, 10)
        with self.ingestor(lineage=lineage) as ing:
            assert ing.ingest_file(seed).status == "ingested"
        # small data files, so a write in progress has flushed some before its commit
        DeltaTable(self.table).alter.set_table_properties({"delta.targetFileSize": "65536"})
        self.paths = [write_ids(self.landing / f"f{i}.parquet", i * rows, rows) for i in range(3)]
        copy = self.landing / "copy of f0.parquet"
        shutil.copy(self.paths[0], copy)
        self.paths.append(str(copy))
        self.expected = set(range(3 * rows)) | set(range(1_000_000, 1_000_010))

    def ingestor(self, **options) -> IdempotentIngestor:
        storage = StorageConfig(connection_string=self.connection)
        return IdempotentIngestor(table=self.table, ledger=self.ledger, storage=storage, **options)

    def check(self, *, settled: bool) -> None:
        with self.ingestor() as ing:
            agreement = check_exactly_once(
                self.table, ing.ledger, ing.table,
                expected_ids=self.expected if settled else None, settled=settled,
            )
        assert agreement.problems == []


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def make_scenario(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str):
    connection = request.getfixturevalue("azurite") if request.param == "azure_table" else None
    ledger = ledger_uri(request.param, tmp_path, unique_name)
    return lambda rows, lineage: Scenario(tmp_path, ledger, connection, rows, lineage)


BATCHED = {"batch_files": 10, "lease_seconds": LEASE}
STREAMED = {"stream_bytes": 1, "lease_seconds": LEASE}
AS_IS = {"stream_bytes": 1, "lineage": False, "lease_seconds": LEASE}
"""Streamed files with the table's columns: copied into the table as they are."""
MERGED = {"mode": "merge", "merge_keys": ("id",), "lease_seconds": LEASE}
"""Merge mode: one MERGE commit per file, upserting on `id`."""
STREAMED_ROWS = 300_000
"""Several 64K-row batches per file: delta-rs has written data files when the stream ends."""
MATRIX = [
    ("after_hash", BATCHED),
    ("after_claim", BATCHED),
    ("during_write", BATCHED),
    ("after_commit", BATCHED),
    ("during_complete", BATCHED),
    ("during_write", STREAMED),
    ("after_commit", STREAMED),
    ("during_complete", STREAMED),
    ("during_write", AS_IS),
    ("after_commit", AS_IS),
    ("after_hash", MERGED),
    ("after_claim", MERGED),
    ("during_write", MERGED),
    ("after_commit", MERGED),
    ("during_complete", MERGED),
]
KINDS = {id(BATCHED): "batched", id(STREAMED): "streamed", id(AS_IS): "as_is",
         id(MERGED): "merged"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "options"), MATRIX,
    ids=[f"{p}-{KINDS[id(o)]}" for p, o in MATRIX],
)
def test_killed_worker_is_recovered_by_redelivery_exactly_once(
    make_scenario, point: str, options: dict, monkeypatch
):
    scenario = make_scenario(
        STREAMED_ROWS if options in (STREAMED, AS_IS) else ROWS, options.get("lineage", True)
    )
    before = log_commits(scenario.table)
    code = kill_at(point, monkeypatch, scenario.table, scenario.ledger, scenario.paths, options,
                   scenario.connection)
    assert code == -9, f"the worker was not killed at {point} (exit {code})"

    commits = log_commits(scenario.table)
    new_txns = txn_versions({v: a for v, a in commits.items() if v not in before})
    with scenario.ingestor() as ing:
        processing = ing.ledger.records(table=ing.table, status=PROCESSING)
    if point == "after_hash":
        assert processing == [] and not new_txns
    elif point in ("after_claim", "during_write"):
        assert len(processing) >= 1 and not new_txns
    else:
        assert len(new_txns) >= 1 and {r.sha256 for r in processing} >= set(new_txns)
    if point == "during_write" and options is not MERGED:  # delta-rs reads a MERGE's source
        assert unreferenced_data_files(scenario.table), "no data file was written before the kill"
    scenario.check(settled=False)  # whatever is in the log has a row that recovers it

    time.sleep(LEASE + 0.1)  # the dead worker's lease runs out
    with scenario.ingestor(**options) as ing:
        redelivered = ing.run(ing.list_sources(scenario.paths))
    assert redelivered.counts["failed"] + redelivered.counts["in_progress"] == 0
    assert redelivered.ingested + redelivered.skipped == 4
    scenario.check(settled=True)

    with scenario.ingestor(**options) as ing:
        again = ing.run(ing.list_sources(scenario.paths))
    assert again.skipped == 4
    scenario.check(settled=True)


def _write_then_die(table: str, rows: int) -> None:
    """Create a Delta table from a stream whose end never comes: SIGKILL before the commit."""
    import os
    import signal

    from deltalake import write_deltalake

    schema = pa.schema([("id", pa.int64())])

    def batches():
        for i in range(0, rows, 10_000):
            yield pa.record_batch([pa.array(range(i, i + 10_000), pa.int64())], schema=schema)
        os.kill(os.getpid(), signal.SIGKILL)

    write_deltalake(table, pa.RecordBatchReader.from_batches(schema, batches()),
                    target_file_size=16_384)


@pytest.mark.slow
def test_table_left_half_created_by_a_killed_first_write_is_created_by_the_next_run(
    tmp_path: Path, table_uri: str
):
    proc = SPAWN.Process(target=_write_then_die, args=(table_uri, 200_000))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -9
    assert unreferenced_data_files(table_uri) and not (Path(table_uri) / "_delta_log").exists()
    path = write_ids(tmp_path / "landing" / "f.parquet", 0, 5)
    with IdempotentIngestor(table=table_uri) as ing:
        result = ing.ingest_file(path)
    assert result.status == "ingested", result.error
    assert sorted(DeltaTable(table_uri).to_pyarrow_table().column("id").to_pylist()) == [
        0, 1, 2, 3, 4
    ]


_PART = "part-00003-0b2f6a4e-9a51-4f63-8c1d-2d7e5f0c9a11-c000.snappy.parquet"


@pytest.mark.parametrize(
    "leftovers",
    [
        [_PART],
        [_PART, _PART + "#1"],  # object_store's staging copy, caught mid-rename by the kill
        [f"year=2026/{_PART}", f"year=2026/{_PART}#7"],
    ],
)
def test_leftovers_of_a_killed_first_write_do_not_block_the_table(
    tmp_path: Path, table_uri: str, leftovers: list[str]
):
    for name in leftovers:
        (Path(table_uri) / name).parent.mkdir(parents=True, exist_ok=True)
        (Path(table_uri) / name).write_bytes(b"half written")
    path = write_ids(tmp_path / "landing" / "f.parquet", 0, 3)
    with IdempotentIngestor(table=table_uri) as ing:
        assert ing.ingest_file(path).status == "ingested"
    assert DeltaTable(table_uri).to_pyarrow_table().num_rows == 3


@pytest.mark.parametrize("stranger", ["notes.txt", f"{_PART}.bak", f"data/{_PART}"])
def test_a_folder_holding_anything_else_is_refused_as_a_table(
    table_uri: str, stranger: str
):
    (Path(table_uri) / stranger).parent.mkdir(parents=True, exist_ok=True)
    (Path(table_uri) / stranger).write_bytes(b"someone's file")
    with pytest.raises(ConfigurationError, match="holds no _delta_log"):
        IdempotentIngestor(table=table_uri)


@pytest.mark.slow
@pytest.mark.azurite
@pytest.mark.parametrize("point", ["during_write", "after_commit"])
def test_killed_worker_on_abfs_is_recovered_exactly_once(
    azurite: str, unique_name: str, tmp_path: Path, point: str, monkeypatch
):
    from azure.storage.blob import BlobServiceClient

    from ingest_core.azure.auth import delta_storage_options

    service = BlobServiceClient.from_connection_string(azurite)
    landing = service.create_container(f"{unique_name}-landing")
    service.create_container(f"{unique_name}-lake")
    try:
        local = [write_ids(tmp_path / f"f{i}.parquet", i * ROWS) for i in range(3)]
        for path in local:
            with open(path, "rb") as data:
                landing.upload_blob(f"raw/{Path(path).name}", data)
        root = f"abfs://{unique_name}-landing/raw/"
        table = f"abfs://{unique_name}-lake/orders"
        ledger = f"azure-table://{unique_name}ledger"
        code = kill_at(point, monkeypatch, table, ledger, [root], dict(BATCHED), azurite)
        assert code == -9
        time.sleep(LEASE + 0.1)
        storage = StorageConfig(connection_string=azurite)
        with IdempotentIngestor(table=table, ledger=ledger, storage=storage) as ing:
            redelivered = ing.ingest_directory(root)
            assert redelivered.ingested + redelivered.skipped == 3
            agreement = check_exactly_once(
                table, ing.ledger, ing.table, expected_ids=set(range(3 * ROWS)),
                storage_options=delta_storage_options(table, storage), connection=azurite,
            )
        assert agreement.problems == []
        assert agreement.contents_in_log == 3
    finally:
        for name in (f"{unique_name}-landing", f"{unique_name}-lake"):
            service.delete_container(name)


def test_a_rival_finishing_its_first_write_meanwhile_does_not_block_the_table(
    tmp_path: Path, table_uri: str, monkeypatch: pytest.MonkeyPatch
):
    # the listing is taken while a rival writes: its staging copy is renamed and its
    # _delta_log created before each listed entry is looked at
    Path(table_uri).mkdir(parents=True)
    (Path(table_uri) / _PART).write_bytes(b"renamed from its staging copy")
    listed = [Path(table_uri) / (_PART + "#2"), Path(table_uri) / _PART,
              Path(table_uri) / "_delta_log"]
    real_iterdir = Path.iterdir
    monkeypatch.setattr(
        Path, "iterdir", lambda self: iter(listed) if str(self) == table_uri else real_iterdir(self)
    )
    IdempotentIngestor(table=table_uri).close()
