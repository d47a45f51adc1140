"""Logs of the command line: JSON lines on stderr with a run id, levels from flags or variables."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from helpers import run_cli, write_parquet

from ingest_core.cli.logs import file_line
from ingest_core.results import IngestResult


def _json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_logs_have_one_ingest_file_line_per_file_with_the_run_id(
    landing: Path, table_uri: str
):
    write_parquet(landing / "a.parquet", start=0)
    write_parquet(landing / "b.parquet", start=10)
    result = run_cli("--log-format", "json", "-v", "run", str(landing), "--table", table_uri,
                     "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    lines = [line for line in _json_lines(result.stderr) if line.get("event") == "ingest_file"]
    assert len(lines) == 2 and {line["run_id"] for line in lines} == {run_id}
    for line in lines:
        assert line["status"] == "ingested" and line["rows"] == 3
        assert len(line["sha256"]) == 64 and line["delta_version"] is not None
        assert isinstance(line["duration_s"], float) and line["level"] == "INFO"


def test_log_format_and_level_come_from_the_environment_and_quiet_wins(
    landing: Path, table_uri: str
):
    write_parquet(landing / "a.parquet", start=0)
    env = {"INGEST_LOG_FORMAT": "json", "INGEST_LOG_LEVEL": "INFO"}
    result = run_cli("run", str(landing), "--table", table_uri, env=env)
    assert [line["event"] for line in _json_lines(result.stderr)] == ["ingest_file"]
    assert "run id: " in result.stderr
    write_parquet(landing / "b.parquet", start=10)
    quiet = run_cli("-q", "run", str(landing), "--table", table_uri, env=env)
    assert quiet.returncode == 0 and _json_lines(quiet.stderr) == []


def test_a_bad_log_variable_is_exit_2_naming_it():
    result = run_cli("status", env={"INGEST_LOG_FORMAT": "xml"})
    assert result.returncode == 2 and "INGEST_LOG_FORMAT" in result.stderr


def test_the_file_line_carries_every_field_the_functions_app_logs(caplog):
    from ingest_core.functions import log_result

    result = IngestResult(path="/x/a.csv", status="failed", sha256="ab" * 32, rows=None,
                          error="boom", size=3, duration_s=0.5, table="/lake/t")
    with caplog.at_level(logging.INFO):
        functions_line = log_result(result, trigger="event_grid")
    ours = file_line(result, "r1")
    assert set(functions_line) - {"trigger", "event_id"} <= set(ours)
    assert {k: ours[k] for k in set(functions_line) - {"trigger"}} == \
        {k: v for k, v in functions_line.items() if k != "trigger"}


def test_the_progress_bar_shows_files_and_rows_per_second(capsys, monkeypatch):
    import sys

    from ingest_core.cli.output import progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress(2, True) as advance:
        for _ in range(2):
            advance(IngestResult(path="x", status="ingested", rows=1000))
    err = capsys.readouterr().err
    assert "files/s" in err and "rows/s" in err and "2/2" in err
