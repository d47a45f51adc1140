"""The ledger: one row per (target table, content sha256), the lock and the record.

`BaseLedger` holds the whole claim/lease/complete logic. A back end implements
only four storage methods: `_get`, `_insert` (conditional: fails if the row
exists), `_replace` (conditional: fails unless the row still has the version
the caller read) and `_query` (rows matching a `Where`). Both conditions raise
`LedgerConflictError`.

Reads by key: `due`, `tables`, `find`, `by_path` and `records(limit=...)` must
cost what they return, never a read of the whole ledger: each back end serves
the `Where` shapes they use from its own indexes (SQL indexes; index entities
in Azure Table, kept by that back end inside its primitives).
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ingest_core.errors import LeaseLostError, LedgerConflictError
from ingest_core.owners import owner_gone

PROCESSING = "processing"
SUCCEEDED = "succeeded"
FAILED = "failed"
QUARANTINED = "quarantined"
STATUSES = (PROCESSING, SUCCEEDED, FAILED, QUARANTINED)
OPEN_STATUSES = (PROCESSING, FAILED, QUARANTINED)
"""Rows not settled for good. `succeeded` is terminal but for `reopen` (an operator's
`ingest reconcile --apply` after the table lost the rows), which also moves `generation`."""

MAX_ERROR_CHARS = 8_000
"""Error text kept in a row: well inside Azure Table's 64 KiB property limit."""

MAX_SEEN_PATHS = 50
"""How many other paths carrying the same content a row remembers."""


@dataclass
class FileRecord:
    """The ledger's row for one content bound for one table."""

    table: str
    sha256: str
    status: str
    path: str
    size: int = 0
    source_etag: str | None = None
    owner: str | None = None
    lease_until: datetime | None = None
    attempt: int = 1
    delta_version: int | None = None
    rows: int | None = None
    error: str | None = None
    seen_paths: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    run_id: str | None = None
    """The run that last claimed, took over or settled the row (None: an older ledger's row)."""
    etag: str | None = None
    """The row's version in the store; conditional writes compare it."""
    generation: int = 0
    """How often `reopen` sent this content back to its table (rows lost to a restore, a
    delete, a replaced table). Its Delta transaction version is `generation + 1`, so the
    id an earlier generation left in the log does not block the re-ingest."""

    def lease_live(self, now: datetime) -> bool:
        """Whether a `processing` row is still held by its owner at `now`.

        A lease whose owner is known dead (a process of this host that is gone,
        `owners.owner_gone`) is not live, however long it had to run.
        """
        return (
            self.status == PROCESSING and self.lease_until is not None
            and self.lease_until > now and not owner_gone(self.owner)
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (times as ISO 8601, no store version)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            if f.name == "etag" or (f.name == "generation" and not self.generation):
                continue
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True)
class Where:
    """What `_query` selects: rows matching every filter given (None: no filter)."""

    table: str | None = None
    statuses: tuple[str, ...] | None = None
    path: str | None = None
    """The row's `path` equals it."""
    any_path: str | None = None
    """The row's `path` equals it or its `seen_paths` holds it."""
    sha256: str | None = None
    limit: int | None = None
    """Stop after this many rows (the store's order; SQLite: oldest first)."""

    def matches(self, record: FileRecord) -> bool:
        """Whether `record` passes every filter (limit aside)."""
        return (
            (self.table is None or record.table == self.table)
            and (self.statuses is None or record.status in self.statuses)
            and (self.path is None or record.path == self.path)
            and (
                self.any_path is None
                or record.path == self.any_path
                or self.any_path in record.seen_paths
            )
            and (self.sha256 is None or record.sha256 == self.sha256)
        )

    def select(self, rows: Iterable[FileRecord]) -> Iterator[FileRecord]:
        """The rows that match, stopping at `limit`: a back end's last filter over its reads."""
        if self.limit is not None and self.limit <= 0:
            return
        found = 0
        for record in rows:
            if self.matches(record):
                yield record
                found += 1
                if self.limit is not None and found >= self.limit:
                    return


