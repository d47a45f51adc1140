"""The event-driven path under a surge, as a Functions worker runs it, on Azurite.

W worker processes (spawned), each importing `function_app` and running T
invocations at a time on a thread pool, as the Python worker runs synchronous
functions (FUNCTIONS_WORKER_PROCESS_COUNT x PYTHON_THREADPOOL_THREAD_COUNT).
Each invocation calls the Event Grid trigger (`ingest_replay`) with one
BlobCreated event for a new blob; an invocation that raises is retried a
second later, as Event Grid redelivers.

Phases, on one fresh table (abfs:// on Azurite, Azure Table ledger):
20 lone events one at a time; wave 1 (B new blobs at once); H lone events
(history); wave 2 (B more new blobs). Then a run of B/4 blobs through the blob
trigger, called with a `BlobClient` as the SDK-type binding passes it.

Prints per phase: files/s over the whole phase, Delta commits per file,
p50/p95/mean latency per event, failed invocations; then checks that every
row is in the table exactly once. Azurite must be listening on 127.0.0.1, or
`--fresh-azurite` starts an empty one per run from node_modules (Azurite's cost
per request grows with what it holds: a long-lived instance measures itself).

    python bench/surge.py                      # W=4 T=4 B=400 H=600 (~3 min)
    python bench/surge.py --runs 3 --fresh-azurite --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _endpoints() -> tuple[str, str]:
    """The Azurite connection string and blob endpoint (ports from SURGE_AZURITE_PORTS)."""
    blob, queue_port, table = os.environ.get("SURGE_AZURITE_PORTS", "10000,10001,10002").split(",")
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        f"KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:{blob}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{table}/devstoreaccount1;"
    )
    return connection, f"http://127.0.0.1:{blob}/devstoreaccount1"


AZURITE, BLOB_ENDPOINT = _endpoints()
ROWS_PER_BLOB = 20
RETRY_AFTER_S = 1.0


# -- the worker processes ------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _azurite_pids() -> list[int]:
    """The emulator's processes (they share these cores): the one started, or any azurite."""
    if os.environ.get("SURGE_AZURITE_PID"):
        return [int(os.environ["SURGE_AZURITE_PID"])]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"azurite" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _worker(settings: dict[str, str], threads: int, tasks: Any, done: Any) -> None:
    """One Functions worker process: T invocations at a time, until a None task."""
    os.environ.update(settings)
    sys.path.insert(0, str(REPO))
    import azure.functions as func
    from azure.storage.blob import BlobClient

    import function_app
    from ingest_core.events import build_blob_created

    def invoke(task: tuple[str, str, int]) -> None:
        kind, url, size = task
        started = time.perf_counter()
        try:
            if kind == "blob":
                container, name = url[len(BLOB_ENDPOINT) + 1:].split("/", 1)
                function_app.ingest_on_arrival(
                    BlobClient.from_connection_string(AZURITE, container, name)
                )
            else:
                raw = build_blob_created(url, content_length=size)
                event = func.EventGridEvent(
                    id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
                    event_type=raw["eventType"], event_time=None,
                    data_version=raw["dataVersion"],
                )
                function_app.ingest_replay(event)
            done.put(("ok", task, time.perf_counter() - started, ""))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            done.put(("failed", task, time.perf_counter() - started, error))

    with ThreadPoolExecutor(threads) as pool:
        slots = threading.Semaphore(threads)
        while True:
            task = tasks.get()
            if task is None:
                break
            slots.acquire()
            pool.submit(invoke, task).add_done_callback(lambda _f: slots.release())
    done.put(("exit", None, 0.0, ""))


# -- the harness ----------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    files: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    commits: int = 0
    errors: list[str] = field(default_factory=list)
    worker_cpu_s: float = 0.0
    azurite_cpu_s: float = 0.0

    def row(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "phase": self.name,
            "files": self.files,
            "files_per_s": round(self.files / self.seconds, 1) if self.seconds else None,
            "commits_per_file": round(self.commits / self.files, 3) if self.files else None,
            "files_per_commit": round(self.files / self.commits, 1) if self.commits else None,
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
            "mean_s": round(statistics.fmean(lat), 3) if lat else None,
            "failed_invocations": self.failed,
            "cpu_ms_per_file": {
                "workers": round(1000 * self.worker_cpu_s / self.files, 1),
                "azurite": round(1000 * self.azurite_cpu_s / self.files, 1),
            },
        }


