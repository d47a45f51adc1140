"""Bounded transaction ids: they expire, and an old file is still never appended twice.

Tables this project creates keep their Delta transaction ids for
`txn_retention` (`delta.setTransactionRetentionDuration`), so the set of ids
stays bounded. Past that window the ledger is the record; where the ledger
cannot be trusted, the lineage column recognises old files: a ledger lost
(deleted, replaced) is rebuilt from it before any claim, and a claim taken
over after the window looks there before writing. Here the window is one
second, so the ids really are gone when the files come again.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from exactly_once import ingest_paths, ledger_uri
from helpers import id_counts, write_parquet

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.delta import app_id
from ingest_core.ledger import SUCCEEDED, open_ledger

WINDOW = "interval 1 second"
SPAWN = multiprocessing.get_context("spawn")


def expire() -> None:
    time.sleep(1.3)


def test_a_created_table_keeps_transaction_ids_for_the_configured_window(landing, table_uri):
    write_parquet(landing / "a.parquet", 1)
    with IdempotentIngestor(table=table_uri, txn_retention="interval 3 days") as ing:
        ing.ingest_directory(str(landing))
    configuration = DeltaTable(table_uri).metadata().configuration
    assert configuration["delta.setTransactionRetentionDuration"] == "interval 3 days"


def test_without_lineage_the_ids_are_the_only_record_and_never_expire(landing, table_uri):
    write_parquet(landing / "a.parquet", 1)
    with IdempotentIngestor(table=table_uri, lineage=False, txn_retention=WINDOW) as ing:
        ing.ingest_directory(str(landing))
    assert "delta.setTransactionRetentionDuration" not in (
        DeltaTable(table_uri).metadata().configuration
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["batched", "streamed"])
def test_a_lost_ledger_is_rebuilt_from_lineage_once_the_ids_expired(
    landing, table_uri, tmp_path, streamed
):
    paths = [write_parquet(landing / f"{i}.parquet", i * 10) for i in range(3)]
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    options = {"txn_retention": WINDOW, "stream_bytes": 1 if streamed else 16 * 2**20}
    with IdempotentIngestor(table=table_uri, ledger=ledger, **options) as ing:
        assert ing.ingest_directory(str(landing)).ingested == 3
    expire()
    snapshot = DeltaTable(table_uri)
    assert all(snapshot.transaction_version(app_id(_sha(p))) is None for p in paths)
    os.unlink(tmp_path / "ledger.sqlite")

    with IdempotentIngestor(table=table_uri, ledger=ledger, **options) as ing:
        again = ing.ingest_directory(str(landing))
    assert again.skipped == 3 and again.rows == 0
    assert id_counts(table_uri) == {i: 1 for p in range(3) for i in range(p * 10, p * 10 + 3)}
    rows = open_ledger(ledger).records()
    assert {r.status for r in rows} == {SUCCEEDED} and sorted(r.rows for r in rows) == [3, 3, 3]


@pytest.mark.azurite
def test_a_lost_azure_table_ledger_is_rebuilt_from_lineage(azurite, unique_name, landing,
                                                           table_uri):
    write_parquet(landing / "a.parquet", 1)
    storage = StorageConfig(connection_string=azurite)
    first = f"azure-table://{unique_name}a"
    with IdempotentIngestor(table=table_uri, ledger=first, storage=storage,
                            txn_retention=WINDOW) as ing:
        ing.ingest_directory(str(landing))
    expire()
    replaced = f"azure-table://{unique_name}b"  # another, empty ledger for the same table
    with IdempotentIngestor(table=table_uri, ledger=replaced, storage=storage,
                            txn_retention=WINDOW) as ing:
        assert ing.ingest_directory(str(landing)).skipped == 1
    assert id_counts(table_uri) == {1: 1, 2: 1, 3: 1}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def test_a_takeover_after_the_ids_expired_finds_the_rows_by_lineage(
    kind, request, landing, table_uri, tmp_path, unique_name, monkeypatch
):
    connection = request.getfixturevalue("azurite") if kind == "azure_table" else None
    ledger = ledger_uri(kind, tmp_path, unique_name)
    paths = [str(write_parquet(landing / f"{i}.parquet", i * 10)) for i in range(3)]
    options = {"txn_retention": WINDOW, "lease_seconds": 1.0}
    with IdempotentIngestor(table=table_uri, ledger=ledger,
                            storage=StorageConfig(connection_string=connection),
                            **options) as ing:  # the table exists, with its window
        ing.ingest_file(paths[0])
    # a worker commits the other two, then dies before the ledger says so
    monkeypatch.setenv("INGEST_FAULT_POINT", "after_commit")
    worker = SPAWN.Process(target=ingest_paths,
                           args=(table_uri, ledger, paths[1:], options, connection))
    worker.start()
    monkeypatch.delenv("INGEST_FAULT_POINT")
    worker.join(60)
    assert worker.exitcode == -9
    expire()  # the lease and the transaction ids are gone: only lineage remembers

    stats = ingest_paths(table_uri, ledger, paths, options, connection)
    assert stats["skipped"] == 3  # one known, two found in the table by their lineage
    assert id_counts(table_uri) == {i: 1 for p in range(3) for i in range(p * 10, p * 10 + 3)}
    rows = open_ledger(ledger, StorageConfig(connection_string=connection)).records()
    assert {r.status for r in rows} == {SUCCEEDED} and sorted(r.rows for r in rows) == [3, 3, 3]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
