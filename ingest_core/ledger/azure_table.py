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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingest_core.azure.auth import table_service
from ingest_core.azure.settings import account_settings
from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError, LedgerConflictError, LedgerUnavailableError
from ingest_core.ledger.base import BaseLedger, FileRecord, bound_error

if TYPE_CHECKING:
    from azure.data.tables import TableClient

SCHEME = "azure-table://"
MAX_PROPERTY_UTF16 = 30_000
"""UTF-16 code units kept in one string property: under the 64 KiB (32K units) limit."""

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_INT64_FIELDS = ("size", "delta_version", "rows")
_TIME_FIELDS = ("lease_until", "created_at", "updated_at")
_TEXT_FIELDS = ("status", "path", "source_etag", "owner")


def table_partition(table: str) -> str:
    """The PartitionKey prefix of a target table: 16 hex digits of its id's sha256."""
    return hashlib.sha256(table.encode()).hexdigest()[:16]


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

    def __init__(self, client: TableClient, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self._client = client

    @classmethod
    def from_uri(
        cls, uri: str, storage: StorageConfig, clock: Callable[[], datetime] | None = None
    ) -> AzureTableLedger:
        """Open `azure-table://TABLE_NAME` in the configured account, creating the table."""
        name = uri[len(SCHEME) :].strip("/") if uri.startswith(SCHEME) else ""
        if not _TABLE_NAME.fullmatch(name):
            raise ConfigurationError(
                f"ledger {uri!r}: write azure-table://NAME, where NAME is 3-63 letters and "
                "digits starting with a letter (an Azure Table name)"
            )
        service = table_service(account_settings(storage))
        with _translated(f"create or open the ledger table {name!r}"):
            client = service.create_table_if_not_exists(name)
        return cls(client, clock)

    def close(self) -> None:
        """Close the HTTP session."""
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
            etag=etag,
        )

    # -- storage -----------------------------------------------------------------

    def _get(self, table: str, sha256: str) -> FileRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        partition, row = self._keys(table, sha256)
        with _translated(f"read {sha256[:12]} of {table}"):
            try:
                entity = self._client.get_entity(partition, row)
            except ResourceNotFoundError:
                return None
        return self._record(entity, entity.metadata["etag"])

    def _insert(self, record: FileRecord) -> FileRecord:
        from azure.core.exceptions import ResourceExistsError

        entity = self._entity(record)
        with _translated(f"claim {record.path}"):
            try:
                written = self._client.create_entity(entity)
            except ResourceExistsError as exc:
                raise LedgerConflictError(
                    f"{record.sha256} already claimed in {record.table}"
                ) from exc
        return _with_etag(record, written["etag"])

    def _replace(self, record: FileRecord) -> FileRecord:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if record.etag is None:
            raise ValueError("a conditional replace needs the ETag the row was read at")
        entity = self._entity(record)
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
        return _with_etag(record, written["etag"])

    def _query(
        self, *, table: str | None = None, status: str | None = None, path: str | None = None
    ) -> Iterator[FileRecord]:
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if table is not None:
            prefix = table_partition(table)
            clauses += ["PartitionKey ge @lo", "PartitionKey lt @hi", "target_table eq @table"]
            parameters.update(lo=prefix + "-", hi=prefix + ".", table=table)
        for name, value in (("status", status), ("path", path)):
            if value is not None:
                clauses.append(f"{name} eq @{name}")
                parameters[name] = value
        with _translated("query the ledger"):
            if clauses:
                entities = self._client.query_entities(
                    " and ".join(clauses), parameters=parameters
                )
            else:
                entities = self._client.list_entities()
            for entity in entities:
                yield self._record(entity, entity.metadata["etag"])


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
