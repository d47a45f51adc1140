"""Generate the benchmark inputs, deterministically (seeded).

    python bench/make_data.py [OUT] [--csv-mb MB] [--no-csv] [--seed N]

Writes into OUT (default bench/out/, git-ignored):

- large.parquet: 5,000,000 rows, about 104 MiB (109 MB; like the file of DESIGN section 5);
- small/part-00000.parquet ... part-00499.parquet: 500 files of 100 rows and 4
  columns (id, customer_id, amount, country), each with distinct content (the
  ledger would skip identical bytes);
- large.csv: CSV of about --csv-mb MiB (default 2048) of the same columns,
  for the peak-memory check; skipped with --no-csv or --csv-mb 0;
- messy.csv: large.csv with a bad quantity (`unknown`) and a ragged row every
  256 MiB, for the peak-memory check under `--bad-rows rescue`.

Columns: id int64, customer_id int64 (100k values), quantity int32, amount float64 (two
decimals), score float32 (random), country string (two
letters, 20 values), event_time timestamp[us, UTC].
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
LARGE_ROWS = 5_000_000
SMALL_FILES = 500
SMALL_ROWS = 100
CHUNK_ROWS = 1_000_000
CSV_CHUNK_ROWS = 250_000
COUNTRIES = pa.array(
    [
        "US",
        "DE",
        "FR",
        "GB",
        "NL",
        "SE",
        "IT",
        "ES",
        "PL",
        "BE",
        "JP",
        "CN",
        "IN",
        "BR",
        "MX",
        "CA",
        "AU",
        "ZA",
        "NG",
        "KR",
    ]
)
EPOCH_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("customer_id", pa.int64()),
        ("quantity", pa.int32()),
        ("amount", pa.float64()),
        ("score", pa.float32()),
        ("country", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
    ]
)


def _uniform(n: int, seed: int) -> pa.Array:
    """n floats in [0, 1), reproducible for a given seed."""
    return pc.random(n, initializer=seed)


def _ints(n: int, seed: int, high: int, kind: pa.DataType) -> pa.Array:
    """n integers in [0, high)."""
    return pc.cast(pc.floor(pc.multiply(_uniform(n, seed), high)), kind)


def make_batch(first_id: int, n: int, seed: int) -> pa.RecordBatch:
    """Rows first_id .. first_id + n - 1; the same arguments give the same rows."""
    ids = pa.array(range(first_id, first_id + n), pa.int64())
    jitter = _ints(n, seed + 5, 1_000_000, pa.int64())
    event_us = pc.add(pc.add(pc.multiply(ids, 500_000), jitter), EPOCH_US)
    columns = [
        ids,
        _ints(n, seed + 1, 100_000, pa.int64()),
        pc.add(_ints(n, seed + 2, 100, pa.int32()), pa.scalar(1, pa.int32())),
        pc.round(pc.multiply(_uniform(n, seed + 3), 1000.0), 2),
        pc.cast(_uniform(n, seed + 4), pa.float32()),
        pc.take(COUNTRIES, _ints(n, seed + 6, len(COUNTRIES), pa.int32())),
        pc.cast(event_us, pa.timestamp("us", tz="UTC")),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def make_large_parquet(path: Path, seed: int, rows: int = LARGE_ROWS) -> None:
    """The ~104 MB, 5M-row parquet file (snappy, pyarrow defaults)."""
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for k, start in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - start)
            writer.write_batch(make_batch(start, n, seed * 1000 + k * 10))


SMALL_COLUMNS = ("id", "customer_id", "amount", "country")
"""The small files' 4 columns (issue 15: 500 files of 100 rows and 4 columns)."""


def make_small_files(
    folder: Path, seed: int, count: int = SMALL_FILES, rows: int = SMALL_ROWS
) -> None:
    """`count` parquet files of `rows` rows and the 4 `SMALL_COLUMNS`, each distinct."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    for i in range(count):
        batch = make_batch(10_000_000 + i * rows, rows, seed * 100_000 + 7919 * (i + 1))
        table = pa.Table.from_batches([batch]).select(list(SMALL_COLUMNS))
        pq.write_table(table, folder / f"part-{i:05d}.parquet")


def make_csv(path: Path, seed: int, megabytes: int) -> None:
    """A CSV of at least `megabytes` MiB (whole chunks of 250k rows, about 16 MiB each)."""
    target = megabytes * 1024 * 1024
    options = pa_csv.WriteOptions(include_header=True)
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa_csv.CSVWriter(sink, SCHEMA, write_options=options) as writer,
    ):
        k = 0
        while sink.tell() < target:
            n = CSV_CHUNK_ROWS
            writer.write_batch(make_batch(50_000_000 + k * n, n, seed * 7777 + k * 10))
            k += 1


def make_messy_csv(source: Path, path: Path, every_mb: int = 256) -> int:
    """`source` with, every `every_mb` MiB, a row whose quantity is `unknown` and a ragged row.

    None falls in the first 64 MiB, so column types are still inferred as
    numbers and the bad values are rescued (`--bad-rows rescue`), not typed as
    text. Returns how many bad values (and as many ragged rows) were added.
    """
    step = 64 * 1024 * 1024
    added = 0
    with open(source, "rb") as src, open(path, "wb") as out:
        position = 0
        while chunk := src.read(step):
            position += len(chunk)
            if position > step and position // step % (every_mb // 64) == 0:
                cut = chunk.index(b"\n") + 1
                line = chunk[cut : chunk.index(b"\n", cut)]
                fields = line.split(b",")
                fields[2] = b"unknown"
                chunk = chunk[:cut] + b",".join(fields) + b"\n1,2,3\n" + chunk[cut:]
                added += 1
            out.write(chunk)
    return added


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    """Generate the inputs requested on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder (default {DEFAULT_OUT})",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--csv-mb",
        type=int,
        default=2048,
        help="size of large.csv in MiB (default 2048; 0 skips it)",
    )
    parser.add_argument("--no-csv", action="store_true", help="do not write large.csv")
    parser.add_argument(
        "--only",
        choices=["large", "small", "csv", "messy"],
        action="append",
        help="generate only these inputs (repeatable)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or ["large", "small", "csv", "messy"])
    if args.no_csv or args.csv_mb <= 0:
        wanted.discard("csv")
    if "large" in wanted:
        t = time.perf_counter()
        make_large_parquet(out / "large.parquet", args.seed)
        print(
            f"large.parquet: {LARGE_ROWS:,} rows, {_mb(out / 'large.parquet')}, "
            f"{time.perf_counter() - t:.1f} s"
        )
    if "small" in wanted:
        t = time.perf_counter()
        make_small_files(out / "small", args.seed)
        total = sum(p.stat().st_size for p in (out / "small").glob("*.parquet"))
        print(
            f"small/: {SMALL_FILES} files x {SMALL_ROWS} rows x {len(SMALL_COLUMNS)} columns, "
            f"{total / 1e6:.1f} MB, "
            f"{time.perf_counter() - t:.1f} s"
        )
    if "csv" in wanted:
        t = time.perf_counter()
        make_csv(out / "large.csv", args.seed, args.csv_mb)
        print(f"large.csv: {_mb(out / 'large.csv')}, {time.perf_counter() - t:.1f} s")
    if "messy" in wanted and (out / "large.csv").exists():
        t = time.perf_counter()
        added = make_messy_csv(out / "large.csv", out / "messy.csv")
        print(f"messy.csv: {_mb(out / 'messy.csv')}, {added} bad values and {added} ragged "
              f"rows, {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
