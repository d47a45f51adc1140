"""Sources: where files land. `source_for` picks one by URI; `Sources` keeps one of each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ingest_core.config import StorageConfig, is_local
from ingest_core.sources.base import LocalCopy, Source, SourceFile
from ingest_core.sources.local import LocalSource

__all__ = ["LocalCopy", "LocalSource", "Source", "SourceFile", "Sources", "source_for"]


def source_for(uri: str, storage: StorageConfig | None = None) -> Source:
    """The source that reads `uri`: a local path, or a Blob/ADLS URL."""
    if is_local(uri):
        return LocalSource()
    from ingest_core.sources.azure_blob import AzureBlobSource

    return AzureBlobSource(storage or StorageConfig())


class Sources:
    """The sources of one run or process: one per kind (local, Azure), opened on first use."""

    def __init__(self, storage: StorageConfig) -> None:
        self._storage = storage
        self._opened: dict[bool, Source] = {}

    def of(self, uri: str) -> Source:
        """The source that reads `uri`."""
        local = is_local(uri)
        if local not in self._opened:
            self._opened[local] = source_for(uri, self._storage)
        return self._opened[local]

    def list(self, roots: Iterable[str]) -> list[SourceFile]:
        """Every file under the roots (files, folders or prefixes), in listing order, each once.

        Raises FileNotFoundError for a root that does not exist.
        """
        return list(self.iterate(roots))

    def iterate(self, roots: Iterable[str]) -> Iterator[SourceFile]:
        """`list`, lazily: each file as its listing page arrives, each once."""
        seen: set[str] = set()
        for root in roots:
            for file in self.of(root).list(root):
                if file.uri not in seen:
                    seen.add(file.uri)
                    yield file
