"""Stage 3: a claimed file's bytes as Arrow rows fit for its table.

Decode (by format, with the run's `ReadOptions`), apply the user transform,
add route captures and lineage columns, and conform to the table's schema
(`schema.target_schema`). Small files are read whole and conformed together
for one batch commit; a large file is opened as a stream of batches. A file
with no rows is set aside: it adds no columns and no types to the table.
Each file's rescued-row count and unparseable rows are left on its `Work`
for the writer (`delta.bad_rows`). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig
from ingest_core.errors import CorruptFileError, IngestError
from ingest_core.pipeline.work import Work
from ingest_core.sources import Sources

if TYPE_CHECKING:
    import pyarrow as pa

    from ingest_core.formats import OpenedFile
    from ingest_core.schema import CastRules, Lineage


@dataclass
class Conformed:
    """Small files' rows, each conformed to `schema`, and the files refused on the way."""

    schema: pa.Schema | None
    ready: list[tuple[Work, pa.Table]]
    refused: list[tuple[Work, IngestError]]
    empty: list[Work]
    """Files with no rows: ingested with 0 rows, nothing to write."""


@dataclass
class Stream:
    """One file opened as a stream of batches already fit for the table."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]


class Reader:
    """Turns claimed files into Arrow rows for their table."""

    def __init__(self, config: IngestConfig, sources: Sources) -> None:
        self._config = config
        self._sources = sources
        self._transform: Callable[[Any], Any] | None = None
        if config.transform:
            from ingest_core.transform import load_transform

            self._transform = load_transform(config.transform)

    @property
    def rewrites(self) -> bool:
        """Whether rows are changed on the way in (lineage or a transform)."""
        return self._config.lineage or self._transform is not None

    def open(self, work: Work) -> OpenedFile:
        """The file's local copy, opened in its format."""
        from ingest_core.formats import OpenedFile, format_of

        return OpenedFile(work.copy.path, format_of(work.file.uri, self._config.format),
                          work.file.uri, self._config.read)

    @property
    def rules(self) -> CastRules:
        """How values are cast into the table's column types (rescue, time zone)."""
        from ingest_core.schema import CastRules

        read = self._config.read
        return CastRules(rescue=read.rescue, timezone=read.timezone, decimal=read.csv_decimal)

    def verify(self, work: Work) -> None:
        """Raise SourceChangedError if the file changed since it was hashed."""
        self._sources.of(work.file.uri).verify(work.file, work.copy)

    def too_big_to_read_whole(self, work: Work) -> bool:
        """Whether `work` must be streamed: larger than `stream_bytes` on disk or once decoded.

        Decoded size (`formats.decoded_size`: parquet's uncompressed row-group
        sizes, gzip's inflated bytes) decides, so a small file that inflates to
        far more than `stream_bytes` cannot exhaust memory by being read whole.
        """
        limit = self._config.stream_bytes
        if work.copy.size > limit:
            return True
        from ingest_core.formats import decoded_size, format_of

        try:
            fmt = format_of(work.file.uri, self._config.format)
        except IngestError:
            return False  # its read reports the unknown format
        delimiter = self._config.read.csv_delimiter
        return decoded_size(work.copy.path, fmt, limit, delimiter) > limit

    def read_whole(self, work: Work) -> None:
        """Read a small file whole into `work.data` (transformed); raises IngestError."""
        with self.open(work) as opened:
            data = opened.read_all()
            work.bad_rows = opened.bad_rows
        self.verify(work)
        if self._transform is not None:
            from ingest_core.transform import apply_transform

            transformed = apply_transform(self._transform, data, work.file.uri)
            data = transformed if not hasattr(transformed, "read_all") else (
                transformed.read_all()
            )
        work.data = data

    def conform(self, works: list[Work], stored: pa.Schema | None) -> Conformed:
        """Each read file with captures and lineage, conformed to the table's schema.

        Under `schema_mode=merge` the schema grows with each file's new columns;
        every ready table is then cast to the final one, so they concatenate.
        """

        from ingest_core.schema import rescued_rows, target_schema

        strict = self._config.schema_mode == "strict"
        rules = self.rules
        now = datetime.now(UTC)
        schema = stored
        ready: list[tuple[Work, pa.Table]] = []
        refused: list[tuple[Work, IngestError]] = []
        empty: list[Work] = []
        for work in works:
            assert work.data is not None
            if work.data.num_rows == 0:
                work.rescued_rows = 0
                empty.append(work)
                continue
            data = self._with_lineage(work, work.data, self._lineage(work, now))
            try:
                file_schema = target_schema(schema, data.schema, strict=strict,
                                            name=work.file.uri)
                conformed = _conformed(data, file_schema, work.file.uri, rules)
            except IngestError as exc:
                refused.append((work, exc))
                continue
            schema = file_schema
            work.rescued_rows = rescued_rows(conformed)
            ready.append((work, conformed))
        if schema is not None:  # the schema may have grown since a file was conformed
            ready = [
                (w, t if t.schema.equals(schema, check_metadata=True)
                 else _conformed(t, schema, w.file.uri, rules))
                for w, t in ready
            ]
        return Conformed(schema=schema, ready=ready, refused=refused, empty=empty)

    def stream(
        self, work: Work, opened: OpenedFile, stored: pa.Schema | None,
        finish: Callable[[], None] | None = None,
    ) -> Stream:
        """The file's batches (transformed, with captures and lineage) as the table takes them.

        The source is verified once the last batch is read; `finish` is called
        then, before the caller commits (it records the file's bad rows).
        """
        import pyarrow as pa

        from ingest_core.schema import conform, rescued_rows, target_schema

        data: Any = opened.as_reader()
        if self._transform is not None:
            from ingest_core.transform import apply_transform

            data = apply_transform(self._transform, data, work.file.uri)
        lineage = self._lineage(work, datetime.now(UTC))
        empty = pa.Table.from_batches([pa.RecordBatch.from_pylist([], schema=data.schema)])
        schema = target_schema(
            stored, self._with_lineage(work, empty, lineage).schema,
            strict=self._config.schema_mode == "strict", name=work.file.uri,
        )

        rules = self.rules
        work.rescued_rows = 0

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in _decoded(data, work.file.uri):
                with_lineage = self._with_lineage(work, pa.Table.from_batches([batch]), lineage)
                for piece in with_lineage.to_batches():
                    conformed = conform(piece, schema, name=work.file.uri, rules=rules)
                    work.rescued_rows = (work.rescued_rows or 0) + rescued_rows(conformed)
                    yield conformed
            self.verify(work)
            work.bad_rows = opened.bad_rows
            if finish is not None:
                finish()

        return Stream(schema=schema, batches=batches())

    def as_is(self, work: Work, opened: OpenedFile) -> Path | None:
        """The parquet file itself when its rows go in unchanged (no lineage, transform, capture).

        The caller still checks that the file's columns are the table's (`CopyAsIs.fits`).
        """
        from ingest_core.formats import format_of

        if (
            self.rewrites
            or opened.schema != opened.reader.schema  # renamed columns, _rescued_data
            or work.file.columns
            or format_of(work.file.uri, self._config.format) != "parquet"
        ):
            return None
        return opened.parquet_as_is

    def _lineage(self, work: Work, now: datetime) -> Lineage | None:
        """The lineage columns of `work`'s rows (None when lineage is off)."""
        if not self._config.lineage:
            return None
        from ingest_core.schema import Lineage

        return Lineage(path=work.file.uri, sha256=work.sha256, ingested_at=now)

    def _with_lineage(self, work: Work, data: pa.Table, lineage: Lineage | None) -> pa.Table:
        """`data` plus the file's route captures and lineage columns."""
        if work.file.columns:
            from ingest_core.schema import with_constants

            data = with_constants(data, work.file.columns, name=work.file.uri)
        if lineage is None:
            return data
        import pyarrow as pa

        batches = [lineage.add(b) for b in data.to_batches()]
        if not batches:
            return pa.Table.from_batches([], lineage.schema(data.schema))
        return pa.Table.from_batches(batches)


def _conformed(data: pa.Table, schema: pa.Schema, name: str, rules: CastRules) -> pa.Table:
    import pyarrow as pa

    from ingest_core.schema import conform

    return pa.Table.from_batches(
        [conform(b, schema, name=name, rules=rules) for b in data.to_batches()], schema
    )


def _decoded(data: Any, name: str) -> Iterator[pa.RecordBatch]:
    """The batches of a reader or table; a decoding error is the file's fault."""
    import pyarrow as pa

    try:
        if isinstance(data, pa.Table):
            yield from data.to_batches()
        else:
            yield from data
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{name}: parse error: {exc}") from exc
