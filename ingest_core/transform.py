"""User transforms: `module:function`, taking and returning Arrow data."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from ingest_core.errors import ConfigurationError, TransformError

Transform = Callable[[Any], Any]


def load_transform(spec: str) -> Transform:
    """Import `module:function`; ConfigurationError if it cannot be found."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--transform {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"--transform {spec!r}: cannot import {module_name}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigurationError(f"--transform {spec!r}: {module_name} has no callable {attr!r}")
    return fn


def apply_transform(fn: Transform, data: Any, name: str) -> pa.Table | pa.RecordBatchReader:
    """Call `fn(data)` and normalise what it returns to a Table or a RecordBatchReader.

    `data` is a `pyarrow.Table` for a file read whole, a `RecordBatchReader`
    for a large file streamed; `fn` may return a Table, a RecordBatch, a
    RecordBatchReader or an iterable of RecordBatches.
    """
    try:
        out = fn(data)
    except Exception as exc:
        raise TransformError(f"{name}: the transform raised {type(exc).__name__}: {exc}") from exc
    if isinstance(out, pa.Table | pa.RecordBatchReader):
        return out
    if isinstance(out, pa.RecordBatch):
        return pa.Table.from_batches([out])
    if isinstance(out, Iterable):
        batches = iter(out)
        first = next(batches, None)
        if isinstance(first, pa.RecordBatch):
            def chained() -> Iterable[pa.RecordBatch]:
                yield first
                yield from batches
            return pa.RecordBatchReader.from_batches(first.schema, chained())
    raise TransformError(
        f"{name}: the transform returned {type(out).__name__}; return a pyarrow Table, "
        "RecordBatch, RecordBatchReader or an iterable of RecordBatches"
    )
