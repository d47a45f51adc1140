"""A worker frozen (SIGSTOP) past its lease: another takes over and completes, the first
resumes (SIGCONT), notices it lost the lease, and nothing lands twice. On both ledgers.

The worker freezes itself at a named point (`INGEST_FAULT_POINT=POINT:stop`), so
the stall falls exactly where it hurts: holding a claim, in the middle of the
Delta write (data files written, snapshot taken before the rival's commit), or
between its commit and its completion.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
from exactly_once import check_exactly_once, ledger_uri, thaw, wait_stopped
from helpers import write_parquet

from ingest_core import IdempotentIngestor, StorageConfig

LEASE = 1.0
SPAWN = multiprocessing.get_context("spawn")


def _ingest_and_report(
    table: str, ledger: str, paths: list[str], options: dict, connection: str | None, out: str
) -> None:
    """The stalling worker: ingest `paths`, then write its results as JSON to `out`."""
    storage = StorageConfig(connection_string=connection)
    with IdempotentIngestor(table=table, ledger=ledger, storage=storage, **options) as ing:
        stats = ing.run(ing.list_sources(paths))
    Path(out).write_text(json.dumps(stats.to_dict()))


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger_kind(request: pytest.FixtureRequest) -> str:
    return request.param


BATCHED = {"batch_files": 10, "lease_seconds": LEASE}
STREAMED = {"stream_bytes": 1, "lease_seconds": LEASE}
LOST = "in_progress"
CASES = [  # where the first worker freezes, and what it reports for f0, f1 once it thaws
    ("after_claim", BATCHED, [LOST, LOST]),  # small files are claimed as a group: both held
    ("during_write", BATCHED, [LOST, LOST]),
    ("during_write", STREAMED, [LOST, "skipped"]),
    ("during_complete", BATCHED, ["ingested", "ingested"]),  # committed: the rival completed
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "options", "outcomes"), CASES,
    ids=[f"{p}-{'streamed' if o is STREAMED else 'batched'}" for p, o, _ in CASES],
)
def test_worker_stalled_past_its_lease_is_overtaken_and_adds_no_duplicate(
    ledger_kind, request, point, options, outcomes, tmp_path: Path, landing: Path,
    table_uri: str, unique_name: str, monkeypatch,
):
    connection = request.getfixturevalue("azurite") if ledger_kind == "azure_table" else None
    ledger = ledger_uri(ledger_kind, tmp_path, unique_name)
    rows = 100_000 if options is STREAMED else 3
    paths = [str(write_parquet(landing / f"f{i}.parquet", start=i * rows, rows=rows))
             for i in range(2)]
    out = tmp_path / "stalled.json"

    monkeypatch.setenv("INGEST_FAULT_POINT", f"{point}:stop")
    stalled = SPAWN.Process(
        target=_ingest_and_report, args=(table_uri, ledger, paths, options, connection, str(out))
    )
    stalled.start()
    monkeypatch.delenv("INGEST_FAULT_POINT")
    try:
        wait_stopped(stalled)
        time.sleep(LEASE + 0.2)  # frozen past its lease
        storage = StorageConfig(connection_string=connection)
        with IdempotentIngestor(table=table_uri, ledger=ledger, storage=storage, **options) as ing:
            rival = ing.run(ing.list_sources(paths))
        # the files it takes over it ingests, or, when the frozen worker had committed them,
        # finds in the table: skipped, with the version holding them
        found = point == "during_complete"
        assert (rival.skipped if found else rival.ingested) == 2, rival.files
        if found:
            assert all(r.delta_version is not None for r in rival.files), rival.files
    finally:
        thaw(stalled)
    assert stalled.exitcode == 0

    with IdempotentIngestor(table=table_uri, ledger=ledger,
                            storage=StorageConfig(connection_string=connection)) as ing:
        agreement = check_exactly_once(
            table_uri, ing.ledger, ing.table, expected_ids=set(range(2 * rows))
        )
    assert agreement.problems == []
    assert agreement.contents_in_log == 2
    first = json.loads(out.read_text())
    by_name = {Path(f["path"]).stem: f["status"] for f in first["files"]}
    assert [by_name["f0"], by_name["f1"]] == outcomes, first["files"]
    for result in first["files"]:
        if result["status"] == LOST:
            assert "lease lost to another worker" in result["error"], result


@pytest.mark.slow
def test_worker_overtaken_between_its_check_and_its_write_does_not_write_twice(
    tmp_path: Path, landing: Path, table_uri: str, monkeypatch
):
    """The write must come from the very snapshot the ids were checked on.

    The worker's batch holds a file a dead worker had committed (so the check
    yields its result and the worker pauses there, at its consumer) and a new
    file. While it pauses, a rival whose clock runs two leases ahead takes the
    new file over and commits it. The worker then writes: it must be refused.
    """
    from datetime import UTC, datetime, timedelta

    from ingest_core.ledger.sqlite import SqliteLedger

    ledger_path = tmp_path / "ledger.sqlite"
    seed = write_parquet(landing / "seed" / "seed.parquet", start=1000)
    with IdempotentIngestor(table=table_uri, ledger=SqliteLedger(ledger_path)) as ing:
        assert ing.ingest_file(str(seed)).status == "ingested"
    committed = str(write_parquet(landing / "f0.parquet", start=0))
    new = str(write_parquet(landing / "f1.parquet", start=10))
    monkeypatch.setenv("INGEST_FAULT_POINT", "after_commit")
    dead = SPAWN.Process(target=_ingest_and_report, args=(
        table_uri, f"sqlite:///{ledger_path}", [committed], {"lease_seconds": LEASE}, None,
        str(tmp_path / "dead.json")))
    dead.start()
    monkeypatch.delenv("INGEST_FAULT_POINT")
    dead.join(60)
    assert dead.exitcode == -9
    time.sleep(LEASE + 0.1)

    worker = IdempotentIngestor(table=table_uri, ledger=SqliteLedger(ledger_path),
                                lease_seconds=60, batch_files=10)
    results = worker.ingest(worker.list_sources([committed, new]))
    first = next(results)  # the check found f0 in the log: paused right after the check
    assert (Path(first.path).name, first.status) == ("f0.parquet", "skipped")
    assert first.delta_version is not None

    ahead = lambda: datetime.now(UTC) + timedelta(seconds=120)  # noqa: E731
    rival_ledger = SqliteLedger(ledger_path, clock=ahead)
    with IdempotentIngestor(table=table_uri, ledger=rival_ledger) as rival:
        assert rival.ingest_file(new).status == "ingested"

    rest = list(results)
    worker.close()
    assert [(Path(r.path).name, r.status) for r in rest] == [("f1.parquet", LOST)]
    assert "lease lost to another worker" in (rest[0].error or "")
    with IdempotentIngestor(table=table_uri, ledger=SqliteLedger(ledger_path)) as ing:
        agreement = check_exactly_once(
            table_uri, ing.ledger, ing.table, expected_ids={0, 1, 2, 10, 11, 12, 1000, 1001, 1002}
        )
    assert agreement.problems == []
