"""Operator lookups as typed: sha256 prefixes, --version, environment variables in --help."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import run_cli, write_parquet

from ingest_core.config import table_key
from ingest_core.ledger.sqlite import SqliteLedger


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version_prints_the_package_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("ingest ") and result.stdout.split()[1][0].isdigit()


def test_help_names_the_environment_variable_of_each_option():
    run_help = run_cli("run", "--help").stdout
    for var in ("INGEST_TABLE_URI", "INGEST_LEDGER_URI", "INGEST_ROUTES", "INGEST_WORKERS",
                "INGEST_BATCH_FILES", "INGEST_FORMAT"):
        assert var in run_help, var
    assert "INGEST_LEDGER_URI" in run_cli("quarantine", "list", "--help").stdout


def test_show_takes_the_twelve_digit_prefix_status_prints(landing: Path, table_uri: str):
    path = write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    result = run_cli("show", _sha(path)[:12], "--table", table_uri, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["kind"], report["query"]) == ("sha256", _sha(path))
    assert report["files"][0]["path"] == str(path)


def test_an_ambiguous_prefix_is_exit_2_listing_the_candidates(tmp_path: Path, table_uri: str):
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    shas = ["abcdef01" + "0" * 56, "abcdef01" + "1" * 56]
    for n, sha in enumerate(shas):
        ledger.claim(table_key(table_uri), sha, path=f"/x/{n}", owner="t", lease_seconds=60,
                     max_attempts=3)
    ledger.close()
    uri = f"sqlite:///{tmp_path / 'l.sqlite'}"
    for args in (("show", "abcdef01"), ("quarantine", "release", "ABCDEF01"),
                 ("retry", "--sha256", "abcdef01", "--table", table_uri)):
        result = run_cli(*args, "--ledger", uri)
        assert result.returncode == 2, (args, result.stderr)
        assert all(sha in result.stderr for sha in shas), result.stderr
    unique = run_cli("show", shas[1][:10], "--ledger", uri, "--json")
    assert json.loads(unique.stdout)["query"] == shas[1]


def test_release_by_prefix_of_unknown_content_says_so(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    result = run_cli("quarantine", "release", "0123456789ab", "--table", table_uri)
    assert result.returncode == 1
    assert "no file with sha256 0123456789ab" in result.stderr


def test_status_path_takes_a_relative_path_as_typed(landing: Path, table_uri: str):
    path = write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    result = run_cli("status", "--table", table_uri, "--path", "landing/a.parquet", "--json",
                     cwd=landing.parent)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in json.loads(result.stdout)] == [str(path)]


def test_status_and_show_take_container_slash_name_for_a_blob(tmp_path: Path):
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    url = "abfss://landing@acct.dfs.core.windows.net/in/2026/a.csv"
    ledger.claim("abfss://lake@acct.dfs.core.windows.net/orders", "ab" * 32, path=url,
                 owner="t", lease_seconds=60, max_attempts=3)
    ledger.close()
    uri = f"sqlite:///{tmp_path / 'l.sqlite'}"
    result = run_cli("status", "--ledger", uri, "--path", "landing/in/2026/a.csv", "--json",
                     cwd=tmp_path)
    assert [r["path"] for r in json.loads(result.stdout)] == [url]
    https = "https://acct.blob.core.windows.net/landing/in/2026/a.csv"
    by_url = run_cli("status", "--ledger", uri, "--path", https, "--json")
    assert len(json.loads(by_url.stdout)) == 1
    assert run_cli("status", "--ledger", uri, "--path", "landing/in/a.csv", "--json",
                   cwd=tmp_path).stdout.strip() == "[]"
    shown = run_cli("show", "landing/in/2026/a.csv", "--ledger", uri, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["found"] == 1


def test_quarantine_list_json_keeps_the_whole_reason_and_the_table_says_where_it_is(
    tmp_path: Path,
):
    ledger = SqliteLedger(tmp_path / "l.sqlite")
    reason = "schema mismatch: " + "column x is int64, table has string; " * 8
    claim = ledger.claim("/lake/t", "cd" * 32, path="/in/a.csv", owner="t", lease_seconds=60,
                         max_attempts=3)
    ledger.fail(claim.record, reason, quarantine=True)
    ledger.close()
    uri = f"sqlite:///{tmp_path / 'l.sqlite'}"
    [row] = json.loads(run_cli("quarantine", "list", "--ledger", uri, "--json").stdout)
    assert row["error"] == reason and len(reason) > 120
    human = run_cli("quarantine", "list", "--ledger", uri).stdout
    assert "ingest show SHA for all" in human
