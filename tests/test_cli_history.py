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
    result = run_cli("history", "--table", table_uri, "--since", "1h", "--by", "file", "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert [f["path"] for f in files] == [str(second), str(first)]
    assert {(f["status"], f["rows"]) for f in files} == {("succeeded", 3)}
    assert all(f["delta_version"] is not None and f["when"] for f in files)
    by_glob = run_cli("history", "--table", table_uri, "--path", "*/2026/*", "--by", "file",
                      "--json")
    assert [f["path"] for f in json.loads(by_glob.stdout)["files"]] == [str(first)]
    limited = run_cli("history", "--table", table_uri, "--limit", "1", "--by", "file", "--json")
    assert len(json.loads(limited.stdout)["files"]) == 1
    future = run_cli("history", "--table", table_uri, "--since", "2099-01-01", "--by", "file",
                     "--json")
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


def _json(*args: str, cwd: Path | None = None) -> dict:
    result = run_cli(*args, "--json", cwd=cwd)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_history_by_run_groups_rows_by_the_run_that_last_acted_on_them(
    landing: Path, table_uri: str
):
    write_parquet(landing / "a.parquet", start=0)
    write_parquet(landing / "b.parquet", start=10)
    first = _json("run", str(landing), "--table", table_uri)["run_id"]
    write_parquet(landing / "c.parquet", start=20, rows=5)
    (landing / "bad.parquet").write_bytes(b"not parquet")
    second = _json("run", str(landing), "--table", table_uri)["run_id"]
    runs = _json("history", "--table", table_uri)["runs"]  # by run is the default
    assert [r["run_id"] for r in runs] == [second, first]  # newest first
    newest, oldest = runs
    assert oldest["files"] == {"succeeded": 2} and oldest["rows"] == 6
    assert oldest["delta_versions"] == [0]
    assert newest["files"] == {"quarantined": 1, "succeeded": 1} and newest["rows"] == 5
    assert newest["delta_versions"] == [1]
    assert oldest["started"] <= oldest["finished"] <= newest["finished"]
    files = _json("history", "--table", table_uri, "--by", "file")["files"]
    assert {f["path"].rsplit("/", 1)[-1]: f["run_id"] for f in files} == {
        "a.parquet": first, "b.parquet": first, "c.parquet": second, "bad.parquet": second,
    }
    only_ok = _json("history", "--table", table_uri, "--state", "succeeded", "--limit", "1")
    assert [(r["run_id"], r["files"]) for r in only_ok["runs"]] == [(second, {"succeeded": 1})]
    text = run_cli("history", "--table", table_uri)
    assert text.returncode == 0 and first in text.stdout and "2 runs" in text.stdout


def test_rows_of_an_older_ledger_group_under_no_run_id(landing: Path, table_uri: str):
    import sqlite3

    write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    with sqlite3.connect(f"{table_uri}.ledger.sqlite") as conn:  # as a v2 ledger left it
        conn.execute("UPDATE files SET run_id = NULL")
    [run] = _json("history", "--table", table_uri)["runs"]
    assert run["run_id"] is None and run["files"] == {"succeeded": 1}
    text = run_cli("history", "--table", table_uri)
    assert text.returncode == 0
    assert any(line.startswith("│ - ") for line in text.stdout.splitlines()), text.stdout


def test_history_with_routes_covers_every_routed_table(tmp_path: Path, landing: Path):
    lake = tmp_path / "lake"
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "orders/*.parquet"\ntable = "{lake}/orders"\n\n'
                      f'[[route]]\nmatch = "customers/*.parquet"\ntable = "{lake}/customers"\n')
    write_parquet(landing / "orders" / "a.parquet", start=0)
    write_parquet(landing / "customers" / "b.parquet", start=10)
    write_parquet(landing / "stray" / "c.parquet", start=20)
    run_id = _json("run", str(landing), "--routes", str(routes))["run_id"]
    [run] = _json("history", "--routes", str(routes))["runs"]
    assert run["run_id"] == run_id
    assert run["files"] == {"quarantined": 1, "succeeded": 2}
    assert run["tables"] == sorted([f"{lake}/orders", f"{lake}/customers", "unrouted:"])
    files = _json("history", "--routes", str(routes), "--by", "file")["files"]
    assert {f["path"].rsplit("/", 1)[-1]: f["table"] for f in files} == {
        "a.parquet": f"{lake}/orders", "b.parquet": f"{lake}/customers", "c.parquet": "unrouted:",
    }
    both = run_cli("history", "--routes", str(routes), "--table", f"{lake}/orders")
    assert both.returncode == 2 and "not both" in both.stderr
