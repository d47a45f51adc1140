"""Routes: which Delta table, with which options, each landed file goes to.

A routes file is TOML, one `[[route]]` table per feed, tried in file order
(the first match wins)::

    [[route]]
    match = "{dataset}/{year}/*.parquet"   # {name}: one segment (or part of one)
    table = "./lake/{dataset}"             # any table URI; may use the captures
    format = "parquet"                     # optional, as --format
    schema_mode = "merge"                  # optional, as --schema-mode
    partition_by = ["year"]                # optional: captures or data columns
    lineage = true                         # optional
    transform = "pkg.module:function"      # optional
    mode = "merge"                         # optional, as --mode (append or merge)
    merge_keys = ["order_id"]              # with mode merge, as --merge-keys
    merge_sequence = "updated_at"          # optional, as --merge-sequence
    merge_delete_when = "op = 'D'"         # optional, as --merge-delete-when
    name = "orders"                        # optional: shown by explain and check
    csv_delimiter = ";"                    # optional reading keys, as the run's flags:
    schema_hints = "id BIGINT"             # csv_quote, csv_escape, csv_null (a list),
                                           # csv_no_header, csv_decimal, encoding,
                                           # bad_rows, bad_rows_table, normalize_names,
                                           # timezone

`match` is matched against a file's routing path (`routing_path`): its path
below the SOURCE it was listed from, or `container/blob-name` for a blob URL.
In a pattern `{name}` captures text within one segment, `*` matches within
one segment and `**` (a whole segment) matches any number of segments.
Captures named in `partition_by` become string columns of the file's rows.

`tomllib` reports no line numbers for keys, so `parse_routes` finds the
`[[route]]` header and key lines in the text itself; every problem it
reports names its line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ingest_core.azure.urls import is_blob_url, parse_blob_url
from ingest_core.config import MODES, IngestConfig, Mode, SchemaMode, is_local
from ingest_core.errors import ConfigurationError
from ingest_core.read_options import ROUTE_KEYS as READ_KEYS
from ingest_core.read_options import ReadOptions
from ingest_core.sources.base import SourceFile

ROUTE_KEYS = (
    "match", "table", "format", "schema_mode", "partition_by", "lineage", "transform", "name",
    "mode", "merge_keys", "merge_sequence", "merge_delete_when",
    *READ_KEYS,
)
FORMATS = ("parquet", "csv", "jsonl")
SCHEMA_MODES = ("merge", "strict")
UNROUTED_TABLE = "unrouted:"
"""The ledger's table key for files no route matches."""

