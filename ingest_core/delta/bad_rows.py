"""The bad-rows table: rows that could not be parsed at all, kept under `--bad-rows rescue`.

A file's bad rows are appended in one Delta commit carrying the file's
transaction id (`ingest-<sha256>`), before the file's own rows are committed
to its table. A retry finds the id in the bad-rows table and appends nothing,
so each file's bad rows are there exactly once, as its good rows are in the
target.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa

from ingest_core.config import StorageConfig, is_local, local_path
from ingest_core.delta.target import DeltaTarget, FileEntry, TableRef
from ingest_core.errors import ConfigurationError
from ingest_core.formats import BadRow

SCHEMA = pa.schema([
    pa.field("_ingest_file", pa.string()),
    pa.field("_ingest_sha256", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("raw", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("_ingested_at", pa.timestamp("us", tz="UTC")),
])
ATTEMPTS = 3
"""Appends tried before giving up (another writer may create or commit first)."""


def bad_rows_uri(table_uri: str, configured: str | None) -> str:
    """Where bad rows go: `configured`, else `<table>_bad_rows` beside a local table.

    Raises:
        ConfigurationError: a remote table and no bad-rows table named.
    """
    if configured:
        return configured
    if table_uri and is_local(table_uri):
        return str(local_path(table_uri)) + "_bad_rows"
    raise ConfigurationError(
        f"table {table_uri or '(routed)'} is not local, so there is no default bad-rows table: "
        "pass --bad-rows-table URI (INGEST_BAD_ROWS_TABLE, route key bad_rows_table)"
    )


class BadRowsTable:
    """One bad-rows Delta table, appended to once per file content."""

    def __init__(self, uri: str, storage: StorageConfig | None = None) -> None:
        self._target = DeltaTarget(TableRef.of(uri, storage))

    @property
    def uri(self) -> str:
        """The table's URI."""
        return self._target.uri

    def record(
        self, sha256: str, path: str, rows: Sequence[BadRow], run_id: str | None = None
    ) -> None:
        """Append `rows` of the file `sha256` unless an earlier attempt did (its id is there).

        `run_id`: the run reading the file, named in the commit's metadata.
        """
        if not rows:
            return
        data = pa.table(
            {
                "_ingest_file": [path] * len(rows),
                "_ingest_sha256": [sha256] * len(rows),
                "line": [r.line for r in rows],
                "raw": [r.raw for r in rows],
                "reason": [r.reason for r in rows],
                "_ingested_at": [datetime.now(UTC)] * len(rows),
            },
            schema=SCHEMA,
        )
        entry = FileEntry(sha256, path, len(rows), run_id)
        for attempt in range(ATTEMPTS):
            snapshot = self._target.snapshot()
            if self._target.has_landed(snapshot, sha256):
                return
            try:
                self._target.append(snapshot, data, [entry], merge_schema=False)
                return
            except Exception:
                # a lost race or a commit that landed despite the error: look again
                self._target.forget()
                if attempt == ATTEMPTS - 1:
                    snapshot = self._target.snapshot()
                    if self._target.has_landed(snapshot, sha256):
                        return
                    raise
