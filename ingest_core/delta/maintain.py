"""Keeping a Delta table cheap to load and write: compact, checkpoint, vacuum, clean logs.

`maintain` compacts the table's small files and writes a checkpoint, so
loading the table stays cheap however many single-file commits it has taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deltalake import CommitProperties

from ingest_core.config import IngestConfig
from ingest_core.delta.target import TableRef, run_metadata
from ingest_core.errors import ConfigurationError


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
    staging: dict[str, int] = field(default_factory=dict)
    """The group commit's staging area: files left staged `committed`, `orphans_deleted`."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "table": self.table,
            "version": self.version,
            "compaction": self.compaction,
            "checkpoint_version": self.checkpoint_version,
            "vacuumed": self.vacuumed,
            "logs_cleaned": self.logs_cleaned,
            "staging": self.staging,
        }


MIN_VACUUM_HOURS = 168
"""Vacuum retention below this (Delta's default of 7 days) needs `force`."""
STAGING_AFTER_S = 3_600.0
"""Files staged longer than this are committed by maintenance (their invocation died)."""


def maintain(
    config: IngestConfig,
    *,
    compact: bool = True,
    checkpoint: bool = True,
    vacuum_hours: float | None = None,
    cleanup_logs: bool = False,
    force: bool = False,
    staging_after_s: float | None = STAGING_AFTER_S,
    run_id: str | None = None,
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
        staging_after_s: commit files the group commit left staged longer than
            this, and delete data files of intents another file superseded
            (`GroupCommit.clean`); None: leave the staging area alone.
        run_id: the maintenance run, named (`ingest.run_id`) by the commits of
            left-staged files and of compaction.
    """
    if vacuum_hours is not None and vacuum_hours < MIN_VACUUM_HOURS and not force:
        raise ConfigurationError(
            f"vacuum retention {vacuum_hours:g} h is below {MIN_VACUUM_HOURS} h: readers and "
            "writers of older versions could lose files; pass a longer retention, or --force"
        )
    report = MaintenanceReport(table=config.table_uri)
    ref = TableRef.of(config.table_uri, config.storage)
    table = ref.load()
    if table is None:
        return report
    from ingest_core.delta.lineage import refuse_short_txn_retention

    # a checkpoint would drop ids the ingester still counts on: refuse before writing any
    refuse_short_txn_retention(config.table_uri, table, config.txn_retention)
    if staging_after_s is not None:
        from ingest_core.delta.group_commit import GroupCommit

        group = GroupCommit(ref)
        try:
            report.staging = group.clean(staging_after_s, run_id)
        finally:
            group.close()
        table.update_incremental()
    if compact:
        report.compaction = dict(table.optimize.compact(commit_properties=_run_properties(run_id)))
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


def _run_properties(run_id: str | None) -> CommitProperties | None:
    """Commit properties naming the maintenance run (None: delta-rs's defaults)."""
    if not run_id:
        return None
    return CommitProperties(custom_metadata=run_metadata(run_id, ()))
