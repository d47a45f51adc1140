"""Merge benchmark: a 1M-row file merged into a 10M-row table, ours against a bare MERGE.

    python bench/merge.py [--pairs 3] [--rows 10000000] [--file-rows 1000000]

Built once under OUT/merge/ (seeded): `base` and `base_lineage`, tables of
`--rows` rows (id 0.., sorted, `--table-files` data files; the second with
the three lineage columns as `ingest run` writes them), and `changes.parquet`,
`--file-rows` rows: half updates of ids among the newest fifth of the table
(records change while they are recent), half new ids, every id once, `seq` 1
(the stored rows have 0). Each measured run copies a base table (not timed)
and is a whole separate process:

- bare:     python -c "DeltaTable(T).merge(pq.read_table(F), 't.id = s.id', ...)
            .when_matched_update_all('s.seq >= t.seq').when_not_matched_insert_all()
            .execute()"   (delta-rs defaults: streamed_exec=True)
- bare, streamed_exec=False: the same as ours calls it (the source is
            materialised, so its key range prunes the table's files)
- ours:     python -m ingest_core.cli run F --table T --mode merge --merge-keys id
            --merge-sequence seq --no-lineage --json   (hash, ledger claim, dedupe,
            guarded MERGE, ledger complete)
- lineage:  the same with lineage, into base_lineage (three more columns written)

bare, bare with streamed_exec=False and ours run in rounds (order rotating);
the ratios are the medians of the per-round ratios ours/bare (target <= 1.2).
Every run must leave the same row count.
"""

from __future__ import annotations

import argparse
import shutil
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

BARE = """
import sys
import pyarrow.parquet as pq
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
t.merge(pq.read_table(sys.argv[2]), 't.id = s.id', source_alias='s', target_alias='t',
        streamed_exec=sys.argv[3] == 'streamed') \\
    .when_matched_update_all(predicate='s.seq >= t.seq').when_not_matched_insert_all().execute()
"""

COUNT = """
import os, sys
from deltalake import DeltaTable
print(DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['id']).num_rows, flush=True)
os._exit(0)  # Arrow's thread-pool teardown can abort a process that read a table
"""


def build(folder: Path, rows: int, file_rows: int, table_files: int, seed: int) -> None:
    """The base tables and the changes file (skipped when present)."""
    import random

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    if (folder / "changes.parquet").exists():
        return
    remove(folder)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    countries = pa.array([f"C{i:02d}" for i in range(20)])

    def uniform(n: int, top: int) -> pa.Array:
        return pc.cast(pc.floor(pc.multiply(pc.random(n, initializer=rng.randrange(2**31)),
                                            top)), pa.int64())

    def chunk(ids: pa.Array, seq: int) -> pa.Table:
        n = len(ids)
        return pa.table({
            "id": ids,
            "customer_id": uniform(n, 100_000),
            "amount": pc.round(pc.multiply(pc.random(n, initializer=rng.randrange(2**31)),
                                           1000), 2),
            "country": countries.take(uniform(n, 20)),
            "seq": pa.array([seq] * n, pa.int64()),
        })

    def lineage(table: pa.Table, name: str) -> pa.Table:
        n = table.num_rows
        when = pa.array([1_700_000_000_000_000] * n, pa.timestamp("us", "UTC"))
        return (table.append_column("_ingest_file", pa.array([name] * n))
                .append_column("_ingest_sha256", pa.array(["0" * 64] * n))
                .append_column("_ingested_at", when))

    step = rows // table_files
    for start in range(0, rows, step):
        part = chunk(pa.array(range(start, min(rows, start + step)), pa.int64()), 0)
        write_deltalake(str(folder / "base"), part, mode="append")
        write_deltalake(str(folder / "base_lineage"), lineage(part, f"seed-{start}"),
                        mode="append")
    updates = rng.sample(range(rows - rows // 5, rows), file_rows // 2)
    ids = updates + list(range(rows, rows + file_rows - len(updates)))
    rng.shuffle(ids)
    pq.write_table(chunk(pa.array(ids, pa.int64()), 1), folder / "changes.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_folder_args(parser, "merge/ (built on first use)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--table-files", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-lineage-run", action="store_true", help="skip the lineage runs")
    args = parser.parse_args()
    data = args.out / "merge"
    build(data, args.rows, args.file_rows, args.table_files, args.seed)
    work = args.work or args.out / "runs"
    changes = data / "changes.parquet"
    for path in (changes, data / "base", data / "base_lineage"):
        warm(path)
    print(machine())
    expected = args.rows + args.file_rows // 2

    def fresh(base: str) -> tuple[Path, Path]:
        folder = fresh_dir(work, "merge")
        shutil.copytree(data / base, folder / "t")
        return folder, folder / "t"

    def rows_in(table: Path) -> int:
        counted = run_child([PY, "-c", COUNT, str(table)])
        check(counted, "count")
        return int(counted.stdout.split()[-1])

    def bare(streamed: bool) -> Measure:
        folder, table = fresh("base")
        try:
            measured = run_child([PY, "-c", BARE, str(table), str(changes),
                                  "streamed" if streamed else "materialised"])
            check(measured, "bare merge")
            assert rows_in(table) == expected
            return measured
        finally:
            remove(folder)

    def ours(lineage: bool) -> Measure:
        folder, table = fresh("base_lineage" if lineage else "base")
        try:
            cmd = [*INGEST, "run", str(changes), "--table", str(table), "--mode", "merge",
                   "--merge-keys", "id", "--merge-sequence", "seq", "--json"]
            measured = run_child(cmd if lineage else [*cmd, "--no-lineage"])
            check(measured, "ingest run --mode merge")
            assert measured.json()["ingested"] == 1, measured.stdout[:500]
            assert rows_in(table) == expected
            return measured
        finally:
            remove(folder)

    rounds: list[dict[str, Measure]] = []
    runs = {"bare": lambda: bare(True), "unstreamed": lambda: bare(False),
            "ours": lambda: ours(False)}
    for i in range(args.pairs):
        names = list(runs)
        names = names[i % 3:] + names[: i % 3]
        measured = {name: runs[name]() for name in names}
        rounds.append(measured)
        print(f"round {i + 1}: " + ", ".join(f"{n} {m.wall_s:.2f} s" for n, m in measured.items())
              + f"; {load()}", file=sys.stderr)
    lineage = [] if args.no_lineage_run else [ours(True) for _ in range(args.pairs)]
    labels = {"bare": "bare DeltaTable.merge", "unstreamed": "bare, streamed_exec=False",
              "ours": "ours, --no-lineage"}
    print(f"{args.file_rows:,} rows merged into {args.rows:,} "
          f"({args.file_rows // 2:,} updates, {args.file_rows - args.file_rows // 2:,} new)")
    for title, unit, fmt, value in (("wall time", "s", "{:.2f}", "wall_s"),
                                    ("peak RSS", "MiB", "{:.0f}", "rss_mib")):
        print(header(title))
        for name, label in labels.items():
            print(row(label, [getattr(r[name], value) for r in rounds], unit, fmt))
        if lineage:
            print(row("ours, with lineage", [getattr(m, value) for m in lineage], unit, fmt))
    for name in ("bare", "unstreamed"):
        ratios = [r["ours"].wall_s / r[name].wall_s for r in rounds]
        print(f"ours / {labels[name]} (median of per-round ratios): "
              f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}); "
              "target <= 1.2")

if __name__ == "__main__":
    main()
