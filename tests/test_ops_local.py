"""Operator commands on the embedded default: a local folder, a SQLite ledger, a local table.

`ingest replay`, `sweep`, `retry`, `quarantine list|release`, `show` and
`maintain`, called through the command line in this process (`run_cli`), so
their exit statuses and --json shapes are what is checked.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from helpers import id_counts, write_text

from ingest_core.cli import EXIT_FILES_NOT_DONE, EXIT_OK, EXIT_USAGE, run_cli
from ingest_core.config import IngestConfig, table_key
from ingest_core.ledger import open_ledger
from ingest_core.ledger.sqlite import SqliteLedger
from ingest_core.sources.identity import path_key, same_version
from ingest_core.sources.local import LocalSource

CSV_1 = "id,amount\n1,1.5\n2,3.0\n"
CSV_2 = "id,amount\n3,4.5\n"
CSV_3 = "id,amount\n4,6.0\n5,7.5\n"


@pytest.fixture(autouse=True)
def no_ingest_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags only: no INGEST_* setting of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    """Run `ingest ARGS --json` here; its exit status and its parsed stdout."""
    capsys.readouterr()
    code = run_cli([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def claim_as_dead_worker(table_uri: str, path: Path) -> None:
    """Leave the row a worker that died after its claim leaves: processing, lease expired."""
    ledger = open_ledger(IngestConfig(table_uri=table_uri).resolved_ledger_uri())
    try:
        ledger.claim(table_key(table_uri), sha(path), path=str(path), owner="dead-worker",
                     lease_seconds=0.01, max_attempts=5, size=path.stat().st_size)
    finally:
        ledger.close()
    time.sleep(0.05)


def test_replay_of_a_folder_ingests_only_what_is_missing(landing, table_uri, capsys):
    write_text(landing / "a.csv", CSV_1)
    write_text(landing / "b.csv", CSV_2)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    write_text(landing / "later" / "c.csv", CSV_3)
    code, report = cli_json(capsys, "replay", str(landing), "--table", table_uri)
    assert code == EXIT_OK
    assert report["via"] == "direct"
    assert (report["ingested"], report["skipped"]) == (1, 2)
    assert [f["path"] for f in report["files"] if f["status"] == "ingested"] == [
        str(landing / "later" / "c.csv")
    ]
    assert id_counts(table_uri) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_replay_needs_sources_or_a_dead_letter_location(table_uri):
    assert run_cli(["replay", "--table", table_uri]) == EXIT_USAGE
    assert run_cli(["replay", "x", "--from-dead-letter", "dl/SUB", "--table", table_uri]) == (
        EXIT_USAGE
    )


def test_replaying_local_files_through_event_grid_is_refused(landing, table_uri, capsys):
    write_text(landing / "a.csv", CSV_1)
    code = run_cli(["replay", str(landing), "--via", "eventgrid",
                    "--topic-endpoint", "https://t.westeurope-1.eventgrid.azure.net/api/events"])
    assert code == EXIT_USAGE
    assert "--via direct" in capsys.readouterr().err


@pytest.fixture(params=[50, 0], ids=["reads-rows", "by-path"])
def sweep_lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Sweep both ways: one read of the table's rows, or (rows per file 0) a lookup per file."""
    from ingest_core.ledger import BaseLedger

    sweep_module = importlib.import_module("ingest_core.ops.sweep")  # the module, not `ops.sweep`
    monkeypatch.setattr(sweep_module, "SWEEP_ROWS_PER_FILE", request.param)
    looked_up: list[str] = []
    real_by_path = BaseLedger.by_path

    def counting_by_path(self, table, path):
        looked_up.append(path)
        return real_by_path(self, table, path)

    monkeypatch.setattr(BaseLedger, "by_path", counting_by_path)
    yield
    assert bool(looked_up) == (request.param == 0)


