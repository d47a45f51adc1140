"""The ways rows reach a table, each one guarded commit from the snapshot the ids were checked on.

| writer         | for                                          | data files written by      |
| -------------- | -------------------------------------------- | -------------------------- |
| `BatchAppend`  | small files read whole, many in one commit   | delta-rs                   |
| `StreamAppend` | one large file, streamed in bounded memory   | pyarrow (local) / delta-rs |
| `CopyAsIs`     | a parquet file whose columns are the table's | a byte-for-byte copy       |
| `MergeUpsert`  | one file's rows upserted on key columns      | delta-rs (MERGE)           |

Each `write` takes the `DeltaTarget`, the snapshot `DeltaTarget.snapshot` returned
(the one whose transaction ids the caller checked: None creates the table) and
the rows, and returns the version committed. The crash points `during_write`
(data files written, no commit) and `after_commit` fire here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties

from ingest_core.config import local_path
from ingest_core.delta.data_files import copy_file, delta_schema, writable, write_files
from ingest_core.delta.target import ROW_GROUP_ROWS, DeltaTarget, FileEntry, commit_properties
from ingest_core.errors import SchemaIncompatibleError
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
                    [FileEntry(entry.sha256, entry.path, rows.value, entry.generation)],
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


SOURCE, TARGET = "s", "t"
"""The aliases a merge's predicates use for the incoming and the stored rows."""
_ROW = "__ingest_row"
_SQL_TOKEN = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|([A-Za-z_][A-Za-z0-9_]*)""")


@dataclass(frozen=True)
class MergeUpsert:
    """One file's rows merged into the table on `keys`, in one commit carrying its id.

    Within the file, one row per key goes in: the one with the highest
    `sequence` (nulls lowest), then the last. A stored row is replaced when the
    incoming row's `sequence` is greater or equal (always, without a
    sequence), deleted instead when the incoming row matches `delete_when`;
    a key not stored yet is inserted unless its row matches `delete_when`.
    A deleted key leaves no trace: an older version merged after the delete
    inserts it again.
    """

    keys: tuple[str, ...]
    sequence: str | None = None
    delete_when: str | None = None
    """A SQL predicate over the incoming row's columns, e.g. `op = 'D'`."""
    merge_schema: bool = False

    def write(
        self, target: DeltaTarget, snapshot: DeltaTable | None, entry: FileEntry, table: pa.Table
    ) -> int:
        """Merge `table` (one file's conformed rows) and return the version committed.

        A file that changes no row (every version older than the stored one)
        is still committed: a commit with its transaction id and no data.
        `snapshot` is the one the file's transaction id was checked on. None:
        the table is created empty with the rows' schema (a commit with no
        transaction id, failing if a rival created it meanwhile), then merged
        into from that very version, so a rival's commit in between makes the
        merge fail rather than write the file twice.

        Raises:
            SchemaIncompatibleError: a key or the sequence column is missing, or a
                key is null.
        """
        rows = self.latest(table, entry.path)
        if snapshot is None:
            target.append(None, rows.slice(0, 0), [], merge_schema=True)
            snapshot = target.snapshot()
            assert snapshot is not None
        on = " AND ".join(f"{TARGET}.{_quote(k)} = {SOURCE}.{_quote(k)}" for k in self.keys)
        newer = (f"{SOURCE}.{_quote(self.sequence)} >= {TARGET}.{_quote(self.sequence)}"
                 if self.sequence else None)
        merger = snapshot.merge(
            crash_at_end(rows, "during_write"), on, source_alias=SOURCE, target_alias=TARGET,
            merge_schema=self.merge_schema, streamed_exec=False,
            writer_properties=WriterProperties(compression="SNAPPY",
                                               max_row_group_size=ROW_GROUP_ROWS),
            commit_properties=commit_properties([entry], creating=False),
        )
        if self.delete_when is None:
            merger = merger.when_matched_update_all(predicate=newer)
            merger = merger.when_not_matched_insert_all()
        else:
            deleted = f"COALESCE(({qualified(self.delete_when, rows.schema.names)}), FALSE)"
            merger = merger.when_matched_delete(
                predicate=deleted if newer is None else f"{deleted} AND {newer}")
            merger = merger.when_matched_update_all(
                predicate=f"NOT {deleted}" if newer is None else f"NOT {deleted} AND {newer}")
            merger = merger.when_not_matched_insert_all(predicate=f"NOT {deleted}")
        read = snapshot.version()
        merger.execute()
        version = snapshot.version()
        if version == read:  # no row changed, so delta-rs committed nothing: commit the id alone
            version = target.commit_files(snapshot, [], DeltaTarget.schema(snapshot), [entry])
        crash_point("after_commit")
        return version

    def latest(self, table: pa.Table, name: str) -> pa.Table:
        """One row per key: the highest sequence, then the last, in file order.

        Raises:
            SchemaIncompatibleError: a key or the sequence column is missing, or a
                key is null (such a row would match no stored row, and pile up).
        """
        missing = [c for c in (*self.keys, self.sequence) if c and c not in table.schema.names]
        if missing:
            raise SchemaIncompatibleError(
                f"{name}: no column {', '.join(missing)} for the merge (keys "
                f"{', '.join(self.keys)}); fix the file or the merge settings, then "
                "`ingest quarantine release` it and `ingest retry`"
            )
        for key in self.keys:
            nulls = table.column(key).null_count
            if nulls:
                raise SchemaIncompatibleError(
                    f"{name}: merge key {key} is null in {nulls} rows; fix the file, then "
                    "`ingest quarantine release` it and `ingest retry`"
                )
        if _unique(table, self.keys):
            return table  # the usual case: one hash of the keys, no sort, no copy
        positions = pc.indices_nonzero(pa.repeat(True, table.num_rows))
        ordered = table
        if self.sequence is not None:
            sequence = table.column(self.sequence)
            keys = pa.table({"valid": pc.is_valid(sequence), "seq": sequence, _ROW: positions})
            order = pc.sort_indices(keys, sort_keys=[  # nulls lowest, on any pyarrow
                ("valid", "ascending"), ("seq", "ascending"), (_ROW, "ascending")])
            ordered = table.take(order)
        keyed = ordered.select(list(self.keys)).append_column(_ROW, positions)
        last = keyed.group_by(list(self.keys), use_threads=False).aggregate([(_ROW, "max")])
        return ordered.take(last.sort_by(f"{_ROW}_max").column(f"{_ROW}_max"))


def _unique(table: pa.Table, keys: tuple[str, ...]) -> bool:
    """Whether no two rows of `table` share their `keys`."""
    groups = table.select(list(keys)).group_by(list(keys), use_threads=False).aggregate([])
    return groups.num_rows == table.num_rows


def qualified(predicate: str, columns: list[str]) -> str:
    """`predicate` with each name of a column in `columns` read as the incoming row's.

    `op = 'D'` becomes `s."op" = 'D'`; text in single quotes and names already
    qualified (`t.op`) are left alone.
    """

    def one(token: re.Match[str]) -> str:
        literal, quoted, name = token.groups()
        if literal is not None:
            return literal
        if predicate[: token.start()].rstrip().endswith(".") or predicate[
            token.end():
        ].lstrip().startswith("."):
            return token.group()
        bare = name if name is not None else quoted[1:-1].replace('""', '"')
        return f"{SOURCE}.{_quote(bare)}" if bare in columns else token.group()

    return _SQL_TOKEN.sub(one, predicate)


def _quote(name: str) -> str:
    """A column name as a SQL identifier (quoted: unquoted names are folded to lower case)."""
    return '"' + name.replace('"', '""') + '"'
