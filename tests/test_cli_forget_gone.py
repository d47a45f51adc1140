"""`ingest retry --forget-gone`: a file deleted after it failed stops keeping retry at exit 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import run_cli, write_text

from ingest_core.config import IngestConfig, table_key
from ingest_core.ledger import open_ledger


def test_forget_gone_closes_the_row_with_a_reason_and_retry_is_clean_after(
    landing: Path, table_uri: str
):
    path = write_text(landing / "a.csv", "id,amount\n1,2.0\n")
    content = hashlib.sha256(path.read_bytes()).hexdigest()
    ledger = open_ledger(IngestConfig(table_uri=table_uri).resolved_ledger_uri())
    try:
        claim = ledger.claim(table_key(table_uri), content, path=str(path), owner="w",
                             lease_seconds=60, max_attempts=5)
        ledger.fail(claim.record, "disk full")
    finally:
        ledger.close()
    path.unlink()
    assert run_cli("retry", "--table", table_uri).returncode == 1
    forgotten = run_cli("retry", "--table", table_uri, "--forget-gone", "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    [dismissed] = json.loads(forgotten.stdout)["dismissed"]
    assert dismissed["sha256"] == content and str(path) in dismissed["reason"]
    again = run_cli("retry", "--table", table_uri, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["gone"] == []
    shown = json.loads(run_cli("show", content[:12], "--table", table_uri, "--json").stdout)
    assert shown["files"][0]["status"] == "quarantined"
    assert shown["files"][0]["error"].startswith("dismissed: no file at")
