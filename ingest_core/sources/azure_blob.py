"""Blob Storage and ADLS Gen2 as a source: list with the Blob API, read once, pinned to an ETag.

Listing uses the Blob API, which real ADLS Gen2 accounts and Azurite both
serve (Azurite has no DFS endpoint). Reads go through azure-storage-file-
datalake's `download_file`, chunk by chunk into a spool file while hashing;
every request after the first carries `If-Match` with the first response's
ETag, so a blob overwritten mid-read raises `SourceChangedError` instead of
yielding a mix of old and new bytes.

A blob that is the destination of an unfinished copy is not read either: on
an account with a hierarchical namespace, Event Grid's BlobCreated (CopyBlob)
fires when the copy starts. The first response's `x-ms-copy-status` header
(what `get_blob_properties().copy.status` reports) is checked before any byte
is hashed, at no extra request; while it is `pending` the read raises the
retryable `SourceChangedError`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ingest_core.azure.auth import blob_service, datalake_service
from ingest_core.azure.settings import AccountSettings, account_settings
from ingest_core.azure.urls import BlobLocation, parse_blob_url
from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError, SourceChangedError, SourceGoneError
from ingest_core.hashing import CHUNK_BYTES, hash_chunks
from ingest_core.sources.base import LocalCopy, SourceFile, is_hidden

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.filedatalake import DataLakeServiceClient

FOLDER_MARKER = "hdi_isfolder"
"""Metadata ADLS Gen2 (and tools emulating it) put on zero-length directory blobs."""


def _is_folder_placeholder(name: str, size: int, metadata: dict[str, str] | None) -> bool:
    if size:
        return False
    marker = {k.lower(): v for k, v in (metadata or {}).items()}.get(FOLDER_MARKER, "")
    return marker.lower() == "true" or name.endswith("/")


def check_copy_finished(uri: str, headers: Mapping[str, str]) -> None:
    """Raise `SourceChangedError` if a blob's response headers show an unfinished copy.

    `headers` are those of a GET or HEAD of the blob. No `x-ms-copy-status`
    (never a copy destination) or `success` passes. `pending` is retryable:
    the copy is still running, so the platform's retry reads it later.
    `failed` and `aborted` left incomplete content behind: nothing is read,
    and the message says to copy the file again (that fires a new event).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    status = (lowered.get("x-ms-copy-status") or "").lower()
    if status in ("", "success"):
        return
    progress = lowered.get("x-ms-copy-progress") or "?"
    if status == "pending":
        raise SourceChangedError(
            f"{uri} is still being copied (copy status pending, {progress} bytes); nothing "
            "was read: retry once the copy has finished (the platform retries it)"
        )
    raise SourceChangedError(
        f"{uri}: its copy ended {status} ({progress} bytes copied); nothing was read: copy "
        "the file again, which lands it anew"
    )


def _hidden(relative: str) -> bool:
    return any(is_hidden(part) for part in PurePosixPath(relative).parts)


