"""`BaseLedger.batch`: SQLite writes grouped in one transaction, all or nothing; and
`succeeded_at`, the one query a rerun makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest_core.ledger.sqlite import SqliteLedger


def _claim(ledger: SqliteLedger, n: int):
    return ledger.claim("t", f"{n:064x}", path=f"/landing/f{n}.csv", owner="me",
                        lease_seconds=60, max_attempts=5, size=n)


def test_writes_in_a_batch_commit_together(tmp_path: Path):
    path = tmp_path / "ledger.sqlite"
    writer, reader = SqliteLedger(path), SqliteLedger(path)
    with writer.batch():
        claims = [_claim(writer, n) for n in range(3)]
        assert all(c.outcome == "claimed" for c in claims)
        assert reader.records(table="t") == []  # not committed yet
        with writer.batch():  # nested: joins the outer transaction
            writer.complete(claims[0].record, delta_version=1, rows=10)
        assert reader.records(table="t") == []
    assert [r.status for r in reader.records(table="t")] == ["succeeded", "processing",
                                                             "processing"]


def test_a_batch_that_raises_writes_nothing(tmp_path: Path):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    with pytest.raises(RuntimeError), ledger.batch():
        _claim(ledger, 1)
        raise RuntimeError("stop")
    assert ledger.records(table="t") == []
    assert _claim(ledger, 1).outcome == "claimed"  # and the ledger is usable after


def test_succeeded_at_finds_the_succeeded_rows_at_many_paths_in_one_table(tmp_path: Path):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    for n in range(1200):  # more than one chunk of paths
        claim = _claim(ledger, n)
        if n % 2 == 0:
            ledger.complete(claim.record, delta_version=0, rows=1)
    other = ledger.claim("u", "f" * 64, path="/landing/f0.csv", owner="me", lease_seconds=60,
                         max_attempts=5)
    ledger.complete(other.record, delta_version=0, rows=1)
    found = ledger.succeeded_at("t", [f"/landing/f{n}.csv" for n in range(1200)])
    assert sorted(r.size for r in found) == list(range(0, 1200, 2))
    assert {r.table for r in found} == {"t"}
