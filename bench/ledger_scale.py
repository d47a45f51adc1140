"""Ledger reads by key at scale: an Azure Table ledger of N rows on Azurite.

    (Azurite listening on 127.0.0.1:10002, e.g. started by the test fixture)
    INGEST_STORAGE_CONNECTION=UseDevelopmentStorage=true   # the default when unset
    python bench/ledger_scale.py --rows 100000 [--runs 5] [--threads 4] [--keep]

Fills a fresh ledger table the way the previous version wrote it (rows only,
in batch transactions of 100 rows of one partition, on several threads),
then builds the indexes with `reindex()` (the upgrade path, timed once).
Table `orders` holds N rows: all `succeeded` but 60 open ones that are not
due (failed with no attempt left, processing under a live lease,
quarantined); table `returns` holds 1,000 rows, 10 of them due.

Then min/median/max seconds over --runs of:

- tick, nothing due: `due(orders)` + `tables()`, a maintenance tick's ledger work;
- due(returns), 10 due: the same with work to hand out;
- find(sha256): one content across every table;
- by_path(orders, path);
- records(orders, limit=100): the HTTP list's read;
- claim + complete of a new content (index entries included), 20 a run;

and once, for contrast, what the previous tick read: every `failed` row of
`orders` by a filter on `status` (the service scans the table's rows; on
Azurite, in memory, that is fast, on Azure Table it is a scan billed and
paged by the rows scanned), and the previous routed table discovery, which
read every row of the ledger.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import header, row

from ingest_core.config import StorageConfig
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, FileRecord
from ingest_core.ledger.azure_table import AzureTableLedger
from ingest_core.ledger.base import Where, _oldest_first

ORDERS = "abfss://lake@acct.dfs.core.windows.net/orders"
RETURNS = "abfss://lake@acct.dfs.core.windows.net/returns"
MAX_ATTEMPTS = 3


def sha_of(i: int, table: str) -> str:
    import hashlib

    return hashlib.sha256(f"{table}:{i}".encode()).hexdigest()


def path_of(i: int) -> str:
    return f"https://acct.blob.core.windows.net/landing/orders/2026/{i // 1000:03d}/{i}.csv"


def records_for(table: str, count: int, opens: list[tuple[str, int]]) -> Iterable[FileRecord]:
    """`count` rows of `table`; the first ones take the open states listed (status, how many)."""
    now = datetime.now(UTC)
    states = [state for state, n in opens for _ in range(n)]
    for i in range(count):
        status = states[i] if i < len(states) else SUCCEEDED
        record = FileRecord(
            table=table, sha256=sha_of(i, table), status=status, path=path_of(i), size=1000 + i,
            source_etag=f"0x{i:x}", created_at=now, updated_at=now,
        )
        if status == SUCCEEDED:
            record.delta_version, record.rows = i, 20
        elif status == FAILED:
            record.attempt, record.error = MAX_ATTEMPTS, "boom"
        elif status == PROCESSING:
            record.owner, record.lease_until = "worker", now + timedelta(days=1)
        elif status == "due":
            record.status, record.attempt, record.error = FAILED, 1, "boom"
        else:
            record.error = "corrupt"
        yield record


def fill(ledger: AzureTableLedger, connection: str, name: str, entities: list[dict[str, Any]],
         threads: int) -> None:
    """Insert entities in transactions of 100 of one partition, on `threads` threads."""
    from azure.data.tables import TableClient

    partitions: dict[str, list[dict[str, Any]]] = {}
    for entity in entities:
        partitions.setdefault(entity["PartitionKey"], []).append(entity)
    batches = [
        group[start : start + 100]
        for group in partitions.values()
        for start in range(0, len(group), 100)
    ]
    local = threading.local()

    def submit(batch: list[dict[str, Any]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = TableClient.from_connection_string(connection, name)
        client.submit_transaction([("upsert", e, {"mode": "replace"}) for e in batch])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, batches))


def timed(action: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of table orders")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=4, help="threads filling the table")
    parser.add_argument("--keep", action="store_true", help="keep the ledger table afterwards")
    args = parser.parse_args()

    connection = os.environ.get("INGEST_STORAGE_CONNECTION") or "UseDevelopmentStorage=true"
    name = "ledgerscale" + uuid.uuid4().hex[:10]
    ledger = AzureTableLedger.from_uri(
        f"azure-table://{name}", StorageConfig(connection_string=connection)
    )
    print(f"{os.cpu_count()} cores; ledger table {name}; orders {args.rows:,} rows")
    try:
        opens = [(FAILED, 20), (PROCESSING, 20), (QUARANTINED, 20)]
        rows = [
            *records_for(ORDERS, args.rows, opens),
            *records_for(RETURNS, 1000, [("due", 10)]),
        ]
        started = time.perf_counter()
        fill(ledger, connection, name, [ledger._entity(r) for r in rows], args.threads)
        print(f"fill, {len(rows):,} rows (as the previous version wrote them): "
              f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        read = ledger.reindex()
        print(f"reindex(), {read:,} rows read: {time.perf_counter() - started:.1f} s")

        assert ledger.due(ORDERS, max_attempts=MAX_ATTEMPTS) == []
        assert len(ledger.due(RETURNS, max_attempts=MAX_ATTEMPTS)) == 10
        assert ledger.tables() == sorted([ORDERS, RETURNS])
        probe = args.rows // 2

        def tick() -> None:
            ledger.due(ORDERS, max_attempts=MAX_ATTEMPTS)
            ledger.tables()

        counter = iter(range(10**9))

        def claims() -> None:
            for _ in range(20):
                key = uuid.uuid4().hex * 2
                claim = ledger.claim(ORDERS, key, path=f"new/{next(counter)}", owner="bench",
                                     lease_seconds=60, max_attempts=MAX_ATTEMPTS)
                ledger.complete(claim.record, delta_version=1, rows=1)

        print(header(f"ledger of {args.rows + 1000:,} rows, {args.runs} runs"))
        figures = [
            ("tick, nothing due", tick, 1),
            ("due(returns), 10 due", lambda: ledger.due(RETURNS, max_attempts=MAX_ATTEMPTS), 1),
            ("find(sha256), 2 tables", lambda: ledger.find(sha_of(probe, ORDERS)), 1),
            ("by_path(orders, path)", lambda: ledger.by_path(ORDERS, path_of(probe)), 1),
            ("records(orders, limit=100)", lambda: ledger.records(table=ORDERS, limit=100), 1),
            ("records(orders, limit=1000)", lambda: ledger.records(table=ORDERS, limit=1000), 1),
            ("claim + complete, new, each", claims, 20),
        ]
        for label, action, per in figures:
            values = [v / per for v in timed(action, args.runs)]
            print(row(label, values, "s", "{:.4f}"))

        started = time.perf_counter()
        failed = _oldest_first(ledger._scan(Where(table=ORDERS, statuses=(FAILED,))))
        print(f"previous tick's read of failed rows (a scan, once): "
              f"{time.perf_counter() - started:.2f} s for {len(failed)} rows")
        started = time.perf_counter()
        every = sum(1 for _ in ledger._scan(Where()))
        print(f"previous routed table discovery (every row, once): "
              f"{time.perf_counter() - started:.2f} s for {every:,} rows")
    finally:
        if not args.keep:
            ledger._client.delete_table()
        ledger.close()


if __name__ == "__main__":
    main()
