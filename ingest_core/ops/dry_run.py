"""`ingest run --dry-run`: what a run would ingest or skip, from hashes and ledger lookups only.

Nothing is claimed or written: ledgers are opened read-only (a missing one
means every file is new) and no Delta table is touched. With routes, each
file is looked up in the ledger of the table its route sends it to.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError, LedgerNotFoundError
from ingest_core.events import redact
from ingest_core.ledger import (
    FAILED,
    PROCESSING,
    QUARANTINED,
    SUCCEEDED,
    BaseLedger,
    FileRecord,
    open_ledger,
)
from ingest_core.ops.common import Progress, no_progress
from ingest_core.sources import SourceFile, Sources

WOULD_INGEST, WOULD_SKIP, IN_PROGRESS, WOULD_NOT = "ingest", "skip", "in_progress", "quarantined"
UNROUTED = "unrouted"
ACTIONS = (WOULD_INGEST, WOULD_SKIP, IN_PROGRESS, WOULD_NOT, UNROUTED)


@dataclass
class PlannedFile:
    """One listed file and what a run would do with it."""

    path: str
    sha256: str | None
    """None for a file no route matches (not hashed: no table to look it up in)."""
    size: int | None
    action: str
    """`ingest`, `skip` (its content is in the table), `in_progress` (a live lease elsewhere),
    `quarantined` (set aside until released) or `unrouted` (no route matches it)."""
    ledger_status: str | None
    table: str | None = None
    """The table it would go to (None: unrouted)."""
    reason: str = ""
    """Why: what the ledger row (or the routes) says."""

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one file."""
        return {"path": redact(self.path), "sha256": self.sha256, "size": self.size,
                "action": self.action, "ledger_status": self.ledger_status,
                "table": redact(self.table) if self.table else None,
                "reason": redact(self.reason)}


@dataclass
class DryRunReport:
    """Every listed file with the action a run would take."""

    table: str | None
    """The one table of a `--table` run; None with routes (each file names its own)."""
    files: list[PlannedFile] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many files a run would treat this way."""
        return sum(f.action == action for f in self.files)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: `dry_run`, `table`, counts by action and `files`."""
        return {
            "dry_run": True,
            "table": self.table,
            **{name: self.count(name) for name in ACTIONS},
            "files": [f.to_dict() for f in self.files],
        }


def dry_run(config: IngestConfig, roots: list[str], progress: Progress = no_progress
            ) -> DryRunReport:
    """List and hash every file under `roots` and look each up in its table's ledger.

    With routes (`config.routes` and no table), each file is looked up in the
    ledger of the table its route sends it to; a file no route matches is
    `unrouted`. Nothing is claimed or written: ledgers are opened read-only
    (a missing one means every file is new), tables are not touched.

    Raises:
        ConfigurationError: neither a table nor routes, or a root is missing.
    """
    if not config.table_uri and not config.routes:
        raise ConfigurationError("--dry-run needs --table URI or --routes FILE")
    sources = Sources(config.storage)
    try:
        files = sources.list(roots)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from None
    targets, unrouted = _plan(config, files)
    report = DryRunReport(table_key(config.table_uri) if config.table_uri else None)
    ledgers = _Ledgers(config)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-dry-run-") as spool, \
                progress(len(files)) as advance:
            for file in files:
                if file.uri in unrouted:
                    planned = PlannedFile(file.uri, None, file.size, UNROUTED, None,
                                          reason=unrouted[file.uri])
                else:
                    target = targets[file.uri]
                    copy = sources.of(file.uri).fetch(file, Path(spool))
                    copy.discard()
                    ledger = ledgers.of(target)
                    row = ledger.get(table_key(target.table_uri), copy.sha256) if ledger else None
                    action, reason = _action(row, ledger)
                    planned = PlannedFile(file.uri, copy.sha256, copy.size, action,
                                          row.status if row else None,
                                          table_key(target.table_uri), reason)
                report.files.append(planned)
                advance(planned)
    finally:
        ledgers.close()
    return report


def _plan(
    config: IngestConfig, files: list[SourceFile]
) -> tuple[dict[str, IngestConfig], dict[str, str]]:
    """Each file's table configuration by URI, and the unrouted files' reasons."""
    if config.table_uri:
        return {f.uri: config for f in files}, {}
    from ingest_core.routing import load_routes, routing_path
    from ingest_core.session import Session

    assert config.routes is not None
    routes = load_routes(config.routes)
    plan = Session(config, routes).plan(files)  # a routed session opens nothing to plan
    targets = {f.uri: target for target, group in plan.groups.items() for f in group}
    unrouted = {
        f.uri: f"no route in {routes.source_name} matches {routing_path(f)!r}"
        for f in plan.unrouted
    }
    return targets, unrouted


class _Ledgers:
    """Ledgers opened read-only, once each; None for one not created yet."""

    def __init__(self, config: IngestConfig) -> None:
        self._config = config
        self._open: dict[str, BaseLedger | None] = {}

    def of(self, target: IngestConfig) -> BaseLedger | None:
        uri = target.resolved_ledger_uri()
        if uri not in self._open:
            try:
                self._open[uri] = open_ledger(uri, self._config.storage, read_only=True)
            except LedgerNotFoundError:
                self._open[uri] = None
        return self._open[uri]

    def close(self) -> None:
        for ledger in self._open.values():
            if ledger is not None:
                ledger.close()


def _action(row: FileRecord | None, ledger: BaseLedger | None) -> tuple[str, str]:
    if row is None or ledger is None:
        return WOULD_INGEST, "new content: the ledger has no row for it"
    if row.status == FAILED:
        return WOULD_INGEST, f"failed before (attempt {row.attempt}): {row.error or ''}".rstrip(
            ": ")
    if row.status == SUCCEEDED:
        where = f"version {row.delta_version}" if row.delta_version is not None else "the table"
        return WOULD_SKIP, f"already in {where} (from {row.path})"
    if row.status == QUARANTINED:
        return WOULD_NOT, f"quarantined: {row.error or 'no reason recorded'}"
    if row.status == PROCESSING and row.lease_live(ledger.now()):
        return IN_PROGRESS, f"held by {row.owner} until {row.lease_until}"
    return WOULD_INGEST, f"stalled: {row.owner}'s lease ran out; taken over"
