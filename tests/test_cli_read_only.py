"""Read-only commands read: they create no ledger, no -wal/-shm, and name what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli, write_parquet

from ingest_core.errors import LedgerNotFoundError
from ingest_core.ledger import open_ledger


@pytest.mark.parametrize("command", [
    ("status",), ("show", "abcdef0123"), ("show", "a.parquet"), ("quarantine", "list"),
])
def test_a_read_only_command_on_a_typo_is_exit_2_and_creates_nothing(tmp_path: Path, command):
    result = run_cli(*command, "--table", "./typo", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"no SQLite ledger at {tmp_path / 'typo.ledger.sqlite'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_reading_a_ledger_leaves_its_folder_as_it_was(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    folder = Path(table_uri).parent
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    for command in (("status",), ("quarantine", "list"), ("show", str(landing / "a.parquet"))):
        result = run_cli(*command, "--table", table_uri)
        assert result.returncode == 0, (command, result.stderr)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


def test_an_azure_table_ledger_that_does_not_exist_is_not_created(azurite, unique_name):
    from azure.data.tables import TableServiceClient

    from ingest_core.config import StorageConfig

    name = "ro" + unique_name.replace("-", "")[:20]
    with pytest.raises(LedgerNotFoundError, match=name):
        open_ledger(f"azure-table://{name}", StorageConfig(connection_string=azurite),
                    read_only=True)
    service = TableServiceClient.from_connection_string(azurite)
    assert not list(service.query_tables("TableName eq @n", parameters={"n": name}))
