"""Stage 0: skip, without reading them, files whose current version is already ingested.

A rerun over a landing folder mostly meets files it has ingested. Each such
file is at the path its `succeeded` row recorded, with the version the row
recorded: a blob's ETag (the service changes it on every write), a local
file's `local_identity` (size, mtime, inode, ctime, device; the kernel sets
ctime on every write or `utime`, and nobody can set it back). One ledger
query for many paths (`BaseLedger.succeeded_at`) and one `stat` per local
file then settle them, instead of a hash and a claim each.

Anything short of proof goes the normal way (hashed, claimed): a local file
off POSIX (Windows reports the creation time as ctime), a row from before
ctime was recorded, a local identity read within `RACY_NS` of the
file's last change, a file gone or unreadable, a blob listed without an ETag.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from ingest_core.config import is_local
from ingest_core.ledger import BaseLedger, FileRecord
from ingest_core.pipeline.fetch import printable
from ingest_core.pipeline.settle import result_of
from ingest_core.results import IngestResult
from ingest_core.sources import SourceFile
from ingest_core.sources.identity import bare_etag, local_identity, trusted_identity

CHUNK = 500
"""Files looked up per ledger query."""


class KnownFiles:
    """Splits files into those to ingest and those a `succeeded` row proves unchanged."""

    def __init__(self, ledger: BaseLedger, table_key: str) -> None:
        self._ledger = ledger
        self._table_key = table_key

    def split(self, files: Iterable[SourceFile]) -> Iterator[SourceFile | IngestResult]:
        """Each file, or its `skipped` result when its row proves it ingested; in order."""
        chunk: list[SourceFile] = []
        for file in files:
            chunk.append(file)
            if len(chunk) >= CHUNK:
                yield from self._split(chunk)
                chunk = []
        if chunk:
            yield from self._split(chunk)

    def _split(self, files: list[SourceFile]) -> Iterator[SourceFile | IngestResult]:
        started = time.monotonic()
        rows: dict[str, list[FileRecord]] = {}
        named = [f.uri for f in files if printable(f.uri) == f.uri]  # others fail their fetch
        for row in self._ledger.succeeded_at(self._table_key, named):
            rows.setdefault(row.path, []).append(row)
        for file in files:
            found = _proven(file, rows.get(file.uri, ()))
            if found is None:
                yield file
                continue
            yield result_of(
                file, "skipped", started, sha256=found.sha256, size=found.size,
                delta_version=found.delta_version,
            )


def _proven(file: SourceFile, rows: Iterable[FileRecord]) -> FileRecord | None:
    """The row that proves this very version of `file` ingested, if any."""
    rows = list(rows)
    if not rows:
        return None
    if is_local(file.uri):
        if os.name != "posix":  # Windows' st_ctime is the creation time: no proof of bytes
            return None
        try:
            current = local_identity(file.uri)
        except OSError:
            return None
        return next((r for r in rows if trusted_identity(r.source_etag, current)), None)
    if file.etag is None:
        return None
    etag = bare_etag(file.etag)
    return next(
        (r for r in rows if r.source_etag is not None and bare_etag(r.source_etag) == etag),
        None,
    )
