"""Schema hints in the syntax Databricks users know: `"order_id BIGINT, amount DECIMAL(10,2)"`.

`parse_hints` checks the text without importing pyarrow (a configuration
error surfaces before any file is read); `arrow_type` turns one parsed type
into its Arrow type. Spark's `TIMESTAMP` is time-zone aware (stored as UTC),
`TIMESTAMP_NTZ` is not.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ingest_core.errors import ConfigurationError

if TYPE_CHECKING:
    import pyarrow as pa

_SIMPLE = {
    "STRING": "string", "VARCHAR": "string", "CHAR": "string",
    "BIGINT": "int64", "LONG": "int64",
    "INT": "int32", "INTEGER": "int32",
    "SMALLINT": "int16", "SHORT": "int16",
    "TINYINT": "int8", "BYTE": "int8",
    "DOUBLE": "float64", "FLOAT": "float32", "REAL": "float32",
    "BOOLEAN": "bool", "BOOL": "bool",
    "DATE": "date32",
    "TIMESTAMP": "timestamp", "TIMESTAMP_LTZ": "timestamp",
    "TIMESTAMP_NTZ": "timestamp_ntz",
    "BINARY": "binary",
}
_ENTRY = re.compile(
    r"\s*(?:`(?P<quoted>(?:[^`]|``)+)`|(?P<name>[^\s`,]+))\s+"
    r"(?P<type>[A-Za-z_]+)\s*(?:\(\s*(?P<args>[^)]*)\))?\s*(?P<rest>.*)",
    re.DOTALL,
)


def _split(text: str) -> list[str]:
    """Split at commas outside parentheses and backquotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == "`":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return parts


def parse_hints(text: str) -> tuple[tuple[str, str], ...]:
    """`(column, type)` pairs, the type as `int64`, `decimal(10,2)`, `timestamp`, ...

    Raises:
        ConfigurationError: a hint is not `name TYPE`, or names an unknown type.
    """
    hints: list[tuple[str, str]] = []
    for part in _split(text):
        if not part.strip():
            continue
        found = _ENTRY.fullmatch(part)
        if found is None or found.group("rest").strip():
            raise ConfigurationError(
                f"schema hint {part.strip()!r}: write it as `name TYPE` (as in "
                "\"order_id BIGINT, amount DECIMAL(10,2)\"); quote odd names in backquotes"
            )
        name = found.group("quoted")
        name = name.replace("``", "`") if name is not None else found.group("name")
        word = found.group("type").upper()
        args = found.group("args")
        if word in ("DECIMAL", "DEC", "NUMERIC"):
            hints.append((name, _decimal(args, part)))
        elif word in _SIMPLE and args is None:
            hints.append((name, _SIMPLE[word]))
        else:
            raise ConfigurationError(
                f"schema hint {part.strip()!r}: unknown type {found.group('type')}; use one of "
                f"{', '.join(sorted(_SIMPLE))}, DECIMAL(p,s)"
            )
    names = [n for n, _ in hints]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"schema hints name {', '.join(twice)} twice; keep one each")
    return tuple(hints)


def _decimal(args: str | None, part: str) -> str:
    numbers = [a.strip() for a in (args or "10,0").split(",")]
    if len(numbers) == 1:
        numbers.append("0")
    if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
        raise ConfigurationError(f"schema hint {part.strip()!r}: write DECIMAL(precision,scale)")
    precision, scale = int(numbers[0]), int(numbers[1])
    if not 1 <= precision <= 38 or scale > precision:
        raise ConfigurationError(
            f"schema hint {part.strip()!r}: precision 1..38 and scale at most the precision"
        )
    return f"decimal({precision},{scale})"


def arrow_type(spec: str) -> pa.DataType:
    """The Arrow type of one parsed hint type (`parse_hints`' second element)."""
    import pyarrow as pa

    if spec.startswith("decimal("):
        precision, scale = (int(n) for n in spec[8:-1].split(","))
        return pa.decimal128(precision, scale)
    if spec == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if spec == "timestamp_ntz":
        return pa.timestamp("us")
    return pa.type_for_alias(spec)
