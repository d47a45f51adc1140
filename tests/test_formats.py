"""Formats by extension (gzip by magic bytes), --format overrides, bad files quarantined."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import id_counts, write_parquet, write_text

from ingest_core import IdempotentIngestor


def _ingest(landing: Path, table_uri: str, **options):
    with IdempotentIngestor(table=table_uri, **options) as ing:
        return ing.ingest_directory(str(landing))


def test_parquet_csv_jsonl_and_gzip_variants_land(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=1, rows=1)
    write_text(landing / "b.csv", "id,amount\n2,2.5\n")
    write_text(landing / "c.jsonl", '{"id": 3, "amount": 3.5}\n')
    with gzip.open(landing / "d.csv.gz", "wt") as f:
        f.write("id,amount\n4,4.5\n")
    with gzip.open(landing / "e.jsonl.gz", "wt") as f:
        f.write('{"id": 5, "amount": 5.5}\n')
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": [6], "amount": [6.5]}), buffer)
    (landing / "f.parquet.gz").write_bytes(gzip.compress(buffer.getvalue().to_pybytes()))
    stats = _ingest(landing, table_uri)
    assert stats.ingested == 6, [r.error for r in stats.files]
    assert sorted(id_counts(table_uri)) == [1, 2, 3, 4, 5, 6]


def test_format_option_overrides_the_extension(landing: Path, table_uri: str):
    write_text(landing / "export.txt", "id,amount\n7,1.0\n8,2.0\n")
    stats = _ingest(landing, table_uri, format="csv")
    assert stats.ingested == 1
    assert sorted(id_counts(table_uri)) == [7, 8]


def test_unknown_extension_is_quarantined_with_advice(landing: Path, table_uri: str):
    write_text(landing / "notes.txt", "hello")
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    assert "--format" in (stats.files[0].error or "")


def test_corrupt_parquet_and_ragged_csv_are_quarantined_while_good_files_land(
    landing: Path, table_uri: str
):
    write_parquet(landing / "good.parquet", start=0)
    write_text(landing / "good.csv", "id,amount\n10,1.0\n")
    (landing / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all")
    write_text(landing / "ragged.csv", "id,amount\n11,1.0\n12,2.0,extra\n")
    stats = _ingest(landing, table_uri)
    by_name = {Path(r.path).name: r for r in stats.files}
    assert by_name["good.parquet"].status == by_name["good.csv"].status == "ingested"
    assert by_name["corrupt.parquet"].status == "quarantined"
    assert by_name["ragged.csv"].status == "quarantined"
    assert "corrupt.parquet" in (by_name["corrupt.parquet"].error or "")
    assert "Expected 2 columns" in (by_name["ragged.csv"].error or "")
    assert sorted(id_counts(table_uri)) == [0, 1, 2, 10]
    with IdempotentIngestor(table=table_uri) as ing:
        quarantined = ing.ledger.records(status="quarantined")
    assert {Path(r.path).name for r in quarantined} == {"corrupt.parquet", "ragged.csv"}
    assert all(r.error for r in quarantined)


def test_parquet_under_a_csv_name_is_refused_clearly(landing: Path, table_uri: str):
    write_parquet(landing / "orders.csv", start=0)
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    assert "bytes are parquet" in (stats.files[0].error or "")


def test_empty_file_is_quarantined(landing: Path, table_uri: str):
    (landing / "empty.csv").write_bytes(b"")
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1 and "empty" in (stats.files[0].error or "")


def test_hidden_and_marker_files_are_not_listed(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    write_text(landing / "_SUCCESS", "")
    write_text(landing / ".a.parquet.crc", "x")
    stats = _ingest(landing, table_uri)
    assert [Path(r.path).name for r in stats.files] == ["a.parquet"]


def test_non_utf8_csv_is_quarantined(landing: Path, table_uri: str):
    (landing / "latin1.csv").write_bytes("id,name\n1,caf\xe9\n".encode("latin-1"))
    stats = _ingest(landing, table_uri)
    assert stats.quarantined == 1
    assert "latin1.csv" in (stats.files[0].error or "")
