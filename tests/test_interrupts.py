"""Interrupted runs and dead owners (issue 13, row 12).

A run stopped by SIGINT or SIGTERM gives its claims back: exit 130, one
summary line, the files claimable at once by the next run, no attempt
counted. A worker killed outright (SIGKILL: no chance to give anything back)
leaves `processing` rows whose owner token names a dead process of this host:
the next run takes them over without waiting for the lease.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import id_counts, run_cli, write_text

from ingest_core.ledger.sqlite import SqliteLedger
from ingest_core.owners import owner_gone, owner_token

FILES = 200
SLOW_TRANSFORM = """
import time
CALLS = 0
def slow(table):
    global CALLS
    CALLS += 1
    time.sleep(0.01)
    if CALLS > 40:  # held here, claims in hand, until the test stops the run
        time.sleep(600)
    return table
"""


def landing_of(tmp_path: Path, files: int = FILES) -> Path:
    landing = tmp_path / "landing"
    for i in range(files):
        write_text(landing / f"f{i:03d}.csv", f"id,amount\n{i},{i * 1.5}\n")
    (tmp_path / "slowmod.py").write_text(SLOW_TRANSFORM)
    return landing


def count_status(ledger: Path, status: str) -> int:
    if not ledger.exists():
        return 0
    try:
        with sqlite3.connect(ledger, timeout=5) as conn:
            row = conn.execute("SELECT COUNT(*) FROM files WHERE status = ?", (status,)).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0


def _default_signals() -> None:
    """In the child: SIGINT as a terminal delivers it, even if this test runs in the background
    (a non-interactive shell starts background jobs with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_run(tmp_path: Path, landing: Path, table: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest_core.cli", "run", str(landing), "--table", table,
         "--transform", "slowmod:slow", "--batch-files", "25", "--lease-seconds", "600", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_signals,
    )


def wait_for_claims(
    proc: subprocess.Popen[str], ledger: Path, at_least: int, succeeded: int = 0
) -> None:
    """Until `at_least` files are held (`processing`) and `succeeded` are done."""
    deadline = time.monotonic() + 60
    while (
        count_status(ledger, "processing") < at_least
        or count_status(ledger, "succeeded") < succeeded
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never claimed files"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_gives_its_claims_back(tmp_path: Path, signum: int) -> None:
    landing = landing_of(tmp_path)
    table = str(tmp_path / "lake" / "orders")
    ledger = Path(table + ".ledger.sqlite")
    proc = start_run(tmp_path, landing, table)
    wait_for_claims(proc, ledger, 10)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    lines = [line for line in err.splitlines() if line.startswith("ingest: interrupted")]
    assert len(lines) == 1, err
    assert "given back" in lines[0] and "Traceback" not in err
    assert count_status(ledger, "processing") == 0

    rows = SqliteLedger(ledger).records()
    given_back = [r for r in rows if r.status == "failed"]
    assert given_back, "no claim was held at the interrupt"
    assert all(r.attempt == 0 and "interrupted" in (r.error or "") for r in given_back)

    again = run_cli("run", str(landing), "--table", table, "--lease-seconds", "600")
    assert again.returncode == 0, again.stderr
    rows = SqliteLedger(ledger).records()
    assert len(rows) == FILES and {r.status for r in rows} == {"succeeded"}
    assert {r.attempt for r in rows} == {1}  # the interrupted claims counted no attempt
    assert id_counts(table) == {i: 1 for i in range(FILES)}


def test_ctrl_c_reaches_worker_processes_and_they_give_their_claims_back(tmp_path: Path) -> None:
    """`--workers 2`: Ctrl-C in a terminal signals the whole process group."""
    landing = landing_of(tmp_path)
    table = str(tmp_path / "lake" / "orders")
    ledger = Path(table + ".ledger.sqlite")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest_core.cli", "run", str(landing), "--table", table,
         "--transform", "slowmod:slow", "--batch-files", "25", "--lease-seconds", "600",
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, preexec_fn=_default_signals,
    )
    # a first chunk finished (its worker is held in its second), the other worker's in hand;
    # a moment more, so that the finished chunk's results have reached the parent
    wait_for_claims(proc, ledger, 10, succeeded=25)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("ingest: interrupted")]
    settled = int(re.search(r"after (\d+) of", line).group(1))
    assert settled == count_status(ledger, "succeeded") > 0  # the finished chunks are counted
    assert count_status(ledger, "processing") == 0
    again = run_cli("run", str(landing), "--table", table, "--lease-seconds", "600")
    assert again.returncode == 0, again.stderr
    rows = SqliteLedger(ledger).records()
    assert {r.status for r in rows} == {"succeeded"} and {r.attempt for r in rows} == {1}
    assert id_counts(table) == {i: 1 for i in range(FILES)}


def test_dead_owner_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    landing = landing_of(tmp_path, 60)
    table = str(tmp_path / "lake" / "orders")
    ledger = Path(table + ".ledger.sqlite")
    proc = start_run(tmp_path, landing, table)
    wait_for_claims(proc, ledger, 10)
    proc.kill()  # SIGKILL: nothing is given back, the 600 s leases stay
    proc.communicate(timeout=60)
    held = [r for r in SqliteLedger(ledger).records() if r.status == "processing"]
    assert held and all(owner_gone(r.owner) for r in held)

    again = run_cli("run", str(landing), "--table", table, "--lease-seconds", "600")
    assert again.returncode == 0, again.stderr + again.stdout
    rows = SqliteLedger(ledger).records()
    assert {r.status for r in rows} == {"succeeded"}
    assert id_counts(table) == {i: 1 for i in range(60)}


def test_owner_tokens_of_live_and_foreign_processes_are_not_gone() -> None:
    mine = owner_token()
    assert not owner_gone(mine)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom ingest_core.owners import owner_token\n"
         "print(owner_token(), flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        token = child.stdout.readline().strip()
        assert not owner_gone(token)  # alive
        host, pid, rand, marker = token.rsplit(":", 3)
        machine, _, start = marker.partition(".")
        assert owner_gone(f"{host}:{pid}:{rand}:{machine}.{int(start) + 1}")  # pid reused
        assert not owner_gone(f"elsewhere:{pid}:{rand}:{marker}")  # another host: unknown
        assert not owner_gone("worker-1")  # an old token shape: unknown
    finally:
        child.kill()
        child.wait()
    assert owner_gone(token)
