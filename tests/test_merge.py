"""Merge mode: each file upserted on its keys in one guarded commit (issue 18).

Real local Delta tables and SQLite ledgers. The crash matrix and the races in
merge mode are in `test_crash_points.py` and `test_races.py`; the model of
"last version of each key" under any redelivery order in `test_merge_model.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from ingest_core import IdempotentIngestor
from ingest_core.cli import EXIT_OK, EXIT_USAGE, run_cli
from ingest_core.config import from_env
from ingest_core.delta import app_id
from ingest_core.delta.writers import MergeUpsert, qualified
from ingest_core.errors import ConfigurationError
from ingest_core.routing import check_routes
from ingest_core.sources import SourceFile

MERGE = {"mode": "merge", "merge_keys": ("id",)}
UPSERT = {**MERGE, "merge_sequence": "seq", "merge_delete_when": "op = 'D'"}


@pytest.fixture(autouse=True)
def _no_ingest_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)


def feed(path: Path, rows: list[tuple[int, str, int, str]]) -> str:
    """A change-feed file: (id, value, seq, op) rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids, values, seqs, ops = zip(*rows, strict=True) if rows else ((), (), (), ())
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array(values, pa.string()),
                             "seq": pa.array(seqs, pa.int64()), "op": pa.array(ops, pa.string())}),
                   path)
    return str(path)


def stored(table_uri: str) -> dict[int, tuple[str, int, str]]:
    """id -> (value, seq, file name of the last writer)."""
    rows = DeltaTable(table_uri).to_pyarrow_table().to_pylist()
    assert len({r["id"] for r in rows}) == len(rows), "a key is stored twice"
    return {r["id"]: (r["v"], r["seq"], Path(r["_ingest_file"]).name) for r in rows}


def test_upserts_replace_by_sequence_delete_on_the_condition_and_keep_the_last_writer(
    landing: Path, table_uri: str
):
    f1 = feed(landing / "f1.parquet", [(1, "a", 1, "I"), (2, "b", 1, "I"), (3, "c", 1, "I"),
                                       (1, "a-old", 0, "I")])
    f2 = feed(landing / "f2.parquet", [(2, "B", 2, "U"), (3, "stale", 0, "U"), (4, "gone", 2, "D")])
    f3 = feed(landing / "f3.parquet", [(1, "deleted", 3, "D"), (5, "e", 1, "I"), (5, "E", 1, "U")])
    with IdempotentIngestor(table=table_uri, **UPSERT) as ing:
        results = [ing.ingest_file(f) for f in (f1, f2, f3, f2, f1)]
    assert [r.status for r in results] == ["ingested"] * 3 + ["skipped"] * 2
    assert stored(table_uri) == {
        2: ("B", 2, "f2.parquet"),  # seq 2 >= 1: replaced; lineage names the last writer
        3: ("c", 1, "f1.parquet"),  # seq 0 < 1: the stored row stays
        5: ("E", 1, "f3.parquet"),  # same key twice in one file, same seq: the last wins
    }  # 1 deleted by f3 (seq 3); 4 was a delete of a key never stored: not inserted
    versions = [r.delta_version for r in results[:3]]
    assert versions == sorted(versions) and len(set(versions)) == 3  # one commit per file


def test_without_a_sequence_the_file_merged_last_wins_and_within_a_file_the_last_row(
    landing: Path, table_uri: str
):
    feed(landing / "f1.parquet", [(1, "a", 9, "I"), (1, "a2", 0, "I"), (2, "b", 0, "I")])
    feed(landing / "f2.parquet", [(2, "b2", 0, "I")])
    with IdempotentIngestor(table=table_uri, **MERGE, batch_files=10) as ing:
        stats = ing.ingest_directory(str(landing))
    assert stats.counts["ingested"] == 2
    assert stored(table_uri) == {1: ("a2", 0, "f1.parquet"), 2: ("b2", 0, "f2.parquet")}
    commits = [json.loads(h["ingest.files"]) for h in DeltaTable(table_uri).history()
               if h.get("ingest.files") not in (None, "[]")]
    assert [len(c) for c in commits] == [1, 1]  # batched run, still one file per commit


def test_a_file_with_a_null_key_or_no_key_column_is_quarantined_with_the_next_step(
    landing: Path, table_uri: str
):
    null_key = landing / "null.parquet"
    pq.write_table(pa.table({"id": pa.array([1, None], pa.int64()), "v": ["a", "b"]}), null_key)
    no_key = landing / "nokey.parquet"
    pq.write_table(pa.table({"other": [1]}), no_key)
    with IdempotentIngestor(table=table_uri, **MERGE) as ing:
        first = ing.ingest_file(str(null_key))
        second = ing.ingest_file(str(no_key))
    assert first.status == second.status == "quarantined"
    assert "merge key id is null in 1 rows" in (first.error or "")
    assert "quarantine release" in (first.error or "")
    assert "no column id" in (second.error or "")


