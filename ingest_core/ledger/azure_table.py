"""The production ledger: one Azure Table entity per (target table, content sha256).

Keys: Table keys forbid `/ \\ # ?` and control characters, so neither the
table URI nor a path goes into them. PartitionKey is a short hash of the
table id plus the first two hex digits of the sha256 (256 partitions per
table, so claims spread past the ~2,000 entities/s a partition serves);
RowKey is the sha256. The real table id and sha256 are stored as properties.

Conditions: a claim is `create_entity` (409 `ResourceExistsError` if the row
exists); every change is a REPLACE guarded by the ETag read
(`If-Match`, 412 `ResourceModifiedError` when it moved). Both become
`LedgerConflictError`; `BaseLedger` decides what they mean.

Index entities, in the same Azure table, written by `_insert` and `_replace`
(PartitionKeys start with `~`, after every row's hex PartitionKey, so a read
of rows is the range `PartitionKey lt '~'`):

    ~t                   RowKey sha256(table id)             the table registry
    ~i                   RowKey sha256(table id)             the Delta table id it describes
    ~o-<table>-<q>       RowKey sha256[-generation]           open rows (q: sha256[0] mod 4)
    ~p-<table>-<hh>      RowKey sha256(path) + "-" + sha256   paths (hh: sha256(path)[:2])

The row is the truth; an index entry may be stale, never missing:

- a registry entry is written before a table's first row (once per process);
- an open entry is written before a row becomes open (insert, or a replace
  from a state not known to be open) and deleted only after the row is
  `succeeded`, which is terminal. A reader re-reads the row behind each open
  entry, drops an entry whose row is `succeeded`, and keeps one whose row is
  missing (its insert may still be on its way);
- a path entry is written before a row first carries that path (as `path` or
  in `seen_paths`); entries are never deleted, readers re-check the row.

Rows written before the indexes existed are found once `reindex()` has run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingest_core.azure.auth import table_service
from ingest_core.azure.settings import account_settings
from ingest_core.config import StorageConfig
from ingest_core.errors import (
    ConfigurationError,
    LedgerConflictError,
    LedgerNotFoundError,
    LedgerUnavailableError,
)
from ingest_core.ledger.base import (
    OPEN_STATUSES,
    SUCCEEDED,
    BaseLedger,
    FileRecord,
    Where,
    bound_error,
)
from ingest_core.ledger.service_clock import ServiceClock, host_now, response_hook_of

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger("ingest_core.ledger")

SCHEME = "azure-table://"
MAX_PROPERTY_UTF16 = 30_000
"""UTF-16 code units kept in one string property: under the 64 KiB (32K units) limit."""

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_INT64_FIELDS = ("size", "delta_version", "rows")
_TIME_FIELDS = ("lease_until", "created_at", "updated_at")
_TEXT_FIELDS = ("status", "path", "source_etag", "owner", "run_id")
_INDEX = "~"
"""First character of every index PartitionKey: sorts after the rows' hex PartitionKeys."""
_REGISTRY = "~t"
_IDENTITY = "~i"
_BATCH = 100
"""Entities in one transaction (the service's limit)."""
_REINDEX_CHUNK = 20_000
"""Rows whose index entries `reindex` holds in memory before writing them."""
OPEN_PARTITIONS = 4
"""Partitions of a table's open entries (each serves ~2,000 entity writes a second)."""
_RETIRE_AFTER_S = 5.0
"""How long queued open-entry deletions gather before one batch a partition is sent.

A transaction costs about as much as five single deletes (client and
service), so batches must carry more than a few entries to be worth it; an
open entry left a little longer only costs a reader one row read."""
_READERS = 8
"""Threads reading the rows an index names: the reads are independent round trips."""
_INDEXERS = 4
"""Threads writing one change's index entries at once (a claim writes two: path, open)."""


def table_partition(table: str) -> str:
    """The PartitionKey prefix of a target table: 16 hex digits of its id's sha256."""
    return hashlib.sha256(table.encode()).hexdigest()[:16]


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _open_partition(table: str, sha256: str) -> str:
    """Four partitions a table: 8,000 entity writes/s, and batched deletes stay large."""
    return f"{_INDEX}o-{table_partition(table)}-{int(sha256[0], 16) % OPEN_PARTITIONS}"


