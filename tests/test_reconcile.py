"""A table that lost rows the ledger calls ingested (issue 13, rows 2-4) and `ingest reconcile`.

Restored (`DeltaTable.restore`), a version's rows deleted or overwritten, the
table folder deleted or replaced by a new table while the ledger lived on:
the ledger still says `succeeded`, the transaction ids survive a restore, so
a run skips those files for good. The ledger records which table it
describes (its Delta id): a table deleted or replaced stops `ingest run`
before any claim (exit 2, naming `ingest reconcile --apply`); `reconcile`
lists the lost files from one scan of the lineage column and `--apply`
ingests them again, exactly once. A table property that would expire
transaction ids sooner than the ingester's `txn_retention` is refused.
Real SQLite, Azurite and deltalake tables on tmp_path; no mocks.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from exactly_once import ingest_paths, ledger_uri
from helpers import id_counts, write_parquet

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.cli import EXIT_FILES_NOT_DONE, EXIT_OK, EXIT_USAGE, run_cli
from ingest_core.config import table_key
from ingest_core.errors import TableIdentityError, TxnRetentionError
from ingest_core.ledger import FAILED, SUCCEEDED, open_ledger

KINDS = ["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)]
SPAWN = multiprocessing.get_context("spawn")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ledger of the test's kind (`kind` param), its URI and storage connection."""
    kind = request.param
    connection = None
    if kind == "azure_table":
        connection = request.getfixturevalue("azurite")
        monkeypatch.setenv("INGEST_STORAGE_CONNECTION", connection)
    return {"ledger": ledger_uri(kind, tmp_path, unique_name), "connection": connection}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """`ingest ARGS --json` here: exit status and the JSON object."""
    capsys.readouterr()
    code = run_cli([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def three_commits(landing: Path, table: str, ledger: str) -> list[Path]:
    """Files a (ids 0-2), b (10-12), c (20-22), each committed by its own run: versions 0-2."""
    paths = [write_parquet(landing / f"{n}.parquet", i * 10) for i, n in enumerate("abc")]
    for path in paths:
        assert run_cli(["run", str(path), "--table", table, "--ledger", ledger]) == EXIT_OK
    assert DeltaTable(table).version() == 2
    return paths


def once(*paths_of: int) -> dict[int, int]:
    return {i: 1 for start in paths_of for i in range(start, start + 3)}


def run_json(capsys: pytest.CaptureFixture[str], landing: Path, table: str,
             ledger: str) -> tuple[int, dict[str, Any]]:
    return cli(capsys, "run", str(landing), "--table", table, "--ledger", ledger)


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_restore_then_reconcile_lists_and_apply_ingests_once(setup, landing, table_uri, capsys):
    ledger = setup["ledger"]
    _, b, c = three_commits(landing, table_uri, ledger)
    DeltaTable(table_uri).restore(0)
    assert id_counts(table_uri) == once(0)
    # the ledger still says succeeded and the ids survived: a run skips them for good
    code, out = run_json(capsys, landing, table_uri, ledger)
    assert code == EXIT_OK and out["skipped"] == 3 and id_counts(table_uri) == once(0)

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE
    assert out["missing"] == 2
    assert sorted((f["path"], f["sha256"], f["delta_version"]) for f in out["files"]) == [
        (str(b), sha(b), 1), (str(c), sha(c), 2)
    ]

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["missing"] == 2 and out["reopened"] == 2
    assert out["stats"]["ingested"] == 2
    assert id_counts(table_uri) == once(0, 10, 20)

    # settled: nothing missing, a rerun only skips, and the ledger names the new versions
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_OK and out["missing"] == 0 and out["files"] == []
    code, out = run_json(capsys, landing, table_uri, ledger)
    assert code == EXIT_OK and out["skipped"] == 3 and id_counts(table_uri) == once(0, 10, 20)
    storage = StorageConfig(connection_string=setup["connection"])
    rows = open_ledger(ledger, storage).records(table=table_key(table_uri))
    assert {r.status for r in rows} == {SUCCEEDED}
    assert sorted(r.generation for r in rows) == [0, 1, 1]


@pytest.mark.parametrize("setup", ["sqlite"], indirect=True)
def test_rows_of_a_version_deleted_are_listed_and_ingested_again_once(
    setup, landing, table_uri, capsys
):
    ledger = setup["ledger"]
    _, b, _ = three_commits(landing, table_uri, ledger)
    DeltaTable(table_uri).delete("id >= 10 AND id < 20")
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE and out["missing"] == 1
    assert out["files"][0]["sha256"] == sha(b) and out["files"][0]["delta_version"] == 1

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["reopened"] == 1
    assert id_counts(table_uri) == once(0, 10, 20)
    assert cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)[0] == EXIT_OK
    # some of a file's rows deleted: listed as partial, never reopened (it would duplicate)
    DeltaTable(table_uri).delete("id = 21")
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["missing"] == 0 and out["reopened"] == 0
    assert [(p["path"], p["rows"], p["rows_left"]) for p in out["partial"]] == [
        (str(landing / "c.parquet"), 3, 2)
    ]


@pytest.mark.parametrize("setup", ["sqlite"], indirect=True)
def test_an_overwrite_is_listed_and_ingested_again_once(setup, landing, table_uri, capsys):
    ledger = setup["ledger"]
    three_commits(landing, table_uri, ledger)
    kept = DeltaTable(table_uri).to_pyarrow_table().filter(pa.compute.field("id") < 10)
    write_deltalake(table_uri, kept, mode="overwrite")
    assert id_counts(table_uri) == once(0)

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE and out["missing"] == 2
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and id_counts(table_uri) == once(0, 10, 20)


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_a_deleted_table_stops_the_run_naming_the_fix_then_apply_restores_it_once(
    setup, landing, table_uri, capsys
):
    ledger = setup["ledger"]
    three_commits(landing, table_uri, ledger)
    shutil.rmtree(table_uri)

    capsys.readouterr()
    assert run_cli(["run", str(landing), "--table", table_uri, "--ledger", ledger]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert table_uri in err and "ingest reconcile" in err and "--apply" in err
    assert not Path(table_uri).exists()  # stopped before any claim or commit

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE and out["missing"] == 3
    assert out["tables"][0]["state"] == "gone"
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["reopened"] == 3
    assert id_counts(table_uri) == once(0, 10, 20)

    code, out = run_json(capsys, landing, table_uri, ledger)
    assert code == EXIT_OK and out["skipped"] == 3 and id_counts(table_uri) == once(0, 10, 20)
    storage = StorageConfig(connection_string=setup["connection"])
    recorded = open_ledger(ledger, storage).table_identity(table_key(table_uri))
    assert recorded == DeltaTable(table_uri).metadata().id


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_a_replaced_table_stops_the_run_then_apply_ingests_into_the_new_one_once(
    setup, landing, table_uri, capsys
):
    ledger = setup["ledger"]
    three_commits(landing, table_uri, ledger)
    old_id = DeltaTable(table_uri).metadata().id
    shutil.rmtree(table_uri)
    write_deltalake(table_uri, pa.table({"id": [100], "amount": [1.0]}))  # another table
    assert DeltaTable(table_uri).metadata().id != old_id

    capsys.readouterr()
    assert run_cli(["run", str(landing), "--table", table_uri, "--ledger", ledger]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "replaced" in err and "ingest reconcile" in err and "--apply" in err
    assert id_counts(table_uri) == {100: 1}

    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["missing"] == 3 and out["tables"][0]["state"] == "replaced"
    assert id_counts(table_uri) == {100: 1, **once(0, 10, 20)}
    code, out = run_json(capsys, landing, table_uri, ledger)
    assert code == EXIT_OK and out["skipped"] == 3


def test_the_event_path_fails_the_same_way_on_a_replaced_table(landing, table_uri, tmp_path):
    path = write_parquet(landing / "a.parquet", 0)
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with IdempotentIngestor(table=table_uri, ledger=ledger) as ing:
        assert ing.ingest_one(ing.list_sources([str(path)])[0]).status == "ingested"
    shutil.rmtree(table_uri)
    write_deltalake(table_uri, pa.table({"id": [100], "amount": [1.0]}))
    other = write_parquet(landing / "b.parquet", 10)
    with IdempotentIngestor(table=table_uri, ledger=ledger) as ing:
        file = ing.list_sources([str(other)])[0]
        with pytest.raises(TableIdentityError, match="ingest reconcile"):
            ing.ingest_one(file)
        with pytest.raises(TableIdentityError):  # every event, not only the first
            ing.ingest_one(file)
        assert ing.ledger.get(ing.table_key, sha(other)) is None  # nothing claimed
    assert id_counts(table_uri) == {100: 1}


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_the_first_run_records_the_table_it_created(setup, landing, table_uri):
    write_parquet(landing / "a.parquet", 0)
    storage = StorageConfig(connection_string=setup["connection"])
    with IdempotentIngestor(table=table_uri, ledger=setup["ledger"], storage=storage) as ing:
        assert ing.ingest_directory(str(landing)).ingested == 1
        assert ing.ledger.table_identity(ing.table_key) == DeltaTable(table_uri).metadata().id


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_reopen_sends_a_succeeded_row_back_under_the_next_generation(setup, tmp_path):
    storage = StorageConfig(connection_string=setup["connection"])
    ledger = open_ledger(setup["ledger"], storage)
    key, digest = "tbl", "ab" * 32
    claim = ledger.claim(key, digest, path="/x", owner="w", lease_seconds=60, max_attempts=5)
    ledger.complete(claim.record, delta_version=4, rows=3)
    reopened = ledger.reopen(key, digest, "rows lost")
    assert reopened is not None and reopened.status == FAILED and reopened.generation == 1
    assert reopened.attempt == 0 and "rows lost" in (reopened.error or "")
    assert [r.sha256 for r in ledger.due(key, max_attempts=5)] == [digest]
    # not succeeded any more: a second reopen changes nothing
    assert ledger.reopen(key, digest, "again").generation == 1  # type: ignore[union-attr]
    again = ledger.claim(key, digest, path="/x", owner="w2", lease_seconds=60, max_attempts=5)
    assert again.outcome == "claimed" and again.record.generation == 1
    ledger.complete(again.record, delta_version=9, rows=3)
    assert ledger.get(key, digest).generation == 1  # type: ignore[union-attr]
    assert ledger.due(key, max_attempts=5) == []
    assert ledger.table_identity(key) is None
    ledger.record_table_identity(key, "id-1")
    ledger.record_table_identity(key, "id-2")
    assert ledger.table_identity(key) == "id-2"
    ledger.record_table_identity(key, None)
    assert ledger.table_identity(key) is None
    ledger.close()


def test_a_reopened_file_is_committed_once_even_when_its_worker_dies_after_the_commit(
    landing, table_uri, tmp_path, capsys, monkeypatch
):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    three_commits(landing, table_uri, ledger)
    DeltaTable(table_uri).restore(0)
    assert cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)[1]["missing"] == 2
    # reopen only (the re-drive of this process is what dies): the rows by hand, as --apply does
    led = open_ledger(ledger)
    for path in sorted(landing.glob("[bc].parquet")):
        led.reopen(table_key(table_uri), sha(path), "test")
    led.close()
    monkeypatch.setenv("INGEST_FAULT_POINT", "after_commit")
    worker = SPAWN.Process(target=ingest_paths, args=(
        table_uri, ledger, [str(landing / "b.parquet")], {"lease_seconds": 1.0}, None))
    worker.start()
    monkeypatch.delenv("INGEST_FAULT_POINT")
    worker.join(60)
    assert worker.exitcode == -9
    time.sleep(1.2)  # its lease runs out: the next run takes the row over
    assert id_counts(table_uri) == once(0, 10)
    code, out = cli(capsys, "retry", "--table", table_uri, "--ledger", ledger)
    # b was committed before its worker died: found in the table, skipped; c is ingested
    assert code == EXIT_OK and (out["ingested"], out["skipped"]) == (1, 1)
    assert id_counts(table_uri) == once(0, 10, 20)


def test_reconcile_json_shape_and_exit_codes(landing, table_uri, tmp_path, capsys):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    write_parquet(landing / "a.parquet", 0)
    assert run_cli(["run", str(landing), "--table", table_uri, "--ledger", ledger]) == EXIT_OK
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_OK and out["missing"] == 0 and out["files"] == []
    assert out["tables"][0]["state"] == "ok" and out["tables"][0]["checked"] is True
    assert run_cli(["reconcile", "--table", table_uri, "--routes", "r.toml"]) == EXIT_USAGE
    assert run_cli(["reconcile"]) == EXIT_USAGE
    missing_ledger = f"sqlite:///{tmp_path / 'nope.sqlite'}"
    assert run_cli(["reconcile", "--table", table_uri, "--ledger", missing_ledger]) == EXIT_USAGE


def test_a_table_without_lineage_is_reported_as_not_checked(landing, table_uri, tmp_path,
                                                           capsys):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    write_parquet(landing / "a.parquet", 0)
    assert run_cli(["run", str(landing), "--table", table_uri, "--ledger", ledger,
                    "--no-lineage"]) == EXIT_OK
    code, out = cli(capsys, "reconcile", "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE and out["unchecked"] == [table_key(table_uri)]
    assert "lineage" in out["tables"][0]["reason"]


def test_a_table_forgetting_txn_ids_sooner_than_configured_is_refused(landing, table_uri,
                                                                     tmp_path):
    """Row 4: a shorter `delta.setTransactionRetentionDuration`, a checkpoint, a lost ledger row."""
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    a = write_parquet(landing / "a.parquet", 0)
    write_parquet(landing / "b.parquet", 10)
    with IdempotentIngestor(table=table_uri, ledger=ledger) as ing:  # txn_retention: 7 days
        assert ing.ingest_directory(str(landing)).ingested == 2
    table = DeltaTable(table_uri)
    table.alter.set_table_properties({"delta.setTransactionRetentionDuration": "interval 1 second"})
    time.sleep(1.3)
    DeltaTable(table_uri).create_checkpoint()
    assert DeltaTable(table_uri).transaction_version("ingest-" + sha(a)) is None  # expired
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:  # a's row is lost
        conn.execute("DELETE FROM files WHERE sha256 = ?", (sha(a),))

    with IdempotentIngestor(table=table_uri, ledger=ledger) as ing:
        with pytest.raises(TxnRetentionError, match="setTransactionRetentionDuration"):
            ing.ingest_directory(str(landing))
        assert ing.ledger.get(ing.table_key, sha(a)) is None  # nothing claimed
    assert id_counts(table_uri) == once(0, 10)
    assert run_cli(["run", str(landing), "--table", table_uri, "--ledger", ledger]) == EXIT_USAGE
    assert id_counts(table_uri) == once(0, 10)


def test_show_no_longer_says_the_ledger_agrees_when_the_rows_are_gone(landing, table_uri,
                                                                      tmp_path, capsys):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    _, b, _ = three_commits(landing, table_uri, ledger)
    code, out = cli(capsys, "show", sha(b), "--table", table_uri, "--ledger", ledger)
    assert code == EXIT_OK and out["files"][0]["delta"]["agrees"] is True
    DeltaTable(table_uri).restore(0)
    code, out = cli(capsys, "show", sha(b), "--table", table_uri, "--ledger", ledger)
    delta = out["files"][0]["delta"]
    assert code == EXIT_FILES_NOT_DONE and delta["agrees"] is False and delta["in_log"] is True
    assert "ingest reconcile" in delta["lost"]


def test_maintain_refuses_to_checkpoint_a_table_forgetting_txn_ids_too_soon(landing, table_uri,
                                                                            capsys):
    write_parquet(landing / "a.parquet", 0)
    assert run_cli(["run", str(landing), "--table", table_uri]) == EXIT_OK
    DeltaTable(table_uri).alter.set_table_properties(
        {"delta.setTransactionRetentionDuration": "interval 1 hour"})
    capsys.readouterr()
    assert run_cli(["maintain", "--table", table_uri, "--checkpoint"]) == EXIT_USAGE
    assert "INGEST_TXN_RETENTION" in capsys.readouterr().err
    assert not (Path(table_uri) / "_delta_log" / "_last_checkpoint").exists()


def test_a_reopened_file_goes_round_the_group_commit_on_the_event_path_once(landing, table_uri,
                                                                          tmp_path, capsys):
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    _, b, _ = three_commits(landing, table_uri, ledger)
    DeltaTable(table_uri).restore(0)
    with IdempotentIngestor(table=table_uri, ledger=ledger) as ing:
        assert ing.ledger.reopen(ing.table_key, sha(b), "test") is not None
        file = ing.list_sources([str(b)])[0]
        assert ing.ingest_one(file).status == "ingested"
        assert ing.ingest_one(file).status == "skipped"
        assert ing.ledger.get(ing.table_key, sha(b)).generation == 1  # type: ignore[union-attr]
    assert id_counts(table_uri) == once(0, 10)


def test_reconcile_with_routes_checks_every_table_of_the_shared_ledger(tmp_path, landing, capsys):
    lake = tmp_path / "lake"
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "{{region}}/*.parquet"\ntable = "{lake}/{{region}}"\n')
    ledger = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    eu = []
    for name, start in [("eu/a", 0), ("us/c", 20), ("eu/b", 10)]:  # one commit each
        path = write_parquet(landing / f"{name}.parquet", start)
        eu += [path] if name.startswith("eu") else []
        assert run_cli(["run", str(landing), "--routes", str(routes), "--ledger", ledger]) == 0
    DeltaTable(f"{lake}/eu").restore(0)

    code, out = cli(capsys, "reconcile", "--routes", str(routes), "--ledger", ledger)
    assert code == EXIT_FILES_NOT_DONE and out["missing"] == 1
    assert out["files"][0]["sha256"] == sha(eu[1])
    assert sorted(t["state"] for t in out["tables"]) == ["missing", "ok"]
    code, out = cli(capsys, "reconcile", "--routes", str(routes), "--ledger", ledger, "--apply")
    assert code == EXIT_OK and out["reopened"] == 1
    # a local file re-driven by its path alone is routed by its name, which matches no route
    # here: replaying the landing folder ingests the reopened file (the others are skips)
    code, out = cli(capsys, "replay", str(landing), "--routes", str(routes), "--ledger", ledger)
    assert code == EXIT_OK and (out["ingested"], out["skipped"]) == (1, 2)
    assert id_counts(f"{lake}/eu") == once(0, 10) and id_counts(f"{lake}/us") == once(20)
    assert cli(capsys, "reconcile", "--routes", str(routes), "--ledger", ledger)[0] == EXIT_OK
