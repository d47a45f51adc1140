"""`ingest cleanup` on local folders: only ingested, unchanged files move; nothing is lost.

Real SQLite ledgers and local Delta tables; the Azurite half is in
`test_cleanup_azure.py`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import id_counts, write_parquet

from ingest_core import IdempotentIngestor
from ingest_core.cli import EXIT_OK, EXIT_USAGE, run_cli
from ingest_core.config import IngestConfig, parse_duration
from ingest_core.errors import ConfigurationError
from ingest_core.ops import cleanup


@pytest.fixture(autouse=True)
def _no_ingest_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)


def ingested_landing(landing: Path, table_uri: str) -> dict[str, Path]:
    """Three files ingested (one in a subfolder), then one changed and one new file landed."""
    files = {
        "a": write_parquet(landing / "a.parquet", 0),
        "b": write_parquet(landing / "2026" / "b.parquet", 10),
        "c": write_parquet(landing / "c.parquet", 20),
    }
    with IdempotentIngestor(table=table_uri) as ing:
        assert done(ing.ingest_directory(str(landing))) == {"ingested": 3}
    write_parquet(files["c"], 30)  # overwritten: new bytes under an ingested path
    files["d"] = write_parquet(landing / "d.parquet", 40)  # never ingested
    return files


def done(stats) -> dict[str, int]:
    """The run's non-zero counts."""
    return {k: v for k, v in stats.counts.items() if v}


def outcomes(report: cleanup.CleanupReport) -> dict[str, str]:
    return {Path(f["path"]).name: f["outcome"] for f in report.files}


def test_archive_moves_only_ingested_unchanged_files_keeping_their_relative_path(
    landing: Path, table_uri: str, tmp_path: Path
):
    files = ingested_landing(landing, table_uri)
    archive = tmp_path / "archive"
    report = cleanup(IngestConfig(table_uri=table_uri), [str(landing)], archive_to=str(archive))

    assert outcomes(report) == {
        "a.parquet": "archived", "b.parquet": "archived", "c.parquet": "kept",
        "d.parquet": "kept",
    }
    assert (archive / "a.parquet").is_file() and (archive / "2026" / "b.parquet").is_file()
    assert not files["a"].exists() and not files["b"].exists()
    assert files["c"].exists() and files["d"].exists()
    reasons = {Path(f["path"]).name: f.get("reason", "") for f in report.files}
    assert "changed since it was ingested" in reasons["c.parquet"]
    assert "not in the ledger" in reasons["d.parquet"]
    assert report.to_dict()["archived"] == 2 and report.to_dict()["kept"] == 2


def test_after_cleanup_a_rerun_ingests_only_the_kept_files_and_the_archive_is_a_skip(
    landing: Path, table_uri: str, tmp_path: Path
):
    ingested_landing(landing, table_uri)
    archive = tmp_path / "archive"
    cleanup(IngestConfig(table_uri=table_uri), [str(landing)], archive_to=str(archive))
    with IdempotentIngestor(table=table_uri) as ing:
        assert done(ing.ingest_directory(str(landing))) == {"ingested": 2}  # changed c, new d
        assert done(ing.ingest_directory(str(archive))) == {"skipped": 2}
        assert done(ing.ingest_directory(str(landing))) == {"skipped": 2}
    counts = id_counts(table_uri)
    assert set(counts) == {*range(0, 3), *range(10, 13), *range(20, 23), *range(30, 33),
                           *range(40, 43)}
    assert set(counts.values()) == {1}
    second = cleanup(IngestConfig(table_uri=table_uri), [str(landing)], archive_to=str(archive))
    assert outcomes(second) == {"c.parquet": "archived", "d.parquet": "archived"}
    assert sorted(p.name for p in landing.rglob("*") if p.is_file()) == []


def test_delete_respects_older_than_and_dry_run_touches_nothing(
    landing: Path, table_uri: str
):
    files = ingested_landing(landing, table_uri)
    config = IngestConfig(table_uri=table_uri)
    young = cleanup(config, [str(landing)], older_than=3600)
    assert young.to_dict()["deleted"] == 0
    assert all("within the retention" in f["reason"] for f in young.files
               if Path(f["path"]).name in ("a.parquet", "b.parquet"))
    dry = cleanup(config, [str(landing)], older_than=0, dry_run=True)
    assert dry.to_dict()["deleted"] == 2 and files["a"].exists() and files["b"].exists()
    done = cleanup(config, [str(landing)], older_than=0)
    assert outcomes(done)["a.parquet"] == "deleted" and not files["a"].exists()
    assert not files["b"].exists() and files["c"].exists() and files["d"].exists()