def _oldest_first(rows: Iterable[FileRecord]) -> list[FileRecord]:
    return sorted(rows, key=lambda r: (r.created_at or datetime.min.replace(tzinfo=UTC), r.sha256))


ClaimOutcome = Literal["claimed", "done", "in_progress", "quarantined"]


@dataclass(frozen=True)
class Claim:
    """What `BaseLedger.claim` found: the outcome and the row as it now stands."""

    outcome: ClaimOutcome
    record: FileRecord


def unread_key(path: str) -> str:
    """The ledger key of a file that could not be read, so its content hash is unknown.

    Shaped like a content key (64 hex digits, valid in every ledger) and derived
    from the path, so one path keeps one such row. Should a file's bytes ever
    hash to it, the row is only `failed`: that file's claim takes it over.
    """
    return hashlib.sha256(b"ingest-core unread file\0" + path.encode()).hexdigest()


def last_look(record: FileRecord, max_attempts: int) -> bool:
    """Whether an exhausted row still gets one claim, to look in the table before giving up.

    A worker that died on the last attempt (`processing`, its lease gone) may
    have committed first: the takeover (attempt `max_attempts + 1`) must look
    for the rows (transaction id, lineage) and complete the row if they are
    there, and write nothing. A `failed` row's worker saw its attempt fail, and
    a last look that died too is not given another: both are quarantined.
    """
    return record.status == PROCESSING and record.attempt == max_attempts


