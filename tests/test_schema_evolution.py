"""The first file creates the table; new columns merge; strict refuses; lossy casts refused."""

from __future__ import annotations

from pathlib import Path

from helpers import read_table, write_text

from ingest_core import IdempotentIngestor


def _ingest_file(table_uri: str, path: Path, **options):
    with IdempotentIngestor(table=table_uri, **options) as ing:
        return ing.ingest_file(str(path))


def test_new_column_is_merged_by_default(landing: Path, table_uri: str):
    _ingest_file(table_uri, write_text(landing / "a.csv", "id,amount\n1,1.5\n"))
    result = _ingest_file(table_uri, write_text(landing / "b.csv", "id,amount,region\n2,2.5,eu\n"))
    assert result.status == "ingested"
    table = read_table(table_uri).sort_by("id")
    assert table.column("region").to_pylist() == [None, "eu"]


def test_strict_mode_quarantines_a_file_with_new_columns(landing: Path, table_uri: str):
    _ingest_file(table_uri, write_text(landing / "a.csv", "id,amount\n1,1.5\n"))
    result = _ingest_file(
        table_uri, write_text(landing / "b.csv", "id,amount,region\n2,2.5,eu\n"),
        schema_mode="strict",
    )
    assert result.status == "quarantined"
    assert "region" in (result.error or "") and "strict" in (result.error or "")
    assert read_table(table_uri).num_rows == 1


def test_strict_mode_accepts_a_file_missing_a_nullable_column(landing: Path, table_uri: str):
    _ingest_file(table_uri, write_text(landing / "a.csv", "id,amount\n1,1.5\n"))
    result = _ingest_file(table_uri, write_text(landing / "b.csv", "id\n2\n"), schema_mode="strict")
    assert result.status == "ingested"
    assert read_table(table_uri).sort_by("id").column("amount").to_pylist() == [1.5, None]


def test_values_that_would_lose_precision_are_refused_not_truncated(
    landing: Path, table_uri: str
):
    # delta-rs's own merge writes 1.5 into a long column as 1; we must refuse instead
    _ingest_file(table_uri, write_text(landing / "a.csv", "id,qty\n1,3\n"))
    result = _ingest_file(table_uri, write_text(landing / "b.csv", "id,qty\n2,1.5\n"))
    assert result.status == "quarantined"
    assert "qty" in (result.error or "")
    assert read_table(table_uri).column("qty").to_pylist() == [3]


def test_integer_values_widen_into_a_double_column(landing: Path, table_uri: str):
    _ingest_file(table_uri, write_text(landing / "a.csv", "id,amount\n1,1.5\n"))
    result = _ingest_file(table_uri, write_text(landing / "b.csv", "id,amount\n2,7\n"))
    assert result.status == "ingested"
    assert read_table(table_uri).sort_by("id").column("amount").to_pylist() == [1.5, 7.0]


def test_incompatible_file_in_a_batch_does_not_sink_the_others(landing: Path, table_uri: str):
    write_text(landing / "a.csv", "id,qty\n1,3\n")
    write_text(landing / "b.csv", "id,qty\n2,not-a-number\n")
    write_text(landing / "c.csv", "id,qty\n3,4\n")
    with IdempotentIngestor(table=table_uri) as ing:
        stats = ing.ingest_directory(str(landing))
    assert (stats.ingested, stats.quarantined) == (2, 1)
    assert sorted(read_table(table_uri).column("id").to_pylist()) == [1, 3]
