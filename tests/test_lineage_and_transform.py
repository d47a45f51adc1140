"""Lineage columns (on by default, switchable off) and user transforms."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import read_table, write_parquet, write_text

from ingest_core import ConfigurationError, IdempotentIngestor


def test_lineage_columns_name_the_file_and_its_hash(landing: Path, table_uri: str):
    path = write_parquet(landing / "a.parquet", start=0)
    with IdempotentIngestor(table=table_uri) as ing:
        result = ing.ingest_file(str(path))
    table = read_table(table_uri)
    assert set(table.column("_ingest_file").to_pylist()) == {str(path.resolve())}
    assert set(table.column("_ingest_sha256").to_pylist()) == {result.sha256}
    assert table.column("_ingested_at").null_count == 0
    assert pa.types.is_timestamp(table.schema.field("_ingested_at").type)


def test_lineage_can_be_switched_off(landing: Path, table_uri: str):
    path = write_parquet(landing / "a.parquet", start=0)
    with IdempotentIngestor(table=table_uri, lineage=False) as ing:
        ing.ingest_file(str(path))
    assert read_table(table_uri).column_names == ["id", "amount"]


@pytest.fixture
def transforms_module(tmp_path: Path):
    module = tmp_path / "my_transforms.py"
    module.write_text(
        "import pyarrow as pa, pyarrow.compute as pc\n"
        "def double(data):\n"
        "    table = data if isinstance(data, pa.Table) else data.read_all()\n"
        "    return table.set_column(1, 'amount', pc.multiply(table['amount'], 2))\n"
        "def batches(data):\n"
        "    for batch in (data.to_batches() if isinstance(data, pa.Table) else data):\n"
        "        yield batch.append_column('flag', pa.array([True] * batch.num_rows))\n"
        "def broken(data):\n"
        "    raise ValueError('bad input')\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "my_transforms"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("my_transforms", None)


def test_transform_returning_a_table_is_applied(landing: Path, table_uri: str, transforms_module):
    write_text(landing / "a.csv", "id,amount\n1,1.5\n")
    with IdempotentIngestor(table=table_uri, transform=f"{transforms_module}:double") as ing:
        assert ing.ingest_directory(str(landing)).ingested == 1
    assert read_table(table_uri).column("amount").to_pylist() == [3.0]


def test_transform_yielding_batches_is_applied_to_a_streamed_file(
    landing: Path, table_uri: str, transforms_module
):
    write_parquet(landing / "a.parquet", start=0, rows=5)
    with IdempotentIngestor(
        table=table_uri, transform=f"{transforms_module}:batches", stream_bytes=1
    ) as ing:
        assert ing.ingest_directory(str(landing)).ingested == 1
    assert read_table(table_uri).column("flag").to_pylist() == [True] * 5


def test_transform_that_raises_quarantines_the_file(
    landing: Path, table_uri: str, transforms_module
):
    write_text(landing / "a.csv", "id,amount\n1,1.5\n")
    with IdempotentIngestor(table=table_uri, transform=f"{transforms_module}:broken") as ing:
        stats = ing.ingest_directory(str(landing))
    assert stats.quarantined == 1
    assert "bad input" in (stats.files[0].error or "")


def test_unknown_transform_is_a_configuration_error(table_uri: str):
    with pytest.raises(ConfigurationError, match="no_such_module"):
        IdempotentIngestor(table=table_uri, transform="no_such_module:fn")
