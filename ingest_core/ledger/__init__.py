"""Ledgers: where claims and outcomes are recorded. `open_ledger` picks one by URI."""

from __future__ import annotations

from urllib.parse import urlparse

from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.ledger.base import (
    FAILED,
    OPEN_STATUSES,
    PROCESSING,
    QUARANTINED,
    STATUSES,
    SUCCEEDED,
    BaseLedger,
    Claim,
    FileRecord,
)

__all__ = [
    "FAILED",
    "OPEN_STATUSES",
    "PROCESSING",
    "QUARANTINED",
    "STATUSES",
    "SUCCEEDED",
    "BaseLedger",
    "Claim",
    "FileRecord",
    "open_ledger",
]


def open_ledger(
    uri: str, storage: StorageConfig | None = None, *, read_only: bool = False
) -> BaseLedger:
    """Open the ledger at `uri`: `sqlite:///path` or `azure-table://TABLE_NAME`.

    With `read_only`, nothing is created or upgraded, and a ledger that does
    not exist raises `LedgerNotFoundError` naming what was looked for.
    """
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(f"ledger {uri!r}: write sqlite:///relative/path or sqlite:////abs/path")
        from ingest_core.ledger.sqlite import SqliteLedger

        return SqliteLedger(path, read_only=read_only)
    if scheme == "azure-table":
        from ingest_core.ledger.azure_table import AzureTableLedger

        return AzureTableLedger.from_uri(uri, storage or StorageConfig(), read_only=read_only)
    raise ConfigurationError(
        f"ledger {uri!r}: unsupported; use sqlite:///path or azure-table://TABLE_NAME"
    )