@pytest.mark.usefixtures("sweep_lookup")
def test_sweep_redrives_only_files_the_ledger_never_saw(landing, table_uri, capsys, monkeypatch):
    write_text(landing / "a.csv", CSV_1)
    write_text(landing / "b.csv", CSV_2)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    write_text(landing / "missed.csv", CSV_3)
    write_text(landing / "copy_of_a.csv", CSV_1)
    fetched: list[str] = []
    real_fetch = LocalSource.fetch

    def counting_fetch(self, file, spool_dir):
        fetched.append(Path(file.uri).name)
        return real_fetch(self, file, spool_dir)

    monkeypatch.setattr(LocalSource, "fetch", counting_fetch)
    code, report = cli_json(capsys, "sweep", str(landing), "--table", table_uri)
    assert code == EXIT_OK
    assert report["listed"] == 4
    unseen = [str(landing / "copy_of_a.csv"), str(landing / "missed.csv")]
    assert report["found"]["unseen"] == unseen
    assert report["found"]["changed"] == report["found"]["stalled"] == []
    assert (report["ingested"], report["skipped"]) == (1, 1)
    assert sorted(fetched) == ["copy_of_a.csv", "missed.csv"], "known files must not be read"
    assert id_counts(table_uri) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}

    code, again = cli_json(capsys, "sweep", str(landing), "--table", table_uri)
    assert code == EXIT_OK and again["found"]["unseen"] == [] and again["files"] == []


@pytest.mark.slow
def test_sweep_and_replay_use_the_configured_worker_processes(
    landing, table_uri, capsys, monkeypatch
):
    write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    write_text(landing / "b.csv", CSV_2)
    write_text(landing / "c.csv", CSV_3)
    monkeypatch.setenv("INGEST_WORKERS", "2")
    owners: set[str] = set()
    real_claim = SqliteLedger.claim

    def noting_claim(self, *args, **kwargs):
        claim = real_claim(self, *args, **kwargs)
        owners.add(claim.record.owner or "")
        return claim

    monkeypatch.setattr(SqliteLedger, "claim", noting_claim)  # in this process only
    code, report = cli_json(capsys, "sweep", str(landing), "--table", table_uri)
    assert code == EXIT_OK
    assert report["found"]["unseen"] == [str(landing / "b.csv"), str(landing / "c.csv")]
    assert sorted(f["path"] for f in report["files"] if f["status"] == "ingested") == [
        str(landing / "b.csv"), str(landing / "c.csv"),
    ]
    write_text(landing / "d.csv", "id,amount\n6,1.0\n")
    code, replayed = cli_json(capsys, "replay", str(landing), "--table", table_uri)
    assert code == EXIT_OK and (replayed["ingested"], replayed["skipped"]) == (1, 3)
    assert not owners, "files were claimed in this process, not by the workers"
    assert id_counts(table_uri) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}


@pytest.mark.usefixtures("sweep_lookup")
def test_sweep_redrives_a_file_whose_worker_died(landing, table_uri, capsys):
    path = write_text(landing / "a.csv", CSV_1)
    claim_as_dead_worker(table_uri, path)
    code, report = cli_json(capsys, "sweep", str(landing), "--table", table_uri)
    assert code == EXIT_OK
    assert report["found"]["stalled"] == [str(path)]
    assert report["ingested"] == 1
    assert id_counts(table_uri) == {1: 1, 2: 1}


@pytest.mark.usefixtures("sweep_lookup")
def test_sweep_redrives_a_file_overwritten_in_place(landing, table_uri, capsys):
    path = write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    write_text(path, CSV_3)
    code, report = cli_json(capsys, "sweep", str(landing), "--table", table_uri)
    assert code == EXIT_OK
    assert report["found"]["changed"] == [str(path)]
    assert id_counts(table_uri) == {1: 1, 2: 1, 4: 1, 5: 1}


