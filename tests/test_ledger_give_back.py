"""`give_back` and `resolve_unread` on both ledgers (SQLite, Azure Table on Azurite)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_core.config import StorageConfig
from ingest_core.ledger import FAILED, PROCESSING, SUCCEEDED, BaseLedger, FileRecord
from ingest_core.ledger.base import unread_key

TABLE = "/lake/orders"


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseLedger]:
    if request.param == "sqlite":
        from ingest_core.ledger.sqlite import SqliteLedger

        opened: BaseLedger = SqliteLedger(tmp_path / "ledger.sqlite")
    else:
        from ingest_core.ledger.azure_table import AzureTableLedger

        opened = AzureTableLedger.from_uri(
            f"azure-table://{request.getfixturevalue('unique_name')}",
            StorageConfig(connection_string=request.getfixturevalue("azurite")),
        )
    yield opened
    opened.close()


def test_a_claim_given_back_is_claimable_at_once_with_its_attempt_uncounted(ledger) -> None:
    sha = hashlib.sha256(b"a").hexdigest()
    first = ledger.claim(TABLE, sha, path="p", owner="A", lease_seconds=600, max_attempts=5)
    returned = ledger.give_back(first.record, "interrupted")
    assert returned is not None
    assert (returned.status, returned.attempt, returned.owner) == (FAILED, 0, None)
    again = ledger.claim(TABLE, sha, path="p", owner="B", lease_seconds=600, max_attempts=5)
    assert (again.outcome, again.record.attempt, again.record.status) == ("claimed", 1, PROCESSING)
    assert ledger.give_back(first.record, "late") is None  # no longer A's: left to B


def test_an_unread_row_is_resolved_once(ledger) -> None:
    row = ledger.record_unread(TABLE, "landing/a.csv", owner="A", error="gone", max_attempts=5)
    assert (row.sha256, row.status) == (unread_key("landing/a.csv"), FAILED)
    content = hashlib.sha256(b"bytes").hexdigest()
    closed = ledger.resolve_unread(row, content)
    assert closed is not None and closed.status == SUCCEEDED and content in (closed.error or "")
    assert ledger.due(TABLE, max_attempts=5) == []
    with pytest.raises(ValueError):  # only a path's unread row is resolved this way
        ledger.resolve_unread(
            FileRecord(table=TABLE, sha256=content, status=FAILED, path="landing/a.csv"), content
        )
