"""One Delta table: where it is, how to reach it, and its snapshot, reused.

Every file's rows are committed with a transaction id `ingest-<sha256>` in the
same commit. Before writing, the caller checks those ids on a snapshot and
writes from that very snapshot object: delta-rs then fails a commit that
races another carrying the same id (`CommitFailedError`), where a writer that
reloaded the table would have committed a duplicate. After any error, reload
and look again: a failed call may still have committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from deltalake import (
    CommitProperties,
    DeltaTable,
    Schema,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from ingest_core.config import StorageConfig, is_local, table_key
from ingest_core.delta.errors import commit_conflict, is_table_created_meanwhile
from ingest_core.errors import ConfigurationError

APP_ID_PREFIX = "ingest-"
METADATA_KEY = "ingest.files"
RUN_ID_KEY = "ingest.run_id"
"""Commit metadata: the run that made the commit."""
RUN_IDS_KEY = "ingest.run_ids"
"""Commit metadata: every run whose files the commit carries (a JSON list, sorted)."""
RELOAD_AFTER_COMMITS = 100
"""Versions after which a reused snapshot is loaded afresh (from the newest checkpoint)."""
ROW_GROUP_ROWS = 512 * 1024
"""delta-rs holds a whole row group per open file: with its 1Mi-row default the
5M-row benchmark file peaked near 400 MiB, with 512Ki (and 32Ki-row input
batches) near 315 MiB, and faster than 256Ki; files ~7% larger until compacted."""
HISTORY_SEARCH_LIMIT = 2_000
"""How many recent commits a recovery searches for a file's commit."""


def app_id(sha256: str) -> str:
    """The Delta transaction id of one content."""
    return APP_ID_PREFIX + sha256


@dataclass(frozen=True)
class TableRef:
    """Where a Delta table is: its URI, its ledger key, and how to reach its storage.

    Built once per table (`TableRef.of`); `storage_options()` is asked again for
    each load, since under Entra identity it carries a bearer token renewed
    near expiry.
    """

    uri: str
    key: str
    """The ledger's name for the table (`config.table_key`)."""
    storage: StorageConfig = field(default_factory=StorageConfig, compare=False)

    @classmethod
    def of(cls, uri: str, storage: StorageConfig | None = None) -> TableRef:
        """The reference of the table at `uri` (a local path or abfs(s):// URI)."""
        return cls(uri=uri, key=table_key(uri), storage=storage or StorageConfig())

    @property
    def is_local(self) -> bool:
        """True for a table on a local path."""
        return is_local(self.uri)

    def storage_options(self) -> dict[str, str] | None:
        """deltalake storage options (None for a local table); cheap to ask again."""
        if self.is_local:
            return None
        from ingest_core.azure.auth import delta_storage_options

        return delta_storage_options(self.uri, self.storage)

    def load(self, version: int | None = None) -> DeltaTable | None:
        """The table (at `version`, else the latest), or None when it does not exist yet."""
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.storage_options())
        except TableNotFoundError:
            return None
        except OSError as exc:
            if "ContainerNotFound" not in str(exc):
                _raise_if_refused(self.uri, exc)
                raise
            raise ConfigurationError(
                f"table {self.uri}: its container does not exist; create it or fix the table URI"
            ) from None


def _raise_if_refused(uri: str, exc: OSError) -> None:
    """Raise StorageRefusedError (exit 2, no attempt counted) when the storage refuses access."""
    from ingest_core.delta.errors import storage_refusal
    from ingest_core.errors import StorageRefusedError

    refused = storage_refusal(exc)
    if refused is not None:
        what, fix = refused
        raise StorageRefusedError(
            f"table {uri}: {what}; {fix}. No attempt was counted: run again once fixed"
        ) from None


