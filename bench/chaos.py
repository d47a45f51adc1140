"""Chaos at scale: racing, randomly SIGKILLed workers, then one clean replay; count duplicates.

Shows that every distinct file lands exactly once when N spawned worker
processes ingest each of F files C times, in random order, while some of them
are SIGKILLed at random (a fresh worker resumes each killed one's list, so its
interrupted run is delivered again). Then every file is replayed once and the
table, its Delta log and the ledger are compared (tests/exactly_once.py).

    python bench/chaos.py                                  # 2,000 files, 16 workers, SQLite
    python bench/chaos.py --ledger azure-table             # Azure Table on Azurite
    python bench/chaos.py --files 500 --workers 8 --kills 20 --seed 3

Environment: INGEST_STORAGE_CONNECTION for --ledger azure-table (default: the
well-known Azurite development account on 127.0.0.1). Exit status 1 when any
duplicate or disagreement is found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from _common import DEFAULT_OUT, REPO, fresh_dir, machine, remove

sys.path.insert(0, str(REPO / "tests"))
from exactly_once import run_race

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
ROWS = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--copies", type=int, default=3, help="deliveries of each file")
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lease-seconds", type=float, default=3.0)
    parser.add_argument("--ledger", choices=["sqlite", "azure-table"], default="sqlite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the landing, table and ledger")
    args = parser.parse_args()

    work = fresh_dir(args.out, "chaos")
    landing = work / "landing"
    landing.mkdir()
    paths = []
    for i in range(args.files):
        ids = list(range(i * ROWS, (i + 1) * ROWS))
        path = landing / f"part-{i:05d}.parquet"
        pq.write_table(pa.table({"id": ids, "amount": [i * 0.5] * ROWS}), path)
        paths.append(str(path))
    connection = None
    if args.ledger == "sqlite":
        ledger = f"sqlite:///{work / 'ledger.sqlite'}"
    else:
        connection = os.environ.get("INGEST_STORAGE_CONNECTION") or AZURITE
        ledger = f"azure-table://chaos{uuid.uuid4().hex[:12]}"

    print(machine())
    print(f"{args.files} files x {args.copies} deliveries, {args.workers} workers, "
          f"{args.kills} SIGKILLs, {args.ledger} ledger, local Delta table, seed {args.seed}")
    started = time.monotonic()
    report = run_race(
        table=str(work / "lake" / "chaos"),
        ledger=ledger,
        paths=paths,
        workdir=work / "progress",
        workers=args.workers,
        copies=args.copies,
        kills=args.kills,
        seed=args.seed,
        lease_seconds=args.lease_seconds,
        connection=connection,
        expected_ids=set(range(args.files * ROWS)),
        kill_every=(0.2, 1.0),
        timeout=3_600,
    )
    wall = time.monotonic() - started
    found = report.agreement
    race = {k: v for k, v in report.race_counts.items() if v}
    replay = {k: v for k, v in report.replay_counts.items() if v}
    print(f"deliveries        {report.deliveries}")
    print(f"kills             {report.kills}")
    print(f"race outcomes     {race}  ({report.race_s:.1f} s)")
    for error in report.race_errors[:10]:
        print(f"  race error: {error}")
    print(f"replay outcomes   {replay}  ({report.replay_s:.1f} s)")
    print(f"table rows        {found.rows} ({found.distinct_ids} distinct ids, "
          f"{args.files * ROWS} expected)")
    print(f"duplicate rows    {found.duplicate_rows}")
    print(f"contents in log   {found.contents_in_log} (committed twice: "
          f"{found.contents_committed_twice})")
    print(f"ledger rows       {dict(found.ledger_rows)}")
    print(f"disagreements     {len(found.problems)}")
    for problem in found.problems[:20]:
        print(f"  {problem}")
    print(f"wall time         {wall:.1f} s (including the {args.lease_seconds:.0f} s lease wait)")
    if not args.keep:
        remove(work)
    else:
        print(f"kept in {work}")
    return 1 if found.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