def test_a_quarantined_file_is_released_and_ingested(landing, table_uri, capsys, monkeypatch):
    write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    wide = write_text(landing / "wide.csv", "id,amount,region\n9,1.0,eu\n")
    monkeypatch.setenv("INGEST_SCHEMA_MODE", "strict")
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_FILES_NOT_DONE

    code, rows = cli_json(capsys, "quarantine", "list", "--table", table_uri)
    assert code == EXIT_OK
    [row] = rows
    assert row["sha256"] == sha(wide) and row["path"] == str(wide)
    assert "region" in row["error"]

    # the operator allows new columns again: a plain retry still leaves it alone
    monkeypatch.setenv("INGEST_SCHEMA_MODE", "merge")
    code, plain = cli_json(capsys, "retry", "--table", table_uri)
    assert code == EXIT_OK and plain["files"] == []

    code, released = cli_json(capsys, "quarantine", "release", sha(wide), "--table", table_uri)
    assert code == EXIT_OK
    assert released["released"] is True and released["status"] == "failed"

    code, retried = cli_json(capsys, "retry", "--table", table_uri)
    assert code == EXIT_OK
    assert retried["ingested"] == 1 and retried["files"][0]["path"] == str(wide)
    assert id_counts(table_uri) == {1: 1, 2: 1, 9: 1}
    code, rows = cli_json(capsys, "quarantine", "list", "--table", table_uri)
    assert rows == []


def test_retry_of_one_quarantined_sha_asks_for_include_quarantined(
    landing, table_uri, capsys, monkeypatch
):
    write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    wide = write_text(landing / "wide.csv", "id,amount,region\n9,1.0,eu\n")
    monkeypatch.setenv("INGEST_SCHEMA_MODE", "strict")
    assert run_cli(["run", str(wide), "--table", table_uri]) == EXIT_FILES_NOT_DONE
    monkeypatch.delenv("INGEST_SCHEMA_MODE")

    assert run_cli(["retry", "--table", table_uri, "--sha256", sha(wide)]) == EXIT_USAGE
    assert "--include-quarantined" in capsys.readouterr().err
    code, report = cli_json(capsys, "retry", "--table", table_uri, "--sha256", sha(wide),
                            "--include-quarantined")
    assert code == EXIT_OK
    assert report["released"] == [sha(wide)] and report["ingested"] == 1
    assert id_counts(table_uri) == {1: 1, 2: 1, 9: 1}


