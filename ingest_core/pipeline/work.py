"""What travels between the stages: a claimed file on its way to the table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_core.ledger import FileRecord
from ingest_core.sources import LocalCopy, SourceFile

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest_core.formats import BadRow


@dataclass
class Work:
    """A claimed file on its way to the table."""

    file: SourceFile
    copy: LocalCopy
    record: FileRecord
    """The ledger row as claimed (the lease keeper holds the current version)."""
    started: float
    run_id: str | None = None
    """The run working on it: written on its ledger row and in its Delta commit."""
    data: pa.Table | None = None
    """The rows of a file read whole (`Reader.read_whole`), before captures and lineage."""
    rescued_rows: int | None = None
    """Rows holding values kept in `_rescued_data` (set once the rows are read)."""
    bad_rows: list[BadRow] = field(default_factory=list)
    """Rows that did not parse, bound for the bad-rows table (under rescue)."""

    @property
    def sha256(self) -> str:
        """The content's key."""
        return self.copy.sha256
