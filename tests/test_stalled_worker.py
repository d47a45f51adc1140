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
import os
import signal
import time
from pathlib import Path

import pytest
from exactly_once import check_exactly_once, ledger_uri
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


def _wait_stopped(pid: int, timeout: float = 60) -> None:
    """Wait until process `pid` is in the stopped state (T)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise TimeoutError(f"worker {pid} did not reach its stall point in {timeout} s")


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger_kind(request: pytest.FixtureRequest) -> str:
    return request.param


BATCHED = {"batch_files": 10, "lease_seconds": LEASE}
STREAMED = {"stream_bytes": 1, "lease_seconds": LEASE}
LOST = "in_progress"
CASES = [  # where the first worker freezes, and what it reports for f0, f1 once it thaws
    ("after_claim", BATCHED, [LOST, "skipped"]),  # f1 was not claimed yet: done by the rival
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
        _wait_stopped(stalled.pid)
        time.sleep(LEASE + 0.2)  # frozen past its lease
        storage = StorageConfig(connection_string=connection)
        with IdempotentIngestor(table=table_uri, ledger=ledger, storage=storage, **options) as ing:
            rival = ing.run(ing.list_sources(paths))
        assert rival.ingested == 2, rival.files
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
        stalled.join(60)
        if stalled.is_alive():
            stalled.kill()
            stalled.join()
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
