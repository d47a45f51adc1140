"""Keeping a table and its ledger healthy: compact, checkpoint, re-drive stuck files.

`maintain` compacts the Delta table's small files and writes a checkpoint, so
loading the table stays cheap however many single-file commits it has taken.
`redrive` re-ingests, by their recorded path, the files whose worker died
(lease expired) or that failed with attempts left; the ledger makes a re-drive
of a file that has since landed a skip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, is_local
from ingest_core.ledger import FAILED, PROCESSING, BaseLedger, FileRecord
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ingest_core.ingestor import IdempotentIngestor


@dataclass
class MaintenanceReport:
    """What `maintain` did to one table."""

    table: str
    version: int | None = None
    """The table's version after maintenance; None when the table does not exist yet."""
    compaction: dict[str, Any] = field(default_factory=dict)
    """delta-rs's optimize metrics (numFilesAdded, numFilesRemoved, ...); empty if skipped."""
    checkpoint_version: int | None = None
    """The version a checkpoint was written at; None if skipped."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "table": self.table,
            "version": self.version,
            "compaction": self.compaction,
            "checkpoint_version": self.checkpoint_version,
        }


@dataclass
class RedriveReport:
    """What `redrive` found and did."""

    stats: RunStats = field(default_factory=RunStats)
    """One result per file re-ingested."""
    gone: list[FileRecord] = field(default_factory=list)
    """Rows whose recorded path no longer holds a file: land the content again to ingest it."""


def maintain(
    config: IngestConfig, *, compact: bool = True, checkpoint: bool = True
) -> MaintenanceReport:
    """Compact the table's small files and write a checkpoint.

    Safe while ingestion runs: compaction rewrites data files without touching
    the transaction ids that record which files are in. A table that does not
    exist yet is left alone.

    Args:
        config: the configuration naming the table (and its storage).
        compact: bin-pack small data files (`DeltaTable.optimize.compact`).
        checkpoint: write a checkpoint at the latest version (`create_checkpoint`).
    """
    report = MaintenanceReport(table=config.table_uri)
    table = _open_table(config)
    if table is None:
        return report
    if compact:
        report.compaction = dict(table.optimize.compact())
        table.update_incremental()
    if checkpoint:
        table.create_checkpoint()
        report.checkpoint_version = table.version()
    report.version = table.version()
    return report


def due_for_redrive(ledger: BaseLedger, table: str, max_attempts: int) -> list[FileRecord]:
    """Rows of `table` worth another attempt: failed with attempts left, or lease expired."""
    now = ledger.now()
    failed = [r for r in ledger.records(table=table, status=FAILED) if r.attempt < max_attempts]
    stalled = [r for r in ledger.records(table=table, status=PROCESSING) if not r.lease_live(now)]
    return failed + stalled


def redrive(
    ingestor: IdempotentIngestor, on_result: Callable[[IngestResult], None] | None = None
) -> RedriveReport:
    """Re-ingest failed and stalled files by their recorded path, in one run.

    A path that no longer holds a file is reported in `gone` and its row left
    as it is. A path that now holds other bytes ingests those (they are a new
    file); the old row then stays until its content lands again.
    """
    report = RedriveReport()
    files: dict[str, SourceFile] = {}
    for record in due_for_redrive(ingestor.ledger, ingestor.table, ingestor.config.max_attempts):
        file = present_file(ingestor, record.path)
        if file is None:
            report.gone.append(record)
        else:
            files.setdefault(file.uri, file)
    report.stats = ingestor.run(files.values(), on_result)
    return report


def present_file(ingestor: IdempotentIngestor, uri: str) -> SourceFile | None:
    """The single file at `uri` as its source lists it; None when none is there (deleted)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        files = [f for f in ingestor.list_sources([uri]) if _same_file(f.uri, uri)]
    except (FileNotFoundError, ResourceNotFoundError):
        return None
    return files[0] if len(files) == 1 else None


def _same_file(listed: str, wanted: str) -> bool:
    if is_local(wanted):
        from ingest_core.config import local_path

        return local_path(listed) == local_path(wanted)
    from ingest_core.azure.urls import parse_blob_url

    a, b = parse_blob_url(listed), parse_blob_url(wanted)
    return (a.account, a.container, a.name) == (b.account, b.container, b.name)


def _open_table(config: IngestConfig) -> DeltaTable | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    options = None
    if not is_local(config.table_uri):
        from ingest_core.azure.auth import delta_storage_options

        options = delta_storage_options(config.table_uri, config.storage)
    try:
        return DeltaTable(config.table_uri, storage_options=options)
    except TableNotFoundError:
        return None
