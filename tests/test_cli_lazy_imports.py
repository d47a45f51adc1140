"""The command line imports what the command needs: `--version`, `--help` and a rerun
that only skips import neither the ingestion machinery nor pyarrow and deltalake."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers import write_text

from ingest_core.sources.identity import RACY_NS

PROBE = """
import contextlib, io, json, sys
from ingest_core.cli import run_cli
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = run_cli(sys.argv[1:])
heavy = ("pyarrow", "deltalake", "ingest_core.ingestor", "ingest_core.routing",
         "ingest_core.ops.replay", "ingest_core.formats", "ingest_core.delta.writers",
         "ingest_core.delta.target")
print(json.dumps({"code": code, "out": out.getvalue(),
                  "imported": sorted(m for m in heavy if m in sys.modules)}))
"""



def _probe(*args: str, cwd: Path) -> dict:
    import json

    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_version_and_help_import_no_ingestion_machinery(tmp_path: Path):
    for args in (["--version"], ["--help"], ["run", "--help"]):
        probe = _probe(*args, cwd=tmp_path)
        assert probe["code"] == 0
        assert probe["imported"] == [], args


def test_a_rerun_that_only_skips_imports_neither_pyarrow_nor_deltalake(tmp_path: Path):
    landing = tmp_path / "landing"
    for i in range(3):
        write_text(landing / f"f{i}.csv", f"id\n{i}\n")
    time.sleep(RACY_NS / 1e9 + 0.2)  # identities past the racy window: trusted on the rerun
    table = str(tmp_path / "lake" / "t")
    first = _probe("run", str(landing), "--table", table, "--json", cwd=tmp_path)
    assert first["code"] == 0 and '"ingested": 3' in first["out"]
    again = _probe("run", str(landing), "--table", table, "--json", cwd=tmp_path)
    assert again["code"] == 0 and '"skipped": 3' in again["out"]
    assert again["imported"] == ["ingest_core.ingestor"]  # no routes, no ops, no Arrow
