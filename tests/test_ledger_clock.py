"""Lease expiry by the ledger's clock, not the worker's (issue 13, row 9).

On Azure Table the ledger's time is the Table service's, learnt from the
`Date` header of its responses: a worker whose clock is ahead by more than a
lease must not take over a live lease (and count an attempt), and one whose
clock is behind must not wait past a dead one. (SQLite: the host's clock is
the ledger's.)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest_core.config import StorageConfig
from ingest_core.ledger.azure_table import AzureTableLedger

pytestmark = pytest.mark.azurite

TABLE = "/lake/orders"
SKEW = timedelta(seconds=300)


def skewed(by: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + by


@pytest.fixture
def open_ledger(azurite: str, unique_name: str) -> Iterator[Callable[..., AzureTableLedger]]:
    opened: list[AzureTableLedger] = []

    def open_one(host_clock: Callable[[], datetime] | None = None) -> AzureTableLedger:
        ledger = AzureTableLedger.from_uri(
            f"azure-table://{unique_name}", StorageConfig(connection_string=azurite),
            host_clock=host_clock,
        )
        opened.append(ledger)
        return ledger

    yield open_one
    for ledger in opened:
        ledger.close()


def claim(ledger: AzureTableLedger, owner: str, lease: float):
    sha = hashlib.sha256(b"content").hexdigest()
    return ledger.claim(TABLE, sha, path="landing/a.csv", owner=owner, lease_seconds=lease,
                        max_attempts=5)


def test_a_worker_whose_clock_is_ahead_does_not_take_over_a_live_lease(open_ledger) -> None:
    honest = open_ledger()
    ahead = open_ledger(skewed(SKEW))
    assert claim(honest, "A", 60).outcome == "claimed"
    taken = claim(ahead, "B", 60)
    assert taken.outcome == "in_progress"
    assert (taken.record.owner, taken.record.attempt) == ("A", 1)
    assert abs(ahead.now() - datetime.now(UTC)) < timedelta(seconds=3)


def test_a_worker_whose_clock_is_behind_takes_over_an_expired_lease(open_ledger) -> None:
    behind = open_ledger(skewed(-SKEW))
    honest = open_ledger()
    assert claim(honest, "A", 1).outcome == "claimed"
    time.sleep(2.5)
    taken = claim(behind, "B", 60)
    assert taken.outcome == "claimed"
    assert (taken.record.owner, taken.record.attempt) == ("B", 2)
    # the lease it wrote is in the service's time, so the honest worker sees it live
    assert taken.record.lease_until is not None
    assert taken.record.lease_until > datetime.now(UTC) + timedelta(seconds=50)
    assert claim(honest, "C", 60).outcome == "in_progress"


def test_learning_the_time_keeps_the_clients_own_response_hook(azurite: str, unique_name: str):
    from azure.data.tables import TableServiceClient

    seen: list[int] = []
    service = TableServiceClient.from_connection_string(
        azurite, raw_response_hook=lambda response: seen.append(response.http_response.status_code)
    )
    client = service.create_table_if_not_exists(unique_name)
    seen.clear()
    ledger = AzureTableLedger(client, service_clock=None)
    try:
        assert ledger.service_clock is not None and ledger.service_clock.stale
        assert ledger.get(TABLE, hashlib.sha256(b"none").hexdigest()) is None
        assert seen == [404]  # the client's hook still saw the read that taught the time
        assert not ledger.service_clock.stale
    finally:
        ledger.close()
