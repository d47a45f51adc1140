"""Operator recovery: replay, sweep, retry, quarantine and show, behind `ingest` commands.

Every operation re-drives files through the same exactly-once core: a file
whose content is in the table already is only a skip, so running any of them
twice is harmless.

| operation             | reads                                 | re-drives                        |
| --------------------- | ------------------------------------- | -------------------------------- |
| `publish_sources`     | a listing of blobs                    | via Event Grid, one event each   |
| `replay_dead_letters` | Event Grid dead-letter blobs          | here, or via Event Grid          |
| `sweep`               | a listing and the ledger (no hashing) | unseen, changed, stalled files   |
| `retry`               | the ledger                            | failed (+ released) rows         |
| `release`, `show`     | the ledger (and the Delta log)        | nothing                          |

(Replaying SOURCE... in this process is `ingest run` again; the CLI calls that.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ingest_core.config import IngestConfig, StorageConfig, is_local, local_path, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import LandingPolicy, redact, screen_event
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, FileRecord, open_ledger
from ingest_core.maintenance import due_for_redrive, open_table, redrive
from ingest_core.results import IngestResult, RunStats
from ingest_core.sources import SourceFile, source_for

if TYPE_CHECKING:
    from ingest_core.eventgrid_publish import PublishedEvent
    from ingest_core.ingestor import IdempotentIngestor
    from ingest_core.ledger import BaseLedger

SHA256 = re.compile(r"[0-9a-fA-F]{64}")
Via = Literal["direct", "eventgrid"]
Advance = Callable[[Any], None]
"""Called with each item (a result or a published event) as it is done."""
Progress = Callable[[int], AbstractContextManager[Advance]]
"""Given the number of items, a context yielding the `Advance` callback (a progress bar)."""


@contextmanager
def no_progress(total: int) -> Iterator[Advance]:
    """A `Progress` that shows nothing."""
    yield lambda _item: None


class Runner(Protocol):
    """What re-drives listed files: an `IdempotentIngestor`, or a `RoutedIngest`."""

    def list_sources(self, roots: Sequence[str]) -> list[SourceFile]:
        """Every file under the roots."""
        ...

    def run(
        self, files: Sequence[SourceFile], on_result: Callable[[IngestResult], None] | None = None
    ) -> RunStats:
        """Ingest the files."""
        ...

    def close(self) -> None:
        """Release the ledgers."""
        ...


def open_runner(config: IngestConfig) -> Runner:
    """A router when `config.routes` is set and no table is, else an ingestor of the table."""
    if config.routes and not config.table_uri:
        from ingest_core.routed import RoutedIngest
        from ingest_core.routing import load_routes

        return RoutedIngest(load_routes(config.routes), config)
    if not config.table_uri:
        raise ConfigurationError(
            "no table: pass --table URI or --routes FILE (or set INGEST_TABLE_URI or INGEST_ROUTES)"
        )
    from ingest_core.ingestor import IdempotentIngestor

    return IdempotentIngestor(config=config)


# -- replay -------------------------------------------------------------------------


@dataclass
class ReplayReport:
    """What a replay did: files ingested here, or events published for the function."""

    via: Via
    stats: RunStats = field(default_factory=RunStats)
    """Results of files ingested in this process (`direct`)."""
    published: list[PublishedEvent] = field(default_factory=list)
    """`PublishedEvent`s sent to the topic (`eventgrid`)."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """Events or blobs not re-driven, with the decision (ignore, refuse, invalid) and reason."""
    gone: list[str] = field(default_factory=list)
    """Blobs an event named that no longer exist."""
    error: str | None = None
    """Why publishing stopped early (the events before it were sent)."""

    @property
    def ok(self) -> bool:
        """True when every file was ingested, skipped, published or rightly ignored."""
        refused = any(d["decision"] != "ignore" for d in self.dropped)
        return self.stats.ok and not refused and not self.gone and self.error is None

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "via": self.via,
            **self.stats.to_dict(),
            "published": len(self.published),
            "events": [e.to_dict() for e in self.published],
            "dropped": self.dropped,
            "gone": [redact(g) for g in self.gone],
            "error": self.error,
        }


def list_files(sources: Sequence[str], storage: StorageConfig) -> list[SourceFile]:
    """Every file under the sources, each once, without opening a ledger or a table."""
    files: dict[str, SourceFile] = {}
    for root in sources:
        try:
            for file in source_for(root, storage).list(root):
                files.setdefault(file.uri, file)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
    return list(files.values())


def replay_sources(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress
) -> ReplayReport:
    """Ingest every file under `sources` here, as `ingest run` does (`config.workers` too).

    Files whose content is in the table already are skipped.
    """
    from ingest_core.ingestor import IdempotentIngestor

    runner = open_runner(config)
    try:
        files = list_files(sources, config.storage)
        with progress(len(files)) as advance:
            if isinstance(runner, IdempotentIngestor) and config.workers > 1 and len(files) > 1:
                from ingest_core.parallel import run_parallel

                return ReplayReport(via="direct", stats=run_parallel(config, files, advance))
            return ReplayReport(via="direct", stats=runner.run(files, advance))
    finally:
        runner.close()


def publish_sources(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress
) -> ReplayReport:
    """Publish one BlobCreated event per blob under `sources` to the Event Grid topic."""
    from ingest_core.eventgrid_publish import blob_created_events

    report = ReplayReport(via="eventgrid")
    files = []
    for file in list_files(sources, config.storage):
        if file.size == 0:
            report.dropped.append(_drop("ignore", f"{file.uri}: zero-length blob"))
        else:
            files.append(file)
    _publish(config, blob_created_events(files, config.storage), report, progress)
    return report


def replay_dead_letters(
    config: IngestConfig, location: str, via: Via, progress: Progress = no_progress
) -> ReplayReport:
    """Re-drive the events in Event Grid's dead-letter blobs under `location`.

    Each event is screened like a live one (completed write, landing account
    and container); accepted ones are ingested here (`direct`, one file per
    blob however often it was dead-lettered) or published again (`eventgrid`).
    """
    from ingest_core.deadletter import read_dead_letters

    policy = LandingPolicy.from_config(config)
    report = ReplayReport(via=via)
    accepted: dict[str, dict[str, Any]] = {}
    for letter in read_dead_letters(location, config.storage):
        verdict = screen_event(letter.event, policy)
        if verdict.accepted:
            assert verdict.url is not None
            accepted.setdefault(verdict.url, letter.event)
        else:
            report.dropped.append(
                _drop(verdict.decision, verdict.reason, verdict.event_id, letter.blob,
                      letter.reason)
            )
    if via == "eventgrid":
        _publish(config, list(accepted.values()), report, progress)
        return report
    runner = open_runner(config)
    try:
        files = []
        for url in accepted:
            file = _present(runner, url)
            if file is None:
                report.gone.append(url)
            else:
                files.append(file)
        with progress(len(files)) as advance:
            report.stats = runner.run(files, advance)
    finally:
        runner.close()
    return report


def _publish(
    config: IngestConfig, events: list[dict[str, Any]], report: ReplayReport, progress: Progress
) -> None:
    from azure.core.exceptions import AzureError

    from ingest_core.eventgrid_publish import publish, publisher_client

    client = publisher_client(config)
    with progress(len(events)) as advance:

        def sent(events: list[PublishedEvent]) -> None:
            report.published.extend(events)
            for event in events:
                advance(event)

        try:
            publish(client, events, sent)
        except AzureError as exc:
            report.error = (
                f"the Event Grid topic {config.eventgrid_topic_endpoint} refused events after "
                f"{len(report.published)} were sent: {redact(str(exc))[:300]}; check the topic "
                "endpoint and INGEST_EVENTGRID_KEY (or the identity's 'EventGrid Data Sender' "
                "role) and replay again (a replay sent twice is harmless)"
            )
        finally:
            client.close()


def _present(runner: Runner, url: str) -> SourceFile | None:
    """The blob at `url` as its source lists it; None when it is gone."""
    from azure.core.exceptions import ResourceNotFoundError

    from ingest_core.azure.urls import parse_blob_url

    name = parse_blob_url(url).name
    try:
        files = runner.list_sources([url])
    except (FileNotFoundError, ResourceNotFoundError):
        return None
    same = [f for f in files if parse_blob_url(f.uri).name == name]
    return same[0] if len(same) == 1 else None


def _drop(
    decision: str, reason: str, event_id: str | None = None, blob: str | None = None,
    dead_letter_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "decision": decision,
        "reason": redact(reason),
        "event_id": event_id,
        "blob": redact(blob) if blob else None,
        "dead_letter_reason": dead_letter_reason,
    }


# -- sweep --------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What a sweep found under the sources and what re-driving those files did."""

    listed: int = 0
    unseen: list[str] = field(default_factory=list)
    """Paths the ledger has no row for (as path or as a sighting): missed events."""
    changed: list[str] = field(default_factory=list)
    """Paths whose row records another size or ETag: overwritten since they were ingested."""
    stalled: list[str] = field(default_factory=list)
    """Paths whose row is `processing` with an expired lease: the worker died."""
    unrouted: list[str] = field(default_factory=list)
    """Paths no route matches (with --routes); not re-driven."""
    stats: RunStats = field(default_factory=RunStats)

    @property
    def ok(self) -> bool:
        """True when every re-driven file was ingested or skipped and none was unrouted."""
        return self.stats.ok and not self.unrouted

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        found = {
            "unseen": self.unseen, "changed": self.changed, "stalled": self.stalled,
            "unrouted": self.unrouted,
        }
        return {
            "listed": self.listed,
            "found": {name: [redact(p) for p in paths] for name, paths in found.items()},
            **self.stats.to_dict(),
        }