def test_the_event_path_merges_each_file_in_a_commit_of_its_own(landing: Path, table_uri: str):
    paths = [feed(landing / f"e{i}.parquet", [(i % 3, f"v{i}", i, "U")]) for i in range(6)]
    with IdempotentIngestor(table=table_uri, **UPSERT) as ing:
        ing.ingest_file(paths[0])  # the table exists: the group commit would take the rest

        def one(path: str) -> None:
            ing.ingest_one(SourceFile(uri=path, relative=Path(path).name))

        threads = [threading.Thread(target=one, args=(p,)) for p in paths[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.status for r in ing.ledger.records(table=ing.table)} == {"succeeded"}
    assert stored(table_uri) == {0: ("v3", 3, "e3.parquet"), 1: ("v4", 4, "e4.parquet"),
                                 2: ("v5", 5, "e5.parquet")}
    log = DeltaTable(table_uri)
    shas = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    # every file in a commit of its own, the ones whose rows were all older too
    assert all(log.transaction_version(app_id(sha)) == 1 for sha in shas)
    assert log.version() == 6  # the empty table, then one commit per file


def test_a_merge_from_a_snapshot_another_merge_of_the_same_file_moved_past_fails(
    table_uri: str,
):
    """The guard the design relies on, for MERGE: check and write on one snapshot object."""
    from deltalake.exceptions import CommitFailedError

    from ingest_core.delta import DeltaTarget, FileEntry

    seed = pa.table({"id": pa.array([1], pa.int64()), "v": ["a"]})
    DeltaTarget(table_uri).append(None, seed, [], merge_schema=True)
    rows = pa.table({"id": pa.array([2], pa.int64()), "v": ["b"]})
    entry = FileEntry("ab" * 32, "f.parquet", 1)
    first, second = DeltaTarget(table_uri), DeltaTarget(table_uri)
    early, late = first.snapshot(), second.snapshot()
    assert not first.has_landed(early, entry.sha256) and not second.has_landed(late, entry.sha256)
    MergeUpsert(("id",)).write(first, early, entry, rows)
    with pytest.raises(CommitFailedError):
        MergeUpsert(("id",)).write(second, late, entry, rows)
    assert DeltaTable(table_uri).to_pyarrow_table().num_rows == 2


def test_the_cli_and_the_environment_take_the_merge_settings(
    landing: Path, table_uri: str, capsys: pytest.CaptureFixture[str]
):
    feed(landing / "f1.parquet", [(1, "a", 1, "I"), (2, "b", 1, "I")])
    feed(landing / "f2.parquet", [(1, "x", 2, "D")])
    code = run_cli(["run", str(landing), "--table", table_uri, "--mode", "merge",
                    "--merge-keys", "id", "--merge-sequence", "seq",
                    "--merge-delete-when", "op = 'D'", "--json"])
    assert code == EXIT_OK
    assert stored(table_uri) == {2: ("b", 1, "f1.parquet")}
    assert run_cli(["run", str(landing), "--table", table_uri, "--mode", "merge"]) == EXIT_USAGE
    assert "--merge-keys" in capsys.readouterr().err
    env = {"INGEST_TABLE_URI": table_uri, "INGEST_MODE": "merge", "INGEST_MERGE_KEYS": "a, b",
           "INGEST_MERGE_SEQUENCE": "ts", "INGEST_MERGE_DELETE_WHEN": "op = 'D'"}
    config = from_env(env)
    assert (config.mode, config.merge_keys, config.merge_sequence, config.merge_delete_when) == (
        "merge", ("a", "b"), "ts", "op = 'D'")
    hash(config)  # a plan groups files by config
    with pytest.raises(ConfigurationError, match="--mode merge"):
        from_env({"INGEST_TABLE_URI": table_uri, "INGEST_MERGE_KEYS": "a"})


def test_routes_carry_the_merge_settings_and_check_them(
    landing: Path, tmp_path: Path
):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[[route]]\nmatch = "cdc/*.parquet"\n'
        f'table = "{tmp_path / "lake" / "cdc"}"\n'
        'mode = "merge"\nmerge_keys = ["id"]\nmerge_sequence = "seq"\n'
        'merge_delete_when = "op = \'D\'"\n'
        '[[route]]\nmatch = "log/*.parquet"\n'
        f'table = "{tmp_path / "lake" / "log"}"\n'
    )
    feed(landing / "cdc" / "1.parquet", [(1, "a", 1, "I"), (2, "b", 1, "I")])
    feed(landing / "cdc" / "2.parquet", [(1, "a2", 2, "U"), (2, "", 2, "D")])
    feed(landing / "log" / "1.parquet", [(1, "a", 1, "I")])
    feed(landing / "log" / "2.parquet", [(1, "a", 2, "I")])
    assert run_cli(["run", str(landing), "--routes", str(routes)]) == EXIT_OK
    assert stored(str(tmp_path / "lake" / "cdc")) == {1: ("a2", 2, "2.parquet")}
    assert DeltaTable(str(tmp_path / "lake" / "log")).to_pyarrow_table().num_rows == 2
    _, problems = check_routes(
        '[[route]]\nmatch = "a/*"\ntable = "./t"\nmode = "merge"\n'
        '[[route]]\nmatch = "b/*"\ntable = "./u"\nmerge_sequence = "seq"\n'
        '[[route]]\nmatch = "c/*"\ntable = "./v"\nmode = "upsert"\n'
    )
    messages = [p.describe("routes.toml") for p in problems]
    assert messages == [
        'routes.toml:4: route 1: mode "merge" needs merge_keys, as merge_keys = ["order_id"]',
        'routes.toml:8: route 2: merge_sequence goes with mode = "merge"; add it',
        "routes.toml:12: route 3: mode 'upsert': use append or merge",
    ]


