"""The `ingest` command line contract: flags, JSON shape, exit statuses, status listing."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli, write_parquet, write_text


def test_run_json_reports_counts_rows_and_files(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    write_text(landing / "b.csv", "id,amount\n9,1.0\n")
    result = run_cli("run", str(landing), "--table", table_uri, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("ingested", "skipped", "failed", "quarantined", "in_progress", "rows"):
        assert isinstance(report[key], int)
    assert (report["ingested"], report["rows"]) == (2, 4)
    assert {f["status"] for f in report["files"]} == {"ingested"}
    assert set(report["files"][0]) >= {"path", "sha256", "status", "rows", "error"}


def test_default_ledger_is_a_sqlite_file_beside_the_table(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    assert Path(table_uri + ".ledger.sqlite").is_file()


def test_exit_status_is_1_when_a_file_is_quarantined(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    (landing / "bad.parquet").write_bytes(b"PAR1 nope")
    result = run_cli("run", str(landing), "--table", table_uri, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["quarantined"] == 1


def test_human_output_names_the_problem_file(landing: Path, table_uri: str):
    (landing / "bad.parquet").write_bytes(b"PAR1 nope")
    result = run_cli("run", str(landing), "--table", table_uri)
    assert result.returncode == 1
    assert "bad.parquet" in result.stderr and "1 quarantined" in result.stdout


def test_usage_errors_exit_2_without_traceback(landing: Path, tmp_path: Path):
    a_file = write_text(tmp_path / "not_a_table", "x")
    cases = [
        ("run", str(landing)),  # no --table
        ("run", str(landing), "--table", str(a_file)),
        ("run", str(tmp_path / "missing"), "--table", str(tmp_path / "t")),
        ("run", str(landing), "--table", str(tmp_path / "t"), "--ledger", "mysql://x"),
        ("run", str(landing), "--table", "s3://bucket/t"),
        ("run", str(landing), "--table", str(tmp_path / "t"), "--schema-mode", "loose"),
        ("run", str(landing), "--table", str(tmp_path / "t"), "--transform", "nope_mod:fn"),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert result.stderr.strip(), args


def test_unreadable_ledger_exits_2(landing: Path, tmp_path: Path):
    write_parquet(landing / "a.parquet", start=0)
    blocker = write_text(tmp_path / "blocker", "a file where a folder should be")
    result = run_cli("run", str(landing), "--table", str(tmp_path / "t"),
                     "--ledger", f"sqlite:///{blocker}/ledger.sqlite")
    assert result.returncode == 2
    assert "ledger" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t").exists()


def test_status_lists_rows_and_filters_by_state(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    (landing / "bad.parquet").write_bytes(b"PAR1 nope")
    run_cli("run", str(landing), "--table", table_uri)
    everything = json.loads(run_cli("status", "--table", table_uri, "--json").stdout)
    assert {r["status"] for r in everything} == {"succeeded", "quarantined"}
    bad = json.loads(run_cli("status", "--table", table_uri, "--state", "quarantined",
                             "--json").stdout)
    assert len(bad) == 1 and bad[0]["path"].endswith("bad.parquet") and bad[0]["error"]
    for key in ("path", "sha256", "status", "attempt", "rows", "delta_version", "error",
                "created_at", "updated_at"):
        assert key in bad[0]
    human = run_cli("status", "--table", table_uri)
    assert human.returncode == 0 and "quarantined" in human.stdout


def test_status_via_environment_ledger(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    run_cli("run", str(landing), "--table", table_uri)
    result = run_cli("status", "--json",
                     env={"INGEST_LEDGER_URI": f"sqlite:///{table_uri}.ledger.sqlite"})
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 1


def test_table_from_environment(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    result = run_cli("run", str(landing), "--json", env={"INGEST_TABLE_URI": table_uri})
    assert result.returncode == 0 and json.loads(result.stdout)["ingested"] == 1


def test_help_explains_every_run_option():
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for flag in ("--table", "--ledger", "--format", "--workers", "--transform", "--schema-mode",
                 "--no-lineage", "--json", "--lease-seconds"):
        assert flag in result.stdout


def test_exit_status_survives_reading_arrow_at_exit(landing: Path, table_uri: str):
    # Arrow's thread pools can abort a process at exit (status 134); main() must not let them
    write_parquet(landing / "a.parquet", start=0)
    for _ in range(5):
        result = run_cli("run", str(landing), "--table", table_uri, "--json")
        assert result.returncode == 0, result.stderr


def test_status_prints_brackets_in_paths_literally(landing: Path, table_uri: str):
    write_parquet(landing / "[bold]x[/bold].parquet", start=0)
    run_cli("run", str(landing), "--table", table_uri)
    human = run_cli("status", "--table", table_uri)
    assert "[bold]x[/bold].parquet" in human.stdout