def test_a_copy_of_ingested_content_under_another_path_is_hashed_then_cleaned(
    landing: Path, table_uri: str
):
    original = write_parquet(landing / "a.parquet", 0)
    with IdempotentIngestor(table=table_uri) as ing:
        ing.ingest_file(str(original))
        copy = landing / "copy.parquet"
        shutil.copy(original, copy)
        assert ing.ingest_file(str(copy)).status == "skipped"  # a sighting in the ledger
    write_parquet(copy, 99)  # the sighted path now holds bytes nobody ingested
    report = cleanup(IngestConfig(table_uri=table_uri), [str(landing)], archive_to=None)
    assert outcomes(report) == {"a.parquet": "deleted", "copy.parquet": "kept"}


def test_a_file_changed_between_listing_and_moving_is_kept(
    landing: Path, table_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = write_parquet(landing / "a.parquet", 0)
    IdempotentIngestor(table=table_uri).ingest_file(str(path))
    module = importlib.import_module("ingest_core.ops.cleanup")
    listed = module.list_files

    def list_then_overwrite(*args, **kwargs):
        files = listed(*args, **kwargs)
        write_parquet(path, 50)
        return files

    monkeypatch.setattr(module, "list_files", list_then_overwrite)
    report = cleanup(IngestConfig(table_uri=table_uri), [str(landing)],
                     archive_to=str(tmp_path / "archive"))
    assert outcomes(report) == {"a.parquet": "kept"}
    assert path.exists() and not (tmp_path / "archive" / "a.parquet").exists()


def test_cleanup_with_routes_finds_each_file_in_its_own_table(landing: Path, tmp_path: Path):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[[route]]\nmatch = "{dataset}/*.parquet"\n'
        f'table = "{tmp_path / "lake"}/{{dataset}}"\n'
    )
    write_parquet(landing / "orders" / "a.parquet", 0)
    write_parquet(landing / "items" / "b.parquet", 10)
    write_parquet(landing / "stray.parquet", 20)
    assert run_cli(["run", str(landing), "--routes", str(routes), "--json"]) != EXIT_USAGE
    config = IngestConfig(table_uri="", routes=str(routes))
    report = cleanup(config, [str(landing)])
    assert outcomes(report) == {
        "a.parquet": "deleted", "b.parquet": "deleted", "stray.parquet": "kept",
    }


def test_cli_cleanup_prints_the_counts_and_files_as_json(
    landing: Path, table_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    ingested_landing(landing, table_uri)
    archive = tmp_path / "archive"
    capsys.readouterr()
    code = run_cli(["cleanup", str(landing), "--archive-to", str(archive), "--table", table_uri,
                    "--older-than", "0s", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK
    assert (out["archived"], out["deleted"], out["kept"]) == (2, 0, 2)
    assert {Path(f["path"]).name: f["outcome"] for f in out["files"]}["a.parquet"] == "archived"
    assert [f["to"] for f in out["files"] if f["outcome"] == "archived"] == [
        str(archive / "a.parquet"), str(archive / "2026" / "b.parquet")]
    assert run_cli(["cleanup", str(landing), "--table", table_uri]) == EXIT_USAGE
    assert run_cli(["cleanup", str(landing), "--table", table_uri, "--delete",
                    "--older-than", "soon"]) == EXIT_USAGE


def test_durations_read_days_hours_minutes_and_refuse_the_rest():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("1d12h") == 36 * 3600
    assert parse_duration("30m") == 1800
    for bad in ("", "7", "7w", "d7", "7d x"):
        with pytest.raises(ConfigurationError, match="duration"):
            parse_duration(bad)


def test_the_app_reads_its_cleanup_policy_and_refuses_half_of_one():
    from ingest_core.config import cleanup_action, from_env

    env = {"INGEST_TABLE_URI": "./t", "INGEST_CLEANUP": "archive:abfss://arc@acct.dfs.core."
           "windows.net/x", "INGEST_CLEANUP_AFTER": "7d"}
    config = from_env(env)
    assert cleanup_action(config.cleanup or "") == (
        "archive", "abfss://arc@acct.dfs.core.windows.net/x")
    assert config.cleanup_after == 7 * 86400
    with pytest.raises(ConfigurationError, match="INGEST_CLEANUP_AFTER"):
        from_env({**env, "INGEST_CLEANUP_AFTER": ""})
    with pytest.raises(ConfigurationError, match="archive:<URL>"):
        from_env({**env, "INGEST_CLEANUP": "move"})
