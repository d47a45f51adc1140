"""Stage 5: settle each file in the ledger and report it; every `IngestResult` is built here.

A result reports the ledger row as it stands after the settling write, not
what the worker meant to write: when another owner completed the row first,
its version and row count are the ones reported.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ingest_core.errors import BadNameError, IngestError, LeaseLostError, SourceChangedError
from ingest_core.faults import crash_point
from ingest_core.ledger import SUCCEEDED, BaseLedger, Claim, FileRecord
from ingest_core.pipeline.fetch import Fetched, printable
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.work import Work
from ingest_core.results import IngestResult, Outcome
from ingest_core.sources import LocalCopy, SourceFile

_log = logging.getLogger(__name__)


class Settler:
    """Completes and fails ledger rows of one table, and builds the results."""

    def __init__(
        self, ledger: BaseLedger, table_key: str, owner: str, keeper: LeaseKeeper,
        max_attempts: int,
    ) -> None:
        self._ledger = ledger
        self._table_key = table_key
        self._owner = owner
        self._keeper = keeper
        self._max_attempts = max_attempts

    # -- before a claim ---------------------------------------------------------------

    def unread(self, fetched: Fetched, exc: Exception, run_id: str | None = None) -> IngestResult:
        """A file that could not be read: a `failed` row keyed by its path."""
        file = fetched.file
        if isinstance(exc, BadNameError):  # nothing to key a row on: reported only
            return result_of(file, "failed", fetched.started, error=str(exc))
        reason = str(exc) if isinstance(exc, SourceChangedError) else (
            f"{file.uri}: cannot read: {exc}; run again"
        )
        self._ledger.record_unread(
            self._table_key, file.uri, owner=self._owner, error=reason,
            max_attempts=self._max_attempts, run_id=run_id,
        )
        return result_of(file, "failed", fetched.started, error=reason)

    def seen_in_run(self, fetched: Fetched, copy: LocalCopy, first: str) -> IngestResult:
        """The same content as a file claimed earlier in this run: a sighting, skipped."""
        copy.discard()
        self._ledger.note_sighting(self._table_key, copy.sha256, fetched.file.uri)
        return result_of(
            fetched.file, "skipped", fetched.started, sha256=copy.sha256, size=copy.size,
            error=f"same content as {first} in this run",
        )

    def not_claimed(self, fetched: Fetched, copy: LocalCopy, claim: Claim) -> IngestResult:
        """A content done, quarantined, or held by a live worker elsewhere."""
        copy.discard()
        record = claim.record
        assert claim.outcome != "claimed"
        status: Outcome = "skipped" if claim.outcome == "done" else claim.outcome
        error = record.error if claim.outcome == "quarantined" else None
        if claim.outcome == "in_progress":
            error = f"{fetched.file.uri}: another worker ({record.owner}) holds it; retry later"
        return result_of(
            fetched.file, status, fetched.started, sha256=copy.sha256, size=copy.size,
            error=error, delta_version=record.delta_version if status == "skipped" else None,
        )

    def recovered(
        self, sha256: str, path: str, rows: int, lease_seconds: float, run_id: str | None = None
    ) -> None:
        """Record as `succeeded` a content found in the table by its lineage (a rebuilt ledger)."""
        claim = self._ledger.claim(
            self._table_key, sha256, path=path, owner=self._owner, lease_seconds=lease_seconds,
            max_attempts=self._max_attempts, run_id=run_id,
        )
        if claim.outcome == "claimed":
            self._ledger.complete(claim.record, delta_version=None, rows=rows, run_id=run_id)

    # -- after a claim ---------------------------------------------------------------

    def ingested(self, work: Work, version: int | None, rows: int | None) -> IngestResult:
        """The content is in the table (committed by us or found there): `succeeded`."""
        return self.ingested_many([(work, version, rows)])[0]

    def ingested_many(
        self, done: list[tuple[Work, int | None, int | None]]
    ) -> list[IngestResult]:
        """`ingested` for each (work, version, rows), the completions written as one group
        (`BaseLedger.batch`: one SQLite transaction)."""
        records = [self._keeper.release(work.sha256) for work, _, _ in done]
        if done:
            crash_point("during_complete")
        with self._ledger.batch():
            rows = [
                self._ledger.complete(
                    record, delta_version=version, rows=count, run_id=work.run_id
                )
                for record, (work, version, count) in zip(records, done, strict=True)
            ]
        return [
            self._ingested(work, version, count, row)
            for row, (work, version, count) in zip(rows, done, strict=True)
        ]

    def found(self, work: Work, version: int | None, rows: int | None) -> IngestResult:
        """The content was already in the table (an earlier attempt committed it): its row
        is completed as `succeeded`, and the file is `skipped`, with the version that holds
        it; its rows were written before, not by this run."""
        ingested = self.ingested(work, version, rows)
        ingested.status = "skipped"
        return ingested

    def _ingested(
        self, work: Work, version: int | None, rows: int | None, row: FileRecord
    ) -> IngestResult:
        self._done_with(work)
        if row.status == SUCCEEDED and row.owner is None:
            version, rows = row.delta_version, row.rows
        return self._result(work, "ingested", rows=rows, delta_version=version,
                            rescued_rows=work.rescued_rows,
                            bad_rows=len(work.bad_rows) if work.rescued_rows is not None else None)

    def give_back(self, work: Work, reason: str) -> None:
        """Return the claim as `failed`, this attempt not counted, when the run cannot go on.

        The file is not at fault (no table, an interrupted run): the next run
        takes it at once and its attempt count is as it was before this claim.
        """
        self._done_with(work)
        self._ledger.give_back(self._keeper.release(work.sha256), reason, run_id=work.run_id)

    def give_back_held(self, reason: str) -> int:
        """Give back every claim still held (an interrupted run); return how many."""
        given = 0
        for record in self._keeper.release_all():
            try:
                self._ledger.give_back(record, reason)
            except Exception as exc:  # the ledger is what failed: the dead owner's lease expires
                _log.warning("could not give back the claim of %s: %s", record.path, exc)
                continue
            given += 1
        return given

    def lost(self, work: Work) -> IngestResult:
        """Another worker took the lease over: it finishes the file."""
        self._done_with(work)
        return self._result(
            work, "in_progress",
            error=f"{work.file.uri}: lease lost to another worker, which will finish it",
        )

    def error(
        self, work: Work, exc: BaseException, *, retryable: bool | None = None
    ) -> IngestResult:
        """Record a failed attempt; quarantine when retrying cannot help or attempts ran out.

        `retryable` overrides the exception's own flag (delta-rs errors carry none).
        """
        self._done_with(work)
        if isinstance(exc, LeaseLostError):
            return self._result(work, "in_progress", error=str(exc))
        record = self._keeper.release(work.sha256)
        if retryable is None:
            retryable = getattr(exc, "retryable", True)
        message = str(exc) if isinstance(exc, IngestError) else (
            f"{work.file.uri}: {type(exc).__name__}: {exc}"
        )
        quarantine = not retryable or record.attempt >= self._max_attempts
        self._ledger.fail(record, message, quarantine=quarantine, run_id=work.run_id)
        return self._result(work, "quarantined" if quarantine else "failed", error=message)

    def _result(self, work: Work, status: Outcome, **extra: Any) -> IngestResult:
        return result_of(work.file, status, work.started, sha256=work.sha256,
                         size=work.copy.size, run_id=work.run_id, **extra)

    @staticmethod
    def _done_with(work: Work) -> None:
        work.copy.discard()
        work.data = None


def result_of(file: SourceFile, status: Outcome, started: float, **extra: Any) -> IngestResult:
    """The result of one file, timed from `started` (`time.monotonic()`)."""
    return IngestResult(
        path=printable(file.uri), status=status, duration_s=time.monotonic() - started, **extra
    )

