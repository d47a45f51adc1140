"""One contract suite for every ledger back end: SQLite (embedded) and Azure Table (Azurite).

Leases expire through an injected clock, never by sleeping.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest_core.config import StorageConfig
from ingest_core.errors import LeaseLostError
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, BaseLedger
from ingest_core.ledger.base import MAX_ERROR_CHARS

TABLE = "/lake/orders"
LEASE = 60.0
WEIRD_TABLE = "abfss://lake@acct.dfs.core.windows.net/a b/#1?x=%20/\\ünï/cödé 'q\""
WEIRD_PATH = "abfs://landing/raw/we ird/a#b?c%d\\e/日本 😀/'quote\"\t.parquet"


class FakeClock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


FILES_BEFORE_RUN_IDS = """
CREATE TABLE files (
    target_table TEXT NOT NULL, sha256 TEXT NOT NULL, status TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, source_etag TEXT, owner TEXT,
    lease_until TEXT, attempt INTEGER NOT NULL, delta_version INTEGER, rows INTEGER,
    error TEXT, seen_paths TEXT NOT NULL, created_at TEXT, updated_at TEXT,
    version INTEGER NOT NULL, PRIMARY KEY (target_table, sha256)
);
"""
"""The SQLite ledger's `files` table of schema versions 0 to 2, as earlier releases wrote it."""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)],
)
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[BaseLedger]:
    if request.param == "sqlite":
        from ingest_core.ledger.sqlite import SqliteLedger

        opened: BaseLedger = SqliteLedger(tmp_path / "ledger.sqlite", clock=clock)
    else:
        from ingest_core.ledger.azure_table import AzureTableLedger

        connection = request.getfixturevalue("azurite")
        name = request.getfixturevalue("unique_name")
        opened = AzureTableLedger.from_uri(
            f"azure-table://{name}", StorageConfig(connection_string=connection), clock=clock
        )
    yield opened
    opened.close()


def claim(ledger: BaseLedger, key: str, owner: str, *, path: str = "p", table: str = TABLE,
          max_attempts: int = 3, size: int = 10):
    return ledger.claim(table, sha(key), path=path, owner=owner, lease_seconds=LEASE,
                        max_attempts=max_attempts, size=size, source_etag="0x1")


def test_first_claim_inserts_and_wins(ledger, clock):
    result = claim(ledger, "a", "A", path="landing/a.csv")
    assert result.outcome == "claimed"
    row = ledger.get(TABLE, sha("a"))
    assert row is not None
    assert (row.status, row.owner, row.attempt, row.path, row.size, row.source_etag) == (
        PROCESSING, "A", 1, "landing/a.csv", 10, "0x1"
    )
    assert row.lease_until == clock.now + timedelta(seconds=LEASE)
    assert row.created_at == clock.now


def test_second_claim_during_a_live_lease_is_in_progress(ledger, clock):
    claim(ledger, "a", "A")
    clock.advance(LEASE - 1)
    result = claim(ledger, "a", "B")
    assert result.outcome == "in_progress"
    assert result.record.owner == "A"


def test_expired_lease_is_taken_over_with_the_next_attempt(ledger, clock):
    claim(ledger, "a", "A")
    clock.advance(LEASE + 1)
    result = claim(ledger, "a", "B", path="other/a.csv")
    assert result.outcome == "claimed"
    row = ledger.get(TABLE, sha("a"))
    assert (row.owner, row.attempt, row.status, row.path) == ("B", 2, PROCESSING, "other/a.csv")


def test_failed_row_is_taken_over(ledger):
    first = claim(ledger, "a", "A").record
    ledger.fail(first, "boom")
    assert ledger.get(TABLE, sha("a")).status == FAILED
    result = claim(ledger, "a", "B")
    assert (result.outcome, result.record.owner, result.record.attempt) == ("claimed", "B", 2)


def test_exhausted_attempts_quarantine_the_content(ledger):
    for owner in ("A", "B"):
        record = claim(ledger, "a", owner, max_attempts=2).record
        ledger.fail(record, f"boom from {owner}")
    result = claim(ledger, "a", "C", max_attempts=2)
    assert result.outcome == "quarantined"
    row = ledger.get(TABLE, sha("a"))
    assert row.status == QUARANTINED
    assert "gave up after 2 attempts" in row.error and "boom from B" in row.error