def test_releasing_a_sha_quarantined_in_two_tables_needs_the_table(tmp_path, landing, capsys):
    bad = write_text(landing / "bad.csv", 'id,amount\n"unterminated\n')
    ledger = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    for name in ("orders", "returns"):
        table = str(tmp_path / "lake" / name)
        assert run_cli(["run", str(bad), "--table", table, "--ledger", ledger]) == (
            EXIT_FILES_NOT_DONE
        )
    assert run_cli(["quarantine", "release", sha(bad), "--ledger", ledger]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "2 tables" in err and "--table" in err
    code, report = cli_json(capsys, "quarantine", "release", sha(bad), "--ledger", ledger,
                            "--table", str(tmp_path / "lake" / "returns"))
    assert code == EXIT_OK and report["table"] == str(tmp_path / "lake" / "returns")


def test_show_by_sha_or_by_any_path_gives_the_row_the_paths_and_the_delta_version(
    landing, table_uri, capsys
):
    first = write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    copy = write_text(landing / "copy.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK

    code, by_sha = cli_json(capsys, "show", sha(first), "--table", table_uri)
    assert code == EXIT_OK
    [shown] = by_sha["files"]
    assert shown["status"] == "succeeded" and shown["paths"] == [str(first), str(copy)]
    assert shown["delta"] == {
        "checked": True, "in_log": True, "agrees": True, "version": 0, "rows": 2,
        "table_version": 0,
    }
    code, by_path = cli_json(capsys, "show", str(copy), "--table", table_uri)
    assert code == EXIT_OK and by_path["kind"] == "path"
    assert by_path["files"][0]["sha256"] == sha(first)

    code, unknown = cli_json(capsys, "show", "0" * 64, "--table", table_uri)
    assert code == EXIT_FILES_NOT_DONE and unknown["found"] == 0


def test_show_says_when_the_delta_log_disagrees_with_the_ledger(landing, table_uri, capsys):
    import shutil

    path = write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    shutil.rmtree(table_uri)
    code, report = cli_json(capsys, "show", sha(path), "--table", table_uri)
    assert code == EXIT_FILES_NOT_DONE
    delta = report["files"][0]["delta"]
    assert delta["in_log"] is False and delta["agrees"] is False


def test_maintain_with_no_flag_compacts_checkpoints_and_removes_expired_logs(
    landing, table_uri, capsys
):
    for i in range(3):
        write_text(landing / f"{i}.csv", f"id,amount\n{i},1.0\n")
        assert run_cli(["run", str(landing / f"{i}.csv"), "--table", table_uri]) == EXIT_OK
    code, report = cli_json(capsys, "maintain", "--table", table_uri)
    assert code == EXIT_OK
    assert report["compaction"]["numFilesRemoved"] == 3
    assert report["checkpoint_version"] == report["version"] == 3
    assert report["logs_cleaned"] is True and report["vacuumed"] is None
    assert id_counts(table_uri) == {0: 1, 1: 1, 2: 1}


def test_vacuum_below_a_week_is_refused_unless_forced(landing, table_uri, capsys):
    for i in range(2):
        write_text(landing / f"{i}.csv", f"id,amount\n{i},1.0\n")
        assert run_cli(["run", str(landing / f"{i}.csv"), "--table", table_uri]) == EXIT_OK
    assert run_cli(["maintain", "--table", table_uri, "--compact"]) == EXIT_OK
    files_before = sorted(p.name for p in Path(table_uri).glob("*.parquet"))
    capsys.readouterr()
    assert run_cli(["maintain", "--table", table_uri, "--vacuum", "--retain-hours", "1"]) == (
        EXIT_USAGE
    )
    assert "168" in capsys.readouterr().err
    assert sorted(p.name for p in Path(table_uri).glob("*.parquet")) == files_before

    code, report = cli_json(capsys, "maintain", "--table", table_uri, "--vacuum",
                            "--retain-hours", "0", "--force")
    assert code == EXIT_OK and len(report["vacuumed"]) == 2
    assert len(DeltaTable(table_uri).file_uris()) == 1
    assert id_counts(table_uri) == {0: 1, 1: 1}


def test_maintain_of_a_missing_table_is_a_usage_error(table_uri):
    assert run_cli(["maintain", "--table", table_uri]) == EXIT_USAGE


def test_sweep_paths_agree_across_url_forms():
    from ingest_core.config import StorageConfig

    storage = StorageConfig(connection_string="UseDevelopmentStorage=true")
    forms = [
        "http://127.0.0.1:10000/devstoreaccount1/landing/a%20b.csv",
        "abfs://landing/a b.csv",
    ]
    assert len({path_key(f, storage) for f in forms}) == 1


def test_a_blob_row_is_the_listed_version_whatever_quotes_its_etag_carries():
    from ingest_core.ledger import SUCCEEDED, FileRecord
    from ingest_core.sources import SourceFile

    row = FileRecord("t", "a" * 64, SUCCEEDED, "abfs://landing/a.csv", size=10,
                     source_etag='"0x8DC1"')
    listed = SourceFile("abfs://landing/a.csv", "a.csv", size=10, etag="0x8DC1")
    assert same_version(row, listed)
    assert not same_version(row, SourceFile(listed.uri, "a.csv", size=10, etag="0x8DC2"))


def test_a_local_row_is_another_version_once_the_file_is_rewritten(landing):
    from ingest_core.ledger import SUCCEEDED, FileRecord
    from ingest_core.sources.identity import local_identity

    path = write_text(landing / "a.csv", CSV_1)
    [listed] = LocalSource().list(str(path))
    row = FileRecord("t", "a" * 64, SUCCEEDED, str(path), size=len(CSV_1),
                     source_etag=local_identity(path))
    assert same_version(row, listed)
    time.sleep(0.01)
    write_text(path, CSV_2[: len(CSV_1)].ljust(len(CSV_1)))  # same size, new bytes
    assert not same_version(row, listed)
    path.unlink()
    assert same_version(row, listed), "a file deleted since the listing has nothing to re-drive"


def test_sweep_and_replay_with_routes_send_each_file_to_its_table(tmp_path, landing, capsys):
    lake = tmp_path / "lake"
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{region}}/*.csv"\ntable = "{lake}/{{region}}"\n')
    write_text(landing / "eu" / "a.csv", CSV_1)
    write_text(landing / "us" / "b.csv", CSV_2)
    write_text(landing / "stray.csv", CSV_3)
    capsys.readouterr()
    assert run_cli(["sweep", str(landing), "--routes", str(routes), "--json"]) == (
        EXIT_FILES_NOT_DONE
    )
    report = json.loads(capsys.readouterr().out)
    routed = [str(landing / "eu" / "a.csv"), str(landing / "us" / "b.csv")]
    assert report["found"]["unseen"] == routed
    assert report["found"]["unrouted"] == [str(landing / "stray.csv")]
    assert {f["table"] for f in report["files"]} == {f"{lake}/eu", f"{lake}/us"}
    assert id_counts(f"{lake}/eu") == {1: 1, 2: 1} and id_counts(f"{lake}/us") == {3: 1}

    code, replayed = cli_json(capsys, "replay", str(landing), "--routes", str(routes))
    assert code == EXIT_FILES_NOT_DONE
    assert (replayed["skipped"], replayed["unrouted"]) == (2, 1)


def test_a_dead_letter_blob_that_is_not_json_is_named_in_the_error():
    from ingest_core.deadletter import parse_dead_letters
    from ingest_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"dl/SUB/2026/1/2/3/x\.json"):
        parse_dead_letters(b"<html>", "dl/SUB/2026/1/2/3/x.json")
    [letter] = parse_dead_letters(
        b'[{"id": "1", "eventType": "Microsoft.Storage.BlobCreated", "data": {}, '
        b'"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30}]', "b"
    )
    assert letter.event == {"id": "1", "eventType": "Microsoft.Storage.BlobCreated", "data": {}}
    assert letter.reason == "MaxDeliveryAttemptsExceeded"
    assert letter.details["deliveryAttempts"] == 30


def test_retry_takes_over_a_file_whose_worker_died(landing, table_uri, capsys):
    path = write_text(landing / "a.csv", CSV_1)
    claim_as_dead_worker(table_uri, path)
    code, report = cli_json(capsys, "retry", "--table", table_uri)
    assert code == EXIT_OK and report["ingested"] == 1
    assert id_counts(table_uri) == {1: 1, 2: 1}


def test_retry_reports_a_failed_file_whose_path_is_gone(landing, table_uri, capsys):
    path = write_text(landing / "a.csv", CSV_1)
    content = sha(path)
    ledger = open_ledger(IngestConfig(table_uri=table_uri).resolved_ledger_uri())
    try:
        claim = ledger.claim(table_key(table_uri), content, path=str(path), owner="w",
                             lease_seconds=60, max_attempts=5)
        ledger.fail(claim.record, "disk full")
    finally:
        ledger.close()
    path.unlink()
    code, report = cli_json(capsys, "retry", "--table", table_uri)
    assert code == EXIT_FILES_NOT_DONE
    assert report["gone"] == [{"path": str(path), "sha256": content}]
    assert report["files"] == []


def test_the_operator_commands_keep_their_exit_status_as_a_separate_process(landing, table_uri):
    from helpers import run_cli as run_process

    path = write_text(landing / "a.csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    shown = run_process("show", sha(path), "--table", table_uri, "--json")
    assert shown.returncode == EXIT_OK, shown.stderr
    assert json.loads(shown.stdout)["files"][0]["delta"]["in_log"] is True
    missing = run_process("show", "f" * 64, "--table", table_uri)
    assert missing.returncode == EXIT_FILES_NOT_DONE and "nothing in the ledger" in missing.stderr
    refused = run_process("maintain", "--table", table_uri, "--vacuum", "--retain-hours", "24")
    assert refused.returncode == EXIT_USAGE and refused.stderr.count("\n") == 1


def test_show_prints_paths_literally_not_as_markup(landing, table_uri, capsys):
    path = write_text(landing / "[bold]x[/bold].csv", CSV_1)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    capsys.readouterr()
    assert run_cli(["show", str(path), "--table", table_uri]) == EXIT_OK
    assert "[bold]x[/bold].csv" in capsys.readouterr().out
