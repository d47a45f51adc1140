"""The embedded ledger: one SQLite file, safe across processes on one machine.

WAL mode with a busy timeout; every write's WHERE clause is its condition
(`version = ?`). A write and the `file_paths` rows it adds (the index of
`path` and `seen_paths`, for `by_path`) commit in one transaction.

Schema versions (`PRAGMA user_version`): 0, the first (no `file_paths`);
2 (`file_paths`); 3, this one (`files.run_id`; `_V3_STATEMENTS`:
`table_identities`, the Delta table id each table key describes, and
`files.generation`). Opening an older file for writing upgrades it in place,
once; every statement is safe to run again. A read-only open reads a
version-2 file as it is (its rows have no run id, generation 0).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ingest_core.errors import LedgerConflictError, LedgerNotFoundError, LedgerUnavailableError
from ingest_core.ledger.base import SUCCEEDED, BaseLedger, FileRecord, Where

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
    run_id TEXT,
    PRIMARY KEY (target_table, sha256)
);
CREATE INDEX IF NOT EXISTS files_status ON files (status);
CREATE INDEX IF NOT EXISTS files_path ON files (path);
CREATE INDEX IF NOT EXISTS files_table_status ON files (target_table, status, created_at);
CREATE INDEX IF NOT EXISTS files_table_created ON files (target_table, created_at);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE TABLE IF NOT EXISTS file_paths (
    path TEXT NOT NULL,
    target_table TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (path, target_table, sha256)
) WITHOUT ROWID;
"""

SCHEMA_VERSION = 3
READABLE_VERSION = 2
"""The oldest schema a read-only open reads as it is (columns it lacks read as None)."""

_UPGRADE_V3 = [
    # v2 -> v3: the run that last acted on a row.
    "ALTER TABLE files ADD COLUMN run_id TEXT",
]
"""Statements bringing an existing (version 0 or 2) file to version 3, run in `_migrate`'s
transaction before `_SCHEMA` (whose CREATE ... IF NOT EXISTS then only adds what is new).
A new file gets the same from `_SCHEMA` and never runs them."""

_V3_TABLE_IDENTITY = [
    """CREATE TABLE IF NOT EXISTS table_identities (
        target_table TEXT PRIMARY KEY,
        delta_table_id TEXT,
        recorded_at TEXT
    )""",
    "ALTER TABLE files ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",
]
"""Version 3, the table identity's part: which Delta table a table key describes, and the
generation a reopened row is re-ingested under (`ingest reconcile`)."""
_V3_STATEMENTS = [*_V3_TABLE_IDENTITY]
"""Every version-3 statement, run in order; lists of other features concatenate here."""

_BACKFILL_PATHS = """
INSERT OR IGNORE INTO file_paths (path, target_table, sha256)
    SELECT path, target_table, sha256 FROM files
    UNION ALL
    SELECT seen.value, files.target_table, files.sha256
    FROM files, json_each(files.seen_paths) AS seen
"""

_TABLES = """
WITH RECURSIVE t(name) AS (
    SELECT MIN(target_table) FROM files
    UNION ALL
    SELECT (SELECT MIN(target_table) FROM files WHERE target_table > t.name) FROM t
    WHERE t.name IS NOT NULL
)
SELECT name FROM t WHERE name IS NOT NULL
"""
"""Distinct tables by skipping through the primary key: one seek a table, not a scan."""

