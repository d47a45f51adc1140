"""`ingest run` and `ingest status`."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator

import click

from ingest_core.cli.app import EXIT_FILES_NOT_DONE, EXIT_INTERRUPTED, EXIT_OK, cli
from ingest_core.cli.logs import log_file
from ingest_core.cli.output import print_records, print_runs, print_summary, progress
from ingest_core.cli.read_flags import read_flags, with_read_flags
from ingest_core.config import IngestConfig, from_env, split_names, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.ledger import STATUSES, open_ledger
from ingest_core.results import IngestResult, RunStats
from ingest_core.run_ids import new_run_id


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--table", "table_uri", metavar="URI", help="Delta table: a path or abfss:// URI.")
@click.option("--routes", "routes_file", metavar="FILE",
              help="Routes file (TOML) sending each file to its own table; instead of --table.")
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
              help="Small files per Delta commit (default 500).")
@click.option("--batch-seconds", type=click.FloatRange(min=0),
              help="Commit a batch once its first file has waited this long (default 10).")
@click.option("--mode", type=click.Choice(["append", "merge"]),
              help="append (default) adds every file's rows; merge upserts them on --merge-keys, "
                   "one commit per file in arrival order.")
@click.option("--merge-keys", metavar="A,B", help="Key columns of a merge (with --mode merge).")
@click.option("--merge-sequence", metavar="COL",
              help="A row replaces the stored one only if its COL is greater or equal; within a "
                   "file the highest wins, then the last.")
@click.option("--merge-delete-when", metavar="PREDICATE",
              help="SQL over the incoming row (\"op = 'D'\"): matching rows delete the stored one.")
@read_flags
@click.option("--dry-run", is_flag=True,
              help="List what would be ingested or skipped (hashes and ledger lookups only; "
                   "no claims, no writes).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def run(
    sources: tuple[str, ...],
    table_uri: str | None,
    routes_file: str | None,
    ledger_uri: str | None,
    fmt: str | None,
    workers: int | None,
    transform: str | None,
    schema_mode: str | None,
    no_lineage: bool,
    lease_seconds: float | None,
    batch_files: int | None,
    batch_seconds: float | None,
    mode: str | None,
    merge_keys: str | None,
    merge_sequence: str | None,
    merge_delete_when: str | None,
    dry_run: bool,
    as_json: bool,
    read_flags: dict[str, object],
) -> int:
    """Ingest every file under each SOURCE (a file or folder, recursive) into --table.

    With --routes (or INGEST_ROUTES), each file goes to the table of the first
    route matching its path below SOURCE; files no route matches are reported
    as unrouted (exit status 1).
    """
    if table_uri and routes_file:
        raise click.UsageError("give --table or --routes, not both")
    config = from_env(
        require_table=False,
        table_uri=table_uri,
        routes=routes_file,
        ledger_uri=ledger_uri,
        format=fmt,
        workers=workers,
        transform=transform,
        schema_mode=schema_mode,
        lineage=False if no_lineage else None,
        lease_seconds=lease_seconds,
        batch_files=batch_files,
        batch_seconds=batch_seconds,
        mode=mode,
        merge_keys=split_names(merge_keys) if merge_keys is not None else None,
        merge_sequence=merge_sequence,
        merge_delete_when=merge_delete_when,
    )
    config = with_read_flags(config, read_flags)
    if config.routes and not table_uri:  # a --table flag wins over INGEST_ROUTES, not the variable
        config = config.replace(table_uri="")
    if dry_run:
        return _dry_run(config, list(sources), as_json)
    run_id = new_run_id()
    try:
        with _terminate_as_interrupt():
            stats = ingest_sources(config, list(sources), show_progress=not as_json,
                                   run_id=run_id)
    except RunInterrupted as stop:
        if as_json:
            click.echo(json.dumps({**stop.stats.to_dict(), "run_id": run_id, "interrupted": True,
                                   "given_back": stop.given_back}))
        click.echo(stop.summary(), err=True)
        click.echo(f"run id: {run_id}", err=True)
        return EXIT_INTERRUPTED
    if as_json:
        click.echo(json.dumps(stats.to_dict()))
    else:
        print_summary(stats)
    return EXIT_OK if stats.ok else EXIT_FILES_NOT_DONE


def _dry_run(config: IngestConfig, sources: list[str], as_json: bool) -> int:
    from ingest_core.ops.dry_run import dry_run

    report = dry_run(config, sources, lambda total: progress(total, not as_json))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return EXIT_OK
    for planned in report.files:
        sha = (planned.sha256 or "-")[:12]
        where = "" if report.table else f"  -> {planned.table or '-'}: {planned.reason}"
        click.echo(f"{planned.action:<12} {sha:<12}  {planned.path}{where}")
    unrouted = f", {report.count('unrouted')} unrouted" if report.count("unrouted") else ""
    click.echo(f"dry run, nothing written: {report.count('ingest')} to ingest, "
               f"{report.count('skip')} to skip, {report.count('in_progress')} in progress "
               f"elsewhere, {report.count('quarantined')} quarantined{unrouted}", err=True)
    return EXIT_OK


def ingest_sources(
    config: IngestConfig, sources: list[str], *, show_progress: bool, run_id: str | None = None
) -> RunStats:
    """List the sources and ingest them into the table, or the tables their routes name.

    Every ledger row and Delta commit of the run carries `run_id` (default: a new
    one); each settled file is logged as an `ingest_file` line carrying it.
    """
    from ingest_core.session import Session

    with Session.of(config) as session:
        try:
            files = session.list_sources(sources)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
        done = RunStats()
        run = run_id or new_run_id()
        try:
            with progress(len(files), show_progress) as advance:

                def settled(result: IngestResult) -> None:
                    done.add(result)
                    log_file(result, run)
                    advance(result)

                return session.run(files, settled, run_id=run)
        except KeyboardInterrupt:
            with _second_interrupt_waits():
                given_back = session.give_back_claims(
                    "the run was interrupted (SIGINT/SIGTERM) before this file settled; "
                    "the next run takes it at once"
                )
            raise RunInterrupted(done, given_back, len(files)) from None
        except Exception as exc:  # the run stopped (a table that refuses, a bug): not the files'
            session.give_back_claims(f"the run stopped before this file settled: {exc}")
            raise


class RunInterrupted(Exception):
    """`ingest run` stopped by SIGINT or SIGTERM; its held claims were given back."""

    def __init__(self, stats: RunStats, given_back: int, listed: int) -> None:
        super().__init__("interrupted")
        self.stats = stats
        self.given_back = given_back
        self.listed = listed

    def summary(self) -> str:
        """One line: what settled before the interrupt, and what was given back."""
        counts = ", ".join(f"{n} {status}" for status, n in self.stats.counts.items() if n)
        return (
            f"ingest: interrupted after {len(self.stats.files)} of {self.listed} files settled "
            f"({counts or 'none'}; {self.stats.rows} rows written); "
            f"{f'{self.given_back} claimed files' if self.given_back else 'the claims held'} "
            "given back, no attempt counted: run the same command again to finish"
        )


@contextlib.contextmanager
def _second_interrupt_waits() -> Iterator[None]:
    """Within: Ctrl-C and SIGTERM are ignored (the claims are being given back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM interrupts like Ctrl-C (KeyboardInterrupt), so claims are given back."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command()
@click.option("--ledger", "ledger_uri", metavar="URI", help="The ledger to read.")
@click.option("--table", "table_uri", metavar="URI",
              help="Only this table's rows (and its default ledger if --ledger is not given).")
@click.option("--state", type=click.Choice(STATUSES), help="Only rows in this state.")
@click.option("--path", help="Only rows seen at this path: relative, ~, a blob URL or "
              "container/name.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def status(
    ledger_uri: str | None, table_uri: str | None, state: str | None, path: str | None,
    as_json: bool,
) -> int:
    """Show ledger rows: path, sha256, status, attempts, rows, delta version, error, times."""
    from ingest_core.ops.lookup import path_matcher

    config = from_env(require_table=False, table_uri=table_uri, ledger_uri=ledger_uri)
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    try:
        rows = ledger.records(table=table_key(table_uri) if table_uri else None, status=state)
        if path is not None:
            matches = path_matcher(path, config.storage)
            rows = [r for r in rows if any(matches(p) for p in (r.path, *r.seen_paths))]
    finally:
        ledger.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows]))
    else:
        print_records(rows)
    return EXIT_OK


