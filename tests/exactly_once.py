"""Exactly-once checks and chaos machinery for the crash, race and stall tests and bench/chaos.py.

`check_exactly_once` reads the Delta log (the raw `txn` actions of every
commit), the table's rows and the ledger, and lists every disagreement.
`run_race` drives worker processes (spawn) over shuffled redeliveries while
SIGKILLing them at random, then replays every file once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest_core.config import is_local, local_path
from ingest_core.delta import APP_ID_PREFIX
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, BaseLedger
from ingest_core.ledger.base import unread_key


def ledger_uri(kind: str, tmp_path: Path, name: str) -> str:
    """The ledger URI of `kind` (sqlite or azure_table) for one test."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return f"azure-table://{name.replace('-', '')}ledger"


def log_commits(table_uri: str, connection: str | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every commit in the table's `_delta_log`, as its list of actions, by version."""
    texts: dict[int, str] = {}
    if is_local(table_uri):
        log = local_path(table_uri) / "_delta_log"
        for entry in log.glob("*.json") if log.is_dir() else []:
            texts[int(entry.stem)] = entry.read_text()
    else:
        from azure.storage.blob import BlobServiceClient

        from ingest_core.azure.urls import parse_blob_url

        location = parse_blob_url(table_uri)
        assert connection, "a remote table needs the storage connection string"
        container = BlobServiceClient.from_connection_string(connection).get_container_client(
            location.container
        )
        prefix = location.name.rstrip("/") + "/_delta_log/"
        for blob in container.list_blobs(name_starts_with=prefix):
            stem = blob.name[len(prefix) :]
            if stem.endswith(".json") and stem[:-5].isdigit():
                texts[int(stem[:-5])] = container.download_blob(blob.name).readall().decode()
    return {
        version: [json.loads(line) for line in text.splitlines() if line.strip()]
        for version, text in texts.items()
    }


def txn_versions(commits: dict[int, list[dict[str, Any]]]) -> dict[str, list[int]]:
    """For each content sha256, the versions whose commit carries its `ingest-<sha256>` txn."""
    found: dict[str, list[int]] = {}
    for version in sorted(commits):
        for action in commits[version]:
            app = action.get("txn", {}).get("appId", "")
            if app.startswith(APP_ID_PREFIX):
                found.setdefault(app[len(APP_ID_PREFIX) :], []).append(version)
    return found


def unreferenced_data_files(table_uri: str) -> list[str]:
    """Parquet files in a local table folder that no commit adds: leftovers of a killed write."""
    root = local_path(table_uri)
    added = {
        action["add"]["path"]
        for actions in log_commits(table_uri).values()
        for action in actions
        if "add" in action
    }
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.parquet")
        if "_delta_log" not in p.parts and p.relative_to(root).as_posix() not in added
    )


@dataclass
class Agreement:
    """What `check_exactly_once` found; `problems` is empty when everything agrees."""

    problems: list[str] = field(default_factory=list)
    rows: int = 0
    distinct_ids: int = 0
    duplicate_rows: int = 0
    """Rows beyond the first of each id: must be 0."""
    contents_in_log: int = 0
    contents_committed_twice: int = 0
    ledger_rows: Counter[str] = field(default_factory=Counter)


def _rows_by_commit(
    commits: dict[int, list[dict[str, Any]]], txns: dict[str, list[int]]
) -> Counter[str]:
    """Rows per content for a table without lineage: what the one-file commit of each txn adds."""
    rows: Counter[str] = Counter()
    for sha, versions in txns.items():
        for version in versions:
            actions = commits[version]
            assert sum("txn" in a for a in actions) == 1, "without lineage, one file per commit"
            rows[sha] += sum(
                json.loads(a["add"]["stats"])["numRecords"] for a in actions if "add" in a
            )
    return rows


