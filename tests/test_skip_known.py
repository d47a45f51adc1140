"""A rerun skips files whose recorded version proves them ingested, without reading them;
a file whose bytes changed is never skipped, even rewritten in place with its size and
mtime restored.

Reads are observed with an audit hook on `open` (the interpreter's own event), on real
files, a real SQLite ledger and a real Delta table.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from helpers import id_counts, write_text

from ingest_core import IdempotentIngestor
from ingest_core.ledger.sqlite import SqliteLedger
from ingest_core.pipeline.known import KnownFiles
from ingest_core.sources import SourceFile
from ingest_core.sources.identity import RACY_NS, local_identity

_OPENED: list[str] = []
_WATCHING: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCHING and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        if any(path.startswith(root) for root in _WATCHING):
            _OPENED.append(path)


sys.addaudithook(_audit)  # audit hooks cannot be removed: it only records under _WATCHING


def _run_watching(table: str, ledger: Path, landing: Path) -> tuple[dict[str, str], list[str]]:
    """One run over `landing`: each file's status, and the landing files it opened."""
    _OPENED.clear()
    _WATCHING[:] = [str(landing)]
    try:
        with IdempotentIngestor(table=table, ledger=SqliteLedger(ledger)) as ing:
            stats = ing.run(ing.list_sources([str(landing)]))
    finally:
        _WATCHING.clear()
    return {Path(f.path).name: f.status for f in stats.files}, sorted(set(_OPENED))


def _settle() -> None:
    """Wait until files written now are past the racy window (their identity is trusted)."""
    time.sleep(RACY_NS / 1e9 + 0.2)


def test_rerun_skips_unchanged_files_without_reading_them(tmp_path: Path, landing: Path,
                                                          table_uri: str):
    for i in range(3):
        write_text(landing / f"f{i}.csv", f"id\n{i}\n")
    _settle()
    ledger = tmp_path / "ledger.sqlite"
    first, opened = _run_watching(table_uri, ledger, landing)
    assert set(first.values()) == {"ingested"}
    assert len(opened) == 3

    again, opened = _run_watching(table_uri, ledger, landing)
    assert again == {f"f{i}.csv": "skipped" for i in range(3)}
    assert opened == []  # skipped by identity: not one byte read


def test_file_rewritten_in_place_with_size_and_mtime_restored_is_ingested(
    tmp_path: Path, landing: Path, table_uri: str
):
    path = write_text(landing / "orders.csv", "id\n1\n")
    _settle()
    ledger = tmp_path / "ledger.sqlite"
    assert _run_watching(table_uri, ledger, landing)[0] == {"orders.csv": "ingested"}
    assert _run_watching(table_uri, ledger, landing) == ({"orders.csv": "skipped"}, [])

    before = os.stat(path)
    identity = local_identity(path)
    with open(path, "r+b") as f:  # same inode, same size, other bytes
        f.write(b"id\n2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old mtime back
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    assert local_identity(path) != identity  # ctime moved: the kernel set it, nobody can undo

    statuses, opened = _run_watching(table_uri, ledger, landing)
    assert statuses == {"orders.csv": "ingested"}
    assert opened == [str(path)]
    assert id_counts(table_uri) == {1: 1, 2: 1}


def test_file_changed_just_before_it_was_hashed_is_read_again_then_skipped(
    tmp_path: Path, landing: Path, table_uri: str
):
    """Racily clean: an identity read within RACY_NS of the file's last change is not trusted
    to skip; the next run hashes the file and records the identity it has by then."""
    path = write_text(landing / "fresh.csv", "id\n7\n")
    ledger = tmp_path / "ledger.sqlite"
    assert _run_watching(table_uri, ledger, landing)[0] == {"fresh.csv": "ingested"}
    _settle()
    assert _run_watching(table_uri, ledger, landing) == ({"fresh.csv": "skipped"}, [str(path)])
    assert _run_watching(table_uri, ledger, landing) == ({"fresh.csv": "skipped"}, [])
    assert id_counts(table_uri) == {7: 1}


def test_replaced_file_with_same_size_and_mtime_is_ingested(
    tmp_path: Path, landing: Path, table_uri: str
):
    """Another file renamed over the path (new inode), its mtime set to the old one's."""
    path = write_text(landing / "orders.csv", "id\n3\n")
    _settle()
    ledger = tmp_path / "ledger.sqlite"
    assert _run_watching(table_uri, ledger, landing)[0] == {"orders.csv": "ingested"}
    before = os.stat(path)
    other = write_text(tmp_path / "elsewhere.csv", "id\n4\n")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, path)
    assert _run_watching(table_uri, ledger, landing)[0] == {"orders.csv": "ingested"}
    assert id_counts(table_uri) == {3: 1, 4: 1}


