"""Run ids: every run's id on its ledger rows, in its Delta commits' metadata and its results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from deltalake import DeltaTable
from helpers import run_cli, write_parquet

from ingest_core.config import IngestConfig, table_key
from ingest_core.delta import TableRef
from ingest_core.delta.data_files import write_file
from ingest_core.delta.group_commit import GroupCommit
from ingest_core.delta.target import METADATA_KEY, RUN_ID_KEY, RUN_IDS_KEY
from ingest_core.ingestor import IdempotentIngestor
from ingest_core.ledger import QUARANTINED
from ingest_core.ledger.sqlite import SqliteLedger
from ingest_core.maintenance import redrive
from ingest_core.ops.replay import replay_sources
from ingest_core.ops.retry import retry
from ingest_core.ops.sweep import sweep
from ingest_core.session import Session


def _rows(table_uri: str) -> list:
    ledger = SqliteLedger(f"{table_uri}.ledger.sqlite", read_only=True)
    try:
        return ledger.records(table=table_key(table_uri))
    finally:
        ledger.close()


def _commits(table_uri: str) -> list[dict]:
    """The table's commits that carry files, oldest first."""
    return [c for c in reversed(DeltaTable(table_uri).history()) if METADATA_KEY in c]


def test_a_session_run_puts_its_run_id_on_rows_results_and_the_commit(
    landing: Path, table_uri: str
):
    for i in range(3):
        write_parquet(landing / f"{i}.parquet", start=10 * i)
    with Session(IngestConfig(table_uri=table_uri)) as session:
        stats = session.ingest_sources([str(landing)], run_id="run-a")
    assert stats.run_id == "run-a" and stats.to_dict()["run_id"] == "run-a"
    assert {r.run_id for r in stats.files} == {"run-a"}
    assert {r.run_id for r in _rows(table_uri)} == {"run-a"}
    [commit] = _commits(table_uri)
    assert commit[RUN_ID_KEY] == "run-a"
    assert json.loads(commit[RUN_IDS_KEY]) == ["run-a"]
    assert {f["run_id"] for f in json.loads(commit[METADATA_KEY])} == {"run-a"}


def test_without_a_run_id_each_call_gets_a_new_one(landing: Path, table_uri: str):
    first = write_parquet(landing / "a.parquet", start=0)
    second = write_parquet(landing / "b.parquet", start=10)
    with IdempotentIngestor(table_uri) as ingestor:
        one = ingestor.ingest_file(str(first))
        two = ingestor.ingest_file(str(second))
    assert one.run_id and two.run_id and one.run_id != two.run_id
    assert {r.path: r.run_id for r in _rows(table_uri)} == {
        str(first): one.run_id, str(second): two.run_id
    }
    assert [c[RUN_ID_KEY] for c in _commits(table_uri)] == [one.run_id, two.run_id]


def test_the_event_path_names_each_invocation_and_its_files_runs(
    landing: Path, table_uri: str, tmp_path: Path
):
    import pyarrow as pa

    seed = write_parquet(landing / "seed.parquet", start=0)
    event = write_parquet(landing / "e.parquet", start=100)
    config = IngestConfig(table_uri=table_uri)
    with Session(config) as session:
        session.ingest_sources([str(seed)], run_id="seed-run")  # the table's first commit
        # another invocation's file, staged and left for whoever commits next
        group = GroupCommit(TableRef.of(table_uri))
        try:
            group.table_schema()
            local = tmp_path / "other.parquet"
            write_file(local, pa.table({"id": [7], "amount": [1.0]}))
            group.stage("f" * 64, "landing/other.parquet", local, group.snapshot_version,
                        "other-invocation")
        finally:
            group.close()
        result = session.ingest_one(session.list_sources([str(event)])[0], run_id="fn-event-1")
    assert (result.status, result.run_id) == ("ingested", "fn-event-1")
    latest = _commits(table_uri)[-1]
    assert latest[RUN_ID_KEY] == "fn-event-1"
    assert json.loads(latest[RUN_IDS_KEY]) == ["fn-event-1", "other-invocation"]
    files = {f["path"]: f["run_id"] for f in json.loads(latest[METADATA_KEY])}
    assert files == {str(event): "fn-event-1", "landing/other.parquet": "other-invocation"}
    assert {r.path: r.run_id for r in _rows(table_uri)}[str(event)] == "fn-event-1"


