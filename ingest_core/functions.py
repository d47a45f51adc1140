"""What the Azure Functions app calls: triggers in, ingestion outcomes out to the platform.

Each handler reads the app's configuration (`app_config`, from app settings
through `from_env`), calls the core and maps its outcome to what the platform
should do:

| outcome                        | the function           | why                                    |
| ------------------------------ | ---------------------- | -------------------------------------- |
| ingested, skipped (duplicate)  | returns                | the content is in the table            |
| quarantined (corrupt, schema)  | returns                | a retry cannot help: no poison loop    |
| failed                         | raises                 | the platform retries later             |
| in_progress (blob trigger)     | raises                 | its queue retries later                |
| in_progress (Event Grid)       | returns                | its lease holder finishes it (below)   |
| event ignored, refused, gone   | returns                | nothing to fetch; logged with a reason |

Event Grid waits 30 s for an answer, then delivers the event again: a large
file outlives that window, and each redelivery would find the file held by
the first invocation. The Event Grid trigger therefore answers `in_progress`
with success: the invocation holding the lease finishes the file, and if it
dies its row's lease runs out and the maintenance timer re-drives it (the
ledger's `due` rows). Nothing is lost, and a slow file is not a storm of
failing retries. The blob trigger still raises: its own queue retries.

Every file gets one JSON log line (path, sha256, status, rows, duration,
Delta version), with query strings and keys stripped.

With routes (INGEST_ROUTES) the app routes every blob by `container/blob-name`
to the table its route names (INGEST_TABLE_URI is then not used), and needs a
shared ledger (INGEST_LEDGER_URI). A blob no route matches is `unrouted`:
logged, recorded in the ledger under `unrouted:` and, like a quarantined file,
not retried. The status endpoints then answer across tables, and maintenance
works on every table (see `run_maintenance`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import azure.functions as func

from ingest_core.config import IngestConfig, from_env, table_key
from ingest_core.errors import (
    ConfigurationError,
    IngestError,
    InProgressError,
    LedgerUnavailableError,
    SourceGoneError,
)
from ingest_core.events import LandingPolicy, Verdict, redact, screen_blob, screen_event
from ingest_core.ledger import STATUSES, BaseLedger, open_ledger
from ingest_core.maintenance import RedriveReport, redrive, routed_tables
from ingest_core.results import IngestResult
from ingest_core.routing import Routes, load_routes
from ingest_core.run_ids import new_run_id
from ingest_core.session import Session
from ingest_core.sources import SourceFile

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from ingest_core.delta.maintain import MaintenanceReport
    from ingest_core.ops.cleanup import CleanupReport
    from ingest_core.ops.sweep import SweepReport

logger = logging.getLogger("ingest_core.functions")

SHA256 = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_LOGGED_ERROR = 500
"""Characters of an error message a log line keeps (the ledger row has the whole text)."""
MAX_LOGGED_FILES = 100
"""Files a cleanup log line names (its counts cover all)."""


@functools.cache
def app_config() -> IngestConfig:
    """The app's configuration, read once from the app settings.

    Tests that change the environment call `app_config.cache_clear()`.
    """
    return from_env()


def app_routes(config: IngestConfig) -> Routes | None:
    """The app's routes (INGEST_ROUTES), parsed once per process; None without routes.

    Raises ConfigurationError for bad routes, or when INGEST_LEDGER_URI is
    unset (see `routed_ledger_uri`).
    """
    if not config.routes:
        return None
    routed_ledger_uri(config)
    return parsed_routes(config.routes)


SESSIONS_KEPT = 4
"""Sessions a worker process keeps (one per configuration; more only when settings change)."""
_sessions: dict[IngestConfig, Session] = {}
_sessions_lock = threading.Lock()


def app_session(config: IngestConfig) -> Session:
    """This process's session for `config`, opened once and shared by every invocation.

    Invocations run concurrently on the worker's threads; they share its
    ledger client, its ingestors and each table's group commit, so concurrent
    events share Delta commits and no event loads a table afresh.
    """
    with _sessions_lock:
        session = _sessions.get(config)
        if session is None:
            if len(_sessions) >= SESSIONS_KEPT:
                _sessions.pop(next(iter(_sessions))).close()
            session = _sessions[config] = Session(config, app_routes(config))
        return session


@functools.lru_cache(maxsize=8)
def parsed_routes(value: str) -> Routes:
    """`load_routes(value)` (a routes file's path or its TOML text), once per value.

    Keyed by the setting, so a test that changes INGEST_ROUTES only resets
    `app_config`; `parsed_routes.cache_clear()` re-reads a changed routes file.
    Parsed routes are immutable, so one copy serves every invocation.
    """
    return load_routes(value)


def routed_ledger_uri(config: IngestConfig) -> str:
    """The shared ledger of a routed app; ConfigurationError naming the setting when unset.

    Every routed table's rows, and the unrouted files, live in one ledger so
    that the status endpoints and maintenance can find them.
    """
    if not config.ledger_uri:
        raise ConfigurationError(
            "INGEST_ROUTES is set but INGEST_LEDGER_URI is not: a routed app keeps the rows of "
            "every table, and of unrouted files, in one shared ledger; set INGEST_LEDGER_URI "
            "(e.g. azure-table://ingestledger)"
        )
    return config.ledger_uri


# -- triggers -----------------------------------------------------------------------


def function_run_id(kind: str = "event") -> str:
    """The run id of one invocation (`fn-event-...`) or maintenance tick (`fn-maintenance-...`).

    Generated: the trigger bindings hand the function no invocation id.
    """
    return f"fn-{kind}-{new_run_id()}"


def on_blob_client(client: BlobClient) -> IngestResult | None:
    """Ingest the blob the blob trigger bound: a `BlobClient`, a reference the body streams from.

    The host passes no bytes (SDK-type binding): the blob's size and ETag are
    read once, then its content is downloaded in chunks, pinned to that ETag.
    Returns the result, or None when the blob was not ingested (ignored,
    refused, gone). Raises when the platform should retry.
    """
    from azure.core.exceptions import ResourceNotFoundError

    config = app_config()
    url = client.url.split("?", 1)[0]  # a SAS in the binding's connection is not part of the name
    try:
        properties = client.get_blob_properties()
    except ResourceNotFoundError:
        _log_drop(Verdict("ignore", None, f"{redact(url)}: no such blob (deleted?)"), "blob")
        return None
    verdict = screen_blob(url, properties.size, LandingPolicy.from_config(config))
    file = None
    if verdict.accepted:
        assert verdict.url is not None
        file = SourceFile(
            uri=verdict.url, relative=client.blob_name, size=properties.size,
            etag=properties.etag, client=client, location=verdict.location,
        )
    return _ingest(verdict, config, trigger="blob", file=file)


def on_event(event: func.EventGridEvent | func.CloudEvent) -> IngestResult | None:
    """Ingest the blob of a BlobCreated event (Event Grid schema or CloudEvents).

    Returns the result, or None when the event was dropped (not a completed
    write, zero-length, outside the landing account or containers, blob gone).
    Raises when the platform should retry.
    """
    config = app_config()
    payload = event_payload(event)
    verdict = screen_event(payload, LandingPolicy.from_config(config))
    file = None
    if verdict.accepted and verdict.directory:
        return _ingest_directory(verdict, config)
    if verdict.accepted:
        assert verdict.url is not None
        data = payload.get("data") or {}
        length = data.get("contentLength")
        file = SourceFile(
            uri=verdict.url, relative=verdict.url.rsplit("/", 1)[-1],
            size=length if isinstance(length, int) else None, etag=data.get("eTag"),
            location=verdict.location,
        )
    return _ingest(verdict, config, trigger="event_grid", file=file)


def event_payload(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The event as the dict its schema defines (what `screen_event` reads)."""
    if isinstance(event, func.CloudEvent):
        return {
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "eventType": event.event_type,
        "topic": event.topic,
        "subject": event.subject,
        "data": event.get_json(),
    }


def _ingest(
    verdict: Verdict, config: IngestConfig, *, trigger: str, file: SourceFile | None = None
) -> IngestResult | None:
    if not verdict.accepted:
        _log_drop(verdict, trigger)
        return None
    assert verdict.url is not None and file is not None
    try:
        result: IngestResult | None = app_session(config).ingest_one(
            file, run_id=function_run_id()
        )
    except SourceGoneError:
        result = None
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:MAX_LOGGED_ERROR]
        line = {
            "event": "ingest_error",
            "trigger": trigger,
            "path": redact(verdict.url),
            "error": error,
            "event_id": verdict.event_id,
        }
        logger.error(json.dumps(line))
        raise
    if result is None:
        reason = f"{redact(verdict.url)}: no such blob (deleted?)"
        _log_drop(Verdict("ignore", None, reason, verdict.event_id), trigger)
        return None
    log_result(result, trigger=trigger, event_id=verdict.event_id)
    if not (trigger == "event_grid" and result.status == "in_progress"):
        raise_for_platform(result)
    return result


