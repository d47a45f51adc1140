"""Keeping a table and its ledger healthy: compact, checkpoint, re-drive stuck files.

`maintain` compacts the Delta table's small files and writes a checkpoint, so
loading the table stays cheap however many single-file commits it has taken.
`redrive` re-ingests, by their recorded path, the files whose worker died
(lease expired) or that failed with attempts left; the ledger makes a re-drive
of a file that has since landed a skip. With routes, `routed_tables` names the
tables to maintain and `redrive_routed` re-drives one table's rows through the
routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, StorageConfig, is_local, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.ledger import BaseLedger, FileRecord
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ingest_core.ingestor import IdempotentIngestor
    from ingest_core.routed import RoutedIngest
    from ingest_core.routing import Routes


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
    vacuumed: list[str] | None = None
    """Data files vacuum deleted; None if skipped."""
    logs_cleaned: bool = False
    """Whether expired log files were removed (`cleanup_metadata`)."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "table": self.table,
            "version": self.version,
            "compaction": self.compaction,
            "checkpoint_version": self.checkpoint_version,
            "vacuumed": self.vacuumed,
            "logs_cleaned": self.logs_cleaned,
        }


@dataclass
class RedriveReport:
    """What `redrive` found and did."""

    stats: RunStats = field(default_factory=RunStats)
    """One result per file re-ingested."""
    gone: list[FileRecord] = field(default_factory=list)
    """Rows whose recorded path no longer holds a file: land the content again to ingest it."""


MIN_VACUUM_HOURS = 168
"""Vacuum retention below this (Delta's default of 7 days) needs `force`."""


def maintain(
    config: IngestConfig,
    *,
    compact: bool = True,
    checkpoint: bool = True,
    vacuum_hours: float | None = None,
    cleanup_logs: bool = False,
    force: bool = False,
) -> MaintenanceReport:
    """Compact the table's small files and write a checkpoint; optionally vacuum and clean logs.

    Safe while ingestion runs: compaction rewrites data files without touching
    the transaction ids that record which files are in. A table that does not
    exist yet is left alone.

    Args:
        config: the configuration naming the table (and its storage).
        compact: bin-pack small data files (`DeltaTable.optimize.compact`).
        checkpoint: write a checkpoint at the latest version (`create_checkpoint`).
        vacuum_hours: delete data files no longer referenced for this many hours
            (`DeltaTable.vacuum`); None: no vacuum.
        cleanup_logs: remove log files older than the table's log retention
            (`DeltaTable.cleanup_metadata`); a long log slows every commit.
        force: allow `vacuum_hours` below `MIN_VACUUM_HOURS` (readers of older
            versions, and writers still working from them, may then fail).
    """
    if vacuum_hours is not None and vacuum_hours < MIN_VACUUM_HOURS and not force:
        raise ConfigurationError(
            f"vacuum retention {vacuum_hours:g} h is below {MIN_VACUUM_HOURS} h: readers and "
            "writers of older versions could lose files; pass a longer retention, or --force"
        )
    report = MaintenanceReport(table=config.table_uri)
    table = open_table(config.table_uri, config.storage)
    if table is None:
        return report
    if compact:
        report.compaction = dict(table.optimize.compact())
        table.update_incremental()
    if checkpoint:
        table.create_checkpoint()
        report.checkpoint_version = table.version()
    if vacuum_hours is not None:
        report.vacuumed = table.vacuum(
            retention_hours=int(vacuum_hours), dry_run=False, enforce_retention_duration=not force
        )
    if cleanup_logs:
        table.cleanup_metadata()
        report.logs_cleaned = True
    report.version = table.version()
    return report


def due_for_redrive(ledger: BaseLedger, table: str, max_attempts: int) -> list[FileRecord]:
    """Rows of `table` worth another attempt: failed with attempts left, or lease expired."""
    return ledger.due(table, max_attempts=max_attempts)


def redrive(
    ingestor: IdempotentIngestor,
    on_result: Callable[[IngestResult], None] | None = None,
    records: Iterable[FileRecord] | None = None,
) -> RedriveReport:
    """Re-ingest failed and stalled files by their recorded path, in one run.

    A path that no longer holds a file is reported in `gone` and its row left
    as it is. A path that now holds other bytes ingests those (they are a new
    file); the old row then stays until its content lands again.

    Args:
        ingestor: the ingestor of the table whose rows are re-driven.
        on_result: called as each file settles.
        records: the rows to re-drive; default: `due_for_redrive`.
    """
    if records is None:
        records = due_for_redrive(ingestor.ledger, ingestor.table, ingestor.config.max_attempts)
    report, files = _present_files(ingestor, records)
    report.stats = ingestor.run(files, on_result)
    return report


def routed_tables(routes: Routes, ledger: BaseLedger) -> list[str]:
    """The tables a routed deployment maintains, as the ledger names them (`table_key`).

    Every table with rows in the shared `ledger` (from its table registry),
    and every route's table that uses no capture; not the `unrouted:` rows. A
    table a capture names (`abfss://.../{dataset}`) is known once a file has
    been routed to it.
    """
    from ingest_core.routing import UNROUTED_TABLE, template_names

    tables = set(ledger.tables())
    tables.update(table_key(r.table) for r in routes.routes if not template_names(r.table))
    tables.discard(UNROUTED_TABLE)
    return sorted(tables)


def redrive_routed(
    routed: RoutedIngest,
    ledger: BaseLedger,
    table: str,
    on_result: Callable[[IngestResult], None] | None = None,
) -> RedriveReport:
    """Re-drive the failed and stalled rows of one routed table, routing each recorded path again.

    A file goes where the routes send it now, with that route's options:
    its table as before, unless the routes changed since (then the old row
    stays as it is). Paths that no longer hold a file are reported in `gone`.

    Args:
        routed: the router of the deployment (its ingestors use `ledger`'s URI).
        ledger: the shared ledger holding `table`'s rows.
        table: the table's ledger key (see `routed_tables`).
        on_result: called as each file settles.
    """
    records = due_for_redrive(ledger, table, routed.config.max_attempts)
    report, files = _present_files(routed, records)
    report.stats = routed.run(files, on_result)
    return report


def _present_files(
    lister: IdempotentIngestor | RoutedIngest, records: Iterable[FileRecord]
) -> tuple[RedriveReport, list[SourceFile]]:
    """The files at the rows' recorded paths (each once), and a report of the gone ones."""
    report = RedriveReport()
    files: dict[str, SourceFile] = {}
    for record in records:
        file = present_file(lister, record.path)
        if file is None:
            report.gone.append(record)
        else:
            files.setdefault(file.uri, file)
    return report, list(files.values())


def present_file(ingestor: IdempotentIngestor | RoutedIngest, uri: str) -> SourceFile | None:
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


def open_table(uri: str, storage: StorageConfig) -> DeltaTable | None:
    """The Delta table at `uri` (local or abfs(s)://), or None when it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    options = None
    if not is_local(uri):
        from ingest_core.azure.auth import delta_storage_options

        options = delta_storage_options(uri, storage)
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return None
