"""The embedded ledger: one SQLite file, safe across processes on one machine.

WAL mode with a busy timeout; every write is a single statement whose WHERE
clause is the condition (`version = ?`), so no explicit locking is needed.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from ingest_core.errors import LedgerConflictError, LedgerUnavailableError
from ingest_core.ledger.base import BaseLedger, FileRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    target_table TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    source_etag TEXT,
    owner TEXT,
    lease_until TEXT,
    attempt INTEGER NOT NULL,
    delta_version INTEGER,
    rows INTEGER,
    error TEXT,
    seen_paths TEXT NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    version INTEGER NOT NULL,
    PRIMARY KEY (target_table, sha256)
);
CREATE INDEX IF NOT EXISTS files_status ON files (status);
CREATE INDEX IF NOT EXISTS files_path ON files (path);
"""

_COLUMNS = (
    "target_table, sha256, status, path, size, source_etag, owner, lease_until, attempt, "
    "delta_version, rows, error, seen_paths, created_at, updated_at, version"
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SqliteLedger(BaseLedger):
    """Ledger rows in a local SQLite database file."""

    def __init__(self, path: str | Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerUnavailableError(
                f"cannot open the SQLite ledger {self.path}: {exc}; "
                "check the path exists and is writable, or pass another --ledger"
            ) from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _values(record: FileRecord, version: int) -> tuple[object, ...]:
        return (
            record.table,
            record.sha256,
            record.status,
            record.path,
            record.size,
            record.source_etag,
            record.owner,
            _time(record.lease_until),
            record.attempt,
            record.delta_version,
            record.rows,
            record.error,
            json.dumps(record.seen_paths),
            _time(record.created_at),
            _time(record.updated_at),
            version,
        )

    @staticmethod
    def _record(row: sqlite3.Row) -> FileRecord:
        return FileRecord(
            table=row["target_table"],
            sha256=row["sha256"],
            status=row["status"],
            path=row["path"],
            size=row["size"],
            source_etag=row["source_etag"],
            owner=row["owner"],
            lease_until=_parse_time(row["lease_until"]),
            attempt=row["attempt"],
            delta_version=row["delta_version"],
            rows=row["rows"],
            error=row["error"],
            seen_paths=json.loads(row["seen_paths"]),
            created_at=_parse_time(row["created_at"]),
            updated_at=_parse_time(row["updated_at"]),
            etag=str(row["version"]),
        )

    def _get(self, table: str, sha256: str) -> FileRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM files WHERE target_table = ? AND sha256 = ?",
                (table, sha256),
            )
            .fetchone()
        )
        return self._record(row) if row else None

    def _insert(self, record: FileRecord) -> FileRecord:
        placeholders = ", ".join("?" * 16)
        try:
            self._conn().execute(
                f"INSERT INTO files ({_COLUMNS}) VALUES ({placeholders})", self._values(record, 1)
            )
        except sqlite3.IntegrityError as exc:
            raise LedgerConflictError(f"{record.sha256} already claimed in {record.table}") from exc
        return dataclasses.replace(record, etag="1")

    def _replace(self, record: FileRecord) -> FileRecord:
        if record.etag is None:
            raise ValueError("a conditional replace needs the version the row was read at")
        new_version = int(record.etag) + 1
        values = self._values(record, new_version)
        assignments = ", ".join(f"{name.strip()} = ?" for name in _COLUMNS.split(",")[2:])
        cursor = self._conn().execute(
            f"UPDATE files SET {assignments} WHERE target_table = ? AND sha256 = ? AND version = ?",
            (*values[2:], record.table, record.sha256, int(record.etag)),
        )
        if cursor.rowcount != 1:
            raise LedgerConflictError(f"{record.sha256} in {record.table} changed since read")
        return dataclasses.replace(record, etag=str(new_version))

    def _query(
        self, *, table: str | None = None, status: str | None = None, path: str | None = None
    ) -> Iterator[FileRecord]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (("target_table", table), ("status", status), ("path", path)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        for row in self._conn().execute(f"SELECT {_COLUMNS} FROM files{where}", params):
            yield self._record(row)