def test_done_content_is_skipped_and_the_other_path_remembered(ledger):
    record = claim(ledger, "a", "A", path="landing/a.csv").record
    ledger.complete(record, delta_version=3, rows=7)
    result = claim(ledger, "a", "B", path="landing/copy-of-a.csv")
    assert result.outcome == "done"
    row = ledger.get(TABLE, sha("a"))
    assert (row.status, row.delta_version, row.rows, row.owner) == (SUCCEEDED, 3, 7, None)
    assert row.path == "landing/a.csv"
    assert row.seen_paths == ["landing/copy-of-a.csv"]


def test_renewal_after_a_takeover_raises_lease_lost(ledger, clock):
    mine = claim(ledger, "a", "A").record
    clock.advance(LEASE + 1)
    assert claim(ledger, "a", "B").outcome == "claimed"
    with pytest.raises(LeaseLostError, match="another worker took it over"):
        ledger.renew(mine, LEASE)


def test_complete_with_a_stale_etag_after_own_renewal_succeeds(ledger, clock):
    first = claim(ledger, "a", "A").record
    clock.advance(10)
    ledger.renew(first, LEASE)
    done = ledger.complete(first, delta_version=1, rows=5)
    assert done.status == SUCCEEDED
    row = ledger.get(TABLE, sha("a"))
    assert (row.status, row.delta_version, row.rows) == (SUCCEEDED, 1, 5)


def test_release_turns_a_quarantined_row_into_a_fresh_failed_row(ledger):
    record = claim(ledger, "a", "A").record
    ledger.fail(record, "bad file", quarantine=True)
    assert claim(ledger, "a", "B").outcome == "quarantined"
    released = ledger.release(TABLE, sha("a"))
    assert (released.status, released.attempt) == (FAILED, 0)
    result = claim(ledger, "a", "C")
    assert (result.outcome, result.record.attempt) == ("claimed", 1)


def test_dismiss_closes_a_failed_row_with_the_reason_and_leaves_live_ones(ledger):
    ledger.fail(claim(ledger, "a", "A").record, "disk full")
    closed = ledger.dismiss(TABLE, sha("a"), "file deleted")
    assert (closed.status, closed.error) == (QUARANTINED, "dismissed: file deleted")
    assert ledger.get(TABLE, sha("a")).status == QUARANTINED
    live = claim(ledger, "b", "B").record
    assert ledger.dismiss(TABLE, sha("b"), "no").status == live.status
    assert ledger.dismiss(TABLE, sha("missing"), "no") is None


def test_conflict_on_our_own_insert_is_recognised_as_ours(ledger):
    first = claim(ledger, "a", "A")
    again = claim(ledger, "a", "A")
    assert (first.outcome, again.outcome) == ("claimed", "claimed")
    done = ledger.complete(again.record, delta_version=0, rows=1)
    assert done.status == SUCCEEDED


def test_awkward_paths_and_table_ids_round_trip(ledger):
    result = claim(ledger, "a", "A", path=WEIRD_PATH, table=WEIRD_TABLE)
    assert result.outcome == "claimed"
    row = ledger.get(WEIRD_TABLE, sha("a"))
    assert (row.table, row.path) == (WEIRD_TABLE, WEIRD_PATH)
    ledger.complete(row, delta_version=0, rows=1)
    other = WEIRD_PATH.replace("日本", "#?/")
    assert claim(ledger, "a", "B", path=other, table=WEIRD_TABLE).outcome == "done"
    assert ledger.get(WEIRD_TABLE, sha("a")).seen_paths == [other]
    assert [r.sha256 for r in ledger.records(path=WEIRD_PATH)] == [sha("a")]
    assert [r.path for r in ledger.records(table=WEIRD_TABLE)] == [WEIRD_PATH]
    assert ledger.get(TABLE, sha("a")) is None


def test_huge_error_text_is_bounded(ledger):
    record = claim(ledger, "a", "A").record
    ledger.fail(record, "x" * 200_000)
    ledger.fail(claim(ledger, "b", "A").record, "😀" * 100_000)
    for key in ("a", "b"):
        error = ledger.get(TABLE, sha(key)).error
        assert error.endswith("[truncated]")
        assert len(error) <= MAX_ERROR_CHARS