def path_key(uri: str, storage: StorageConfig) -> str:
    """One spelling of a file's location, whatever URL form listed it.

    A blob is `account/container/name` (abfss://, https:// and Azurite's
    path-style URLs agree); a local file is its absolute path.
    """
    if is_local(uri):
        return str(local_path(uri))
    from ingest_core.azure.urls import parse_blob_url

    try:
        location = parse_blob_url(uri)
    except ConfigurationError:
        return uri
    account = location.account
    if account is None:
        from ingest_core.azure.settings import account_settings

        try:
            account = account_settings(storage).account_name
        except ConfigurationError:
            account = ""
    return f"{account}/{location.container}/{location.name}"


def sweep(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress
) -> SweepReport:
    """Find files under `sources` the ledger missed, and re-drive them.

    Decided from the listing and one read of the table's ledger rows, without
    hashing: a file is re-driven when no row names its path (as `path` or in
    `seen_paths`), when the row for its path records another size or ETag
    (overwritten), or when that row is `processing` with an expired lease.
    """
    runner = open_runner(config)
    report = SweepReport()
    try:
        try:
            files = runner.list_sources(list(sources))
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
        report.listed = len(files)
        due: list[tuple[IdempotentIngestor, list[SourceFile], str | None]] = []
        for ingestor, group, routed_table in _targets(runner, files, report):
            chosen = _missed(ingestor.ledger, ingestor.table, group, config.storage, report)
            if chosen:
                due.append((ingestor, chosen, routed_table))
        with progress(sum(len(g) for _, g, _ in due)) as advance:
            for ingestor, group, routed_table in due:
                for result in ingestor.ingest(group):
                    if routed_table is not None:
                        result = replace(result, table=routed_table)
                    report.stats.add(result)
                    advance(result)
    finally:
        runner.close()
    return report


