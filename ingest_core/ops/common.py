"""What every operator command shares: the runner seam, progress callbacks, listing.

`open_runner` is the one place an operation gets something that ingests
files: the ops call only the `Runner` protocol, whichever ingestion
(one table or routed) is behind it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile, source_for

SHA256 = re.compile(r"[0-9a-fA-F]{64}")
"""A content hash as the operator types it (either case)."""
Advance = Callable[[Any], None]
"""Called with each item (a result or a published event) as it is done."""
Progress = Callable[[int], AbstractContextManager[Advance]]
"""Given the number of items, a context yielding the `Advance` callback (a progress bar)."""


@contextmanager
def no_progress(total: int) -> Iterator[Advance]:
    """A `Progress` that shows nothing."""
    yield lambda _item: None


class Runner(Protocol):
    """What re-drives listed files: an `IdempotentIngestor`, or a `RoutedIngest`."""

    def list_sources(self, roots: Sequence[str]) -> list[SourceFile]:
        """Every file under the roots."""
        ...

    def run(
        self, files: Sequence[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest the files."""
        ...

    def close(self) -> None:
        """Release the ledgers."""
        ...


def open_runner(config: IngestConfig) -> Runner:
    """A router when `config.routes` is set and no table is, else an ingestor of the table."""
    if config.routes and not config.table_uri:
        from ingest_core.routed import RoutedIngest
        from ingest_core.routing import load_routes

        return RoutedIngest(load_routes(config.routes), config)
    if not config.table_uri:
        raise ConfigurationError(
            "no table: pass --table URI or --routes FILE (or set INGEST_TABLE_URI or INGEST_ROUTES)"
        )
    from ingest_core.ingestor import IdempotentIngestor

    return IdempotentIngestor(config=config)


def list_files(sources: Sequence[str], storage: StorageConfig) -> list[SourceFile]:
    """Every file under the sources, each once, without opening a ledger or a table."""
    files: dict[str, SourceFile] = {}
    for root in sources:
        try:
            for file in source_for(root, storage).list(root):
                files.setdefault(file.uri, file)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
    return list(files.values())
