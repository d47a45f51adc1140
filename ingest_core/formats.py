"""Parquet, CSV and JSON (lines or one array; each optionally gzip) as streams of Arrow batches.

How text is decoded comes from `ReadOptions`: CSV dialect, encoding, schema
hints, and under `bad_rows="rescue"` what happens to rows that do not parse
(`OpenedFile.bad_rows`) and values that do not fit (`_rescued_data`).
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ingest_core.errors import ConfigurationError, CorruptFileError
from ingest_core.read_options import RESCUED_COLUMN, ReadOptions
from ingest_core.schema import CastRules, conform
from ingest_core.schema_hints import arrow_type

FORMATS = ("parquet", "csv", "jsonl")

_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_BATCH_ROWS = 32 * 1024
"""Rows per batch read from a parquet file: fewer in flight, lower peak memory."""
_TEXT_BLOCK_BYTES = 1024 * 1024
"""CSV/JSON parse block. Arrow reads up to 32 blocks ahead, so this bounds memory:
8 MiB blocks peaked near 450 MiB on a large CSV, 1 MiB blocks near 125 MiB."""
_RESCUE_BLOCK_BYTES = 256 * 1024
"""CSV parse block under rescue, where every column is parsed as text and typed after:
the 2 GiB CSV peaked at 368 MiB with 1 MiB blocks, 341 with 512 KiB, 310 with 256 KiB
(338 without rescue, 1 MiB blocks)."""
_INFER_BYTES = 8 * 1024 * 1024
"""Column types are inferred from this much of the head, not from one small block."""
MAX_BAD_ROWS = 10_000
"""Unparseable rows kept per file; more means the file is not what the options say."""
_BAD_ROW_CHARS = 64 * 1024
"""Raw text kept per bad row (a broken quote can swallow the rest of a file)."""
_JSON_OBJECT_CHARS = 64 * 1024 * 1024
"""The largest object of a JSON array read (the array itself is streamed)."""
_SPARK_REFUSED = " ,;{}()\n\t="
"""Characters Spark-based readers refuse in column names without column mapping."""
ORIGINAL_NAME_KEY = b"ingest.original_name"
"""Field metadata holding a column's name as the file had it (under normalize_names)."""


@dataclass(frozen=True)
class BadRow:
    """A row that could not be parsed at all, kept under `bad_rows="rescue"`."""

    line: int | None
    """Its line in the file (1 = the first line), None when the parser cannot tell."""
    raw: str
    reason: str


def format_of(name: str, override: str | None = None) -> str:
    """The format to parse `name` with: `override` if given, else its extension.

    Raises CorruptFileError (the file is quarantined) when the extension is unknown.
    """
    if override:
        if override not in FORMATS:
            raise ConfigurationError(
                f"unknown format {override!r}: use one of {', '.join(FORMATS)}"
            )
        return override
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise CorruptFileError(
            f"{name}: cannot tell its format from the extension; "
            f"rename it or pass --format ({', '.join(FORMATS)})"
        )
    return fmt


_PARQUET_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def _parquet_decoded(meta: Any) -> int:
    """Arrow bytes of a parquet file's columns, from its footer alone.

    Encoded sizes hide what dictionary and run-length encoding save (ten
    million zeros take a few KiB): each column counts its values times their
    width; a text column the longer of its min/max statistics (else its
    uncompressed size), never less than its uncompressed size.
    """
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            values = column.num_values
            width = _PARQUET_WIDTHS.get(column.physical_type)
            if column.physical_type == "FIXED_LEN_BYTE_ARRAY":
                width = meta.schema.column(c).length or 1
            if width is None:  # BYTE_ARRAY: text, binary
                stats = column.statistics
                if stats is not None and stats.has_min_max:
                    longest = max(len(_as_bytes(stats.min)), len(_as_bytes(stats.max)))
                    width = 4 + longest
            estimate = values * width if width is not None else 0
            total += max(estimate, column.total_uncompressed_size)
    return total


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value or b"")