TXN_RETENTION = "delta.setTransactionRetentionDuration"
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def interval_seconds(text: str) -> float:
    """Seconds of a Delta interval setting (`interval 30 days`); 0 when it cannot be read."""
    parts = text.lower().replace("interval", "").split()
    if len(parts) != 2:
        return 0.0
    try:
        amount = float(parts[0])
    except ValueError:
        return 0.0
    return amount * _UNITS.get(parts[1].rstrip("s"), 0)


def table_properties(*, lineage: bool, txn_retention: str | None) -> dict[str, str]:
    """The properties a table this project creates gets.

    Transaction ids expire after `txn_retention` only where lineage columns
    can still recognise an old file (`delta.lineage`); without lineage they are
    the only record in the table, and are kept for good.
    """
    if lineage and txn_retention:
        return {TXN_RETENTION: txn_retention}
    return {}


def table_id(table: DeltaTable) -> str:
    """The Delta table's id (`metaData.id`): a table deleted and created again gets another."""
    return str(table.metadata().id)


def open_table(uri: str, storage: StorageConfig) -> DeltaTable | None:
    """The Delta table at `uri` (local or abfs(s)://), or None when it does not exist yet."""
    return TableRef.of(uri, storage).load()


def plain_partitions(
    data: pa.Table | pa.RecordBatchReader, columns: Sequence[str]
) -> pa.Table | pa.RecordBatchReader:
    """`data` with its dictionary-encoded partition columns decoded.

    delta-rs 1.6.6 cannot partition by a dictionary column ("failed to read
    partition column value as Scalar"); other dictionary columns stay encoded.
    """
    schema = data.schema
    coded = {n for n in columns if n in schema.names and pa.types.is_dictionary(
        schema.field(n).type)}
    if not coded:
        return data
    plain = pa.schema([f.with_type(f.type.value_type) if f.name in coded else f for f in schema])
    if isinstance(data, pa.Table):
        return data.cast(plain)
    return pa.RecordBatchReader.from_batches(plain, (b.cast(plain) for b in data))


@dataclass(frozen=True)
class FileEntry:
    """A file in a commit: what goes in the commit's metadata."""

    sha256: str
    path: str
    rows: int | None
    run_id: str | None = None
    """The run that claimed the file."""
    generation: int = 0
    """The ledger row's generation: the commit carries transaction version `generation + 1`."""


@dataclass(frozen=True)
class Landing:
    """Where a file's rows are: the Delta version and the rows it added."""

    version: int | None
    rows: int | None


