"""Large-file benchmark: `ingest run` against the bare read + write_deltalake floor.

    python bench/make_data.py                 # once: bench/out/large.parquet (+ large.csv)
    python bench/large_file.py [--pairs 5] [--venv DIR] [--csv [--csv-mb MB]] [--out bench/out]

What a user runs is measured: the `ingest` console script of a NON-editable
install (`pip install REPO` into --venv, created on first use, the repository
reinstalled into it on every later use unless --no-install). Every
measurement is a whole separate process (interpreter start and imports
included), with the venv's interpreter, on a fresh table (and, for ours, a
fresh SQLite ledger):

- floor:  python -c "write_deltalake(T, pq.read_table(FILE))"
- ours:   ingest run FILE --table T --json
- as is (--as-is): the same with --no-lineage: a parquet file whose columns
          need no rewrite is copied into the table and committed (parquet only)
- import: python -c "import pyarrow.parquet, deltalake" (what any process pays)

floor and ours run in pairs (their order alternates); wall time is measured
around the child and peak RSS is the child's own ru_maxrss from os.wait4.
Each ratio is ours/floor within a pair: min/median/max over the pairs.

Also printed: the speed of `ingest_core.hashing.file_sha256` on the file (in
this process, the file in the page cache), 3 runs: the target is >= 1 GB/s.

With --csv, large.csv is ingested too (floor: pyarrow.csv.read_csv +
write_deltalake), --csv-runs times each (default 1); peak RSS is the figure
that matters there. --csv-mb MB generates the CSV (MB MiB) in a temporary
folder under --work instead, and deletes it afterwards. With --rescue,
messy.csv (large.csv with a few bad values and ragged rows) is ingested
--csv-runs times with `--bad-rows rescue`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common
from _common import (
    Measure,
    add_folder_args,
    add_venv_args,
    check,
    fresh_dir,
    header,
    load,
    machine,
    ratio_row,
    remove,
    row,
    run_child,
    tree_bytes,
    use_venv,
    warm,
)

FLOOR_PARQUET = (
    "import sys, pyarrow.parquet as pq; from deltalake import write_deltalake; "
    "write_deltalake(sys.argv[1], pq.read_table(sys.argv[2]))"
)
FLOOR_CSV = (
    "import sys, pyarrow.csv as pc; from deltalake import write_deltalake; "
    "write_deltalake(sys.argv[1], pc.read_csv(sys.argv[2]))"
)
IMPORTS = "import pyarrow.parquet, deltalake"


def run_floor(code: str, file: Path, work: Path) -> tuple[Measure, int]:
    """The floor on a fresh table; returns the measure and the table's data bytes."""
    run_dir = fresh_dir(work, "floor")
    table = run_dir / "table"
    try:
        m = run_child([_common.PY, "-c", code, str(table), str(file)])
        check(m, "floor")
        return m, tree_bytes(table)
    finally:
        remove(run_dir)


def run_ours(
    file: Path, work: Path, rows: int | None, *extra: str
) -> tuple[Measure, int]:
    """`ingest run FILE --table T --json [extra]` on a fresh table and ledger."""
    run_dir = fresh_dir(work, "ours")
    table = run_dir / "table"
    try:
        m = run_child(
            [*_common.INGEST, "run", str(file), "--table", str(table), "--json", *extra]
        )
        check(m, "ingest run")
        result = m.json()
        if result.get("ingested") != 1 or (rows is not None and result.get("rows") != rows):
            raise SystemExit(f"ingest run did not ingest the file: {m.stdout[:2000]}")
        return m, tree_bytes(table)
    finally:
        remove(run_dir)


def hash_speed(file: Path, runs: int = 3) -> list[float]:
    """GB/s of `file_sha256` on `file`, `runs` times (the file already in the page cache)."""
    import time

    from ingest_core.hashing import file_sha256

    speeds = []
    for _ in range(runs):
        began = time.perf_counter()
        _, size = file_sha256(str(file))
        speeds.append(size / (time.perf_counter() - began) / 1e9)
    return speeds


def bench_pairs(
    file: Path, code: str, pairs: int, work: Path, rows: int | None, imports: bool,
    as_is: bool = False,
) -> None:
    """Run `pairs` floor/ours pairs on `file` (and the as-is run if asked); print the table."""
    warm(file)
    floor: list[Measure] = []
    ours: list[Measure] = []
    copied: list[Measure] = []
    floor_bytes = ours_bytes = 0
    for i in range(pairs):
        order = ("floor", "ours") if i % 2 == 0 else ("ours", "floor")
        for which in order:
            if which == "floor":
                m, floor_bytes = run_floor(code, file, work)
                floor.append(m)
            else:
                m, ours_bytes = run_ours(file, work, rows)
                ours.append(m)
            print(
                f"  pair {i + 1} {which:<5} {m.wall_s:6.2f} s  {m.rss_mib:7.0f} MiB peak RSS"
                f"  ({load()})",
                flush=True,
            )
        if as_is:
            m, _ = run_ours(file, work, rows, "--no-lineage")
            copied.append(m)
            print(f"  pair {i + 1} as is {m.wall_s:6.2f} s  {m.rss_mib:7.0f} MiB peak RSS")
    base: list[Measure] = []
    if imports:
        for _ in range(pairs):
            m = run_child([_common.PY, "-c", IMPORTS])
            check(m, "imports")
            base.append(m)
    size = file.stat().st_size / 2**20
    print()
    print(f"{file.name}: {size:.0f} MiB, {pairs} pairs")
    print(header("wall time"))
    print(row("floor (read + write_deltalake)", [m.wall_s for m in floor], "s"))
    print(row("ours (ingest run)", [m.wall_s for m in ours], "s"))
    if copied:
        print(row("as is (--no-lineage, no rewrite)", [m.wall_s for m in copied], "s"))
    if base:
        print(row("process start + imports", [m.wall_s for m in base], "s"))
    print(header("peak RSS"))
    print(row("floor", [m.rss_mib for m in floor], "MiB", "{:.0f}"))
    print(row("ours", [m.rss_mib for m in ours], "MiB", "{:.0f}"))
    print(row("ours, in MB (10^6 bytes)", [m.rss_mib * 2**20 / 1e6 for m in ours], "MB",
              "{:.0f}"))
    if copied:
        print(row("as is", [m.rss_mib for m in copied], "MiB", "{:.0f}"))
    if base:
        print(row("process start + imports", [m.rss_mib for m in base], "MiB", "{:.0f}"))
    print(header("ratio to the floor of its pair"))
    print(ratio_row("ours/floor, wall time", [m.wall_s for m in ours], [m.wall_s for m in floor]))
    print(ratio_row("ours/floor, peak RSS", [m.rss_mib for m in ours],
                    [m.rss_mib for m in floor]))
    if copied:
        print(ratio_row("as is/floor, wall time", [m.wall_s for m in copied],
                        [m.wall_s for m in floor]))
    print(
        f"table data written: floor {floor_bytes / 2**20:.0f} MiB, "
        f"ours {ours_bytes / 2**20:.0f} MiB"
    )
    print(row("sha256 of the file (file_sha256)", hash_speed(file), "GB/s"))
    print()


