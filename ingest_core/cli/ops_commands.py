"""`ingest replay`, `sweep`, `retry`, `quarantine list|release`, `show`, `cleanup`, `maintain`.

Thin: each parses its options, builds the config with `from_env`, calls
`ingest_core.ops` (or `delta.maintain`) and prints the report: one JSON
object with --json, else a table or summary. Exit status as for `ingest run`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import click

from ingest_core.cli.app import EXIT_FILES_NOT_DONE, EXIT_OK, cli
from ingest_core.cli.output import print_records, print_run_id, print_summary, progress
from ingest_core.config import IngestConfig, from_env
from ingest_core.errors import ConfigurationError

if TYPE_CHECKING:
    from ingest_core import ops

Option = Callable[[Callable[..., Any]], Callable[..., Any]]

table_option: Option = click.option(
    "--table", "table_uri", metavar="URI", help="Delta table: a path or abfss:// URI."
)
ledger_option: Option = click.option(
    "--ledger", "ledger_uri", metavar="URI",
    help="sqlite:///path or azure-table://NAME. Default: TABLE.ledger.sqlite beside a local table.",
)
routes_option: Option = click.option(
    "--routes", "routes_file", metavar="FILE",
    help="Routes file (TOML) sending each file to its own table; instead of --table.",
)
json_option: Option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)


def _config(table_uri: str | None, ledger_uri: str | None, **more: Any) -> IngestConfig:
    if table_uri and more.get("routes"):
        raise click.UsageError("give --table or --routes, not both")
    return from_env(require_table=False, table_uri=table_uri, ledger_uri=ledger_uri, **more)


def _progress(enabled: bool) -> Callable[[int], AbstractContextManager[ops.Advance]]:
    return lambda total: progress(total, enabled)


def _emit(as_json: bool, report: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=str))
    else:
        human()


def _status(ok: bool) -> int:
    return EXIT_OK if ok else EXIT_FILES_NOT_DONE


# -- replay -----------------------------------------------------------------------------


@cli.command()
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@click.option("--via", type=click.Choice(["direct", "eventgrid"]), default="direct",
              show_default=True,
              help="direct: ingest here; eventgrid: publish one BlobCreated event per blob "
                   "for the deployed function.")
@click.option("--topic-endpoint", metavar="URL",
              help="Event Grid topic for --via eventgrid (default INGEST_EVENTGRID_TOPIC_ENDPOINT;"
                   " key from INGEST_EVENTGRID_KEY, else Microsoft Entra identity).")
@click.option("--from-dead-letter", "dead_letter", metavar="CONTAINER/PREFIX",
              help="Re-drive the events in Event Grid's dead-letter blobs under it.")
@table_option
@ledger_option
@routes_option
@json_option
def replay(
    sources: tuple[str, ...], via: ops.Via, topic_endpoint: str | None,
    dead_letter: str | None, table_uri: str | None, ledger_uri: str | None,
    routes_file: str | None, as_json: bool,
) -> int:
    """Re-drive every file under each SOURCE (folder or prefix), or dead-lettered events.

    direct ingests here; files already in the table are skipped, so only what
    is missing is written. eventgrid sends the work to the Functions app.
    """
    from ingest_core import ops
    if bool(sources) == bool(dead_letter):
        raise click.UsageError("give SOURCE... or --from-dead-letter CONTAINER/PREFIX (one)")
    config = _config(table_uri, ledger_uri, routes=routes_file,
                     eventgrid_topic_endpoint=topic_endpoint)
    show = _progress(not as_json)
    if dead_letter:
        report = ops.replay_dead_letters(config, dead_letter, via, show)
    elif via == "eventgrid":
        report = ops.publish_sources(config, list(sources), show)
    else:
        report = ops.replay_sources(config, list(sources), show)
    _emit(as_json, report, lambda: _print_replay(report))
    return _status(report.ok)


def _print_replay(report: ops.ReplayReport) -> None:
    for dropped in report.dropped:
        click.echo(f"{dropped['decision']}: {dropped['reason']}", err=True)
    for url in report.gone:
        click.echo(f"gone: {url}: no such blob any more; land it again to ingest it", err=True)
    if report.error:
        click.echo(f"error: {report.error}", err=True)
    if report.via == "eventgrid":
        click.echo(f"{len(report.published)} events published; {len(report.dropped)} dropped")
        print_run_id(report.stats.run_id)
    else:
        print_summary(report.stats)


# -- sweep ------------------------------------------------------------------------------


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@table_option
@ledger_option
@routes_option
@json_option
def sweep(
    sources: tuple[str, ...], table_uri: str | None, ledger_uri: str | None,
    routes_file: str | None, as_json: bool,
) -> int:
    """Re-drive files under SOURCE the ledger missed: never seen, changed, or lease expired.

    Decided from the listing and the ledger, without reading the files.
    """
    from ingest_core import ops
    config = _config(table_uri, ledger_uri, routes=routes_file)
    report = ops.sweep(config, list(sources), _progress(not as_json))

    def human() -> None:
        for label in ("unseen", "changed", "stalled", "unrouted"):
            for path in getattr(report, label):
                click.echo(f"{label}: {path}", err=True)
        click.echo(
            f"{report.listed} files listed: {len(report.unseen)} never seen, "
            f"{len(report.changed)} changed, {len(report.stalled)} stalled, "
            f"{len(report.unrouted)} unrouted"
        )
        print_summary(report.stats)

    _emit(as_json, report, human)
    return _status(report.ok)


# -- retry and quarantine ------------------------------------------------------------------


@cli.command()
@click.option("--include-quarantined", is_flag=True,
              help="Release quarantined files first (after fixing their cause), then retry them.")
@click.option("--sha256", "sha256", metavar="S",
              help="Only the file with this content hash (or a unique prefix of 8+ digits).")
@click.option("--forget-gone", is_flag=True,
              help="Close rows whose file was deleted (gone) as quarantined, with the reason.")
@table_option
@ledger_option
@json_option
def retry(
    include_quarantined: bool, sha256: str | None, forget_gone: bool, table_uri: str | None,
    ledger_uri: str | None, as_json: bool,
) -> int:
    """Re-drive failed files and files whose worker died, by their recorded path."""
    from ingest_core import ops
    from ingest_core.ops.lookup import SHA256_PREFIX, expand_sha256

    config = _config(table_uri, ledger_uri)
    if not config.table_uri:
        raise ConfigurationError("no table: pass --table URI or set INGEST_TABLE_URI")
    if sha256 is not None:
        if not SHA256_PREFIX.fullmatch(sha256):
            raise click.UsageError(f"--sha256 {sha256[:80]!r}: give 8 to 64 hex digits")
        sha256 = expand_sha256(config, sha256) or sha256.lower()
    report = ops.retry(
        config, include_quarantined=include_quarantined, sha256=sha256,
        forget_gone=forget_gone, progress=_progress(not as_json),
    )

    def human() -> None:
        for row in report.released:
            click.echo(f"released: {row.path} ({row.sha256[:12]})", err=True)
        dismissed = {r.sha256 for r in report.dismissed}
        for row in report.gone:
            if row.sha256 in dismissed:
                click.echo(f"dismissed: {row.path} ({row.sha256[:12]}): no file there any "
                           "more; closed as quarantined", err=True)
            else:
                click.echo(f"gone: {row.path} ({row.sha256[:12]}): no file there any more; "
                           "land the content again to ingest it, or dismiss it with "
                           "--forget-gone", err=True)
        for row in report.waiting:
            click.echo(f"not retried: {row.path} ({row.sha256[:12]}) is {row.status}", err=True)
        print_summary(report.stats)

    _emit(as_json, report, human)
    return _status(report.ok)


@cli.group()
def quarantine() -> None:
    """Quarantined files: why they were set aside, and releasing them for the next retry."""


@quarantine.command("list")
@table_option
@ledger_option
@json_option
def quarantine_list(table_uri: str | None, ledger_uri: str | None, as_json: bool) -> int:
    """Show quarantined files with the reason (of --table, else of every table in the ledger)."""
    from ingest_core import ops
    rows = ops.quarantined(_config(table_uri, ledger_uri))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows]))
    else:
        print_records(rows)
    return EXIT_OK


@quarantine.command("release")
@click.argument("sha256", metavar="SHA256")
@table_option
@ledger_option
@json_option
def quarantine_release(
    sha256: str, table_uri: str | None, ledger_uri: str | None, as_json: bool
) -> int:
    """Turn a quarantined file back into failed, with fresh attempts, for `ingest retry`."""
    from ingest_core import ops
    from ingest_core.ops.lookup import SHA256_PREFIX, expand_sha256

    config = _config(table_uri, ledger_uri)
    if not SHA256_PREFIX.fullmatch(sha256):
        raise click.UsageError(f"{sha256[:80]!r} is not a sha256: give 8 to 64 hex digits")
    full = expand_sha256(config, sha256)
    if full is None:
        click.echo(f"no file with sha256 {sha256.lower()}... in the ledger "
                   f"{config.resolved_ledger_uri()}; `ingest quarantine list` shows the "
                   "quarantined ones", err=True)
        return EXIT_FILES_NOT_DONE
    report = ops.release(config, full)

    def human() -> None:
        record = report.record
        if report.released and record is not None:
            click.echo(f"released {record.path} ({report.sha256[:12]}) in {record.table}; "
                       "`ingest retry` will take it")
        elif record is None:
            click.echo(f"no file with sha256 {report.sha256} in the ledger", err=True)
        else:
            click.echo(f"{record.path} ({report.sha256[:12]}) is {record.status}, "
                       "not quarantined: nothing to release", err=True)

    _emit(as_json, report, human)
    return _status(report.released)


# -- show ---------------------------------------------------------------------------------


@cli.command()
@click.argument("target", metavar="SHA256|PREFIX|PATH")
@table_option
@ledger_option
@json_option
def show(target: str, table_uri: str | None, ledger_uri: str | None, as_json: bool) -> int:
    """Everything known about one file: ledger row, paths seen, Delta version and rows.

    The Delta log is checked when the table can be reached: `in_log` says
    whether the file's transaction id is in it. Exit status 1 when nothing is
    found or the log and the ledger disagree.
    """
    from ingest_core import ops
    from ingest_core.ops.lookup import expand_sha256

    config = _config(table_uri, ledger_uri)
    report = ops.show(config, expand_sha256(config, target) or target)
    _emit(as_json, report, lambda: _print_show(report))
    return _status(report.ok)


def _print_show(report: ops.ShowReport) -> None:
    if not report.files:
        click.echo(f"nothing in the ledger for {report.kind} {report.query}", err=True)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    for shown in report.files:
        table = Table("field", "value", show_header=False)
        record = shown.record.to_dict()
        record.pop("seen_paths", None)
        # Text, not str: paths and errors are data, and "[x]" in them is not rich markup
        for name, value in record.items():
            table.add_row(name, Text("" if value is None else str(value)))
        table.add_row("paths", Text("\n".join(shown.paths)))
        for name, value in shown.delta.items():
            table.add_row(f"delta.{name}", Text("" if value is None else str(value)))
        Console(width=None if sys.stdout.isatty() else 400).print(table)


# -- cleanup ------------------------------------------------------------------------------


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from ingest_core.config import parse_duration

    try:
        return parse_duration(value, "--older-than")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--archive-to", metavar="URI",
              help="Move each cleaned file here, keeping its path below SOURCE "
                   "(a folder for local sources, a Blob URL of the same account for blobs).")
@click.option("--delete", "delete", is_flag=True, help="Delete each cleaned file.")
@click.option("--older-than", metavar="DURATION", callback=_duration,
              help="Only files ingested at least this long ago (7d, 12h, 30m).")
@table_option
@ledger_option
@routes_option
@click.option("--dry-run", is_flag=True, help="Report what would be done; touch nothing.")
@json_option
def cleanup(
    sources: tuple[str, ...], archive_to: str | None, delete: bool, older_than: float | None,
    table_uri: str | None, ledger_uri: str | None, routes_file: str | None, dry_run: bool,
    as_json: bool,
) -> int:
    """Archive or delete files under SOURCE whose content the table already holds.

    Only files the ledger records as succeeded, with the very bytes ingested
    (same ETag for blobs, same size and modification identity for local files),
    are touched; any other file is kept and reported with the reason. The
    ledger is not changed: ingesting the archive again is a skip.
    """
    from ingest_core import ops
    if bool(archive_to) == delete:
        raise click.UsageError("give --archive-to URI or --delete (one)")
    config = _config(table_uri, ledger_uri, routes=routes_file)
    report = ops.cleanup(
        config, list(sources), archive_to=archive_to, older_than=older_than, dry_run=dry_run
    )

    def human() -> None:
        for entry in report.files:
            if entry["outcome"] == "kept":
                click.echo(f"kept: {entry['path']}: {entry['reason']}", err=True)
        would = "would be " if report.dry_run else ""
        click.echo(
            f"{report.count('archived')} {would}archived, {report.count('deleted')} "
            f"{would}deleted, {report.count('kept')} kept"
        )

    _emit(as_json, report, human)
    return _status(report.ok)


# -- maintain -----------------------------------------------------------------------------


@cli.command()
@click.option("--table", "table_uri", metavar="URI", help="Delta table: a path or abfss:// URI.")
@click.option("--compact", is_flag=True, help="Bin-pack small data files.")
@click.option("--checkpoint", is_flag=True, help="Write a checkpoint at the latest version.")
@click.option("--cleanup-logs", is_flag=True,
              help="Remove log files older than the table's log retention (keeps commits fast).")
@click.option("--vacuum", is_flag=True, help="Delete data files unreferenced for --retain-hours.")
@click.option("--retain-hours", type=click.FloatRange(min=0), metavar="N",
              help="Vacuum retention in hours (default and minimum 168 unless --force).")
@click.option("--force", is_flag=True, help="Allow a vacuum retention under 168 hours.")
@json_option
def maintain(
    table_uri: str | None, compact: bool, checkpoint: bool, cleanup_logs: bool, vacuum: bool,
    retain_hours: float | None, force: bool, as_json: bool,
) -> int:
    """Delta upkeep. With no flag: compact, checkpoint and remove expired log files.

    Vacuum only when asked, and never below 168 hours of retention unless --force.
    """
    if retain_hours is not None and not vacuum:
        raise click.UsageError("--retain-hours goes with --vacuum")
    from ingest_core.delta import maintain as delta_maintain

    config = from_env(table_uri=table_uri)
    if not (compact or checkpoint or cleanup_logs or vacuum):
        compact = checkpoint = cleanup_logs = True
    report = delta_maintain.maintain(
        config, compact=compact, checkpoint=checkpoint, cleanup_logs=cleanup_logs, force=force,
        vacuum_hours=(retain_hours if retain_hours is not None else delta_maintain.MIN_VACUUM_HOURS)
        if vacuum else None,
    )
    if report.version is None:
        raise ConfigurationError(f"no Delta table at {config.table_uri}: check --table")

    def human() -> None:
        done = [
            f"compacted ({report.compaction.get('numFilesRemoved', 0)} files into "
            f"{report.compaction.get('numFilesAdded', 0)})" if compact else "",
            f"checkpoint at version {report.checkpoint_version}" if checkpoint else "",
            f"vacuumed {len(report.vacuumed)} files" if report.vacuumed is not None else "",
            "expired log files removed" if report.logs_cleaned else "",
        ]
        click.echo(f"{report.table} at version {report.version}: "
                   + "; ".join(d for d in done if d))

    _emit(as_json, report, human)
    return EXIT_OK

