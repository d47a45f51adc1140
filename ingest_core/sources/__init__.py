"""Sources: where files land. `source_for` picks one by URI."""

from __future__ import annotations

from ingest_core.config import StorageConfig, is_local
from ingest_core.sources.base import LocalCopy, Source, SourceFile
from ingest_core.sources.local import LocalSource

__all__ = ["LocalCopy", "LocalSource", "Source", "SourceFile", "source_for"]


def source_for(uri: str, storage: StorageConfig | None = None) -> Source:
    """The source that reads `uri`: a local path, or a Blob/ADLS URL."""
    if is_local(uri):
        return LocalSource()
    from ingest_core.sources.azure_blob import AzureBlobSource

    return AzureBlobSource(storage or StorageConfig())