def _targets(
    runner: Runner, files: list[SourceFile], report: SweepReport
) -> Iterator[tuple[IdempotentIngestor, list[SourceFile], str | None]]:
    """Each table's ingestor with its files (one group unless routed); notes unrouted files."""
    from ingest_core.ingestor import IdempotentIngestor
    from ingest_core.routed import RoutedIngest

    if isinstance(runner, IdempotentIngestor):
        yield runner, files, None
        return
    assert isinstance(runner, RoutedIngest)
    plan = runner.plan(files)
    report.unrouted.extend(f.uri for f in plan.unrouted)
    for target, group in plan.groups.items():
        yield runner.ingestor(target), group, target.table_uri


SWEEP_ROWS_PER_FILE = 50
"""A sweep reads a table's rows at once while there are at most this many a listed file;
past that, it looks each file up by its path. About what one lookup costs in row reads
(bench/ledger_scale.py), so a sweep never pays more than twice the cheaper way."""


def _missed(
    ledger: BaseLedger,
    table: str,
    files: list[SourceFile],
    storage: StorageConfig,
    report: SweepReport,
) -> list[SourceFile]:
    own: dict[str, list[FileRecord]] = {}
    sighted: set[str] = set()
    budget = SWEEP_ROWS_PER_FILE * len(files)
    rows = ledger.records(table=table, limit=budget + 1)
    if len(rows) > budget:
        # By the listed spelling: a row recorded under another URL form of the file
        # is missed once; its re-drive is a duplicate that records this spelling.
        rows = [row for file in files for row in ledger.by_path(table, file.uri)]
    for row in rows:
        own.setdefault(path_key(row.path, storage), []).append(row)
        sighted.update(path_key(p, storage) for p in row.seen_paths)
    now = ledger.now()
    chosen = []
    for file in files:
        key = path_key(file.uri, storage)
        rows = own.get(key, [])
        if not rows:
            if key not in sighted:
                report.unseen.append(file.uri)
                chosen.append(file)
            continue
        if any(r.status == PROCESSING and not r.lease_live(now) for r in rows):
            report.stalled.append(file.uri)
            chosen.append(file)
        elif not any(_same_version(r, file) for r in rows):
            report.changed.append(file.uri)
            chosen.append(file)
    return chosen


