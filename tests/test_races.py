"""Racing workers: 8 spawned processes, 200 files each delivered 3 times in random order,
random SIGKILLs, then one clean replay. Every content lands exactly once, on both ledgers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exactly_once import ledger_uri, run_race
from helpers import write_parquet

FILES = 200
ROWS = 3


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.slow
def test_eight_racing_workers_killed_at_random_ingest_each_file_exactly_once(
    ledger_kind, request, landing: Path, table_uri: str, tmp_path: Path, unique_name: str
):
    connection = request.getfixturevalue("azurite") if ledger_kind == "azure_table" else None
    paths = [str(write_parquet(landing / f"f{i:03d}.parquet", start=i * ROWS, rows=ROWS))
             for i in range(FILES)]
    report = run_race(
        table=table_uri,
        ledger=ledger_uri(ledger_kind, tmp_path, unique_name),
        paths=paths,
        workdir=tmp_path / "race",
        workers=8,
        copies=3,
        kills=10,
        seed=6,
        kill_every=(0.1, 0.5),
        connection=connection,
        expected_ids=set(range(FILES * ROWS)),
    )
    print(report)  # shown with -s: counts and timings
    assert report.kills == 10
    assert report.agreement.problems == []
    assert report.agreement.duplicate_rows == 0
    assert report.agreement.ledger_rows == {"succeeded": FILES}
    assert report.replay_counts["ingested"] + report.replay_counts["skipped"] == FILES
    assert report.race_counts["ingested"] <= FILES


@pytest.mark.slow
def test_racing_workers_in_merge_mode_merge_each_file_exactly_once(
    ledger_kind, request, landing: Path, table_uri: str, tmp_path: Path, unique_name: str
):
    connection = request.getfixturevalue("azurite") if ledger_kind == "azure_table" else None
    files = 80
    paths = [str(write_parquet(landing / f"f{i:03d}.parquet", start=i * ROWS, rows=ROWS))
             for i in range(files)]
    report = run_race(
        table=table_uri,
        ledger=ledger_uri(ledger_kind, tmp_path, unique_name),
        paths=paths,
        workdir=tmp_path / "race",
        workers=4,
        copies=3,
        kills=4,
        seed=18,
        kill_every=(0.1, 0.4),
        connection=connection,
        expected_ids=set(range(files * ROWS)),
        options={"mode": "merge", "merge_keys": ("id",)},
    )
    print(report)
    assert report.kills == 4
    assert report.agreement.problems == []
    assert report.agreement.contents_committed_twice == 0
    assert report.agreement.ledger_rows == {"succeeded": files}
    assert report.replay_counts["ingested"] + report.replay_counts["skipped"] == files


def test_a_commit_found_from_a_snapshot_others_have_moved_past_is_located_at_its_version(
    table_uri: str,
):
    """delta-rs numbers `history()` from the snapshot's version but lists newer commits too."""
    import pyarrow as pa
    from deltalake import DeltaTable

    from ingest_core.delta import DeltaTarget, FileEntry

    target = DeltaTarget(table_uri)
    shas = [f"{i:064x}" for i in range(4)]
    for i, sha in enumerate(shas[:2]):
        target.append(target.snapshot(), pa.table({"id": [i]}), [FileEntry(sha, f"f{i}", 1)],
                      merge_schema=i == 0)
    stale = DeltaTable(table_uri)
    other = DeltaTarget(table_uri)
    for i, sha in enumerate(shas[2:], start=2):
        other.append(other.snapshot(), pa.table({"id": [i]}), [FileEntry(sha, f"f{i}", 1)],
                     merge_schema=False)
    assert stale.version() == 1
    assert target.locate(stale, shas[1]).version == 1
    assert target.locate(stale, shas[0]).version == 0


def test_a_commit_found_while_others_commit_is_settled_by_the_versions_holding_its_txn(
    table_uri: str,
):
    import pyarrow as pa

    from ingest_core.delta import DeltaTarget, FileEntry

    target = DeltaTarget(table_uri)
    shas = [f"{i:064x}" for i in range(6)]
    for i, sha in enumerate(shas):
        target.append(target.snapshot(), pa.table({"id": [i]}), [FileEntry(sha, f"f{i}", 1)],
                      merge_schema=i == 0)
    assert [target._first_holding(sha, 0, 5) for sha in shas] == [0, 1, 2, 3, 4, 5]
    assert target._first_holding(shas[3], 3, 5) == 3


def test_a_worker_that_saw_no_table_never_appends_to_one_a_rival_created_meanwhile(
    table_uri: str,
):
    """The rival's first commit may carry the same content: create or fail, never rebase."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    from ingest_core.delta import DeltaTarget, FileEntry

    late, rival = DeltaTarget(table_uri), DeltaTarget(table_uri)
    checked = late.snapshot()
    assert checked is None  # the late worker checked: no table, so its content is not in
    entry = [FileEntry("ab" * 32, "f0", 1)]
    assert rival.append(rival.snapshot(), pa.table({"id": [0]}), entry, merge_schema=True) == 0
    with pytest.raises(CommitFailedError, match="created meanwhile"):
        late.append(checked, pa.table({"id": [0]}), entry, merge_schema=True)
    assert DeltaTable(table_uri).to_pyarrow_table().column("id").to_pylist() == [0]
