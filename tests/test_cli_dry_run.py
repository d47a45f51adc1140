"""`ingest run --dry-run`: says what a run would do and writes nothing, ledger or table."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli, write_parquet


def test_dry_run_on_a_fresh_table_lists_every_file_to_ingest_and_creates_nothing(
    landing: Path, table_uri: str
):
    write_parquet(landing / "a.parquet", start=0)
    write_parquet(landing / "b.parquet", start=10)
    result = run_cli("run", str(landing), "--table", table_uri, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["dry_run"], report["ingest"], report["skip"]) == (True, 2, 0)
    assert {len(f["sha256"]) for f in report["files"]} == {64}
    assert not Path(table_uri).parent.exists()


def test_dry_run_after_a_run_skips_known_content_and_names_the_new(landing: Path, table_uri: str):
    write_parquet(landing / "a.parquet", start=0)
    assert run_cli("run", str(landing), "--table", table_uri).returncode == 0
    (landing / "copy.parquet").write_bytes((landing / "a.parquet").read_bytes())
    new = write_parquet(landing / "new.parquet", start=50)
    folder = Path(table_uri).parent
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    result = run_cli("run", str(landing), "--table", table_uri, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1)[::-1] for line in result.stdout.splitlines())
    actions = {path.split()[-1]: action for path, action in lines.items()}
    assert actions == {str(landing / "a.parquet"): "skip", str(landing / "copy.parquet"): "skip",
                       str(new): "ingest"}
    assert "1 to ingest, 2 to skip" in result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
