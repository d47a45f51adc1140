"""`ingest history`: what the ledger says was loaded, by run or by file, over a time range.

Read-only: every ledger is opened read-only. Rows are picked by when they last
changed (`updated_at`), then grouped by the run that last acted on them
(`FileRecord.run_id`; rows of older ledgers have none and group under None).
Newest first: files by `updated_at`, runs by their latest row.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ingest_core.config import IngestConfig, table_key
from ingest_core.errors import ConfigurationError, LedgerNotFoundError
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


By = Literal["run", "file"]
_NEVER = datetime.min.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class RunSummary:
    """One run as its ledger rows tell it."""

    run_id: str | None
    """None: rows written before run ids were kept."""
    started: datetime | None
    """The earliest `created_at`/`updated_at` of its rows (a row it took over counts from
    its first claim)."""
    finished: datetime | None
    """The latest `updated_at` of its rows."""
    files: dict[str, int]
    """Rows by status, e.g. {"succeeded": 3, "quarantined": 1}."""
    rows: int
    delta_versions: list[int]
    tables: list[str]

    @classmethod
    def of(cls, run_id: str | None, records: list[FileRecord]) -> RunSummary:
        """The summary of one run's rows."""
        times = [t for r in records for t in (r.created_at, r.updated_at) if t is not None]
        return cls(
            run_id=run_id,
            started=min(times, default=None),
            finished=max((r.updated_at for r in records if r.updated_at), default=None),
            files=dict(sorted(Counter(r.status for r in records).items())),
            rows=sum(r.rows or 0 for r in records),
            delta_versions=sorted({r.delta_version for r in records
                                   if r.delta_version is not None}),
            tables=sorted({r.table for r in records}),
        )

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one run."""
        return {
            "run_id": self.run_id, "started": _iso(self.started), "finished": _iso(self.finished),
            "files": self.files, "rows": self.rows, "delta_versions": self.delta_versions,
            "tables": [redact(t) for t in self.tables],
        }


@dataclass
class HistoryReport:
    """Ledger rows in the asked range, newest first, and the runs they group into."""

    by: By = "run"
    files: list[FileRecord] = field(default_factory=list)
    runs: list[RunSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: `{"runs": [...]}` by run, `{"files": [...]}` by file."""
        if self.by == "run":
            return {"runs": [r.to_dict() for r in self.runs]}
        return {"files": [
            {"path": redact(r.path), "sha256": r.sha256, "status": r.status, "rows": r.rows,
             "delta_version": r.delta_version, "run_id": r.run_id, "table": redact(r.table),
             "when": _iso(r.updated_at)}
            for r in self.files
        ]}


def history(
    config: IngestConfig, *, since: datetime | None = None, until: datetime | None = None,
    path: str | None = None, state: str | None = None, limit: int | None = None,
    by: By = "run",
) -> HistoryReport:
    """The ledger rows changed in [since, until], newest first, by run or by file.

    Rows of the table (`config.table_uri`), of every routed table
    (`config.routes`, with no table) or of the whole ledger. `path` is a glob
    matched against the recorded path and every path the content was seen
    under. `limit` caps the runs (by run) or the rows (by file).
    """
    picked = [
        r for r in _rows(config, state)
        if (since is None or (r.updated_at is not None and r.updated_at >= since))
        and (until is None or (r.updated_at is not None and r.updated_at <= until))
        and (path is None or any(fnmatch.fnmatchcase(p, path) for p in (r.path, *r.seen_paths)))
    ]
    picked.sort(key=lambda r: r.updated_at or _NEVER, reverse=True)
    if by == "file":
        return HistoryReport("file", files=picked[:limit] if limit is not None else picked)
    grouped: dict[str | None, list[FileRecord]] = {}
    for record in picked:
        grouped.setdefault(record.run_id, []).append(record)
    runs = [RunSummary.of(run_id, records) for run_id, records in grouped.items()]
    runs.sort(key=lambda r: r.finished or _NEVER, reverse=True)
    return HistoryReport("run", runs=runs[:limit] if limit is not None else runs)


def _rows(config: IngestConfig, state: str | None) -> list[FileRecord]:
    if config.routes and not config.table_uri:
        return _routed_rows(config, state)
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    try:
        return ledger.records(table=table_key(config.table_uri) if config.table_uri else None,
                              status=state)
    finally:
        ledger.close()



def _routed_rows(config: IngestConfig, state: str | None) -> list[FileRecord]:
    """The rows of every routed table and of the unrouted files, each tagged with its table.

    With a shared ledger (`--ledger`), every table it registers that the
    routes may name; without, each route's own table's ledger (a table named
    by captures, `{dataset}`, is known only to a shared ledger) and the ledger
    of unrouted files beside the routes file. A ledger not created yet has no rows.
    """
    from ingest_core.config import local_path
    from ingest_core.maintenance import routed_tables
    from ingest_core.routing import UNROUTED_TABLE, load_routes, template_names

    assert config.routes is not None
    routes = load_routes(config.routes)
    wanted: list[tuple[str, list[str] | None]] = []  # (ledger URI, its tables; None: by registry)
    if config.ledger_uri:
        wanted.append((config.ledger_uri, None))
    else:
        for route in routes.routes:
            if not template_names(route.table):
                uri = config.replace(table_uri=route.table).resolved_ledger_uri()
                wanted.append((uri, [table_key(route.table)]))
        if routes.origin is not None:
            wanted.append((f"sqlite:///{local_path(routes.origin)}.ledger.sqlite",
                           [UNROUTED_TABLE]))
    rows: dict[tuple[str, str], FileRecord] = {}
    for uri, tables in wanted:
        try:
            ledger = open_ledger(uri, config.storage, read_only=True)
        except LedgerNotFoundError:
            continue
        try:
            keys = tables if tables is not None else [*routed_tables(routes, ledger),
                                                      UNROUTED_TABLE]
            for key in dict.fromkeys(keys):
                for record in ledger.records(table=key, status=state):
                    rows[(record.table, record.sha256)] = record
        finally:
            ledger.close()
    return list(rows.values())
