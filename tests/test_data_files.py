"""Large files written as parquet by pyarrow and committed by delta-rs: same table, same guard."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from exactly_once import log_commits
from helpers import id_counts, read_table, write_parquet

from ingest_core import IdempotentIngestor
from ingest_core.delta import DeltaTarget, FileEntry, app_id, data_files
from ingest_core.delta.data_files import file_stats, writable, write_files
from ingest_core.ledger import open_ledger

STREAM = 1  # stream_bytes: every file takes the streaming path


def test_a_streamed_file_is_written_by_pyarrow_and_committed_with_its_txn(
    landing: Path, table_uri: str, tmp_path: Path
):
    path = write_parquet(landing / "big.parquet", start=0, rows=50_000)
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with IdempotentIngestor(table=table_uri, ledger=ledger, stream_bytes=STREAM) as ing:
        result = ing.ingest_file(str(path))
        again = ing.ingest_file(str(path))
    assert result.status == "ingested" and result.rows == 50_000
    assert again.status == "skipped"
    assert sorted(id_counts(table_uri)) == list(range(50_000))
    actions = [a for commit in log_commits(table_uri).values() for a in commit]
    # pyarrow's writer: a commit of add actions, not delta-rs's WRITE
    assert any(a.get("commitInfo", {}).get("operation") == "CREATE TABLE" for a in actions)
    [add] = [a["add"] for a in actions if "add" in a]
    assert json.loads(add["stats"])["numRecords"] == 50_000
    table = DeltaTable(table_uri)
    assert table.transaction_version(app_id(result.sha256 or "")) == 1
    opened = open_ledger(ledger)
    [row] = opened.records()
    opened.close()
    assert row.delta_version == result.delta_version == 0
    lineage = read_table(table_uri).select(["_ingest_file", "_ingest_sha256"]).to_pylist()
    assert set(map(tuple, (r.values() for r in lineage))) == {(str(path), result.sha256)}


def test_appends_find_their_own_version_and_rows(landing: Path, table_uri: str):
    paths = [write_parquet(landing / f"f{i}.parquet", start=i * 100, rows=100) for i in range(3)]
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM) as ing:
        results = [ing.ingest_file(str(p)) for p in paths]
    assert [r.delta_version for r in results] == [0, 1, 2]
    target = DeltaTarget(table_uri)
    table = target.snapshot()
    assert table is not None
    landing_of_last = target.locate(table, results[-1].sha256 or "")
    assert (landing_of_last.version, landing_of_last.rows) == (2, 100)


def test_rows_are_cut_into_row_groups_and_files(
    landing: Path, table_uri: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(data_files, "ROW_GROUP_ROWS", 10_000)
    monkeypatch.setattr(data_files, "FILE_BYTES", 50_000)
    path = write_parquet(landing / "big.parquet", start=0, rows=60_000)
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM) as ing:
        assert ing.ingest_file(str(path)).status == "ingested"
    files = DeltaTable(table_uri).file_uris()
    assert len(files) > 1
    groups = [pq.ParquetFile(f).metadata for f in files]
    assert all(g.row_group(i).num_rows <= 10_000 for g in groups for i in range(g.num_row_groups))
    assert sorted(id_counts(table_uri)) == list(range(60_000))


def test_an_empty_file_commits_its_txn_and_no_data_file(landing: Path, table_uri: str):
    write_parquet(landing / "seed.parquet", start=0, rows=1)
    empty = landing / "empty.parquet"
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), empty)
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM) as ing:
        ing.ingest_file(str(landing / "seed.parquet"))
        result = ing.ingest_file(str(empty))
    assert result.status == "ingested" and result.rows == 0
    assert DeltaTable(table_uri).transaction_version(app_id(result.sha256 or "")) == 1
    assert len(DeltaTable(table_uri).file_uris()) == 1


def test_stats_let_readers_skip_files_without_losing_rows(landing: Path, table_uri: str):
    moments = [datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC),
               datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)]
    pq.write_table(pa.table({"id": [1, 2], "at": moments}), landing / "a.parquet")
    pq.write_table(pa.table({"id": [10, 11], "at": moments}), landing / "b.parquet")
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM, lineage=False) as ing:
        ing.ingest_directory(str(landing))
    dataset = DeltaTable(table_uri).to_pyarrow_dataset()
    assert len(list(dataset.get_fragments(filter=pc.field("id") > 5))) == 1  # stats are used
    for instant, ids in zip(moments, ([1, 10], [2, 11]), strict=True):
        # the maximum is stored cut to the ms: still no file holding it is skipped
        got = dataset.to_table(filter=pc.field("at") == pa.scalar(instant))
        assert sorted(got.column("id").to_pylist()) == ids


def test_file_stats_follow_delta_forms(tmp_path: Path):
    path = tmp_path / "f.parquet"
    pq.write_table(
        pa.table({
            "i": pa.array([3, None, -1], pa.int32()),
            "f": [float("nan"), 2.5, None],
            "s": ["b", "a", None],
            "long": ["x" * 40, "y", "z"],
            "d": pa.array([Decimal("1.50"), Decimal("-2.25"), None], pa.decimal128(5, 2)),
            "day": [date(2026, 3, 1), None, date(2025, 1, 2)],
            "at": [datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC), None, None],
            "flag": [True, False, None],
            "raw": [b"a", None, b"b"],
            "nested": [{"x": 1}, None, {"x": 2}],
        }),
        path,
    )
    stats = json.loads(file_stats(pq.read_metadata(path)))
    assert stats["numRecords"] == 3
    assert stats["minValues"] == {
        "i": -1, "f": 2.5, "s": "a", "d": -2.25, "day": "2025-01-02",
        "at": "2026-01-01T00:00:00.000Z",
    }
    assert stats["maxValues"] == {
        "i": 3, "f": 2.5, "s": "b", "d": 1.5, "day": "2026-03-01",
        "at": "2026-01-01T00:00:00.000Z",  # cut to the ms, as delta-rs writes it
    }
    assert stats["nullCount"] == {
        "i": 1, "f": 1, "s": 1, "long": 0, "d": 1, "day": 1, "at": 2, "flag": 1, "raw": 1,
    }


@pytest.mark.parametrize(
    ("schema", "partition_by"),
    [
        (pa.schema([("id", pa.int64())]), ("id",)),
        (pa.schema([("tags", pa.list_(pa.string()))]), ()),
        (pa.schema([("at", pa.timestamp("ns", tz="UTC"))]), ()),
        (pa.schema([("at", pa.timestamp("us"))]), ()),
    ],
)
def test_what_pyarrow_would_write_differently_is_left_to_delta_rs(
    schema: pa.Schema, partition_by: tuple[str, ...]
):
    assert not writable(None, schema, partition_by)


def test_a_table_to_append_to_must_match_exactly(tmp_path: Path):
    uri = str(tmp_path / "t")
    write_deltalake(uri, pa.table({"id": pa.array([1], pa.int64()), "name": ["a"]}))
    table = DeltaTable(uri)
    same = pa.schema([("id", pa.int64()), ("name", pa.dictionary(pa.int32(), pa.string()))])
    assert writable(table, same, ())
    assert not writable(table, same.append(pa.field("new", pa.int64())), ())  # merge
    assert not writable(table, pa.schema([("id", pa.int32()), ("name", pa.string())]), ())
    parted = str(tmp_path / "p")
    write_deltalake(parted, pa.table({"id": [1], "name": ["a"]}), partition_by=["name"])
    assert not writable(DeltaTable(parted), same, ())


def test_a_new_column_in_a_streamed_file_goes_through_delta_rs(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0, rows=10)
    pq.write_table(pa.table({"id": [100], "extra": ["x"]}), landing / "b.parquet")
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM) as ing:
        stats = ing.ingest_directory(str(landing))
    assert stats.ingested == 2
    table = read_table(table_uri)
    assert "extra" in table.column_names and table.num_rows == 11


def test_a_commit_from_a_stale_snapshot_fails_when_the_txn_landed_meanwhile(tmp_path: Path):
    uri = str(tmp_path / "t")
    schema = pa.schema([("id", pa.int64())])
    entry = [FileEntry("c" * 64, "p", 1)]

    def files() -> list:
        return write_files(Path(uri), [pa.record_batch([pa.array([7])], schema=schema)], schema)

    first, rival = DeltaTarget(uri), DeltaTarget(uri)
    assert first.snapshot() is None and rival.snapshot() is None
    assert first.commit_files(None, files(), schema, entry) == 0
    with pytest.raises(CommitFailedError, match="created meanwhile"):
        rival.commit_files(None, files(), schema, entry)
    stale, fresh = DeltaTarget(uri), DeltaTarget(uri)
    stale_table, fresh_table = stale.snapshot(), fresh.snapshot()
    other = [FileEntry("d" * 64, "q", 1)]
    assert fresh.commit_files(fresh_table, files(), schema, other) == 1
    with pytest.raises(CommitFailedError):
        stale.commit_files(stale_table, files(), schema, other)
    assert sorted(id_counts(uri).elements()) == [7, 7]


# -- parquet committed as it is (no lineage, no transform, the table's columns) ---------


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_parquet_file_needing_no_rewrite_is_committed_byte_for_byte(
    landing: Path, table_uri: str
):
    first = write_parquet(landing / "a.parquet", start=0, rows=1_000)
    second = write_parquet(landing / "b.parquet", start=1_000, rows=1_000)
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM, lineage=False) as ing:
        results = [ing.ingest_file(str(p)) for p in (first, second, first)]
    assert [r.status for r in results] == ["ingested", "ingested", "skipped"]
    assert [r.rows for r in results[:2]] == [1_000, 1_000]
    assert sorted(_sha(f) for f in DeltaTable(table_uri).file_uris()) == sorted(
        [_sha(first), _sha(second)]
    )
    assert sorted(id_counts(table_uri)) == list(range(2_000))
    assert DeltaTable(table_uri).transaction_version(app_id(results[1].sha256 or "")) == 1


def test_a_file_whose_columns_differ_from_the_table_is_rewritten(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0, rows=10)
    narrow = landing / "narrow.parquet"
    pq.write_table(pa.table({"id": pa.array([50, 51], pa.int32())}), narrow)
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM, lineage=False) as ing:
        ing.ingest_file(str(landing / "a.parquet"))
        assert ing.ingest_file(str(narrow)).status == "ingested"
    assert _sha(narrow) not in {_sha(f) for f in DeltaTable(table_uri).file_uris()}
    assert read_table(table_uri).schema.field("id").type == pa.int64()
    assert sorted(id_counts(table_uri))[-2:] == [50, 51]


def test_with_lineage_or_gzip_the_file_is_rewritten(landing: Path, table_uri: str, tmp_path: Path):
    plain = write_parquet(landing / "a.parquet", start=0, rows=10)
    zipped = landing / "b.parquet.gz"
    zipped.write_bytes(gzip.compress(write_parquet(tmp_path / "b.parquet", 10, 10).read_bytes()))
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM) as ing:
        ing.ingest_file(str(plain))
    with IdempotentIngestor(table=table_uri + "2", stream_bytes=STREAM, lineage=False) as ing:
        assert ing.ingest_file(str(zipped)).status == "ingested"
    for uri in (table_uri, table_uri + "2"):
        assert {_sha(f) for f in DeltaTable(uri).file_uris()}.isdisjoint(
            {_sha(plain), _sha(zipped)}
        )


def test_a_corrupt_page_behind_a_sound_footer_is_quarantined_not_copied(
    landing: Path, table_uri: str
):
    path = landing / "bad.parquet"
    pq.write_table(pa.table({"id": list(range(100_000))}), path, compression="snappy")
    data = bytearray(path.read_bytes())
    data[4:2_004] = bytes(2_000)  # the first page header and data; the footer is intact
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows == 100_000
    with IdempotentIngestor(table=table_uri, stream_bytes=STREAM, lineage=False) as ing:
        result = ing.ingest_file(str(path))
    assert result.status == "quarantined" and "bad.parquet" in (result.error or "")
    assert not Path(table_uri).exists() or not list(Path(table_uri).glob("*.parquet"))


def test_row_groups_are_encoded_by_two_writers_into_two_files_holding_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(data_files, "ROW_GROUP_ROWS", 1000)  # five row groups of 1,000 rows
    schema = pa.schema([("id", pa.int64())])
    batches = [pa.record_batch([pa.array(range(i, i + 500))], schema=schema)
               for i in range(0, 5000, 500)]
    actions = write_files(tmp_path / "t", iter(batches), schema)
    assert len(actions) == data_files.WRITERS == 2
    files = [pq.ParquetFile(tmp_path / "t" / a.path) for a in actions]
    assert sorted(f.metadata.num_row_groups for f in files) == [2, 3]  # alternated
    ids = sorted(i for f in files for i in f.read().column("id").to_pylist())
    assert ids == list(range(5000))
    assert sum(json.loads(a.stats)["numRecords"] for a in actions) == 5000
