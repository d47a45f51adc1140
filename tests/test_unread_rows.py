"""A path that could not be read once, then was read fine (issue 13, row 7).

Its `failed` row is keyed by the path (`unread_key`), not a content, so no
ingestion of the content ever settles it: before this fix, maintenance's
`due` handed the path to every tick again, downloading it each time. Once a
re-drive reads the path, that row closes (`succeeded`, naming the content).
"""

from __future__ import annotations

from pathlib import Path

from helpers import id_counts, write_parquet

from ingest_core.config import IngestConfig, table_key
from ingest_core.ledger import FAILED, SUCCEEDED, open_ledger
from ingest_core.ledger.base import unread_key
from ingest_core.maintenance import due_for_redrive, redrive
from ingest_core.session import Session


def test_unread_row_closes_once_the_path_is_read(tmp_path: Path) -> None:
    table = str(tmp_path / "lake" / "orders")
    ledger_uri = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    path = write_parquet(tmp_path / "landing" / "a.parquet", 0, 3)
    config = IngestConfig(table_uri=table, ledger_uri=ledger_uri)
    key = table_key(table)
    with Session(config) as session:
        listed = session.list_sources([str(path)])
        saved = path.read_bytes()
        path.unlink()  # gone between listing and reading: it cannot be read this time
        [result] = session.run(listed).files
        assert result.status == "failed"
        path.write_bytes(saved)  # back again: readable from now on

        ledger = session.ledger_of(key)
        [unread] = ledger.records(table=key)
        assert (unread.sha256, unread.status) == (unread_key(str(path)), FAILED)

        first = redrive(session)  # the maintenance tick: reads the path, ingests it
        assert first.stats.counts["ingested"] == 1
        assert due_for_redrive(ledger, key, config.max_attempts) == []
        second = redrive(session)  # the next tick has nothing to download
        assert second.stats.files == []

        rows = {r.sha256: r for r in ledger.records(table=key)}
        closed = rows[unread_key(str(path))]
        assert closed.status == SUCCEEDED
        assert result.sha256 is None and first.stats.files[0].sha256 in (closed.error or "")
        assert rows[first.stats.files[0].sha256].status == SUCCEEDED
    assert id_counts(table) == {0: 1, 1: 1, 2: 1}
    open_ledger(ledger_uri).close()


def test_unread_row_closes_when_the_content_was_in_already(tmp_path: Path) -> None:
    """The path's bytes were ingested under another name meanwhile: skipped, and closed."""
    table = str(tmp_path / "lake" / "orders")
    ledger_uri = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    path = write_parquet(tmp_path / "landing" / "a.parquet", 0, 3)
    config = IngestConfig(table_uri=table, ledger_uri=ledger_uri)
    key = table_key(table)
    with Session(config) as session:
        listed = session.list_sources([str(path)])
        saved = path.read_bytes()
        path.unlink()
        session.run(listed)
        (tmp_path / "landing" / "copy.parquet").write_bytes(saved)
        assert session.ingest_sources([str(tmp_path / "landing")]).counts["ingested"] == 1
        path.write_bytes(saved)
        assert redrive(session).stats.counts["skipped"] == 1
        assert due_for_redrive(session.ledger_of(key), key, config.max_attempts) == []