def _same_version(row: FileRecord, file: SourceFile) -> bool:
    """Whether the row was written for the version of the file the listing shows.

    A blob's ETag; a local file's identity (size, mtime, inode: what the local
    source records as its ETag), read with one `stat`; else the size.
    """
    if is_local(file.uri) and row.source_etag is not None:
        from ingest_core.sources.local import _identity

        try:
            return row.source_etag == _identity(local_path(file.uri))
        except FileNotFoundError:
            return True  # deleted since the listing: nothing to re-drive
    if file.etag is not None and row.source_etag is not None:
        return _bare(row.source_etag) == _bare(file.etag)
    return file.size is None or row.size == file.size


def _bare(etag: str) -> str:
    """An ETag without its quotes: a listing gives `0x8D...`, a download `"0x8D..."`."""
    return etag.removeprefix("W/").strip('"')


# -- retry and quarantine -------------------------------------------------------------


@dataclass
class RetryReport:
    """What a retry released and re-drove."""

    released: list[FileRecord] = field(default_factory=list)
    """Quarantined rows turned back into `failed` for this retry."""
    gone: list[FileRecord] = field(default_factory=list)
    """Rows whose recorded path no longer holds a file: land the content again."""
    waiting: list[FileRecord] = field(default_factory=list)
    """Rows not re-driven: held by a live worker, or already done."""
    stats: RunStats = field(default_factory=RunStats)

    @property
    def ok(self) -> bool:
        """True when every re-driven file was ingested or skipped and no path was gone."""
        return self.stats.ok and not self.gone

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "released": [r.sha256 for r in self.released],
            "gone": [{"path": redact(r.path), "sha256": r.sha256} for r in self.gone],
            "waiting": [
                {"path": redact(r.path), "sha256": r.sha256, "status": r.status}
                for r in self.waiting
            ],
            **self.stats.to_dict(),
        }


def retry(
    config: IngestConfig,
    *,
    include_quarantined: bool = False,
    sha256: str | None = None,
    progress: Progress = no_progress,
) -> RetryReport:
    """Re-drive the table's failed and stalled files (one content with `sha256`).

    With `include_quarantined`, quarantined rows are released first (fresh
    attempts), for when the operator has fixed what made them fail.
    """
    from ingest_core.ingestor import IdempotentIngestor

    report = RetryReport()
    with IdempotentIngestor(config=config) as ingestor:
        ledger, table = ingestor.ledger, ingestor.table
        if sha256 is None:
            if include_quarantined:
                for row in ledger.records(table=table, status=QUARANTINED):
                    _release_into(ledger, row, report)
            records = due_for_redrive(ledger, table, config.max_attempts)
        else:
            records = _one_for_retry(ledger, table, sha256.lower(), include_quarantined, report)
        with progress(len(records)) as advance:
            redriven = redrive(ingestor, advance, records)
    report.stats, report.gone = redriven.stats, redriven.gone
    return report


