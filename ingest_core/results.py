"""What an ingestion reports: one `IngestResult` per file, a `RunStats` per run."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["ingested", "skipped", "in_progress", "failed", "quarantined", "unrouted"]
OUTCOMES: tuple[Outcome, ...] = (
    "ingested", "skipped", "in_progress", "failed", "quarantined", "unrouted",
)
"""`unrouted`: a routed run found no route for the file (see ingest_core.routing)."""


@dataclass
class IngestResult:
    """The outcome for one file."""

    path: str
    status: Outcome
    sha256: str | None = None
    rows: int | None = None
    error: str | None = None
    delta_version: int | None = None
    size: int | None = None
    duration_s: float = 0.0
    table: str | None = None
    """The table it went to, in a routed run (None otherwise)."""
    rescued_rows: int | None = None
    """Rows with values kept in `_rescued_data` (`--bad-rows rescue`); None: not read here."""
    bad_rows: int | None = None
    """Rows that did not parse, written to the bad-rows table; None: not read here."""
    run_id: str | None = None
    """The run that settled it (the id on its ledger row and its Delta commit)."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (every field is a scalar: no deep copy, unlike `asdict`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class RunStats:
    """The outcomes of a run, with counts per status."""

    files: list[IngestResult] = field(default_factory=list)
    run_id: str | None = None
    """The run's id (`ingest_core.run_ids`), on every ledger row and commit it made."""

    @classmethod
    def collect(
        cls,
        results: Iterable[IngestResult],
        on_result: Callable[[IngestResult], None] | None = None,
        run_id: str | None = None,
    ) -> RunStats:
        """The stats of `results`, calling `on_result` as each one arrives."""
        stats = cls(run_id=run_id)
        for result in results:
            stats.add(result)
            if on_result is not None:
                on_result(result)
        return stats

    def add(self, result: IngestResult) -> None:
        """Count one more file."""
        self.files.append(result)

    @property
    def counts(self) -> dict[str, int]:
        """How many files ended in each status (every status present, zero included)."""
        seen = Counter(r.status for r in self.files)
        return {status: seen[status] for status in OUTCOMES}

    @property
    def rows(self) -> int:
        """Rows written by this run."""
        return sum(r.rows or 0 for r in self.files if r.status == "ingested")

    @property
    def rescued_rows(self) -> int:
        """Rows with rescued values, over the files this run ingested."""
        return sum(r.rescued_rows or 0 for r in self.files if r.status == "ingested")

    @property
    def bad_rows(self) -> int:
        """Rows sent to the bad-rows table by this run."""
        return sum(r.bad_rows or 0 for r in self.files if r.status == "ingested")

    @property
    def ok(self) -> bool:
        """True when every file was ingested or skipped."""
        return all(r.status in ("ingested", "skipped") for r in self.files)

    def __getattr__(self, name: str) -> int:
        if name in OUTCOMES:
            return self.counts[name]
        raise AttributeError(name)

    def __getitem__(self, status: str) -> int:
        return self.counts[status]

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: integer counts, `rows`, `rescued_rows`, `bad_rows`, `run_id`,
        `files`."""
        return {
            **self.counts, "rows": self.rows, "rescued_rows": self.rescued_rows,
            "bad_rows": self.bad_rows, "run_id": self.run_id,
            "files": [r.to_dict() for r in self.files],
        }
