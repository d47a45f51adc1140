"""Everything that knows delta-rs: tables, snapshots, writers, errors, table folders.

Nothing outside this package imports `deltalake`. The names below load lazily,
so a run that only skips files never imports pyarrow or deltalake.

- `target`: `TableRef` (where a table is, how to reach it) and `DeltaTarget`
  (its snapshot reused, the guarded commit, finding a file's commit).
- `writers`: the three ways rows reach a table (batch append, stream append,
  copy as is), each one guarded commit.
- `data_files`: parquet written by pyarrow, committed by delta-rs.
- `maintain`: compaction, checkpoints, vacuum and log cleanup.
- `errors`: delta-rs errors told apart; `folder`: what a local table folder holds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest_core.delta.target import (
        APP_ID_PREFIX,
        METADATA_KEY,
        RELOAD_AFTER_COMMITS,
        DeltaTarget,
        FileEntry,
        Landing,
        TableRef,
        app_id,
        open_table,
    )

_LAZY = {
    name: "ingest_core.delta.target"
    for name in (
        "APP_ID_PREFIX", "METADATA_KEY", "RELOAD_AFTER_COMMITS", "DeltaTarget", "FileEntry",
        "Landing", "TableRef", "app_id", "open_table",
    )
}

__all__ = [
    "APP_ID_PREFIX",
    "METADATA_KEY",
    "RELOAD_AFTER_COMMITS",
    "DeltaTarget",
    "FileEntry",
    "Landing",
    "TableRef",
    "app_id",
    "open_table",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