def _ingest_directory(verdict: Verdict, config: IngestConfig) -> IngestResult | None:
    """A renamed directory: ingest every file below it, one log line each.

    Raises (the platform delivers the event again) when any file should be
    retried; files already in are skips then. Returns the last file's result.
    """
    assert verdict.url is not None
    session = app_session(config)
    results: list[IngestResult] = []
    run_id = function_run_id()
    for file in session.list_sources([verdict.url.rstrip("/") + "/"]):
        try:
            result = session.ingest_one(file, run_id=run_id)
        except SourceGoneError:
            continue
        log_result(result, trigger="event_grid", event_id=verdict.event_id)
        results.append(result)
    for result in results:
        if result.status != "in_progress":
            raise_for_platform(result)
    return results[-1] if results else None


def raise_for_platform(result: IngestResult) -> None:
    """Raise when the platform should deliver the file again (in progress or failed)."""
    if result.status == "in_progress":
        message = result.error or f"{result.path}: another worker is ingesting it; retry later"
        raise InProgressError(redact(message))
    if result.status == "failed":
        message = f"{result.path}: attempt failed, the platform retries it: {result.error}"
        raise IngestError(redact(message))


# -- logging --------------------------------------------------------------------------


def log_result(
    result: IngestResult, *, trigger: str, event_id: str | None = None
) -> dict[str, Any]:
    """Log one JSON line for a file's outcome; returns the fields logged."""
    line: dict[str, Any] = {
        "event": "ingest_file",
        "trigger": trigger,
        "path": redact(result.path),
        "sha256": result.sha256,
        "status": result.status,
        "rows": result.rows,
        "duration_s": round(result.duration_s, 3),
        "delta_version": result.delta_version,
        "size": result.size,
    }
    if event_id:
        line["event_id"] = event_id
    if result.run_id:
        line["run_id"] = result.run_id
    if result.table:
        line["table"] = redact(result.table)
    if result.error:
        line["error"] = redact(result.error)[:MAX_LOGGED_ERROR]
    ok = result.status in ("ingested", "skipped")
    logger.log(logging.INFO if ok else logging.WARNING, json.dumps(line))
    return line


