"""Exactly once on the embedded default: reruns, copies, changed content, crashes, races."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import id_counts, read_table, run_cli, write_parquet

from ingest_core import IdempotentIngestor
from ingest_core.ledger import SUCCEEDED


def test_first_run_ingests_every_file(landing: Path, table_uri: str):
    for i in range(3):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    with IdempotentIngestor(table=table_uri) as ing:
        stats = ing.ingest_directory(str(landing))
    assert stats.counts == {"ingested": 3, "skipped": 0, "in_progress": 0, "failed": 0,
                            "quarantined": 0, "unrouted": 0}
    assert stats.rows == 9
    assert sorted(id_counts(table_uri)) == [0, 1, 2, 10, 11, 12, 20, 21, 22]


def test_rerun_skips_everything(landing: Path, table_uri: str):
    for i in range(3):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    with IdempotentIngestor(table=table_uri) as ing:
        ing.ingest_directory(str(landing))
    with IdempotentIngestor(table=table_uri) as ing:
        again = ing.ingest_directory(str(landing))
    assert again.skipped == 3 and again.ingested == 0
    assert set(id_counts(table_uri).values()) == {1}


def test_renamed_copy_is_skipped_and_sighting_recorded(landing: Path, table_uri: str):
    original = write_parquet(landing / "orders.parquet", start=0)
    with IdempotentIngestor(table=table_uri) as ing:
        ing.ingest_file(str(original))
        copy = landing / "sub" / "orders_copy.parquet"
        copy.parent.mkdir()
        shutil.copy(original, copy)
        result = ing.ingest_file(str(copy))
        record = ing.ledger.get(ing.table, result.sha256 or "")
    assert result.status == "skipped"
    assert record is not None and str(copy.resolve()) in record.seen_paths
    assert set(id_counts(table_uri).values()) == {1}


def test_changed_content_under_same_name_is_ingested(landing: Path, table_uri: str):
    path = write_parquet(landing / "orders.parquet", start=0)
    with IdempotentIngestor(table=table_uri) as ing:
        first = ing.ingest_file(str(path))
        write_parquet(path, start=100)
        second = ing.ingest_file(str(path))
    assert first.status == second.status == "ingested"
    assert first.sha256 != second.sha256
    assert sorted(id_counts(table_uri)) == [0, 1, 2, 100, 101, 102]


def test_same_content_twice_in_one_run_lands_once(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    shutil.copy(landing / "a.parquet", landing / "b.parquet")
    with IdempotentIngestor(table=table_uri) as ing:
        stats = ing.ingest_directory(str(landing))
        (row,) = ing.ledger.records()
    assert (stats.ingested, stats.skipped) == (1, 1)
    assert set(id_counts(table_uri).values()) == {1}
    assert row.status == "succeeded" and row.seen_paths == [str((landing / "b.parquet").resolve())]


def test_small_files_share_one_commit_with_one_txn_each(landing: Path, table_uri: str):
    for i in range(5):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    with IdempotentIngestor(table=table_uri, batch_files=10) as ing:
        stats = ing.ingest_directory(str(landing))
    from deltalake import DeltaTable

    table = DeltaTable(table_uri)
    assert table.version() == 0
    assert {r.delta_version for r in stats.files} == {0}
    for result in stats.files:
        assert table.transaction_version(f"ingest-{result.sha256}") == 1


def test_ledger_agrees_with_delta_log(landing: Path, table_uri: str):
    for i in range(4):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    with IdempotentIngestor(table=table_uri, batch_files=2) as ing:
        ing.ingest_directory(str(landing))
        rows = ing.ledger.records(table=ing.table)
    from deltalake import DeltaTable

    for row in rows:
        assert row.status == SUCCEEDED and row.rows == 3
        at_version = DeltaTable(table_uri, version=row.delta_version)
        assert at_version.transaction_version(f"ingest-{row.sha256}") == 1
        if row.delta_version:
            before = DeltaTable(table_uri, version=row.delta_version - 1)
            assert before.transaction_version(f"ingest-{row.sha256}") is None


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_hash", "after_claim", "during_write", "after_commit",
                                   "during_complete"])
def test_killed_worker_is_recovered_without_duplicates(landing: Path, table_uri: str, point: str):
    for i in range(3):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    killed = run_cli("run", str(landing), "--table", table_uri, "--lease-seconds", "1",
                     env={"INGEST_FAULT_POINT": point})
    assert killed.returncode == -9, killed.stderr
    import time

    time.sleep(1.1)  # the dead worker's lease runs out
    rerun = run_cli("run", str(landing), "--table", table_uri, "--json")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert sorted(id_counts(table_uri).elements()) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    status = json.loads(run_cli("status", "--table", table_uri, "--json").stdout)
    assert {row["status"] for row in status} == {SUCCEEDED}
    assert all(row["delta_version"] is not None and row["rows"] == 3 for row in status)


@pytest.mark.slow
def test_four_concurrent_runs_ingest_each_file_once(landing: Path, table_uri: str):
    for i in range(40):
        write_parquet(landing / f"f{i:02}.parquet", start=i * 10)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ingest_core.cli", "run", str(landing), "--table", table_uri,
             "--batch-files", "5", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for (out, err), proc in zip(outputs, procs, strict=True):
        assert out.strip(), f"run exited {proc.returncode} with no report: {err}"
    reports = [json.loads(out) for out, _err in outputs]
    assert sum(r["ingested"] for r in reports) == 40
    counts = id_counts(table_uri)
    assert len(counts) == 120 and set(counts.values()) == {1}
    # files another run still held count as in_progress (exit 1); a rerun settles them
    final = run_cli("run", str(landing), "--table", table_uri, "--json")
    assert final.returncode == 0 and json.loads(final.stdout)["skipped"] == 40


def test_workers_option_uses_spawned_processes(landing: Path, table_uri: str):
    for i in range(12):
        write_parquet(landing / f"f{i:02}.parquet", start=i * 10)
    result = run_cli("run", str(landing), "--table", table_uri, "--workers", "3",
                     "--batch-files", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ingested"] == 12
    assert read_table(table_uri).num_rows == 36


def test_batch_is_committed_once_its_first_file_waited_batch_seconds(
    landing: Path, table_uri: str
):
    for i in range(4):
        write_parquet(landing / f"f{i}.parquet", start=i * 10)
    with IdempotentIngestor(table=table_uri, batch_files=100, batch_seconds=0) as ing:
        stats = ing.ingest_directory(str(landing))
    assert sorted(r.delta_version for r in stats.files) == [0, 1, 2, 3]
