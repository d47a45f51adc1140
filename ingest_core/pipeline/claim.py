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

    def claim(self, fetched: Fetched, claimed_here: dict[str, str]) -> Work | IngestResult:
        """The claimed work, or the file's result when there is nothing to write.

        `claimed_here` maps the contents claimed so far in this run to their path.
        """
        if isinstance(fetched.copy, Exception):
            return self._settler.unread(fetched, fetched.copy)
        copy = fetched.copy
        crash_point("after_hash")
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
            source_etag=copy.etag,
        )
        if claim.outcome != "claimed":
            return self._settler.not_claimed(fetched, copy, claim)
        claimed_here[copy.sha256] = fetched.file.uri
        self._keeper.hold(claim.record)
        crash_point("after_claim")
        work = Work(file=fetched.file, copy=copy, record=claim.record, started=fetched.started)
        if claim.record.attempt > self._config.max_attempts and self.last_look is not None:
            return self.last_look(work)  # the last attempt's worker died: look, never write
        return work
