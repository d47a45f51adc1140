"""IdempotentIngestor: hash -> claim -> parse -> guarded Delta commit -> complete.

Small files are read whole and several go into one Delta commit (one
transaction id per file); large files are streamed into a commit of their own.
pyarrow and deltalake are imported only once a file has to be written, so a
run that only skips stays cheap.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, is_local, local_path, table_key
from ingest_core.errors import (
    ConfigurationError,
    IngestError,
    LeaseLostError,
    SourceChangedError,
)
from ingest_core.faults import crash_at_end, crash_point
from ingest_core.lease import LeaseKeeper
from ingest_core.ledger import BaseLedger, FileRecord, open_ledger
from ingest_core.results import IngestResult, Outcome, RunStats
from ingest_core.sources import LocalCopy, Source, SourceFile, source_for

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

    from ingest_core.delta import DeltaTarget
    from ingest_core.formats import OpenedFile
    from ingest_core.schema import Lineage

COMMIT_ATTEMPTS = 3
"""Commits retried after a concurrent-commit conflict before the batch is split."""


@dataclass
class _Work:
    """A claimed file on its way to the table."""

    file: SourceFile
    copy: LocalCopy
    record: FileRecord
    started: float
    data: pa.Table | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return self.copy.sha256


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
        **options: any other `IngestConfig` field (format, schema_mode, lineage, ...).
    """

    def __init__(
        self,
        table: str | None = None,
        ledger: str | BaseLedger | None = None,
        *,
        config: IngestConfig | None = None,
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
        _check_table_uri(config.table_uri)
        self.table = table_key(config.table_uri)
        self.ledger = (
            ledger
            if isinstance(ledger, BaseLedger)
            else open_ledger(config.resolved_ledger_uri(), config.storage)
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._keeper = LeaseKeeper(self.ledger, config.lease_seconds)
        self._sources: dict[bool, Source] = {}
        self._target: DeltaTarget | None = None
        self._transform: Callable[[Any], Any] | None = None
        if config.transform:
            from ingest_core.transform import load_transform

            self._transform = load_transform(config.transform)

    # -- public API -----------------------------------------------------------

    def ingest_file(self, path: str) -> IngestResult:
        """Ingest one file; returns its result (status ingested, skipped, ...)."""
        source = self._source(path)
        files = list(source.list(path))
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
        seen: set[str] = set()
        files = []
        for root in roots:
            for file in self._source(root).list(root):
                if file.uri not in seen:
                    seen.add(file.uri)
                    files.append(file)
        return files

    def run(
        self, files: Iterable[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest `files`, calling `on_result` as each one settles."""
        stats = RunStats()
        for result in self.ingest(files):
            stats.add(result)
            if on_result is not None:
                on_result(result)
        return stats

    def ingest(self, files: Iterable[SourceFile]) -> Iterator[IngestResult]:
        """Ingest `files`, yielding one result per file as it settles."""
        batch: list[_Work] = []
        batch_bytes = 0
        claimed_here: dict[str, str] = {}
        for file, started, fetched in self._prefetched(files):
            work, result = self._claim(file, started, fetched, claimed_here)
            if result is not None:
                yield result
                continue
            assert work is not None
            if work.copy.size > self.config.stream_bytes:
                yield from self._commit_batch(batch)
                batch, batch_bytes = [], 0
                yield from self._commit_stream(work)
                continue
            result = self._read(work)
            if result is not None:
                yield result
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

    # -- steps ------------------------------------------------------------------

    def _source(self, uri: str) -> Source:
        local = is_local(uri)
        if local not in self._sources:
            self._sources[local] = source_for(uri, self.config.storage)
        return self._sources[local]

    def _delta(self, refresh: bool = False) -> DeltaTarget:
        """The Delta target; `refresh` (before a batch's check) renews expiring credentials.

        Under Entra identity the storage options carry a bearer token;
        `delta_storage_options` returns a new one near expiry, and a target
        opened with other options is replaced (its next snapshot loads afresh).
        """
        if self._target is None or (refresh and not is_local(self.config.table_uri)):
            from ingest_core.delta import DeltaTarget

            options = None
            if not is_local(self.config.table_uri):
                from ingest_core.azure.auth import delta_storage_options

                options = delta_storage_options(self.config.table_uri, self.config.storage)
            if self._target is None or self._target.storage_options != options:
                self._target = DeltaTarget(
                    self.config.table_uri, options, self.config.partition_by
                )
        return self._target

    def _prefetched(
        self, files: Iterable[SourceFile]
    ) -> Iterator[tuple[SourceFile, float, LocalCopy | Exception]]:
        """Each file with its fetched copy (or why it could not be read), one file ahead.

        The next file is read and hashed (a blob downloaded) in a thread while
        this one is parsed and written; hashlib and the SDKs release the GIL.
        A file too large to batch also starts importing the Delta writer, so
        the imports overlap its hashing.
        """

        def fetch(file: SourceFile) -> tuple[SourceFile, float, LocalCopy | Exception]:
            started = time.monotonic()
            if file.size is not None and file.size > self.config.stream_bytes:
                _warm_writer_imports()
            try:
                copy = self._source(file.uri).fetch(file, Path(tempfile.gettempdir()))
            except (SourceChangedError, OSError) as exc:
                return file, started, exc
            return file, started, copy

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
            ahead: Future[tuple[SourceFile, float, LocalCopy | Exception]] | None = None
            try:
                for file in files:
                    current, ahead = ahead, pool.submit(fetch, file)
                    if current is not None:
                        yield current.result()
                if ahead is not None:
                    current, ahead = ahead, None
                    yield current.result()
            finally:
                if ahead is not None:  # abandoned: drop the spool of the file read ahead
                    copy = ahead.result()[2]
                    if isinstance(copy, LocalCopy):
                        copy.discard()

    def _claim(
        self,
        file: SourceFile,
        started: float,
        fetched: LocalCopy | Exception,
        claimed_here: dict[str, str],
    ) -> tuple[_Work | None, IngestResult | None]:
        """Claim a fetched file; a result when there is nothing to write."""

        def result(status: Outcome, **extra: Any) -> IngestResult:
            return IngestResult(
                path=file.uri, status=status, duration_s=time.monotonic() - started, **extra
            )

        if isinstance(fetched, Exception):
            exc = fetched
            reason = str(exc) if isinstance(exc, SourceChangedError) else (
                f"{file.uri}: cannot read: {exc}; run again"
            )
            self.ledger.record_unread(
                self.table, file.uri, owner=self.owner, error=reason,
                max_attempts=self.config.max_attempts,
            )
            return None, result("failed", error=reason)
        copy = fetched
        crash_point("after_hash")
        sha = copy.sha256
        if sha in claimed_here:
            copy.discard()
            self.ledger.note_sighting(self.table, sha, file.uri)
            return None, result(
                "skipped", sha256=sha, size=copy.size,
                error=f"same content as {claimed_here[sha]} in this run",
            )
        claim = self.ledger.claim(
            self.table,
            sha,
            path=file.uri,
            owner=self.owner,
            lease_seconds=self.config.lease_seconds,
            max_attempts=self.config.max_attempts,
            size=copy.size,
            source_etag=copy.etag,
        )
        if claim.outcome != "claimed":
            copy.discard()
            record = claim.record
            status: Outcome = "skipped" if claim.outcome == "done" else claim.outcome
            error = record.error if claim.outcome == "quarantined" else None
            if claim.outcome == "in_progress":
                error = f"{file.uri}: another worker ({record.owner}) holds it; retry later"
            return None, result(
                status, sha256=sha, size=copy.size, error=error,
                delta_version=record.delta_version if status == "skipped" else None,
            )
        claimed_here[sha] = file.uri
        self._keeper.hold(claim.record)
        crash_point("after_claim")
        return _Work(file=file, copy=copy, record=claim.record, started=started), None

    def _open(self, work: _Work) -> OpenedFile:
        from ingest_core.formats import OpenedFile, format_of

        fmt = format_of(work.file.uri, self.config.format)
        return OpenedFile(work.copy.path, fmt, work.file.uri)

    def _read(self, work: _Work) -> IngestResult | None:
        """Read a small file whole (and transform it); a result if it cannot be."""
        try:
            with self._open(work) as opened:
                data = opened.read_all()
            self._source(work.file.uri).verify(work.file, work.copy)
            if self._transform is not None:
                from ingest_core.transform import apply_transform

                transformed = apply_transform(self._transform, data, work.file.uri)
                data = transformed if not hasattr(transformed, "read_all") else (
                    transformed.read_all()
                )
            work.data = data
        except IngestError as exc:
            return self._settle_error(work, exc)
        return None

    def _commit_batch(self, batch: list[_Work]) -> Iterator[IngestResult]:
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
                self._delta().forget()
                if not _is_commit_conflict(exc):
                    break
        batch, results = self._guard(batch)
        yield from results
        if len(batch) > 1:
            for work in batch:
                yield from self._commit_batch([work])
            return
        for work in batch:
            yield self._settle_error(work, last_error or RuntimeError("commit failed"))

    def _guard(self, batch: list[_Work]) -> tuple[list[_Work], list[IngestResult]]:
        """Renew leases and drop files whose content is already in the table.

        Returns the files still to write and results for the others.
        """
        results = []
        lost = self._keeper.renew_now([w.sha256 for w in batch])
        target = self._delta(refresh=True)
        try:
            table = target.snapshot()
        except ConfigurationError as exc:  # no such table: give the claims back, then stop
            for work in batch:
                if work.sha256 not in lost:
                    self.ledger.fail(self._keeper.release(work.sha256), str(exc))
            raise
        remaining = []
        for work in batch:
            if work.sha256 in lost:
                work.copy.discard()
                results.append(self._result(work, "in_progress", error=_lost_message(work)))
            elif target.has_landed(table, work.sha256):
                assert table is not None
                landing = target.locate(table, work.sha256)
                results.append(self._complete(work, landing.version, landing.rows))
            else:
                remaining.append(work)
        return remaining, results

    def _write_batch(self, batch: list[_Work]) -> Iterator[IngestResult]:
        import pyarrow as pa

        from ingest_core.delta import FileEntry
        from ingest_core.schema import conform, target_schema

        target = self._delta()
        table = target.current()  # the snapshot _guard checked the ids on: write from it
        stored = target.schema(table)
        strict = self.config.schema_mode == "strict"
        now = _utcnow()
        schema = stored
        ready: list[tuple[_Work, pa.Table]] = []
        for work in batch:
            assert work.data is not None
            data = self._with_lineage(work, work.data, self._lineage(work, now))
            try:
                file_schema = target_schema(schema, data.schema, strict=strict, name=work.file.uri)
                conformed = pa.Table.from_batches(
                    [conform(b, file_schema, name=work.file.uri) for b in data.to_batches()],
                    file_schema,
                )
            except IngestError as exc:
                yield self._settle_error(work, exc)
                continue
            schema = file_schema
            ready.append((work, conformed))
        if not ready:
            return
        assert schema is not None
        merged = pa.concat_tables(
            [pa.Table.from_batches([conform(b, schema, name=w.file.uri) for b in t.to_batches()],
                                   schema) for w, t in ready]
        )
        entries = [FileEntry(w.sha256, w.file.uri, t.num_rows) for w, t in ready]
        version = target.append(
            table, crash_at_end(merged, "during_write"), entries,
            merge_schema=stored is None or len(schema) > len(stored),
        )
        crash_point("after_commit")
        for work, data in ready:
            yield self._complete(work, version, data.num_rows)

    def _commit_stream(self, work: _Work) -> Iterator[IngestResult]:
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
                self._delta().forget()
                if not _is_commit_conflict(exc):
                    break
        remaining, results = self._guard([work])
        yield from results
        if remaining:
            yield self._settle_error(work, last_error or RuntimeError("commit failed"))

    def _write_stream(self, work: _Work) -> IngestResult:
        """Stream one file into its own commit: parquet written here where it can be."""
        import pyarrow as pa

        from ingest_core.data_files import delta_schema, writable, write_files
        from ingest_core.delta import FileEntry
        from ingest_core.schema import conform, target_schema

        target = self._delta()
        table = target.current()  # the snapshot _guard checked the ids on: write from it
        copied = self._copy_as_is(work, target, table)
        if copied is not None:
            return copied
        stored = target.schema(table)
        now = _utcnow()
        failure: list[BaseException] = []
        rows = 0
        with self._open(work) as opened:
            data: Any = opened.reader
            if self._transform is not None:
                from ingest_core.transform import apply_transform

                data = apply_transform(self._transform, opened.reader, work.file.uri)
            source_schema = data.schema
            sample = pa.RecordBatch.from_pylist([], schema=source_schema)
            lineage = self._lineage(work, now)
            lineaged = self._with_lineage(work, pa.Table.from_batches([sample]), lineage).schema
            schema = target_schema(
                stored, lineaged, strict=self.config.schema_mode == "strict", name=work.file.uri
            )

            write_here = is_local(target.uri) and writable(table, schema, target.partition_by)

            def batches() -> Iterator[pa.RecordBatch]:
                nonlocal rows
                try:
                    for batch in _iter_batches(data, work.file.uri):
                        rows += batch.num_rows
                        with_lineage = self._with_lineage(
                            work, pa.Table.from_batches([batch]), lineage
                        ).to_batches()
                        for piece in with_lineage:
                            yield conform(piece, schema, name=work.file.uri)
                    self._source(work.file.uri).verify(work.file, work.copy)
                    if not write_here:
                        crash_point("during_write")  # delta-rs commits once the stream ends
                except BaseException as exc:
                    failure.append(exc)
                    raise

            try:
                if write_here:
                    actions = write_files(local_path(target.uri), batches(), schema)
                    crash_point("during_write")
                    version = target.commit_files(
                        table, actions, delta_schema(schema),
                        [FileEntry(work.sha256, work.file.uri, rows)],
                    )
                else:
                    version = target.append(
                        table,
                        pa.RecordBatchReader.from_batches(schema, batches()),
                        [FileEntry(work.sha256, work.file.uri, None)],
                        merge_schema=stored is None or len(schema) > len(stored),
                    )
            except Exception:
                if failure:
                    raise failure[0] from None
                raise
        crash_point("after_commit")
        return self._complete(work, version, rows)

    def _copy_as_is(
        self, work: _Work, target: DeltaTarget, table: DeltaTable | None
    ) -> IngestResult | None:
        """Commit a parquet file byte for byte when nothing asks for a rewrite; None if not.

        Nothing does when the file's columns are the table's (or make a new
        one), and no lineage, route capture or transform adds to its rows. Every
        row is still decoded once, so a corrupt page is refused, not committed.
        """
        from ingest_core.formats import format_of

        if (
            self.config.lineage
            or self._transform is not None
            or work.file.columns
            or not is_local(target.uri)
            or format_of(work.file.uri, self.config.format) != "parquet"
        ):
            return None
        from ingest_core.data_files import copy_file, delta_schema, writable
        from ingest_core.delta import FileEntry

        with self._open(work) as opened:
            source = opened.parquet_as_is
            if source is None or not writable(table, opened.schema, target.partition_by):
                return None
            rows = opened.count_rows()
            actions = copy_file(local_path(target.uri), source)
            schema = delta_schema(opened.schema)
        self._source(work.file.uri).verify(work.file, work.copy)
        crash_point("during_write")
        version = target.commit_files(
            table, actions, schema, [FileEntry(work.sha256, work.file.uri, rows)]
        )
        crash_point("after_commit")
        return self._complete(work, version, rows)

    def _lineage(self, work: _Work, now: datetime) -> Lineage | None:
        """The lineage columns of `work`'s rows (None when lineage is off)."""
        if not self.config.lineage:
            return None
        from ingest_core.schema import Lineage

        return Lineage(path=work.file.uri, sha256=work.sha256, ingested_at=now)

    def _with_lineage(self, work: _Work, data: pa.Table, lineage: Lineage | None) -> pa.Table:
        """`data` plus the file's route captures and lineage columns."""
        if work.file.columns:
            from ingest_core.schema import with_constants

            data = with_constants(data, work.file.columns, name=work.file.uri)
        if lineage is None:
            return data
        import pyarrow as pa

        batches = [lineage.add(b) for b in data.to_batches()]
        if not batches:
            return pa.Table.from_batches([], lineage.schema(data.schema))
        return pa.Table.from_batches(batches)

    # -- outcomes -------------------------------------------------------------------

    def _result(self, work: _Work, status: Outcome, **extra: Any) -> IngestResult:
        return IngestResult(
            path=work.file.uri,
            status=status,
            sha256=work.sha256,
            size=work.copy.size,
            duration_s=time.monotonic() - work.started,
            **extra,
        )

    def _complete(self, work: _Work, version: int | None, rows: int | None) -> IngestResult:
        record = self._keeper.release(work.sha256)
        crash_point("during_complete")
        self.ledger.complete(record, delta_version=version, rows=rows)
        work.copy.discard()
        work.data = None
        return self._result(work, "ingested", rows=rows, delta_version=version)

    def _settle_error(self, work: _Work, exc: BaseException) -> IngestResult:
        """Record a failed attempt; quarantine it when the error is not worth retrying."""
        work.copy.discard()
        work.data = None
        if isinstance(exc, LeaseLostError):
            return self._result(work, "in_progress", error=str(exc))
        record = self._keeper.release(work.sha256)
        retryable = getattr(exc, "retryable", True)
        message = str(exc) if isinstance(exc, IngestError) else (
            f"{work.file.uri}: {type(exc).__name__}: {exc}"
        )
        if not isinstance(exc, IngestError) and _is_schema_error(exc):
            retryable = False
        quarantine = not retryable or record.attempt >= self.config.max_attempts
        self.ledger.fail(record, message, quarantine=quarantine)
        return self._result(work, "quarantined" if quarantine else "failed", error=message)


def _iter_batches(data: Any, name: str) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    from ingest_core.errors import CorruptFileError

    try:
        if isinstance(data, pa.Table):
            yield from data.to_batches()
        else:
            yield from data
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{name}: parse error: {exc}") from exc


def _warm_writer_imports() -> None:
    """Import pyarrow and deltalake in the background (once), while a large file is hashed."""
    global _warming
    if _warming is None:
        _warming = threading.Thread(
            target=lambda: importlib.import_module("ingest_core.delta"),
            name="warm-imports", daemon=True,
        )
        _warming.start()


_warming: threading.Thread | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _lost_message(work: _Work) -> str:
    return f"{work.file.uri}: lease lost to another worker, which will finish it"


def _is_commit_conflict(exc: BaseException) -> bool:
    from deltalake.exceptions import CommitFailedError

    return isinstance(exc, CommitFailedError)


def _is_schema_error(exc: BaseException) -> bool:
    from deltalake.exceptions import SchemaMismatchError

    return isinstance(exc, SchemaMismatchError)


# delta-rs data files, and object_store's staging copies of them ("<name>#<n>")
_DATA_FILE = re.compile(r"part-\d{5}-[0-9a-f-]{36}-c000(\.\w+)?\.parquet(#\d+)?")


def _only_write_leftovers(folder: Path) -> bool:
    """Whether a folder holds only what a writer killed before its first commit leaves.

    That is data files, their staging copies, and partition folders (``key=value``) of them.
    Names are judged as listed: a rival still writing renames its staging copies and may
    create `_delta_log` meanwhile, so an entry can be gone by the time it is looked at.
    """
    for entry in folder.iterdir():
        if entry.name == "_delta_log" or _DATA_FILE.fullmatch(entry.name):
            continue
        if "=" in entry.name and entry.is_dir() and _only_write_leftovers(entry):
            continue
        return False
    return True


def _check_table_uri(uri: str) -> None:
    """Refuse local table paths that cannot be a Delta table."""
    if not is_local(uri):
        return
    path = local_path(uri)
    if path.is_file():
        raise ConfigurationError(f"table {uri}: is a file, not a Delta table folder")
    if path.is_dir() and not (path / "_delta_log").is_dir() and not _only_write_leftovers(path):
        raise ConfigurationError(
            f"table {uri}: the folder exists, is not empty and holds no _delta_log; "
            "point --table at a Delta table or a new folder"
        )
