"""IdempotentIngestor: one table's files through fetch -> claim -> read -> guarded commit -> settle.

Small files are read whole and several go into one Delta commit (one
transaction id per file); large files are streamed into a commit of their own.
Each stage lives in `ingest_core.pipeline`, the Delta writes in
`ingest_core.delta`; this module runs them: the batch loop, and the guard that
drops files whose content is in the table already before any commit.
pyarrow and deltalake are imported only once a file has to be written, so a
run that only skips stays cheap.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, is_local, local_path, table_key
from ingest_core.delta.folder import check_table_uri
from ingest_core.errors import ConfigurationError, IngestError
from ingest_core.ledger import BaseLedger, open_ledger
from ingest_core.pipeline.claim import Claimer, Work
from ingest_core.pipeline.fetch import Fetcher
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.read import Reader
from ingest_core.pipeline.settle import Settler
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile, Sources

if TYPE_CHECKING:
    from ingest_core.delta import DeltaTarget, TableRef

COMMIT_ATTEMPTS = 3
"""Commits retried after a concurrent-commit conflict before the batch is split."""


def owner_token() -> str:
    """A token naming this worker (host, process, random): the owner of its claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class IdempotentIngestor:
    """Ingest files into one Delta table, each distinct content exactly once.

    Example::

        ing = IdempotentIngestor(table="./lake/orders", ledger="sqlite:///./lake.ledger.sqlite")
        result = ing.ingest_file("landing/orders_2024.parquet")  # result.status
        stats = ing.ingest_directory("landing/")                   # stats.counts

    Args:
        table: the Delta table URI (local path or abfss://...).
        ledger: a ledger URI or an open ledger; default: SQLite beside a local table.
        config: a full `IngestConfig` (from `ingest_core.config.from_env`); `table`
            and keyword options override its fields.
        owner: the owner token of this worker's claims (default: a new one).
        **options: any other `IngestConfig` field (format, schema_mode, lineage, ...).
    """

    def __init__(
        self,
        table: str | None = None,
        ledger: str | BaseLedger | None = None,
        *,
        config: IngestConfig | None = None,
        owner: str | None = None,
        **options: Any,
    ) -> None:
        ledger_uri = ledger if isinstance(ledger, str) else None
        if config is None:
            if table is None:
                raise ConfigurationError("IdempotentIngestor needs a table URI")
            config = IngestConfig(table_uri=table, ledger_uri=ledger_uri, **options)
        else:
            config = config.replace(table_uri=table, ledger_uri=ledger_uri, **options)
        self.config = config
        check_table_uri(config.table_uri)
        self.table_key = table_key(config.table_uri)
        self.ledger = (
            ledger
            if isinstance(ledger, BaseLedger)
            else open_ledger(config.resolved_ledger_uri(), config.storage)
        )
        self.owner = owner or owner_token()
        self._sources = Sources(config.storage)
        self._keeper = LeaseKeeper(self.ledger, config.lease_seconds)
        self._settler = Settler(
            self.ledger, self.table_key, self.owner, self._keeper, config.max_attempts
        )
        self._fetcher = Fetcher(self._sources, config.stream_bytes)
        self._claimer = Claimer(
            self.ledger, self.table_key, self.owner, config, self._keeper, self._settler
        )
        self._reader = Reader(config, self._sources)
        self._delta: DeltaTarget | None = None

    # -- public API -----------------------------------------------------------

    @property
    def table(self) -> str:
        """The table's ledger key: `table_key` under the name wave-1 callers use."""
        return self.table_key

    def ingest_file(self, path: str) -> IngestResult:
        """Ingest one file; returns its result (status ingested, skipped, ...)."""
        files = self.list_sources([path])
        if len(files) != 1 or (is_local(path) and local_path(path).is_dir()):
            raise ConfigurationError(f"{path} is not a single file; use ingest_directory")
        return next(iter(self.ingest(files)))

    def ingest_directory(self, path: str) -> RunStats:
        """Ingest every file under a folder or prefix (recursive)."""
        return self.ingest_sources([path])

    def ingest_sources(
        self, roots: Iterable[str], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest every file under each root (file, folder or prefix)."""
        return self.run(self.list_sources(roots), on_result)

    def list_sources(self, roots: Iterable[str]) -> list[SourceFile]:
        """Every file under the roots, in listing order, each once."""
        return self._sources.list(roots)

    def run(
        self, files: Iterable[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest `files`, calling `on_result` as each one settles."""
        return RunStats.collect(self.ingest(files), on_result)

    def ingest(self, files: Iterable[SourceFile]) -> Iterator[IngestResult]:
        """Ingest `files`, yielding one result per file as it settles.

        Small files gather in a batch, committed together once it holds
        `batch_files` files or `batch_bytes` of rows, or its first file has
        waited `batch_seconds`; a large file is streamed into a commit of its own.
        """
        batch: list[Work] = []
        batch_bytes = 0
        claimed_here: dict[str, str] = {}
        for fetched in self._fetcher.ahead(files):
            work = self._claimer.claim(fetched, claimed_here)
            if isinstance(work, IngestResult):
                yield work
                continue
            if work.copy.size > self.config.stream_bytes:
                yield from self._commit_batch(batch)
                batch, batch_bytes = [], 0
                yield from self._commit_stream(work)
                continue
            try:
                self._reader.read_whole(work)
            except IngestError as exc:
                yield self._settler.error(work, exc)
                continue
            batch.append(work)
            batch_bytes += work.data.nbytes if work.data is not None else 0
            if (
                len(batch) >= self.config.batch_files
                or batch_bytes >= self.config.batch_bytes
                or time.monotonic() - batch[0].started >= self.config.batch_seconds
            ):
                yield from self._commit_batch(batch)
                batch, batch_bytes = [], 0
        yield from self._commit_batch(batch)

    def close(self) -> None:
        """Stop lease renewal and close the ledger."""
        self._keeper.close()
        self.ledger.close()

    def __enter__(self) -> IdempotentIngestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commits ----------------------------------------------------------------------

    @property
    def table_ref(self) -> TableRef:
        """Where the table is and how to reach it."""
        return self.target.ref

    @property
    def target(self) -> DeltaTarget:
        """The Delta table, its snapshot reused across commits (deltalake imported here)."""
        if self._delta is None:
            from ingest_core.delta import DeltaTarget, TableRef

            ref = TableRef.of(self.config.table_uri, self.config.storage)
            self._delta = DeltaTarget(ref, self.config.partition_by)
        return self._delta

    def _commit_batch(self, batch: list[Work]) -> Iterator[IngestResult]:
        """Commit buffered files together; split the batch if the commit keeps failing."""
        if not batch:
            return
        last_error: Exception | None = None
        for _ in range(COMMIT_ATTEMPTS):
            batch, results = self._guard(batch)
            yield from results
            if not batch:
                return
            try:
                yield from self._write_batch(batch)
                return
            except Exception as exc:
                last_error = exc
                if not self._retry_commit(exc):
                    break
        batch, results = self._guard(batch)
        yield from results
        if len(batch) > 1:
            for work in batch:
                yield from self._commit_batch([work])
            return
        for work in batch:
            yield self._failed(work, last_error or RuntimeError("commit failed"))

    def _commit_stream(self, work: Work) -> Iterator[IngestResult]:
        """Stream one large file into its own commit."""
        last_error: Exception | None = None
        for _ in range(COMMIT_ATTEMPTS):
            remaining, results = self._guard([work])
            if not remaining:
                yield from results
                return
            try:
                yield self._write_stream(work)
                return
            except IngestError as exc:
                last_error = exc
                break
            except Exception as exc:
                last_error = exc
                if not self._retry_commit(exc):
                    break
        remaining, results = self._guard([work])
        yield from results
        if remaining:
            yield self._failed(work, last_error or RuntimeError("commit failed"))

    def _guard(self, works: list[Work]) -> tuple[list[Work], list[IngestResult]]:
        """Renew leases and settle files whose content is in the table already.

        Returns the files still to write (checked on the snapshot they must be
        written from) and the results of the others.
        """
        results = []
        lost = self._keeper.renew_now([w.sha256 for w in works])
        target = self.target
        try:
            snapshot = target.snapshot()
        except ConfigurationError as exc:  # no such table: give the claims back, then stop
            for work in works:
                if work.sha256 not in lost:
                    self._settler.give_back(work, str(exc))
            raise
        remaining = []
        for work in works:
            if work.sha256 in lost:
                results.append(self._settler.lost(work))
            elif target.has_landed(snapshot, work.sha256):
                assert snapshot is not None
                landing = target.locate(snapshot, work.sha256)
                results.append(self._settler.ingested(work, landing.version, landing.rows))
            else:
                remaining.append(work)
        return remaining, results

    def _write_batch(self, batch: list[Work]) -> Iterator[IngestResult]:
        """Conform the batch's files and append them in one commit.

        A file the table refuses is settled and taken out of `batch`, so a retry
        of the commit writes only the others.
        """
        from ingest_core.delta import DeltaTarget, FileEntry
        from ingest_core.delta.writers import BatchAppend

        snapshot = self.target.current()  # the snapshot _guard checked the ids on
        stored = DeltaTarget.schema(snapshot)
        conformed = self._reader.conform(batch, stored)
        for work, exc in conformed.refused:
            batch.remove(work)
            yield self._settler.error(work, exc)
        if not conformed.ready:
            return
        assert conformed.schema is not None
        writer = BatchAppend(
            conformed.schema, merge_schema=stored is None or len(conformed.schema) > len(stored)
        )
        entries = [(FileEntry(w.sha256, w.file.uri, t.num_rows), t) for w, t in conformed.ready]
        version = writer.write(self.target, snapshot, entries)
        for work, table in conformed.ready:
            yield self._settler.ingested(work, version, table.num_rows)

    def _write_stream(self, work: Work) -> IngestResult:
        """Commit one large file: copied as it is where nothing rewrites it, else streamed."""
        from ingest_core.delta import DeltaTarget, FileEntry
        from ingest_core.delta.writers import CopyAsIs, RowCount, StreamAppend

        target = self.target
        snapshot = target.current()  # the snapshot _guard checked the ids on
        with self._reader.open(work) as opened:
            source = self._reader.as_is(work, opened)
            if source is not None and CopyAsIs.fits(target, snapshot, opened.schema):
                rows = opened.count_rows()  # every row decoded: a corrupt page is refused
                version = CopyAsIs(opened.schema).write(
                    target, snapshot, FileEntry(work.sha256, work.file.uri, rows), source,
                    verify=lambda: self._reader.verify(work),
                )
                return self._settler.ingested(work, version, rows)
            stored = DeltaTarget.schema(snapshot)
            stream = self._reader.stream(work, opened, stored)
            counted = RowCount()
            writer = StreamAppend(
                stream.schema, merge_schema=stored is None or len(stream.schema) > len(stored)
            )
            version = writer.write(
                target, snapshot, FileEntry(work.sha256, work.file.uri, None),
                counted.counting(stream.batches), counted,
            )
        return self._settler.ingested(work, version, counted.value)

    def _retry_commit(self, exc: Exception) -> bool:
        """Drop the snapshot after a failed write; True when the failure was a lost race."""
        from ingest_core.delta.errors import is_commit_conflict

        self.target.forget()
        return is_commit_conflict(exc)

    def _failed(self, work: Work, exc: Exception) -> IngestResult:
        from ingest_core.delta.errors import is_schema_error

        retryable = False if not isinstance(exc, IngestError) and is_schema_error(exc) else None
        return self._settler.error(work, exc, retryable=retryable)
