"""`ingest run --dry-run`: what a run would ingest or skip, from hashes and ledger lookups only.

Nothing is claimed or written: the ledger is opened read-only (a missing one
means every file is new) and the Delta table is not touched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError, LedgerNotFoundError
from ingest_core.events import redact
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, BaseLedger, open_ledger
from ingest_core.ops.common import Progress, no_progress
from ingest_core.sources import Sources

WOULD_INGEST, WOULD_SKIP, IN_PROGRESS, WOULD_NOT = "ingest", "skip", "in_progress", "quarantined"


@dataclass
class PlannedFile:
    """One listed file and what a run would do with it."""

    path: str
    sha256: str
    size: int
    action: str
    """`ingest`, `skip` (its content is in the table), `in_progress` (a live lease elsewhere)
    or `quarantined` (set aside until released)."""
    ledger_status: str | None

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one file."""
        return {"path": redact(self.path), "sha256": self.sha256, "size": self.size,
                "action": self.action, "ledger_status": self.ledger_status}


@dataclass
class DryRunReport:
    """Every listed file with the action a run would take."""

    table: str
    files: list[PlannedFile] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many files a run would treat this way."""
        return sum(f.action == action for f in self.files)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: `dry_run`, `table`, counts by action and `files`."""
        return {
            "dry_run": True,
            "table": self.table,
            **{name: self.count(name) for name in (WOULD_INGEST, WOULD_SKIP, IN_PROGRESS,
                                                    WOULD_NOT)},
            "files": [f.to_dict() for f in self.files],
        }


def dry_run(config: IngestConfig, roots: list[str], progress: Progress = no_progress
            ) -> DryRunReport:
    """List and hash every file under `roots` and look each up in the ledger; write nothing.

    Raises:
        ConfigurationError: no --table (routes are not supported by a dry run), or a root is
            missing.
    """
    if not config.table_uri:
        raise ConfigurationError("--dry-run needs --table (a routed dry run is not supported)")
    table = table_key(config.table_uri)
    sources = Sources(config.storage)
    try:
        files = sources.list(roots)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from None
    ledger: BaseLedger | None
    try:
        ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    except LedgerNotFoundError:
        ledger = None
    report = DryRunReport(table)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-dry-run-") as spool, \
                progress(len(files)) as advance:
            for file in files:
                copy = sources.of(file.uri).fetch(file, Path(spool))
                try:
                    row = ledger.get(table, copy.sha256) if ledger is not None else None
                finally:
                    copy.discard()
                planned = PlannedFile(file.uri, copy.sha256, copy.size, _action(row, ledger),
                                      row.status if row else None)
                report.files.append(planned)
                advance(planned)
    finally:
        if ledger is not None:
            ledger.close()
    return report


def _action(row: object, ledger: BaseLedger | None) -> str:
    from ingest_core.ledger import FileRecord

    if not isinstance(row, FileRecord) or ledger is None or row.status == FAILED:
        return WOULD_INGEST
    if row.status == SUCCEEDED:
        return WOULD_SKIP
    if row.status == QUARANTINED:
        return WOULD_NOT
    if row.status == PROCESSING and row.lease_live(ledger.now()):
        return IN_PROGRESS
    return WOULD_INGEST
