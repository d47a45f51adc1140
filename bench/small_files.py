"""Small-files benchmark: 500 parquet files of 100 rows and 4 columns.

    python bench/make_data.py --only small    # once: bench/out/small/
    python bench/small_files.py [--pairs 5] [--venv DIR] [--per-file] [--out bench/out]

What a user runs is measured: the `ingest` console script of a NON-editable
install (`pip install REPO` into --venv, created on first use, the repository
reinstalled into it on every later use unless --no-install). Every measurement
is a whole separate process on a fresh table, with the venv's interpreter:

- floor:   one process reads the 500 files and writes them in ONE
           write_deltalake commit (no hashing, no ledger, no lineage);
- ours:    ingest run DIR --table T --json (fresh table and SQLite ledger;
           default batching: 500 files per commit, one commit);
- rerun:   the same command again on that table: every file must be skipped;
- version: ingest --version (interpreter start + the CLI's imports);
- import:  python -c "import pyarrow.parquet, deltalake" (what any process pays);
- per-file (--per-file): one process, one write_deltalake commit per file
           (the naive baseline, DESIGN: 13.9 s).

floor and ours run in pairs, their order alternating; each ratio is ours/floor
within a pair, reported as min/median/max over the --pairs pairs.
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
    use_venv,
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


def one_run(
    folder: Path, count: int, work: Path, per_file: bool, floor_first: bool
) -> dict[str, Measure]:
    """floor, ours, rerun (and per-file) once each, each on its own fresh table."""
    py, ingest = _common.PY, _common.INGEST
    out: dict[str, Measure] = {}
    run_dir = fresh_dir(work, "small")
    try:
        table = run_dir / "ours"
        cmd = [*ingest, "run", str(folder), "--table", str(table), "--json"]
        for which in ("floor", "ours") if floor_first else ("ours", "floor"):
            if which == "floor":
                m = run_child([py, "-c", FLOOR, str(run_dir / "floor"), str(folder)])
                check(m, "floor")
            else:
                m = run_child(cmd)
                _expect(m, "ingested", count, "ingest run")
            out[which] = m
        m = run_child(cmd)
        _expect(m, "skipped", count, "ingest rerun")
        out["rerun"] = m
        m = run_child([*ingest, "--version"])
        check(m, "ingest --version")
        out["version"] = m
        m = run_child([py, "-c", IMPORTS])
        check(m, "imports")
        out["imports"] = m
        if per_file:
            m = run_child([py, "-c", PER_FILE, str(run_dir / "per_file"), str(folder)])
            check(m, "per-file")
            out["per_file"] = m
    finally:
        remove(run_dir)
    return out


LABELS = {
    "floor": "floor (1 process, 1 commit)",
    "ours": "ours (ingest run, fresh)",
    "rerun": "ours rerun (all skipped)",
    "version": "ingest --version",
    "imports": "python + pyarrow, deltalake",
    "per_file": "one commit per file",
}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(
        description="Small-files benchmark: 500 x 100-row parquet files, ingest run vs floor.",
        epilog="Inputs come from bench/make_data.py.",
    )
    add_folder_args(parser, "small/")
    add_venv_args(parser)
    parser.add_argument("--pairs", "--runs", type=int, default=5, help="pairs (default 5)")
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
    use_venv(args.venv, install=not args.no_install)
    print(f"machine: {machine()}")
    print(f"measured: {' '.join(_common.INGEST)} (floors: {_common.PY})")
    warm(folder)
    runs: list[dict[str, Measure]] = []
    for i in range(args.pairs):
        r = one_run(folder, len(files), work, args.per_file, floor_first=i % 2 == 0)
        runs.append(r)
        print(
            f"  pair {i + 1}: " + ", ".join(f"{k} {m.wall_s:.2f} s" for k, m in r.items())
            + f"  ({load()})",
            flush=True,
        )
    keys = [k for k in LABELS if k in runs[0]]
    print()
    print(f"{len(files)} files in {folder}, {args.pairs} pairs")
    print(header("wall time"))
    for k in keys:
        print(row(LABELS[k], [r[k].wall_s for r in runs], "s"))
    print(header("peak RSS"))
    for k in keys:
        print(row(LABELS[k], [r[k].rss_mib for r in runs], "MiB", "{:.0f}"))
    print(header("ratio to the floor of its pair"))
    for k in keys:
        if k != "floor":
            print(ratio_row(LABELS[k], [r[k].wall_s for r in runs],
                            [r["floor"].wall_s for r in runs]))
    print(f"end: {load()}")
    try:
        work.rmdir()  # only if empty: never delete what the user pointed --work at
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
