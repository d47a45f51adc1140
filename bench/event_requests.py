"""Storage requests per file on the event path, by service, method and kind.

One process imports `function_app` and calls the Event Grid trigger for N new
20-row parquet blobs on Azurite, T at a time (as `surge.py`'s workers do), and
counts every HTTP request the Azure SDK clients send (the transport's `send`,
wrapped), grouped by what it touches: the landing blob, the ledger's row or
index partitions (`~o` open rows, `~p` paths, `~t` tables), entity-group
batches, the table's data files, `_delta_log`, `_ingest_staging`. Prints
requests per file and the process's CPU per file. Azurite must be listening on
127.0.0.1 (10000-10002).

The count is deterministic where the time is not: it is the cost model behind
`surge.py`'s figures (each request is CPU in the worker and in the emulator).

    python bench/event_requests.py              # N=200, T=4
    python bench/event_requests.py -N 400 -T 1  # one invocation at a time: one commit a file
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from surge import AZURITE, BLOB_ENDPOINT, ROWS_PER_BLOB  # noqa: E402


def _kind(method: str, url: str) -> str:
    """`service METHOD what` for one request URL."""
    path = url.split("?")[0].split("devstoreaccount1", 1)[1]
    if ":10002" in url:
        partition = re.search(r"PartitionKey='([^']*)'", url)
        key = partition.group(1) if partition else ""
        what = (
            "batch" if "$batch" in path
            else f"index {key[:2]}" if key.startswith("~")
            else "row" if partition
            else "insert/query"
        )
        return f"table {method} {what}"
    what = (
        "staging" if "/_ingest_staging/" in path
        else "log" if "/_delta_log/" in path
        else "landing" if "/in/" in path
        else "table files"
    )
    return f"blob {method} {what}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-N", "--files", type=int, default=200, help="new blobs (200)")
    parser.add_argument("-T", "--threads", type=int, default=4, help="invocations at a time (4)")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient

    name = "req" + uuid.uuid4().hex[:10]
    service = BlobServiceClient.from_connection_string(AZURITE)
    landing = service.create_container(name)
    service.create_container(name + "lake")
    os.environ.update({
        "INGEST_TABLE_URI": f"abfs://{name}lake/t",
        "INGEST_LEDGER_URI": f"azure-table://{name}",
        "INGEST_STORAGE_CONNECTION": AZURITE,
        "INGEST_LANDING_PATH": f"{name}/{{name}}",
    })

    def blobs(first: int, count: int) -> list[tuple[str, int]]:
        made = []
        for i in range(first, first + count):
            out = io.BytesIO()
            ids = list(range(i * ROWS_PER_BLOB, (i + 1) * ROWS_PER_BLOB))
            pq.write_table(pa.table({"id": ids}), out)
            blob = f"in/{i:09d}.parquet"
            landing.upload_blob(blob, out.getvalue())
            made.append((f"{BLOB_ENDPOINT}/{name}/{blob}", len(out.getvalue())))
        return made

    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    counting = threading.Event()
    send = RequestsTransport.send

    def counted_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
        if counting.is_set():
            with lock:
                counts[_kind(request.method, request.url)] += 1
        return send(self, request, **kwargs)

    RequestsTransport.send = counted_send  # type: ignore[method-assign]

    import azure.functions as func

    import function_app
    from ingest_core.events import build_blob_created

    def invoke(blob: tuple[str, int]) -> None:
        raw = build_blob_created(blob[0], content_length=blob[1])
        function_app.ingest_replay(func.EventGridEvent(
            id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
            event_type=raw["eventType"], event_time=None, data_version=raw["dataVersion"],
        ))

    for blob in blobs(0, 4):  # the table exists, the process is warm
        invoke(blob)
    todo = blobs(4, args.files)
    counting.set()
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(invoke, todo))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    from ingest_core.ledger.azure_table import _RETIRE_AFTER_S

    time.sleep(_RETIRE_AFTER_S + 0.5)  # the ledger's batched deletions of open entries
    counting.clear()
    total = sum(counts.values())
    print(f"{args.files} files, {args.threads} at a time: "
          f"{total / args.files:.2f} requests a file, "
          f"{1000 * cpu / args.files:.1f} ms CPU a file in this process, "
          f"{args.files / seconds:.1f} files/s")
    for kind, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {kind:28s} {count / args.files:5.2f}")
    service.delete_container(name)
    service.delete_container(name + "lake")


if __name__ == "__main__":
    main()