class AzureBlobSource:
    """Blobs in a Blob Storage or ADLS Gen2 container (hidden `.x`/`_x` names are skipped)."""

    def __init__(self, storage: StorageConfig, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._storage = storage
        self._chunk_bytes = chunk_bytes
        self._blob: dict[str, BlobServiceClient] = {}
        self._datalake: dict[str, DataLakeServiceClient] = {}

    def _settings(self, location: BlobLocation) -> AccountSettings:
        return account_settings(self._storage, location.account)

    def _blob_service(self, location: BlobLocation) -> BlobServiceClient:
        settings = self._settings(location)
        if settings.account_name not in self._blob:
            self._blob[settings.account_name] = blob_service(settings)
        return self._blob[settings.account_name]

    def _datalake_service(self, location: BlobLocation) -> DataLakeServiceClient:
        settings = self._settings(location)
        if settings.account_name not in self._datalake:
            self._datalake[settings.account_name] = datalake_service(
                settings,
                max_single_get_size=self._chunk_bytes,
                max_chunk_get_size=self._chunk_bytes,
            )
        return self._datalake[settings.account_name]

    def list(self, root: str) -> Iterator[SourceFile]:
        """Every blob under `root`, in name order: the blob itself, or all below a prefix."""
        from azure.core.exceptions import HttpResponseError

        try:
            yield from self._list(root)
        except HttpResponseError as exc:
            if exc.status_code not in (401, 403):
                raise
            raise ConfigurationError(
                f"source {root}: not authorized to list it (HTTP {exc.status_code}); check the "
                "account key, or grant the identity 'Storage Blob Data Reader' on the container"
            ) from exc

    def _list(self, root: str) -> Iterator[SourceFile]:
        from azure.core.exceptions import ResourceNotFoundError

        location = parse_blob_url(root)
        container = self._blob_service(location).get_container_client(location.container)
        if location.name and not location.name.endswith("/"):
            try:
                props = container.get_blob_client(location.name).get_blob_properties()
            except ResourceNotFoundError:
                props = None
            if props is not None and not _is_folder_placeholder(
                location.name, props.size, props.metadata
            ):
                name = PurePosixPath(location.name).name
                yield SourceFile(
                    uri=location.url_of(location.name),
                    relative=name,
                    size=props.size,
                    etag=props.etag,
                    location=location,
                )
                return
        prefix = location.name.rstrip("/") + "/" if location.name else ""
        try:
            for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                relative = blob.name[len(prefix) :]
                if not relative or _hidden(relative):
                    continue
                if _is_folder_placeholder(blob.name, blob.size, blob.metadata):
                    continue
                yield SourceFile(
                    uri=location.url_of(blob.name),
                    relative=relative,
                    size=blob.size,
                    etag=blob.etag,
                    location=location.child(blob.name),
                )
        except ResourceNotFoundError:
            raise FileNotFoundError(
                f"source {root}: container {location.container!r} does not exist"
            ) from None

    def fetch(self, file: SourceFile, spool_dir: Path) -> LocalCopy:
        """Download the blob once into a spool file in `spool_dir`, hashing it on the way.

        Read through `file.client` when the file came with one (a `BlobClient`
        the Functions host bound), else through this source's own client.
        """
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )

        location = file.location or parse_blob_url(file.uri)
        client = file.client
        if client is None:
            client = self._datalake_service(location).get_file_client(
                location.container, location.name
            )
        suffix = "".join(PurePosixPath(location.name).suffixes)[-20:]
        handle, spool = tempfile.mkstemp(prefix="ingest-", suffix=suffix, dir=spool_dir)
        # The headers of the response download_file returned with (a retried first GET
        # calls the hook once per try; chunks read later call it again, after the check).
        opening: dict[str, str] = {}
        checked = False

        def keep_opening_headers(response: Any) -> None:
            if not checked:
                opening.clear()
                opening.update(response.http_response.headers)

        try:
            with os.fdopen(handle, "wb") as out:
                download = (
                    client.download_file(raw_response_hook=keep_opening_headers)
                    if hasattr(client, "download_file")
                    else client.download_blob(raw_response_hook=keep_opening_headers)
                )
                checked = True
                check_copy_finished(file.uri, opening)
                etag = download.properties.etag
                sha256, size = hash_chunks(download.chunks(), out)
        except ResourceModifiedError as exc:
            os.unlink(spool)
            raise SourceChangedError(
                f"{file.uri} was overwritten while it was being read (its ETag changed); "
                "nothing was ingested from it: run again to ingest the new content"
            ) from exc
        except ResourceNotFoundError as exc:
            os.unlink(spool)
            raise SourceGoneError(
                f"{file.uri} disappeared before it could be read; nothing to ingest"
            ) from exc
        except ClientAuthenticationError as exc:
            os.unlink(spool)
            raise OSError(
                "not authorized: grant the identity 'Storage Blob Data Reader' on the container, "
                "or check the account key"
            ) from exc
        except AzureError as exc:
            os.unlink(spool)
            raise OSError(f"{type(exc).__name__}: {exc.message}") from exc
        except BaseException:
            os.unlink(spool)
            raise
        return LocalCopy(path=Path(spool), sha256=sha256, size=size, etag=etag, temporary=True)

    def verify(self, file: SourceFile, copy: LocalCopy) -> None:
        """Check the spool file is still whole (the ETag pin proved the bytes consistent)."""
        try:
            size = copy.path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size != copy.size:
            raise SourceChangedError(
                f"{file.uri}: its local spool {copy.path} was removed or altered during "
                "ingestion; run again"
            )

