"""How each ledger back end serves reads by key: indexes, their crash safety, the upgrade path.

Azure Table on Azurite: requests are counted by a response hook on a real
client; crashes are a subclass that stops between two writes. SQLite: the
query plans of the statements the reads run, and a file of the first schema.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from ingest_core.ledger import FAILED, SUCCEEDED, BaseLedger, FileRecord
from ingest_core.ledger.sqlite import SCHEMA_VERSION, SqliteLedger
from tests.test_ledger_contract import (
    FILES_BEFORE_RUN_IDS,
    LEASE,
    TABLE,
    FakeClock,
    claim,
    sha,
)


class Counted:
    """Counts the HTTP requests of a client and the entities its query responses carry."""

    def __init__(self) -> None:
        self.requests = 0
        self.entities = 0

    def __call__(self, response: Any) -> None:
        self.requests += 1
        if response.http_request.method == "GET":
            body = response.http_response.text()
            if body.startswith("{"):
                self.entities += len(json.loads(body).get("value", [None]))

    def reset(self) -> None:
        self.requests = self.entities = 0


@pytest.fixture
def azure(azurite: str, unique_name: str, clock: FakeClock) -> Iterator[tuple[Any, Counted]]:
    from azure.data.tables import TableServiceClient

    from ingest_core.ledger.azure_table import AzureTableLedger

    counted = Counted()
    service = TableServiceClient.from_connection_string(azurite, raw_response_hook=counted)
    client = service.create_table_if_not_exists(unique_name)
    ledger = AzureTableLedger(client, clock=clock)
    yield ledger, counted
    ledger.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.azurite
def test_due_tables_find_and_by_path_cost_what_they_return(azure, clock):
    ledger, counted = azure
    for i in range(150):
        record = claim(ledger, f"done{i}", "A", path=f"x/{i}").record
        ledger.complete(record, delta_version=i, rows=1)
    ledger.fail(claim(ledger, "bad", "A", path="x/bad").record, "boom")
    claim(ledger, "stalled", "A", path="x/stalled")
    clock.advance(LEASE + 1)
    ledger.flush()  # the open entries of the completed rows, deleted in batches

    counted.reset()
    assert {r.sha256 for r in ledger.due(TABLE, max_attempts=3)} == {sha("bad"), sha("stalled")}
    assert (counted.requests, counted.entities) == (3, 4)  # 1 query of 2 entries, 2 row reads
    counted.reset()
    assert ledger.tables() == [TABLE]
    assert (counted.requests, counted.entities) == (1, 1)
    counted.reset()
    assert [r.path for r in ledger.by_path(TABLE, "x/7")] == ["x/7"]
    assert (counted.requests, counted.entities) == (2, 2)
    counted.reset()
    assert [r.delta_version for r in ledger.find(sha("done9"))] == [9]
    assert counted.requests == 2  # the registry, one row per table
    counted.reset()
    assert len(ledger.records(table=TABLE, limit=10)) == 10
    assert (counted.requests, counted.entities) == (1, 10)


@pytest.mark.azurite
def test_a_duplicate_claim_reads_once_and_writes_no_index_entry(azure):
    ledger, counted = azure
    ledger.complete(claim(ledger, "a", "A", path="x/a").record, delta_version=0, rows=1)
    counted.reset()
    assert claim(ledger, "a", "B", path="x/a").outcome == "done"
    assert counted.requests == 1


@pytest.mark.azurite
def test_a_crash_before_the_open_entry_is_removed_leaves_a_stale_entry_readers_drop(azure):
    from azure.core.exceptions import ResourceNotFoundError

    from ingest_core.ledger.azure_table import AzureTableLedger, _open_partition

    ledger, _ = azure

    class CrashesAfterTheRow(AzureTableLedger):
        def _unindex_open(self, table: str, sha256: str, key: str | None = None) -> None:
            """The process dies here: the row is succeeded, its open entry still there."""

    crashing = CrashesAfterTheRow(ledger._client, clock=ledger._clock)
    crashing.complete(claim(crashing, "a", "A").record, delta_version=0, rows=1)
    entry = (_open_partition(TABLE, sha("a")), sha("a"))
    assert ledger._client.get_entity(*entry)["target_table"] == TABLE
    assert ledger.due(TABLE, max_attempts=3) == []
    ledger.flush()  # a reader's deletion of a stale entry is queued like any other
    with pytest.raises(ResourceNotFoundError):
        ledger._client.get_entity(*entry)


@pytest.mark.azurite
def test_a_crash_between_the_open_entry_and_the_row_leaves_nothing_unfindable(azure, clock):
    from ingest_core.ledger.azure_table import AzureTableLedger, _open_partition

    ledger, _ = azure

    class CrashesBeforeTheRow(AzureTableLedger):
        def _index(self, record: FileRecord, previous: Any, *, open_entry: bool) -> None:
            super()._index(record, previous, open_entry=open_entry)
            raise RuntimeError("killed between the index entries and the row")

    with pytest.raises(RuntimeError, match="killed"):
        claim(CrashesBeforeTheRow(ledger._client, clock=ledger._clock), "a", "A")
    assert ledger.get(TABLE, sha("a")) is None
    assert ledger.due(TABLE, max_attempts=3) == []
    entry = ledger._client.get_entity(_open_partition(TABLE, sha("a")), sha("a"))
    assert entry["target_table"] == TABLE  # kept: a slow claim's row may still arrive
    assert claim(ledger, "a", "B").outcome == "claimed"
    clock.advance(LEASE + 1)
    assert [r.owner for r in ledger.due(TABLE, max_attempts=3)] == ["B"]


@pytest.mark.azurite
def test_open_entries_spread_over_four_partitions_per_table(azure):
    ledger, _ = azure
    for i in range(64):
        claim(ledger, f"c{i}", "A")
    partitions = {
        e["PartitionKey"]
        for e in ledger._client.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi", parameters={"lo": "~o", "hi": "~p"}
        )
    }
    assert len(partitions) == 4
    assert {p[-1] for p in partitions} == set("0123")


@pytest.mark.azurite
def test_rows_written_before_the_indexes_are_found_after_reindex(azure, clock, monkeypatch):
    from ingest_core.ledger import azure_table

    monkeypatch.setattr(azure_table, "_REINDEX_CHUNK", 1)  # write as it reads, row by row
    ledger, _ = azure
    now = clock.now
    legacy = [
        FileRecord(table=TABLE, sha256=sha("old-failed"), status=FAILED, path="x/f",
                   attempt=1, error="boom", created_at=now),
        FileRecord(table=TABLE, sha256=sha("old-done"), status=SUCCEEDED, path="x/d",
                   seen_paths=["copy/d"], delta_version=3, rows=1, created_at=now),
    ]
    for record in legacy:  # as the previous version wrote them: the row alone
        ledger._client.create_entity(ledger._entity(record))
    assert (ledger.tables(), ledger.due(TABLE, max_attempts=3)) == ([], [])
    assert ledger.by_path(TABLE, "copy/d") == []

    assert ledger.reindex() == 2
    assert ledger.tables() == [TABLE]
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=3)] == [sha("old-failed")]
    assert [r.path for r in ledger.by_path(TABLE, "copy/d")] == ["x/d"]
    assert [r.status for r in ledger.find(sha("old-done"))] == [SUCCEEDED]
    assert ledger.reindex() == 2  # idempotent


def _plans(ledger: SqliteLedger, read: Any) -> list[str]:
    """The query plans of the statements `read()` runs on the ledger's connection."""
    statements: list[str] = []
    conn = ledger._conn()
    conn.set_trace_callback(statements.append)
    try:
        read()
    finally:
        conn.set_trace_callback(None)
    plans = []
    for statement in statements:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
            plans.append(" | ".join(str(r[3]) for r in rows))
    return plans


