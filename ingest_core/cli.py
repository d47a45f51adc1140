"""The `ingest` command line: parse, build the config, call the core, report.

Exit status: 0 when every file was ingested or skipped; 1 when any failed, was
quarantined or is in progress elsewhere; 2 for usage or configuration errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from ingest_core.config import IngestConfig, from_env, table_key
from ingest_core.errors import ConfigurationError, LedgerUnavailableError
from ingest_core.ledger import STATUSES, FileRecord, open_ledger
from ingest_core.results import IngestResult, RunStats

EXIT_OK, EXIT_FILES_NOT_DONE, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Ingest landed files into Delta Lake tables, each distinct content exactly once.

    The ledger (SQLite by default, Azure Table in production) records every file
    by the SHA-256 of its bytes, so reruns, redelivered events and racing workers
    never write the same content twice. Settings may also come from INGEST_*
    environment variables (see the README); flags win.
    """


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--table", "table_uri", metavar="URI", help="Delta table: a path or abfss:// URI.")
@click.option(
    "--ledger", "ledger_uri", metavar="URI",
    help="sqlite:///path or azure-table://NAME. Default: TABLE.ledger.sqlite beside a local table.",
)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "jsonl"]),
              help="Parse every file as this format instead of going by extension.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default 1).")
@click.option("--transform", metavar="MODULE:FUNCTION",
              help="Callable taking and returning Arrow data, applied to every file.")
@click.option("--schema-mode", type=click.Choice(["merge", "strict"]),
              help="merge (default) adds new columns; strict quarantines files that bring any.")
@click.option("--no-lineage", is_flag=True,
              help="Do not add _ingest_file, _ingest_sha256 and _ingested_at columns.")
@click.option("--lease-seconds", type=click.FloatRange(min=1),
              help="Claim lease (default 60 s), renewed while a file is worked on.")
@click.option("--batch-files", type=click.IntRange(min=1),
              help="Small files per Delta commit (default 200).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def run(
    sources: tuple[str, ...],
    table_uri: str | None,
    ledger_uri: str | None,
    fmt: str | None,
    workers: int | None,
    transform: str | None,
    schema_mode: str | None,
    no_lineage: bool,
    lease_seconds: float | None,
    batch_files: int | None,
    as_json: bool,
) -> int:
    """Ingest every file under each SOURCE (a file or folder, recursive) into --table."""
    config = from_env(
        table_uri=table_uri,
        ledger_uri=ledger_uri,
        format=fmt,
        workers=workers,
        transform=transform,
        schema_mode=schema_mode,
        lineage=False if no_lineage else None,
        lease_seconds=lease_seconds,
        batch_files=batch_files,
    )
    stats = ingest_sources(config, list(sources), show_progress=not as_json)
    if as_json:
        click.echo(json.dumps(stats.to_dict()))
    else:
        _print_summary(stats)
    return EXIT_OK if stats.ok else EXIT_FILES_NOT_DONE


def ingest_sources(config: IngestConfig, sources: list[str], *, show_progress: bool) -> RunStats:
    """List the sources and ingest them, in this process or a pool of workers."""
    from ingest_core.ingestor import IdempotentIngestor

    with IdempotentIngestor(config=config) as ingestor:
        try:
            files = ingestor.list_sources(sources)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
        with _progress(len(files), show_progress) as advance:
            if config.workers > 1 and len(files) > 1:
                from ingest_core.parallel import run_parallel

                return run_parallel(config, files, advance)
            return ingestor.run(files, advance)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[IngestResult], None]]:
    """A progress bar on a terminal's stderr; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _result: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task("ingesting", total=total)
        yield lambda _result: progress.advance(task)


def _print_summary(stats: RunStats) -> None:
    for result in stats.files:
        if result.status in ("failed", "quarantined", "in_progress"):
            click.echo(f"{result.status}: {result.error or result.path}", err=True)
    counts = ", ".join(f"{n} {status}" for status, n in stats.counts.items() if n)
    click.echo(f"{len(stats.files)} files: {counts or 'nothing to do'}; {stats.rows} rows written")


@cli.command()
@click.option("--ledger", "ledger_uri", metavar="URI", help="The ledger to read.")
@click.option("--table", "table_uri", metavar="URI",
              help="Only this table's rows (and its default ledger if --ledger is not given).")
@click.option("--state", type=click.Choice(STATUSES), help="Only rows in this state.")
@click.option("--path", help="Only rows whose path is this.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def status(
    ledger_uri: str | None, table_uri: str | None, state: str | None, path: str | None,
    as_json: bool,
) -> int:
    """Show ledger rows: path, sha256, status, attempts, rows, delta version, error, times."""
    config = from_env(require_table=False, table_uri=table_uri, ledger_uri=ledger_uri)
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage)
    try:
        rows = ledger.records(
            table=table_key(table_uri) if table_uri else None, status=state, path=path
        )
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows]))
    else:
        _print_records(rows)
    return EXIT_OK


def _print_records(rows: Sequence[FileRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("path", "sha256", "status", "attempt", "rows", "version", "updated", "error")
    for r in rows:
        table.add_row(
            r.path, r.sha256[:12], r.status, str(r.attempt), _text(r.rows),
            _text(r.delta_version), r.updated_at.isoformat(timespec="seconds") if r.updated_at
            else "", (r.error or "")[:120],
        )
    # piped output is not squeezed to 80 columns: keep whole paths greppable
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    click.echo(f"{len(rows)} rows")


def _text(value: object) -> str:
    return "" if value is None else str(value)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (no traceback for user errors)."""
    try:
        result: Any = cli.main(args=argv, prog_name="ingest", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except click.Abort:
        return EXIT_FILES_NOT_DONE
    except (ConfigurationError, LedgerUnavailableError) as exc:
        click.echo(f"ingest: error: {exc}", err=True)
        return EXIT_USAGE
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point.

    Leaves through `os._exit` after flushing: Arrow's thread pools can abort
    a normally exiting process ("terminate called without an active
    exception", status 134), which would replace the real exit status.
    """
    code = run_cli()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