def _path_keys(table: str, path: str) -> tuple[str, str]:
    """PartitionKey and RowKey prefix of a path's entries (RowKeys forbid `/`, `#`: hash)."""
    digest = _hex(path)
    return f"{_INDEX}p-{table_partition(table)}-{digest[:2]}", digest + "-"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _bounded(text: str) -> str:
    """Cut a string to what one Table property holds."""
    if _utf16_len(text) <= MAX_PROPERTY_UTF16:
        return text
    cut = text[: MAX_PROPERTY_UTF16 // 2 - 20]
    return cut + " ...[truncated]"


def _seen_paths_json(paths: list[str]) -> str:
    """The paths as a JSON list, dropping the oldest until it fits one property."""
    kept = list(paths)
    while True:
        text = json.dumps(kept, ensure_ascii=False)
        if _utf16_len(text) <= MAX_PROPERTY_UTF16 or not kept:
            return text
        kept.pop(0)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    stamp: datetime = value
    return datetime(
        stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second,
        stamp.microsecond, tzinfo=UTC,
    )


def _int(value: Any) -> int | None:
    if value is None:
        return None
    return int(getattr(value, "value", value))


class AzureTableLedger(BaseLedger):
    """Ledger rows in an Azure Table (Azurite in tests)."""

    def __init__(
        self, client: TableClient, clock: Callable[[], datetime] | None = None,
        *, service_clock: ServiceClock | None = None,
    ) -> None:
        """`clock` replaces the ledger's clock outright (tests); without it, the ledger's
        time is the Table service's (`service_clock`, learnt from its responses)."""
        super().__init__(clock)
        self.service_clock = None if clock is not None else (service_clock or ServiceClock())
        self._client = client
        self._client_hook = response_hook_of(client) if self.service_clock is not None else None
        self._registered: set[str] = set()
        self._lock = threading.Lock()
        self._retired: list[tuple[str, str]] = []
        """Open entries whose rows have succeeded, deleted in batches by `_retirer`."""
        self._retire = threading.Condition()
        self._retirer: threading.Thread | None = None
        self._closing = False
        self._deleting = threading.Lock()
        self._index_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_uri(
        cls, uri: str, storage: StorageConfig, clock: Callable[[], datetime] | None = None,
        *, read_only: bool = False, host_clock: Callable[[], datetime] | None = None,
    ) -> AzureTableLedger:
        """Open `azure-table://TABLE_NAME` in the configured account, creating the table.

        With `read_only`, a missing table raises `LedgerNotFoundError` instead.
        `host_clock` is this host's clock (default: the system's), which the
        service's `Date` headers correct; `clock` replaces the ledger's time outright.
        """
        service_clock = ServiceClock(host_clock or host_now)
        name = uri[len(SCHEME) :].strip("/") if uri.startswith(SCHEME) else ""
        if not _TABLE_NAME.fullmatch(name):
            raise ConfigurationError(
                f"ledger {uri!r}: write azure-table://NAME, where NAME is 3-63 letters and "
                "digits starting with a letter (an Azure Table name)"
            )
        service = table_service(account_settings(storage))
        if read_only:
            with _translated(f"look up the ledger table {name!r}"):
                found = list(service.query_tables("TableName eq @name", parameters={"name": name}))
            if not found:
                raise LedgerNotFoundError(
                    f"no ledger table {name!r} in storage account {service.account_name}: "
                    "check the name in --ledger / INGEST_LEDGER_URI and the account"
                )
            return cls(service.get_table_client(name), clock, service_clock=service_clock)
        with _translated(f"create or open the ledger table {name!r}"):
            client = service.create_table_if_not_exists(
                name, raw_response_hook=service_clock.observe
            )
        return cls(client, clock, service_clock=service_clock)

    def now(self) -> datetime:
        """The ledger's clock: the Table service's time (see `service_clock`), UTC."""
        if self.service_clock is None:
            return super().now()
        return self.service_clock.now()

    def _observe(self, pipeline_response: Any) -> None:
        """Learn the service's time from a response, then call the client's own hook."""
        if self.service_clock is not None:
            self.service_clock.observe(pipeline_response)
        if self._client_hook is not None:
            self._client_hook(pipeline_response)

    def _time_hook(self) -> dict[str, Any]:
        """The keyword that lets a call teach the service's time, while the offset is stale."""
        if self.service_clock is None or not self.service_clock.stale:
            return {}
        return {"raw_response_hook": self._observe}

    def close(self) -> None:
        """Delete the open entries still queued, then close the HTTP session."""
        with self._retire:
            self._closing = True
            self._retire.notify_all()
        if self._retirer is not None:
            self._retirer.join()
        self._delete_retired()
        if self._index_pool is not None:
            self._index_pool.shutdown(wait=True)
        self._client.close()

    # -- mapping ---------------------------------------------------------------

    @staticmethod
    def _keys(table: str, sha256: str) -> tuple[str, str]:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"ledger key {sha256!r} is not a lowercase hex sha256")
        return f"{table_partition(table)}-{sha256[:2]}", sha256

    def _entity(self, record: FileRecord) -> dict[str, Any]:
        from azure.data.tables import EdmType, EntityProperty

        partition, row = self._keys(record.table, record.sha256)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "target_table": _bounded(record.table),
            "sha256": record.sha256,
            "attempt": record.attempt,
            "error": _bounded(bound_error(record.error)) if record.error is not None else None,
            "seen_paths": _seen_paths_json(record.seen_paths),
            "generation": record.generation or None,
        }
        for name in _TEXT_FIELDS:
            value = getattr(record, name)
            entity[name] = _bounded(value) if value is not None else None
        for name in _INT64_FIELDS:
            value = getattr(record, name)
            entity[name] = EntityProperty(value, EdmType.INT64) if value is not None else None
        for name in _TIME_FIELDS:
            value = getattr(record, name)
            entity[name] = value.astimezone(UTC) if value is not None else None
        return {k: v for k, v in entity.items() if v is not None}

    @staticmethod
    def _record(entity: Any, etag: str | None) -> FileRecord:
        return FileRecord(
            table=entity["target_table"],
            sha256=entity["sha256"],
            status=entity["status"],
            path=entity["path"],
            size=_int(entity.get("size")) or 0,
            source_etag=entity.get("source_etag"),
            owner=entity.get("owner"),
            lease_until=_time(entity.get("lease_until")),
            attempt=int(entity.get("attempt", 1)),
            delta_version=_int(entity.get("delta_version")),
            rows=_int(entity.get("rows")),
            error=entity.get("error"),
            seen_paths=json.loads(entity.get("seen_paths") or "[]"),
            created_at=_time(entity.get("created_at")),
            updated_at=_time(entity.get("updated_at")),
            run_id=entity.get("run_id"),
            etag=etag,
            generation=int(entity.get("generation") or 0),
        )

    # -- storage -----------------------------------------------------------------

    def _get(self, table: str, sha256: str) -> FileRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        partition, row = self._keys(table, sha256)
        with _translated(f"read {sha256[:12]} of {table}"):
            try:
                entity = self._client.get_entity(partition, row, **self._time_hook())
            except ResourceNotFoundError:
                return None
        return self._record(entity, entity.metadata["etag"])

    def _insert(self, record: FileRecord) -> FileRecord:
        from azure.core.exceptions import ResourceExistsError

        entity = self._entity(record)
        self._register(record.table)
        self._index(record, None, open_entry=True)
        with _translated(f"claim {record.path}"):
            try:
                written = self._client.create_entity(entity)
            except ResourceExistsError as exc:
                # Our open entry stays: the row there is open (and needs it) or
                # succeeded (and a reader drops it).
                raise LedgerConflictError(
                    f"{record.sha256} already claimed in {record.table}"
                ) from exc
        return _with_etag(record, written["etag"])

    def _replace(self, record: FileRecord, previous: FileRecord | None = None) -> FileRecord:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if record.etag is None:
            raise ValueError("a conditional replace needs the ETag the row was read at")
        entity = self._entity(record)
        was_open = previous is not None and previous.status in OPEN_STATUSES
        self._index(record, previous, open_entry=record.status in OPEN_STATUSES and not was_open)
        with _translated(f"update {record.path}"):
            try:
                written = self._client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                raise LedgerConflictError(
                    f"{record.sha256} in {record.table} changed since it was read"
                ) from exc
        if record.status == SUCCEEDED and (previous is None or previous.status != SUCCEEDED):
            self._unindex_open(record.table, record.sha256, _open_key(record))
        return _with_etag(record, written["etag"])

    def _query(self, where: Where) -> Iterator[FileRecord]:
        if where.sha256 is not None:
            tables = [where.table] if where.table is not None else self.tables()
            found = self._read_rows([(t, where.sha256) for t in tables])
            rows: Iterable[FileRecord] = (r for r in found if r is not None)
        elif (where.any_path or where.path) is not None:
            path = where.any_path or where.path or ""
            tables = [where.table] if where.table is not None else self.tables()
            rows = (r for t in tables for r in self._by_path_index(t, path))
        elif where.statuses is not None and set(where.statuses) <= set(OPEN_STATUSES):
            tables = [where.table] if where.table is not None else self.tables()
            rows = (r for t in tables for r in self._open_rows(t))
        else:
            rows = self._scan(where)
        yield from where.select(rows)

    def tables(self) -> list[str]:
        """The table keys that have rows, from the registry partition (one entity a table)."""
        with _translated("list the ledger's tables"):
            entities = self._client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": _REGISTRY}, select=["target_table"]
            )
            return sorted({e["target_table"] for e in entities})

    def reindex(self) -> int:
        """Write the index entities of every row (one read of the ledger, batched writes).

        The upgrade path for rows written by a version without indexes; safe to
        run while workers write (it only adds entries; a stale one is dropped
        by readers). Returns the number of rows read.
        """
        entities: list[dict[str, Any]] = []
        count = 0
        for record in self._scan(Where()):
            count += 1
            entities.append(self._registry_entity(record.table))
            entities.extend(
                self._path_entity(record, p) for p in {record.path, *record.seen_paths}
            )
            if record.status in OPEN_STATUSES:
                entities.append(self._open_entity(record))
            if count % _REINDEX_CHUNK == 0:  # bounded memory, whatever the ledger's size
                self._upsert_batched(entities)
                entities.clear()
        self._upsert_batched(entities)
        return count

    def table_identity(self, table: str) -> str | None:
        """The Delta table id recorded for `table` (its `~i` entity), or None."""
        from azure.core.exceptions import ResourceNotFoundError

        with _translated(f"read the table identity of {table}"):
            try:
                entity = self._client.get_entity(_IDENTITY, _hex(table))
            except ResourceNotFoundError:
                return None
        value = entity.get("delta_table_id")
        return str(value) if value else None

    def record_table_identity(self, table: str, delta_table_id: str | None) -> None:
        """Record (or, with None, forget) the Delta table id `table` describes."""
        with _translated(f"record the table identity of {table}"):
            if delta_table_id is None:
                self._client.delete_entity(_IDENTITY, _hex(table))
                return
            self._client.upsert_entity(
                {
                    "PartitionKey": _IDENTITY, "RowKey": _hex(table),
                    "target_table": _bounded(table), "delta_table_id": delta_table_id,
                    "recorded_at": self.now(),
                },
                mode=_replace_mode(),
            )

    def _upsert_batched(self, entities: Iterable[dict[str, Any]]) -> None:
        """Upsert (replace) entities in transactions of up to 100 of one partition each."""
        by_key: dict[tuple[str, str], dict[str, Any]] = {}
        for entity in entities:
            by_key[(entity["PartitionKey"], entity["RowKey"])] = entity
        partitions: dict[str, list[dict[str, Any]]] = {}
        for (partition, _), entity in by_key.items():
            partitions.setdefault(partition, []).append(entity)
        batches = [
            [("upsert", e, {"mode": "replace"}) for e in group[start : start + _BATCH]]
            for group in partitions.values()
            for start in range(0, len(group), _BATCH)
        ]

        with _translated("write index entities"), ThreadPoolExecutor(_READERS // 2) as pool:
            list(pool.map(self._client.submit_transaction, batches))

    # -- indexes (this back end's own business) --------------------------------

    def _register(self, table: str) -> None:
        with self._lock:
            if table in self._registered:
                return
        with _translated(f"register the table {table}"):
            self._client.upsert_entity(self._registry_entity(table), mode=_replace_mode())
        with self._lock:
            self._registered.add(table)

    @staticmethod
    def _registry_entity(table: str) -> dict[str, Any]:
        return {"PartitionKey": _REGISTRY, "RowKey": _hex(table), "target_table": _bounded(table)}

    @staticmethod
    def _open_entity(record: FileRecord) -> dict[str, Any]:
        return {
            "PartitionKey": _open_partition(record.table, record.sha256),
            "RowKey": _open_key(record),
            "target_table": _bounded(record.table),
        }

    @staticmethod
    def _path_entity(record: FileRecord, path: str) -> dict[str, Any]:
        partition, prefix = _path_keys(record.table, path)
        return {
            "PartitionKey": partition,
            "RowKey": prefix + record.sha256,
            "sha256": record.sha256,
        }

    def _index(self, record: FileRecord, previous: FileRecord | None, *, open_entry: bool) -> None:
        """Write the index entries a change of the row needs, before the row itself.

        The entries are independent of each other: they are sent at once, so a
        claim waits for one round trip, not one per entry.
        """
        known = {previous.path, *previous.seen_paths} if previous is not None else set()
        entities = [
            self._path_entity(record, path)
            for path in dict.fromkeys([record.path, *record.seen_paths])
            if path not in known
        ]
        if open_entry:
            entities.append(self._open_entity(record))
        if not entities:
            return

        def upsert(entity: dict[str, Any]) -> None:
            self._client.upsert_entity(entity, mode=_replace_mode())

        with _translated(f"index {record.path}"):
            others = [self._indexers().submit(upsert, e) for e in entities[1:]]
            upsert(entities[0])  # on this thread: one hand-off fewer
            for future in others:
                future.result()

    def _indexers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._index_pool is None:
                self._index_pool = ThreadPoolExecutor(_INDEXERS, thread_name_prefix="ledger-index")
            return self._index_pool

    def _unindex_open(self, table: str, sha256: str, key: str | None = None) -> None:
        """Queue an open entry (RowKey `key`, default `sha256`) for deletion, once its row
        is `succeeded` (a reopened row is indexed under another key: `_open_key`).

        Deleted in batches, one transaction a partition, a few seconds later: under
        a surge that is a fraction of a request a file. An entry a crash leaves
        behind is stale, and the next reader drops it.
        """
        with self._retire:
            self._retired.append((_open_partition(table, sha256), key or sha256))
            if self._retirer is None and not self._closing:
                self._retirer = threading.Thread(
                    target=self._retire_loop, name="ledger-retirer", daemon=True
                )
                self._retirer.start()
            self._retire.notify_all()

    def _retire_loop(self) -> None:
        while True:
            with self._retire:
                while not self._retired and not self._closing:
                    self._retire.wait()
                if self._closing:
                    return
            self._sleep(_RETIRE_AFTER_S)  # let a batch gather
            self._delete_retired()

    def _sleep(self, seconds: float) -> None:
        with self._retire:
            self._retire.wait_for(lambda: self._closing, timeout=seconds)

    def flush(self) -> None:
        """Send the queued open-entry deletions now (`close` does too)."""
        self._delete_retired()

    def _delete_retired(self) -> None:
        with self._deleting:
            self._delete_taken()

    def _delete_taken(self) -> None:
        from azure.core.exceptions import AzureError, HttpResponseError

        with self._retire:
            taken, self._retired = self._retired, []
        partitions: dict[str, list[str]] = {}
        for partition, row in dict.fromkeys(taken):
            partitions.setdefault(partition, []).append(row)
        unsent: list[tuple[str, str]] = []
        for partition, rows in partitions.items():
            for start in range(0, len(rows), _BATCH):
                chunk = rows[start : start + _BATCH]
                operations = [("delete", {"PartitionKey": partition, "RowKey": r}) for r in chunk]
                try:
                    self._client.submit_transaction(operations)
                    continue
                except HttpResponseError:
                    pass  # one entry gone already fails the batch: delete them one by one
                except AzureError:  # the service did not answer: try again next round
                    unsent.extend((partition, r) for r in chunk)
                    continue
                for row in chunk:
                    try:
                        self._client.delete_entity(partition, row)
                    except HttpResponseError:
                        pass  # stale or gone: the next reader drops it
                    except AzureError:
                        unsent.append((partition, row))
        if unsent:
            logger.warning(
                "ledger: %d open-index entries not deleted (the Table service did not answer); "
                "retrying, and a reader drops them meanwhile", len(unsent),
            )
            with self._retire:
                if not self._closing:
                    self._retired.extend(unsent)

    def _open_rows(self, table: str) -> Iterator[FileRecord]:
        """The open rows of `table`: one query over its open entries, then a read of each row."""
        prefix = f"{_INDEX}o-{table_partition(table)}-"
        with _translated(f"read the open rows of {table}"):
            entries = list(
                self._client.query_entities(
                    "PartitionKey ge @lo and PartitionKey lt @hi and target_table eq @table",
                    parameters={"lo": prefix + "0", "hi": prefix + "g", "table": table},
                    select=["RowKey"],
                )
            )
        keys = [e["RowKey"] for e in entries]
        rows = self._read_rows([(table, key[:64]) for key in keys])
        for key, record in zip(keys, rows, strict=True):
            if record is None:
                continue  # its claim may be on its way: keep the entry
            stale = record.status == SUCCEEDED or _generation_of(key) < record.generation
            if stale:  # (a reopened row's older generation: the row has its own entry)
                self._unindex_open(table, record.sha256, key)
            if stale or key != _open_key(record):
                continue
            yield record

    def _by_path_index(self, table: str, path: str) -> Iterator[FileRecord]:
        partition, prefix = _path_keys(table, path)
        with _translated(f"look up {path} in {table}"):
            entries = list(
                self._client.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={"pk": partition, "lo": prefix, "hi": prefix[:-1] + "."},
                    select=["sha256"],
                )
            )
        yield from (r for r in self._read_rows([(table, e["sha256"]) for e in entries]) if r)

    def _read_rows(self, keys: list[tuple[str, str]]) -> list[FileRecord | None]:
        """The rows at these (table, sha256) keys, in order; a few threads when there are many."""
        if len(keys) <= 2:
            return [self._get(table, sha256) for table, sha256 in keys]

        with ThreadPoolExecutor(min(_READERS, len(keys))) as pool:
            return list(pool.map(lambda key: self._get(*key), keys))

    def _scan(self, where: Where) -> Iterator[FileRecord]:
        """Rows read in key order, filtered by the service where it can: bounded only by `limit`."""
        clauses = ["PartitionKey lt @index"]
        parameters: dict[str, Any] = {"index": _INDEX}
        if where.table is not None:
            prefix = table_partition(where.table)
            clauses += ["PartitionKey ge @lo", "PartitionKey lt @hi", "target_table eq @table"]
            parameters.update(lo=prefix + "-", hi=prefix + ".", table=where.table)
        if where.statuses is not None and len(where.statuses) == 1:
            clauses.append("status eq @status")
            parameters["status"] = where.statuses[0]
        if where.path is not None:
            clauses.append("path eq @path")
            parameters["path"] = where.path
        page = min(where.limit, 1000) if where.limit is not None else None
        with _translated("query the ledger"):
            entities = self._client.query_entities(
                " and ".join(clauses), parameters=parameters, results_per_page=page
            )
            for entity in entities:
                yield self._record(entity, entity.metadata["etag"])


