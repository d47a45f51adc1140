"""A local folder as a source.

Local files are hashed in place instead of being spooled: a copy would only
read the same local bytes twice. What the spool guards against (bytes changing
between hash and parse) is checked instead by comparing the file's identity
(size, mtime, inode, ctime, device: `identity.local_identity`) before
hashing and after parsing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from ingest_core.errors import ConfigurationError, SourceChangedError, SourceGoneError
from ingest_core.hashing import file_sha256
from ingest_core.sources.base import LocalCopy, SourceFile, is_hidden
from ingest_core.sources.identity import local_identity


def _size(path: Path) -> int | None:
    """The file's size; None for an entry that cannot be read (a dangling or looping link):
    listed all the same, so its fetch fails and reports it, and the run goes on."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def _absolute(path: Path) -> Path:
    """The absolute path, links resolved where they resolve (a looping one stays as it is)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()
    return resolved if resolved.exists() else path.absolute()


LEDGER_SUFFIXES = (
    ".ledger.sqlite", ".ledger.sqlite-wal", ".ledger.sqlite-shm", ".ledger.sqlite-journal",
)
"""The default SQLite ledger beside a table, and SQLite's files next to it."""


def _refuse_inside_a_table(root: str, base: Path) -> None:
    folder = base.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / "_delta_log").is_dir():
            raise ConfigurationError(
                f"source {root}: is inside the Delta table {candidate}; a table is never a "
                "source: point SOURCE at the landing folder"
            )


def _walk(folder: Path, relative: str) -> Iterator[SourceFile]:
    """The files of `folder` (sorted), then those of its subfolders, each in turn (sorted).

    As `os.walk` would, with one `scandir` a folder: a folder reached through a
    link is not entered, and a file that is not a link is named by the folder's
    resolved path (one `resolve` a folder, not one a file).
    """
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    resolved: Path | None = None
    folders = []
    for entry in entries:
        if is_hidden(entry.name):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            folders.append(entry)
            continue
        if entry.name.endswith(LEDGER_SUFFIXES):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            uri = _absolute(path)
        else:
            resolved = resolved or _absolute(folder)
            uri = resolved / entry.name
        yield SourceFile(uri=str(uri), relative=relative + entry.name, size=_size(path))
    for entry in folders:
        sub = Path(entry.path)
        if entry.is_symlink() or (sub / "_delta_log").is_dir():
            continue
        yield from _walk(sub, f"{relative}{entry.name}/")


class LocalSource:
    """Files in a local folder tree (hidden `.x` and `_x` entries are skipped)."""

    def list(self, root: str) -> Iterator[SourceFile]:
        """Every file under `root` (recursive, sorted); `root` may be a single file.

        Delta tables (folders holding `_delta_log`) and ledger files below
        `root` are never sources: a landing folder that holds the table would
        otherwise feed the table its own data files. A `root` inside a table
        is refused.
        """
        base = Path(root).expanduser()
        _refuse_inside_a_table(root, base)
        if base.is_file():
            yield SourceFile(uri=str(base.resolve()), relative=base.name, size=base.stat().st_size)
            return
        if not base.is_dir():
            raise FileNotFoundError(f"source {root!r} is neither a file nor a folder")
        yield from _walk(base, "")

    def fetch(self, file: SourceFile, spool_dir: Path) -> LocalCopy:
        """Hash the file where it lies."""
        path = Path(file.uri)
        try:
            seen = time.time_ns()
            before = local_identity(path)
            sha256, size = file_sha256(str(path))
            if local_identity(path) != before:
                raise SourceChangedError(f"{file.uri} changed while it was hashed; run again")
        except FileNotFoundError as exc:
            if path.is_symlink():
                raise SourceChangedError(
                    f"{file.uri}: is a link to {os.readlink(path)}, which does not exist; "
                    "fix or remove the link (the other files go on)"
                ) from exc
            raise SourceGoneError(
                f"{file.uri} disappeared before it could be read; nothing to ingest"
            ) from exc
        return LocalCopy(
            path=path, sha256=sha256, size=size, etag=before, temporary=False, seen_ns=seen
        )

    def verify(self, file: SourceFile, copy: LocalCopy) -> None:
        """Refuse the data if the file was replaced or rewritten since it was hashed."""
        try:
            now = local_identity(copy.path)
        except FileNotFoundError:
            now = "deleted"
        if now != copy.etag:
            raise SourceChangedError(
                f"{file.uri} changed while it was being ingested; its new content "
                "will be taken by the next run"
            )
