"""Stage 1: read each file once into a local copy, hashing it on the way.

The next file is fetched (a blob downloaded, a local file hashed) on a thread
while the current one is parsed and written: hashlib and the Azure SDKs
release the GIL.
"""

from __future__ import annotations

import importlib
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingest_core.config import is_local
from ingest_core.errors import BadNameError, SourceChangedError
from ingest_core.sources import LocalCopy, SourceFile, Sources


@dataclass(frozen=True)
class Fetched:
    """A file and its local copy, or why it could not be read."""

    file: SourceFile
    started: float
    """`time.monotonic()` when its fetch began: results report the time since."""
    copy: LocalCopy | Exception


class Fetcher:
    """Fetches files from their sources; large ones also warm the Delta writer's imports."""

    def __init__(self, sources: Sources, stream_bytes: int) -> None:
        self._sources = sources
        self._stream_bytes = stream_bytes

    def fetch(self, file: SourceFile) -> Fetched:
        """Read and hash one file; a read failure is returned, not raised."""
        started = time.monotonic()
        bad_name = _bad_name(file.uri)
        if bad_name is not None:
            return Fetched(file, started, bad_name)
        if file.size is not None and file.size > self._stream_bytes:
            _warm_writer_imports()
        try:
            copy: LocalCopy | Exception = self._sources.of(file.uri).fetch(
                file, Path(tempfile.gettempdir())
            )
        except (SourceChangedError, OSError) as exc:
            copy = exc
        return Fetched(file, started, copy)

    def ahead(self, files: Iterable[SourceFile]) -> Iterator[Fetched]:
        """Each file fetched, the next one read on a thread while the caller works on this one.

        A small local file (up to `INLINE_BYTES`) is hashed right here instead: that
        takes microseconds, less than handing it to a thread and back.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
            pending: Future[Fetched] | None = None
            try:
                for file in files:
                    if _inline(file):
                        if pending is not None:
                            earlier, pending = pending, None
                            yield earlier.result()
                        yield self.fetch(file)
                        continue
                    current, pending = pending, pool.submit(self.fetch, file)
                    if current is not None:
                        yield current.result()
                if pending is not None:
                    current, pending = pending, None
                    yield current.result()
            finally:
                if pending is not None:  # abandoned: drop the spool of the file read ahead
                    copy = pending.result().copy
                    if isinstance(copy, LocalCopy):
                        copy.discard()


INLINE_BYTES = 1024 * 1024
"""Local files up to this size are hashed in the caller's thread, not read ahead."""


def _inline(file: SourceFile) -> bool:
    return file.size is not None and file.size <= INLINE_BYTES and is_local(file.uri)


def printable(uri: str) -> str:
    """`uri` as text any output takes: bytes that are not UTF-8 shown as `\\xff` escapes."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return uri


def _bad_name(uri: str) -> BadNameError | None:
    """The error of a name that is not valid UTF-8 (listed with Python's surrogate escapes)."""
    shown = printable(uri)
    if shown == uri:
        return None
    return BadNameError(
        f"{shown}: the file name is not valid UTF-8, so it cannot be recorded in the ledger "
        "or the table; rename it to a UTF-8 name (e.g. `convmv -f latin1 -t utf-8 --notest "
        "FILE`) and run again; the other files go on"
    )


def _warm_writer_imports() -> None:
    """Import pyarrow and deltalake in the background (once), while a large file is hashed."""
    global _warming
    if _warming is None:
        _warming = threading.Thread(
            target=lambda: importlib.import_module("ingest_core.delta.writers"),
            name="warm-imports", daemon=True,
        )
        _warming.start()


_warming: threading.Thread | None = None