SAMPLE_BYTES = 1024 * 1024
"""Decoded text a size estimate looks at, at most."""
_FIELD_BYTES = 8
"""What one field costs in Arrow beyond its text, at most (a 64-bit number; an offset, validity)."""


def decoded_size(path: Path, fmt: str, limit: int, delimiter: str = ",") -> int:
    """About how many bytes the file takes once decoded, counted no further than past `limit`.

    What decides between reading a file whole and streaming it: its size on
    disk says little (a 41 KiB parquet file of repeated values decodes to
    tens of MiB). Parquet: from its footer alone (`_parquet_decoded`). Text:
    its bytes (gzip: inflated, until past `limit` at most), times what a
    bounded sample of them says a field costs in Arrow (`_text_expansion`), so
    a file of short numbers counts several times its size. A file that cannot
    be measured gives its size on disk (its read reports what is wrong with it).
    """
    size = path.stat().st_size
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return max(size, _parquet_decoded(pq.ParquetFile(path).metadata))
        gzipped = _head(path).startswith(_GZIP_MAGIC)
        if not gzipped and size * (1 + _FIELD_BYTES) <= limit:
            return size  # even one field per byte stays under the limit: nothing to sample
        if gzipped:
            inflated, sample = 0, b""
            with gzip.open(path, "rb") as src:
                while inflated <= limit:
                    chunk = src.read(SAMPLE_BYTES)
                    if not chunk:
                        break
                    sample = sample or chunk
                    inflated += len(chunk)
            text = inflated
        else:
            with open(path, "rb") as src:
                sample = src.read(SAMPLE_BYTES)
            text = size
        if text > limit:
            return text
        return int(text * _text_expansion(sample, fmt, delimiter))
    except (OSError, EOFError, ValueError):  # pyarrow's errors are OSError and ValueError
        return size


def _text_expansion(sample: bytes, fmt: str, delimiter: str) -> float:
    """Arrow bytes per text byte, at most, judged by the fields in `sample` (1.0 or more)."""
    if not sample:
        return 1.0
    separator = b":" if fmt == "jsonl" else (delimiter.encode() or b",")
    fields = sample.count(separator) + sample.count(b"\n") + 1
    return max(1.0, (fields * _FIELD_BYTES + len(sample)) / len(sample))


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


_THREADED_READ_ROWS = 65_536
"""A parquet file read whole decodes on Arrow's thread pool only above this many rows."""


