"""`ingest reconcile`: the files the ledger calls ingested whose rows the table lost.

A table restored to an older version (`DeltaTable.restore`), a version's rows
deleted or overwritten, a table folder deleted or replaced by a new table:
the ledger still says `succeeded`, and the transaction ids survive a restore,
so every such file would be skipped for good. This compares the table's
`succeeded` rows with what the table holds now, in one scan of its lineage
column (`_ingest_sha256`), and with `apply` reopens the missing ones
(`BaseLedger.reopen`: `failed`, fresh attempts, the next generation, so the
re-ingest is not blocked by the old transaction id), records the table's
current id, and re-drives them at once by their recorded path (a file no
longer there stays reopened for the next run, retry or maintenance tick).

Without a lineage column the table cannot say which files' rows it holds:
a table gone, or replaced by one without our transaction ids, is still told;
anything else is reported as not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import SUCCEEDED, FileRecord, open_ledger
from ingest_core.ops.common import Progress, no_progress
from ingest_core.results import RunStats

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from ingest_core.ledger import BaseLedger

STATES = ("ok", "missing", "gone", "replaced", "unchecked", "empty")


@dataclass
class TableCheck:
    """One table's comparison of its ledger rows with its rows now."""

    table: str
    state: str = "ok"
    """ok, missing (rows lost), gone (no table), replaced (another table id), unchecked, empty
    (the ledger holds no committed row of it)."""
    reason: str = ""
    checked: bool = True
    """False when the table has no lineage column and nothing else could tell."""
    succeeded: int = 0
    """The ledger's `succeeded` rows of the table."""
    missing: list[FileRecord] = field(default_factory=list)
    partial: list[tuple[FileRecord, int]] = field(default_factory=list)
    """Files some of whose rows are left (row, rows left): not reopened, a re-ingest would
    duplicate the rest; listed for the operator to decide."""
    reopened: list[FileRecord] = field(default_factory=list)
    table_id: str | None = None
    """The table's Delta id now (None: no table)."""
    recorded_id: str | None = None
    """The id the ledger recorded before this command."""

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one table."""
        return {
            "table": redact(self.table), "state": self.state, "reason": self.reason,
            "checked": self.checked, "succeeded": self.succeeded, "missing": len(self.missing),
            "reopened": len(self.reopened), "partial": len(self.partial),
            "table_id": self.table_id,
            "recorded_id": self.recorded_id,
        }


@dataclass
class ReconcileReport:
    """What `reconcile` found (and, with `apply`, reopened and re-drove)."""

    applied: bool = False
    tables: list[TableCheck] = field(default_factory=list)
    gone: list[FileRecord] = field(default_factory=list)
    """Reopened rows whose recorded path holds no file: land the content again."""
    stats: RunStats = field(default_factory=RunStats)
    """The re-drive of the reopened files (with `apply`)."""

    @property
    def missing(self) -> list[FileRecord]:
        """Every missing file, table by table."""
        return [r for t in self.tables for r in t.missing]

    @property
    def unchecked(self) -> list[TableCheck]:
        """Tables that could not be checked (no lineage column)."""
        return [t for t in self.tables if not t.checked]

    @property
    def ok(self) -> bool:
        """Exit 0: nothing missing, or `apply` reopened every missing file (and all checked)."""
        if self.unchecked:
            return False
        if self.applied:
            return all(len(t.reopened) == len(t.missing) for t in self.tables)
        return not self.missing

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: `missing` (count), `files` (`path`, `sha256`, `delta_version`)."""
        reopened = {(r.table, r.sha256) for t in self.tables for r in t.reopened}
        return {
            "missing": len(self.missing),
            "files": [
                {
                    "path": redact(r.path), "sha256": r.sha256,
                    "delta_version": r.delta_version, "rows": r.rows, "table": redact(r.table),
                    "reopened": (r.table, r.sha256) in reopened,
                }
                for r in self.missing
            ],
            "applied": self.applied,
            "reopened": len(reopened),
            "unchecked": [t.table for t in self.unchecked],
            "tables": [t.to_dict() for t in self.tables],
            "gone": [{"path": redact(r.path), "sha256": r.sha256} for r in self.gone],
            "partial": [
                {"path": redact(r.path), "sha256": r.sha256, "delta_version": r.delta_version,
                 "rows": r.rows, "rows_left": left, "table": redact(r.table)}
                for t in self.tables for r, left in t.partial
            ],
            "stats": self.stats.to_dict(),
        }


def reconcile(
    config: IngestConfig, *, apply: bool = False, progress: Progress = no_progress
) -> ReconcileReport:
    """Compare each table's `succeeded` ledger rows with the rows the table holds now.

    With `apply`, reopen the missing files, record the table's current id (or
    forget it when the table is gone), then re-drive them by their recorded path.

    Raises:
        ConfigurationError: no table or routes, or a ledger that cannot be opened.
    """
    report = ReconcileReport(applied=apply)
    for key, uri, ledger_uri in _targets(config):
        ledger = open_ledger(ledger_uri, config.storage, read_only=not apply)
        try:
            check = _check(ledger, key, uri, config)
            if apply:
                _reopen(ledger, check)
        finally:
            ledger.close()
        report.tables.append(check)
    if apply and any(t.reopened for t in report.tables):
        _redrive(config, report, progress)
    return report