def test_many_long_sightings_stay_storable(ledger):
    record = claim(ledger, "a", "A").record
    ledger.complete(record, delta_version=0, rows=1)
    paths = [f"landing/{i:03d}/" + "ü" * 1000 for i in range(60)]
    for path in paths:
        assert claim(ledger, "a", "B", path=path).outcome == "done"
    seen = ledger.get(TABLE, sha("a")).seen_paths
    assert seen and seen[-1] == paths[-1]
    assert set(seen) <= set(paths)


def test_integers_of_2_to_the_31_and_more_round_trip(ledger):
    record = claim(ledger, "a", "A", size=2**40).record
    ledger.complete(record, delta_version=2**31, rows=2**33 + 1)
    row = ledger.get(TABLE, sha("a"))
    assert (row.size, row.delta_version, row.rows) == (2**40, 2**31, 2**33 + 1)
    assert all(type(v) is int for v in (row.size, row.delta_version, row.rows))


def test_records_filter_by_status_path_and_table(ledger, clock):
    ledger.complete(claim(ledger, "a", "A", path="x/a").record, delta_version=0, rows=1)
    clock.advance(1)
    ledger.fail(claim(ledger, "b", "A", path="x/b").record, "boom")
    clock.advance(1)
    claim(ledger, "c", "A", path="x/a", table="/lake/other")
    assert [r.path for r in ledger.records()] == ["x/a", "x/b", "x/a"]
    assert [r.sha256 for r in ledger.records(status=SUCCEEDED)] == [sha("a")]
    assert [r.sha256 for r in ledger.records(status=FAILED, path="x/b")] == [sha("b")]
    assert ledger.records(status=FAILED, path="x/a") == []
    assert [r.sha256 for r in ledger.records(path="x/a")] == [sha("a"), sha("c")]
    assert [r.sha256 for r in ledger.records(table="/lake/other")] == [sha("c")]
    assert [r.sha256 for r in ledger.records(table=TABLE, path="x/a")] == [sha("a")]


def test_racing_claims_have_exactly_one_winner(ledger):
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def race(owner: str) -> None:
        start.wait()
        outcomes.append(claim(ledger, "a", owner).outcome)

    threads = [threading.Thread(target=race, args=(f"W{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["claimed"] + ["in_progress"] * 5


# -- reads by key: due, tables, find, by_path, records(limit) ---------------------------


def failed_row(ledger: BaseLedger, key: str, *, attempts: int, table: str = TABLE,
               path: str = "p") -> None:
    for i in range(attempts):
        record = claim(ledger, key, f"W{i}", path=path, table=table, max_attempts=attempts + 1)
        ledger.fail(record.record, f"boom {i}")


def test_due_lists_failed_rows_with_attempts_left_and_expired_leases(ledger, clock):
    ledger.complete(claim(ledger, "done", "A").record, delta_version=0, rows=1)
    failed_row(ledger, "retry", attempts=1)
    failed_row(ledger, "spent", attempts=3)
    clock.advance(1)
    claim(ledger, "stalled", "A")
    ledger.fail(claim(ledger, "bad", "A").record, "corrupt", quarantine=True)
    failed_row(ledger, "elsewhere", attempts=1, table="/lake/other")
    clock.advance(LEASE - 5)
    claim(ledger, "live", "B")
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=3)] == [sha("retry")]
    clock.advance(10)
    due = ledger.due(TABLE, max_attempts=3)
    assert [r.sha256 for r in due] == [sha("retry"), sha("stalled")]
    assert [r.status for r in due] == [FAILED, PROCESSING]
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=4)] == [
        sha("retry"), sha("spent"), sha("stalled")
    ]
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=3, limit=1)] == [sha("retry")]
    earlier = clock.now - timedelta(seconds=10)
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=3, now=earlier)] == [sha("retry")]
    assert [r.sha256 for r in ledger.due("/lake/other", max_attempts=3)] == [sha("elsewhere")]


