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
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, is_local, local_path, table_key
from ingest_core.delta.folder import check_table_uri
from ingest_core.errors import ConfigurationError, IngestError, SourceGoneError
from ingest_core.ledger import BaseLedger, open_ledger
from ingest_core.pipeline.claim import Claimer, Work
from ingest_core.pipeline.fetch import Fetcher
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.read import Reader
from ingest_core.pipeline.settle import Settler
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile, Sources

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest_core.delta import DeltaTarget, TableRef
    from ingest_core.delta.group_commit import GroupCommit, Intent

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
        self._group: GroupCommit | None = None
        self._direct = threading.Lock()
        """Held by calls of `ingest_one` that commit on their own (`target` is not thread-safe)."""
        self._in_flight: dict[str, threading.Event] = {}
        self._in_flight_lock = threading.Lock()

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

    def ingest_one(self, file: SourceFile) -> IngestResult:
        """Ingest one file, sharing Delta commits with concurrent calls; safe from many threads.

        What an event-driven caller needs: each call does its own download,
        hash, claim and read, and writes its data file; the commit carries every
        file staged by then, in this process and in others (`delta.group_commit`).
        It returns once the file's rows are committed, by its own commit or by
        another's. A file the group commit cannot take (the first of a new
        table, one bringing new columns, a large one, a partitioned or
        feature-rich table) gets a commit of its own, as `ingest` would give it.

        Raises:
            SourceGoneError: the file is not there (nothing is recorded).
        """
        fetched = self._fetcher.fetch(file)
        if isinstance(fetched.copy, SourceGoneError):
            raise fetched.copy
        if isinstance(fetched.copy, Exception):
            return self._settler.unread(fetched, fetched.copy)
        with self._one_at_a_time(fetched.copy.sha256):
            work = self._claimer.claim(fetched, {})
            if isinstance(work, IngestResult):
                return work
            try:
                return self._ingest_shared(work)
            except Exception as exc:
                return self._failed(work, exc)
            finally:
                work.copy.discard()

    def close(self) -> None:
        """Stop lease renewal, let staging clean-up finish and close the ledger."""
        self._keeper.close()
        if self._group is not None:
            self._group.close()
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

    # -- the shared-commit path ----------------------------------------------------------

    @property
    def group(self) -> GroupCommit:
        """This table's group commit (one per ingestor, shared by its threads)."""
        with self._in_flight_lock:
            if self._group is None:
                from ingest_core.delta.group_commit import GroupCommit

                self._group = GroupCommit(self.table_ref)
            return self._group

    @contextmanager
    def _one_at_a_time(self, sha256: str) -> Iterator[None]:
        """Hold one content in this process: a second thread with the same bytes waits.

        Both would claim it under the same owner token; the second then finds it settled.
        """
        while True:
            with self._in_flight_lock:
                running = self._in_flight.get(sha256)
                if running is None:
                    self._in_flight[sha256] = threading.Event()
                    break
            running.wait()
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(sha256).set()

    def _ingest_shared(self, work: Work) -> IngestResult:
        """Stage the file, then commit it with whatever else is staged."""
        from ingest_core.delta.group_commit import StagedSchemaError

        group = self.group
        with group.preparing():
            staged = self._stage(work, group)
        if isinstance(staged, IngestResult):
            return staged
        intent, _ = staged
        try:
            committed = group.commit(intent)
        except StagedSchemaError as exc:
            return self._settler.error(work, exc, retryable=True)
        if committed.rows is None:  # found in the log's base snapshot: its version is unknown
            return self._settle_found(work, committed.version, None)
        return self._settler.ingested(work, committed.version, committed.rows)

    def _stage(self, work: Work, group: GroupCommit) -> tuple[Intent, int] | IngestResult:
        """Read, conform and stage one file; its result instead when it goes another way."""
        from ingest_core.delta.data_files import delta_schema, write_file

        if work.record.attempt > 1:  # an earlier attempt may have committed it: look first
            found = group.find(work.sha256)
            if found is not None:
                return self._settle_found(work, found.version, found.rows)
        checked_at = group.snapshot_version  # commits after it are read before committing
        stored = group.table_schema()
        if work.copy.size > self.config.stream_bytes or not self._stageable(stored):
            return self._ingest_alone(work)
        try:
            self._reader.read_whole(work)
        except IngestError as exc:
            return self._settler.error(work, exc)
        assert stored is not None
        conformed = self._reader.conform([work], stored)
        if conformed.refused:
            return self._settler.error(work, conformed.refused[0][1])
        table = conformed.ready[0][1]
        if delta_schema(table.schema) != stored:
            return self._ingest_alone(work)  # new columns: a commit of its own changes the schema
        with tempfile.TemporaryDirectory(prefix="ingest-stage-") as folder:
            local = Path(folder) / "data.parquet"
            write_file(local, table)
            intent = group.stage(work.sha256, work.file.uri, local, checked_at)
        work.data = None
        return intent, table.num_rows

    def _stageable(self, stored: pa.Schema | None) -> bool:
        """Whether files of this table can go through the group commit."""
        from ingest_core.delta.data_files import writable

        if stored is None or self.config.partition_by or not self.group.log.appendable():
            return False
        return writable(self.group.log.base, stored, ())

    def _ingest_alone(self, work: Work) -> IngestResult:
        """A commit of its own, as `ingest` gives a file (serialised within this process)."""
        with self._direct:
            if work.copy.size > self.config.stream_bytes:
                results = list(self._commit_stream(work))
            else:
                if work.data is None:
                    try:
                        self._reader.read_whole(work)
                    except IngestError as exc:
                        return self._settler.error(work, exc)
                results = list(self._commit_batch([work]))
        return results[0]

    def _settle_found(self, work: Work, version: int | None, rows: int | None) -> IngestResult:
        """The content is in the table already (a commit that carried it before this claim)."""
        if rows is None:
            with self._direct:
                snapshot = self.target.snapshot()
                if snapshot is not None:
                    landing = self.target.locate(snapshot, work.sha256)
                    version, rows = landing.version, landing.rows
        return self._settler.ingested(work, version, rows)

    def _retry_commit(self, exc: Exception) -> bool:
        """Drop the snapshot after a failed write; True when the failure was a lost race."""
        from ingest_core.delta.errors import is_commit_conflict

        self.target.forget()
        return is_commit_conflict(exc)

    def _failed(self, work: Work, exc: Exception) -> IngestResult:
        from ingest_core.delta.errors import is_schema_error

        retryable = False if not isinstance(exc, IngestError) and is_schema_error(exc) else None
        return self._settler.error(work, exc, retryable=retryable)