def check_exactly_once(
    table_uri: str,
    ledger: BaseLedger,
    table_key: str,
    *,
    expected_ids: set[int] | None = None,
    storage_options: dict[str, str] | None = None,
    connection: str | None = None,
    settled: bool = True,
) -> Agreement:
    """Compare the table's rows, its Delta log and the ledger; list every disagreement.

    - every id is in the table at most once (exactly once if `expected_ids`);
    - every content's transaction id `ingest-<sha256>` is in exactly one commit;
    - every succeeded row's `delta_version` is that commit and its `rows` the
      rows the table holds for that sha256;
    - every transaction id has a succeeded row, or (when not `settled`) a row a
      redelivery recovers (processing or failed);
    - quarantined content has nothing in the table.
    """
    report = Agreement()
    commits = log_commits(table_uri, connection)
    txns = txn_versions(commits)
    by_sha: Counter[str] = Counter()
    if commits:
        from deltalake import DeltaTable

        table = DeltaTable(table_uri, storage_options=storage_options)
        lineage = "_ingest_sha256" in table.schema().to_arrow().names
        data = table.to_pyarrow_table(columns=["id", "_ingest_sha256"] if lineage else ["id"])
        ids = Counter(data.column("id").to_pylist())
        if lineage:
            by_sha = Counter(data.column("_ingest_sha256").to_pylist())
        else:
            by_sha = _rows_by_commit(commits, txns)
        report.rows = data.num_rows
        report.distinct_ids = len(ids)
        report.duplicate_rows = sum(n - 1 for n in ids.values())
        if report.duplicate_rows:
            twice = sorted(i for i, n in ids.items() if n > 1)
            report.problems.append(f"{report.duplicate_rows} duplicate rows, ids {twice[:10]}")
        if expected_ids is not None and set(ids) != expected_ids:
            missing = sorted(expected_ids - set(ids))
            extra = sorted(set(ids) - expected_ids)
            report.problems.append(f"ids missing {missing[:10]}, unexpected {extra[:10]}")
    elif expected_ids:
        report.problems.append("the table has no commit at all")
    report.contents_in_log = len(txns)
    for sha, versions in txns.items():
        if len(versions) > 1:
            report.contents_committed_twice += 1
            report.problems.append(f"{sha[:12]} committed in versions {versions}")
    rows = {r.sha256: r for r in ledger.records(table=table_key)}
    recoverable = (SUCCEEDED,) if settled else (SUCCEEDED, PROCESSING, FAILED)
    for sha, record in rows.items():
        report.ledger_rows[record.status] += 1
        if sha == unread_key(record.path):
            continue
        if record.status == SUCCEEDED:
            if sha not in txns:
                report.problems.append(f"succeeded {record.path} has no txn in the log")
            elif record.delta_version != txns[sha][0]:
                report.problems.append(
                    f"succeeded {record.path}: delta_version {record.delta_version}, "
                    f"txn in version {txns[sha][0]}"
                )
            if by_sha[sha] != record.rows:
                report.problems.append(
                    f"succeeded {record.path}: ledger rows {record.rows}, table {by_sha[sha]}"
                )
        elif record.status == QUARANTINED and (sha in txns or by_sha[sha]):
            report.problems.append(f"quarantined {record.path} has data in the table")
        elif settled and record.status in (PROCESSING, FAILED):
            report.problems.append(f"{record.path} is still {record.status} after recovery")
    for sha in txns:
        record = rows.get(sha)
        if record is None or record.status not in recoverable:
            state = record.status if record else "no row"
            report.problems.append(f"txn of {sha[:12]} in the log, ledger: {state}")
    for sha in by_sha:
        if sha not in txns:
            report.problems.append(f"rows of {sha[:12]} in the table without a txn")
    return report


# -- workers (module level: spawned children import them) ---------------------------------


def ingest_paths(
    table: str, ledger: str, paths: list[str], options: dict[str, Any], connection: str | None
) -> dict[str, int]:
    """One worker: ingest the files at `paths` (in this order) and return the counts."""
    from ingest_core import IdempotentIngestor, StorageConfig

    storage = StorageConfig(connection_string=connection)
    with IdempotentIngestor(table=table, ledger=ledger, storage=storage, **options) as ing:
        return ing.run(ing.list_sources(paths)).counts


