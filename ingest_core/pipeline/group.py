"""Stage 4 on the event path: stage each file, and share Delta commits between invocations.

Thread-safe: one per table per process, called by every invocation's thread.
A file is read, conformed and written as one parquet data file into the
table folder, then committed with every file staged by then
(`ingest_core.delta.group_commit`). A file the group commit cannot take goes
through the `Committer` as the command line's files do, one at a time.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig
from ingest_core.errors import IngestError
from ingest_core.pipeline.commit import Committer
from ingest_core.pipeline.read import Reader
from ingest_core.pipeline.settle import Settler
from ingest_core.pipeline.work import Work
from ingest_core.results import IngestResult

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest_core.delta.group_commit import GroupCommit, Intent


class GroupPath:
    """The event path of one table: staging, group commit, and the way round it."""

    def __init__(
        self, config: IngestConfig, reader: Reader, settler: Settler, committer: Committer
    ) -> None:
        self.config = config
        self._reader = reader
        self._settler = settler
        self._committer = committer
        self._group: GroupCommit | None = None
        self._in_flight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @property
    def _merging(self) -> bool:
        return self.config.mode == "merge"

    def close(self) -> None:
        """Let the group commit's background clean-up finish."""
        if self._group is not None:
            self._group.close()

    @property
    def group(self) -> GroupCommit:
        """This table's group commit (one per ingestor, shared by its threads)."""
        with self._lock:
            if self._group is None:
                from ingest_core.delta.group_commit import GroupCommit

                self._group = GroupCommit(self._committer.target.ref)
            return self._group

    @contextmanager
    def one_at_a_time(self, sha256: str) -> Iterator[None]:
        """Hold one content in this process: a second thread with the same bytes waits.

        Both would claim it under the same owner token; the second then finds it settled.
        """
        while True:
            with self._lock:
                running = self._in_flight.get(sha256)
                if running is None:
                    self._in_flight[sha256] = threading.Event()
                    break
            running.wait()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.pop(sha256).set()

    def ingest(self, work: Work) -> IngestResult:
        """Stage a claimed file, then commit it with whatever else is staged; its result."""
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
        version: int | None = committed.version
        rows = committed.rows
        if rows is None:  # carried by a commit now in the log's base snapshot: look it up
            with self._committer.lock:
                version, rows = self._committer.landing(work, version, None)
        return self._settler.ingested(work, version, rows)

    def _stage(self, work: Work, group: GroupCommit) -> tuple[Intent, int] | IngestResult:
        """Read, conform and stage one file; its result instead when it goes another way."""
        from ingest_core.delta.data_files import delta_schema, write_file

        if work.record.generation:  # reopened: the log may hold an earlier generation's id
            return self._ingest_alone(work)
        if work.record.attempt > 1:  # an earlier attempt may have committed it: look first
            found = group.find(work.sha256)
            if found is not None:
                with self._committer.lock:
                    return self._committer.settle_found(work, found.version, found.rows)
            with self._committer.lock:
                snapshot = self._committer.target.snapshot()
                rows = self._committer.rows_by_lineage(work, snapshot)
                version = None
                if rows is not None and snapshot is not None:
                    version = self._committer.target.locate(snapshot, work.sha256).version
            if rows is not None:
                return self._settler.found(work, version, rows)
        checked_at = group.snapshot_version  # commits after it are read before committing
        stored = group.table_schema()
        if self._reader.too_big_to_read_whole(work) or not self._stageable(stored):
            return self._ingest_alone(work)
        try:
            self._reader.read_whole(work)
        except IngestError as exc:
            return self._settler.error(work, exc)
        assert stored is not None
        conformed = self._reader.conform([work], stored)
        if conformed.refused:
            return self._settler.error(work, conformed.refused[0][1])
        self._committer.keep_bad_rows([work])
        if conformed.empty:
            return self._settler.ingested(work, None, 0)
        table = conformed.ready[0][1]
        if delta_schema(table.schema) != stored:
            return self._ingest_alone(work)  # new columns: a commit of its own changes the schema
        with tempfile.TemporaryDirectory(prefix="ingest-stage-") as folder:
            local = Path(folder) / "data.parquet"
            write_file(local, table)
            intent = group.stage(work.sha256, work.file.uri, local, checked_at, work.run_id)
        work.data = None
        return intent, table.num_rows

    def _stageable(self, stored: pa.Schema | None) -> bool:
        """Whether files of this table can go through the group commit."""
        from ingest_core.delta.data_files import writable

        if (
            stored is None or self.config.partition_by or self._merging
            or not self.group.log.appendable()
        ):
            return False
        return writable(self.group.log.base, stored, ())

    def _ingest_alone(self, work: Work) -> IngestResult:
        """A commit of its own, as `ingest` gives a file (serialised within this process)."""
        with self._committer.lock:
            if not self._merging and self._reader.too_big_to_read_whole(work):
                results = list(self._committer.commit_stream(work))
            else:
                if work.data is None:
                    try:
                        self._reader.read_whole(work)
                    except IngestError as exc:
                        return self._settler.error(work, exc)
                results = list(self._committer.commit_batch([work]))
        return results[0]
