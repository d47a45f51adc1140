"""`ingest history`: ledger rows by file over a time range, read-only, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import run_cli, write_parquet

from ingest_core.errors import ConfigurationError
from ingest_core.ops.history import parse_when


def test_history_lists_files_in_the_range_newest_first_with_filters(
    landing: Path, table_uri: str
):
    first = write_parquet(landing / "2026" / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    second = write_parquet(landing / "2027" / "b.parquet", start=10)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    result = run_cli("history", "--table", table_uri, "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert [f["path"] for f in files] == [str(second), str(first)]
    assert {(f["status"], f["rows"]) for f in files} == {("succeeded", 3)}
    assert all(f["delta_version"] is not None and f["when"] for f in files)
    by_glob = run_cli("history", "--table", table_uri, "--path", "*/2026/*", "--json")
    assert [f["path"] for f in json.loads(by_glob.stdout)["files"]] == [str(first)]
    limited = run_cli("history", "--table", table_uri, "--limit", "1", "--json")
    assert len(json.loads(limited.stdout)["files"]) == 1
    future = run_cli("history", "--table", table_uri, "--since", "2099-01-01", "--json")
    assert json.loads(future.stdout) == {"files": []}


def test_history_of_a_missing_ledger_is_exit_2_and_creates_nothing(tmp_path: Path):
    result = run_cli("history", "--table", "./nope", cwd=tmp_path)
    assert result.returncode == 2 and "nope.ledger.sqlite" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_times_are_iso_or_ages():
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert parse_when("6h", now) == datetime(2026, 12, 3, 6, tzinfo=UTC)
    assert parse_when("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="not a time"):
        parse_when("yesterday", now)
