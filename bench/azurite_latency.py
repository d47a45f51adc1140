"""Per-file latency on Azurite: small blobs into a Delta table at abfs://, Azure Table ledger.

    (Azurite listening on 127.0.0.1:10000-10002, e.g. started by the test fixture)
    INGEST_STORAGE_CONNECTION=UseDevelopmentStorage=true   # the default when unset
    python bench/azurite_latency.py [--levels 100,1000] [--files 30] [--cold 5] [--batch 100]

The event-driven shape: one long-lived ingestor (as in a Functions host)
ingests one small parquet blob (100 rows) per call, each its own Delta commit.
At each table version level, min/median/max seconds of:

- new blob, warm:  `ingest_file` on the long-lived ingestor: download + hash,
                   claim, guarded commit, complete;
- duplicate, warm: `ingest_file` of a renamed copy of a blob already in: the
                   skip path (download + hash, claim finds `succeeded`);
- new blob, cold:  a new ingestor per blob (its first call loads the table);
- batched, per file: --batch new blobs under one prefix ingested by one run
                   with default settings (one commit for all of them), wall
                   time over the number of blobs; 3 runs.

The table is filled to each level with one commit per file (batch_files=1);
filling to 1000 takes a few minutes.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
from _common import header, machine, row
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from ingest_core import IdempotentIngestor, StorageConfig
from ingest_core.azure.auth import blob_service, delta_storage_options
from ingest_core.azure.settings import account_settings


def parquet_bytes(start: int, rows: int = 100) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(start, start + rows)),
                             "amount": [i * 1.5 for i in range(rows)]}), out)
    return out.getvalue()


class Bench:
    def __init__(self, storage: StorageConfig) -> None:
        name = "bench" + uuid.uuid4().hex[:10]
        self.storage = storage
        self.service = blob_service(account_settings(storage))
        self.landing = self.service.create_container(f"{name}-landing")
        self.service.create_container(f"{name}-lake")
        self.root = f"abfs://{name}-landing/"
        self.table = f"abfs://{name}-lake/orders"
        self.ledger = f"azure-table://{name}"
        self.next_id = 0

    def put(self, prefix: str, count: int) -> list[str]:
        names = []
        for _ in range(count):
            name = f"{prefix}/f{self.next_id:07d}.parquet"
            self.landing.upload_blob(name, parquet_bytes(self.next_id * 100), overwrite=True)
            names.append(self.root + name)
            self.next_id += 1
        return names

    def ingestor(self, **options: object) -> IdempotentIngestor:
        return IdempotentIngestor(
            table=self.table, ledger=self.ledger, storage=self.storage, **options
        )

    def version(self) -> int:
        """The table's latest version (-1 before the first commit)."""
        options = delta_storage_options(self.table, self.storage)
        try:
            return DeltaTable(self.table, storage_options=options).version()
        except TableNotFoundError:
            return -1

    def fill_to(self, ing: IdempotentIngestor, version: int) -> int:
        """Commit one file at a time until the table is at `version`; returns the version."""
        missing = version - self.version()
        if missing > 0:
            started = time.perf_counter()
            for uri in self.put(f"fill{version}", missing):
                ing.ingest_file(uri)
            print(f"  filled {missing} commits in {time.perf_counter() - started:.0f} s")
        return self.version()

    def cleanup(self) -> None:
        for container in (self.landing.container_name, self.table.split("//")[1].split("/")[0]):
            self.service.delete_container(container)


def timed(ing: IdempotentIngestor, uri: str, expect: str) -> float:
    started = time.perf_counter()
    result = ing.ingest_file(uri)
    elapsed = time.perf_counter() - started
    if result.status != expect:
        raise SystemExit(f"{uri}: {result.status}, expected {expect}: {result.error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="100,1000", help="table versions to measure at")
    parser.add_argument("--files", type=int, default=30, help="blobs measured per level (warm)")
    parser.add_argument("--cold", type=int, default=5, help="blobs measured per level (cold)")
    parser.add_argument("--batch", type=int, default=100, help="blobs per batched run")
    args = parser.parse_args()
    connection = os.environ.get("INGEST_STORAGE_CONNECTION") or "UseDevelopmentStorage=true"
    bench = Bench(StorageConfig(connection_string=connection))
    print(f"Azurite per-file latency; {machine()}")
    lines = []
    try:
        with bench.ingestor(batch_files=1) as ing:
            for level in (int(v) for v in args.levels.split(",")):
                print(f"filling to version {level} ...")
                version = bench.fill_to(ing, level)
                new = [timed(ing, u, "ingested") for u in bench.put(f"new{level}", args.files)]
                originals = bench.put(f"orig{level}", args.files)
                for uri in originals:
                    ing.ingest_file(uri)
                copies = []
                for uri in originals:
                    name = uri[len(bench.root):]
                    data = bench.landing.download_blob(name).readall()
                    bench.landing.upload_blob(f"copy/{name}", data, overwrite=True)
                    copies.append(bench.root + f"copy/{name}")
                dup = [timed(ing, u, "skipped") for u in copies]
                cold = []
                for uri in bench.put(f"cold{level}", args.cold):
                    started = time.perf_counter()
                    with bench.ingestor(batch_files=1) as fresh:
                        timed(fresh, uri, "ingested")
                    cold.append(time.perf_counter() - started)
                batched = []
                with bench.ingestor() as default:
                    for run in range(3):
                        uris = bench.put(f"batch{level}-{run}", args.batch)
                        started = time.perf_counter()
                        stats = default.ingest_directory(f"{bench.root}batch{level}-{run}/")
                        batched.append((time.perf_counter() - started) / len(uris))
                        if stats.ingested != len(uris):
                            raise SystemExit(f"batched run: {stats.counts}")
                lines += [
                    header(f"table at version {version}"),
                    row(f"new blob, warm (n={len(new)})", new, "s", "{:.3f}"),
                    row(f"duplicate, warm (n={len(dup)})", dup, "s", "{:.3f}"),
                    row(f"new blob, cold (n={len(cold)})", cold, "s", "{:.3f}"),
                    row(f"batched, per file (3 x {args.batch})", batched, "s", "{:.3f}"),
                ]
                print("\n".join(lines[-5:]))
    finally:
        bench.cleanup()
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