@pytest.mark.parametrize(
    "read",
    [
        lambda ledger: ledger.due(TABLE, max_attempts=3),
        lambda ledger: ledger.tables(),
        lambda ledger: ledger.find(sha("a")),
        lambda ledger: ledger.by_path(TABLE, "x/a"),
        lambda ledger: ledger.records(table=TABLE, limit=5),
        lambda ledger: ledger.records(table=TABLE, status=FAILED, limit=5),
    ],
    ids=["due", "tables", "find", "by_path", "records-limit", "records-status-limit"],
)
def test_sqlite_reads_by_key_search_indexes_never_scan_the_rows(tmp_path, clock, read):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite", clock=clock)
    for i in range(20):
        ledger.complete(claim(ledger, f"r{i}", "A", path=f"x/{i}").record, delta_version=i, rows=1)
    claim(ledger, "a", "A", path="x/a")
    plans = _plans(ledger, lambda: read(ledger))
    assert plans
    for plan in plans:
        assert "SCAN files" not in plan and "SCAN file_paths" not in plan, plan


def test_an_sqlite_file_of_the_first_schema_is_upgraded_when_opened(tmp_path, clock):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        FILES_BEFORE_RUN_IDS + """
        CREATE INDEX files_status ON files (status);
        CREATE INDEX files_path ON files (path);
        """
    )
    conn.execute(
        "INSERT INTO files VALUES (?, ?, 'succeeded', 'x/a', 1, NULL, NULL, NULL, 1, 0, 1, "
        "NULL, ?, ?, ?, 3)",
        (TABLE, sha("a"), json.dumps(["copy/a"]), clock.now.isoformat(), clock.now.isoformat()),
    )
    conn.commit()
    conn.close()

    ledger = SqliteLedger(path, clock=clock)
    assert ledger._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r.path for r in ledger.by_path(TABLE, "copy/a")] == ["x/a"]
    assert [r.sha256 for r in ledger.by_path(TABLE, "x/a")] == [sha("a")]
    assert ledger.tables() == [TABLE]
    assert ledger.reindex() == 1
    row = ledger.get(TABLE, sha("a"))
    assert row is not None
    ledger._replace(dataclasses.replace(row, seen_paths=["copy/a", "copy/b"]), row)
    assert [r.sha256 for r in ledger.by_path(TABLE, "copy/b")] == [sha("a")]
    other: BaseLedger = SqliteLedger(path, clock=clock)  # a second open does not migrate again
    assert other.tables() == [TABLE]


