"""`ingest poison list|replay`: the Functions blob trigger's poison queue.

Thin, as the other commands: options -> `from_env` -> `ingest_core.ops.poison`
-> one JSON object with --json, else lines. Exit status: 0 when every message's
file was ingested or skipped, 1 otherwise, 2 for usage or configuration errors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ingest_core.cli.app import EXIT_FILES_NOT_DONE, EXIT_OK, cli
from ingest_core.cli.output import print_summary, progress
from ingest_core.config import IngestConfig, StorageConfig, from_env

if TYPE_CHECKING:
    from ingest_core.ops.poison import PoisonMessage

POISON_QUEUE = IngestConfig.poison_queue


def _config(connection: str | None, **more: Any) -> IngestConfig:
    if more.get("table_uri") and more.get("routes"):
        raise click.UsageError("give --table or --routes, not both")
    config = from_env(require_table=False, **more)
    if connection:
        config = config.replace(trigger_storage=StorageConfig(
            connection_string=connection, proxies=config.storage.proxies,
        ))
    return config


def _line(message: PoisonMessage) -> str:
    where = message.url or f"(undecodable: {message.error})"
    inserted = message.inserted_on.isoformat(timespec="seconds") if message.inserted_on else "-"
    return f"{where}  dequeued {message.dequeue_count}x  inserted {inserted}"


@cli.group()
def poison() -> None:
    """The blob trigger's poison queue: blobs whose invocations failed too often.

    The Functions host moves a blob trigger message to webjobs-blobtrigger-poison
    in its own storage account (AzureWebJobsStorage) after poisonBlobThreshold
    failures; nothing runs it again until `ingest poison replay` does.
    """


connection_option = click.option(
    "--connection", metavar="STRING",
    help="The Functions app's storage connection string (AzureWebJobsStorage). Default: "
         "INGEST_TRIGGER_STORAGE, else AzureWebJobsStorage, else INGEST_STORAGE_CONNECTION.",
)
queue_option = click.option(
    "--queue", metavar="NAME",
    help=f"The poison queue's name. Default: INGEST_POISON_QUEUE, else {POISON_QUEUE}.",
)


@poison.command("list")
@connection_option
@queue_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def list_command(connection: str | None, queue: str | None, as_json: bool) -> int:
    """Show the first messages (up to 32, the queue's peek limit) and the queue's depth.

    Changes nothing: a peek does not hide or count a message.
    """
    from ingest_core.ops.poison import list_poison

    report = list_poison(_config(connection), queue)
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=str))
        return EXIT_OK
    for message in report.messages:
        click.echo(_line(message))
    more = report.depth - len(report.messages)
    click.echo(f"{report.depth} messages in {report.queue}" + (f" ({more} not shown)" if more > 0
                                                          else ""))
    return EXIT_OK


@poison.command("replay")
@connection_option
@queue_option
@click.option("--table", "table_uri", metavar="URI", help="Delta table: a path or abfss:// URI.")
@click.option("--ledger", "ledger_uri", metavar="URI",
              help="sqlite:///path or azure-table://NAME.")
@click.option("--routes", "routes_file", metavar="FILE",
              help="Routes file (TOML) sending each file to its own table; instead of --table.")
@click.option("--max", "limit", type=click.IntRange(min=1), metavar="N",
              help="Re-drive at most N messages (default: all).")
@click.option("--visibility-timeout", type=click.IntRange(min=30, max=7 * 24 * 3600),
              default=600, show_default=True, metavar="SECONDS",
              help="How long received messages stay hidden while their files are ingested.")
@click.option("--drop-gone", is_flag=True,
              help="Delete messages whose blob no longer exists (default: keep and report them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def replay_command(
    connection: str | None, queue: str | None, table_uri: str | None, ledger_uri: str | None,
    routes_file: str | None, limit: int | None, visibility_timeout: int, drop_gone: bool,
    as_json: bool,
) -> int:
    """Ingest each poison message's blob here, exactly once, and delete settled messages.

    A message is deleted once its file was ingested, skipped (already in the
    table) or quarantined (then see `ingest quarantine list`). It is kept when
    the file failed, the blob is gone (unless --drop-gone), or the message
    could not be decoded. Exit 0 only when every file was ingested or skipped.
    """
    from ingest_core.ops.poison import replay_poison

    config = _config(connection, table_uri=table_uri, ledger_uri=ledger_uri,
                     routes=routes_file)
    report = replay_poison(
        config, queue, limit=limit, visibility_timeout=visibility_timeout, drop_gone=drop_gone,
        progress=lambda total: progress(total, not as_json),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=str))
    else:
        for message in report.messages:
            if message.outcome not in ("ingested", "skipped"):
                kept = "deleted" if message.deleted else "kept"
                click.echo(f"{message.outcome} ({kept}): {message.url or message.id}: "
                           f"{message.error or ''}".rstrip(": "), err=True)
        print_summary(report.stats)
        deleted = sum(m.deleted for m in report.messages)
        click.echo(f"{len(report.messages)} messages: {deleted} deleted, "
                   f"{len(report.messages) - deleted} kept in {report.queue}")
    return EXIT_OK if report.ok else EXIT_FILES_NOT_DONE