def kill_at(point: str, monkeypatch: Any, *args: Any) -> int | None:
    """Run `ingest_paths(*args)` in a spawned process armed at crash `point`; its exit code."""
    import multiprocessing

    monkeypatch.setenv("INGEST_FAULT_POINT", point)
    proc = multiprocessing.get_context("spawn").Process(target=ingest_paths, args=args)
    proc.start()
    monkeypatch.delenv("INGEST_FAULT_POINT")
    proc.join(120)
    return proc.exitcode


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, written with a single write(2): it survives a SIGKILL that follows."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def race_worker(
    table: str,
    ledger: str,
    deliveries: list[str],
    start: int,
    progress: str,
    options: dict[str, Any],
    connection: str | None,
    seed: int,
) -> None:
    """Ingest `deliveries[start:]` in runs of 1-4 files, logging progress after each run."""
    from ingest_core import IdempotentIngestor, StorageConfig

    chooser = random.Random(seed)
    storage = StorageConfig(connection_string=connection)
    with IdempotentIngestor(table=table, ledger=ledger, storage=storage, **options) as ing:
        _append_line(Path(progress), {"ready": start})
        i = start
        while i < len(deliveries):
            j = min(len(deliveries), i + chooser.randint(1, 4))
            stats = ing.run(ing.list_sources(deliveries[i:j]))
            errors = [r.error for r in stats.files if r.status in ("failed", "quarantined")]
            _append_line(Path(progress), {"next": j, "counts": stats.counts, "errors": errors})
            i = j


def _progress(path: Path) -> tuple[int | None, bool, Counter[str], list[str]]:
    """(next delivery to do, whether the worker is working, counts and errors so far)."""
    nxt: int | None = None
    working = False
    counts: Counter[str] = Counter()
    errors: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "ready" in entry:
                working = True
            else:
                nxt = entry["next"]
                counts.update(entry["counts"])
                errors += entry["errors"]
    return nxt, working, counts, errors


@dataclass
class RaceReport:
    """What `run_race` did and found."""

    files: int
    workers: int
    deliveries: int
    kills: int
    race_counts: Counter[str]
    race_errors: list[str]
    """Errors of the files that failed or were quarantined during the race."""
    replay_counts: dict[str, int]
    agreement: Agreement
    race_s: float
    replay_s: float


def run_race(
    *,
    table: str,
    ledger: str,
    paths: list[str],
    workdir: Path,
    workers: int = 8,
    copies: int = 3,
    kills: int = 10,
    seed: int = 0,
    lease_seconds: float = 2.0,
    connection: str | None = None,
    expected_ids: set[int] | None = None,
    kill_every: tuple[float, float] = (0.2, 0.8),
    timeout: float = 600,
    options: dict[str, Any] | None = None,
) -> RaceReport:
    """Deliver each of `paths` `copies` times, shuffled, to `workers` spawned processes.

    Every `kill_every` seconds (at random in that range), until `kills` are
    done, a working worker is SIGKILLed and a fresh one resumes its list at the
    first run it had not finished (so that run is delivered again). `options`
    go to every worker's and the replay's ingestor (e.g. merge mode). When every
    list is done, leases run out, one clean replay ingests every path once, and
    `check_exactly_once` compares table, log and ledger.
    """
    import multiprocessing

    from ingest_core import IdempotentIngestor, StorageConfig

    chooser = random.Random(seed)
    deliveries = [p for p in paths for _ in range(copies)]
    chooser.shuffle(deliveries)
    lists = [deliveries[k::workers] for k in range(workers)]
    extra = options or {}
    options = {"lease_seconds": lease_seconds, "batch_files": 4, **extra}
    context = multiprocessing.get_context("spawn")
    workdir.mkdir(parents=True, exist_ok=True)
    progress = [workdir / f"worker-{k}.jsonl" for k in range(workers)]
    totals: Counter[str] = Counter()
    errors: list[str] = []
    generation = [0] * workers

    def spawn(k: int, start: int) -> Any:
        progress[k].unlink(missing_ok=True)
        generation[k] += 1
        proc = context.Process(
            target=race_worker,
            args=(table, ledger, lists[k], start, str(progress[k]), options, connection,
                  seed * 1000 + k * 31 + generation[k]),
        )
        proc.start()
        return proc

    started = time.monotonic()
    procs = [spawn(k, 0) for k in range(workers)]
    starts = [0] * workers
    killed = 0
    next_kill = time.monotonic() + chooser.uniform(*kill_every)
    while any(p.is_alive() for p in procs):
        if time.monotonic() - started > timeout:
            for p in procs:
                p.kill()
            raise TimeoutError(f"the race did not finish in {timeout} s")
        time.sleep(0.05)
        if killed < kills and time.monotonic() >= next_kill:
            working = [k for k, p in enumerate(procs) if p.is_alive() and _progress(progress[k])[1]]
            if working:
                k = chooser.choice(working)
                os.kill(procs[k].pid, signal.SIGKILL)
                procs[k].join()
                nxt, _, counts, failures = _progress(progress[k])
                totals.update(counts)
                errors.extend(failures)
                starts[k] = nxt if nxt is not None else starts[k]
                killed += 1
                procs[k] = spawn(k, starts[k])
            next_kill = time.monotonic() + chooser.uniform(*kill_every)
    for k, p in enumerate(procs):
        if p.exitcode != 0:
            raise RuntimeError(f"worker {k} exited with {p.exitcode}")
        _, _, counts, failures = _progress(progress[k])
        totals.update(counts)
        errors.extend(failures)
    race_s = time.monotonic() - started
    time.sleep(lease_seconds + 0.2)  # leases of killed workers run out
    started = time.monotonic()
    storage = StorageConfig(connection_string=connection)
    with IdempotentIngestor(table=table, ledger=ledger, storage=storage, **extra) as ing:
        replay = ing.run(ing.list_sources(sorted(set(paths)))).counts
        agreement = check_exactly_once(
            table, ing.ledger, ing.table, expected_ids=expected_ids, connection=connection
        )
    return RaceReport(
        files=len(set(paths)),
        workers=workers,
        deliveries=len(deliveries),
        kills=killed,
        race_counts=totals,
        race_errors=errors,
        replay_counts=replay,
        agreement=agreement,
        race_s=race_s,
        replay_s=time.monotonic() - started,
    )


