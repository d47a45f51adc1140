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


def test_a_routed_dry_run_names_each_files_table_action_and_reason(
    tmp_path: Path, landing: Path
):
    lake = tmp_path / "lake"
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[route]]\nmatch = "orders/*.parquet"\ntable = "{lake}/orders"\n\n'
                      f'[[route]]\nmatch = "customers/*.parquet"\ntable = "{lake}/customers"\n')
    write_parquet(landing / "orders" / "a.parquet", start=0)
    write_parquet(landing / "stray" / "c.parquet", start=20)
    fresh = run_cli("run", str(landing), "--routes", str(routes), "--dry-run", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landing", "routes.toml"]  # nothing
    report = json.loads(fresh.stdout)
    assert (report["table"], report["ingest"], report["unrouted"]) == (None, 1, 1)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert (by_name["a.parquet"]["table"], by_name["a.parquet"]["action"]) == (
        f"{lake}/orders", "ingest")
    assert "no route" in by_name["c.parquet"]["reason"] and by_name["c.parquet"]["table"] is None
    assert run_cli("run", str(landing), "--routes", str(routes)).returncode == 1  # c unrouted
    write_parquet(landing / "customers" / "b.parquet", start=10)
    again = run_cli("run", str(landing), "--routes", str(routes), "--dry-run")
    assert again.returncode == 0, again.stderr
    lines = {Path(line.split()[2]).name: line for line in again.stdout.splitlines()}
    assert lines["a.parquet"].startswith("skip") and f"-> {lake}/orders: already in" in \
        lines["a.parquet"]
    assert lines["b.parquet"].startswith("ingest") and f"-> {lake}/customers" in \
        lines["b.parquet"]
    assert lines["c.parquet"].startswith("unrouted")
    assert "1 to ingest, 1 to skip" in again.stderr and "1 unrouted" in again.stderr