_COLUMNS = (
    "target_table, sha256, status, path, size, source_etag, owner, lease_until, attempt, "
    "delta_version, rows, error, seen_paths, created_at, updated_at, version, run_id, generation"
)
_COLUMNS_V2 = _COLUMNS.removesuffix(", run_id, generation")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _run_again_safe(conn: sqlite3.Connection, statement: str) -> None:
    """Run a migration statement; a column an earlier run already added is no error."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        if "duplicate column name" not in str(exc):
            raise


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SqliteLedger(BaseLedger):
    """Ledger rows in a local SQLite database file."""

    def __init__(
        self, path: str | Path, clock: Callable[[], datetime] | None = None,
        *, read_only: bool = False,
    ) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._local = threading.local()
        self.read_only = read_only
        self._read_columns = _COLUMNS
        """What reads select: a read-only open of a version-2 file has no `run_id`."""
        if read_only:
            self._check_readable()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise LedgerUnavailableError(
                f"cannot open the SQLite ledger {self.path}: {exc}; "
                "check the path exists and is writable, or pass another --ledger"
            ) from exc

    def _migrate(self) -> None:
        """Create the schema, or bring an older file up to `SCHEMA_VERSION` in one transaction."""
        conn = self._conn()
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                if version < 3 and _has_table(conn, "files"):  # an existing file, before _SCHEMA
                    for statement in _UPGRADE_V3:
                        conn.execute(statement)
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(_BACKFILL_PATHS)
                for statement in _V3_STATEMENTS:
                    _run_again_safe(conn, statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_readable(self) -> None:
        """For a read-only open: the file exists and has the current schema; creates nothing."""
        if not self.path.is_file():
            raise LedgerNotFoundError(
                f"no SQLite ledger at {self.path.resolve()}: nothing was ingested with this "
                "--table/--ledger; check the path, or pass --ledger sqlite:///PATH"
            )
        try:
            version = self._conn().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot read the SQLite ledger {self.path}: {exc}; "
                "check it is a ledger file and readable"
            ) from exc
        if version < READABLE_VERSION:
            raise LedgerUnavailableError(
                f"the SQLite ledger {self.path} has schema version {version}, older than "
                f"{READABLE_VERSION}; any writing command (`ingest retry`, `ingest run`) "
                "upgrades it"
            )
        self._read_columns = _COLUMNS if version >= SCHEMA_VERSION else _COLUMNS_V2

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None and self.read_only:
            # With no -wal file no writer has the ledger open: read it as immutable, so no
            # -wal/-shm is created beside it (a read-only folder works). Else join the writers.
            wal = self.path.with_name(self.path.name + "-wal")
            mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?{mode}", uri=True, timeout=60,
                isolation_level=None,
            )
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
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
            record.run_id,
            record.generation,
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
            run_id=row["run_id"] if "run_id" in row.keys() else None,
            etag=str(row["version"]),
            generation=(row["generation"] or 0) if "generation" in row.keys() else 0,
        )

    def _get(self, table: str, sha256: str) -> FileRecord | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {self._read_columns} FROM files WHERE target_table = ? AND sha256 = ?",
                (table, sha256),
            )
            .fetchone()
        )
        return self._record(row) if row else None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for every write inside (`BEGIN IMMEDIATE` ... `COMMIT`).

        Rolled back whole if anything inside raises. Nested, the inner one
        joins the outer. Per thread, like the connection.
        """
        conn = self._conn()
        if getattr(self._local, "batch", False):
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.batch = True
        try:
            yield
        except BaseException:
            self._local.batch = False
            conn.execute("ROLLBACK")
            raise
        self._local.batch = False
        conn.execute("COMMIT")

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A write's transaction, or none inside a `batch` (each statement is atomic on its
        own; a failure propagates and rolls the batch back)."""
        if getattr(self._local, "batch", False):
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def succeeded_at(self, table: str, paths: Sequence[str]) -> list[FileRecord]:
        """`succeeded` rows of `table` whose `path` is one of `paths`: one indexed query
        per 500 paths."""
        rows: list[FileRecord] = []
        unique = list(dict.fromkeys(paths))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = (
                f"SELECT {self._read_columns} FROM files WHERE path IN ({marks}) "
                "AND target_table = ? AND status = ?"
            )
            cursor = self._conn().execute(sql, (*chunk, table, SUCCEEDED))
            rows.extend(self._record(row) for row in cursor)
        return rows

    def _insert(self, record: FileRecord) -> FileRecord:
        placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
        conn = self._conn()
        try:
            with self._write(conn):
                conn.execute(
                    f"INSERT INTO files ({_COLUMNS}) VALUES ({placeholders})",
                    self._values(record, 1),
                )
                self._add_paths(conn, record)
        except sqlite3.IntegrityError as exc:
            raise LedgerConflictError(f"{record.sha256} already claimed in {record.table}") from exc
        return dataclasses.replace(record, etag="1")

    @staticmethod
    def _add_paths(
        conn: sqlite3.Connection, record: FileRecord, previous: FileRecord | None = None
    ) -> None:
        """Index the row's paths (only those `previous` did not have). Entries are never removed:
        a row that loses a path (a takeover records the new one) is filtered out on read."""
        known = {previous.path, *previous.seen_paths} if previous else set()
        new = {record.path, *record.seen_paths} - known
        conn.executemany(
            "INSERT OR IGNORE INTO file_paths (path, target_table, sha256) VALUES (?, ?, ?)",
            [(p, record.table, record.sha256) for p in new],
        )

    def _replace(self, record: FileRecord, previous: FileRecord | None = None) -> FileRecord:
        if record.etag is None:
            raise ValueError("a conditional replace needs the version the row was read at")
        new_version = int(record.etag) + 1
        values = self._values(record, new_version)
        assignments = ", ".join(f"{name.strip()} = ?" for name in _COLUMNS.split(",")[2:])
        conn = self._conn()
        with self._write(conn):
            cursor = conn.execute(
                f"UPDATE files SET {assignments} "
                "WHERE target_table = ? AND sha256 = ? AND version = ?",
                (*values[2:], record.table, record.sha256, int(record.etag)),
            )
            if cursor.rowcount == 1:
                self._add_paths(conn, record, previous)
        if cursor.rowcount != 1:
            raise LedgerConflictError(f"{record.sha256} in {record.table} changed since read")
        return dataclasses.replace(record, etag=str(new_version))

    def _query(self, where: Where) -> Iterator[FileRecord]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("target_table", where.table), ("path", where.path), ("sha256", where.sha256)
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.statuses is not None:
            clauses.append(f"status IN ({', '.join('?' * len(where.statuses))})")
            params.extend(where.statuses)
        if where.any_path is not None:
            clauses.append(
                "(target_table, sha256) IN "
                "(SELECT target_table, sha256 FROM file_paths WHERE path = ?)"
            )
            params.append(where.any_path)
        sql = f"SELECT {self._read_columns} FROM files"
        if clauses:
            sql += f" WHERE {' AND '.join(clauses)}"
        if where.limit is not None:
            sql += " ORDER BY created_at, sha256 LIMIT ?"
            params.append(where.limit if where.any_path is None else -1)
        # file_paths may hold a path a row has since lost: select() drops those.
        yield from where.select(self._record(row) for row in self._conn().execute(sql, params))

    def tables(self) -> list[str]:
        """The table keys that have rows, sorted: one index seek a table."""
        return [row[0] for row in self._conn().execute(_TABLES)]

    def reindex(self) -> int:
        """Rebuild `file_paths` from the rows (opening an older file already did); rows read."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_BACKFILL_PATHS)
            count: int = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    def table_identity(self, table: str) -> str | None:
        """The Delta table id recorded for `table` (None: none recorded)."""
        try:
            row = self._conn().execute(
                "SELECT delta_table_id FROM table_identities WHERE target_table = ?", (table,)
            ).fetchone()
        except sqlite3.OperationalError:  # a read-only open of an older file: nothing recorded
            return None
        return row[0] if row else None

    def record_table_identity(self, table: str, delta_table_id: str | None) -> None:
        """Record (or, with None, forget) the Delta table id `table` describes."""
        conn = self._conn()
        if delta_table_id is None:
            conn.execute("DELETE FROM table_identities WHERE target_table = ?", (table,))
            return
        conn.execute(
            "INSERT INTO table_identities (target_table, delta_table_id, recorded_at) "
            "VALUES (?, ?, ?) ON CONFLICT (target_table) DO UPDATE SET "
            "delta_table_id = excluded.delta_table_id, recorded_at = excluded.recorded_at",
            (table, delta_table_id, datetime.now(UTC).isoformat()),
        )
