"""Re-driving stuck files: failed with attempts left, or held by a worker that died.

`redrive` re-ingests such files by their recorded path through a `Session`;
the ledger makes a re-drive of a file that has since landed a skip. With
routes, `routed_tables` names the tables a deployment maintains and each
table's rows are re-driven through the routes. Compaction and checkpoints are
`ingest_core.delta.maintain`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_core.config import table_key
from ingest_core.ledger import BaseLedger, FileRecord
from ingest_core.ledger.base import unread_key
from ingest_core.results import IngestResult, RunStats

if TYPE_CHECKING:
    from ingest_core.routing import Routes
    from ingest_core.session import Session


@dataclass
class RedriveReport:
    """What `redrive` found and did."""

    stats: RunStats = field(default_factory=RunStats)
    """One result per file re-ingested."""
    gone: list[FileRecord] = field(default_factory=list)
    """Rows whose recorded path no longer holds a file: land the content again to ingest it."""


def due_for_redrive(ledger: BaseLedger, table: str, max_attempts: int) -> list[FileRecord]:
    """Rows of `table` worth another attempt: failed with attempts left, or lease expired."""
    return ledger.due(table, max_attempts=max_attempts)


def redrive(
    session: Session,
    table: str | None = None,
    on_result: Callable[[IngestResult], None] | None = None,
    records: Iterable[FileRecord] | None = None,
    *,
    run_id: str | None = None,
) -> RedriveReport:
    """Re-ingest failed and stalled files by their recorded path, in one run.

    A path that no longer holds a file is reported in `gone` and its row left
    as it is. A path that now holds other bytes ingests those (they are a new
    file); the old row then stays until its content lands again. In a routed
    session each path goes where the routes send it now.

    Args:
        session: the session the files are re-driven through.
        table: the table's ledger key; default: the session's one table.
        on_result: called as each file settles.
        records: the rows to re-drive; default: `due_for_redrive` of the table's ledger.
        run_id: the run's id on the rows and commits (default: a new one).
    """
    if records is None:
        key = table or table_key(session.config.table_uri)
        records = due_for_redrive(session.ledger_of(key), key, session.config.max_attempts)
    from ingest_core.session import distinct

    report = RedriveReport()
    records = list(records)
    files, gone = session.present_all(r.path for r in records)
    gone_paths = set(gone)
    report.gone = [r for r in records if r.path in gone_paths]
    unread = {
        files[r.path].uri: r
        for r in records if r.path in files and r.sha256 == unread_key(r.path)
    }
    report.stats = session.run(distinct(files.values()), on_result, run_id=run_id)
    _resolve_unread(session, unread, report.stats)
    return report


def _resolve_unread(session: Session, unread: dict[str, FileRecord], stats: RunStats) -> None:
    """Close the unread rows (`BaseLedger.record_unread`) of paths that were read this time.

    Such a row is keyed by its path, not a content: nothing else ever settles
    it, and `due` would hand the path to every maintenance tick again. Once the
    path's bytes were read (whatever became of them: ingested, skipped,
    quarantined), the content's own row carries the file.
    """
    for result in stats.files:
        record = unread.get(result.path)
        if record is not None and result.sha256 is not None:
            session.ledger_of(record.table).resolve_unread(record, result.sha256)


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