def test_a_completed_or_released_row_leaves_or_rejoins_due(ledger, clock):
    record = claim(ledger, "a", "A").record
    clock.advance(LEASE + 1)
    assert [r.sha256 for r in ledger.due(TABLE, max_attempts=3)] == [sha("a")]
    ledger.complete(record, delta_version=0, rows=1)
    assert ledger.due(TABLE, max_attempts=3) == []
    ledger.fail(claim(ledger, "b", "A").record, "bad", quarantine=True)
    assert ledger.due(TABLE, max_attempts=3) == []
    ledger.release(TABLE, sha("b"))
    assert [(r.sha256, r.attempt) for r in ledger.due(TABLE, max_attempts=3)] == [(sha("b"), 0)]


def test_tables_names_every_table_with_rows(ledger):
    assert ledger.tables() == []
    for table in (TABLE, WEIRD_TABLE, "unrouted:/routes.toml", TABLE):
        claim(ledger, table, "A", table=table)
    assert ledger.tables() == sorted({TABLE, WEIRD_TABLE, "unrouted:/routes.toml"})


def test_find_returns_the_rows_of_one_content_across_tables(ledger):
    ledger.complete(claim(ledger, "a", "A", path="x/a").record, delta_version=4, rows=1)
    claim(ledger, "a", "B", path="y/a", table=WEIRD_TABLE)
    claim(ledger, "b", "A", table="/lake/other")
    found = ledger.find(sha("a"))
    assert [(r.table, r.status, r.path) for r in found] == sorted(
        [(TABLE, SUCCEEDED, "x/a"), (WEIRD_TABLE, PROCESSING, "y/a")]
    )
    assert [r.table for r in ledger.find(sha("a"), table=WEIRD_TABLE)] == [WEIRD_TABLE]
    assert ledger.find(sha("a"), table="/lake/other") == []
    assert ledger.find(sha("nothing")) == []


def test_by_path_finds_rows_by_path_and_by_sighting_exactly(ledger, clock):
    ledger.complete(claim(ledger, "a", "A", path=WEIRD_PATH).record, delta_version=0, rows=1)
    clock.advance(1)
    assert claim(ledger, "a", "B", path="copy/a").outcome == "done"
    ledger.fail(claim(ledger, "b", "A", path=WEIRD_PATH).record, "boom")
    claim(ledger, "c", "A", path=WEIRD_PATH, table="/lake/other")
    assert [r.sha256 for r in ledger.by_path(TABLE, WEIRD_PATH)] == [sha("a"), sha("b")]
    assert [r.sha256 for r in ledger.by_path(TABLE, "copy/a")] == [sha("a")]
    assert [r.sha256 for r in ledger.by_path("/lake/other", WEIRD_PATH)] == [sha("c")]
    assert ledger.by_path(TABLE, WEIRD_PATH + " ") == []
    assert ledger.by_path(TABLE, "copy") == []


def test_by_path_drops_a_path_the_row_no_longer_carries(ledger, clock):
    claim(ledger, "a", "A", path="old/a")
    clock.advance(LEASE + 1)
    assert claim(ledger, "a", "B", path="new/a").outcome == "claimed"
    assert ledger.by_path(TABLE, "old/a") == []
    assert [r.owner for r in ledger.by_path(TABLE, "new/a")] == ["B"]


def test_records_with_a_limit_stop_there(ledger, clock):
    for key in "abcde":
        claim(ledger, key, "A", path=f"x/{key}")
        clock.advance(1)
    claim(ledger, "f", "A", table="/lake/other")
    everything = ledger.records(table=TABLE)
    assert len(everything) == 5
    some = ledger.records(table=TABLE, limit=2)
    assert len(some) == 2 and {r.sha256 for r in some} <= {r.sha256 for r in everything}
    assert some == sorted(some, key=lambda r: r.created_at)
    assert len(ledger.records(limit=6)) == 6 and len(ledger.records(limit=3)) == 3
    assert len(ledger.records(table=TABLE, limit=10)) == 5
    assert len(ledger.records(table=TABLE, status=PROCESSING, limit=4)) == 4


