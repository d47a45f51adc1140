"""How landed files are read: CSV dialect, encoding, schema hints, bad rows, names, time zone.

One frozen `ReadOptions` travels in `IngestConfig.read`, built by
`config.from_env` (INGEST_CSV_*, INGEST_ENCODING, ...), by the command line
and overridden per route (`routing`). It is hashable: configurations are
dictionary keys.
"""

from __future__ import annotations

import codecs
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ingest_core.errors import ConfigurationError
from ingest_core.schema_hints import parse_hints

BadRows = Literal["quarantine", "rescue"]
BAD_ROWS = ("quarantine", "rescue")
RESCUED_COLUMN = "_rescued_data"
"""Under `bad_rows="rescue"`: a JSON object column, column name -> the text that did not fit."""

ROUTE_KEYS = (
    "csv_delimiter", "csv_quote", "csv_escape", "csv_null", "csv_no_header", "csv_decimal",
    "encoding", "schema_hints", "bad_rows", "bad_rows_table", "normalize_names", "timezone",
)
"""Route keys that set a `ReadOptions` field of the same name (`csv_null` -> `csv_nulls`)."""


@dataclass(frozen=True)
class ReadOptions:
    """How text files are decoded and what happens to rows and values that do not fit."""

    csv_delimiter: str = ","
    csv_quote: str | None = '"'
    """None: no quoting at all."""
    csv_escape: str | None = None
    csv_nulls: tuple[str, ...] | None = None
    """Texts read as null; None: Arrow's defaults (empty, NULL, NA, N/A, NaN, null, ...)."""
    csv_no_header: bool = False
    """The first line is data; column names come from `schema_hints`."""
    csv_decimal: str = "."
    """The decimal separator of CSV numbers (`,` for many European exports)."""
    encoding: str = "utf-8"
    schema_hints: str | None = None
    bad_rows: BadRows = "quarantine"
    bad_rows_table: str | None = None
    """Where unparseable rows go under rescue; None: `<table>_bad_rows` beside a local table."""
    normalize_names: bool = False
    timezone: str | None = None
    """The zone naive timestamps are in when they go into a time-zone-aware column."""

    def __post_init__(self) -> None:
        for name in ("csv_delimiter", "csv_quote", "csv_escape", "csv_decimal"):
            value = getattr(self, name)
            if value is not None and (len(value) != 1 or value in "\r\n"):
                flag = "--" + name.replace("_", "-")
                raise ConfigurationError(f"{flag} {value!r}: give one character")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigurationError(
                f"--encoding {self.encoding!r}: unknown encoding; use e.g. utf-8, latin-1, "
                "cp1252, utf-16"
            ) from None
        if self.bad_rows not in BAD_ROWS:
            raise ConfigurationError(f"--bad-rows {self.bad_rows!r}: use quarantine or rescue")
        hints = self.hints
        if self.csv_no_header and not hints:
            raise ConfigurationError(
                "--csv-no-header takes the column names from --schema-hints: give them too "
                "(e.g. --schema-hints \"id BIGINT, name STRING\")"
            )
        if self.timezone is not None:
            _check_zone(self.timezone)

    @property
    def hints(self) -> tuple[tuple[str, str], ...]:
        """The parsed schema hints (`schema_hints.parse_hints`)."""
        return parse_hints(self.schema_hints) if self.schema_hints else ()

    @property
    def rescue(self) -> bool:
        """True when values and rows that do not fit are kept aside instead of refusing the file."""
        return self.bad_rows == "rescue"

    def replace(self, **changes: Any) -> ReadOptions:
        """A copy with `changes` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _check_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"--timezone {name!r}: not a time zone name; use an IANA name such as "
            "Europe/Paris or UTC"
        ) from None


def split_nulls(text: str) -> tuple[str, ...]:
    """INGEST_CSV_NULL's comma-separated values (an empty item is the empty text)."""
    return tuple(v.strip() for v in text.split(","))
