"""`ingest history`: what the ledger says was loaded, by file, over a time range.

Read-only: the ledger is opened read-only. Rows are ordered by when they last
changed (`updated_at`), newest first.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import FileRecord, open_ledger

_AGO = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A point in time: ISO 8601 (naive means UTC), or an age such as `30m`, `6h`, `2d`, `1w`.

    Raises:
        ConfigurationError: `text` is neither.
    """
    now = now or datetime.now(UTC)
    age = _AGO.fullmatch(text.strip().lower())
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"{text!r} is not a time: give ISO 8601 (2026-12-03, 2026-12-03T09:00) "
            "or an age (30m, 6h, 2d, 1w)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class HistoryReport:
    """Ledger rows in the asked range, newest first."""

    files: list[FileRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: `files`, each path, sha256, status, rows, delta_version, when."""
        return {"files": [
            {"path": redact(r.path), "sha256": r.sha256, "status": r.status, "rows": r.rows,
             "delta_version": r.delta_version, "table": r.table,
             "when": r.updated_at.isoformat() if r.updated_at else None}
            for r in self.files
        ]}


def history(
    config: IngestConfig, *, since: datetime | None = None, until: datetime | None = None,
    path: str | None = None, state: str | None = None, limit: int | None = None,
) -> HistoryReport:
    """The ledger rows of the table (or every table) changed in [since, until], newest first.

    `path` is a glob matched against the recorded path and every path the
    content was seen under.
    """
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    try:
        rows = ledger.records(table=table_key(config.table_uri) if config.table_uri else None,
                              status=state)
    finally:
        ledger.close()
    picked = [
        r for r in rows
        if (since is None or (r.updated_at is not None and r.updated_at >= since))
        and (until is None or (r.updated_at is not None and r.updated_at <= until))
        and (path is None or any(fnmatch.fnmatchcase(p, path) for p in (r.path, *r.seen_paths)))
    ]
    picked.sort(key=lambda r: r.updated_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return HistoryReport(picked[:limit] if limit is not None else picked)