@cli.command()
@click.option("--table", "table_uri", metavar="URI",
              help="Only this table's rows (and its default ledger if --ledger is not given).")
@click.option("--routes", "routes_file", metavar="FILE",
              help="Every table of this routes file (TOML), rows tagged with their table; "
                   "instead of --table.")
@click.option("--ledger", "ledger_uri", metavar="URI", help="The ledger to read.")
@click.option("--since", metavar="WHEN", help="From this time: ISO 8601 or an age (6h, 2d).")
@click.option("--until", metavar="WHEN", help="Up to this time: ISO 8601 or an age.")
@click.option("--path", "path_glob", metavar="GLOB", help="Only files whose path matches.")
@click.option("--state", type=click.Choice(STATUSES), help="Only rows in this state.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="At most N runs (--by run) or rows (--by file).")
@click.option("--by", type=click.Choice(["run", "file"]), default="run", show_default=True,
              help="One row per run, or one per file.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON object on stdout: {"runs": [...]} or {"files": [...]}.')
def history(
    table_uri: str | None, routes_file: str | None, ledger_uri: str | None, since: str | None,
    until: str | None, path_glob: str | None, state: str | None, limit: int | None, by: str,
    as_json: bool,
) -> int:
    """Load history from the ledger (read-only), newest first.

    By run (default): run id, started, finished, files by outcome, rows, Delta
    versions; rows written before run ids were kept show under run id "-".
    By file: path, sha256, status, rows, Delta version, run id, when. With
    --routes (or INGEST_ROUTES), every routed table's rows, tagged with their table.
    """
    from ingest_core.ops.history import history as load_history
    from ingest_core.ops.history import parse_when

    if table_uri and routes_file:
        raise click.UsageError("give --table or --routes, not both")
    config = from_env(require_table=False, table_uri=table_uri, ledger_uri=ledger_uri,
                      routes=routes_file)
    report = load_history(  # a --table wins over INGEST_ROUTES
        config, since=parse_when(since) if since else None,
        until=parse_when(until) if until else None, path=path_glob, state=state, limit=limit,
        by="file" if by == "file" else "run",
    )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    elif report.by == "file":
        print_records(report.files, run_ids=True)
    else:
        print_runs(report.runs)
    return EXIT_OK
