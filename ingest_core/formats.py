"""Parquet, CSV and JSON lines (each optionally gzip) as streams of Arrow record batches."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ingest_core.errors import ConfigurationError, CorruptFileError

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
_INFER_BYTES = 8 * 1024 * 1024
"""Column types are inferred from this much of the head, not from one small block."""


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


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


class OpenedFile:
    """A local file opened as Arrow batches; closes what it opened (temp files included)."""

    def __init__(self, path: Path, fmt: str, name: str) -> None:
        self.name = name
        self._tmp: Path | None = None
        self._parquet: pq.ParquetFile | None = None
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
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.close()
            raise CorruptFileError(f"{name}: not readable as {fmt}: {exc}") from exc
        if fmt != "parquet":
            self._refuse_binary_text()

    def _refuse_binary_text(self) -> None:
        """Text formats infer `binary` for bytes that are not UTF-8: refuse, don't store them."""
        binary = [f.name for f in self.reader.schema if pa.types.is_binary(f.type)]
        if binary:
            self.close()
            raise CorruptFileError(
                f"{self.name}: column(s) {', '.join(binary)} are not valid UTF-8 text; "
                "re-encode the file as UTF-8"
            )

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
        stream = pa.input_stream(str(path), compression="gzip" if compressed else None)
        head = _read_head(stream)
        if len(head) < _INFER_BYTES:
            # the whole file is in memory already: parse it once
            table = _parse_text(head, fmt)
            stream.close()
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        schema = _infer_schema(head, fmt)
        stream.close()
        stream = pa.input_stream(str(path), compression="gzip" if compressed else None)
        if fmt == "csv":
            return pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=_TEXT_BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(column_types=schema),
            )
        return pa_json.open_json(
            stream,
            read_options=pa_json.ReadOptions(block_size=_TEXT_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=schema),
        )

    def _gunzip(self, path: Path) -> Path:
        with tempfile.NamedTemporaryFile(suffix=".parquet", delete=False) as out:
            self._tmp = Path(out.name)
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
        return self._tmp

    @property
    def schema(self) -> pa.Schema:
        """The file's Arrow schema (for CSV/JSON: inferred from the first 8 MiB)."""
        return self.reader.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The batches, one at a time; a parse error raises CorruptFileError."""
        try:
            yield from self.reader
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptFileError(f"{self.name}: parse error: {exc}") from exc

    def count_rows(self) -> int:
        """Decode every row, proving the file sound, and count them."""
        return sum(batch.num_rows for batch in self.batches())

    def read_all(self) -> pa.Table:
        """The whole file as one table (for files small enough to batch)."""
        if self._parquet is not None:
            # 4x faster than pulling batches through the reader, for a small file
            try:
                return self._parquet.read()
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CorruptFileError(f"{self.name}: parse error: {exc}") from exc
        return pa.Table.from_batches(list(self.batches()), self.schema)

    def close(self) -> None:
        """Close the reader and remove any temp file."""
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_head(stream: pa.NativeFile) -> bytes:
    """Up to _INFER_BYTES from the start (a compressed stream may return short reads)."""
    chunks: list[bytes] = []
    size = 0
    while size < _INFER_BYTES:
        chunk = stream.read(_INFER_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse_text(data: bytes, fmt: str) -> pa.Table:
    """Parse a whole CSV or JSON-lines buffer."""
    reader = pa.BufferReader(pa.py_buffer(data))
    block = pa_csv.ReadOptions(block_size=max(len(data), 1) + 1)
    if fmt == "csv":
        return pa_csv.read_csv(reader, read_options=block)
    return pa_json.read_json(reader, read_options=pa_json.ReadOptions(block_size=block.block_size))


def _infer_schema(head: bytes, fmt: str) -> pa.Schema | None:
    """Column types from the complete lines of `head`; None if they do not parse on their own.

    (A quoted CSV field may span the cut, a JSON object may be longer than the
    head: the streaming reader then infers from its first block instead.)
    """
    cut = head.rfind(b"\n")
    if cut <= 0:
        return None
    try:
        return _parse_text(head[: cut + 1], fmt).schema
    except (pa.ArrowException, ValueError):
        return None
