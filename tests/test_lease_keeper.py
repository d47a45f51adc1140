"""The lease keeper renews held rows in the background without stalling the claims it serves.

On the SQLite ledger a claim group holds the write transaction while it hands
each new claim to the keeper; a renewal falling due meanwhile must wait for
the transaction without holding the keeper's lock. (The eight-worker race
test once stalled on this for SQLite's 60 s busy timeout, and the other
workers' claims failed with "database is locked".)
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ingest_core.ledger import BaseLedger, FileRecord, open_ledger
from ingest_core.pipeline.lease import LeaseKeeper

LEASE_S = 0.3
"""Renewals every 0.1 s."""


def claimed(ledger: BaseLedger, name: str) -> FileRecord:
    sha = hashlib.sha256(name.encode()).hexdigest()
    claim = ledger.claim("orders", sha, path=f"landing/{name}", owner="worker-1",
                         lease_seconds=LEASE_S, max_attempts=3)
    assert claim.outcome == "claimed"
    return claim.record


def test_a_claim_group_hands_a_claim_to_the_keeper_while_a_renewal_is_due(tmp_path: Path):
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    keeper = LeaseKeeper(ledger, LEASE_S)
    first = claimed(ledger, "a.parquet")
    keeper.hold(first)
    try:
        with ledger.batch():  # a claim group: this thread holds the write transaction
            second = claimed(ledger, "b.parquet")
            time.sleep(LEASE_S)  # a renewal of the first row falls due meanwhile
            started = time.monotonic()
            keeper.hold(second)
            took = time.monotonic() - started
        time.sleep(LEASE_S)  # the renewals resume once the group has committed
        renewed = keeper.renew_now([first.sha256, second.sha256])
        held = [keeper.release(first.sha256), keeper.release(second.sha256)]
    finally:
        keeper.close()
        ledger.close()
    assert took < 1.0, f"hold waited {took:.1f} s for a renewal stuck behind the group"
    assert renewed == set()  # neither lease was lost
    assert first.lease_until is not None and second.lease_until is not None
    assert held[0].lease_until > first.lease_until and held[1].lease_until > second.lease_until