class OpenedFile:
    """A local file opened as Arrow batches; closes what it opened (temp files included).

    `schema` is what `batches()` yields: the file's columns with hinted types,
    normalised names, and `_rescued_data` under rescue. Rows that do not parse
    are collected in `bad_rows` as they are read (rescue only).
    """

    def __init__(
        self, path: Path, fmt: str, name: str, options: ReadOptions | None = None
    ) -> None:
        self.name = name
        self.options = options or ReadOptions()
        self.bad_rows: list[BadRow] = []
        self._too_many_bad = False
        self._tmp: list[Path] = []
        self._parquet: pq.ParquetFile | None = None
        self._declared: dict[str, pa.DataType] = {}
        """Columns read as text and cast to these types by `batches` (hints, rescue)."""
        self._nulls: tuple[str, ...] = ()
        """Texts that are null in columns read as text and typed later (a CSV's null values)."""
        self._json_text: dict[str, pa.DataType | None] = {}
        """JSON keys whose numbers and booleans were written as text (rescue), and their types."""
        self.parquet_as_is: Path | None = None
        """The file itself when it is parquet read as it lies (not gunzipped)."""
        head = _head(path)
        if not head:
            raise CorruptFileError(f"{name}: the file is empty (0 bytes); nothing to ingest")
        compressed = head.startswith(_GZIP_MAGIC)
        if fmt != "parquet" and head == _PARQUET_MAGIC:
            raise CorruptFileError(
                f"{name}: the bytes are parquet but the file is read as {fmt}; "
                "rename it to .parquet or pass --format parquet"
            )
        try:
            self.reader = self._open(path, fmt, compressed)
            if fmt != "parquet":
                self._refuse_binary_text()
            self.schema = self._typed_schema(fmt)
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.close()
            raise CorruptFileError(f"{name}: not readable as {fmt}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _refuse_binary_text(self) -> None:
        """Text formats infer `binary` for bytes that are not UTF-8: refuse, don't store them."""
        binary = [f.name for f in self.reader.schema if pa.types.is_binary(f.type)]
        if binary:
            encoding = codecs.lookup(self.options.encoding).name
            shown = "UTF-8" if encoding == "utf-8" else encoding
            raise CorruptFileError(
                f"{self.name}: column(s) {', '.join(binary)} are not valid "
                f"{shown} text; pass the file's encoding (--encoding, "
                "INGEST_ENCODING, route key encoding) or re-encode it as UTF-8"
            )

    def _refuse_one_column(self, head: bytes) -> None:
        """A header line without the delimiter but holding another one is the wrong dialect."""
        line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
        delimiter = self.options.csv_delimiter
        held = [d for d in (";", "\t", "|", ",") if d in line and d != delimiter]
        if delimiter in line or not held:
            return
        shown = "a tab" if held[0] == "\t" else repr(held[0])
        flag = "'\\t'" if held[0] == "\t" else repr(held[0])
        raise CorruptFileError(
            f"{self.name}: the header parses as one column {line[:80]!r} holding {shown}: "
            f"the file looks delimited by {shown}, not {delimiter!r}; set the delimiter "
            f"(--csv-delimiter {flag}, INGEST_CSV_DELIMITER or route key csv_delimiter) and "
            "retry it"
        )

    def _refuse_utf16(self, head: bytes) -> None:
        """UTF-16 read as UTF-8 parses as NUL-riddled text: say which option reads it."""
        if codecs.lookup(self.options.encoding).name != "utf-8":
            return
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:4096]:
            raise CorruptFileError(
                f"{self.name}: the text looks UTF-16 (a byte-order mark or NUL bytes), read as "
                "UTF-8; pass --encoding utf-16 (INGEST_ENCODING, route key encoding)"
            )

    def _typed_schema(self, fmt: str) -> pa.Schema:
        """The schema `batches` yields: hinted types, checked or normalised names, rescue column."""
        raw = self.reader.schema
        hints = dict(self.options.hints) if fmt != "parquet" else {}
        renamed = column_names(raw.names, self.name, normalize=self.options.normalize_names)
        fields = []
        for field, new in zip(raw, renamed, strict=True):
            typed = self._declared.get(field.name, field.type)
            hint = hints.get(field.name) or hints.get(new)  # the file's name or the stored one
            if hint is not None:
                typed = arrow_type(hint)
            metadata = {ORIGINAL_NAME_KEY: field.name.encode()} if new != field.name else None
            fields.append(pa.field(new, typed, metadata=metadata))
        if self.options.rescue and RESCUED_COLUMN not in renamed:
            fields.append(pa.field(RESCUED_COLUMN, pa.string()))
        schema = pa.schema(fields)
        self._renames = renamed if renamed != raw.names else None
        self._passthrough = schema == raw
        return schema

    def _open(self, path: Path, fmt: str, compressed: bool) -> pa.RecordBatchReader:
        if fmt == "parquet":
            if compressed:
                path = self._gunzip(path)
            else:
                self.parquet_as_is = path
            parquet = self._parquet = pq.ParquetFile(
                path, pre_buffer=False, buffer_size=1024 * 1024
            )
            return pa.RecordBatchReader.from_batches(
                parquet.schema_arrow, parquet.iter_batches(batch_size=_BATCH_ROWS)
            )
        open_text = self._text_stream(path, compressed)
        stream = open_text()
        start = _read_head(stream, 4096)
        stream.close()
        self._refuse_utf16(start)
        if fmt == "jsonl":
            start = start.lstrip(b"\xef\xbb\xbf \t\r\n")
            if start.startswith(b"[") or self.options.rescue:
                lines = self._json_lines(open_text, is_array=start.startswith(b"["))
                open_text = lambda: pa.input_stream(str(lines))  # noqa: E731
        stream = open_text()
        head = _read_head(stream, _INFER_BYTES)
        stream.close()
        if not head.strip():
            schema = pa.schema([])  # an empty JSON array, or every line bad: no rows
            return pa.RecordBatchReader.from_batches(schema, [])
        whole = len(head) < _INFER_BYTES
        if fmt == "jsonl":
            return self._open_json(open_text, head, whole)
        return self._open_csv(open_text, head, whole)

    def _open_json(
        self, open_text: Callable[[], pa.NativeFile], head: bytes, whole: bool
    ) -> pa.RecordBatchReader:
        written = {k: t for k, t in self._json_text.items() if t is not None}
        self._declared = written
        as_text = pa.schema([(k, pa.string()) for k in written]) if written else None
        if whole:
            table = _parse_json(head, as_text)
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        schema = _infer(lambda data: _parse_json(data, as_text), head)
        return pa_json.open_json(
            open_text(),
            read_options=pa_json.ReadOptions(block_size=_TEXT_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema if schema is not None else as_text
            ),
        )

    def _open_csv(
        self, open_text: Callable[[], pa.NativeFile], head: bytes, whole: bool
    ) -> pa.RecordBatchReader:
        options = self.options
        if not options.csv_no_header:
            self._refuse_one_column(head)
        nulls = options.csv_nulls
        self._nulls = tuple(pa_csv.ConvertOptions().null_values if nulls is None else nulls)
        hints = dict(options.hints)
        text_columns = {n: pa.string() for n in hints}

        def parse(data: bytes, types: dict[str, pa.DataType], keep: bool) -> pa.Table:
            reader = pa.BufferReader(pa.py_buffer(data))
            return pa_csv.read_csv(reader, *self._csv_options(types, keep, len(data) + 1))

        if whole and not options.rescue:
            table = parse(head, text_columns, True)
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        # types are inferred on the head with hinted columns as text; rows that do not
        # parse are counted in the pass that reads them for good
        inferred = _infer(lambda data: parse(data, text_columns, False), head)
        if inferred is not None:
            self._declared = {f.name: f.type for f in inferred if f.name not in hints}
        if options.rescue and inferred is not None:
            # every column as text: a value that does not fit is rescued, not a parse error
            text_columns = {n: pa.string() for n in inferred.names}
        if whole:
            table = parse(head, text_columns, True)
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        block = _RESCUE_BLOCK_BYTES if options.rescue else _TEXT_BLOCK_BYTES
        read, parse_options, convert = self._csv_options(text_columns, True, block)
        if inferred is not None and not options.rescue:
            convert.column_types = {**{f.name: f.type for f in inferred}, **text_columns}
        return pa_csv.open_csv(open_text(), read_options=read, parse_options=parse_options,
                               convert_options=convert)

    def _csv_options(
        self, text_columns: dict[str, pa.DataType], keep: bool, block: int
    ) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions, pa_csv.ConvertOptions]:
        options = self.options
        read = pa_csv.ReadOptions(
            block_size=block,
            # one thread: the parser then knows each bad row's line number
            use_threads=not options.rescue,
            column_names=[n for n, _ in options.hints] if options.csv_no_header else None,
        )
        parse = pa_csv.ParseOptions(
            delimiter=options.csv_delimiter,
            quote_char=options.csv_quote if options.csv_quote is not None else False,
            escape_char=options.csv_escape if options.csv_escape is not None else False,
            double_quote=options.csv_escape is None,
            invalid_row_handler=self._bad_row_handler(keep) if options.rescue else None,
        )
        convert = pa_csv.ConvertOptions(
            column_types=text_columns,
            decimal_point=options.csv_decimal,
            # null values given: null in text columns too (Arrow's defaults spare them)
            strings_can_be_null=options.csv_nulls is not None,
            **({"null_values": list(options.csv_nulls)} if options.csv_nulls is not None
               else {}),
        )
        return read, parse, convert

    def _bad_row_handler(self, keep: bool) -> Callable[[pa_csv.InvalidRow], str]:
        def handle(row: pa_csv.InvalidRow) -> str:
            if keep:
                reason = (f"expected {row.expected_columns} columns, got {row.actual_columns}")
                if not self._keep_bad(BadRow(row.number, row.text, reason)):
                    return "error"
            return "skip"

        return handle

    def _keep_bad(self, row: BadRow) -> bool:
        """Keep one bad row; False (and the file refused) once there are too many."""
        if len(self.bad_rows) >= MAX_BAD_ROWS:
            self._too_many_bad = True
            return False
        self.bad_rows.append(BadRow(row.line, row.raw[:_BAD_ROW_CHARS], row.reason))
        return True

    def _text_stream(self, path: Path, compressed: bool) -> Callable[[], pa.NativeFile]:
        """Opens the file as UTF-8 text bytes: gunzipped and transcoded as needed."""
        encoding = codecs.lookup(self.options.encoding).name

        def open_text() -> pa.NativeFile:
            stream = pa.input_stream(str(path), compression="gzip" if compressed else None)
            if encoding != "utf-8":
                stream = pa.transcoding_input_stream(stream, encoding, "utf-8")
            return stream

        return open_text

    def _json_lines(self, open_text: Callable[[], pa.NativeFile], *, is_array: bool) -> Path:
        """The file's objects as JSON lines in a temp file (an array streamed object by object).

        Under rescue, lines that are not JSON objects go to `bad_rows`, and
        numbers and booleans are written as text, typed by `batches` (one that
        does not fit its column's type is then rescued, not a parse error).
        """
        kinds: dict[str, set[str]] = {}
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False,
                                         encoding="utf-8") as out:
            self._tmp.append(Path(out.name))

            def emit(value: dict[str, Any]) -> None:
                if self.options.rescue:
                    value = _scalars_as_text(value, kinds)
                out.write(json.dumps(value, ensure_ascii=False) + "\n")

            stream = open_text()
            try:
                chunks = _text_chunks(stream)
                if is_array:
                    _array_to_lines(chunks, emit, self.name)
                else:
                    self._check_lines(chunks, emit)
            finally:
                stream.close()
        if self._too_many_bad:
            raise self._too_many_error()
        self._json_text = {name: _kind_type(seen) for name, seen in kinds.items()}
        return Path(out.name)

    def _check_lines(
        self, chunks: Iterator[str], emit: Callable[[dict[str, Any]], None]
    ) -> None:
        number = 0
        for lines in _lines_of(chunks):
            for line in lines:
                number += 1
                text = line.strip()
                if not text:
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    reason = f"not JSON: {exc}"
                else:
                    if isinstance(value, dict):
                        emit(value)
                        continue
                    reason = f"a JSON {type(value).__name__}, not an object"
                if not self._keep_bad(BadRow(number, line, reason)):
                    return

    def _too_many_error(self) -> CorruptFileError:
        return CorruptFileError(
            f"{self.name}: more than {MAX_BAD_ROWS} rows do not parse; the file is likely "
            "not in the dialect or encoding given (--csv-delimiter, --encoding, --format)"
        )

    def _gunzip(self, path: Path) -> Path:
        with tempfile.NamedTemporaryFile(suffix=".parquet", delete=False) as out:
            self._tmp.append(Path(out.name))
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
        return Path(out.name)

    @property
    def rules(self) -> CastRules:
        """How text values are cast to their column's type."""
        return CastRules(rescue=self.options.rescue, timezone=self.options.timezone,
                         decimal=self.options.csv_decimal, nulls=self._nulls)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The batches, one at a time, as `schema`; a parse error raises CorruptFileError."""
        try:
            for batch in self.reader:
                yield self._typed_batch(batch)
        except (pa.ArrowException, OSError, ValueError) as exc:
            if self._too_many_bad:
                raise self._too_many_error() from exc
            raise CorruptFileError(f"{self.name}: parse error: {exc}") from exc

    def _typed_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self._passthrough:
            return batch
        if self._renames is not None:
            batch = batch.rename_columns(self._renames)
        return conform(batch, self.schema, name=self.name, rules=self.rules)

    def as_reader(self) -> pa.RecordBatchReader:
        """`batches()` as a record batch reader of `schema`."""
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def count_rows(self) -> int:
        """Decode every row, proving the file sound, and count them."""
        return sum(batch.num_rows for batch in self.batches())

    def read_all(self) -> pa.Table:
        """The whole file as one table (for files small enough to batch)."""
        if self._parquet is not None and self._passthrough:
            # 4x faster than pulling batches through the reader, for a small file
            try:
                # a few thousand rows decode faster on this thread than handed to Arrow's pool
                threads = self._parquet.metadata.num_rows > _THREADED_READ_ROWS
                return self._parquet.read(use_threads=threads)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CorruptFileError(f"{self.name}: parse error: {exc}") from exc
        return pa.Table.from_batches(list(self.batches()), self.schema)

    def close(self) -> None:
        """Close the reader and remove any temp file."""
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
        for tmp in self._tmp:
            tmp.unlink(missing_ok=True)
        self._tmp.clear()

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def column_names(names: list[str], file: str, *, normalize: bool) -> list[str]:
    """The names columns are stored under: as they are, or snake_case under `normalize`.

    Raises:
        CorruptFileError: a name Spark-based readers refuse (without `normalize`),
            or two names that normalise alike.
    """
    if not normalize:
        refused = [n for n in names if any(c in _SPARK_REFUSED for c in n)]
        if refused:
            raise CorruptFileError(
                f"{file}: column name(s) {', '.join(repr(n) for n in refused)} hold spaces or "
                "any of ,;{}()= tab newline, which Spark-based readers of the table refuse; "
                "rename them in the export, or pass --normalize-names (INGEST_NORMALIZE_NAMES, "
                "route key normalize_names) to store them in snake_case"
            )
        return names
    out = [snake_case(n) or f"column_{i + 1}" for i, n in enumerate(names)]
    clashes = sorted({n for n in out if out.count(n) > 1})
    if clashes:
        originals = [repr(o) for o, n in zip(names, out, strict=True) if n in clashes]
        raise CorruptFileError(
            f"{file}: columns {', '.join(originals)} all normalise to "
            f"{', '.join(clashes)}; rename them in the export"
        )
    return out


def snake_case(name: str) -> str:
    """`Order ID` -> `order_id`, `orderDate` -> `order_date` (as dlt names columns)."""
    text = name.strip()
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"[^0-9A-Za-z_]+", "_", text).lower()
    text = re.sub(r"_+", "_", text).strip("_")
    return ("_" + text) if name.strip().startswith("_") and text else text


def _text_chunks(stream: pa.NativeFile, size: int = 1024 * 1024) -> Iterator[str]:
    """The stream's UTF-8 bytes decoded chunk by chunk (a BOM dropped)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    while True:
        data = stream.read(size)
        if not data:
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        yield decoder.decode(data)


