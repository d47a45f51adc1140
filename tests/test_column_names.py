"""Column names Delta Lake cannot keep apart (issue 13, row 15).

Delta Lake column names are case-insensitive. A CSV header `a,a,b`, columns
differing only in case (`Id,ID`), or a column differing only in case from the
table's are the file's problem: quarantined at once with a message naming the
columns and the fix, never a transient `failed` with delta-rs's text; the
other files of the run go in.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_table, write_parquet, write_text

from ingest_core import IdempotentIngestor


@pytest.mark.parametrize(
    "options", [{}, {"stream_bytes": 1}, {"stream_bytes": 1, "lineage": False}],
    ids=["read-whole", "streamed", "as-is"],
)
def test_duplicate_and_case_only_columns_are_quarantined(tmp_path: Path, options: dict) -> None:
    landing = tmp_path / "landing"
    write_text(landing / "dup.csv", "a,a,b\n1,2,3\n")
    write_text(landing / "case.csv", "Id,ID\n1,2\n")
    landing.mkdir(exist_ok=True)
    pq.write_table(pa.table({"x": [1], "X": [2]}), landing / "case.parquet")
    write_parquet(landing / "good.parquet", 0, 3)
    table = str(tmp_path / "lake" / "orders")
    with IdempotentIngestor(table=table, **options) as ing:
        results = {Path(r.path).name: r for r in ing.ingest_directory(str(landing)).files}
        rows = {Path(r.path).name: r for r in ing.ledger.records()}
    assert results["good.parquet"].status == "ingested"
    for name in ("dup.csv", "case.csv", "case.parquet"):
        assert results[name].status == "quarantined", results[name]
        assert rows[name].status == "quarantined" and rows[name].attempt == 1
        assert "Schema error" not in (results[name].error or "")
        assert name in (results[name].error or "")
    assert "'a' appears twice" in (results["dup.csv"].error or "")
    assert "'Id' and 'ID' differ only in case" in (results["case.csv"].error or "")
    assert "'x' and 'X' differ only in case" in (results["case.parquet"].error or "")
    assert "rename" in (results["case.parquet"].error or "")
    assert read_table(table).num_rows == 3


def test_a_column_differing_from_the_tables_only_in_case_is_quarantined(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    table = str(tmp_path / "lake" / "orders")
    write_text(landing / "first.csv", "id,amount\n1,2.5\n")
    with IdempotentIngestor(table=table) as ing:
        assert ing.ingest_file(str(landing / "first.csv")).status == "ingested"
        write_text(landing / "second.csv", "ID,amount\n2,3.5\n")
        result = ing.ingest_file(str(landing / "second.csv"))
    assert result.status == "quarantined"
    assert "'ID' (the table has 'id')" in (result.error or "")
    assert "spell it as the table does" in (result.error or "")