class Surge:
    """Azurite containers, a ledger table and W worker processes."""

    def __init__(self, workers: int, threads: int) -> None:
        from azure.storage.blob import BlobServiceClient

        self.name = "surge" + uuid.uuid4().hex[:10]
        self.service = BlobServiceClient.from_connection_string(AZURITE)
        self.landing = self.service.create_container(self.name)
        self.service.create_container(self.name + "lake")
        self.table = f"abfs://{self.name}lake/t"
        self.settings = {
            "INGEST_TABLE_URI": self.table,
            "INGEST_LEDGER_URI": f"azure-table://{self.name}",
            "INGEST_STORAGE_CONNECTION": AZURITE,
            "INGEST_LANDING_PATH": f"{self.name}/{{name}}",
        }
        context = multiprocessing.get_context("spawn")
        self.tasks = context.Queue()
        self.done = context.Queue()
        self.procs = [
            context.Process(target=_worker, args=(self.settings, threads, self.tasks, self.done))
            for _ in range(workers)
        ]
        for proc in self.procs:
            proc.start()
        self.next_id = 0

    def blobs(self, count: int) -> list[tuple[str, int]]:
        """Upload `count` new 20-row parquet blobs (before any timing); their URLs and sizes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        made = []
        for _ in range(count):
            start = self.next_id
            self.next_id += ROWS_PER_BLOB
            out = io.BytesIO()
            pq.write_table(pa.table({"id": list(range(start, start + ROWS_PER_BLOB))}), out)
            name = f"in/{start:09d}.parquet"
            self.landing.upload_blob(name, out.getvalue())
            made.append((f"{BLOB_ENDPOINT}/{self.name}/{name}", len(out.getvalue())))
        return made

    def version(self) -> int:
        from deltalake import DeltaTable

        sys.path.insert(0, str(REPO))
        from ingest_core.azure.auth import delta_storage_options
        from ingest_core.config import StorageConfig

        options = delta_storage_options(self.table, StorageConfig(connection_string=AZURITE))
        try:
            return DeltaTable(self.table, storage_options=options).version()
        except Exception:
            return -1

    def run(self, phase: Phase, blobs: list[tuple[str, int]], *, kind: str, lone: bool) -> Phase:
        """Send the phase's events (all at once, or one at a time) and wait for every file."""
        before = self.version()
        azurite = _azurite_pids()
        cpu_workers = sum(_cpu_seconds(p.pid or 0) for p in self.procs)
        cpu_azurite = sum(_cpu_seconds(pid) for pid in azurite)
        pending = {url for url, _ in blobs}
        retry: list[tuple[float, tuple[str, str, int]]] = []
        started = time.perf_counter()
        order = [(kind, url, size) for url, size in blobs]
        if not lone:
            for task in order:
                self.tasks.put(task)
        waiting = False  # a lone event is out
        while pending:
            if lone and order and not waiting:
                self.tasks.put(order[0])
                waiting = True
            now = time.perf_counter()
            for due, task in [r for r in retry if r[0] <= now]:
                retry.remove((due, task))
                self.tasks.put(task)
            try:
                status, task, seconds, error = self.done.get(timeout=0.1)
            except queue.Empty:
                continue
            if status == "ok":
                phase.latencies.append(seconds)
                pending.discard(task[1])
                if lone and order and order[0] == task:
                    order.pop(0)
                    waiting = False
            else:
                phase.failed += 1
                phase.errors.append(error)
                retry.append((time.perf_counter() + RETRY_AFTER_S, task))
        phase.seconds = time.perf_counter() - started
        phase.worker_cpu_s = sum(_cpu_seconds(p.pid or 0) for p in self.procs) - cpu_workers
        phase.azurite_cpu_s = sum(_cpu_seconds(pid) for pid in azurite) - cpu_azurite
        phase.commits = self.version() - before
        return phase

    def check(self) -> tuple[int, int, int]:
        """Rows in the table, distinct ids, ids expected."""
        from collections import Counter

        from deltalake import DeltaTable

        from ingest_core.azure.auth import delta_storage_options
        from ingest_core.config import StorageConfig

        options = delta_storage_options(self.table, StorageConfig(connection_string=AZURITE))
        ids = DeltaTable(self.table, storage_options=options).to_pyarrow_table(
            columns=["id"]).column("id").to_pylist()
        counts = Counter(ids)
        return len(ids), len(counts), self.next_id

    def close(self) -> None:
        for _ in self.procs:
            self.tasks.put(None)
        for proc in self.procs:
            proc.join(30)
        self.service.delete_container(self.name)
        self.service.delete_container(self.name + "lake")


