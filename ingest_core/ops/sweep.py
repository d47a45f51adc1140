"""`ingest sweep`: find the files under sources the ledger missed, and re-drive them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import PROCESSING, FileRecord
from ingest_core.ops.common import Progress, no_progress, open_runner
from ingest_core.results import RunStats
from ingest_core.run_ids import new_run_id
from ingest_core.sources import SourceFile, Sources
from ingest_core.sources.identity import path_key, same_version

if TYPE_CHECKING:
    from ingest_core.ledger import BaseLedger


@dataclass
class SweepReport:
    """What a sweep found under the sources and what re-driving those files did."""

    listed: int = 0
    unseen: list[str] = field(default_factory=list)
    """Paths the ledger has no row for (as path or as a sighting): missed events."""
    changed: list[str] = field(default_factory=list)
    """Paths whose row records another size or ETag: overwritten since they were ingested."""
    stalled: list[str] = field(default_factory=list)
    """Paths whose row is `processing` with an expired lease: the worker died."""
    unrouted: list[str] = field(default_factory=list)
    """Paths no route matches (with --routes); not re-driven."""
    stats: RunStats = field(default_factory=RunStats)
    more: bool = False
    """A bounded sweep (`limit`) stopped before the end of the listing."""

    @property
    def ok(self) -> bool:
        """True when every re-driven file was ingested or skipped and none was unrouted."""
        return self.stats.ok and not self.unrouted

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        found = {
            "unseen": self.unseen, "changed": self.changed, "stalled": self.stalled,
            "unrouted": self.unrouted,
        }
        return {
            "listed": self.listed,
            "more": self.more,
            "found": {name: [redact(p) for p in paths] for name, paths in found.items()},
            **self.stats.to_dict(),
        }


def sweep(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress,
    *, skip: int = 0, limit: int | None = None, run_id: str | None = None,
) -> SweepReport:
    """Find files under `sources` the ledger missed, and re-drive them.

    Decided from the listing and one read of the table's ledger rows, without
    hashing: a file is re-driven when no row names its path (as `path` or in
    `seen_paths`), when the row for its path records another size or ETag
    (overwritten), or when that row is `processing` with an expired lease.

    Bounded (the maintenance timer's sweep): only the listed files after the
    first `skip`, and at most `limit` of them, are looked at; `more` tells
    whether the listing went on past them. `run_id` (default: a new one) is on
    the rows and commits of the re-driven files, and in the report.
    """
    runner = open_runner(config)
    report = SweepReport(stats=RunStats(run_id=run_id or new_run_id()))
    try:
        try:
            files = _window(config.storage, sources, skip, limit, report)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
        report.listed = len(files)
        plan = runner.plan(files)
        report.unrouted.extend(f.uri for f in plan.unrouted)
        due: list[SourceFile] = []
        for target, group in plan.groups.items():
            ingestor = runner.ingestor(target)
            due.extend(
                _missed(ingestor.ledger, ingestor.table_key, group, config.storage, report)
            )
        with progress(len(due)) as advance:
            report.stats = runner.run(due, advance, run_id=report.stats.run_id)
    finally:
        runner.close()
    return report


def _window(
    storage: StorageConfig, sources: Sequence[str], skip: int, limit: int | None,
    report: SweepReport,
) -> list[SourceFile]:
    listing = Sources(storage).iterate(list(sources))
    files = list(islice(listing, skip, None if limit is None else skip + limit))
    report.more = limit is not None and next(listing, None) is not None
    return files


SWEEP_ROWS_PER_FILE = 50
"""A sweep reads a table's rows at once while there are at most this many a listed file;
past that, it looks each file up by its path. About what one lookup costs in row reads
(bench/ledger_scale.py), so a sweep never pays more than twice the cheaper way."""


def _missed(
    ledger: BaseLedger,
    table: str,
    files: list[SourceFile],
    storage: StorageConfig,
    report: SweepReport,
) -> list[SourceFile]:
    own: dict[str, list[FileRecord]] = {}
    sighted: set[str] = set()
    budget = SWEEP_ROWS_PER_FILE * len(files)
    rows = ledger.records(table=table, limit=budget + 1)
    if len(rows) > budget:
        # By the listed spelling: a row recorded under another URL form of the file
        # is missed once; its re-drive is a duplicate that records this spelling.
        rows = [row for file in files for row in ledger.by_path(table, file.uri)]
    for row in rows:
        own.setdefault(path_key(row.path, storage), []).append(row)
        sighted.update(path_key(p, storage) for p in row.seen_paths)
    now = ledger.now()
    chosen = []
    for file in files:
        key = path_key(file.uri, storage)
        rows = own.get(key, [])
        if not rows:
            if key not in sighted:
                report.unseen.append(file.uri)
                chosen.append(file)
            continue
        if any(r.status == PROCESSING and not r.lease_live(now) for r in rows):
            report.stalled.append(file.uri)
            chosen.append(file)
        elif not any(same_version(r, file) for r in rows):
            report.changed.append(file.uri)
            chosen.append(file)
    return chosen
