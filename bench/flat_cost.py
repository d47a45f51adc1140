"""Per-file cost as the table grows: at table version ~100 and ~5,000.

Builds one local Delta table per version with tiny appends (delta-rs writes a
checkpoint every 100 commits), then, with one long-lived IdempotentIngestor,
measures (a) --files small files one commit each (batch of 1: what one event per
file costs) and (b) --batched files in default batches (what a backfill costs per
file). Prints min/median/max per file and the ratios high/low of the medians.

Each version gets a table of its own with the same ingestion history, so the
two differ only in their version: the number of transaction ids a table holds
costs time on its own (bench/README.md, finding 4), and measuring the high
version on the table the low one had filled with ids mixed both up.

    python bench/flat_cost.py --low 100 --high 5000 --files 40 --batched 400
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from ingest_core import IdempotentIngestor


def grow(uri: str, version: int) -> None:
    """Append tiny commits until the table is at `version`."""
    try:
        table = DeltaTable(uri)
    except Exception:
        write_deltalake(uri, pa.table({"id": [-1], "amount": [0.0]}))
        table = DeltaTable(uri)
    row = pa.table({"id": [-1], "amount": [0.0]})
    while table.version() < version:
        if table.version() % 100 == 0:
            table = DeltaTable(uri)  # a long-reused snapshot slows every write
        write_deltalake(table, row, mode="append")


def make_files(folder: Path, files: int, start: int) -> list[Path]:
    """`files` parquet files of 100 rows each, ids from start * 100."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(files):
        path = folder / f"f{start + i:06}.parquet"
        pq.write_table(pa.table({"id": list(range((start + i) * 100, (start + i) * 100 + 100)),
                                 "amount": [1.0] * 100}), path)
        paths.append(path)
    return paths


def batched_ms(uri: str, folder: Path, files: int, start: int, runs: int = 3) -> list[float]:
    """Per-file wall time (ms) of ingesting `files` new files in default batches, `runs` times."""
    timings = []
    for run in range(runs):
        sub = folder / f"run{run}"
        make_files(sub, files, start + run * files)
        with IdempotentIngestor(table=uri, lineage=False) as ing:
            began = time.perf_counter()
            stats = ing.ingest_directory(str(sub))
            timings.append((time.perf_counter() - began) * 1000 / files)
        assert stats.ingested == files
    return timings


def per_file_ms(uri: str, landing: Path, files: int, start: int) -> list[float]:
    """Ingest `files` new files one commit each; the wall time of each, in ms."""
    paths = make_files(landing / f"single{start}", files, start)
    timings = []
    with IdempotentIngestor(table=uri, lineage=False, batch_files=1) as ing:
        ing.ingest_file(str(paths[0]))  # warm: load the snapshot once
        for path in paths[1:]:
            began = time.perf_counter()
            result = ing.ingest_file(str(path))
            timings.append((time.perf_counter() - began) * 1000)
            assert result.status == "ingested", result.error
    return timings


def summary(label: str, values: list[float]) -> str:
    return (f"{label:<28} min {min(values):7.1f}  median {statistics.median(values):7.1f}  "
            f"max {max(values):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=100, help="first table version (default 100)")
    parser.add_argument("--high", type=int, default=5000, help="second version (default 5000)")
    parser.add_argument("--files", type=int, default=40, help="one-commit files per version")
    parser.add_argument("--batched", type=int, default=400,
                        help="files per batched run (3 runs per version)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        single, batched = {}, {}
        for n, version in enumerate((args.low, args.high)):
            uri = str(Path(tmp) / f"table-v{version}")
            began = time.perf_counter()
            grow(uri, version)
            print(f"grew the table to version {version} in {time.perf_counter() - began:.1f} s")
            single[version] = per_file_ms(uri, landing, args.files, start=n * 1_000_000)
            print(summary(f"one commit per file, v~{version}", single[version]))
            batched[version] = batched_ms(uri, landing / f"b{n}", args.batched,
                                          start=n * 1_000_000 + 100_000)
            print(summary(f"default batches, v~{version}", batched[version]))
        for label, figures in (("one commit per file", single), ("default batches", batched)):
            ratio = statistics.median(figures[args.high]) / statistics.median(figures[args.low])
            print(f"{label}: median per file v{args.high} / v{args.low} = {ratio:.2f}"
                  "  (target <= 1.2)")


if __name__ == "__main__":
    main()