def _one_for_retry(
    ledger: BaseLedger, table: str, sha256: str, include_quarantined: bool, report: RetryReport
) -> list[FileRecord]:
    row = ledger.get(table, sha256)
    if row is None:
        raise ConfigurationError(
            f"no file with sha256 {sha256} in table {table}: check the sha256 "
            "(`ingest quarantine list`, `ingest status`) and --table"
        )
    if row.status == QUARANTINED:
        if not include_quarantined:
            raise ConfigurationError(
                f"{row.path} ({sha256[:12]}) is quarantined: {row.error}; fix the cause, then "
                "retry with --include-quarantined"
            )
        row = _release_into(ledger, row, report)
    if row.status == FAILED or (row.status == PROCESSING and not row.lease_live(ledger.now())):
        return [row]
    report.waiting.append(row)
    return []


def _release_into(ledger: BaseLedger, row: FileRecord, report: RetryReport) -> FileRecord:
    released = ledger.release(row.table, row.sha256) or row
    if released.status == FAILED:
        report.released.append(released)
    return released


def quarantined(config: IngestConfig) -> list[FileRecord]:
    """Quarantined rows, oldest first: of the configured table, or of every table in the ledger."""
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage)
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


# -- show ---------------------------------------------------------------------------


@dataclass
class ShownFile:
    """One ledger row, every path its content was seen under, and what the Delta log says."""

    record: FileRecord
    delta: dict[str, Any]
    """`checked` (table reachable), `in_log` (its transaction id is), `table_version`,
    `version` and `rows` (where it landed), `agrees` (ledger and log say the same),
    `error` (why the table could not be read)."""

    @property
    def paths(self) -> list[str]:
        """The recorded path, then every other path the same bytes were seen under."""
        return [self.record.path, *(p for p in self.record.seen_paths if p != self.record.path)]

    def to_dict(self) -> dict[str, object]:
        """The row's fields, `paths` and `delta`."""
        return {**self.record.to_dict(), "paths": self.paths, "delta": self.delta}


@dataclass
class ShowReport:
    """Everything known about one content (by sha256) or one path."""

    query: str
    kind: Literal["sha256", "path"]
    files: list[ShownFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when something was found and the Delta log agrees with every row checked."""
        return bool(self.files) and all(f.delta.get("agrees", True) for f in self.files)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "query": self.query,
            "kind": self.kind,
            "found": len(self.files),
            "files": [f.to_dict() for f in self.files],
        }


def show(config: IngestConfig, target: str) -> ShowReport:
    """The ledger rows of a sha256 (64 hex digits) or a path, checked against the Delta log.

    Without a table, every table in the ledger is searched.
    """
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage)
    table = table_key(config.table_uri) if config.table_uri else None
    try:
        if SHA256.fullmatch(target):
            sha = target.lower()
            report = ShowReport(query=sha, kind="sha256")
            if table is not None:
                found = ledger.get(table, sha)
                rows = [found] if found is not None else []
            else:
                rows = [r for r in ledger.records() if r.sha256 == sha]
        else:
            report = ShowReport(query=target, kind="path")
            key = path_key(target, config.storage)
            rows = [
                r for r in ledger.records(table=table)
                if key in {path_key(p, config.storage) for p in (r.path, *r.seen_paths)}
            ]
    finally:
        ledger.close()
    report.files = [ShownFile(r, _delta_check(r, config.storage)) for r in rows]
    return report


def _delta_check(row: FileRecord, storage: StorageConfig) -> dict[str, Any]:
    """What the Delta log says of this row's content: is its transaction id there, and where."""
    from ingest_core.routing import UNROUTED_TABLE

    check: dict[str, Any] = {"checked": False, "in_log": None, "version": row.delta_version,
                             "rows": row.rows}
    if row.table == UNROUTED_TABLE:
        return check
    try:
        dt = open_table(row.table, storage)
        if dt is None:
            in_log = False
        else:
            from ingest_core.delta import DeltaTarget, app_id

            in_log = dt.transaction_version(app_id(row.sha256)) is not None
            check["table_version"] = dt.version()
            if in_log and row.delta_version is None:
                landing = DeltaTarget(row.table).locate(dt, row.sha256)
                check.update(version=landing.version, rows=landing.rows)
    except Exception as exc:  # an unreachable table leaves the ledger's word unchecked
        check["error"] = redact(f"{type(exc).__name__}: {exc}")[:300]
        return check
    check.update(checked=True, in_log=in_log, agrees=in_log == (row.status == SUCCEEDED))
    return check