def one_run(args: argparse.Namespace) -> list[dict[str, Any]]:
    surge = Surge(args.workers, args.threads)
    rows = []
    try:
        phases = [
            ("lone (fresh table)", 20, "event", True),
            ("wave 1", args.blobs, "event", False),
            ("history (lone)", args.history, "event", True),
            ("wave 2", args.blobs, "event", False),
            ("blob trigger (BlobClient)", max(1, args.blobs // 4), "blob", False),
        ]
        for name, count, kind, lone in phases:
            if count == 0:
                continue
            phase = surge.run(Phase(name, count), surge.blobs(count), kind=kind, lone=lone)
            row = phase.row()
            if lone and count >= 20:
                tail = phase.latencies[-20:]
                row["last_20_mean_s"] = round(statistics.fmean(tail), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for error in phase.errors[:3]:
                print(f"    failed: {error[:300]}", flush=True)
        total, distinct, expected = surge.check()
        ok = total == distinct == expected
        check = {"rows": total, "distinct_ids": distinct, "expected": expected,
                 "exactly_once": ok}
        print(json.dumps(check), flush=True)
        rows.append(check)
    finally:
        surge.close()
    return rows


@contextlib.contextmanager
def fresh_azurite(*, in_memory: bool = False) -> Iterator[None]:
    """An empty Azurite on free ports, in a temporary folder, for the `with` block."""
    global AZURITE, BLOB_ENDPOINT
    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    folder = tempfile.mkdtemp(prefix="surge-azurite-")
    azurite = subprocess.Popen(
        [str(REPO / "node_modules" / ".bin" / "azurite"), "--silent", "--skipApiVersionCheck",
         "--disableTelemetry",
         *(["--inMemoryPersistence"] if in_memory else ["--location", folder]),
         "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
         "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in ("SURGE_AZURITE_PORTS", "SURGE_AZURITE_PID")}
    try:
        for port in ports:
            for _ in range(100):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
        os.environ["SURGE_AZURITE_PORTS"] = ",".join(map(str, ports))
        os.environ["SURGE_AZURITE_PID"] = str(azurite.pid)
        AZURITE, BLOB_ENDPOINT = _endpoints()
        yield
    finally:
        azurite.terminate()
        try:
            azurite.wait(10)
        except subprocess.TimeoutExpired:
            azurite.kill()
            azurite.wait()
        shutil.rmtree(folder, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        AZURITE, BLOB_ENDPOINT = _endpoints()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", "-W", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--threads", "-T", type=int, default=4,
                        help="invocations at a time per process (4)")
    parser.add_argument("--blobs", "-B", type=int, default=400, help="new blobs per wave (400)")
    parser.add_argument("--history", "-H", type=int, default=600,
                        help="lone events between the waves (600)")
    parser.add_argument("--runs", type=int, default=1, help="whole runs, each on a fresh table")
    parser.add_argument("--json", type=Path, help="also write every run's rows here")
    parser.add_argument("--fresh-azurite", action="store_true",
                        help="start an empty Azurite of its own for each run (from node_modules; "
                        "its cost per request grows with what it holds)")
    parser.add_argument("--in-memory", action="store_true",
                        help="with --fresh-azurite: --inMemoryPersistence (no emulator disk I/O)")
    args = parser.parse_args()
    print(f"surge: W={args.workers} T={args.threads} B={args.blobs} H={args.history}, "
          f"{os.cpu_count()} cores", flush=True)
    runs = []
    for index in range(args.runs):
        print(f"-- run {index + 1} of {args.runs}", flush=True)
        if args.fresh_azurite:
            with fresh_azurite(in_memory=args.in_memory):
                runs.append(one_run(args))
        else:
            runs.append(one_run(args))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