def test_redrive_replay_and_sweep_runs_carry_their_ids(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    config = IngestConfig(table_uri=table_uri)
    report = replay_sources(config, [str(landing)], run_id="replay-1")
    assert report.stats.run_id == "replay-1" and report.to_dict()["run_id"] == "replay-1"
    assert {r.run_id for r in _rows(table_uri)} == {"replay-1"}
    write_parquet(landing / "b.parquet", start=10)  # missed by the events: a sweep finds it
    swept = sweep(config, [str(landing)], run_id="sweep-1")
    assert swept.unseen == [str(landing / "b.parquet")]
    assert swept.to_dict()["run_id"] == "sweep-1"
    assert {r.path: r.run_id for r in _rows(table_uri)}[str(landing / "b.parquet")] == "sweep-1"
    generated = sweep(config, [str(landing)])
    assert generated.stats.run_id and generated.stats.run_id != "sweep-1"  # a new one, idle too
    with Session(config) as session:
        rows = _rows(table_uri)
        redriven = redrive(session, records=rows, run_id="redrive-1")
    assert redriven.stats.run_id == "redrive-1" and redriven.gone == []


def test_redrive_reports_gone_paths_once_each(landing: Path, table_uri: str):
    kept = write_parquet(landing / "a.parquet", start=0)
    gone = write_parquet(landing / "b.parquet", start=10)
    config = IngestConfig(table_uri=table_uri)
    with Session(config) as session:
        session.ingest_sources([str(landing)])
        rows = _rows(table_uri)
        gone.unlink()
        found, missing = session.present_all([str(kept), str(gone), str(kept)])
        assert list(found) == [str(kept)] and missing == [str(gone)]
        report = redrive(session, records=rows)
    assert [r.path for r in report.gone] == [str(gone)]
    assert [r.path for r in report.stats.files] == [str(kept)]


def test_the_command_line_prints_the_run_id_kept_on_rows_and_commits(
    landing: Path, table_uri: str
):
    write_parquet(landing / "a.parquet", start=0)
    write_parquet(landing / "a2.parquet", start=5)
    result = run_cli("run", str(landing), "--table", table_uri, "--json", "--workers", "2",
                     "--batch-files", "1")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert {r["run_id"] for r in json.loads(result.stdout)["files"]} == {run_id}
    assert {r.run_id for r in _rows(table_uri)} == {run_id}  # both worker processes wrote it
    assert {c[RUN_ID_KEY] for c in _commits(table_uri)} == {run_id}
    write_parquet(landing / "b.parquet", start=10)
    text = run_cli("replay", str(landing), "--table", table_uri)
    assert text.returncode == 0, text.stderr
    [line] = [x for x in text.stderr.splitlines() if x.startswith("run id: ")]
    replay_id = line.removeprefix("run id: ")
    assert {r.path: r.run_id for r in _rows(table_uri)}[str(landing / "b.parquet")] == replay_id


def test_retry_releases_dismisses_and_redrives_under_its_run_id(landing: Path, table_uri: str):
    kept = write_parquet(landing / "a.parquet", start=0)
    gone = write_parquet(landing / "b.parquet", start=10)
    config = IngestConfig(table_uri=table_uri)
    ledger = SqliteLedger(f"{table_uri}.ledger.sqlite")
    try:
        for path, quarantine in ((kept, True), (gone, False)):  # a run that failed them
            claimed = ledger.claim(
                table_key(table_uri), hashlib.sha256(path.read_bytes()).hexdigest(),
                path=str(path), owner="x", lease_seconds=60, max_attempts=3, run_id="first",
            )
            ledger.fail(claimed.record, "boom", quarantine=quarantine)
    finally:
        ledger.close()
    gone.unlink()
    report = retry(config, include_quarantined=True, forget_gone=True, run_id="retry-7")
    assert report.to_dict()["run_id"] == "retry-7"
    assert [r.run_id for r in report.released] == ["retry-7"]
    assert [(r.status, r.run_id) for r in report.dismissed] == [(QUARANTINED, "retry-7")]
    assert {r.path: (r.status, r.run_id) for r in _rows(table_uri)} == {
        str(kept): ("succeeded", "retry-7"), str(gone): (QUARANTINED, "retry-7"),
    }
