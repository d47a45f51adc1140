"""Path identity: which location a URI names, and which version of the file is there.

A file is known to the ledger by the path it was seen under and the version
its source recorded (`source_etag`): a blob's ETag, a local file's
`local_identity`. The same blob listed under abfss://, https:// or Azurite's
path-style URL is one location (`path_key`); a row written for another
version of the file than the one a listing shows means the file was
overwritten since (`same_version`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import StorageConfig, is_local, local_path
from ingest_core.errors import ConfigurationError

if TYPE_CHECKING:
    from ingest_core.ledger import FileRecord
    from ingest_core.sources.base import SourceFile


def local_identity(path: Path) -> str:
    """A local file's version: size, mtime in ns and inode, from one `stat`.

    Raises:
        FileNotFoundError: nothing is at `path`.
    """
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def bare_etag(etag: str) -> str:
    """An ETag without its quotes: a listing gives `0x8D...`, a download `"0x8D..."`."""
    return etag.removeprefix("W/").strip('"')


def path_key(uri: str, storage: StorageConfig) -> str:
    """One spelling of a file's location, whatever URL form listed it.

    A blob is `account/container/name` (abfss://, https:// and Azurite's
    path-style URLs agree); a local file is its absolute path. A URI that is
    not a blob URL is its own key.
    """
    if is_local(uri):
        return str(local_path(uri))
    from ingest_core.azure.urls import parse_blob_url

    try:
        location = parse_blob_url(uri)
    except ConfigurationError:
        return uri
    account = location.account
    if account is None:
        from ingest_core.azure.settings import account_settings

        try:
            account = account_settings(storage).account_name
        except ConfigurationError:
            account = ""
    return f"{account}/{location.container}/{location.name}"


def same_version(row: FileRecord, file: SourceFile) -> bool:
    """Whether the ledger row was written for the version of the file the listing shows.

    A blob's ETag; a local file's `local_identity` (what the local source
    records as its ETag), read now; else the size. A local file deleted since
    the listing counts as the same version: there is nothing to re-drive.
    """
    if is_local(file.uri) and row.source_etag is not None:
        try:
            return row.source_etag == local_identity(local_path(file.uri))
        except FileNotFoundError:
            return True
    if file.etag is not None and row.source_etag is not None:
        return bare_etag(row.source_etag) == bare_etag(file.etag)
    return file.size is None or row.size == file.size
