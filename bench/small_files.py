"""Small-files benchmark: 500 parquet files of 100 rows.

    python bench/make_data.py --no-csv        # once: bench/out/small/
    python bench/small_files.py [--runs 3] [--per-file] [--out bench/out]

Every measurement is a whole separate process on a fresh table:

- floor:   one process reads the 500 files and writes them in ONE
           write_deltalake commit (no hashing, no ledger, no lineage);
- ours:    python -m ingest_core.cli run DIR --table T --json (fresh table
           and SQLite ledger; default batching: 500 files per commit, one commit);
- rerun:   the same command again on that table: every file must be skipped;
- import:  python -c "import pyarrow.parquet, deltalake" (what any process pays);
- per-file (--per-file): one process, one write_deltalake commit per file
           (the naive baseline, DESIGN: 13.9 s).

min/median/max over --runs runs; ratios are medians of per-run ratios to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _common import (
    INGEST,
    PY,
    Measure,
    add_folder_args,
    check,
    fresh_dir,
    header,
    load,
    machine,
    remove,
    row,
    run_child,
    warm,
)

FLOOR = (
    "import sys, pathlib, pyarrow as pa, pyarrow.parquet as pq; "
    "from deltalake import write_deltalake; "
    "files = sorted(pathlib.Path(sys.argv[2]).glob('*.parquet')); "
    "write_deltalake(sys.argv[1], pa.concat_tables([pq.read_table(f) for f in files]))"
)
PER_FILE = (
    "import sys, pathlib, pyarrow.parquet as pq; from deltalake import write_deltalake; "
    "[write_deltalake(sys.argv[1], pq.read_table(f), mode='append') "
    "for f in sorted(pathlib.Path(sys.argv[2]).glob('*.parquet'))]"
)
IMPORTS = "import pyarrow.parquet, deltalake"


def _expect(m: Measure, status: str, count: int, what: str) -> None:
    check(m, what)
    result = m.json()
    if result.get(status) != count:
        counts = {k: v for k, v in result.items() if k != "files"}
        raise SystemExit(f"{what}: expected {count} {status}, got {counts}")


def one_run(folder: Path, count: int, work: Path, per_file: bool) -> dict[str, Measure]:
    """floor, ours, rerun (and per-file) once each, each on its own fresh table."""
    out: dict[str, Measure] = {}
    run_dir = fresh_dir(work, "small")
    try:
        m = run_child([PY, "-c", FLOOR, str(run_dir / "floor"), str(folder)])
        check(m, "floor")
        out["floor"] = m
        table = run_dir / "ours"
        cmd = [*INGEST, "run", str(folder), "--table", str(table), "--json"]
        m = run_child(cmd)
        _expect(m, "ingested", count, "ingest run")
        out["ours"] = m
        m = run_child(cmd)
        _expect(m, "skipped", count, "ingest rerun")
        out["rerun"] = m
        m = run_child([PY, "-c", IMPORTS])
        check(m, "imports")
        out["imports"] = m
        if per_file:
            m = run_child([PY, "-c", PER_FILE, str(run_dir / "per_file"), str(folder)])
            check(m, "per-file")
            out["per_file"] = m
    finally:
        remove(run_dir)
    return out


LABELS = {
    "floor": "floor (1 process, 1 commit)",
    "ours": "ours (ingest run, fresh)",
    "rerun": "ours rerun (all skipped)",
    "imports": "process start + imports",
    "per_file": "one commit per file",
}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(
        description="Small-files benchmark: 500 x 100-row parquet files, ingest run vs floor.",
        epilog="Inputs come from bench/make_data.py.",
    )
    add_folder_args(parser, "small/")
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument(
        "--per-file",
        action="store_true",
        help="also time one write_deltalake commit per file (slow, ~14 s)",
    )
    args = parser.parse_args(argv)
    folder = args.out / "small"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        parser.error(f"{folder} holds no parquet files: run bench/make_data.py first")
    work = args.work or args.out / "runs"
    print(f"machine: {machine()}")
    warm(folder)
    runs: list[dict[str, Measure]] = []
    for i in range(args.runs):
        r = one_run(folder, len(files), work, args.per_file)
        runs.append(r)
        print(
            f"  run {i + 1}: " + ", ".join(f"{k} {m.wall_s:.2f} s" for k, m in r.items()),
            flush=True,
        )
    keys = [k for k in LABELS if k in runs[0]]
    print()
    print(f"{len(files)} files in {folder}, {args.runs} runs")
    print(header("wall time"))
    for k in keys:
        print(row(LABELS[k], [r[k].wall_s for r in runs], "s"))
    print(header("peak RSS"))
    for k in keys:
        print(row(LABELS[k], [r[k].rss_mib for r in runs], "MiB", "{:.0f}"))
    print("ratios to the floor (median of per-run ratios, wall time):")
    for k in keys:
        if k != "floor":
            ratio = statistics.median(r[k].wall_s / r["floor"].wall_s for r in runs)
            print(f"  {LABELS[k]:<32} {ratio:.2f}x")
    print(f"end: {load()}")
    try:
        work.rmdir()  # only if empty: never delete what the user pointed --work at
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