@pytest.mark.azurite
def test_an_arrival_claim_writes_its_entries_at_once_then_the_row_without_reading(azure):
    """Insert first: a new file's claim is its index entries (sent together) and the insert."""
    ledger, counted = azure
    claim(ledger, "warm", "A")  # registers the table
    counted.reset()
    new = ledger.claim(TABLE, sha("a"), path="p", owner="A", lease_seconds=LEASE,
                       max_attempts=3, expect_new=True)
    assert new.outcome == "claimed"
    assert counted.requests == 3  # path entry and open entry (concurrently), the row: no read
    counted.reset()
    again = ledger.claim(TABLE, sha("a"), path="p", owner="B", lease_seconds=LEASE,
                         max_attempts=3, expect_new=True)
    assert again.outcome == "in_progress"
    counted.reset()
    assert claim(ledger, "a", "B").outcome == "in_progress"
    assert counted.requests == 1  # read first (the default): a duplicate costs one read


@pytest.mark.azurite
def test_open_entries_whose_deletion_found_no_service_are_deleted_on_a_later_round(
    azure, unique_name
):
    """A dropped connection must not end the deletions (here: a port nothing listens on)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableClient

    from ingest_core.ledger.azure_table import _open_partition

    ledger, _ = azure
    live = ledger._client
    ledger.complete(claim(ledger, "a", "A").record, delta_version=0, rows=1)  # entry queued
    ledger._client = TableClient(
        "http://127.0.0.1:9/devstoreaccount1", unique_name, credential=live.credential,
        retry_total=0,
    )
    ledger.flush()  # raises nothing: the entry stays queued
    ledger._client = live
    entry = (_open_partition(TABLE, sha("a")), sha("a"))
    assert live.get_entity(*entry)["target_table"] == TABLE
    ledger.flush()
    with pytest.raises(ResourceNotFoundError):
        live.get_entity(*entry)
