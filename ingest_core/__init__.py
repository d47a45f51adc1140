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
