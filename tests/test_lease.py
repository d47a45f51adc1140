"""Leases: renewed while a file is worked on; a lost lease stops the worker before commit."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pytest
from helpers import write_text

from ingest_core import IdempotentIngestor
from ingest_core.ledger.sqlite import SqliteLedger


@pytest.fixture
def hooks_module(tmp_path: Path):
    """A transform module whose behaviour each test sets (runs after the claim)."""
    module = tmp_path / "lease_hooks.py"
    module.write_text("ACTION = None\ndef hook(table):\n    ACTION(table)\n    return table\n")
    sys.path.insert(0, str(tmp_path))
    import lease_hooks  # type: ignore[import-not-found]

    yield lease_hooks
    sys.path.remove(str(tmp_path))
    sys.modules.pop("lease_hooks", None)


def test_lease_is_renewed_while_a_slow_file_is_worked_on(
    landing: Path, table_uri: str, tmp_path: Path, hooks_module
):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    rival = SqliteLedger(tmp_path / "ledger.sqlite")
    seen: list[str] = []

    def slow(_table):
        time.sleep(1.2)  # four lease lengths
        row = rival.records()[0]
        seen.append(rival.claim(row.table, row.sha256, path="elsewhere", owner="rival",
                                lease_seconds=0.3, max_attempts=5).outcome)

    hooks_module.ACTION = slow
    write_text(landing / "a.csv", "id\n1\n")
    with IdempotentIngestor(table=table_uri, ledger=ledger, lease_seconds=0.3,
                            transform="lease_hooks:hook") as ing:
        result = ing.ingest_directory(str(landing)).files[0]
    assert seen == ["in_progress"]
    assert result.status == "ingested"


def test_worker_that_lost_its_lease_does_not_commit(
    landing: Path, table_uri: str, tmp_path: Path, hooks_module
):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    rival = SqliteLedger(tmp_path / "ledger.sqlite")

    def taken_over(_table):
        row = rival.records()[0]
        rival._replace(dataclasses.replace(row, owner="rival", attempt=row.attempt + 1))

    hooks_module.ACTION = taken_over
    write_text(landing / "a.csv", "id\n1\n")
    with IdempotentIngestor(table=table_uri, ledger=ledger, transform="lease_hooks:hook") as ing:
        result = ing.ingest_directory(str(landing)).files[0]
    assert result.status == "in_progress"
    assert "lease lost" in (result.error or "")
    assert not Path(table_uri).exists()
    row = rival.records()[0]
    assert (row.status, row.owner) == ("processing", "rival")
