"""The ways rows reach a table, each one guarded commit from the snapshot the ids were checked on.

| writer         | for                                          | data files written by      |
| -------------- | -------------------------------------------- | -------------------------- |
| `BatchAppend`  | small files read whole, many in one commit   | delta-rs                   |
| `StreamAppend` | one large file, streamed in bounded memory   | pyarrow (local) / delta-rs |
| `CopyAsIs`     | a parquet file whose columns are the table's | a byte-for-byte copy       |

Each `write` takes the `DeltaTarget`, the snapshot `DeltaTarget.snapshot` returned
(the one whose transaction ids the caller checked: None creates the table) and
the rows, and returns the version committed. The crash points `during_write`
(data files written, no commit) and `after_commit` fire here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from ingest_core.config import local_path
from ingest_core.delta.data_files import copy_file, delta_schema, writable, write_files
from ingest_core.delta.target import DeltaTarget, FileEntry
from ingest_core.faults import crash_at_end, crash_point
from ingest_core.formats import ORIGINAL_NAME_KEY

KEPT_FIELD_METADATA = (ORIGINAL_NAME_KEY,)
"""Arrow field metadata carried into the table's columns (delta-rs's writer drops it)."""


@dataclass(frozen=True)
class BatchAppend:
    """Several files' rows, conformed to one schema, appended in one commit."""

    schema: pa.Schema
    """The schema every table in `tables` has (the table's, plus new columns under merge)."""
    merge_schema: bool

    def write(
        self, target: DeltaTarget, snapshot: DeltaTable | None,
        tables: list[tuple[FileEntry, pa.Table]],
    ) -> int:
        """Append every file's rows in one commit carrying one transaction id per file."""
        merged = pa.concat_tables([t for _, t in tables])
        version = target.append(
            snapshot, crash_at_end(merged, "during_write"), [e for e, _ in tables],
            merge_schema=self.merge_schema,
        )
        crash_point("after_commit")
        if self.merge_schema:
            target.keep_column_metadata(self.schema, KEPT_FIELD_METADATA)
        return version


@dataclass(frozen=True)
class StreamAppend:
    """One file's batches, streamed into a commit of its own.

    Into a local table whose columns pyarrow writes as delta-rs would
    (`data_files.writable`), pyarrow writes the parquet and delta-rs commits
    it; anything else goes through `write_deltalake`.
    """

    schema: pa.Schema
    merge_schema: bool

    def write(
        self, target: DeltaTarget, snapshot: DeltaTable | None, entry: FileEntry,
        batches: Iterator[pa.RecordBatch], rows: RowCount,
    ) -> int:
        """Write `batches` (all of `schema`) and commit them with `entry`'s transaction id.

        `rows` counts the batches as they pass; a failure inside them (a parse
        error, a changed source) is raised as it is, not as delta-rs's wrapper.
        """
        failure: list[BaseException] = []

        def watched() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as exc:
                failure.append(exc)
                raise

        write_here = target.ref.is_local and writable(snapshot, self.schema, target.partition_by)
        try:
            if write_here:
                actions = write_files(local_path(target.uri), watched(), self.schema)
                crash_point("during_write")
                version = target.commit_files(
                    snapshot, actions, delta_schema(self.schema),
                    [FileEntry(entry.sha256, entry.path, rows.value)],
                )
            else:

                def ending() -> Iterator[pa.RecordBatch]:
                    yield from watched()
                    crash_point("during_write")  # delta-rs commits once the stream ends

                version = target.append(
                    snapshot, pa.RecordBatchReader.from_batches(self.schema, ending()),
                    [entry], merge_schema=self.merge_schema,
                )
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        crash_point("after_commit")
        if self.merge_schema:
            target.keep_column_metadata(self.schema, KEPT_FIELD_METADATA)
        return version


class RowCount:
    """Rows counted as a stream passes (known once it has ended)."""

    def __init__(self) -> None:
        self.value = 0

    def counting(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """`batches`, counted."""
        for batch in batches:
            self.value += batch.num_rows
            yield batch


@dataclass(frozen=True)
class CopyAsIs:
    """A parquet file committed byte for byte: its columns are the table's already."""

    schema: pa.Schema

    @staticmethod
    def fits(target: DeltaTarget, snapshot: DeltaTable | None, schema: pa.Schema) -> bool:
        """Whether a file of `schema` can be committed as it is into this table."""
        return target.ref.is_local and writable(snapshot, schema, target.partition_by)

    def write(
        self, target: DeltaTarget, snapshot: DeltaTable | None, entry: FileEntry, source: Path,
        verify: Callable[[], None],
    ) -> int:
        """Copy `source` into the table folder and commit it with `entry`'s transaction id.

        `verify` raises if the source changed while it was copied (nothing is committed).
        """
        actions = copy_file(local_path(target.uri), source)
        verify()
        crash_point("during_write")
        version = target.commit_files(snapshot, actions, delta_schema(self.schema), [entry])
        crash_point("after_commit")
        return version
