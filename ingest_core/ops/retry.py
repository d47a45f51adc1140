"""`ingest retry`: re-drive a table's failed and stalled files by their recorded path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, FileRecord
from ingest_core.maintenance import due_for_redrive, redrive
from ingest_core.ops.common import Progress, no_progress
from ingest_core.results import RunStats
from ingest_core.run_ids import new_run_id

if TYPE_CHECKING:
    from ingest_core.ledger import BaseLedger


@dataclass
class RetryReport:
    """What a retry released and re-drove."""

    released: list[FileRecord] = field(default_factory=list)
    """Quarantined rows turned back into `failed` for this retry."""
    gone: list[FileRecord] = field(default_factory=list)
    """Rows whose recorded path no longer holds a file: land the content again."""
    waiting: list[FileRecord] = field(default_factory=list)
    """Rows not re-driven: held by a live worker, or already done."""
    dismissed: list[FileRecord] = field(default_factory=list)
    """Gone rows closed as quarantined with a recorded reason (`forget_gone`)."""
    stats: RunStats = field(default_factory=RunStats)

    @property
    def ok(self) -> bool:
        """True when every re-driven file was ingested or skipped and no path was gone
        (or every gone row was dismissed)."""
        dismissed = {(r.table, r.sha256) for r in self.dismissed}
        return self.stats.ok and all((r.table, r.sha256) in dismissed for r in self.gone)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "released": [r.sha256 for r in self.released],
            "gone": [{"path": redact(r.path), "sha256": r.sha256} for r in self.gone],
            "waiting": [
                {"path": redact(r.path), "sha256": r.sha256, "status": r.status}
                for r in self.waiting
            ],
            "dismissed": [
                {"path": redact(r.path), "sha256": r.sha256, "reason": r.error}
                for r in self.dismissed
            ],
            **self.stats.to_dict(),
        }


def retry(
    config: IngestConfig,
    *,
    include_quarantined: bool = False,
    sha256: str | None = None,
    forget_gone: bool = False,
    progress: Progress = no_progress,
    run_id: str | None = None,
) -> RetryReport:
    """Re-drive the table's failed and stalled files (one content with `sha256`).

    With `include_quarantined`, quarantined rows are released first (fresh
    attempts), for when the operator has fixed what made them fail. With
    `forget_gone`, rows whose path holds no file any more are closed as
    quarantined with the reason recorded, so later retries stop reporting them.
    `run_id` (default: a new one) is on every row the retry releases, dismisses
    or re-drives, and in the report.
    """
    from ingest_core.session import Session

    run_id = run_id or new_run_id()
    report = RetryReport()
    with Session(config) as session:
        table = table_key(config.table_uri)
        ledger = session.ledger_of(table)
        if sha256 is None:
            if include_quarantined:
                for row in ledger.records(table=table, status=QUARANTINED):
                    _release_into(ledger, row, report, run_id)
            records = due_for_redrive(ledger, table, config.max_attempts)
        else:
            records = _one_for_retry(
                ledger, table, sha256.lower(), include_quarantined, report, run_id
            )
        with progress(len(records)) as advance:
            redriven = redrive(session, table, advance, records, run_id=run_id)
        if forget_gone:
            for row in redriven.gone:
                closed = ledger.dismiss(
                    row.table, row.sha256,
                    f"no file at {redact(row.path)} any more (ingest retry --forget-gone)",
                    run_id=run_id,
                )
                if closed is not None and closed.status == QUARANTINED:
                    report.dismissed.append(closed)
    report.stats, report.gone = redriven.stats, redriven.gone
    return report


def _one_for_retry(
    ledger: BaseLedger, table: str, sha256: str, include_quarantined: bool, report: RetryReport,
    run_id: str,
) -> list[FileRecord]:
    row = ledger.get(table, sha256)
    if row is None:
        raise ConfigurationError(
            f"no file with sha256 {sha256} in table {table}: check the sha256 "
            "(`ingest quarantine list`, `ingest status`) and --table"
        )
    if row.status == QUARANTINED:
        if not include_quarantined:
            raise ConfigurationError(
                f"{row.path} ({sha256[:12]}) is quarantined: {row.error}; fix the cause, then "
                "retry with --include-quarantined"
            )
        row = _release_into(ledger, row, report, run_id)
    if row.status == FAILED or (row.status == PROCESSING and not row.lease_live(ledger.now())):
        return [row]
    report.waiting.append(row)
    return []


def _release_into(
    ledger: BaseLedger, row: FileRecord, report: RetryReport, run_id: str
) -> FileRecord:
    released = ledger.release(row.table, row.sha256, run_id=run_id) or row
    if released.status == FAILED:
        report.released.append(released)
    return released