_TOKEN = re.compile(r"\{([^{}]*)\}|\*\*|\*|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER = re.compile(r"\[\[\s*route\s*\]\]")
_KEY = re.compile(r"""(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*=""")
_TOML_LINE = re.compile(r"at line (\d+)")


@dataclass(frozen=True)
class RouteProblem:
    """One thing wrong with a routes file, at a line (None when no line can be named)."""

    line: int | None
    message: str

    def describe(self, origin: str) -> str:
        """`origin:line: message`, the form compilers use."""
        where = f"{origin}:{self.line}" if self.line else origin
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Pattern:
    """A compiled `match` pattern."""

    text: str
    regex: re.Pattern[str]
    captures: tuple[str, ...]
    segments: tuple[re.Pattern[str] | None, ...]
    """One regex per pattern segment; None for `**`."""

    def mismatch(self, path: str) -> str:
        """Why `path` does not match, as precisely as segments allow."""
        parts = path.split("/")
        texts = self.text.split("/")
        if None not in self.segments:
            if len(parts) != len(self.segments):
                return f"the path has {_segments(len(parts))}, the pattern {len(self.segments)}"
            pairs = list(zip(parts, self.segments, texts, strict=True))
        else:
            first = self.segments.index(None)
            last = len(self.segments) - 1 - self.segments[::-1].index(None)
            fixed = first + len(self.segments) - 1 - last
            if len(parts) < fixed:
                return f"the path has {_segments(len(parts))}, the pattern at least {fixed}"
            tail = len(self.segments) - 1 - last
            pairs = list(zip(parts[:first], self.segments[:first], texts[:first], strict=True))
            if tail:
                pairs += zip(parts[-tail:], self.segments[last + 1 :], texts[last + 1 :],
                             strict=True)
        for part, regex, text in pairs:
            assert regex is not None
            if not regex.fullmatch(part):
                return f"segment {part!r} does not match {text!r}"
        return "the segments between the fixed ones do not match"


def _segments(n: int) -> str:
    return f"{n} segment" if n == 1 else f"{n} segments"


def compile_pattern(text: str) -> Pattern:
    """Compile a `match` pattern; ValueError says what is wrong with it."""
    if not text.strip():
        raise ValueError("the pattern is empty")
    if text.startswith("/"):
        raise ValueError(f"{text!r} starts with '/': patterns are relative to the SOURCE")
    texts = text.split("/")
    if "" in texts:
        raise ValueError(f"{text!r} has an empty segment ('//' or a trailing '/')")
    regex = ""
    names: list[str] = []
    segments: list[re.Pattern[str] | None] = []
    for i, segment in enumerate(texts):
        last = i == len(texts) - 1
        if segment == "**":
            regex += ".+" if last else "(?:[^/]+/)*"
            segments.append(None)
            continue
        piece = _segment_regex(segment, names)
        segments.append(re.compile(piece))
        regex += piece if last else piece + "/"
    return Pattern(text, re.compile(regex), tuple(names), tuple(segments))


def _segment_regex(segment: str, names: list[str]) -> str:
    """The regex of one segment; appends its capture names to `names`."""
    out = ""
    pos = 0
    previous_wild = False
    for token in _TOKEN.finditer(segment):
        literal = segment[pos : token.start()]
        out += re.escape(literal)
        previous_wild = previous_wild and not literal
        pos = token.end()
        kind = token.group()
        if kind == "**":
            raise ValueError(f"'**' must be a whole segment (as in 'a/**/b'), not {segment!r}")
        if kind in ("{", "}"):
            raise ValueError(f"unbalanced {kind!r} in {segment!r}; captures are written {{name}}")
        if previous_wild:
            raise ValueError(
                f"{segment!r}: two wildcards or captures in a row are ambiguous; "
                "put literal text between them"
            )
        previous_wild = True
        if kind == "*":
            out += "[^/]*"
            continue
        name = token.group(1)
        if not _NAME.fullmatch(name):
            raise ValueError(f"capture {kind!r}: a name is letters, digits and _ (as {{dataset}})")
        if name in names:
            raise ValueError(f"capture {{{name}}} appears twice; give each capture its own name")
        names.append(name)
        out += f"(?P<{name}>[^/]+)"
    return out + re.escape(segment[pos:])


def template_names(template: str) -> list[str]:
    """The `{name}` placeholders of a table template; ValueError for stray braces."""
    names = []
    for token in _TOKEN.finditer(template):
        if token.group() in ("{", "}"):
            raise ValueError(f"unbalanced {token.group()!r}; placeholders are written {{name}}")
        if token.group(1) is not None:
            names.append(token.group(1))
    return names


def fill_template(template: str, captures: Mapping[str, str]) -> str:
    """The template with each `{name}` replaced by its capture."""
    return re.sub(r"\{([^{}]*)\}", lambda m: captures[m.group(1)], template)


@dataclass(frozen=True)
class Route:
    """One `[[route]]` of a routes file."""

    index: int
    """1-based position in the file: the order routes are tried in."""
    line: int | None
    """The line of its `[[route]]` header."""
    pattern: Pattern
    table: str
    format: str | None = None
    schema_mode: SchemaMode | None = None
    partition_by: tuple[str, ...] = ()
    lineage: bool | None = None
    transform: str | None = None
    name: str | None = None
    mode: Mode | None = None
    merge_keys: tuple[str, ...] = ()
    merge_sequence: str | None = None
    merge_delete_when: str | None = None
    read: tuple[tuple[str, Any], ...] = ()
    """`ReadOptions` fields this route sets (hashable: configurations are dict keys)."""

    @property
    def match(self) -> str:
        """The `match` pattern as written."""
        return self.pattern.text

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (what `ingest routes check --json` lists)."""
        return {
            "index": self.index, "line": self.line, "name": self.name, "match": self.match,
            "captures": list(self.pattern.captures), "table": self.table, "format": self.format,
            "schema_mode": self.schema_mode, "partition_by": list(self.partition_by),
            "lineage": self.lineage, "transform": self.transform, "mode": self.mode,
            "merge_keys": list(self.merge_keys), "merge_sequence": self.merge_sequence,
            "merge_delete_when": self.merge_delete_when,
            "read": dict(self.read),
        }

    @property
    def label(self) -> str:
        """How messages name it: `route 2 "orders" (line 7)`."""
        name = f" {self.name!r}" if self.name else ""
        line = f" (line {self.line})" if self.line else ""
        return f"route {self.index}{name}{line}"


@dataclass(frozen=True)
class RouteMatch:
    """A path matched by a route: its captures and the table they resolve to."""

    route: Route
    path: str
    captures: dict[str, str]
    table: str
    """The table URI, with the captures filled in."""

    @property
    def columns(self) -> dict[str, str]:
        """Captures named in `partition_by`: constant columns of the file's rows."""
        return {k: v for k, v in self.captures.items() if k in self.route.partition_by}

    def config(self, base: IngestConfig) -> IngestConfig:
        """`base` for this route: its table, and its options where it sets them."""
        route = self.route
        merge: dict[str, Any] = {}
        if route.mode == "append":
            merge = {"mode": "append", "merge_keys": (), "merge_sequence": None,
                     "merge_delete_when": None}
        elif route.mode == "merge":
            merge = {
                "mode": "merge", "merge_keys": route.merge_keys or base.merge_keys,
                "merge_sequence": route.merge_sequence or base.merge_sequence,
                "merge_delete_when": route.merge_delete_when or base.merge_delete_when,
            }
        return dataclasses.replace(
            base,
            **merge,
            table_uri=self.table,
            format=route.format or base.format,
            schema_mode=route.schema_mode or base.schema_mode,
            lineage=base.lineage if route.lineage is None else route.lineage,
            transform=route.transform or base.transform,
            partition_by=route.partition_by,
            routes=None,
            read=base.read.replace(**dict(route.read)) if route.read else base.read,
        )


@dataclass(frozen=True)
class RouteVerdict:
    """How one route answered a path, for `explain`."""

    route: Route
    matched: bool
    reason: str


@dataclass(frozen=True)
class Routes:
    """The routes of one file, tried in order."""

    routes: tuple[Route, ...]
    origin: str | None = None
    """The routes file's path; None when the routes were given as TOML text."""

    @property
    def source_name(self) -> str:
        """How messages name the routes: the file, or INGEST_ROUTES for text."""
        return self.origin or "INGEST_ROUTES"

    def route_for(self, path: str) -> RouteMatch | None:
        """The first route matching `path` (a routing path), or None."""
        for route in self.routes:
            found = _match(route, path)
            if isinstance(found, RouteMatch):
                return found
        return None

    def explain(self, path: str) -> list[RouteVerdict]:
        """Each route's answer for `path`, in order, up to and including the one that wins."""
        verdicts = []
        for route in self.routes:
            found = _match(route, path)
            if isinstance(found, RouteMatch):
                verdicts.append(RouteVerdict(route, True, _describe(found)))
                break
            verdicts.append(RouteVerdict(route, False, found))
        return verdicts


def _match(route: Route, path: str) -> RouteMatch | str:
    """The match, or why there is none."""
    found = route.pattern.regex.fullmatch(path)
    if found is None:
        return route.pattern.mismatch(path)
    captures = found.groupdict()
    odd = [f"{k}={v!r}" for k, v in captures.items() if v in (".", "..")]
    if odd:
        return f"captures {', '.join(odd)} would climb out of the table's folder"
    return RouteMatch(route, path, captures, fill_template(route.table, captures))


def _describe(found: RouteMatch) -> str:
    route = found.route
    parts = [f"table {found.table}"]
    if found.captures:
        parts.insert(0, ", ".join(f"{k}={v}" for k, v in found.captures.items()))
    for key in ("format", "schema_mode", "transform", "mode"):
        if getattr(route, key):
            parts.append(f"{key} {getattr(route, key)}")
    if route.merge_keys:
        parts.append(f"merge_keys {', '.join(route.merge_keys)}")
    if route.lineage is not None:
        parts.append(f"lineage {'on' if route.lineage else 'off'}")
    if route.partition_by:
        parts.append(f"partition_by {', '.join(route.partition_by)}")
    parts.extend(f"{key} {value!r}" for key, value in route.read)
    return "; ".join(parts)


# -- reading a routes file ------------------------------------------------------------


@dataclass
class _Lines:
    """Where things are in the text: `[[route]]` headers and the keys below each."""

    headers: list[int] = field(default_factory=list)
    keys: list[dict[str, int]] = field(default_factory=list)
    top: dict[str, int] = field(default_factory=dict)

    @classmethod
    def scan(cls, text: str) -> _Lines:
        lines = cls()
        current: dict[str, int] | None = lines.top
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if _HEADER.match(line):
                lines.headers.append(number)
                lines.keys.append({})
                current = lines.keys[-1]
            elif line.startswith("["):
                current = None
            elif current is not None and (key := _KEY.match(line)):
                current.setdefault(next(g for g in key.groups() if g is not None), number)
        return lines

    def of(self, index: int, key: str | None = None) -> int | None:
        """The line of route `index` (0-based), or of one of its keys."""
        if index >= len(self.headers):
            return self.top.get("route")
        if key is not None and key in self.keys[index]:
            return self.keys[index][key]
        return self.headers[index]


def check_routes(
    text: str, origin: str | None = None, *, import_transforms: bool = True
) -> tuple[Routes | None, list[RouteProblem]]:
    """Parse and validate a routes file's text; every problem found, with its line.

    Returns the routes (None if there are problems) and the problems.
    `import_transforms` also imports each transform, as a run would.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _TOML_LINE.search(str(exc))
        return None, [RouteProblem(int(line.group(1)) if line else None, f"not TOML: {exc}")]
    lines = _Lines.scan(text)
    problems = [
        RouteProblem(lines.top.get(key), f"unknown top-level key {key!r}; only [[route]] "
                     "tables belong here")
        for key in data if key != "route"
    ]
    raw = data.get("route")
    if isinstance(raw, dict):
        header = next((n for n, line in enumerate(text.splitlines(), 1)
                       if re.match(r"\s*\[\s*route\s*\]", line)), None)
        problems.append(RouteProblem(header, "write [[route]] (one per route), not [route]"))
        return None, problems
    if not isinstance(raw, list) or not raw:
        problems.append(RouteProblem(lines.top.get("route"), "no routes: add a [[route]] table "
                                     "with match and table keys"))
        return None, problems
    routes = []
    for index, entry in enumerate(raw):
        route = _check_route(index, entry, lines, problems, import_transforms)
        if route is not None:
            routes.append(route)
    if problems:
        return None, problems
    return Routes(tuple(routes), origin), []


def _check_route(
    index: int, entry: Any, lines: _Lines, problems: list[RouteProblem], import_transforms: bool
) -> Route | None:
    label = f"route {index + 1}"

    def problem(key: str | None, message: str) -> None:
        problems.append(RouteProblem(lines.of(index, key), f"{label}: {message}"))

    if not isinstance(entry, dict):
        problem(None, "is not a table; write it as [[route]] with key = value lines")
        return None
    before = len(problems)
    for key in entry:
        if key not in ROUTE_KEYS:
            problem(key, f"unknown key {key!r}; known keys: {', '.join(ROUTE_KEYS)}")
    strings = {}
    for key in ("match", "table", "format", "schema_mode", "transform", "name", "mode",
                "merge_sequence", "merge_delete_when"):
        value = entry.get(key)
        if value is None:
            if key in ("match", "table"):
                problem(None, f"no {key!r}; every route needs match and table")
        elif not isinstance(value, str):
            problem(key, f"{key} must be a string, not {type(value).__name__}")
        else:
            strings[key] = value
    pattern = None
    if "match" in strings:
        try:
            pattern = compile_pattern(strings["match"])
        except ValueError as exc:
            problem("match", f"bad match pattern: {exc}")
    if "table" in strings and pattern is not None:
        _check_table(strings["table"], pattern, lambda m: problem("table", m))
    if strings.get("format", FORMATS[0]) not in FORMATS:
        problem("format", f"format {strings['format']!r}: use one of {', '.join(FORMATS)}")
    if strings.get("schema_mode", SCHEMA_MODES[0]) not in SCHEMA_MODES:
        problem("schema_mode", f"schema_mode {strings['schema_mode']!r}: use merge or strict")
    mode = strings.get("mode")
    if mode is not None and mode not in MODES:
        problem("mode", f"mode {mode!r}: use append or merge")
    merge_keys = _check_merge_keys(entry, strings, lambda k, m: problem(k, m))
    lineage = entry.get("lineage")
    if lineage is not None and not isinstance(lineage, bool):
        problem("lineage", "lineage must be true or false")
    partition_by = _check_partition_by(entry.get("partition_by"), lambda m: problem(
        "partition_by", m))
    if "transform" in strings and import_transforms:
        from ingest_core.transform import load_transform

        try:
            load_transform(strings["transform"])
        except ConfigurationError as exc:
            problem("transform", f"unreachable transform: {exc}")
    read = _check_read(entry, problem)
    if len(problems) > before or pattern is None:
        return None
    return Route(
        index=index + 1,
        line=lines.of(index),
        pattern=pattern,
        table=strings["table"],
        format=strings.get("format"),
        schema_mode=cast(SchemaMode | None, strings.get("schema_mode")),  # checked above
        partition_by=partition_by,
        lineage=lineage,
        transform=strings.get("transform"),
        name=strings.get("name"),
        mode=cast(Mode | None, mode),  # checked above
        merge_keys=merge_keys,
        merge_sequence=strings.get("merge_sequence"),
        merge_delete_when=strings.get("merge_delete_when"),
        read=read,
    )


def _check_merge_keys(
    entry: dict[str, Any], strings: dict[str, str], problem: Callable[[str, str], None]
) -> tuple[str, ...]:
    """The route's merge keys; a problem when merge settings and mode disagree."""
    value = entry.get("merge_keys")
    keys: tuple[str, ...] = ()
    if value is not None:
        if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v for v in value
        ):
            problem("merge_keys", 'merge_keys must be a list of column names, as ["order_id"]')
        else:
            keys = tuple(value)
    merge_settings = [k for k in ("merge_keys", "merge_sequence", "merge_delete_when")
                      if entry.get(k) is not None]
    if strings.get("mode") == "merge" and not keys and value is None:
        problem("mode", 'mode "merge" needs merge_keys, as merge_keys = ["order_id"]')
    elif merge_settings and strings.get("mode") != "merge":
        problem(merge_settings[0], f'{merge_settings[0]} goes with mode = "merge"; add it')
    return keys