def _log_drop(verdict: Verdict, trigger: str) -> None:
    line = {
        "event": "event_dropped",
        "trigger": trigger,
        "decision": verdict.decision,
        "reason": redact(verdict.reason),
        "event_id": verdict.event_id,
    }
    level = logging.INFO if verdict.decision == "ignore" else logging.WARNING
    logger.log(level, json.dumps(line))


# -- status over HTTP -------------------------------------------------------------------


def file_status(req: func.HttpRequest) -> func.HttpResponse:
    """`GET files/{sha256}`: the ledger row of that content in the app's table.

    200 with the row as JSON; 400 for a malformed sha256; 404 when unknown.
    With routes: 200 with `{"sha256", "files", "count"}`, every row of that
    content in any table (each row names its `table`; one read a table);
    404 when there is none.
    """
    sha = req.route_params.get("sha256", "")
    if not SHA256.fullmatch(sha):
        return _json({"error": f"{sha[:80]!r} is not a sha256: give 64 hex digits"}, 400)
    config = app_config()

    def read_routed(ledger: BaseLedger) -> func.HttpResponse:
        rows = [r.to_dict() for r in ledger.find(sha.lower())]
        if not rows:
            return _json({"error": f"no file with sha256 {sha.lower()} in any table"}, 404)
        return _json({"sha256": sha.lower(), "files": rows, "count": len(rows)}, 200)

    def read(ledger: BaseLedger) -> func.HttpResponse:
        record = ledger.get(table_key(config.table_uri), sha.lower())
        if record is None:
            return _json({"error": f"no file with sha256 {sha.lower()} in this table"}, 404)
        return _json(record.to_dict(), 200)

    return _with_ledger(config, read_routed if config.routes else read)