def bench_rescue(file: Path, runs: int, work: Path) -> None:
    """`ingest run messy.csv --bad-rows rescue`, `runs` times: wall time and peak RSS."""
    warm(file)
    measures = []
    for i in range(runs):
        m, _ = run_ours(file, work, None, "--bad-rows", "rescue")
        out = m.json()
        measures.append(m)
        print(f"  run {i + 1} {m.wall_s:6.2f} s  {m.rss_mib:7.0f} MiB peak RSS  "
              f"rows {out['rows']}, rescued {out['rescued_rows']}, bad {out['bad_rows']}",
              flush=True)
    print()
    print(f"{file.name}: {file.stat().st_size / 2**20:.0f} MiB, --bad-rows rescue, {runs} runs")
    print(header("ours"))
    print(row("wall time", [m.wall_s for m in measures], "s"))
    print(row("peak RSS", [m.rss_mib for m in measures], "MiB", "{:.0f}"))
    print()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the requested benchmarks."""
    parser = argparse.ArgumentParser(
        description="Large-file benchmark: ingest run vs read + write_deltalake.",
        epilog="Inputs come from bench/make_data.py (or --csv-mb for a generated CSV).",
    )
    add_folder_args(parser, "the inputs")
    add_venv_args(parser)
    parser.add_argument("--pairs", type=int, default=5, help="floor/ours pairs (default 5)")
    parser.add_argument("--no-parquet", action="store_true", help="skip large.parquet")
    parser.add_argument("--as-is", action="store_true",
                        help="also time --no-lineage (the file copied as it is) in each pair")
    parser.add_argument("--csv", action="store_true", help="also ingest large.csv")
    parser.add_argument(
        "--csv-mb", type=int, default=None, metavar="MB",
        help="with --csv: generate a CSV of MB MiB in a temporary folder (deleted at the end) "
        "instead of using OUT/large.csv; 2048 for the issue's 2 GiB file",
    )
    parser.add_argument(
        "--csv-runs", type=int, default=1, help="floor/ours pairs for the CSV (default 1)"
    )
    parser.add_argument(
        "--rescue", action="store_true", help="ingest messy.csv with --bad-rows rescue"
    )
    parser.add_argument(
        "--no-imports", action="store_true", help="skip the process start + imports baseline"
    )
    args = parser.parse_args(argv)
    work = args.work or args.out / "runs"
    use_venv(args.venv, install=not args.no_install)
    print(f"machine: {machine()}")
    print(f"measured: {' '.join(_common.INGEST)} (floors: {_common.PY})")
    if not args.no_parquet:
        file = args.out / "large.parquet"
        if not file.exists():
            parser.error(f"{file} missing: run bench/make_data.py first")
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(file).metadata.num_rows
        bench_pairs(
            file, FLOOR_PARQUET, args.pairs, work, rows, not args.no_imports, as_is=args.as_is
        )
    if args.csv:
        if args.csv_mb is not None:
            _generated_csv(args.csv_mb, work, args.csv_runs)
        else:
            file = args.out / "large.csv"
            if not file.exists():
                parser.error(f"{file} missing: run bench/make_data.py (without --no-csv), "
                             "or pass --csv-mb")
            bench_pairs(file, FLOOR_CSV, args.csv_runs, work, None, imports=False)
    if args.rescue:
        file = args.out / "messy.csv"
        if not file.exists():
            parser.error(f"{file} missing: run bench/make_data.py --only messy first")
        bench_rescue(file, args.csv_runs, work)
    print(f"end: {load()}")
    try:
        work.rmdir()  # only if empty: never delete what the user pointed --work at
    except OSError:
        pass
    return 0


def _generated_csv(megabytes: int, work: Path, runs: int) -> None:
    """Generate a CSV of `megabytes` MiB in a temporary folder, bench it, delete it."""
    import time

    from make_data import make_csv

    folder = fresh_dir(work, "csv")
    try:
        file = folder / f"generated-{megabytes}mb.csv"
        began = time.perf_counter()
        make_csv(file, 42, megabytes)
        print(f"generated {file.name}: {file.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        bench_pairs(file, FLOOR_CSV, runs, work, None, imports=False)
    finally:
        remove(folder)


if __name__ == "__main__":
    sys.exit(main())