class DeltaTarget:
    """One Delta table, its loaded snapshot reused and refreshed incrementally.

    A snapshot kept across many commits gets slower to write from (measured:
    9 ms fresh against 70 ms for one reused over 1,000 commits), so it is
    reloaded from the newest checkpoint every `RELOAD_AFTER_COMMITS` versions.
    """

    def __init__(
        self,
        table: TableRef | str,
        partition_by: Sequence[str] = (),
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.ref = table if isinstance(table, TableRef) else TableRef.of(table)
        self.partition_by = tuple(partition_by)
        """Partition columns for creating the table; an existing table keeps its own."""
        self.properties = dict(properties or {})
        """Table properties for creating the table (`table_properties`)."""
        self._table: DeltaTable | None = None
        self._options: dict[str, str] | None = None
        self._loaded_at = -1

    @property
    def uri(self) -> str:
        """The table's URI."""
        return self.ref.uri

    def snapshot(self) -> DeltaTable | None:
        """The latest snapshot (None while the table does not exist yet).

        The loaded snapshot is brought forward incrementally; it is loaded afresh
        every `RELOAD_AFTER_COMMITS` versions, and when the storage options
        changed (a renewed bearer token).
        """
        options = self.ref.storage_options()
        if self._table is not None and options == self._options:
            self._table.update_incremental()
            if self._table.version() - self._loaded_at < RELOAD_AFTER_COMMITS:
                return self._table
        self._options = options
        self._table = self.ref.load()
        if self._table is not None:
            self._loaded_at = self._table.version()
        return self._table

    def current(self) -> DeltaTable | None:
        """The snapshot `snapshot` last returned, not refreshed: the one the ids were checked on."""
        return self._table

    def forget(self) -> None:
        """Drop the loaded snapshot; the next `snapshot` loads the table afresh."""
        self._table = None

    @staticmethod
    def schema(table: DeltaTable | None) -> pa.Schema | None:
        """The table's schema as Arrow, or None for a table not created yet."""
        return None if table is None else pa.schema(table.schema().to_arrow())

    @staticmethod
    def has_landed(table: DeltaTable | None, sha256: str, generation: int = 0) -> bool:
        """Whether this snapshot holds the transaction id of `sha256` at `generation` or later.

        A content reopened by `ingest reconcile --apply` (its rows lost to a restore,
        a delete or an overwrite that left its id in the log) is re-ingested under
        generation 1, 2, ...: its commit carries transaction version `generation + 1`.
        """
        if table is None:
            return False
        version = table.transaction_version(app_id(sha256))
        return version is not None and version > generation

    def locate(self, table: DeltaTable, sha256: str, generation: int = 0) -> Landing:
        """Find the commit that carried `sha256` (recovery only: reads recent history).

        delta-rs lists `history()` down from the newest commit in storage but
        numbers it down from the snapshot's version: while others commit, the
        numbers run behind. So the snapshot is brought up to date before and
        after the read; if commits landed meanwhile, the found commit's version
        lies in a small range, settled by which versions hold its transaction id.
        That is done on a table of its own: `table` is left as it is, since the
        caller may write from it.
        """
        latest = self._load()
        top = latest.version()
        history = latest.history(HISTORY_SEARCH_LIMIT)
        latest.update_incremental()
        shift = latest.version() - top
        for index, commit in enumerate(history):
            raw = commit.get(METADATA_KEY)
            if not raw:
                continue
            for entry in json.loads(str(raw)):
                if entry.get("sha256") == sha256:
                    rows = entry.get("rows")
                    if rows is None:
                        rows = commit.get("operationMetrics", {}).get("num_added_rows")
                    version = self._first_holding(
                        sha256, top - index, top - index + shift, generation
                    )
                    return Landing(version=version, rows=rows)
        return Landing(version=None, rows=None)

    def _first_holding(self, sha256: str, low: int, high: int, generation: int = 0) -> int:
        """The first version in `low..high` whose snapshot holds the transaction id of `sha256`."""
        while low < high:
            middle = (low + high) // 2
            at = self._load(middle)
            if self.has_landed(at, sha256, generation):
                high = middle
            else:
                low = middle + 1
        return low

    def keep_column_metadata(self, schema: pa.Schema, keys: Sequence[bytes]) -> None:
        """Set the field metadata `keys` of `schema` on the table's columns where it is missing.

        delta-rs's writer leaves Arrow field metadata out of the Delta schema;
        a column keeps it once set. Costs a commit only when something is missing.
        """
        table = self.snapshot()
        if table is None:
            return
        stored = {f.name: f.metadata for f in table.schema().fields}
        for column in schema:
            wanted = {k.decode(): v.decode() for k, v in (column.metadata or {}).items()
                      if k in keys}
            if wanted and column.name in stored and any(
                stored[column.name].get(k) != v for k, v in wanted.items()
            ):
                table.alter.set_column_metadata(column.name, wanted)

    def append(
        self,
        table: DeltaTable | None,
        data: pa.Table | pa.RecordBatchReader,
        files: list[FileEntry],
        *,
        merge_schema: bool,
    ) -> int:
        """Append `data` in one commit carrying one transaction id per file.

        `table` must be the snapshot the caller checked the ids on (None creates
        the table). Returns the version committed.
        """
        partitions = (
            self.partition_by if table is None else table.metadata().partition_columns
        )
        data = plain_partitions(data, partitions)
        properties = commit_properties(files, creating=table is None)
        options: dict[str, Any] = {
            "mode": "append",
            "schema_mode": "merge" if merge_schema else None,
            "commit_properties": properties,
            # name the codec: WriterProperties without one writes uncompressed parquet
            "writer_properties": WriterProperties(
                compression="SNAPPY", max_row_group_size=ROW_GROUP_ROWS
            ),
        }
        if table is not None:
            write_deltalake(table, data, **options)
            return table.version()
        if self.partition_by:
            options["partition_by"] = list(self.partition_by)
        if self.properties:
            options["configuration"] = self.properties
        # create or fail: appending to a table a rival created after our check would
        # write from a snapshot nobody checked the ids on
        options["mode"] = "error"
        with self._creating():
            write_deltalake(self.uri, data, storage_options=self.ref.storage_options(), **options)
        return 0

    def commit_files(
        self,
        table: DeltaTable | None,
        actions: list[AddAction],
        schema: pa.Schema,
        files: list[FileEntry],
    ) -> int:
        """Commit data files already written into the table folder, as `append` would.

        `schema` must be the table's (`data_files.writable`); None creates the
        table. Returns the version committed.
        """
        properties = commit_properties(files, creating=table is None)
        if table is None:
            with self._creating():
                create_table_with_add_actions(
                    self.uri, Schema.from_arrow(schema), actions, mode="error",
                    configuration=self.properties or None,
                    storage_options=self.ref.storage_options(), commit_properties=properties,
                )
            return 0
        read = table.version()
        table.create_write_transaction(
            list[AddAction | RemoveAction](actions),
            "append",
            Schema.from_arrow(schema),
            commit_properties=properties,
        )
        # the call does not move `table`: find the version that took the commit
        latest = self._load().version()
        return self._first_holding(files[0].sha256, read + 1, latest, files[0].generation)

    def _load(self, version: int | None = None) -> DeltaTable:
        """A table of its own (at `version`), leaving the reused snapshot as it is."""
        return DeltaTable(self.uri, version=version, storage_options=self.ref.storage_options())

    @contextmanager
    def _creating(self) -> Iterator[None]:
        """Report a table created by a rival meanwhile as a failed commit."""
        try:
            yield
        except Exception as exc:
            if not is_table_created_meanwhile(exc):
                raise
            raise commit_conflict(f"table {self.uri} was created meanwhile: {exc}") from exc


def run_metadata(run_id: str | None, carried: Iterable[str | None]) -> dict[str, str]:
    """The commit metadata naming its runs: `run_id` made it, `carried` are its files' runs.

    `run_id` None: the files' one run, if they have exactly one.
    """
    run_ids = sorted({r for r in carried if r})
    if run_id is None and len(run_ids) == 1:
        run_id = run_ids[0]
    out = {RUN_IDS_KEY: json.dumps(run_ids)} if run_ids else {}
    if run_id:
        out[RUN_ID_KEY] = run_id
    return out


def commit_properties(files: list[FileEntry], *, creating: bool) -> CommitProperties:
    """One transaction id per file, and the files and their runs in the commit's metadata.

    `creating`: no snapshot guards the ids, so the commit fails rather than
    rebase onto a rival's first commit.
    """
    now_ms = int(time.time() * 1000)
    return CommitProperties(
        app_transactions=[
            Transaction(app_id(f.sha256), f.generation + 1, now_ms) for f in files
        ],
        custom_metadata={
            METADATA_KEY: json.dumps(
                [{"sha256": f.sha256, "path": f.path, "rows": f.rows, "run_id": f.run_id}
                 for f in files]
            ),
            **run_metadata(None, (f.run_id for f in files)),
        },
        # creating the table, no snapshot guards the ids: fail rather than rebase onto
        # a rival's first commit, which may carry the same ids
        max_commit_retries=0 if creating else None,
    )