def bound_error(text: str) -> str:
    """Cut an error message to what a ledger row keeps."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 20] + " ...[truncated]"


class BaseLedger(ABC):
    """Claim, renew, complete and fail rows; back ends supply the storage."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- storage: the only methods a back end implements -------------------

    @abstractmethod
    def _get(self, table: str, sha256: str) -> FileRecord | None:
        """Read one row, or None."""

    @abstractmethod
    def _insert(self, record: FileRecord) -> FileRecord:
        """Insert a new row; raise LedgerConflictError if the key exists."""

    @abstractmethod
    def _replace(self, record: FileRecord, previous: FileRecord | None = None) -> FileRecord:
        """Replace a row whose version is still `record.etag`; else LedgerConflictError.

        `previous` is the row as read at that version, when the caller has it:
        a back end keeping indexes may skip the entries that did not change.
        """

    @abstractmethod
    def _query(self, where: Where) -> Iterator[FileRecord]:
        """Rows matching `where`, at most `where.limit` of them.

        Cost must follow the rows returned (and the number of tables where
        no `table` is given), not the ledger's size, for these shapes:
        `sha256`, `any_path` or `path`, open `statuses`, and any shape with a
        `limit` whose rows are common (the read stops there).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most back ends hold nothing
        """Release connections."""

    def batch(self) -> AbstractContextManager[object]:
        """Group the writes made inside it: a back end may commit them together.

        SQLite runs them as one transaction (one commit for many claims or
        completions); the default groups nothing, each write stands alone.
        Conditions hold as they do one by one. Nothing inside may wait on
        another worker: the group may hold the ledger's write lock.
        """
        return nullcontext()

    def succeeded_at(self, table: str, paths: Sequence[str]) -> list[FileRecord]:
        """`succeeded` rows of `table` whose own `path` is one of `paths` (seen paths aside).

        What a rerun needs to skip files by the version their row recorded,
        without reading them. The default finds none (every file is then
        hashed and claimed); a back end that can answer in one query for many
        paths overrides it.
        """
        return []

    # -- the protocol -------------------------------------------------------

    def now(self) -> datetime:
        """The ledger's clock (UTC)."""
        return self._clock()

    def get(self, table: str, sha256: str) -> FileRecord | None:
        """The row for this content in this table, if any."""
        return self._get(table, sha256)

    def records(
        self,
        *,
        table: str | None = None,
        status: str | None = None,
        path: str | None = None,
        limit: int | None = None,
    ) -> list[FileRecord]:
        """Rows matching the filters, oldest first.

        With `limit`, the read stops after that many rows: SQLite returns the
        oldest; Azure Table the first in its key order (a random sample, as
        keys are content hashes). Ask for `limit + 1` to learn whether more exist.
        """
        statuses = (status,) if status is not None else None
        where = Where(table=table, statuses=statuses, path=path, limit=limit)
        return _oldest_first(self._query(where))

    def due(
        self,
        table: str,
        *,
        max_attempts: int,
        now: datetime | None = None,
        limit: int | None = None,
    ) -> list[FileRecord]:
        """Rows of `table` worth another attempt, oldest first.

        `failed` with attempts left (`attempt < max_attempts`), or `processing`
        with a lease expired at `now` (default: the ledger's clock). Costs what
        the table's open rows (processing, failed, quarantined) cost to read,
        whatever the number of succeeded rows.
        """
        at = now or self.now()
        open_rows = self._query(Where(table=table, statuses=(FAILED, PROCESSING)))
        rows = _oldest_first(
            r for r in open_rows
            if (r.status == FAILED and r.attempt < max_attempts)
            or (r.status == PROCESSING and not r.lease_live(at))
        )
        return rows if limit is None else rows[:limit]

    def tables(self) -> list[str]:
        """The table keys that have rows, sorted (the `unrouted:` key included).

        This default reads every row; back ends override it with a registry.
        """
        return sorted({r.table for r in self._query(Where())})

    def find(self, sha256: str, *, table: str | None = None) -> list[FileRecord]:
        """The rows of one content: in `table`, or in every table (sorted by table)."""
        return sorted(self._query(Where(table=table, sha256=sha256)), key=lambda r: r.table)

    def by_path(self, table: str, path: str) -> list[FileRecord]:
        """Rows of `table` whose `path` is `path` or whose `seen_paths` holds it, oldest first.

        The exact string: other spellings of the same location (https:// and
        abfss:// of one blob) are other paths.
        """
        return _oldest_first(self._query(Where(table=table, any_path=path)))

    def reindex(self) -> int:
        """Rebuild the back end's indexes from the rows; return how many rows were read.

        The upgrade path for rows written before the indexes existed: run it
        once, after every writer runs this version. It reads the whole ledger.
        The default has no index to build and reads nothing.
        """
        return 0

    def claim(
        self,
        table: str,
        sha256: str,
        *,
        path: str,
        owner: str,
        lease_seconds: float,
        max_attempts: int,
        size: int = 0,
        source_etag: str | None = None,
        run_id: str | None = None,
        expect_new: bool = False,
    ) -> Claim:
        """Try to become the one worker that ingests this content into this table.

        The row is the lock; its store version guards every change::

            worker A   insert ─── processing, lease ──────────┬── renew ─── succeeded
                                   │<────── lease_seconds ──>│
            worker B        insert: 409 → read → live lease → "in_progress" (retry later)
            worker C                                 (A died) read → lease expired
                                                     → replace If-Match → processing, attempt+1

        A 409/412 is not proof that someone else won (the SDK may have retried
        our own write), so the owner token read back decides. `run_id` is
        written on the row when this claim inserts, takes over or quarantines it.

        By default the row is read first: a duplicate (a rerun, a redelivery)
        then costs one read, and a back end writes its index entries only for
        new rows. With `expect_new` (an arrival event: almost always new
        content) the insert goes first and a conflict is read after, saving a
        round trip per new file.
        """
        now = self.now()
        fresh = FileRecord(
            table=table,
            sha256=sha256,
            status=PROCESSING,
            path=path,
            size=size,
            source_etag=source_etag,
            owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            created_at=now,
            updated_at=now,
            run_id=run_id,
        )
        read_first = not expect_new
        for _ in range(5):
            existing = self._get(table, sha256) if read_first else None
            read_first = True
            if existing is None:
                try:
                    return Claim("claimed", self._insert(fresh))
                except LedgerConflictError:
                    continue  # inserted meanwhile (maybe by our own retried write): read it
            decided = self._decide(existing, fresh, owner, lease_seconds, max_attempts)
            if decided is not None:
                return decided
        raise LedgerConflictError(f"could not settle the claim of {sha256} in {table}: retry")

    def _decide(
        self,
        existing: FileRecord,
        fresh: FileRecord,
        owner: str,
        lease_seconds: float,
        max_attempts: int,
    ) -> Claim | None:
        """Claim outcome for an existing row; None when a concurrent change means: look again."""
        now = self.now()
        if existing.status == PROCESSING and existing.owner == owner:
            return Claim("claimed", existing)
        if existing.status == SUCCEEDED:
            return Claim("done", self._note_sighting(existing, fresh.path, fresh.source_etag))
        if existing.status == QUARANTINED:
            return Claim("quarantined", self._note_sighting(existing, fresh.path))
        if existing.lease_live(now):
            return Claim("in_progress", existing)
        if existing.attempt >= max_attempts and not last_look(existing, max_attempts):
            gave_up = dataclasses.replace(
                existing,
                status=QUARANTINED,
                owner=None,
                lease_until=None,
                updated_at=now,
                run_id=fresh.run_id or existing.run_id,
                error=bound_error(
                    f"gave up after {existing.attempt} attempts; last error: {existing.error}"
                ),
            )
            try:
                return Claim("quarantined", self._replace(gave_up, existing))
            except LedgerConflictError:
                return None
        takeover = dataclasses.replace(
            existing,
            status=PROCESSING,
            owner=owner,
            path=fresh.path,
            size=fresh.size,
            source_etag=fresh.source_etag,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempt=existing.attempt + 1,
            updated_at=now,
            run_id=fresh.run_id or existing.run_id,
        )
        try:
            return Claim("claimed", self._replace(takeover, existing))
        except LedgerConflictError:
            return None  # re-read: it may have been our own retried write

    def note_sighting(self, table: str, sha256: str, path: str) -> None:
        """Remember that this content was also seen under `path` (best effort)."""
        record = self._get(table, sha256)
        if record is not None:
            self._note_sighting(record, path)

    def _note_sighting(
        self, record: FileRecord, path: str, source_etag: str | None = None
    ) -> FileRecord:
        """Remember that this content was also seen under `path` (best effort).

        Seen again at the row's own path under another version (`source_etag`:
        the same bytes rewritten, or a local file whose identity was racy when
        recorded), the row records that version, which the bytes just hashed
        prove: the next run may skip the file by it (`succeeded_at`).
        """
        if path == record.path:
            from ingest_core.sources.identity import newer_proof

            if not newer_proof(record.source_etag, source_etag):
                return record
            changed = dataclasses.replace(record, source_etag=source_etag)
        elif path in record.seen_paths:
            return record
        else:
            seen = [*record.seen_paths, path][-MAX_SEEN_PATHS:]
            changed = dataclasses.replace(record, seen_paths=seen)
        try:
            return self._replace(changed, record)
        except LedgerConflictError:
            return record  # a concurrent change won; the sighting is a courtesy, not state

    def _write_as_owner(
        self, record: FileRecord, change: Callable[[FileRecord], FileRecord]
    ) -> FileRecord | None:
        """Write `change(row)` while `record.owner` holds the row; None once it does not.

        A conflict is re-read: our own renewal (or an SDK retry of our write)
        moves the version too, and then the change is applied again.
        """
        current: FileRecord | None = record
        while current and current.status == PROCESSING and current.owner == record.owner:
            try:
                return self._replace(change(current), current)
            except LedgerConflictError:
                current = self._get(record.table, record.sha256)
        return None

    def renew(self, record: FileRecord, lease_seconds: float) -> FileRecord:
        """Extend the lease of a row this worker owns; LeaseLostError if it is gone."""

        def extend(row: FileRecord) -> FileRecord:
            now = self.now()
            return dataclasses.replace(
                row, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now
            )

        renewed = self._write_as_owner(record, extend)
        if renewed is None:
            raise LeaseLostError(
                f"lost the lease on {record.path} ({record.sha256[:12]}): "
                "another worker took it over; this worker stops without committing"
            )
        return renewed

    def complete(
        self, record: FileRecord, *, delta_version: int | None, rows: int | None,
        run_id: str | None = None,
    ) -> FileRecord:
        """Mark the content as in the table (by run `run_id`; None keeps the claim's).

        Losing the row here is harmless: the transaction id in the Delta log
        makes whoever owns the row now find the data and complete it.
        """

        def done(row: FileRecord) -> FileRecord:
            return dataclasses.replace(
                row, status=SUCCEEDED, owner=None, lease_until=None,
                delta_version=delta_version, rows=rows, error=None, updated_at=self.now(),
                run_id=run_id or row.run_id,
            )

        return self._write_as_owner(record, done) or self._get_or(record, done)

    def fail(
        self, record: FileRecord, error: str, *, quarantine: bool = False,
        run_id: str | None = None,
    ) -> FileRecord:
        """Record a failed attempt (`failed`, retried later) or quarantine the content.

        `run_id`: the run settling it (None keeps the claim's).
        """

        def failed(row: FileRecord) -> FileRecord:
            return dataclasses.replace(
                row, status=QUARANTINED if quarantine else FAILED, owner=None,
                lease_until=None, error=bound_error(error), updated_at=self.now(),
                run_id=run_id or row.run_id,
            )

        return self._write_as_owner(record, failed) or self._get_or(record, failed)

    def give_back(
        self, record: FileRecord, reason: str, *, run_id: str | None = None
    ) -> FileRecord | None:
        """Return a claim this worker owns unused: `failed`, no lease, this attempt not counted.

        For an interrupted run or an environment error (nothing was wrong with
        the file): the next claim takes the row at once, and its attempt count
        ends where it was before this claim. None when the row is no longer ours.
        """

        def returned(row: FileRecord) -> FileRecord:
            return dataclasses.replace(
                row, status=FAILED, owner=None, lease_until=None,
                attempt=max(row.attempt - 1, 0), error=bound_error(reason),
                updated_at=self.now(), run_id=run_id or row.run_id,
            )

        return self._write_as_owner(record, returned)

    def _get_or(self, record: FileRecord, change: Callable[[FileRecord], FileRecord]) -> FileRecord:
        """The row as another owner left it (or, if gone, what we meant to write)."""
        return self._get(record.table, record.sha256) or change(record)

    def record_unread(
        self, table: str, path: str, *, owner: str, error: str, max_attempts: int,
        run_id: str | None = None,
    ) -> FileRecord:
        """Record, as a `failed` row keyed by `unread_key(path)`, a file that could not be read.

        A file deleted between listing and reading, or overwritten mid-read, has
        no content hash; this row makes it visible in the ledger all the same.
        Each new failure at the path is one more attempt (quarantined when they
        run out); a row someone else is writing right now is left to them.
        """
        claim = self.claim(
            table, unread_key(path), path=path, owner=owner, lease_seconds=60,
            max_attempts=max_attempts, run_id=run_id,
        )
        if claim.outcome != "claimed":
            return claim.record
        return self.fail(claim.record, error)

    def resolve_unread(
        self, record: FileRecord, sha256: str, *, run_id: str | None = None
    ) -> FileRecord | None:
        """Close a path's unread row (`record_unread`) once a later read of the path worked.

        The content now has a row of its own (key `sha256`), which carries the
        file's state from here on; the unread row becomes `succeeded`, naming
        that content, so retries and maintenance stop downloading the path for
        it. A row in another state (quarantined, live, settled) is left as it is.
        """
        if record.sha256 != unread_key(record.path):
            raise ValueError(f"{record.sha256} is not the unread row of {record.path}")
        return self._change_row(
            record.table, record.sha256, f"close the unread row of {record.path}",
            when=self._stopped,
            change=lambda current: dataclasses.replace(
                current, status=SUCCEEDED, owner=None, lease_until=None,
                error=bound_error(
                    f"resolved: {current.path} was read later as content {sha256}; "
                    f"that content's row is its record (last read error: {current.error})"
                ),
                updated_at=self.now(), run_id=run_id or current.run_id,
            ),
        )

    def dismiss(
        self, table: str, sha256: str, reason: str, *, run_id: str | None = None
    ) -> FileRecord | None:
        """Close a `failed` (or dead `processing`) row as `quarantined`, recording `reason`.

        For a file an operator knows will not come back (deleted after it
        failed): retries stop taking it, and the row says why. A row in any
        other state, or a live lease, is returned as it is.
        """
        return self._change_row(
            table, sha256, f"dismiss {sha256} in {table}", when=self._stopped,
            change=lambda current: dataclasses.replace(
                current, status=QUARANTINED, owner=None, lease_until=None,
                error=bound_error(f"dismissed: {reason}"), updated_at=self.now(),
                run_id=run_id or current.run_id,
            ),
        )

    def release(
        self, table: str, sha256: str, *, run_id: str | None = None
    ) -> FileRecord | None:
        """Turn a quarantined row back into `failed` with fresh attempts, for the next retry.

        `run_id`: the run releasing it (None keeps the row's).
        """
        return self._change_row(
            table, sha256, f"release {sha256} in {table}",
            when=lambda current: current.status == QUARANTINED,
            change=lambda current: dataclasses.replace(
                current, status=FAILED, attempt=0, updated_at=self.now(),
                run_id=run_id or current.run_id,
            ),
        )

    def reopen(self, table: str, sha256: str, reason: str) -> FileRecord | None:
        """Send a `succeeded` row whose rows the table no longer holds back for ingestion.

        The row becomes `failed` with fresh attempts (the next run, retry or
        maintenance tick takes it) and its `generation` moves on by one, so the
        re-ingest commits transaction version `generation + 1` and the id the
        lost commit left in the Delta log does not make the guard skip it. A
        row in any other state is returned as it is (None: no row).
        """
        return self._change_row(
            table, sha256, f"reopen {sha256} in {table}",
            when=lambda current: current.status == SUCCEEDED,
            change=lambda current: dataclasses.replace(
                current, status=FAILED, attempt=0, owner=None, lease_until=None,
                generation=current.generation + 1,
                error=bound_error(f"reopened: {reason}"), updated_at=self.now(),
            ),
        )

    def _stopped(self, row: FileRecord) -> bool:
        """A `failed` row, or a `processing` one whose owner is gone."""
        return row.status == FAILED or (row.status == PROCESSING and not row.lease_live(self.now()))

    def _change_row(
        self, table: str, sha256: str, action: str, *,
        when: Callable[[FileRecord], bool], change: Callable[[FileRecord], FileRecord],
    ) -> FileRecord | None:
        """Write `change(row)` over the row if `when(row)`, re-reading after a conflict;
        the row as it is otherwise (None: no row)."""
        for _ in range(5):
            current = self._get(table, sha256)
            if current is None or not when(current):
                return current
            try:
                return self._replace(change(current), current)
            except LedgerConflictError:
                continue
        raise LedgerConflictError(f"could not {action}: retry")

    # -- which Delta table a table key describes ------------------------------

    def table_identity(self, table: str) -> str | None:
        """The Delta table id (`metaData.id`) recorded for `table`, or None if none is."""
        raise NotImplementedError(f"{type(self).__name__} does not record table identities")

    def record_table_identity(self, table: str, delta_table_id: str | None) -> None:
        """Record the Delta table id `table` describes (None: forget it, the next table is
        recorded when first seen)."""
        raise NotImplementedError(f"{type(self).__name__} does not record table identities")
