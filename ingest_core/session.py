"""One run over many files: each file's plan (its table, or unrouted), ingested and reported.

A `Session` is what every caller that takes files from outside uses: the
command line, the operator commands, maintenance and the Functions app. It
owns the listing, the owner token, one `IdempotentIngestor` per table
configuration, the worker processes, the record of files no route matches,
and the tagging of results with their table in a routed run. The exactly-once
protocol itself is the ingestor's, so it is the same with or without routes::

    with Session(config) as session:                    # one table: config.table_uri
        stats = session.ingest_sources(["./landing"])
    with Session(config, routes=load_routes("routes.toml")) as session:
        stats = session.ingest_sources(["./landing"])  # stats.files[i].table

Routing: a routed session sends each file to the table of the first route
matching its routing path (`routing.routing_path`), with that route's options.
A file no route matches is `unrouted`: reported, and recorded in the ledger as
a quarantined row under the table key `unrouted:` with the error
`no route matches <path>`, so `ingest status` shows it. That row lives in the
shared ledger (`--ledger` / INGEST_LEDGER_URI) when there is one, else in a
SQLite file beside the routes file (`<routes file>.ledger.sqlite`). The ledger
key stays (table, sha256): the same bytes routed to two tables land once in each.

Run ids: `run`, `ingest`, `ingest_one` and `ingest_sources` take `run_id`, the
id every ledger row and Delta commit of the call carries (default: a new one).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, local_path
from ingest_core.errors import ConfigurationError
from ingest_core.ingestor import IdempotentIngestor, owner_token
from ingest_core.ledger import BaseLedger, open_ledger
from ingest_core.pipeline.fetch import Fetcher
from ingest_core.pipeline.settle import result_of
from ingest_core.results import IngestResult, RunStats
from ingest_core.run_ids import new_run_id
from ingest_core.sources import LocalCopy, SourceFile, Sources

if TYPE_CHECKING:
    from ingest_core.routing import Routes

OnResult = Callable[[IngestResult], None]


@dataclass
class RoutePlan:
    """Files grouped by the table configuration they go to, and the unrouted ones."""

    groups: dict[IngestConfig, list[SourceFile]] = field(default_factory=dict)
    unrouted: list[SourceFile] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values()) + len(self.unrouted)


class Session:
    """Ingest files into one table (`config.table_uri`) or the tables `routes` name.

    Args:
        config: the run-wide settings. With routes, a route's own keys (format,
            schema_mode, lineage, transform, partition_by) win over them and its
            table replaces `table_uri`; `ledger_uri`, when set, is shared by
            every table, otherwise each local table has its SQLite ledger beside it.
        routes: the parsed routes (`routing.load_routes`); None: one table.
    """

    def __init__(self, config: IngestConfig, routes: Routes | None = None) -> None:
        if routes is None and not config.table_uri:
            raise ConfigurationError(
                "no table: pass --table URI or --routes FILE "
                "(or set INGEST_TABLE_URI or INGEST_ROUTES)"
            )
        self.config = config
        self.routes = routes
        self.owner = owner_token()
        self._sources = Sources(config.storage)
        self._ingestors: dict[IngestConfig, IdempotentIngestor] = {}
        self._unrouted_ledger: BaseLedger | None = None
        self._opening = threading.RLock()
        if routes is not None:
            self.unrouted_ledger_uri = _unrouted_ledger_uri(routes, config)
        else:
            self.ingestor(config)  # an unusable table or ledger stops the run before listing

    @classmethod
    def of(cls, config: IngestConfig) -> Session:
        """The session `config` asks for: its routes (`config.routes`) unless it names a table."""
        if config.routes and not config.table_uri:
            from ingest_core.routing import load_routes

            return cls(config, load_routes(config.routes))
        return cls(config)

    @property
    def routed(self) -> bool:
        """True when files go where routes send them."""
        return self.routes is not None

    # -- files -------------------------------------------------------------------------

    def list_sources(self, roots: Iterable[str]) -> list[SourceFile]:
        """Every file under the roots, in listing order, each once."""
        return self._sources.list(roots)

    def present(self, uri: str) -> SourceFile | None:
        """The single file at `uri` as its source lists it; None when none is there (deleted)."""
        from azure.core.exceptions import ResourceNotFoundError

        from ingest_core.sources.identity import path_key

        wanted = path_key(uri, self.config.storage)
        try:
            files = [
                f for f in self.list_sources([uri])
                if path_key(f.uri, self.config.storage) == wanted
            ]
        except (FileNotFoundError, ResourceNotFoundError):
            return None
        return files[0] if len(files) == 1 else None

    def present_all(self, uris: Iterable[str]) -> tuple[dict[str, SourceFile], list[str]]:
        """The file at each of `uris` (by the URI as given) and the URIs where none is any more.

        Two URIs may name one file (two spellings of a blob): `distinct` lists it once.
        """
        files: dict[str, SourceFile] = {}
        gone: list[str] = []
        for uri in dict.fromkeys(uris):
            file = self.present(uri)
            if file is None:
                gone.append(uri)
            else:
                files[uri] = file
        return files, gone

    def plan(self, files: Iterable[SourceFile]) -> RoutePlan:
        """Each file's table configuration; routed files carry their capture columns."""
        plan = RoutePlan()
        if self.routes is None:
            plan.groups[self.config] = list(files)
            return plan
        from ingest_core.routing import routing_path

        for file in files:
            found = self.routes.route_for(routing_path(file))
            if found is None:
                plan.unrouted.append(file)
                continue
            config = found.config(self.config)
            plan.groups.setdefault(config, []).append(
                dataclasses.replace(file, columns=found.columns)
            )
        return plan

    # -- ingesting ---------------------------------------------------------------------

    def ingestor(self, config: IngestConfig) -> IdempotentIngestor:
        """The ingestor of one table configuration (opened once, closed by `close`).

        Raises ConfigurationError for an unusable table or ledger, before any file is read.
        """
        with self._opening:
            if config not in self._ingestors:
                self._ingestors[config] = IdempotentIngestor(config=config, owner=self.owner)
            return self._ingestors[config]

    def ingest(
        self, files: Iterable[SourceFile], *, run_id: str | None = None
    ) -> Iterator[IngestResult]:
        """Ingest `files` in this process, yielding one result per file as it settles.

        Every target's table and ledger is opened first, so a bad table URI in
        a route stops the run before anything is written.
        """
        run_id = run_id or new_run_id()
        plan = self.plan(files)
        for config in plan.groups:
            self.ingestor(config)
        for file in plan.unrouted:
            yield self.record_unrouted(file, run_id)
        for config, group in plan.groups.items():
            for result in self.ingestor(config).ingest(group, run_id=run_id):
                yield self._tagged(result, config)

    def ingest_one(self, file: SourceFile, *, run_id: str | None = None) -> IngestResult:
        """Ingest one file, sharing Delta commits with concurrent calls (`ingest_one` of
        `IdempotentIngestor`); safe to call from many threads at once."""
        run_id = run_id or new_run_id()
        plan = self.plan([file])
        if plan.unrouted:
            return self.record_unrouted(file, run_id)
        [(config, [routed])] = plan.groups.items()
        return self._tagged(self.ingestor(config).ingest_one(routed, run_id=run_id), config)

    def run(
        self, files: Iterable[SourceFile], on_result: OnResult | None = None,
        *, run_id: str | None = None,
    ) -> RunStats:
        """Ingest `files`, with `config.workers` processes per table when > 1."""
        run_id = run_id or new_run_id()
        if self.config.workers <= 1:
            return RunStats.collect(self.ingest(files, run_id=run_id), on_result, run_id)
        plan = self.plan(files)
        for config in plan.groups:
            self.ingestor(config)
        stats = RunStats.collect(
            (self.record_unrouted(f, run_id) for f in plan.unrouted), on_result, run_id
        )
        from ingest_core.parallel import run_parallel

        for config, group in plan.groups.items():

            def tagged(result: IngestResult, config: IngestConfig = config) -> None:
                result = self._tagged(result, config)
                stats.add(result)
                if on_result is not None:
                    on_result(result)

            if len(group) > 1 and config.mode != "merge":  # merges keep arrival order
                run_parallel(config, group, tagged, run_id)
            else:
                self.ingestor(config).run(group, tagged, run_id=run_id)
        return stats

    def ingest_sources(
        self, roots: Iterable[str], on_result: OnResult | None = None,
        *, run_id: str | None = None,
    ) -> RunStats:
        """List the roots and ingest every file under them."""
        return self.run(self.list_sources(roots), on_result, run_id=run_id)

    def record_unrouted(self, file: SourceFile, run_id: str | None = None) -> IngestResult:
        """Report a file no route matches, and record it in the ledger (quarantined).

        The row's key is (`unrouted:`, sha256 of the file). A file that cannot
        be read (deleted since it was listed) has no hash: it is only reported.
        """
        from ingest_core.routing import UNROUTED_TABLE, routing_path

        assert self.routes is not None
        error = (
            f"{file.uri}: no route matches {routing_path(file)!r}; add a route for it to "
            f"{self.routes.source_name} and run again"
        )
        fetched = Fetcher(self._sources, self.config.stream_bytes).fetch(file)
        copy = fetched.copy
        if not isinstance(copy, LocalCopy):
            return result_of(file, "unrouted", fetched.started,
                             error=f"{error} (not recorded: {copy})", run_id=run_id)
        ledger = self.unrouted_ledger()
        try:
            claim = ledger.claim(
                UNROUTED_TABLE, copy.sha256, path=file.uri, owner=self.owner,
                lease_seconds=self.config.lease_seconds, max_attempts=1, size=copy.size,
                source_etag=copy.recorded_etag, run_id=run_id,
            )
            if claim.outcome == "claimed":
                ledger.fail(claim.record, error, quarantine=True, run_id=run_id)
        finally:
            copy.discard()
        return result_of(file, "unrouted", fetched.started, sha256=copy.sha256, size=copy.size,
                         error=error, run_id=run_id)

    def ledger_of(self, table_key: str) -> BaseLedger:
        """The ledger holding `table_key`'s rows: the table's own, or a routed run's shared one."""
        if self.routes is None:
            return self.ingestor(self.config).ledger
        return self.unrouted_ledger()

    def unrouted_ledger(self) -> BaseLedger:
        """The ledger holding the rows of unrouted files (a routed session's shared ledger)."""
        with self._opening:
            if self._unrouted_ledger is None:
                self._unrouted_ledger = open_ledger(self.unrouted_ledger_uri, self.config.storage)
            return self._unrouted_ledger

    def give_back_claims(self, reason: str) -> int:
        """Give back the claims every ingestor of this session holds (an interrupted run).

        Each goes back to `failed` with its attempt count as before the claim,
        so the next run takes it at once; returns how many were given back.
        """
        return sum(ing.give_back_claims(reason) for ing in list(self._ingestors.values()))

    def close(self) -> None:
        """Close every ingestor and the ledger of unrouted files."""
        for ingestor in self._ingestors.values():
            ingestor.close()
        self._ingestors.clear()
        if self._unrouted_ledger is not None:
            self._unrouted_ledger.close()
            self._unrouted_ledger = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tagged(self, result: IngestResult, config: IngestConfig) -> IngestResult:
        """`result` naming its table, in a routed run (results of one table name none)."""
        if self.routes is None:
            return result
        return dataclasses.replace(result, table=config.table_uri)


def distinct(files: Iterable[SourceFile]) -> list[SourceFile]:
    """`files` with each URI once, in order."""
    return list({f.uri: f for f in files}.values())


def _unrouted_ledger_uri(routes: Routes, config: IngestConfig) -> str:
    if config.ledger_uri:
        return config.ledger_uri
    if routes.origin is not None:
        return f"sqlite:///{local_path(routes.origin)}.ledger.sqlite"
    raise ConfigurationError(
        "routes given as text (INGEST_ROUTES) need a shared ledger for the files no "
        "route matches: set INGEST_LEDGER_URI (or pass --ledger), or give a routes file"
    )