def _check_read(
    entry: dict[str, Any], problem: Callable[[str | None, str], None]
) -> tuple[tuple[str, Any], ...]:
    """The route's reading keys as `ReadOptions` fields; each bad one reported."""
    read: list[tuple[str, Any]] = []
    for key in READ_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        field = "csv_nulls" if key == "csv_null" else key
        if key in ("csv_no_header", "normalize_names"):
            if not isinstance(value, bool):
                problem(key, f"{key} must be true or false")
                continue
        elif key == "csv_null":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problem(key, 'csv_null must be a list of strings, as ["", "n/a"]')
                continue
            value = tuple(value)
        elif not isinstance(value, str):
            problem(key, f"{key} must be a string, not {type(value).__name__}")
            continue
        if key != "csv_no_header":  # it needs hints, which may come from the run
            try:
                ReadOptions(**{field: value})
            except ConfigurationError as exc:
                problem(key, f"{key}: {exc}")
                continue
        read.append((field, value))
    return tuple(read)


def _check_table(template: str, pattern: Pattern, problem: Callable[[str], None]) -> None:
    try:
        names = template_names(template)
    except ValueError as exc:
        problem(f"bad table template: {exc}")
        return
    unknown = [n for n in names if n not in pattern.captures]
    if unknown:
        problem(f"table uses {', '.join('{' + n + '}' for n in unknown)}, which match "
                f"{pattern.text!r} does not capture")
        return
    sample = fill_template(template, {n: "x" for n in names})
    if not sample.strip():
        problem("table is empty")
    elif is_local(sample):
        return
    elif not is_blob_url(sample):
        problem(f"unsupported table URI {template!r}: use a local path or "
                "abfss://container@account.dfs.core.windows.net/path")
    else:
        try:
            parse_blob_url(sample)
        except ConfigurationError as exc:
            problem(f"unsupported table URI: {exc}")


