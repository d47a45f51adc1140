"""A worker that dies after its commit on the file's last attempt (issue 13, row 6).

The takeover must look in the table before giving up: the committed rows
(transaction id, lineage) complete the row as `succeeded`; it must never
quarantine content that is already in the table, and never write it again.
When the rows are not there, the content is quarantined without a write.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from exactly_once import kill_at, ledger_uri
from helpers import id_counts, write_parquet

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.ledger import PROCESSING, QUARANTINED, SUCCEEDED

OPTIONS = {"max_attempts": 1, "lease_seconds": 1.0}


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger_kind(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    connection = request.getfixturevalue("azurite") if request.param == "azure_table" else None
    return request.param, connection


@pytest.mark.parametrize("point", ["after_commit", "after_claim"])
def test_death_on_the_last_attempt_is_settled_by_what_the_table_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_kind: tuple[str, str | None],
    unique_name: str, point: str,
) -> None:
    kind, connection = ledger_kind
    table = str(tmp_path / "lake" / "orders")
    ledger = ledger_uri(kind, tmp_path, unique_name)
    path = str(write_parquet(tmp_path / "landing" / "a.parquet", 0, 5))
    assert kill_at(point, monkeypatch, table, ledger, [path], OPTIONS, connection) == -9
    storage = StorageConfig(connection_string=connection)
    with IdempotentIngestor(table=table, ledger=ledger, storage=storage, **OPTIONS) as ing:
        [row] = ing.ledger.records()
        assert (row.status, row.attempt) == (PROCESSING, 1)  # died on its only attempt
        time.sleep(1.2)
        result = ing.ingest_file(path)
        [row] = ing.ledger.records()
    if point == "after_commit":
        assert result.status == "skipped", result.error  # found in the table, not written
        assert result.delta_version == 0 and result.rows == 5  # the commit that created it
        assert row.status == SUCCEEDED and row.rows == 5
        assert id_counts(table) == {i: 1 for i in range(5)}
    else:  # nothing was committed: attempts are exhausted, and nothing is written
        assert result.status == "quarantined"
        assert row.status == QUARANTINED and "gave up after 1 attempts" in (row.error or "")
        assert "ingest retry" in (row.error or "")
        assert not (Path(table) / "_delta_log").exists()
