"""The reading flags of `ingest run`: CSV dialect, encoding, schema hints, bad rows, names, zone."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ingest_core.config import IngestConfig

_FLAGS = (
    click.option("--csv-delimiter", metavar="CHAR",
                 help="CSV field delimiter (default ','); '\\t' or tab for a tab."),
    click.option("--csv-quote", metavar="CHAR", help="CSV quote character (default '\"')."),
    click.option("--csv-escape", metavar="CHAR",
                 help="CSV escape character (default: none; quotes are doubled)."),
    click.option("--csv-null", "csv_nulls", metavar="VALUE", multiple=True,
                 help="Text read as null (repeatable); replaces the defaults (NULL, NA, ...)."),
    click.option("--csv-no-header", is_flag=True, default=None,
                 help="The first line is data; column names come from --schema-hints."),
    click.option("--csv-decimal", metavar="CHAR",
                 help="Decimal separator of CSV numbers (default '.'; ',' for 12,50)."),
    click.option("--encoding", metavar="NAME",
                 help="Text encoding (default utf-8; latin-1, cp1252, utf-16 with BOM, ...)."),
    click.option("--schema-hints", metavar="HINTS",
                 help="Column types, as \"order_id BIGINT, amount DECIMAL(10,2)\"."),
    click.option("--bad-rows", type=click.Choice(["quarantine", "rescue"]),
                 help="quarantine (default) refuses a file with a bad value or row; rescue "
                      "keeps values in _rescued_data and rows in the bad-rows table."),
    click.option("--bad-rows-table", metavar="URI",
                 help="Delta table for unparseable rows (default: TABLE_bad_rows beside a "
                      "local table)."),
    click.option("--normalize-names", is_flag=True, default=None,
                 help="Store column names in snake_case (originals in column metadata)."),
    click.option("--timezone", metavar="NAME",
                 help="Time zone of naive timestamps going into time-zone-aware columns."),
)
NAMES = ("csv_delimiter", "csv_quote", "csv_escape", "csv_nulls", "csv_no_header",
         "csv_decimal", "encoding", "schema_hints", "bad_rows", "bad_rows_table",
         "normalize_names", "timezone")


def read_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the reading flags to `command`, which receives them as one `read_flags` dict."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in NAMES}
        return command(*args, read_flags=flags, **kwargs)

    for option in reversed(_FLAGS):
        wrapper = option(wrapper)
    return wrapper


def with_read_flags(config: IngestConfig, flags: dict[str, Any]) -> IngestConfig:
    """`config` with the flags given on the command line over its `read` options."""
    changes = dict(flags)
    changes["csv_nulls"] = tuple(changes["csv_nulls"]) or None
    for key in ("csv_delimiter", "csv_quote", "csv_escape"):
        if changes[key] in ("\\t", "tab"):
            changes[key] = "\t"
    return config.replace(read=config.read.replace(**changes))
