"""Path identity: which location a URI names, and which version of the file is there.

A file is known to the ledger by the path it was seen under and the version
its source recorded (`source_etag`): a blob's ETag, a local file's
`local_identity`. The same blob listed under abfss://, https:// or Azurite's
path-style URL is one location (`path_key`); a row written for another
version of the file than the one a listing shows means the file was
overwritten since (`same_version`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import StorageConfig, is_local, local_path
from ingest_core.errors import ConfigurationError

if TYPE_CHECKING:
    from ingest_core.ledger import FileRecord
    from ingest_core.sources.base import SourceFile


def local_identity(path: Path | str) -> str:
    """A local file's version: size, mtime, inode, ctime (ns) and device, from one `stat`.

    `ctime` is what makes it a version and not a guess: the kernel sets it to
    the current time on every write, truncation, rename and `utime`, and no
    user call can set it back. A file rewritten in place with the same size
    and its old mtime restored (`os.utime`) keeps its inode and mtime, but
    gets a new ctime. Rows written before ctime was recorded hold the first
    three fields only; `identity_matches` compares those.

    Raises:
        FileNotFoundError: nothing is at `path`.
    """
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}:{st.st_dev}"


def identity_matches(recorded: str | None, current: str) -> bool:
    """Whether `current` (a `local_identity`) is the version a row recorded.

    The row's `@seen` suffix (`recorded_version`) is ignored; a row from
    before ctime was recorded (`size:mtime:inode`) is compared on those three
    fields.
    """
    if recorded is None:
        return False
    base = recorded.partition("@")[0]
    if base.count(":") == 2:
        return current.split(":")[:3] == base.split(":")
    return base == current


RACY_NS = 2_000_000_000
"""How long before a file was looked at its last change must be for its identity to be trusted.

Timestamps are coarse (a kernel tick; a second or two on some file systems):
a file changed in the same tick as the `stat` that recorded its identity
could be rewritten in that tick again, after the stat, and keep every field.
Such a "racily clean" identity (git's term, handled the same way) is never
used to skip a file: the file is hashed again, and its row then records the
identity it has by then."""


def recorded_version(etag: str | None, seen_ns: int | None) -> str | None:
    """What a ledger row records as a file's version: its `etag`, and for a local
    file `@` the time (ns) just before its identity was read."""
    if etag is None or seen_ns is None:
        return etag
    return f"{etag}@{seen_ns}"


def newer_proof(recorded: str | None, seen: str | None) -> bool:
    """Whether a row recording version `recorded` should record `seen` instead, once the
    file's bytes at the row's path were just hashed to the row's content.

    When the version changed (a blob's ETag, a local identity), or a local
    identity the row holds is racy and the one just read is not. The time a
    local identity was read alone is no reason: rewriting a row every run
    would cost a write per file per run.
    """
    if seen is None or seen == recorded:
        return False
    if recorded is None:
        return True
    base = seen.partition("@")[0]
    if recorded.partition("@")[0] != base:
        return True
    return trusted_identity(seen, base) and not trusted_identity(recorded, base)


def trusted_identity(recorded: str | None, current: str) -> bool:
    """Whether a row's recorded local version proves the file still has the bytes hashed then.

    True only when `current` (the file's `local_identity` now) equals the
    recorded one field for field, ctime included, and that ctime was at
    least `RACY_NS` older than the moment the identity was read. Rows without
    ctime or without the time it was read are never trusted.
    """
    if recorded is None:
        return False
    base, _, seen = recorded.partition("@")
    fields = base.split(":")
    if not seen or len(fields) != 5 or base != current:
        return False
    try:
        return int(seen) - int(fields[3]) >= RACY_NS
    except ValueError:
        return False


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
            return identity_matches(row.source_etag, local_identity(local_path(file.uri)))
        except FileNotFoundError:
            return True
    if file.etag is not None and row.source_etag is not None:
        return bare_etag(row.source_etag) == bare_etag(file.etag)
    return file.size is None or row.size == file.size
