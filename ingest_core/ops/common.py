"""What every operator command shares: the runner seam, progress callbacks, listing.

`open_runner` is the one place an operation gets something that ingests
files: a `Session` (`ingest_core.session`), for one table or for routes. The
ops never branch on which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.sources import SourceFile, Sources

if TYPE_CHECKING:
    from ingest_core.session import Session

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


def open_runner(config: IngestConfig) -> Session:
    """The session `config` asks for: its routes when it names no table, else its one table.

    Raises:
        ConfigurationError: neither a table nor routes are configured, or they are unusable.
    """
    from ingest_core.session import Session

    return Session.of(config)


def list_files(sources: Sequence[str], storage: StorageConfig) -> list[SourceFile]:
    """Every file under the sources, each once, without opening a ledger or a table."""
    try:
        return Sources(storage).list(sources)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from None
