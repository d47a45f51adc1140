"""Reconcile a file's columns with the table's before delta-rs sees them.

delta-rs's own merge casts unsafely (1.5 into a long column lands as 1), so
every column is cast here with Arrow's safe cast, and a file whose values do
not fit is refused with the column named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ingest_core.errors import SchemaIncompatibleError

LINEAGE_COLUMNS = ("_ingest_file", "_ingest_sha256", "_ingested_at")
RESCUED_COLUMN = "_rescued_data"
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


@dataclass(frozen=True)
class CastRules:
    """How values are cast into a column's type beyond Arrow's safe cast.

    `rescue`: a value that does not fit becomes null and its text goes into
    `_rescued_data` (when the target has that column), instead of refusing the
    file. `timezone`: the zone naive timestamps are in when they go into a
    time-zone-aware column; None refuses them (no silent UTC). `decimal`: the
    decimal separator of numbers held as text. `nulls`: texts that are null
    when cast to a type other than text (a CSV's null values).
    """

    rescue: bool = False
    timezone: str | None = None
    decimal: str = "."
    nulls: tuple[str, ...] = ()

_TEXT = pa.string()


def _storable(t: pa.DataType) -> pa.DataType:
    """The type a new column is stored as (Delta has no null, view or large types)."""
    if pa.types.is_null(t):
        return _TEXT
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _TEXT
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


def _same_storage(incoming: pa.DataType, stored: pa.DataType) -> bool:
    if incoming == stored:
        return True
    # dictionary<string> lands as string: keep the dictionary, it costs almost nothing
    return pa.types.is_dictionary(incoming) and _storable(incoming.value_type) == _storable(stored)


def check_column_names(incoming: pa.Schema, table: pa.Schema | None, *, name: str) -> None:
    """Refuse names Delta Lake cannot keep apart: raise SchemaIncompatibleError naming them.

    Delta Lake column names are case-insensitive: a file holding the same name
    twice (a CSV header `a,a,b`), two names differing only in case (`id`,
    `ID`), or a new column differing only in case from one of the table's is
    the file's problem, not a transient one; retrying cannot help.
    """
    seen: dict[str, str] = {}
    for column in incoming.names:
        first = seen.get(column.lower())
        if first is None:
            seen[column.lower()] = column
            continue
        if first == column:
            raise SchemaIncompatibleError(
                f"{name}: the column {column!r} appears twice (a header such as `a,a,b`); "
                "rename one of them in the source file, or read it with --csv-no-header and "
                "--schema-hints naming every column"
            )
        raise SchemaIncompatibleError(
            f"{name}: the columns {first!r} and {column!r} differ only in case, and Delta Lake "
            "column names are case-insensitive; rename one of them in the source file "
            "(or with a --transform)"
        )
    if table is None:
        return
    stored = {n.lower(): n for n in table.names}
    clashes = [
        f"{column!r} (the table has {stored[column.lower()]!r})"
        for column in incoming.names
        if column not in table.names and column.lower() in stored
    ]
    if clashes:
        raise SchemaIncompatibleError(
            f"{name}: column {', '.join(clashes)} differs from the table's only in case, and "
            "Delta Lake column names are case-insensitive; spell it as the table does in the "
            "source file (or rename it with a --transform)"
        )


def target_schema(
    table: pa.Schema | None, incoming: pa.Schema, *, strict: bool, name: str
) -> pa.Schema:
    """The schema `incoming` data is cast to before it is appended to `table`.

    Existing columns keep the table's type; new columns are appended (merge)
    or refused (strict). Raises SchemaIncompatibleError naming the file (also
    for names Delta Lake cannot keep apart, see `check_column_names`).
    """
    check_column_names(incoming, table, name=name)
    if table is None:
        return pa.schema(
            [f if pa.types.is_dictionary(f.type) else f.with_type(_storable(f.type))
             for f in incoming]
        )
    incoming_by_name = {f.name: f for f in incoming}
    fields = []
    for stored in table:
        new = incoming_by_name.get(stored.name)
        if new is not None and _same_storage(new.type, stored.type):
            fields.append(stored.with_type(new.type))
        else:
            fields.append(stored)
    added = [f for f in incoming if f.name not in table.names]
    if added and strict:
        raise SchemaIncompatibleError(
            f"{name}: new columns {', '.join(f.name for f in added)} are not in the table "
            "and --schema-mode is strict; add them to the table or use --schema-mode merge"
        )
    return pa.schema(fields + [f.with_type(_storable(f.type)) for f in added])


def conform(
    batch: pa.RecordBatch, target: pa.Schema, *, name: str, rules: CastRules | None = None
) -> pa.RecordBatch:
    """Cast `batch` to `target`: safe casts, missing columns as nulls.

    Under `rules.rescue`, values that do not fit are nulled and kept, as text,
    in the `_rescued_data` column of `target` (merged with what it holds already).
    """
    rules = rules or CastRules()
    rescued: dict[int, dict[str, str]] = {}
    columns: list[pa.Array | None] = []
    for field in target:
        index = batch.schema.get_field_index(field.name)
        if field.name == RESCUED_COLUMN and rules.rescue:
            columns.append(None)
            continue
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if column.type != field.type:
            column = _cast(column, field, name, rules, rescued)
        columns.append(column)
    if RESCUED_COLUMN in target.names and rules.rescue:
        index = batch.schema.get_field_index(RESCUED_COLUMN)
        held = batch.column(index) if index >= 0 else None
        columns[target.get_field_index(RESCUED_COLUMN)] = _rescued_array(
            batch.num_rows, held, rescued
        )
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _rescued_array(
    rows: int, held: pa.Array | None, rescued: dict[int, dict[str, str]]
) -> pa.Array:
    """The `_rescued_data` column: what `held` had, plus this cast's rescues, as JSON text."""
    if not rescued:
        return held.cast(_TEXT) if held is not None else pa.nulls(rows, _TEXT)
    values: list[str | None] = (
        held.cast(_TEXT).to_pylist() if held is not None else [None] * rows
    )
    for row, texts in rescued.items():
        held_text = values[row]
        before = json.loads(held_text) if held_text else {}
        values[row] = json.dumps({**before, **texts}, ensure_ascii=False)
    return pa.array(values, _TEXT)


def rescued_rows(batch: pa.RecordBatch | pa.Table) -> int:
    """How many rows of `batch` hold rescued values."""
    if RESCUED_COLUMN not in batch.schema.names:
        return 0
    column = batch.column(RESCUED_COLUMN)
    return len(column) - column.null_count


def _cast(
    column: pa.Array, field: pa.Field, name: str, rules: CastRules,
    rescued: dict[int, dict[str, str]],
) -> pa.Array:
    def refuse(exc: Exception) -> SchemaIncompatibleError:
        return SchemaIncompatibleError(
            f"{name}: column {field.name!r} holds {column.type} values that do not fit the "
            f"table's {field.type}: {exc}"
            + ("" if rules.rescue else "; fix the file, or pass --bad-rows rescue to keep such "
               "values in _rescued_data")
        )

    to = field.type
    if rules.nulls and pa.types.is_string(column.type) and not pa.types.is_string(to):
        is_null = pc.is_in(column, value_set=pa.array(rules.nulls, _TEXT))
        column = pc.if_else(is_null, pa.scalar(None, _TEXT), column)
    if pa.types.is_string(column.type) and rules.decimal != "." and (
        pa.types.is_floating(to) or pa.types.is_decimal(to)
    ):
        column = pc.replace_substring(column, rules.decimal, ".")
    if _naive_into_aware(column.type, to):
        column = _localised(column, to, name, field.name, rules)
    elif pa.types.is_string(column.type) and pa.types.is_timestamp(to) and to.tz is not None:
        column = _text_into_aware(column, to, name, field.name, rules, rescued)
    # sub-microsecond precision is what Delta's timestamps drop anyway
    both_times = pa.types.is_timestamp(column.type) and pa.types.is_timestamp(to)
    try:
        return pc.cast(column, to, safe=not both_times)
    except _CAST_ERRORS as exc:
        if not rules.rescue:
            raise refuse(exc) from exc
    cast, failed = _cast_each(column, to)
    for row in failed:
        value = column[row].as_py()
        rescued.setdefault(row, {})[field.name] = value if isinstance(value, str) else (
            json.dumps(value, default=str)
        )
    return cast


def _cast_each(column: pa.Array, to: pa.DataType) -> tuple[pa.Array, list[int]]:
    """Cast what casts; the indexes that do not (found by halving: few bad values, few casts)."""
    try:
        return pc.cast(column, to), []
    except _CAST_ERRORS:
        if len(column) == 1:
            return pa.nulls(1, to), [0]
    half = len(column) // 2
    first, bad_first = _cast_each(column.slice(0, half), to)
    second, bad_second = _cast_each(column.slice(half), to)
    return pa.concat_arrays([first, second]), bad_first + [half + i for i in bad_second]


def _naive_into_aware(source: pa.DataType, to: pa.DataType) -> bool:
    return (
        pa.types.is_timestamp(source) and source.tz is None
        and pa.types.is_timestamp(to) and to.tz is not None
    )


def _localised(
    column: pa.Array, to: pa.DataType, name: str, column_name: str, rules: CastRules
) -> pa.Array:
    """Naive timestamps read as local times of `rules.timezone`; refused without one."""
    if rules.timezone is None:
        raise SchemaIncompatibleError(
            f"{name}: column {column_name!r} holds timestamps without a time zone, and the "
            f"table's column is {to} (time-zone aware); pass --timezone NAME (INGEST_TIMEZONE, "
            "route key timezone) to say which zone they are in"
        )
    return pc.assume_timezone(column, rules.timezone, ambiguous="earliest",
                              nonexistent="earliest")


def _text_into_aware(
    column: pa.Array, to: pa.DataType, name: str, column_name: str, rules: CastRules,
    rescued: dict[int, dict[str, str]],
) -> pa.Array:
    """Text timestamps with an offset are taken as they are; without one, as naive ones."""
    try:
        return pc.cast(column, to)
    except _CAST_ERRORS:
        pass
    naive = pa.timestamp(to.unit)
    try:
        local = pc.cast(column, naive)
    except _CAST_ERRORS:
        if not rules.rescue:
            return column  # the cast that follows refuses it, naming the column
        local, failed = _cast_each(column, naive)
        for row in failed:
            rescued.setdefault(row, {})[column_name] = column[row].as_py()
    return _localised(local, to, name, column_name, rules)


class Lineage:
    """The lineage columns of one file, built once and sliced onto each of its batches.

    Constant strings are dictionary-encoded, and every batch shares the same
    dictionaries: delta-rs then writes them as they are, where a dictionary
    made anew per batch cost ~0.25 s per 5M rows (measured on the benchmark file).
    """

    def __init__(self, *, path: str, sha256: str, ingested_at: datetime) -> None:
        self._values = (pa.array([path], _TEXT), pa.array([sha256], _TEXT))
        self._ingested_at = pa.scalar(ingested_at, pa.timestamp("us", tz="UTC"))
        self._zeros = pa.array([], pa.int32())
        self._times = pa.array([], self._ingested_at.type)

    def add(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` plus the lineage columns."""
        n = batch.num_rows
        if n > len(self._zeros):
            self._zeros = pa.repeat(pa.scalar(0, pa.int32()), n)
            self._times = pa.repeat(self._ingested_at, n)
        zeros = self._zeros.slice(0, n)
        arrays = [
            *batch.columns,
            *(pa.DictionaryArray.from_arrays(zeros, values) for values in self._values),
            self._times.slice(0, n),
        ]
        # by schema, not names: a column's metadata (its original name) stays with it
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema(batch.schema))

    @staticmethod
    def schema(schema: pa.Schema) -> pa.Schema:
        """`schema` plus the lineage columns, as `add` produces them."""
        text = pa.dictionary(pa.int32(), _TEXT)
        return (
            schema.append(pa.field("_ingest_file", text))
            .append(pa.field("_ingest_sha256", text))
            .append(pa.field("_ingested_at", pa.timestamp("us", tz="UTC")))
        )


def with_constants(data: pa.Table, columns: Mapping[str, str], *, name: str) -> pa.Table:
    """`data` plus one string column per entry of `columns`, each holding its one value.

    Plain strings, not dictionaries: delta-rs cannot partition by a dictionary
    column ("failed to read partition column value as Scalar").
    """
    clash = [c for c in columns if c in data.column_names]
    if clash:
        raise SchemaIncompatibleError(
            f"{name}: column {', '.join(clash)} is both in the file and a route capture; "
            "rename the capture in the routes file"
        )
    for column, value in columns.items():
        data = data.append_column(
            pa.field(column, _TEXT), pa.repeat(pa.scalar(value, _TEXT), data.num_rows)
        )
    return data
