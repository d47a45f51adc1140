"""Stage 4: commit claimed files to the table, guarded, retried on a lost race.

The guard settles files whose content is in the table already (their
transaction id is in the snapshot, or, for a takeover after the ids expired,
their lineage rows); the others are written from that very snapshot by one of
`ingest_core.delta.writers`. A commit that loses a race is retried on a fresh
snapshot; a batch that keeps failing is split, so one bad file cannot block
the others. Not thread-safe: the event path serialises its use.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig
from ingest_core.errors import (
    AttemptsExhaustedError,
    ConfigurationError,
    IngestError,
    StorageRefusedError,
)
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.read import Reader
from ingest_core.pipeline.settle import Settler
from ingest_core.pipeline.work import Work
from ingest_core.results import IngestResult

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from ingest_core.delta import DeltaTarget, FileEntry
    from ingest_core.delta.bad_rows import BadRowsTable

COMMIT_ATTEMPTS = 3
"""Commits retried after a concurrent-commit conflict before the batch is split."""


class Committer:
    """Commits one table's claimed files: the guard, the writers, retries and splits."""

    def __init__(
        self, config: IngestConfig, reader: Reader, settler: Settler, keeper: LeaseKeeper
    ) -> None:
        self.config = config
        self._reader = reader
        self._settler = settler
        self._keeper = keeper
        self._target: DeltaTarget | None = None
        self.lock = threading.Lock()
        self._writable = False
        """A local table's folder was found writable (`_check_writable`)."""
        """Held by concurrent callers (the event path): one file at a time goes through here."""
        self._bad_rows: BadRowsTable | None = None
        self._bad_rows_lock = threading.Lock()
        """Held while bad rows are committed (the event path stages on many threads)."""
        self.on_created: Callable[[], None] | None = None
        """Called after a commit while set: the ingestor records the id of a table it created."""
        self.bad_rows_uri: str | None = None
        """The bad-rows table of `bad_rows=rescue` (None: bad rows quarantine the file)."""
        if config.read.rescue:
            from ingest_core.delta.bad_rows import bad_rows_uri

            self.bad_rows_uri = bad_rows_uri(config.table_uri, config.read.bad_rows_table)

    @property
    def _merging(self) -> bool:
        return self.config.mode == "merge"

    @property
    def target(self) -> DeltaTarget:
        """The Delta table, its snapshot reused across commits (deltalake imported here)."""
        if self._target is None:
            from ingest_core.delta import DeltaTarget, TableRef
            from ingest_core.delta.target import table_properties

            ref = TableRef.of(self.config.table_uri, self.config.storage)
            properties = table_properties(
                lineage=self.config.lineage, txn_retention=self.config.txn_retention
            )
            self._target = DeltaTarget(ref, self.config.partition_by, properties)
        return self._target

    def commit_batch(self, batch: list[Work]) -> Iterator[IngestResult]:
        """Commit buffered files together; split the batch if the commit keeps failing."""
        if not batch:
            return
        last_error: Exception | None = None
        for _ in range(COMMIT_ATTEMPTS):
            batch, results = self.guard(batch)
            yield from results
            if not batch:
                return
            try:
                yield from self._write_batch(batch)
                self._created()
                return
            except Exception as exc:
                self._stop_if_refused(batch, exc)
                last_error = exc
                if not self._retry_commit(exc):
                    break
        batch, results = self.guard(batch)
        yield from results
        if len(batch) > 1:
            for work in batch:
                yield from self.commit_batch([work])
            return
        for work in batch:
            yield self.failed(work, last_error or RuntimeError("commit failed"))

    def commit_stream(self, work: Work) -> Iterator[IngestResult]:
        """Stream one large file into its own commit."""
        last_error: Exception | None = None
        for _ in range(COMMIT_ATTEMPTS):
            remaining, results = self.guard([work])
            if not remaining:
                yield from results
                return
            try:
                yield self._write_stream(work)
                self._created()
                return
            except IngestError as exc:
                last_error = exc
                break
            except Exception as exc:
                self._stop_if_refused([work], exc)
                last_error = exc
                if not self._retry_commit(exc):
                    break
        remaining, results = self.guard([work])
        yield from results
        if remaining:
            yield self.failed(work, last_error or RuntimeError("commit failed"))

    def guard(self, works: list[Work]) -> tuple[list[Work], list[IngestResult]]:
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
        except Exception as exc:  # a storage that refuses (403): stop; anything else goes up
            self._stop_if_refused([w for w in works if w.sha256 not in lost], exc)
            raise
        remaining = []
        for work in works:
            if work.sha256 in lost:
                results.append(self._settler.lost(work))
            elif target.has_landed(snapshot, work.sha256, work.record.generation):
                assert snapshot is not None
                landing = target.locate(snapshot, work.sha256, work.record.generation)
                results.append(self._settler.found(work, landing.version, landing.rows))
            elif (rows := self.rows_by_lineage(work, snapshot)) is not None:
                assert snapshot is not None
                version = target.locate(  # while the log has it
                    snapshot, work.sha256, work.record.generation
                ).version
                results.append(self._settler.found(work, version, rows))
            else:
                remaining.append(work)
        return remaining, results

    def last_look(self, work: Work) -> IngestResult:
        """Settle a takeover past the last attempt, writing nothing.

        Its worker died on the last attempt, maybe after its commit: the rows
        found in the table (transaction id, lineage) complete the row as
        `succeeded`; otherwise the content is quarantined, attempts exhausted.
        """
        with self.lock:
            remaining, results = self.guard([work])
        if not remaining:
            return results[0]
        record = work.record
        return self._settler.error(work, AttemptsExhaustedError(
            f"{work.file.uri}: gave up after {record.attempt - 1} attempts (the last one's "
            f"worker died, and its rows are not in the table); last error: {record.error}; "
            "`ingest retry` takes it again"
        ))

    def rows_by_lineage(self, work: Work, snapshot: DeltaTable | None) -> int | None:
        """The rows of a file taken over after its transaction id may have expired, if any.

        A takeover (attempt 2 or later) of a row first claimed longer ago than
        the table keeps transaction ids: an earlier attempt may have committed,
        and only the lineage column can still tell.
        """
        from ingest_core.delta import lineage

        created = work.record.created_at
        if snapshot is None or work.record.attempt < 2 or created is None:
            return None
        if not lineage.may_have_expired(snapshot, created.timestamp()):
            return None
        rows = lineage.rows_of(snapshot, work.sha256)
        return rows or None

    def _write_batch(self, batch: list[Work]) -> Iterator[IngestResult]:
        """Conform the batch's files and append them in one commit.

        A file the table refuses is settled and taken out of `batch`, so a retry
        of the commit writes only the others.
        """
        from ingest_core.delta import DeltaTarget
        from ingest_core.delta.writers import BatchAppend

        self._check_writable()
        snapshot = self.target.current()  # the snapshot _guard checked the ids on
        stored = DeltaTarget.schema(snapshot)
        conformed = self._reader.conform(batch, stored)
        for work, exc in conformed.refused:
            batch.remove(work)
            yield self._settler.error(work, exc)
        self.keep_bad_rows([w for w, _ in conformed.ready] + conformed.empty)
        for work in conformed.empty:  # no rows: nothing to commit, no columns to add
            batch.remove(work)
            yield self._settler.ingested(work, None, 0)
        if not conformed.ready:
            return
        assert conformed.schema is not None
        if self._merging:
            yield self._write_merge(snapshot, stored, conformed.schema, *conformed.ready[0])
            return
        writer = BatchAppend(
            conformed.schema, merge_schema=stored is None or len(conformed.schema) > len(stored)
        )
        entries = [
            (_entry(w, t.num_rows), t) for w, t in conformed.ready
        ]
        version = writer.write(self.target, snapshot, entries)
        yield from self._settler.ingested_many(
            [(work, version, table.num_rows) for work, table in conformed.ready]
        )

    def _write_merge(
        self, snapshot: Any, stored: pa.Schema | None, schema: pa.Schema, work: Work,
        table: pa.Table,
    ) -> IngestResult:
        """Upsert one file's rows on the merge keys, in one commit carrying its id."""
        from ingest_core.delta.writers import MergeUpsert

        config = self.config
        writer = MergeUpsert(
            config.merge_keys, config.merge_sequence, config.merge_delete_when,
            merge_schema=stored is not None and len(schema) > len(stored),
        )
        entry = _entry(work, table.num_rows)
        version = writer.write(self.target, snapshot, entry, table)
        return self._settler.ingested(work, version, table.num_rows)

    def _write_stream(self, work: Work) -> IngestResult:
        """Commit one large file: copied as it is where nothing rewrites it, else streamed."""
        from ingest_core.delta import DeltaTarget
        from ingest_core.delta.writers import CopyAsIs, RowCount, StreamAppend

        target = self.target
        self._check_writable()
        snapshot = target.current()  # the snapshot _guard checked the ids on
        with self._reader.open(work) as opened:
            source = self._reader.as_is(work, opened)
            if source is not None:
                from ingest_core.schema import check_column_names

                check_column_names(opened.schema, DeltaTarget.schema(snapshot), name=work.file.uri)
            if source is not None and CopyAsIs.fits(target, snapshot, opened.schema):
                rows = opened.count_rows()  # every row decoded: a corrupt page is refused
                version = CopyAsIs(opened.schema).write(
                    target, snapshot, _entry(work, rows), source,
                    verify=lambda: self._reader.verify(work),
                )
                return self._settler.ingested(work, version, rows)
            stored = DeltaTarget.schema(snapshot)
            stream = self._reader.stream(
                work, opened, stored, finish=lambda: _own_thread(self.keep_bad_rows, [work])
            )
            counted = RowCount()
            writer = StreamAppend(
                stream.schema, merge_schema=stored is None or len(stream.schema) > len(stored)
            )
            version = writer.write(
                target, snapshot, _entry(work, None),
                counted.counting(stream.batches), counted,
            )
        return self._settler.ingested(work, version, counted.value)

    def settle_found(self, work: Work, version: int | None, rows: int | None) -> IngestResult:
        """Settle a file an earlier attempt committed: `skipped`, with its version."""
        return self._settler.found(work, *self.landing(work, version, rows))

    def landing(
        self, work: Work, version: int | None, rows: int | None
    ) -> tuple[int | None, int | None]:
        """The version and rows of a file's commit, looked up in the table when not known."""
        if rows is None:
            snapshot = self.target.snapshot()
            if snapshot is not None:
                landing = self.target.locate(snapshot, work.sha256, work.record.generation)
                version, rows = landing.version, landing.rows
        return version, rows

    def keep_bad_rows(self, works: list[Work]) -> None:
        """Commit each file's unparseable rows to the bad-rows table, before its own rows."""
        for work in works:
            if not work.bad_rows:
                continue
            with self._bad_rows_lock:
                if self._bad_rows is None:
                    from ingest_core.delta.bad_rows import BadRowsTable

                    assert self.bad_rows_uri is not None
                    self._bad_rows = BadRowsTable(self.bad_rows_uri, self.config.storage)
                self._bad_rows.record(work.sha256, work.file.uri, work.bad_rows, work.run_id)

    def _created(self) -> None:
        """After a commit: let the ingestor record a table it has just created."""
        if self.on_created is None:
            return
        try:
            self.on_created()
        except Exception as exc:  # best effort: the next run records it when it finds it
            import logging

            logging.getLogger(__name__).warning(
                "could not record the id of the new table %s in the ledger: %s",
                self.config.table_uri, exc,
            )

    def _retry_commit(self, exc: Exception) -> bool:
        """Drop the snapshot after a failed write; True when the failure was a lost race."""
        from ingest_core.delta.errors import is_commit_conflict

        self.target.forget()
        return is_commit_conflict(exc)

    def _check_writable(self) -> None:
        """Raise OSError, before delta-rs is asked to write, when a local table folder is not
        writable (a read-only file system, no write permission); checked until it is."""
        if self._writable or not self.target.ref.is_local:
            return
        from ingest_core.config import local_path

        folder = local_path(self.target.ref.uri)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # a table not created yet: the folder it goes in
        if os.access(folder, os.W_OK):
            self._writable = True
            return
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if read_only:
            raise OSError(errno.EROFS, "Read-only file system", str(folder))
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    def _stop_if_refused(self, works: list[Work], exc: Exception) -> None:
        """Give the claims back and stop the run when the table's storage refuses writes.

        Raises StorageRefusedError (exit 2) naming the table, what is wrong and
        the fix; the files count no attempt, so good files are never quarantined
        for a read-only folder or a missing grant.
        """
        from ingest_core.delta.errors import storage_refusal

        if isinstance(exc, IngestError):
            return
        refusal = storage_refusal(exc)
        if refusal is None:
            return
        what, fix = refusal
        message = (
            f"cannot write the table {self.config.table_uri}: {what}; {fix}. "
            f"No attempt was counted: run again once fixed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''})"
        )
        for work in works:
            try:
                self._settler.give_back(work, message)
            except KeyError:
                continue  # settled meanwhile
        raise StorageRefusedError(message) from None

    def failed(self, work: Work, exc: Exception) -> IngestResult:
        """Settle a file whose write failed (a delta-rs schema refusal is not retried)."""
        from ingest_core.delta.errors import is_schema_error

        self._stop_if_refused([work], exc)
        retryable = False if not isinstance(exc, IngestError) and is_schema_error(exc) else None
        return self._settler.error(work, exc, retryable=retryable)


def _own_thread(function: Callable[..., None], *args: Any) -> None:
    """Call `function` on a thread of its own and wait for it, re-raising what it raised.

    A stream delta-rs writes is pulled from inside its tokio runtime, where a
    call into deltalake panics ("Cannot start a runtime from within a runtime").
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            function(*args)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="ingest-off-runtime")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _entry(work: Work, rows: int | None) -> FileEntry:
    """What a commit records of one file: its content, path, rows, run and generation."""
    from ingest_core.delta import FileEntry

    return FileEntry(
        work.sha256, work.file.uri, rows, run_id=work.run_id, generation=work.record.generation
    )