def test_the_delete_condition_reads_the_incoming_row_and_leaves_quotes_alone():
    columns = ["op", "Kind", "id"]
    assert qualified("op = 'D'", columns) == "s.\"op\" = 'D'"
    assert qualified("op = 'op' OR t.op IS NULL", columns) == "s.\"op\" = 'op' OR t.op IS NULL"
    assert qualified('"Kind" IN (\'x\') AND other = 1', columns) == (
        "s.\"Kind\" IN ('x') AND other = 1")


@pytest.mark.slow
def test_merging_a_large_file_reads_it_whole_into_one_commit(landing: Path, table_uri: str):
    n = 200_000
    pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()),
                             "v": pa.array([str(i) for i in range(n)])}), landing / "big.parquet")
    pq.write_table(pa.table({"id": pa.array(range(0, n, 2), pa.int64()),
                             "v": pa.array(["even"] * (n // 2))}), landing / "evens.parquet")
    started = time.monotonic()
    with IdempotentIngestor(table=table_uri, **MERGE, stream_bytes=1) as ing:
        stats = ing.ingest_directory(str(landing))
    assert stats.counts["ingested"] == 2, [r.error for r in stats.files]
    data = DeltaTable(table_uri).to_pyarrow_table(columns=["id", "v"])
    assert data.num_rows == n
    assert data.filter(pa.compute.equal(data["v"], "even")).num_rows == n // 2
    assert time.monotonic() - started < 60


@pytest.mark.azurite
def test_merge_into_a_table_on_azurite_with_the_azure_table_ledger(
    azurite: str, unique_name: str, landing: Path
):
    from azure.storage.blob import BlobServiceClient

    from ingest_core import StorageConfig
    from ingest_core.azure.auth import delta_storage_options

    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(unique_name)
    try:
        table = f"abfs://{unique_name}/cdc"
        storage = StorageConfig(connection_string=azurite)
        f1 = feed(landing / "f1.parquet", [(1, "a", 1, "I"), (2, "b", 1, "I")])
        f2 = feed(landing / "f2.parquet", [(1, "A", 2, "U"), (2, "", 2, "D"), (3, "c", 1, "I")])
        with IdempotentIngestor(table=table, ledger=f"azure-table://{unique_name}ledger",
                                storage=storage, **UPSERT) as ing:
            statuses = [ing.ingest_file(f).status for f in (f2, f1, f2)]
        assert statuses == ["ingested", "ingested", "skipped"]
        rows = DeltaTable(table, storage_options=delta_storage_options(table, storage))
        got = {r["id"]: r["v"] for r in rows.to_pyarrow_table(columns=["id", "v"]).to_pylist()}
        # f2 came first: f1's older version of 1 does not replace it, but 2, deleted before
        # it was ever stored, is inserted by f1: a delete leaves no tombstone
        assert got == {1: "A", 2: "b", 3: "c"}
    finally:
        service.delete_container(unique_name)


def test_workers_do_not_reorder_merges_the_files_go_in_listing_order(
    landing: Path, table_uri: str
):
    for i in range(4):
        feed(landing / f"f{i}.parquet", [(1, f"v{i}", 0, "U")])
    assert run_cli(["run", str(landing), "--table", table_uri, "--workers", "2",
                    "--mode", "merge", "--merge-keys", "id"]) == EXIT_OK
    assert stored(table_uri) == {1: ("v3", 0, "f3.parquet")}
