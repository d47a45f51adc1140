"""Helpers shared by tests: write sample files, read a Delta table back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable


def write_parquet(path: Path, start: int, rows: int = 3) -> Path:
    """A parquet file with ids start..start+rows-1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {"id": list(range(start, start + rows)), "amount": [i * 1.5 for i in range(rows)]}
        ),
        path,
    )
    return path


def write_text(path: Path, text: str) -> Path:
    """A text file (CSV, JSON lines) with `text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read_table(uri: str, storage_options: dict[str, str] | None = None) -> pa.Table:
    """The whole Delta table."""
    return DeltaTable(uri, storage_options=storage_options).to_pyarrow_table()


def id_counts(uri: str, storage_options: dict[str, str] | None = None) -> Counter[int]:
    """How many times each id is in the table."""
    return Counter(read_table(uri, storage_options).column("id").to_pylist())


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `ingest ...` as a separate process, as a user would (in `cwd` if given)."""
    return subprocess.run(
        [sys.executable, "-m", "ingest_core.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
        cwd=cwd,
    )
