"""How commands show results: progress bars, summaries and tables (rich, imported lazily)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click

from ingest_core.ledger import FileRecord
from ingest_core.results import IngestResult, RunStats

if TYPE_CHECKING:
    from rich.table import Table

    from ingest_core.ops.history import RunSummary


@contextmanager
def progress(total: int, enabled: bool) -> Iterator[Callable[[IngestResult], None]]:
    """A progress bar on a terminal's stderr; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _result: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TimeRemainingColumn,
    )
    from rich.text import Text

    started = time.monotonic()
    rows = 0

    class Rates(ProgressColumn):
        """Files/s and rows/s since the bar started."""

        def render(self, task: Task) -> Text:
            elapsed = max(time.monotonic() - started, 1e-6)
            return Text(f"{task.completed / elapsed:,.1f} files/s {rows / elapsed:,.0f} rows/s")

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), Rates(), console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task("ingesting", total=total)

        def advance(result: IngestResult) -> None:
            nonlocal rows
            rows += getattr(result, "rows", None) or 0
            bar.advance(task)

        yield advance


def print_summary(stats: RunStats) -> None:
    """Problem files on stderr, then one line of counts, then the run id (stderr)."""
    for result in stats.files:
        if result.status in ("failed", "quarantined", "in_progress", "unrouted"):
            click.echo(f"{result.status}: {result.error or result.path}", err=True)
    counts = ", ".join(f"{n} {status}" for status, n in stats.counts.items() if n)
    kept = ""
    if stats.rescued_rows or stats.bad_rows:
        kept = (f" ({stats.rescued_rows} with rescued values; {stats.bad_rows} bad rows to the "
                "bad-rows table)")
    click.echo(f"{len(stats.files)} files: {counts or 'nothing to do'}; {stats.rows} rows "
               f"written{kept}")
    print_run_id(stats.run_id)


def print_run_id(run_id: str | None) -> None:
    """The run's id on stderr, for `ingest history` and the Delta commits' metadata."""
    if run_id:
        click.echo(f"run id: {run_id}", err=True)


def print_records(rows: Sequence[FileRecord], *, run_ids: bool = False) -> None:
    """Ledger rows as a table (with each row's run id when `run_ids`)."""
    from rich.table import Table
    from rich.text import Text

    columns = ["path", "sha256", "status", "attempt", "rows", "version", "updated", "error"]
    table = Table(*columns[:7], *(["run id"] if run_ids else []), columns[7])
    for r in rows:
        # Text, not str: paths and errors are data, and "[x]" in them is not rich markup
        table.add_row(
            Text(r.path), r.sha256[:12], r.status, str(r.attempt), _text(r.rows),
            _text(r.delta_version), r.updated_at.isoformat(timespec="seconds") if r.updated_at
            else "", *([Text(r.run_id or "-")] if run_ids else []),
            Text(_cut(r.error or "", 120)),
        )
    _print_table(table)
    click.echo(f"{len(rows)} rows")


def print_runs(runs: Sequence[RunSummary]) -> None:
    """Runs as a table, as `ingest history` lists them (newest first)."""
    from rich.table import Table
    from rich.text import Text

    tables = {t for run in runs for t in run.tables}
    table = Table("run id", "started", "finished", "files", "rows", "versions",
                  *(["tables"] if len(tables) > 1 else []))
    for run in runs:
        table.add_row(
            Text(run.run_id or "-"), _when(run.started), _when(run.finished),
            ", ".join(f"{n} {status}" for status, n in run.files.items()), str(run.rows),
            ", ".join(str(v) for v in run.delta_versions),
            *([Text(", ".join(run.tables))] if len(tables) > 1 else []),
        )
    _print_table(table)
    click.echo(f"{len(runs)} runs")


def _print_table(table: Table) -> None:
    from rich.console import Console

    # piped output is not squeezed to 80 columns: keep whole paths greppable
    Console(width=None if sys.stdout.isatty() else 400).print(table)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _cut(text: str, limit: int) -> str:
    """`text`, or its start and a pointer to the whole (`ingest show`, `--json`) when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "… (ingest show SHA for all)"


def _text(value: object) -> str:
    return "" if value is None else str(value)
