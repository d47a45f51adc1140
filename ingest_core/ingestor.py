"""IdempotentIngestor: one table's files through fetch -> claim -> read -> guarded commit -> settle.

Small files are read whole and several go into one Delta commit (one
transaction id per file); large files are streamed into a commit of their own;
an event's file shares a commit with concurrent events (`ingest_one`). Each
stage lives in `ingest_core.pipeline`, the Delta writes in `ingest_core.delta`;
this module wires them and runs the batch loop.
pyarrow and deltalake are imported only once a file has to be written, so a
run that only skips stays cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ingest_core import owners
from ingest_core.config import IngestConfig, is_local, local_path, table_key
from ingest_core.delta.folder import check_table_uri
from ingest_core.errors import ConfigurationError, IngestError, SourceGoneError
from ingest_core.ledger import BaseLedger, open_ledger
from ingest_core.pipeline.claim import Claimer
from ingest_core.pipeline.commit import Committer
from ingest_core.pipeline.fetch import Fetched, Fetcher
from ingest_core.pipeline.group import GroupPath
from ingest_core.pipeline.known import KnownFiles
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.read import Reader
from ingest_core.pipeline.settle import Settler
from ingest_core.pipeline.work import Work
from ingest_core.results import IngestResult, RunStats
from ingest_core.run_ids import new_run_id
from ingest_core.sources import SourceFile, Sources

if TYPE_CHECKING:

    from ingest_core.delta import DeltaTarget, TableRef
    from ingest_core.delta.group_commit import GroupCommit

CLAIM_GROUP = 100
"""Small files claimed together, in one ledger write group (`BaseLedger.batch`)."""


def _drain(results: list[IngestResult]) -> Iterator[IngestResult]:
    """Yield and remove every result in `results`."""
    while results:
        yield results.pop(0)


def owner_token() -> str:
    """A token naming this worker (host, process, start marker): the owner of its claims."""
    return owners.owner_token()


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

    Every ingesting method takes `run_id`, the id written on the ledger rows
    and Delta commits of the call (default: a new one, `run_ids.new_run_id`).
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
        self._known = KnownFiles(self.ledger, self.table_key)
        self._claimer = Claimer(
            self.ledger, self.table_key, self.owner, config, self._keeper, self._settler
        )
        self._reader = Reader(config, self._sources)
        self._committer = Committer(config, self._reader, self._settler, self._keeper)
        self._claimer.last_look = self._committer.last_look
        self._group_path = GroupPath(config, self._reader, self._settler, self._committer)
        self._ledger_checked = False
        self._ledger_check = threading.Lock()

    # -- public API -----------------------------------------------------------

    @property
    def table(self) -> str:
        """The table's ledger key: `table_key` under the name wave-1 callers use."""
        return self.table_key

    def ingest_file(self, path: str, *, run_id: str | None = None) -> IngestResult:
        """Ingest one file; returns its result (status ingested, skipped, ...)."""
        files = self.list_sources([path])
        if len(files) != 1 or (is_local(path) and local_path(path).is_dir()):
            raise ConfigurationError(f"{path} is not a single file; use ingest_directory")
        return next(iter(self.ingest(files, run_id=run_id)))

    def ingest_directory(self, path: str, *, run_id: str | None = None) -> RunStats:
        """Ingest every file under a folder or prefix (recursive)."""
        return self.ingest_sources([path], run_id=run_id)

    def ingest_sources(
        self, roots: Iterable[str], on_result: Callable[[IngestResult], None] | None = None,
        *, run_id: str | None = None,
    ) -> RunStats:
        """Ingest every file under each root (file, folder or prefix)."""
        return self.run(self.list_sources(roots), on_result, run_id=run_id)

    def list_sources(self, roots: Iterable[str]) -> list[SourceFile]:
        """Every file under the roots, in listing order, each once."""
        return self._sources.list(roots)

    def run(
        self, files: Iterable[SourceFile], on_result: Callable[[IngestResult], None] | None = None,
        *, run_id: str | None = None,
    ) -> RunStats:
        """Ingest `files`, calling `on_result` as each one settles."""
        run_id = run_id or new_run_id()
        return RunStats.collect(self.ingest(files, run_id=run_id), on_result, run_id)

    def ingest(
        self, files: Iterable[SourceFile], *, run_id: str | None = None
    ) -> Iterator[IngestResult]:
        """Ingest `files`, yielding one result per file as it settles.

        Small files gather in a batch, committed together once it holds
        `batch_files` files or `batch_bytes` of rows, or its first file has
        waited `batch_seconds`; a large file is streamed into a commit of its own.
        In merge mode every file is read whole and merged in a commit of its
        own, in arrival order. A file at the path of a `succeeded` row, with
        the version that row recorded, is skipped unread (`pipeline.known`).
        """
        run_id = run_id or new_run_id()
        for result in self._ingest(files, run_id):
            result.run_id = run_id
            yield result

    def _ingest(self, files: Iterable[SourceFile], run_id: str) -> Iterator[IngestResult]:
        batch: list[Work] = []
        batch_bytes = 0
        claimed_here: dict[str, str] = {}
        self._precheck_table()
        known: list[IngestResult] = []  # skipped by their version, reported as they come

        def unknown() -> Iterator[SourceFile]:
            for item in self._known.split(files):
                if isinstance(item, IngestResult):
                    known.append(item)
                else:
                    yield item

        fetched_files = self._fetcher.ahead(unknown())
        for work in self._claimed(fetched_files, claimed_here, run_id):
            yield from _drain(known)
            if isinstance(work, IngestResult):
                yield work
                continue
            if not self.merging and self._reader.too_big_to_read_whole(work):
                yield from self._committer.commit_batch(batch)
                batch, batch_bytes = [], 0
                yield from self._committer.commit_stream(work)
                continue
            try:
                self._reader.read_whole(work)
            except IngestError as exc:
                yield self._settler.error(work, exc)
                continue
            if self.merging:  # one MERGE commit per file, in arrival order
                yield from self._committer.commit_batch([work])
                continue
            batch.append(work)
            batch_bytes += work.data.nbytes if work.data is not None else 0
            if (
                len(batch) >= self.config.batch_files
                or batch_bytes >= self.config.batch_bytes
                or time.monotonic() - batch[0].started >= self.config.batch_seconds
            ):
                yield from self._committer.commit_batch(batch)
                batch, batch_bytes = [], 0
        yield from _drain(known)
        yield from self._committer.commit_batch(batch)

    def _claimed(
        self, fetched_files: Iterable[Fetched], claimed_here: dict[str, str], run_id: str
    ) -> Iterator[Work | IngestResult]:
        """Each fetched file's claim, in order, small files claimed `CLAIM_GROUP` at a time
        (one ledger write group); a large file is claimed on its own, as it comes. The
        table is checked (`_check_ledger`) before the first claim."""

        def claim(group: list[Fetched]) -> list[Work | IngestResult]:
            if group:
                self._check_ledger(run_id)
            return self._claimer.claim_many(group, claimed_here, run_id)

        group: list[Fetched] = []
        for fetched in fetched_files:
            large = fetched.file.size is not None and fetched.file.size > self.config.stream_bytes
            if large or len(group) >= CLAIM_GROUP:
                yield from claim(group)
                group = []
            group.append(fetched)
            if large:
                yield from claim(group)
                group = []
        yield from claim(group)

    def ingest_one(self, file: SourceFile, *, run_id: str | None = None) -> IngestResult:
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
        run_id = run_id or new_run_id()
        result = self._ingest_one(file, run_id)
        result.run_id = run_id
        return result

    def _ingest_one(self, file: SourceFile, run_id: str) -> IngestResult:
        self._check_ledger(run_id)
        fetched = self._fetcher.fetch(file)
        if isinstance(fetched.copy, SourceGoneError):
            raise fetched.copy
        if isinstance(fetched.copy, Exception):
            return self._settler.unread(fetched, fetched.copy, run_id)
        with self._group_path.one_at_a_time(fetched.copy.sha256):
            # One file, from an arrival event or a replay: new content is the common case.
            work = self._claimer.claim(fetched, {}, run_id, expect_new=True)
            if isinstance(work, IngestResult):
                return work
            try:
                return self._group_path.ingest(work)
            except Exception as exc:
                return self._committer.failed(work, exc)
            finally:
                work.copy.discard()

    def give_back_claims(self, reason: str) -> int:
        """Give back every claim this ingestor holds, attempts not counted; return how many.

        For a run interrupted (SIGINT, SIGTERM) between claim and settle: its
        files are claimable at once by the next run, as if never claimed.
        """
        return self._settler.give_back_held(reason)

    @property
    def merging(self) -> bool:
        """Whether files are upserted (`mode=merge`): each read whole, one MERGE commit each."""
        return self.config.mode == "merge"

    def close(self) -> None:
        """Stop lease renewal, let staging clean-up finish and close the ledger."""
        self._keeper.close()
        self._group_path.close()
        self.ledger.close()

    def __enter__(self) -> IdempotentIngestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the table --------------------------------------------------------------------

    def _precheck_table(self) -> None:
        """Refuse a local table deleted or replaced since the ledger recorded it, before any
        file is skipped as known, without loading deltalake (`_check_ledger` does the rest
        before the first claim)."""
        from ingest_core.pipeline import table_identity

        table_identity.precheck_local(self.ledger, self.table_key, self.config.table_uri)

    def _check_ledger(self, run_id: str) -> None:
        """Check the table before the first claim, and rebuild a lost ledger (once).

        The table must be the one the ledger describes and keep transaction
        ids long enough (`pipeline.table_identity`). A ledger holding no row
        of a table that has rows was deleted or replaced. Where the table's
        transaction ids expire, the guard alone would let a file older than
        that window in again: every content the lineage column names is
        recorded `succeeded` before any claim.
        """
        with self._ledger_check:
            if self._ledger_checked:
                return
            from ingest_core.pipeline import table_identity

            uri = self.config.table_uri
            recorded = table_identity.read_recorded(self.ledger, self.table_key)
            if table_identity.local_table_absent(uri):
                # no table yet: nothing to recover, and deltalake stays unimported
                if table_identity.verify(self.ledger, self.table_key, uri, None, recorded):
                    self._committer.on_created = self._record_created
                self._ledger_checked = True
                return
            from ingest_core.delta import lineage

            try:
                with self._committer.lock:
                    snapshot = self.target.snapshot()
            except ConfigurationError:  # an unusable table: the first commit says so, per file
                return
            # a deleted or replaced table, or one forgetting ids too soon: raise, every time
            table_identity.verify_txn_retention(
                self.config.table_uri, snapshot, self.config.txn_retention
            )
            if table_identity.verify(self.ledger, self.table_key, uri, snapshot, recorded):
                self._committer.on_created = self._record_created
            self._ledger_checked = True
            if self.ledger.records(table=self.table_key, limit=1):
                return
            if snapshot is None or lineage.txn_retention_s(snapshot) is None:
                return  # ids kept for good: the guard recognises every file
            for sha256, (path, rows) in lineage.contents(snapshot).items():
                self._settler.recovered(sha256, path, rows, self.config.lease_seconds, run_id)

    def _record_created(self) -> None:
        """Record the id of the table this ingestor's first commit created (the ledger's table)."""
        from ingest_core.pipeline import table_identity

        if table_identity.record_created(self.ledger, self.table_key, self.target.ref.load()):
            self._committer.on_created = None

    @property
    def table_ref(self) -> TableRef:
        """Where the table is and how to reach it."""
        return self._committer.target.ref

    @property
    def target(self) -> DeltaTarget:
        """The Delta table, its snapshot reused across commits (deltalake imported here)."""
        return self._committer.target

    @property
    def bad_rows_uri(self) -> str | None:
        """The bad-rows table of `bad_rows=rescue` (None: bad rows quarantine the file)."""
        return self._committer.bad_rows_uri

    @property
    def group(self) -> GroupCommit:
        """This table's group commit (the event path's, shared by its threads)."""
        return self._group_path.group
