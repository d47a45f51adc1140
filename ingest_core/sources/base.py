"""What the core needs from a place files land in: list them, fetch one locally."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ingest_core.azure.urls import BlobLocation


@dataclass(frozen=True)
class SourceFile:
    """A file found in a source, before it is read."""

    uri: str
    """Where it is: an absolute local path or a URL. Recorded in the ledger and lineage."""
    relative: str
    """Its path below the SOURCE it was listed from (routes match against this)."""
    size: int | None = None
    etag: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Constant string columns added to its rows (a route's captures named in partition_by)."""
    client: Any = field(default=None, hash=False, compare=False, repr=False)
    """A client to read it through, when the caller has one (the Functions host's BlobClient)."""
    location: BlobLocation | None = field(default=None, hash=False, compare=False, repr=False)
    """A blob's container and name, parsed once where the URL came in (listing, event)."""


@dataclass
class LocalCopy:
    """A file's bytes on local disk, with the hash of exactly those bytes."""

    path: Path
    sha256: str
    size: int
    etag: str | None
    temporary: bool
    """True when `path` is a spool file this process owns and must delete."""
    seen_ns: int | None = None
    """A local file: `time.time_ns()` just before `etag` (its identity) was read."""

    @property
    def recorded_etag(self) -> str | None:
        """The version a ledger row records for this copy (`identity.recorded_version`)."""
        from ingest_core.sources.identity import recorded_version

        return recorded_version(self.etag, self.seen_ns)

    def discard(self) -> None:
        """Delete the spool file, if this copy is one."""
        if self.temporary:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class Source(Protocol):
    """A landing zone: a local folder, or a Blob/ADLS container."""

    def list(self, root: str) -> Iterator[SourceFile]:
        """Every ingestible file under `root` (a file or a folder/prefix), in a stable order."""
        ...

    def fetch(self, file: SourceFile, spool_dir: Path) -> LocalCopy:
        """Read the file once, hashing it; raise SourceChangedError if it moves under us."""
        ...

    def verify(self, file: SourceFile, copy: LocalCopy) -> None:
        """Raise SourceChangedError if the bytes at `copy.path` no longer match `copy.sha256`."""
        ...


def is_hidden(name: str) -> bool:
    """Names Spark and Hadoop treat as metadata (`_SUCCESS`, `.crc`, `_temporary`)."""
    return name.startswith((".", "_"))