def _lines_of(chunks: Iterator[str]) -> Iterator[list[str]]:
    """Complete lines, a list per chunk (the last line may lack its newline)."""
    rest = ""
    for chunk in chunks:
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


def _scalars_as_text(value: dict[str, Any], kinds: dict[str, set[str]]) -> dict[str, Any]:
    """`value` with numbers and booleans as their JSON text; the kinds seen noted per key."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool | int | float):
            kind = "bool" if isinstance(item, bool) else type(item).__name__
            kinds.setdefault(key, set()).add(kind)
            # 30.0 fits an integer column as the number 30 does (a safe cast), so as text too
            integral = isinstance(item, float) and item.is_integer() and abs(item) < 2**63
            out[key] = json.dumps(int(item) if integral else item)
        else:
            if isinstance(item, str):
                kinds.setdefault(key, set()).add("str")
            out[key] = item
    return out


def _kind_type(kinds: set[str]) -> pa.DataType | None:
    """The type of a JSON key from the kinds of its values; None: strings only (Arrow infers)."""
    if kinds == {"str"}:
        return None
    if kinds == {"int"}:
        return pa.int64()
    if kinds <= {"int", "float"}:
        return pa.float64()
    if kinds == {"bool"}:
        return pa.bool_()
    return pa.string()


def _array_to_lines(
    chunks: Iterator[str], emit: Callable[[dict[str, Any]], None], name: str
) -> None:
    """Emit the objects of one JSON array, holding one object at a time."""
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0
    ended = False

    def fill() -> bool:
        nonlocal buffer, pos, ended
        chunk = next(chunks, None)
        if chunk is None:
            ended = True
            return False
        buffer = buffer[pos:] + chunk
        pos = 0
        return True

    def skip_space() -> str | None:
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not fill():
                return None

    if skip_space() != "[":
        raise CorruptFileError(f"{name}: a JSON array was expected")
    pos += 1
    index = 0
    while True:
        char = skip_space()
        if char == "]" and index == 0:
            pos += 1
            break
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
                break
            except json.JSONDecodeError as exc:
                if len(buffer) - pos > _JSON_OBJECT_CHARS or not fill():
                    raise CorruptFileError(
                        f"{name}: element {index} of the JSON array does not parse: {exc.msg}"
                    ) from None
        if not isinstance(value, dict):
            raise CorruptFileError(
                f"{name}: element {index} of the JSON array is a {type(value).__name__}, not an "
                "object; only arrays of objects are read as rows"
            )
        emit(value)
        index += 1
        pos = end
        char = skip_space()
        if char == ",":
            pos += 1
        elif char == "]":
            pos += 1
            break
        else:
            raise CorruptFileError(
                f"{name}: after element {index - 1} of the JSON array, {char!r} instead of , or ]"
            )
    if skip_space() is not None:
        raise CorruptFileError(f"{name}: text after the end of the JSON array")


def _read_head(stream: pa.NativeFile, limit: int) -> bytes:
    """Up to `limit` bytes from the start (a compressed stream may return short reads)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse_json(data: bytes, as_text: pa.Schema | None = None) -> pa.Table:
    """Parse a whole JSON-lines buffer (the columns of `as_text` as strings)."""
    reader = pa.BufferReader(pa.py_buffer(data))
    parse = pa_json.ParseOptions(explicit_schema=as_text, unexpected_field_behavior="infer")
    return pa_json.read_json(reader, read_options=pa_json.ReadOptions(block_size=len(data) + 1),
                             parse_options=parse)


def _infer(parse: Callable[[bytes], pa.Table], head: bytes) -> pa.Schema | None:
    """Column types from the complete lines of `head`; None if they do not parse on their own.

    (A quoted CSV field may span the cut, a JSON object may be longer than the
    head: the streaming reader then infers from its first block instead.)
    """
    cut = head.rfind(b"\n")
    if cut <= 0:
        return None
    try:
        return parse(head[: cut + 1]).schema
    except (pa.ArrowException, ValueError):
        return None