def _check_partition_by(value: Any, problem: Callable[[str], None]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problem("partition_by must be a list of column names, as [\"year\"]")
        return ()
    if len(set(value)) != len(value):
        problem("partition_by names a column twice")
    from ingest_core.schema import LINEAGE_COLUMNS  # imports pyarrow: only when needed

    reserved = [v for v in value if v in LINEAGE_COLUMNS]
    if reserved:
        problem(f"partition_by {', '.join(reserved)}: lineage columns cannot partition a table")
    return tuple(value)


def parse_routes(text: str, origin: str | None = None) -> Routes:
    """Parse and validate routes; ConfigurationError listing every problem with its line."""
    routes, problems = check_routes(text, origin)
    if routes is None:
        where = origin or "INGEST_ROUTES"
        raise ConfigurationError(
            f"bad routes in {where}: " + "; ".join(p.describe(where) for p in problems)
            + "; fix them (ingest routes check shows each) and run again"
        )
    return routes


def read_routes_file(path: str) -> str:
    """The text of a routes file; ConfigurationError when it cannot be read."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"routes file {path}: cannot read it: {exc}") from None


def load_routes(value: str) -> Routes:
    """Routes from INGEST_ROUTES or --routes: a file's path, or the TOML text itself.

    Text is told from a path by a newline or a `[[` in it (a routes file
    always holds `[[route]]`).
    """
    if "\n" in value or "[[" in value:
        return parse_routes(value)
    return parse_routes(read_routes_file(value), value)


def routing_path(file: SourceFile) -> str:
    """What `match` patterns see: `container/blob-name` for a blob, else the path below SOURCE."""
    if file.location is not None or is_blob_url(file.uri):
        location = file.location or parse_blob_url(file.uri)
        return f"{location.container}/{location.name}"
    return file.relative