def _targets(config: IngestConfig) -> list[tuple[str, str, str]]:
    """(table key, table URI, ledger URI) of every table to check."""
    if config.table_uri:
        return [(table_key(config.table_uri), config.table_uri, config.resolved_ledger_uri())]
    if not config.routes:
        raise ConfigurationError(
            "no table: pass --table URI or --routes FILE (or set INGEST_TABLE_URI or INGEST_ROUTES)"
        )
    from ingest_core.maintenance import routed_tables
    from ingest_core.routing import load_routes, template_names

    routes = load_routes(config.routes)
    if config.ledger_uri:
        shared = open_ledger(config.ledger_uri, config.storage)
        try:
            keys = routed_tables(routes, shared)
        finally:
            shared.close()
        return [(k, k, config.ledger_uri) for k in keys]
    uris = sorted({r.table for r in routes.routes if not template_names(r.table)})
    return [(table_key(u), u, config.replace(table_uri=u).resolved_ledger_uri()) for u in uris]


def _check(ledger: BaseLedger, key: str, uri: str, config: IngestConfig) -> TableCheck:
    from ingest_core.delta import TableRef
    from ingest_core.delta.target import table_id

    check = TableCheck(table=key)
    rows = ledger.records(table=key, status=SUCCEEDED)
    check.succeeded = len(rows)
    committed = [r for r in rows if r.rows is None or r.rows > 0]
    check.recorded_id = ledger.table_identity(key)
    snapshot = TableRef.of(uri, config.storage).load()
    if snapshot is None:
        check.missing = committed
        check.state = "gone" if committed else "empty"
        check.reason = (f"no table at {uri}" if committed
                        else f"no table at {uri}, and the ledger records no rows written to it")
        return check
    check.table_id = table_id(snapshot)
    replaced = check.recorded_id is not None and check.recorded_id != check.table_id
    present = _lineage_contents(snapshot)
    if present is None:
        if not replaced:
            check.checked = False
            check.state = "unchecked"
            check.reason = (
                f"table {uri} has no lineage column (_ingest_sha256; it was written with "
                "--no-lineage): rows lost to a restore, a delete or an overwrite cannot be told, "
                "and the transaction ids survive those"
            )
            return check
        # a new table without lineage: what it holds is what its transaction ids say
        from ingest_core.delta import DeltaTarget

        check.missing = [
            r for r in committed if not DeltaTarget.has_landed(snapshot, r.sha256, r.generation)
        ]
    else:
        check.missing = [r for r in committed if r.sha256 not in present]
        check.partial = [
            (r, present[r.sha256]) for r in committed
            if r.sha256 in present and r.rows is not None and present[r.sha256] < r.rows
        ]
    if replaced:
        check.state = "replaced"
        check.reason = (f"table {uri} is another table (id {check.table_id}) than the ledger "
                        f"recorded ({check.recorded_id})")
    elif check.missing:
        check.state = "missing"
        check.reason = (f"table {uri} no longer holds the rows of {len(check.missing)} file(s) "
                        "the ledger records as ingested (restored, deleted or overwritten)")
    return check


def _lineage_contents(snapshot: DeltaTable) -> dict[str, int] | None:
    """Rows per content the table holds, in one scan of its lineage column (None: no column)."""
    from collections import Counter

    import pyarrow.compute as pc

    from ingest_core.delta.lineage import SHA_COLUMN

    if SHA_COLUMN not in snapshot.schema().to_arrow().names:
        return None
    found: Counter[str] = Counter()
    for batch in snapshot.to_pyarrow_dataset().to_batches(columns=[SHA_COLUMN]):
        counts = pc.value_counts(batch.column(0))
        for value, count in zip(counts.field("values").to_pylist(),
                                counts.field("counts").to_pylist(), strict=True):
            if value is not None:
                found[value] += count
    return dict(found)


def _reopen(ledger: BaseLedger, check: TableCheck) -> None:
    """Reopen the missing rows, then record the table's id now (forget it when gone)."""
    for row in check.missing:
        reopened = ledger.reopen(
            row.table, row.sha256,
            f"{check.reason}; reopened by `ingest reconcile --apply` (was version "
            f"{row.delta_version})",
        )
        if reopened is not None and reopened.generation > row.generation:
            check.reopened.append(reopened)
    if len(check.reopened) == len(check.missing) and check.checked:
        ledger.record_table_identity(check.table, check.table_id)


def _redrive(config: IngestConfig, report: ReconcileReport, progress: Progress) -> None:
    """Ingest the reopened files again now, by their recorded path."""
    from ingest_core.maintenance import redrive
    from ingest_core.ops.common import open_runner

    with open_runner(config) as session:
        for check in report.tables:
            if not check.reopened:
                continue
            with progress(len(check.reopened)) as advance:
                done = redrive(session, check.table, advance, check.reopened)
            for result in done.stats.files:
                report.stats.add(result)
            report.gone.extend(done.gone)
