"""`ingest reconcile`: files the ledger calls ingested whose rows the table no longer holds.

Thin, as `ops_commands`: parse, build the config, call `ops.reconcile`, print.
Exit status: 0 nothing missing (or `--apply` reopened every missing file), 1
files missing and not applied (or a table that could not be checked), 2 usage
or configuration.
"""

from __future__ import annotations

import click

from ingest_core.cli.app import cli
from ingest_core.cli.ops_commands import (
    _config,
    _emit,
    _progress,
    _status,
    json_option,
    ledger_option,
    routes_option,
    table_option,
)
from ingest_core.cli.output import print_summary


@cli.command()
@table_option
@routes_option
@ledger_option
@click.option("--apply", "apply", is_flag=True,
              help="Reopen the missing files, record the table's current id, and ingest "
                   "them again now (exactly once).")
@json_option
def reconcile(
    table_uri: str | None, routes_file: str | None, ledger_uri: str | None, apply: bool,
    as_json: bool,
) -> int:
    """List files the ledger records as ingested whose rows the table lost.

    After a restore, a delete or overwrite of a version's rows, or a table
    deleted or replaced while the ledger lived on. Read from the table's
    lineage column in one scan. --apply reopens them and ingests them again.
    """
    from ingest_core import ops

    config = _config(table_uri, ledger_uri, routes=routes_file)
    report = ops.reconcile(config, apply=apply, progress=_progress(not as_json))

    def human() -> None:
        reopened = {(r.table, r.sha256) for t in report.tables for r in t.reopened}
        for check in report.tables:
            if check.reason:
                click.echo(f"{check.state}: {check.reason}", err=True)
            if check.state == "replaced" and not apply and not check.missing:
                click.echo(f"  run `ingest reconcile --table {check.table} --apply` to record "
                           "the new table in the ledger", err=True)
        for row in report.missing:
            mark = "reopened" if (row.table, row.sha256) in reopened else "missing"
            click.echo(f"{mark}: {row.path} ({row.sha256[:12]}), was version {row.delta_version}")
        for check in report.tables:
            for row, left in check.partial:
                click.echo(f"partial: {row.path} ({row.sha256[:12]}): {left} of its {row.rows} "
                           "rows are left; not reopened (a re-ingest would duplicate them): "
                           "delete what is left, then `ingest reconcile --apply`", err=True)
        for row in report.gone:
            click.echo(f"gone: {row.path} ({row.sha256[:12]}): no file there any more; land "
                       "the content again to ingest it (its row stays reopened)", err=True)
        if report.stats.counts.get("unrouted"):
            click.echo("unrouted: a local file re-driven by its path alone is routed by its "
                       "name; its row stays reopened: run `ingest replay SOURCE --routes FILE` "
                       "on its landing folder to ingest it", err=True)
        if apply and report.stats.files:
            print_summary(report.stats)
        elif report.missing and not apply:
            click.echo(f"{len(report.missing)} file(s) missing from the table; run again with "
                       "--apply to ingest them again", err=True)
        elif not report.missing and not report.unchecked:
            click.echo("nothing missing: the table holds every file the ledger records")

    _emit(as_json, report, human)
    return _status(report.ok)