def list_files(req: func.HttpRequest) -> func.HttpResponse:
    """`GET files?path=...&state=...&limit=...`: ledger rows of the app's table, oldest first.

    `state` is a ledger status (processing, succeeded, failed, quarantined);
    `path` matches the recorded path exactly; at most `limit` rows (default
    100; on Azure Table, when more match, which ones is the store's choice).
    400 for an unknown state or a bad limit. With routes, the rows of every
    table (each names its `table`), the unrouted files' included.
    """
    path = req.params.get("path") or None
    state = req.params.get("state") or None
    if state is not None and state not in STATUSES:
        return _json({"error": f"state {state[:40]!r}: use one of {', '.join(STATUSES)}"}, 400)
    raw_limit = req.params.get("limit") or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return _json({"error": f"limit {raw_limit[:20]!r}: use 1 to {MAX_LIMIT}"}, 400)
    limit = int(raw_limit)
    config = app_config()

    def read(ledger: BaseLedger) -> func.HttpResponse:
        table = None if config.routes else table_key(config.table_uri)
        rows = ledger.records(table=table, status=state, path=path, limit=limit + 1)
        body = {
            "files": [r.to_dict() for r in rows[:limit]],
            "count": min(len(rows), limit),
            "truncated": len(rows) > limit,
        }
        return _json(body, 200)

    return _with_ledger(config, read)


def _with_ledger(
    config: IngestConfig, read: Callable[[BaseLedger], func.HttpResponse]
) -> func.HttpResponse:
    """`read(ledger)` on the app's ledger; 503 when it is unreachable, or a routed app has none."""
    if config.routes:
        try:
            uri = routed_ledger_uri(config)
        except ConfigurationError as exc:
            _log_configuration_error(exc)
            return _json({"error": str(exc)}, 503)
    else:
        uri = config.resolved_ledger_uri()
    try:
        ledger = open_ledger(uri, config.storage)
    except LedgerUnavailableError as exc:
        logger.error(json.dumps({"event": "ledger_unavailable", "error": redact(str(exc))}))
        return _json({"error": "the ledger is unavailable; retry later"}, 503)
    try:
        return read(ledger)
    finally:
        ledger.close()


def _json(body: object, status: int) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json"
    )


# -- maintenance ------------------------------------------------------------------------


def run_maintenance(*, past_due: bool = False) -> list[MaintenanceReport]:
    """Re-drive stuck files, then compact and checkpoint; one log line, and report, per table.

    With INGEST_CLEANUP and INGEST_CLEANUP_AFTER set, the landing containers
    are then cleaned up as `ingest cleanup` would (`cleanup_landing`).

    Without routes: the app's table. With routes: every table `routed_tables`
    names (each table with rows in the shared ledger, and each route's table
    that uses no capture), one after the other: its failed (attempts left) and
    stalled (lease expired) rows are re-driven through the routes, then the
    table is compacted and checkpointed. A table that fails is logged and the
    others are still maintained; the function then raises, naming the tables.
    """
    from ingest_core.delta.maintain import maintain

    config = app_config()
    run_id = function_run_id("maintenance")

    def log(result: IngestResult) -> None:
        log_result(result, trigger="maintenance")

    try:
        routes = app_routes(config)
    except ConfigurationError as exc:
        _log_configuration_error(exc)
        raise
    poison = poison_depth(config)
    if routes is None:
        with Session(config) as session:
            redriven = redrive(session, on_result=log, run_id=run_id)
        report = maintain(config, run_id=run_id)
        _log_maintenance(report, redriven, past_due, poison)
        sweep_landing(config, run_id)
        cleanup_landing(config)
        return [report]
    reports: list[MaintenanceReport] = []
    failed: list[str] = []
    with Session(config, routes) as session:
        for table in routed_tables(routes, session.unrouted_ledger()):
            try:
                redriven = redrive(session, table, log, run_id=run_id)
                report = maintain(config.replace(table_uri=table), run_id=run_id)
            except Exception as exc:
                error = redact(f"{type(exc).__name__}: {exc}")[:MAX_LOGGED_ERROR]
                line = {"event": "maintenance_error", "table": redact(table), "error": error}
                logger.error(json.dumps(line))
                failed.append(redact(table))
                continue
            _log_maintenance(report, redriven, past_due, poison)
            reports.append(report)
    if failed:
        raise IngestError(f"maintenance failed for {', '.join(failed)}; see the log lines")
    sweep_landing(config, run_id)
    cleanup_landing(config)
    return reports


