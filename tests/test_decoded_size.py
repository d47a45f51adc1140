"""Decoded size, not size on disk, decides between reading whole and streaming (issue 13, row 8).

A parquet file of a few KiB can decode to tens of MiB (dictionary and
run-length encoding), a gzipped CSV likewise: read whole, a "small" file could
exhaust memory. Such files are streamed into a commit of their own; small
files still share one commit.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import id_counts, write_parquet, write_text

from ingest_core import IdempotentIngestor
from ingest_core.formats import decoded_size

LIMIT = 1 << 20
ROWS = 1_000_000


def test_files_that_decode_large_are_streamed(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    write_parquet(landing / "a_small.parquet", 0, 3)
    write_text(landing / "b_small.csv", "id,amount\n10,1.5\n")
    bomb = landing / "c_bomb.parquet"
    pq.write_table(pa.table({"id": pa.array([7] * ROWS, pa.int64())}), bomb)
    zipped = landing / "d_bomb.csv.gz"
    with gzip.open(zipped, "wb") as out:
        out.write(b"id\n" + b"8\n" * ROWS)
    numbers = landing / "e_numbers.csv"  # under the limit as text, over it as int64 columns
    numbers.write_bytes(b"id,n\n" + b"9,1\n" * 80_000)
    assert LIMIT / 4 < numbers.stat().st_size < LIMIT
    assert bomb.stat().st_size < 64 * 1024 and zipped.stat().st_size < 64 * 1024
    assert decoded_size(bomb, "parquet", LIMIT) >= 8 * ROWS
    assert decoded_size(zipped, "csv", LIMIT) > LIMIT
    assert decoded_size(numbers, "csv", LIMIT) > LIMIT

    table = str(tmp_path / "lake" / "orders")
    with IdempotentIngestor(table=table, stream_bytes=LIMIT, batch_files=10) as ing:
        results = {Path(r.path).name: r for r in ing.ingest_directory(str(landing)).files}
    assert {r.status for r in results.values()} == {"ingested"}
    small = {results["a_small.parquet"].delta_version, results["b_small.csv"].delta_version}
    assert len(small) == 1  # the small files share a commit
    streamed = {results[name].delta_version
                for name in ("c_bomb.parquet", "d_bomb.csv.gz", "e_numbers.csv")}
    assert len(streamed) == 3 and not streamed & small  # each in a commit of its own
    counts = id_counts(table)
    assert counts[7] == ROWS and counts[8] == ROWS and counts[0] == 1 and counts[10] == 1
    assert counts[9] == 80_000


def test_plain_small_files_are_measured_by_their_size(tmp_path: Path) -> None:
    csv = write_text(tmp_path / "a.csv", "id\n1\n2\n")
    assert decoded_size(csv, "csv", LIMIT) == csv.stat().st_size
    text = write_text(tmp_path / "t.csv", "name\n" + ("x" * 200 + "\n") * 1000)
    assert decoded_size(text, "csv", 100_000) < 1.1 * text.stat().st_size  # long text: ~1x
    broken = write_text(tmp_path / "b.parquet", "not parquet")
    assert decoded_size(broken, "parquet", LIMIT) == broken.stat().st_size
