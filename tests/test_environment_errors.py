"""Permanent environment errors (issue 13, row 13): the table's storage refuses writes.

A read-only table folder with a writable ledger is not the files' fault: the
run stops with exit 2 and one line naming the table, what is wrong and the
fix; the claims are given back and no attempt is counted, so however many
runs hit it, good files are never quarantined and go in once it is fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import id_counts, run_cli, write_text

from ingest_core.ledger.sqlite import SqliteLedger


def _can_mount_read_only(folder: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}'"],
        capture_output=True,
    )
    return probe.returncode == 0


def run_read_only(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`ingest ARGS` with `folder` read-only: a read-only bind mount as root, else no write bit."""
    command = [sys.executable, "-m", "ingest_core.cli", *args]
    if os.geteuid() == 0:
        script = (f"mount --bind '{folder}' '{folder}' && "
                  f"mount -o remount,bind,ro '{folder}' && exec \"$@\"")
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                   *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_read_only_table_stops_the_run_and_burns_no_attempt(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    table = tmp_path / "lake" / "orders"
    ledger = f"sqlite:///{tmp_path / 'ledger' / 'l.sqlite'}"
    write_text(landing / "seed.csv", "id\n0\n")
    first = run_cli("run", str(landing), "--table", str(table), "--ledger", ledger)
    assert first.returncode == 0, first.stderr
    if os.geteuid() == 0 and not _can_mount_read_only(table):
        pytest.skip("root without mount namespaces: no way to make the folder read-only")
    for i in range(1, 4):
        write_text(landing / f"f{i}.csv", f"id\n{i}\n")

    for _ in range(6):  # more runs than max_attempts (5)
        stopped = run_read_only(table, "run", str(landing), "--table", str(table),
                                "--ledger", ledger)
        assert stopped.returncode == 2, stopped.stdout + stopped.stderr
        lines = [line for line in stopped.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("ingest: error:"), stopped.stderr
        what = "read-only" if os.geteuid() == 0 else "permission denied"  # a mount, or no w bit
        assert what in lines[0] and str(table) in lines[0] and "writ" in lines[0]
        assert "panicked" not in stopped.stderr and "Traceback" not in stopped.stderr

    rows = {r.path: r for r in SqliteLedger(tmp_path / "ledger" / "l.sqlite").records()}
    new = [rows[str(landing / f"f{i}.csv")] for i in range(1, 4)]
    assert {r.status for r in new} == {"failed"}
    assert {r.attempt for r in new} == {0}

    fixed = run_cli("run", str(landing), "--table", str(table), "--ledger", ledger)
    assert fixed.returncode == 0, fixed.stderr
    assert id_counts(str(table)) == {0: 1, 1: 1, 2: 1, 3: 1}
    rows = {r.path: r for r in SqliteLedger(tmp_path / "ledger" / "l.sqlite").records()}
    assert {rows[str(landing / f"f{i}.csv")].attempt for i in range(1, 4)} == {1}


def test_storage_refusals_are_told_from_other_errors() -> None:
    from ingest_core.delta.errors import storage_refusal

    assert storage_refusal(OSError("Unable to open file x: Read-only file system (os error 30)"))
    assert storage_refusal(PermissionError(13, "Permission denied"))
    refused = storage_refusal(OSError("Status: 403 AuthorizationPermissionMismatch"))
    assert refused is not None and "Storage Blob Data Contributor" in refused[1]
    assert storage_refusal(OSError("ContainerNotFound")) is not None
    assert storage_refusal(OSError("connection reset by peer")) is None


@pytest.mark.azurite
def test_a_refused_account_key_stops_the_run_with_the_fix(
    tmp_path: Path, azurite: str, unique_name: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(f"{unique_name}-lake")
    try:
        landing = tmp_path / "landing"
        write_text(landing / "a.csv", "id\n1\n")
        key = next(p for p in azurite.split(";") if p.startswith("AccountKey="))
        wrong = azurite.replace(key, "AccountKey=" + "A" * 86 + "==")
        ledger = tmp_path / "l.sqlite"
        table = f"abfs://{unique_name}-lake/orders"
        for _ in range(2):
            done = run_cli("run", str(landing), "--table", table, "--ledger",
                           f"sqlite:///{ledger}", env={"INGEST_STORAGE_CONNECTION": wrong})
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr
            [line] = [x for x in done.stderr.splitlines() if x.startswith("ingest:")]
            assert "refused access (403)" in line and table in line
            assert "Storage Blob Data Contributor" in line
        [row] = SqliteLedger(ledger).records()
        assert (row.status, row.attempt) == ("failed", 0)
    finally:
        service.delete_container(f"{unique_name}-lake")