def _blob_row(ledger: SqliteLedger, etag: str) -> None:
    claim = ledger.claim("t", "a" * 64, path="abfss://c@acct.dfs.core.windows.net/x.csv",
                         owner="me", lease_seconds=60, max_attempts=5, size=4, source_etag=etag)
    ledger.complete(claim.record, delta_version=0, rows=1)


@pytest.mark.parametrize(("listed", "skipped"), [
    ("0x8DC0FFEE", True),          # a listing gives the ETag bare, a download quoted
    ('"0x8DC0FFEE"', True),
    ("0x8DBEEF00", False),         # rewritten since: a new ETag
    (None, False),                 # no ETag listed: no proof
])
def test_blob_is_skipped_only_with_the_etag_its_row_recorded(tmp_path: Path, listed, skipped):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    _blob_row(ledger, '"0x8DC0FFEE"')
    file = SourceFile(uri="abfss://c@acct.dfs.core.windows.net/x.csv", relative="x.csv",
                      size=4, etag=listed)
    [out] = list(KnownFiles(ledger, "t").split([file]))
    assert (out is not file) == skipped
    if skipped:
        assert (out.status, out.sha256, out.delta_version) == ("skipped", "a" * 64, 0)


def test_rows_without_ctime_are_never_trusted_to_skip(tmp_path: Path, landing: Path):
    """A row written before ctime was recorded (size:mtime:inode) proves nothing."""
    path = write_text(landing / "old.csv", "id\n1\n")
    st = os.stat(path)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    claim = ledger.claim("t", "b" * 64, path=str(path), owner="me", lease_seconds=60,
                         max_attempts=5, size=st.st_size,
                         source_etag=f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    ledger.complete(claim.record, delta_version=0, rows=1)
    file = SourceFile(uri=str(path), relative="old.csv", size=st.st_size)
    assert list(KnownFiles(ledger, "t").split([file])) == [file]


@pytest.mark.parametrize(("recorded", "seen", "rewritten"), [
    ("5:1:2:3000000000:4@9000000000", "5:1:2:3000000000:4@9500000000", False),  # read again
    ("5:1:2:3000000000:4@9000000000", "5:1:2:7000000000:4@9500000000", True),   # new ctime
    ("5:1:2:3000000000:4@3000000001", "5:1:2:3000000000:4@9500000000", True),   # was racy
    ('"0x8DC0FFEE"', '"0x8DC0FFEE"', False),
    ('"0x8DC0FFEE"', '"0x8DBEEF00"', True),                                     # blob rewritten
])
def test_a_claim_of_ingested_bytes_records_a_better_version_and_writes_nothing_else(
    tmp_path: Path, recorded, seen, rewritten
):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    first = ledger.claim("t", "c" * 64, path="/landing/x.csv", owner="a", lease_seconds=60,
                         max_attempts=5, source_etag=recorded)
    done = ledger.complete(first.record, delta_version=0, rows=1)
    again = ledger.claim("t", "c" * 64, path="/landing/x.csv", owner="b", lease_seconds=60,
                         max_attempts=5, source_etag=seen)
    assert again.outcome == "done"
    assert (again.record.etag != done.etag) == rewritten
    assert ledger.get("t", "c" * 64).source_etag == (seen if rewritten else recorded)
