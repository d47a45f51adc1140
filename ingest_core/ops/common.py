"""What every operator command shares: the runner seam, progress callbacks, listing.

`open_runner` is the one place an operation gets something that ingests
files: a `RoutedIngest` for routes, a `OneTable` for one table. The ops call
only the `Runner` protocol, so what is behind it can change without them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile, source_for

if TYPE_CHECKING:
    from ingest_core.ingestor import IdempotentIngestor
    from ingest_core.routed import RoutePlan

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
    """What re-drives files, whether they go to one table or where routes send them.

    The ops see ingestion only through this: listing, planning which table
    each file goes to, that table's ingestor, and a run.
    """

    def list_sources(self, roots: Sequence[str]) -> list[SourceFile]:
        """Every file under the roots."""
        ...

    def plan(self, files: Iterable[SourceFile]) -> RoutePlan:
        """The files grouped by the table (target configuration) each goes to; the unrouted."""
        ...

    def ingestor(self, target: IngestConfig) -> IdempotentIngestor:
        """The ingestor of one target of `plan` (its ledger and table key too)."""
        ...

    def run(
        self, files: Sequence[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest the files, with `config.workers` processes per table when more than one."""
        ...

    def close(self) -> None:
        """Release the ledgers."""
        ...


def open_runner(config: IngestConfig) -> Runner:
    """A router when `config.routes` is set and no table is, else the configured table's runner.

    Raises:
        ConfigurationError: neither a table nor routes are configured, or they are unusable.
    """
    if config.routes and not config.table_uri:
        from ingest_core.routed import RoutedIngest
        from ingest_core.routing import load_routes

        return RoutedIngest(load_routes(config.routes), config)
    if not config.table_uri:
        raise ConfigurationError(
            "no table: pass --table URI or --routes FILE (or set INGEST_TABLE_URI or INGEST_ROUTES)"
        )
    return OneTable(config)


class OneTable:
    """A `Runner` sending every file to the one configured table.

    Args:
        config: the run's settings, `table_uri` set.
    """

    def __init__(self, config: IngestConfig) -> None:
        from ingest_core.ingestor import IdempotentIngestor

        self._ingestor = IdempotentIngestor(config=config)
        self.config = self._ingestor.config

    def list_sources(self, roots: Sequence[str]) -> list[SourceFile]:
        """Every file under the roots, in listing order, each once."""
        return self._ingestor.list_sources(roots)

    def plan(self, files: Iterable[SourceFile]) -> RoutePlan:
        """One group, the table's, holding every file (none is unrouted)."""
        from ingest_core.routed import RoutePlan

        group = list(files)
        return RoutePlan(groups={self.config: group} if group else {})

    def ingestor(self, target: IngestConfig) -> IdempotentIngestor:
        """The table's ingestor: the only target there is."""
        return self._ingestor

    def run(
        self, files: Sequence[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest `files`, with `config.workers` processes when more than one."""
        if self.config.workers > 1 and len(files) > 1:
            from ingest_core.parallel import run_parallel

            return run_parallel(self.config, list(files), on_result)
        return self._ingestor.run(files, on_result)

    def close(self) -> None:
        """Close the ingestor (its ledger and lease keeper)."""
        self._ingestor.close()


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
