"""Maintenance: compaction and checkpoints keep every file's transaction id; re-drives settle."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest
from deltalake import DeltaTable
from helpers import id_counts, write_parquet

from ingest_core import IdempotentIngestor
from ingest_core.config import IngestConfig, table_key
from ingest_core.delta import app_id
from ingest_core.delta.maintain import maintain
from ingest_core.functions import app_config
from ingest_core.ledger import open_ledger
from ingest_core.maintenance import due_for_redrive, redrive
from ingest_core.session import Session


@pytest.fixture
def ledger_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


def ingest_one_commit_each(table_uri: str, ledger_uri: str, paths: list[Path]) -> list[str]:
    with IdempotentIngestor(table_uri, ledger_uri) as ingestor:
        return [ingestor.ingest_file(str(p)).sha256 or "" for p in paths]


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_table_not_created_yet_is_left_alone(table_uri):
    report = maintain(IngestConfig(table_uri=table_uri))
    assert report.version is None and report.compaction == {}
    assert not Path(table_uri).exists()


def test_compaction_and_checkpoint_keep_every_file_exactly_once(table_uri, ledger_uri, landing):
    paths = [write_parquet(landing / f"{i}.parquet", start=i * 10) for i in range(4)]
    shas = ingest_one_commit_each(table_uri, ledger_uri, paths)
    before = id_counts(table_uri)
    report = maintain(IngestConfig(table_uri=table_uri))
    assert report.compaction["numFilesRemoved"] == 4
    assert report.compaction["numFilesAdded"] == 1
    assert report.checkpoint_version == report.version == 4
    assert (Path(table_uri) / "_delta_log" / f"{4:020d}.checkpoint.parquet").exists()
    table = DeltaTable(table_uri)
    assert len(table.file_uris()) == 1
    assert all(table.transaction_version(app_id(sha)) is not None for sha in shas)
    assert id_counts(table_uri) == before
    with IdempotentIngestor(table_uri, ledger_uri) as ingestor:
        again = ingestor.ingest_sources([str(landing)])
    assert again.counts["skipped"] == 4
    assert id_counts(table_uri) == before


def test_maintenance_steps_can_be_skipped(table_uri, ledger_uri, landing):
    ingest_one_commit_each(table_uri, ledger_uri, [write_parquet(landing / "a.parquet", 1)])
    report = maintain(IngestConfig(table_uri=table_uri), compact=False, checkpoint=False)
    assert report.version == 0 and report.compaction == {} and report.checkpoint_version is None


def _stuck(ledger_uri: str, table_uri: str, path: Path, *, failed: bool, lease: float = 0.01,
           attempt_limit: int = 5) -> None:
    """A row left by a worker that died (lease runs out) or failed."""
    ledger = open_ledger(ledger_uri)
    claim = ledger.claim(
        table_key(table_uri), sha_of(path), path=str(path), owner="dead-worker",
        lease_seconds=lease, max_attempts=attempt_limit, size=path.stat().st_size,
    )
    if failed:
        ledger.fail(claim.record, f"{path}: transient error")
    ledger.close()


def test_redrive_takes_failed_and_stalled_files_again(table_uri, ledger_uri, landing):
    failed = write_parquet(landing / "failed.parquet", start=1)
    stalled = write_parquet(landing / "stalled.parquet", start=10)
    _stuck(ledger_uri, table_uri, failed, failed=True)
    _stuck(ledger_uri, table_uri, stalled, failed=False)
    time.sleep(0.05)
    with Session(IngestConfig(table_uri=table_uri, ledger_uri=ledger_uri)) as session:
        report = redrive(session)
    assert report.stats.counts["ingested"] == 2 and report.gone == []
    rows = {r.path: r for r in open_ledger(ledger_uri).records()}
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert rows[str(failed)].attempt == 2 and rows[str(stalled)].attempt == 2
    assert id_counts(table_uri) == {1: 1, 2: 1, 3: 1, 10: 1, 11: 1, 12: 1}


def test_redrive_leaves_live_leases_and_exhausted_files(table_uri, ledger_uri, landing):
    live = write_parquet(landing / "live.parquet", start=1)
    exhausted = write_parquet(landing / "exhausted.parquet", start=10)
    _stuck(ledger_uri, table_uri, live, failed=False, lease=300)
    _stuck(ledger_uri, table_uri, exhausted, failed=True)
    config = IngestConfig(table_uri=table_uri, ledger_uri=ledger_uri, max_attempts=1)
    with Session(config) as session:
        ingestor = session.ingestor(config)
        assert due_for_redrive(ingestor.ledger, ingestor.table_key, 1) == []
        assert redrive(session).stats.files == []


def test_redrive_reports_files_gone_from_their_path(table_uri, ledger_uri, landing):
    vanished = write_parquet(landing / "vanished.parquet", start=1)
    _stuck(ledger_uri, table_uri, vanished, failed=True)
    os.unlink(vanished)
    with Session(IngestConfig(table_uri=table_uri, ledger_uri=ledger_uri)) as session:
        report = redrive(session)
    assert [r.path for r in report.gone] == [str(vanished)]
    assert report.stats.files == []
    assert [r.status for r in open_ledger(ledger_uri).records()] == ["failed"]


def test_the_timer_redrives_then_compacts(table_uri, ledger_uri, landing, monkeypatch, caplog):
    import function_app

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INGEST_TABLE_URI", table_uri)
    monkeypatch.setenv("INGEST_LEDGER_URI", ledger_uri)
    app_config.cache_clear()
    ingest_one_commit_each(
        table_uri, ledger_uri, [write_parquet(landing / f"{i}.parquet", i * 10) for i in range(2)]
    )
    failed = write_parquet(landing / "failed.parquet", start=100)
    _stuck(ledger_uri, table_uri, failed, failed=True)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    try:
        function_app.maintenance(TimerRequest(past_due=True))
    finally:
        app_config.cache_clear()
    ours = [r for r in caplog.records if r.name == "ingest_core.functions"]
    lines = [json.loads(r.getMessage()) for r in ours]
    assert [(line["event"], line.get("status")) for line in lines] == [
        ("ingest_file", "ingested"), ("maintenance", None),
    ]
    summary = lines[-1]
    assert summary["past_due"] is True
    assert summary["redriven"]["ingested"] == 1
    assert summary["compaction"]["numFilesRemoved"] == 3
    assert summary["checkpoint_version"] == summary["version"] == 3
    assert sum(id_counts(table_uri).values()) == 9
    assert summary["run_id"].startswith("fn-maintenance-")
    [compaction] = [c for c in DeltaTable(table_uri).history() if c["operation"] == "OPTIMIZE"]
    assert compaction["ingest.run_id"] == summary["run_id"]
    assert lines[0]["run_id"] == summary["run_id"]  # the re-driven file's line
    redriven = [r for r in open_ledger(ledger_uri).records() if r.path == str(failed)]
    assert [r.run_id for r in redriven] == [summary["run_id"]]


@pytest.mark.azurite
def test_redrive_reads_blobs_by_their_recorded_url(azurite, unique_name, table_uri, ledger_uri):
    from azure.storage.blob import BlobServiceClient

    from ingest_core.config import StorageConfig

    container = BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    try:
        data = b"id,amount\n7,1.0\n"
        container.upload_blob("in/a.csv", data)
        container.upload_blob("in/gone.csv", b"id,amount\n8,2.0\n")
        base = f"http://127.0.0.1:10000/devstoreaccount1/{unique_name}/in"
        ledger = open_ledger(ledger_uri)
        for name, content in (("a.csv", data), ("gone.csv", b"id,amount\n8,2.0\n")):
            claim = ledger.claim(
                table_key(table_uri), hashlib.sha256(content).hexdigest(), path=f"{base}/{name}",
                owner="dead-worker", lease_seconds=60, max_attempts=5, size=len(content),
            )
            ledger.fail(claim.record, "transient")
        ledger.close()
        container.delete_blob("in/gone.csv")
        storage = StorageConfig(connection_string=azurite)
        config = IngestConfig(table_uri=table_uri, ledger_uri=ledger_uri, storage=storage)
        with Session(config) as session:
            report = redrive(session)
        assert [r.path for r in report.stats.files] == [f"{base}/a.csv"]
        assert report.stats.counts["ingested"] == 1
        assert [r.path for r in report.gone] == [f"{base}/gone.csv"]
        assert id_counts(table_uri) == {7: 1}
    finally:
        container.delete_container()
