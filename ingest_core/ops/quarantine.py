"""`ingest quarantine list|release`: files set aside, and giving them fresh attempts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.ledger import QUARANTINED, FileRecord, open_ledger
from ingest_core.ops.common import SHA256

if TYPE_CHECKING:
    from ingest_core.ledger import BaseLedger


def quarantined(config: IngestConfig) -> list[FileRecord]:
    """Quarantined rows, oldest first: of the configured table, or of every table in the ledger.

    Reads only: the ledger is opened read-only and never created.
    """
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    try:
        table = table_key(config.table_uri) if config.table_uri else None
        return ledger.records(table=table, status=QUARANTINED)
    finally:
        ledger.close()


@dataclass
class ReleaseReport:
    """What `release` found and did."""

    sha256: str
    record: FileRecord | None
    """The row after the release (None: no such content)."""
    released: bool

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "sha256": self.sha256,
            "released": self.released,
            "table": self.record.table if self.record else None,
            "status": self.record.status if self.record else None,
            "record": self.record.to_dict() if self.record else None,
        }


def release(config: IngestConfig, sha256: str) -> ReleaseReport:
    """Turn a quarantined row back into `failed` with fresh attempts, so the next retry takes it.

    The table is the configured one; without one, the ledger's only table
    holding that content quarantined (ambiguity is an error naming the tables).
    """
    if not SHA256.fullmatch(sha256):
        raise ConfigurationError(f"{sha256[:80]!r} is not a sha256: give 64 hex digits")
    sha256 = sha256.lower()
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage)
    try:
        if config.table_uri:
            table = table_key(config.table_uri)
        else:
            tables = sorted(
                {r.table for r in ledger.records(status=QUARANTINED) if r.sha256 == sha256}
            )
            if len(tables) > 1:
                raise ConfigurationError(
                    f"sha256 {sha256} is quarantined in {len(tables)} tables ("
                    f"{', '.join(tables)}): pass --table to say which"
                )
            if not tables:
                return ReleaseReport(sha256, _any_row(ledger, sha256), False)
            table = tables[0]
        before = ledger.get(table, sha256)
        after = ledger.release(table, sha256)
        released = before is not None and before.status == QUARANTINED
        return ReleaseReport(sha256, after, released)
    finally:
        ledger.close()


def _any_row(ledger: BaseLedger, sha256: str) -> FileRecord | None:
    return next((r for r in ledger.records() if r.sha256 == sha256), None)