def wait_stopped(proc: Any, timeout: float = 60) -> None:
    """Wait until the worker is in the stopped state (T); fail at once if it exits instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError(f"the worker did not reach its stall point (exit {proc.exitcode})")


def thaw(proc: Any, timeout: float = 60) -> None:
    """Let a stopped worker run on (SIGCONT) and wait for it to end; kill it if it does not."""
    os.kill(proc.pid, signal.SIGCONT)
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()


# -- the event path: threads calling `ingest_one`, as a Functions worker runs invocations --


def ingest_on_threads(
    table: str,
    ledger: str,
    paths: list[str],
    options: dict[str, Any],
    connection: str | None,
    out: str,
    *,
    threads: int = 4,
    hold_until_staged: int = 0,
    go: str | None = None,
) -> None:
    """One worker process: `Session.ingest_one` for each of `paths` on `threads` threads.

    Writes the results (path, status, sha256, delta_version) as JSON to `out`.
    `hold_until_staged`: keep the table's group commit locked until that many
    files are staged, so the first commit carries all of them. `go`: wait for
    this file to exist before starting (several workers start together).
    """
    from concurrent.futures import ThreadPoolExecutor

    from ingest_core import IngestConfig, StorageConfig
    from ingest_core.delta.group_commit import STAGING
    from ingest_core.session import Session

    config = IngestConfig(
        table_uri=table, ledger_uri=ledger, storage=StorageConfig(connection_string=connection),
        **options,
    )
    with Session(config) as session:
        files = {f.uri: f for f in session.list_sources(sorted(set(paths)))}
        group = session.ingestor(config).group
        group.table_schema()  # the table is known before the lock is taken
        if go is not None:
            _append_line(Path(out + ".ready"), {"ready": True})
            while not Path(go).exists():
                time.sleep(0.01)
        with ThreadPoolExecutor(threads) as pool:
            if hold_until_staged:
                group._lock.acquire()
            futures = [pool.submit(session.ingest_one, files[p]) for p in paths]
            if hold_until_staged:
                deadline = time.monotonic() + 60
                while len(group.store.records(STAGING)) < hold_until_staged:
                    assert time.monotonic() < deadline, "the files were not staged in 60 s"
                    time.sleep(0.01)
                group._lock.release()
            results = [f.result() for f in futures]
    Path(out).write_text(json.dumps([
        {"path": r.path, "status": r.status, "sha256": r.sha256, "delta_version": r.delta_version,
         "error": r.error}
        for r in results
    ]))
