"""Large files are streamed into their own commit, in record batches."""

from __future__ import annotations

from pathlib import Path

from helpers import id_counts, read_table, write_parquet

from ingest_core import IdempotentIngestor


def test_large_parquet_is_streamed_alone_and_exactly_once(landing: Path, table_uri: str):
    write_parquet(landing / "big.parquet", start=0, rows=200_000)
    write_parquet(landing / "small.parquet", start=1_000_000, rows=3)
    with IdempotentIngestor(table=table_uri, stream_bytes=10_000) as ing:
        stats = ing.ingest_directory(str(landing))
        again = ing.ingest_directory(str(landing))
    assert stats.ingested == 2 and stats.rows == 200_003
    assert again.skipped == 2
    assert read_table(table_uri).num_rows == 200_003


def test_large_csv_with_a_bad_row_far_in_is_quarantined_and_nothing_committed(
    landing: Path, table_uri: str
):
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(700_000)] + ["oops,1,2"]
    (landing / "big.csv").write_text("\n".join(lines) + "\n")  # > one 8 MiB parse block
    write_parquet(landing / "ok.parquet", start=5_000_000)
    with IdempotentIngestor(table=table_uri, stream_bytes=1_000_000) as ing:
        stats = ing.ingest_directory(str(landing))
    by_name = {Path(r.path).name: r for r in stats.files}
    assert by_name["big.csv"].status == "quarantined"
    assert "big.csv" in (by_name["big.csv"].error or "")
    assert sorted(id_counts(table_uri)) == [5_000_000, 5_000_001, 5_000_002]


def test_file_changed_while_streamed_is_not_committed(landing: Path, table_uri: str):
    path = write_parquet(landing / "big.parquet", start=0, rows=50_000)
    from ingest_core.sources.local import LocalSource

    original_verify = LocalSource.verify

    def rewrite_then_verify(self, file, copy):
        write_parquet(path, start=900_000, rows=50_000)
        return original_verify(self, file, copy)

    LocalSource.verify = rewrite_then_verify  # type: ignore[method-assign]
    try:
        with IdempotentIngestor(table=table_uri, stream_bytes=1) as ing:
            result = ing.ingest_file(str(path))
    finally:
        LocalSource.verify = original_verify  # type: ignore[method-assign]
    assert result.status == "failed" and "changed" in (result.error or "")
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        assert DeltaTable(table_uri).to_pyarrow_table().num_rows == 0
    except TableNotFoundError:
        pass