def poison_depth(config: IngestConfig) -> int | None:
    """Messages in the blob trigger's poison queue; None (and a warning) when it cannot be read.

    None without a warning when no storage account is configured at all (a
    local table, no AzureWebJobsStorage): there is no queue to read.
    """
    from ingest_core.ops.poison import poison_depth as depth

    storage = config.trigger_storage or config.storage
    if not (storage.connection_string or storage.account_name):
        return None
    try:
        return depth(config)
    except Exception as exc:  # a gauge: never the reason maintenance fails
        error = redact(f"{type(exc).__name__}: {exc}")[:MAX_LOGGED_ERROR]
        line = {"event": "poison_unreadable", "queue": config.poison_queue, "error": error}
        logger.warning(json.dumps(line))
        return None


_sweep_position = {"skip": 0}
"""Where the next scheduled sweep starts in the listing of INGEST_SWEEP_PREFIXES (this worker
process's memory: a restart starts again at the top)."""


def sweep_landing(config: IngestConfig, run_id: str | None = None) -> SweepReport | None:
    """Re-drive files under INGEST_SWEEP_PREFIXES that no event brought, a window per tick.

    Each tick looks at the next INGEST_SWEEP_MAX_FILES listed files, after
    where the last tick stopped, and wraps around at the end of the listing.
    One `sweep` log line with the counts; a `sweep_error` line (maintenance
    still succeeds) when the prefixes cannot be listed. None when no prefix is set.
    `run_id`: the maintenance tick's (default: a new one).
    """
    if not config.sweep_prefixes:
        return None
    from ingest_core.azure.settings import account_settings
    from ingest_core.ops.sweep import sweep

    skip = _sweep_position["skip"]
    try:
        endpoint = account_settings(config.storage).blob_endpoint
        sources = [p if "://" in p else f"{endpoint}/{p.lstrip('/')}"
                   for p in config.sweep_prefixes]
        report = sweep(config, sources, skip=skip, limit=config.sweep_max_files, run_id=run_id)
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:MAX_LOGGED_ERROR]
        logger.error(json.dumps({"event": "sweep_error", "error": error,
                                 "next": "check INGEST_SWEEP_PREFIXES and the storage access"}))
        return None
    _sweep_position["skip"] = skip + report.listed if report.more else 0
    line = {
        "event": "sweep", "skip": skip, "listed": report.listed, "more": report.more,
        "unseen": len(report.unseen), "changed": len(report.changed),
        "stalled": len(report.stalled), "unrouted": len(report.unrouted),
        "redriven": report.stats.counts, "run_id": report.stats.run_id,
        "files": [redact(p) for p in [*report.unseen, *report.changed, *report.stalled]]
        [:MAX_LOGGED_FILES],
    }
    logger.info(json.dumps(line, default=str))
    return report


def cleanup_landing(config: IngestConfig) -> CleanupReport | None:
    """Archive or delete landed files ingested at least INGEST_CLEANUP_AFTER ago.

    Covers every landing container (`IngestConfig.allowed_containers`); only
    files whose content is `succeeded` with the bytes ingested are touched
    (`ingest_core.ops.cleanup`). One log line with the counts; None when
    INGEST_CLEANUP is not set.
    """
    if config.cleanup is None:
        return None
    from ingest_core.azure.settings import account_settings
    from ingest_core.config import cleanup_action
    from ingest_core.ops.cleanup import cleanup

    _, archive_to = cleanup_action(config.cleanup)
    endpoint = account_settings(config.storage).blob_endpoint
    sources = [f"{endpoint}/{c}/" for c in sorted(config.allowed_containers())]
    report = cleanup(config, sources, archive_to=archive_to, older_than=config.cleanup_after)
    line = {"event": "cleanup", **report.to_dict()}
    line["files"] = [  # the kept ones are many and the same each time: counted only
        {k: redact(v) for k, v in f.items()} for f in report.files if f["outcome"] != "kept"
    ][:MAX_LOGGED_FILES]
    logger.info(json.dumps(line, default=str))
    return report


def _log_maintenance(
    report: MaintenanceReport, redriven: RedriveReport, past_due: bool, poison: int | None = None
) -> None:
    line = {
        "event": "maintenance",
        "past_due": past_due,
        "poison": poison,
        "redriven": redriven.stats.counts,
        "run_id": redriven.stats.run_id,
        "gone": [redact(r.path) for r in redriven.gone],
        **report.to_dict(),
        "table": redact(report.table),
    }
    logger.info(json.dumps(line, default=str))


def _log_configuration_error(exc: ConfigurationError) -> None:
    logger.error(json.dumps({"event": "configuration_error", "error": redact(str(exc))}))
