"""`ingest routes check` and `ingest routes explain`, and the routed side of `ingest run`."""

from __future__ import annotations

import json

import click

from ingest_core.cli.app import EXIT_FILES_NOT_DONE, EXIT_OK, EXIT_USAGE, cli
from ingest_core.config import from_env
from ingest_core.errors import ConfigurationError
from ingest_core.sources import SourceFile


@cli.group()
def routes() -> None:
    """Routes files: many feeds from one landing zone, each to its own Delta table."""


@routes.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def check(file: str, as_json: bool) -> int:
    """Validate a routes FILE: TOML syntax, keys, patterns, table URIs, transforms.

    Each problem is printed as FILE:LINE: message. Exit status 0 when the file
    is valid, 2 when it is not.
    """
    from ingest_core.routing import check_routes, read_routes_file

    found, problems = check_routes(read_routes_file(file), file)
    if as_json:
        click.echo(json.dumps({
            "file": file,
            "ok": not problems,
            "routes": [r.to_dict() for r in found.routes] if found else [],
            "problems": [{"line": p.line, "message": p.message} for p in problems],
        }))
    elif found is not None:
        for route in found.routes:
            click.echo(f"{route.label}: {route.match} -> {route.table}")
        click.echo(f"{file}: {len(found.routes)} routes, no problems")
    else:
        for problem in problems:
            click.echo(problem.describe(file), err=True)
        click.echo(f"{file}: {len(problems)} problems", err=True)
    return EXIT_OK if not problems else EXIT_USAGE


@routes.command()
@click.argument("path")
@click.option("--routes", "routes_file", metavar="FILE",
              help="The routes file (default: INGEST_ROUTES).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def explain(path: str, routes_file: str | None, as_json: bool) -> int:
    """Say which route PATH takes and why: each route tried, in order, until one matches.

    PATH is what routes match: a path below the SOURCE (orders/2026/a.parquet),
    or a blob URL (matched as container/blob-name). Exit status 0 when a route
    matches, 1 when the file would be unrouted.
    """
    from ingest_core.routing import load_routes, routing_path

    config = from_env(require_table=False, routes=routes_file)
    if not config.routes:
        raise ConfigurationError("no routes: pass --routes FILE or set INGEST_ROUTES")
    table = load_routes(config.routes)
    relative = path.replace("\\", "/").removeprefix("./")
    target = routing_path(SourceFile(uri=path, relative=relative))
    verdicts = table.explain(target)
    found = table.route_for(target)
    if as_json:
        click.echo(json.dumps({
            "path": target,
            "routed": found is not None,
            "route": found.route.to_dict() if found else None,
            "table": found.table if found else None,
            "captures": found.captures if found else {},
            "columns": found.columns if found else {},
            "tried": [
                {"index": v.route.index, "line": v.route.line, "match": v.route.match,
                 "matched": v.matched, "reason": v.reason}
                for v in verdicts
            ],
        }))
        return EXIT_OK if found else EXIT_FILES_NOT_DONE
    click.echo(f"{target}:")
    for verdict in verdicts:
        answer = "matches" if verdict.matched else "no"
        click.echo(f"  {verdict.route.label} {verdict.route.match!r}: {answer}: {verdict.reason}")
    if found is None:
        click.echo(f"unrouted: no route matches {target!r}; `ingest run` reports it as unrouted "
                   "and records it in the ledger")
        return EXIT_FILES_NOT_DONE
    later = len(table.routes) - found.route.index
    if later:
        click.echo(f"  ({later} later routes not tried: the first match wins)")
    click.echo(f"-> {found.table}")
    return EXIT_OK