def _open_key(record: FileRecord) -> str:
    """The RowKey of a row's open entry: a reopened row's generation has its own, so a
    reader deleting the entry of the row it saw `succeeded` never removes the new one."""
    return record.sha256 if not record.generation else f"{record.sha256}-{record.generation}"


def _generation_of(key: str) -> int:
    """The generation an open entry's RowKey names (`_open_key`)."""
    return int(key[65:]) if len(key) > 65 else 0


def _replace_mode() -> Any:
    from azure.data.tables import UpdateMode

    return UpdateMode.REPLACE


def _with_etag(record: FileRecord, etag: str) -> FileRecord:
    return dataclasses.replace(record, etag=etag)


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn transport and service failures into LedgerUnavailableError, naming the action."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise LedgerUnavailableError(
            f"cannot reach the Azure Table ledger to {action}: {type(exc).__name__}; "
            "check INGEST_STORAGE_CONNECTION / INGEST_STORAGE_ACCOUNT and the network, then retry"
        ) from exc
    except HttpResponseError as exc:
        if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
            raise LedgerUnavailableError(
                f"the Azure Table ledger refused to {action}: not authorized "
                f"(HTTP {exc.status_code}); check the account key in INGEST_STORAGE_CONNECTION, "
                "or grant the identity 'Storage Table Data Contributor'"
            ) from exc
        raise LedgerUnavailableError(
            f"the Azure Table ledger failed to {action}: HTTP {exc.status_code} "
            f"{exc.reason or ''}; retry, or check the table and permissions"
        ) from exc
