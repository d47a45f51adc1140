"""Routed ingestion: many feeds from one landing zone, each file into the table its route names.

A layer above `IdempotentIngestor`: files are grouped by the configuration
their route resolves to (table and options), and each group is ingested by
one ingestor, so the exactly-once protocol is the same as for one table. The
ledger key stays (table, sha256): the same bytes routed to two tables land
once in each.

A file no route matches is `unrouted`: reported in the run's results, and
recorded in the ledger as a quarantined row under the table key
`unrouted:` with the error `no route matches <path>`, so `ingest status`
shows it. That row lives in the shared ledger (`--ledger` /
INGEST_LEDGER_URI) when there is one, else in a SQLite file beside the
routes file (`<routes file>.ledger.sqlite`).

For other callers (replay, sweep, the Functions app)::

    routes = load_routes(config.routes)        # a path or the TOML text
    with RoutedIngest(routes, config) as routed:
        stats = routed.run(routed.list_sources(["./landing"]))
        result = routed.ingest_one(file)       # one SourceFile, e.g. a blob URL's
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, is_local, local_path
from ingest_core.errors import ConfigurationError, SourceChangedError
from ingest_core.ledger import BaseLedger, open_ledger
from ingest_core.results import IngestResult, RunStats
from ingest_core.routing import UNROUTED_TABLE, Routes, load_routes, routing_path
from ingest_core.sources import Source, SourceFile, source_for

if TYPE_CHECKING:
    from ingest_core.ingestor import IdempotentIngestor


def routes_from_config(config: IngestConfig) -> Routes | None:
    """The routes `config.routes` names (a path or TOML text); None when it names none."""
    return load_routes(config.routes) if config.routes else None


@dataclass
class RoutePlan:
    """Files grouped by the configuration their route resolves to, and the unrouted ones."""

    groups: dict[IngestConfig, list[SourceFile]] = field(default_factory=dict)
    unrouted: list[SourceFile] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values()) + len(self.unrouted)


class RoutedIngest:
    """Ingest files into the tables their routes name, one `IdempotentIngestor` per target.

    Args:
        routes: the parsed routes (`ingest_core.routing.load_routes`).
        config: the run-wide settings; a route's own keys (format, schema_mode,
            lineage, transform, partition_by) win over them, its table replaces
            `table_uri`. `ledger_uri`, when set, is shared by every route;
            otherwise each local table has its SQLite ledger beside it.
    """

    def __init__(self, routes: Routes, config: IngestConfig) -> None:
        self.routes = routes
        self.config = config
        if config.ledger_uri:
            self.unrouted_ledger_uri = config.ledger_uri
        elif routes.origin is not None:
            self.unrouted_ledger_uri = f"sqlite:///{local_path(routes.origin)}.ledger.sqlite"
        else:
            raise ConfigurationError(
                "routes given as text (INGEST_ROUTES) need a shared ledger for the files no "
                "route matches: set INGEST_LEDGER_URI (or pass --ledger), or give a routes file"
            )
        self._sources: dict[bool, Source] = {}
        self._ingestors: dict[IngestConfig, IdempotentIngestor] = {}
        self._unrouted_ledger: BaseLedger | None = None
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- public API ------------------------------------------------------------------

    def list_sources(self, roots: Iterable[str]) -> list[SourceFile]:
        """Every file under the roots, in listing order, each once."""
        files: dict[str, SourceFile] = {}
        for root in roots:
            for file in self._source(root).list(root):
                files.setdefault(file.uri, file)
        return list(files.values())

    def plan(self, files: Iterable[SourceFile]) -> RoutePlan:
        """Route every file; each routed one carries its capture columns (`SourceFile.columns`)."""
        plan = RoutePlan()
        for file in files:
            found = self.routes.route_for(routing_path(file))
            if found is None:
                plan.unrouted.append(file)
                continue
            config = found.config(self.config)
            plan.groups.setdefault(config, []).append(replace(file, columns=found.columns))
        return plan

    def ingestor(self, config: IngestConfig) -> IdempotentIngestor:
        """The ingestor of one route target (opened once, closed by `close`).

        Raises ConfigurationError for an unusable table or ledger, before any file is read.
        """
        if config not in self._ingestors:
            from ingest_core.ingestor import IdempotentIngestor

            self._ingestors[config] = IdempotentIngestor(config=config)
        return self._ingestors[config]

    def ingest(self, files: Iterable[SourceFile]) -> Iterator[IngestResult]:
        """Route and ingest `files`, yielding one result per file as it settles.

        Every target's table and ledger is opened first, so a bad table URI in
        a route stops the run before anything is written.
        """
        yield from self._ingest_plan(self.plan(files))

    def ingest_one(self, file: SourceFile) -> IngestResult:
        """Route and ingest one file (what an event-driven caller needs)."""
        return next(iter(self.ingest([file])))

    def run(
        self,
        files: Iterable[SourceFile],
        on_result: Callable[[IngestResult], None] | None = None,
    ) -> RunStats:
        """Route and ingest `files`, with `config.workers` processes per target when > 1."""
        plan = self.plan(files)
        if self.config.workers <= 1:
            return _collect(self._ingest_plan(plan), on_result)
        for config in plan.groups:
            self.ingestor(config)
        stats = _collect((self.record_unrouted(f) for f in plan.unrouted), on_result)
        from ingest_core.parallel import run_parallel

        for config, group in plan.groups.items():

            def tagged(result: IngestResult, table: str = config.table_uri) -> None:
                result.table = table
                if on_result is not None:
                    on_result(result)

            if len(group) > 1:
                stats.files += run_parallel(config, group, tagged).files
            else:
                stats.files += self.ingestor(config).run(group, tagged).files
        return stats

    def ingest_sources(
        self, roots: Iterable[str], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """List the roots and route and ingest every file under them."""
        return self.run(self.list_sources(roots), on_result)

    def record_unrouted(self, file: SourceFile) -> IngestResult:
        """Report a file no route matches, and record it in the ledger (quarantined).

        The row's key is (`unrouted:`, sha256 of the file). A file that cannot
        be read (deleted since it was listed) has no hash: it is only reported.
        """
        started = time.monotonic()
        path = routing_path(file)
        error = (
            f"{file.uri}: no route matches {path!r}; add a route for it to "
            f"{self.routes.source_name} and run again"
        )
        try:
            copy = self._source(file.uri).fetch(file, Path(tempfile.gettempdir()))
        except (SourceChangedError, OSError) as exc:
            return IngestResult(
                path=file.uri, status="unrouted", error=f"{error} (not recorded: {exc})",
                duration_s=time.monotonic() - started,
            )
        ledger = self._ledger()
        try:
            claim = ledger.claim(
                UNROUTED_TABLE, copy.sha256, path=file.uri, owner=self._owner,
                lease_seconds=self.config.lease_seconds, max_attempts=1, size=copy.size,
                source_etag=copy.etag,
            )
            if claim.outcome == "claimed":
                ledger.fail(claim.record, error, quarantine=True)
        finally:
            copy.discard()
        return IngestResult(
            path=file.uri, status="unrouted", sha256=copy.sha256, size=copy.size, error=error,
            duration_s=time.monotonic() - started,
        )

    def close(self) -> None:
        """Close every ingestor and the ledger of unrouted files."""
        for ingestor in self._ingestors.values():
            ingestor.close()
        self._ingestors.clear()
        if self._unrouted_ledger is not None:
            self._unrouted_ledger.close()
            self._unrouted_ledger = None

    def __enter__(self) -> RoutedIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------

    def _ingest_plan(self, plan: RoutePlan) -> Iterator[IngestResult]:
        for config in plan.groups:
            self.ingestor(config)
        for file in plan.unrouted:
            yield self.record_unrouted(file)
        for config, group in plan.groups.items():
            for result in self.ingestor(config).ingest(group):
                yield replace(result, table=config.table_uri)

    def _source(self, uri: str) -> Source:
        local = is_local(uri)
        if local not in self._sources:
            self._sources[local] = source_for(uri, self.config.storage)
        return self._sources[local]

    def _ledger(self) -> BaseLedger:
        if self._unrouted_ledger is None:
            self._unrouted_ledger = open_ledger(self.unrouted_ledger_uri, self.config.storage)
        return self._unrouted_ledger


def _collect(
    results: Iterable[IngestResult], on_result: Callable[[IngestResult], None] | None
) -> RunStats:
    stats = RunStats()
    for result in results:
        stats.add(result)
        if on_result is not None:
            on_result(result)
    return stats
