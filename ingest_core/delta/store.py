"""The bytes of a Delta table's folder: read, create-if-absent, list, delete, upload.

What the group commit needs of a table's storage beside delta-rs: log
entries written with put-if-absent (the Delta protocol's commit), small
staging records, and data files uploaded from a local spool. A local folder
(`LocalStore`) or a Blob/ADLS container path (`BlobStore`, Azure SDK).
Paths are relative to the table's root, with `/` separators.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ingest_core.config import StorageConfig, is_local, local_path

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

PAYLOAD = "ingestpayload"
"""The metadata key holding a small file's bytes (base64)."""
PAYLOAD_LIMIT = 6 * 1024
"""Base64 characters kept in metadata (Azure allows 8 KiB of metadata a blob)."""


class TableStore(Protocol):
    """A table folder's files, by path relative to the table's root."""

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is none."""
        ...

    def create(self, path: str, data: bytes) -> bool:
        """Write a new file atomically; False (nothing written) when it exists already."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Write (or replace) a file."""
        ...

    def upload(self, path: str, source: Path) -> None:
        """Copy a local file in."""
        ...

    def names(self, prefix: str) -> list[str]:
        """The paths of the files below `prefix` (a folder, ending with `/`)."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file; no error when it is gone already."""
        ...

    def records(self, prefix: str) -> dict[str, bytes]:
        """The small files directly below the folder `prefix` and their bytes, by path."""
        ...

    def delete_all(self, paths: list[str]) -> None:
        """Delete files (in as few requests as the storage allows)."""
        ...


class LocalStore:
    """A table on a local path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None."""
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, path: str, data: bytes) -> bool:
        """Write a temp file, then link it to `path`: readers never see it half written."""
        target, temp = self._beside(path, data)
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        finally:
            temp.unlink()
        return True

    def write(self, path: str, data: bytes) -> None:
        """Write (or replace) a file, atomically."""
        target, temp = self._beside(path, data)
        os.replace(temp, target)

    def _beside(self, path: str, data: bytes) -> tuple[Path, Path]:
        """`path`'s location, and a hidden temp file beside it holding `data`."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        temp.write_bytes(data)
        return target, temp

    def upload(self, path: str, source: Path) -> None:
        """Move or copy a local file in (a rename when both are on one file system)."""
        import shutil

        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    def names(self, prefix: str) -> list[str]:
        """Files directly below the folder `prefix`."""
        folder = self.root / prefix
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.is_file())
        except FileNotFoundError:
            return []
        return [f"{prefix}{n}" for n in names if not n.startswith(".")]

    def delete(self, path: str) -> None:
        """Delete a file if it is there."""
        (self.root / path).unlink(missing_ok=True)

    def records(self, prefix: str) -> dict[str, bytes]:
        """Each file below `prefix` read (one that vanishes meanwhile is left out)."""
        found = {}
        for path in self.names(prefix):
            data = self.read(path)
            if data is not None:
                found[path] = data
        return found

    def delete_all(self, paths: list[str]) -> None:
        """Delete each file."""
        for path in paths:
            self.delete(path)


class BlobStore:
    """A table in a Blob Storage or ADLS Gen2 container, under a path prefix."""

    def __init__(self, container: ContainerClient, prefix: str) -> None:
        self._container = container
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def read(self, path: str) -> bytes | None:
        """The blob's bytes, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: bytes = self._container.download_blob(self._prefix + path).readall()
        except ResourceNotFoundError:
            return None
        return data

    def create(self, path: str, data: bytes) -> bool:
        """Upload with `If-None-Match: *`: the service refuses it when the blob exists."""
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        try:
            self._container.upload_blob(self._prefix + path, data, overwrite=False)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    def write(self, path: str, data: bytes) -> None:
        """Upload, replacing any blob of that name.

        A small file's bytes are also kept in the blob's metadata, so `records`
        reads them from one listing instead of one download each.
        """
        payload = base64.b64encode(data).decode()
        metadata = {PAYLOAD: payload} if len(payload) <= PAYLOAD_LIMIT else None
        self._container.upload_blob(self._prefix + path, data, overwrite=True, metadata=metadata)

    def upload(self, path: str, source: Path) -> None:
        """Upload a local file."""
        with open(source, "rb") as stream:
            self._container.upload_blob(self._prefix + path, stream, overwrite=True)

    def names(self, prefix: str) -> list[str]:
        """Blobs below `prefix`."""
        start = len(self._prefix)
        blobs = self._container.list_blobs(name_starts_with=self._prefix + prefix)
        return sorted(b.name[start:] for b in blobs)

    def delete(self, path: str) -> None:
        """Delete a blob if it is there."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._container.delete_blob(self._prefix + path)
        except ResourceNotFoundError:
            pass

    def records(self, prefix: str) -> dict[str, bytes]:
        """One listing with metadata; a blob whose bytes did not fit there is downloaded."""
        start = len(self._prefix)
        found = {}
        for blob in self._container.list_blobs(
            name_starts_with=self._prefix + prefix, include=["metadata"]
        ):
            path = blob.name[start:]
            if "/" in path[len(prefix):]:
                continue
            payload = (blob.metadata or {}).get(PAYLOAD)
            data = base64.b64decode(payload) if payload is not None else self.read(path)
            if data is not None:
                found[path] = data
        return found

    def delete_all(self, paths: list[str]) -> None:
        """Blob batch deletes, 256 blobs a request (a blob gone already is no error)."""
        for start in range(0, len(paths), 256):
            names = [self._prefix + p for p in paths[start:start + 256]]
            self._container.delete_blobs(*names, raise_on_any_failure=False)


def store_for(uri: str, storage: StorageConfig) -> TableStore:
    """The store of the table at `uri` (a local path, or abfs(s)://container/path)."""
    if is_local(uri):
        return LocalStore(local_path(uri))
    from ingest_core.azure.auth import blob_service
    from ingest_core.azure.settings import account_settings
    from ingest_core.azure.urls import parse_blob_url

    location = parse_blob_url(uri)
    service = blob_service(account_settings(storage, location.account))
    return BlobStore(service.get_container_client(location.container), location.name)
