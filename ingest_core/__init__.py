"""Exactly-once ingestion of landed files into Delta Lake tables.

The public API::

    from ingest_core import IdempotentIngestor
    ing = IdempotentIngestor(table="./lake/orders")
    stats = ing.ingest_directory("landing/")

    # an export in another dialect: its reading options
    ing = IdempotentIngestor(table="./lake/orders", read=ReadOptions(
        csv_delimiter=";", csv_decimal=",", schema_hints="amount DECIMAL(10,2)",
        bad_rows="rescue"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest_core.config import IngestConfig, StorageConfig, from_env
    from ingest_core.errors import (
        AttemptsExhaustedError,
        ConfigurationError,
        CorruptFileError,
        IngestError,
        InProgressError,
        LeaseLostError,
        LedgerConflictError,
        LedgerUnavailableError,
        SchemaIncompatibleError,
        SourceChangedError,
        TransformError,
    )
    from ingest_core.ingestor import IdempotentIngestor
    from ingest_core.ledger import BaseLedger, FileRecord, open_ledger
    from ingest_core.read_options import ReadOptions
    from ingest_core.results import IngestResult, RunStats
    from ingest_core.session import Session

_EXPORTS = {
    "IngestConfig": "ingest_core.config",
    "StorageConfig": "ingest_core.config",
    "from_env": "ingest_core.config",
    "AttemptsExhaustedError": "ingest_core.errors",
    "ConfigurationError": "ingest_core.errors",
    "CorruptFileError": "ingest_core.errors",
    "IngestError": "ingest_core.errors",
    "InProgressError": "ingest_core.errors",
    "LeaseLostError": "ingest_core.errors",
    "LedgerConflictError": "ingest_core.errors",
    "LedgerUnavailableError": "ingest_core.errors",
    "SchemaIncompatibleError": "ingest_core.errors",
    "SourceChangedError": "ingest_core.errors",
    "TransformError": "ingest_core.errors",
    "IdempotentIngestor": "ingest_core.ingestor",
    "BaseLedger": "ingest_core.ledger",
    "FileRecord": "ingest_core.ledger",
    "open_ledger": "ingest_core.ledger",
    "ReadOptions": "ingest_core.read_options",
    "IngestResult": "ingest_core.results",
    "RunStats": "ingest_core.results",
    "Session": "ingest_core.session",
}
"""Each public name and the module defining it: imported on first use (PEP 562), so a
command that needs little (`ingest --version`, a rerun that only skips) imports little."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "AttemptsExhaustedError",
    "BaseLedger",
    "ConfigurationError",
    "CorruptFileError",
    "FileRecord",
    "IdempotentIngestor",
    "InProgressError",
    "IngestConfig",
    "IngestError",
    "IngestResult",
    "LeaseLostError",
    "LedgerConflictError",
    "LedgerUnavailableError",
    "ReadOptions",
    "RunStats",
    "SchemaIncompatibleError",
    "Session",
    "SourceChangedError",
    "StorageConfig",
    "TransformError",
    "from_env",
    "open_ledger",
]
