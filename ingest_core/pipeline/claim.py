"""Stage 2: claim each fetched file's content in the ledger, and hold the lease while it works.

The claim is the lock (see `BaseLedger.claim`): one worker at a time owns a
content bound for a table. A content seen twice in one run is claimed once;
the second path is recorded as a sighting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig
from ingest_core.faults import crash_point
from ingest_core.ledger import BaseLedger
from ingest_core.pipeline.fetch import Fetched
from ingest_core.pipeline.lease import LeaseKeeper
from ingest_core.pipeline.work import Work
from ingest_core.sources import LocalCopy

if TYPE_CHECKING:
    from ingest_core.pipeline.settle import Settler
    from ingest_core.results import IngestResult


class Claimer:
    """Claims files for one table under one owner token; its keeper renews their leases."""

    def __init__(
        self, ledger: BaseLedger, table_key: str, owner: str, config: IngestConfig,
        keeper: LeaseKeeper, settler: Settler,
    ) -> None:
        self._ledger = ledger
        self._table_key = table_key
        self._owner = owner
        self._config = config
        self._keeper = keeper
        self._settler = settler
        self.last_look: Callable[[Work], IngestResult] | None = None
        """Settles a takeover past the last attempt (`ledger.base.last_look`) without writing:
        `succeeded` when its rows are in the table, else quarantined (`Committer.last_look`)."""

    def claim(
        self, fetched: Fetched, claimed_here: dict[str, str], run_id: str | None = None,
        *, expect_new: bool = False,
    ) -> Work | IngestResult:
        """The claimed work, or the file's result when there is nothing to write.

        `claimed_here` maps the contents claimed so far in this run to their path;
        `run_id` names the run on the row; `expect_new` says the file most likely
        holds new content (see `BaseLedger.claim`).
        """
        if isinstance(fetched.copy, Exception):
            return self._settler.unread(fetched, fetched.copy, run_id)
        crash_point("after_hash")
        work = self._claim(fetched, fetched.copy, claimed_here, run_id, expect_new=expect_new)
        if isinstance(work, Work):
            crash_point("after_claim")
        return self._past_last_attempt(work)

    def claim_many(
        self, fetched: list[Fetched], claimed_here: dict[str, str], run_id: str | None = None
    ) -> list[Work | IngestResult]:
        """`claim` for each file, in order, the ledger's writes grouped (`BaseLedger.batch`:
        one SQLite transaction). The crash points fire once the group is written: a worker
        never stops while it holds the ledger's write lock."""
        if len(fetched) <= 1:
            return [self.claim(f, claimed_here, run_id) for f in fetched]
        if any(not isinstance(f.copy, Exception) for f in fetched):
            crash_point("after_hash")
        with self._ledger.batch():
            works = [
                self._settler.unread(f, f.copy, run_id) if isinstance(f.copy, Exception)
                else self._claim(f, f.copy, claimed_here, run_id)
                for f in fetched
            ]
        if any(isinstance(work, Work) for work in works):
            crash_point("after_claim")
        return [self._past_last_attempt(work) for work in works]

    def _claim(
        self, fetched: Fetched, copy: LocalCopy, claimed_here: dict[str, str],
        run_id: str | None, *, expect_new: bool = False,
    ) -> Work | IngestResult:
        """The ledger's claim of one read file; the lease is not held yet."""
        if copy.sha256 in claimed_here:
            return self._settler.seen_in_run(fetched, copy, claimed_here[copy.sha256])
        claim = self._ledger.claim(
            self._table_key,
            copy.sha256,
            path=fetched.file.uri,
            owner=self._owner,
            lease_seconds=self._config.lease_seconds,
            max_attempts=self._config.max_attempts,
            size=copy.size,
            source_etag=copy.recorded_etag,
            run_id=run_id,
            expect_new=expect_new,
        )
        if claim.outcome != "claimed":
            return self._settler.not_claimed(fetched, copy, claim)
        claimed_here[copy.sha256] = fetched.file.uri
        # held at once, inside a claim group too: an interrupt between the group's write and
        # a later hold would leave claims no one gives back (a rolled-back group's holds
        # find no row, and give nothing back)
        self._keeper.hold(claim.record)
        return Work(file=fetched.file, copy=copy, record=claim.record, started=fetched.started,
                    run_id=run_id)

    def _past_last_attempt(self, work: Work | IngestResult) -> Work | IngestResult:
        """A held claim taken over past the last attempt (its worker died) is settled by what
        the table holds (`last_look`), never written again."""
        if (
            isinstance(work, Work) and self.last_look is not None
            and work.record.attempt > self._config.max_attempts
        ):
            return self.last_look(work)
        return work