@pytest.mark.parametrize("expect_new", [False, True])
def test_an_insert_first_claim_decides_like_a_read_first_one(ledger, clock, expect_new):
    def claim_as(owner: str, key: str = "a"):
        return ledger.claim(TABLE, sha(key), path="p", owner=owner, lease_seconds=LEASE,
                            max_attempts=2, expect_new=expect_new)

    assert claim_as("A").outcome == "claimed"
    assert claim_as("A").outcome == "claimed"  # the owner's own retried claim
    assert claim_as("B").outcome == "in_progress"
    clock.advance(LEASE + 1)
    taken = claim_as("B")
    assert (taken.outcome, taken.record.owner, taken.record.attempt) == ("claimed", "B", 2)
    ledger.complete(taken.record, delta_version=3, rows=5)
    done = claim_as("C")
    assert (done.outcome, done.record.status, done.record.delta_version) == ("done", SUCCEEDED, 3)
    assert claim_as("D", key="b").record.attempt == 1


def test_run_id_is_kept_by_the_run_that_last_acted_on_the_row(ledger, clock):
    first = ledger.claim(TABLE, sha("a"), path="x/a", owner="A", lease_seconds=LEASE,
                         max_attempts=3, run_id="run-1")
    assert first.record.run_id == "run-1"
    assert ledger.get(TABLE, sha("a")).run_id == "run-1"
    ledger.fail(first.record, "boom")
    assert ledger.get(TABLE, sha("a")).run_id == "run-1"  # settled by the claiming run
    second = ledger.claim(TABLE, sha("a"), path="x/a", owner="B", lease_seconds=LEASE,
                          max_attempts=3, run_id="run-2")
    assert (second.outcome, second.record.run_id) == ("claimed", "run-2")  # the takeover's
    done = ledger.complete(second.record, delta_version=4, rows=7, run_id="run-3")
    assert done.run_id == "run-3"
    assert ledger.get(TABLE, sha("a")).run_id == "run-3"
    assert [r.run_id for r in ledger.records(table=TABLE)] == ["run-3"]
    assert ledger.get(TABLE, sha("a")).to_dict()["run_id"] == "run-3"
    claim(ledger, "b", "A")  # a claim naming no run
    assert ledger.get(TABLE, sha("b")).run_id is None


def test_release_and_dismiss_record_their_run(ledger):
    for key in ("q", "f"):
        ledger.fail(claim(ledger, key, "A").record, "boom", quarantine=key == "q",
                    run_id="run-1")
    assert ledger.release(TABLE, sha("q"), run_id="retry-1").run_id == "retry-1"
    assert ledger.dismiss(TABLE, sha("f"), "gone", run_id="retry-2").run_id == "retry-2"
    assert ledger.get(TABLE, sha("f")).run_id == "retry-2"


def test_a_version_2_sqlite_ledger_gains_run_id_and_reads_read_only_before(tmp_path, clock):
    import sqlite3

    from ingest_core.ledger.sqlite import SCHEMA_VERSION, SqliteLedger

    path = tmp_path / "v2.sqlite"
    SqliteLedger(path, clock=clock).close()
    conn = sqlite3.connect(path)  # turn it into the version-2 file a previous release wrote
    conn.execute("DROP TABLE files")
    conn.executescript(FILES_BEFORE_RUN_IDS)
    conn.execute(
        "INSERT INTO files VALUES (?, ?, 'succeeded', 'x/a', 1, NULL, NULL, NULL, 1, 0, 1, "
        "NULL, '[]', ?, ?, 3)", (TABLE, sha("a"), clock.now.isoformat(), clock.now.isoformat()),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    reader = SqliteLedger(path, clock=clock, read_only=True)  # reads it as it is
    assert [(r.path, r.run_id) for r in reader.records(table=TABLE)] == [("x/a", None)]
    assert reader.get(TABLE, sha("a")).run_id is None
    reader.close()

    writer = SqliteLedger(path, clock=clock)  # upgrades in place
    assert writer._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert writer.get(TABLE, sha("a")).run_id is None
    writer.claim(TABLE, sha("b"), path="x/b", owner="A", lease_seconds=LEASE, max_attempts=3,
                 run_id="run-9")
    assert writer.get(TABLE, sha("b")).run_id == "run-9"
    writer.close()
    again = SqliteLedger(path, clock=clock, read_only=True)
    assert {r.sha256: r.run_id for r in again.records()} == {sha("a"): None, sha("b"): "run-9"}
    again.close()
