"""The event path's group commit (issue 20): concurrent `ingest_one` calls share Delta commits.

Each invocation stages its own data file and intent under `_ingest_staging/`;
whoever commits next carries every staged file in one put-if-absent of the next
version. These tests race threads and processes through it, kill and freeze
workers at its crash points, read its commits back with delta-rs, count its
storage requests, and call the Functions app with it. After every scenario:
each distinct content is in the table exactly once, the ledger agrees with the
Delta log, and maintenance leaves no staged intent and no data file the table
does not reference. On both ledgers: SQLite with a local table, and the Azure
Table ledger with an abfs:// table on Azurite.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError
from exactly_once import (
    check_exactly_once,
    ingest_on_threads,
    ledger_uri,
    log_commits,
    thaw,
    wait_stopped,
)
from helpers import write_parquet
from test_function_app import BLOB_ENDPOINT, grid_event

import function_app
import ingest_core.delta.group_commit as group_commit
from ingest_core import IngestConfig, StorageConfig
from ingest_core.config import table_key
from ingest_core.delta.data_files import write_file
from ingest_core.delta.group_commit import (
    COMMIT_GAP_S,
    COMMIT_JITTER_S,
    ORPHANS,
    PACED_WAITS,
    STAGING,
    GroupCommit,
    Intent,
    StagedSchemaError,
)
from ingest_core.delta.log import LOG_FOLDER
from ingest_core.delta.maintain import maintain
from ingest_core.delta.store import LocalStore, store_for
from ingest_core.delta.target import APP_ID_PREFIX, METADATA_KEY, TableRef, app_id
from ingest_core.events import build_blob_created
from ingest_core.ledger import SUCCEEDED, open_ledger
from ingest_core.session import Session

SPAWN = multiprocessing.get_context("spawn")
ROWS = 3
LEASE = 1.0


@dataclass
class Lake:
    """A table, its ledger and its landing folder, on one back end."""

    kind: str
    table: str
    ledger: str
    connection: str | None
    landing: Path
    cleanup: list = field(default_factory=list)

    @property
    def storage(self) -> StorageConfig:
        return StorageConfig(connection_string=self.connection)

    def config(self, **options) -> IngestConfig:
        return IngestConfig(
            table_uri=self.table, ledger_uri=self.ledger, storage=self.storage, **options
        )

    @property
    def ref(self) -> TableRef:
        return TableRef.of(self.table, self.storage)

    def delta(self) -> DeltaTable:
        return DeltaTable(self.table, storage_options=self.ref.storage_options())

    def ids(self) -> Counter[int]:
        return Counter(self.delta().to_pyarrow_table(columns=["id"]).column("id").to_pylist())

    def files(self, count: int, *, start: int = 0, folder: str = "") -> list[str]:
        """`count` distinct parquet files of ROWS ids each, ids from `start * ROWS`."""
        return [
            str(write_parquet(self.landing / folder / f"f{i:03d}.parquet", i * ROWS, ROWS))
            for i in range(start, start + count)
        ]

    def expected_ids(self, count: int, start: int = 0) -> set[int]:
        return set(range(start * ROWS, (start + count) * ROWS))

    def check(self, expected_ids: set[int] | None, *, settled: bool = True) -> None:
        ledger = open_ledger(self.ledger, self.storage)
        try:
            agreement = check_exactly_once(
                self.table, ledger, table_key(self.table), expected_ids=expected_ids,
                storage_options=self.ref.storage_options(), connection=self.connection,
                settled=settled,
            )
        finally:
            ledger.close()
        assert agreement.problems == []

    def ledger_rows(self) -> list:
        ledger = open_ledger(self.ledger, self.storage)
        try:
            return ledger.records(table=table_key(self.table))
        finally:
            ledger.close()

    def txn_commits(self) -> dict[int, list[str]]:
        """The versions that carry ingest transaction ids, and the sha256s each carries."""
        found: dict[int, list[str]] = {}
        for version, actions in log_commits(self.table, self.connection).items():
            shas = [a["txn"]["appId"][len(APP_ID_PREFIX):] for a in actions
                    if a.get("txn", {}).get("appId", "").startswith(APP_ID_PREFIX)]
            if shas:
                found[version] = shas
        return found

    def folder(self) -> list[str]:
        """Every file in the table folder, relative to its root."""
        if self.connection is None:
            root = Path(self.table)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        from azure.storage.blob import BlobServiceClient

        from ingest_core.azure.urls import parse_blob_url

        location = parse_blob_url(self.table)
        container = BlobServiceClient.from_connection_string(
            self.connection
        ).get_container_client(location.container)
        prefix = location.name.rstrip("/") + "/"
        return sorted(b.name[len(prefix):] for b in container.list_blobs(name_starts_with=prefix))

    def data_files(self) -> set[str]:
        """The parquet data files in the table folder (the log's checkpoints left out)."""
        return {p for p in self.folder()
                if p.endswith(".parquet") and not p.startswith(LOG_FOLDER)}

    def staged(self) -> list[str]:
        """Intents waiting under `_ingest_staging/` (orphan records left out, and the hidden
        temp file of a local intent whose write a kill cut short: no intent, as no listing
        shows it)."""
        return [p for p in self.folder() if p.startswith(STAGING) and not p.startswith(ORPHANS)
                and not p.rsplit("/", 1)[-1].startswith(".")]

    def orphan_records(self) -> list[str]:
        return [p for p in self.folder() if p.startswith(ORPHANS)]

    def referenced(self) -> set[str]:
        return {uri.rsplit("/", 1)[-1] for uri in self.delta().file_uris()}

    def named_by_staging(self) -> set[str]:
        """The data files that staged intents and orphan records name."""
        store = store_for(self.table, self.storage)
        records = {**store.records(STAGING), **store.records(ORPHANS)}
        return {json.loads(raw)["add"]["path"] for raw in records.values()}

    def maintained_clean(
        self, expected_ids: set[int] | None, cut: set[str] | None = None
    ) -> dict[str, int]:
        """Maintenance of the staging area; then still exactly once, nothing staged, and
        every data file referenced.

        `expected_ids`: None for a table written without a ledger.
        `cut`: data files a kill left with no intent naming them (uploads cut
        short): not the staging area's to delete, they are left to vacuum.
        """
        report = maintain(self.config(), compact=False, checkpoint=False, staging_after_s=0)
        if expected_ids is not None:  # what maintenance committed of the staged files included
            self.check(expected_ids)
        assert self.staged() == []
        assert self.orphan_records() == []
        left = self.data_files() - self.referenced()
        assert left <= (cut or set()), f"data files the table does not reference: {left}"
        if left:  # a full vacuum deletes them (the lite one maintenance runs does not)
            deleted = self.delta().vacuum(
                retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True
            )
            assert {p.rsplit("/", 1)[-1] for p in deleted} == left
            assert self.data_files() == self.referenced()
        return report.staging


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def lake(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Lake]:
    landing = tmp_path / "landing"
    if request.param == "sqlite":
        yield Lake("sqlite", str(tmp_path / "lake" / "orders"),
                   ledger_uri("sqlite", tmp_path, unique_name), None, landing)
        return
    from azure.storage.blob import BlobServiceClient

    connection = request.getfixturevalue("azurite")
    service = BlobServiceClient.from_connection_string(connection)
    service.create_container(f"{unique_name}-lake")
    try:
        yield Lake("azure_table", f"abfs://{unique_name}-lake/orders",
                   ledger_uri("azure_table", tmp_path, unique_name), connection, landing)
    finally:
        service.delete_container(f"{unique_name}-lake")


def seeded(lake: Lake) -> set[int]:
    """Create the table with one file (the first file of a table gets a commit of its own)."""
    [seed] = lake.files(1, start=900, folder="seed")
    with Session(lake.config()) as session:
        assert session.ingest_one(session.list_sources([seed])[0]).status == "ingested"
    return lake.expected_ids(1, start=900)


# -- 1. threads of one process -------------------------------------------------------------


@pytest.mark.slow
def test_threads_of_one_process_share_commits_and_land_each_content_once(lake: Lake):
    distinct = lake.files(40)
    copies = []
    for path in distinct[:8]:  # the same bytes under other names
        copy = lake.landing / "copies" / Path(path).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
        copies.append(str(copy))
    with Session(lake.config()) as session:
        files = {f.uri: f for f in session.list_sources([str(lake.landing)])}
        calls = distinct + copies + distinct[10:14]  # and four files delivered twice at once
        random.Random(1).shuffle(calls)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda p: session.ingest_one(files[p]), calls))

    assert {r.status for r in results} <= {"ingested", "skipped"}, [
        (r.path, r.status, r.error) for r in results if r.status not in ("ingested", "skipped")
    ]
    by_content: dict[str, Counter[str]] = {}
    for result in results:
        by_content.setdefault(result.sha256, Counter())[result.status] += 1
    assert len(by_content) == 40
    assert all(c["ingested"] == 1 for c in by_content.values()), by_content
    assert sum(c["skipped"] for c in by_content.values()) == 12

    rows = lake.ledger_rows()
    assert len(rows) == 40 and {r.status for r in rows} == {SUCCEEDED}
    lake.check(lake.expected_ids(40))
    commits = lake.txn_commits()
    assert len(commits) < 40, f"{len(commits)} commits for 40 files: nothing was shared"
    version_of = {sha: v for v, shas in commits.items() for sha in shas}
    for result in results:
        if result.status == "ingested":
            assert result.delta_version == version_of[result.sha256], result
            assert result.rows == ROWS
    lake.maintained_clean(lake.expected_ids(40))


# -- 5. the log the group commit writes, as delta-rs reads it ------------------------------


SCHEMA = pa.schema([("id", pa.int64()), ("amount", pa.float64())])


def rows_of(ids: list[int]) -> pa.Table:
    return pa.table({"id": ids, "amount": [i * 1.5 for i in ids]}, schema=SCHEMA)


def sha_of(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def created(lake: Lake) -> None:
    """The table, created by delta-rs with one row (id -1)."""
    write_deltalake(lake.table, rows_of([-1]), storage_options=lake.ref.storage_options())


def stage(group: GroupCommit, ids: list[int], tmp: Path, *, checked_at: int | None = None):
    """Stage the rows `ids` as one file's content, as `ingest_one` stages a file."""
    local = tmp / f"{sha_of(ids)}.parquet"
    write_file(local, rows_of(ids))
    at = group.snapshot_version if checked_at is None else checked_at
    return group.stage(sha_of(ids), f"landing/{ids[0]}.parquet", local, at)


def test_a_group_commit_is_read_by_delta_rs_with_its_files_and_transaction_ids(
    lake: Lake, tmp_path: Path
):
    created(lake)
    group = GroupCommit(lake.ref)
    try:
        group.table_schema()
        contents = [[1, 2], [3], [4, 5, 6]]
        intents = [stage(group, ids, tmp_path) for ids in contents]
        committed = group.commit(intents[1])
        assert committed.version == 1 and committed.rows == 1
        assert [group.commit(i).version for i in intents] == [1, 1, 1]  # one commit for all
    finally:
        group.close()
    table = lake.delta()
    assert table.version() == 1
    assert sorted(lake.ids()) == [-1, 1, 2, 3, 4, 5, 6]
    assert all(table.transaction_version(app_id(sha_of(ids))) == 1 for ids in contents)
    [latest] = table.history(1)
    recorded = json.loads(latest[METADATA_KEY])
    assert sorted(f["sha256"] for f in recorded) == sorted(sha_of(ids) for ids in contents)
    assert {f["sha256"]: f["rows"] for f in recorded} == {sha_of(c): len(c) for c in contents}
    assert lake.staged() == []


def test_a_delta_rs_writer_with_a_snapshot_from_before_a_group_commit_cannot_add_it_again(
    lake: Lake, tmp_path: Path
):
    created(lake)
    content = [7, 8, 9]
    stale = lake.delta()
    assert stale.transaction_version(app_id(sha_of(content))) is None  # its check: not in
    group = GroupCommit(lake.ref)
    try:
        group.table_schema()
        assert group.commit(stage(group, content, tmp_path)).version == 1
    finally:
        group.close()
    with pytest.raises(CommitFailedError):
        write_deltalake(
            stale, rows_of(content), mode="append",
            commit_properties=CommitProperties(
                app_transactions=[Transaction(app_id(sha_of(content)), 1)]
            ),
        )
    assert lake.ids() == Counter([-1, 7, 8, 9])
    assert lake.delta().version() == 1


def test_a_group_commit_finds_a_content_delta_rs_committed_meanwhile_and_adds_nothing(
    lake: Lake, tmp_path: Path
):
    created(lake)
    content = [7, 8, 9]
    group = GroupCommit(lake.ref)
    try:
        group.table_schema()
        intent = stage(group, content, tmp_path)  # absent at version 0
        write_deltalake(
            lake.table, rows_of(content), mode="append",
            storage_options=lake.ref.storage_options(),
            commit_properties=CommitProperties(
                app_transactions=[Transaction(app_id(sha_of(content)), 1)]
            ),
        )
        assert group.commit(intent).version == 1
        assert group.commit_staged() is None
    finally:
        group.close()
    assert lake.delta().version() == 1
    assert lake.ids() == Counter([-1, 7, 8, 9])
    # its staged data file was never committed: maintenance deletes it
    assert lake.maintained_clean(None) == {"committed": 0, "orphans_deleted": 1}
    assert lake.ids() == Counter([-1, 7, 8, 9])


# -- 6. the cost of a group commit does not grow with the table's history -------------------


class CountingStore(LocalStore):
    """A real local store that counts the requests a commit makes, by kind and folder."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: Counter[str] = Counter()
        self.listed: list[str] = []
        self.listed_at: list[float] = []

    def read(self, path: str) -> bytes | None:
        self.calls["read"] += 1
        return super().read(path)

    def names(self, prefix: str) -> list[str]:
        self.calls["list"] += 1
        self.listed.append(prefix)
        return super().names(prefix)

    def records(self, prefix: str) -> dict[str, bytes]:
        self.calls["list"] += 1
        self.listed.append(prefix)
        self.listed_at.append(time.time())
        return {p: LocalStore.read(self, p) or b"" for p in LocalStore.names(self, prefix)}

    def create(self, path: str, data: bytes) -> bool:
        self.calls["create"] += 1
        return super().create(path, data)

    def delete_all(self, paths: list[str]) -> None:
        self.calls["delete"] += len(paths)
        super().delete_all(paths)


def _one_measured_group_commit(table: str, tmp: Path, first: int) -> Counter[str]:
    """Stage two files and commit them, counting the store's requests from the commit's start."""
    store = CountingStore(Path(table))
    group = GroupCommit(TableRef.of(table), store)
    try:
        group.table_schema()
        group.find("0" * 64)  # the log read up to now, as a worker that has been running
        intents = [stage(group, [first + k], tmp) for k in range(2)]
        store.calls.clear()
        store.listed.clear()
        committed = group.commit(intents[0])
        assert group.commit(intents[1]).version == committed.version  # one commit for both
    finally:
        group.close()
    assert all(not prefix.startswith(LOG_FOLDER) for prefix in store.listed), store.listed
    return store.calls


@contextmanager
def group_on_a_new_table(table_uri: str, store: LocalStore | None = None) -> Iterator[GroupCommit]:
    """A group commit on a table delta-rs just created, its snapshot read; closed after."""
    write_deltalake(table_uri, rows_of([-1]))
    group = GroupCommit(TableRef.of(table_uri), store)
    try:
        group.table_schema()
        yield group
    finally:
        group.close()


def test_a_commit_just_after_a_group_commit_waits_its_turn_without_listing_the_staged_files(
    table_uri: str, tmp_path: Path
):
    store = CountingStore(Path(table_uri))
    with group_on_a_new_table(table_uri, store) as group:
        surge = [stage(group, [10 + k], tmp_path) for k in range(3)]
        carried = group.commit(surge[0])
        assert group.log.tip_files == 3
        tip = group.log.tip_time
        late = stage(group, [20], tmp_path)
        store.calls.clear()
        store.listed_at.clear()
        assert group.commit(late).version == carried.version + 1
    # others' files are surely on their way: no listing to find out, and no commit before
    # its turn; then one listing for the commit itself
    assert store.listed_at and min(store.listed_at) >= tip + COMMIT_GAP_S
    assert store.calls["list"] == 1 and store.calls["create"] == 1


def test_a_commit_after_one_stamped_by_a_clock_far_ahead_waits_its_turn_only_a_few_times(
    table_uri: str, tmp_path: Path
):
    with group_on_a_new_table(table_uri) as group:
        surge = [stage(group, [10 + k], tmp_path) for k in range(3)]
        carried = group.commit(surge[0])
        group.log.tip_time = time.time() + 60  # as another host whose clock is a minute ahead
        late = stage(group, [20], tmp_path)
        started = time.monotonic()
        assert group.commit(late).version == carried.version + 1
        took = time.monotonic() - started
    assert took < PACED_WAITS * (COMMIT_GAP_S + COMMIT_JITTER_S) + 1.0, took


def test_a_commit_just_after_a_commit_of_one_file_is_made_at_once(
    table_uri: str, tmp_path: Path
):
    with group_on_a_new_table(table_uri) as group:
        first = stage(group, [10], tmp_path)
        group.commit(first)
        assert group.log.tip_files == 1
        # its intent still listed, as another thread's record stays until that thread
        # re-uses it (this thread's next stage writes over its own)
        group.store.write(STAGING + "another-thread.json", first.to_json())
        late = stage(group, [20], tmp_path)
        assert late.name == first.name
        started = time.monotonic()
        group.commit(late)
        took = time.monotonic() - started
    assert took < COMMIT_GAP_S / 2, took  # lone events: nobody waits for company


def test_a_thread_writes_its_next_intent_over_its_last_once_that_landed_and_deletes_none(
    table_uri: str, tmp_path: Path
):
    store = CountingStore(Path(table_uri))
    with group_on_a_new_table(table_uri, store) as group:
        first = stage(group, [10], tmp_path)
        group.commit(first)
        second = stage(group, [20], tmp_path)
        group.commit(second)
        third = stage(group, [30], tmp_path)
        group.commit(third)
        assert first.name == second.name == third.name
        assert store.names(STAGING) == [STAGING + third.name]
        assert Intent.from_json(store.read(STAGING + third.name) or b"").sha256 == third.sha256
        assert store.calls["delete"] == 0  # a busy thread deletes no intent
    assert store.names(STAGING) == []  # closing deletes the free record
    assert sorted(DeltaTable(table_uri).to_pyarrow_table()["id"].to_pylist()) == [-1, 10, 20, 30]


def test_an_idle_threads_intent_record_is_deleted_by_its_owner(
    table_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(group_commit, "SLOT_IDLE_S", 0.2)
    with group_on_a_new_table(table_uri) as group:
        group.commit(stage(group, [10], tmp_path))
        assert group.store.names(STAGING) != []
        deadline = time.monotonic() + 5
        while group.store.names(STAGING) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group.store.names(STAGING) == []  # deleted while the group is still open


def test_an_intent_whose_commit_failed_stays_for_any_committer_and_its_thread_takes_another(
    table_uri: str, tmp_path: Path
):
    with group_on_a_new_table(table_uri) as group:
        failed = stage(group, [10], tmp_path)
        # the table's columns change before the commit: the staged file no longer fits
        write_deltalake(table_uri, pa.table({"id": ["x"]}), mode="overwrite",
                        schema_mode="overwrite")
        with pytest.raises(StagedSchemaError):
            group.commit(failed)
        later = stage(group, [20], tmp_path)
    assert later.name != failed.name
    # an intent is never withdrawn: the failed one is still there for a committer to carry
    assert Intent.from_json(
        group.store.read(STAGING + failed.name) or b""
    ).sha256 == failed.sha256


@pytest.mark.slow
def test_a_group_commit_costs_the_same_storage_requests_at_version_10_and_300(
    table_uri: str, tmp_path: Path
):
    write_deltalake(table_uri, rows_of([-1]))
    writer = GroupCommit(TableRef.of(table_uri))
    try:
        writer.table_schema()
        for i in range(10):
            writer.commit(stage(writer, [1000 + i], tmp_path))
        young = _one_measured_group_commit(table_uri, tmp_path, 100)
        assert DeltaTable(table_uri).version() == 11
        for i in range(10, 300):
            writer.commit(stage(writer, [1000 + i], tmp_path))
    finally:
        writer.close()
    old = _one_measured_group_commit(table_uri, tmp_path, 200)
    assert DeltaTable(table_uri).version() == 302
    assert young == old, (young, old)
    assert young["create"] == 1 and young["list"] == 1



def staged_by_a_thread(lake: Lake, session: Session, path: str) -> tuple[threading.Thread, list]:
    """`ingest_one(path)` on a thread, held before its commit (the group's lock is taken here)."""
    group = session.ingestor(session.config).group
    group.table_schema()
    group._lock.acquire()
    result: list = []
    [file] = session.list_sources([path])
    thread = threading.Thread(target=lambda: result.append(session.ingest_one(file)))
    thread.start()
    deadline = time.monotonic() + 30
    while not lake.staged():
        assert time.monotonic() < deadline and thread.is_alive(), "the file was not staged"
        time.sleep(0.01)
    return thread, result


def test_a_file_another_process_committed_is_recorded_at_its_version_after_a_schema_reload(
    lake: Lake,
):
    """Its invocation reads the log forward past a metadata change: the base reloads."""
    expected = seeded(lake)
    [path] = lake.files(1)
    with Session(lake.config()) as session:
        thread, result = staged_by_a_thread(lake, session, path)
        group = session.ingestor(session.config).group
        try:
            other = GroupCommit(lake.ref)  # another worker process's group commit
            try:
                carried = other.commit_staged()  # carries the staged file
            finally:
                other.close()
            lake.delta().alter.set_table_properties({"delta.targetFileSize": "65536"})
        finally:
            group._lock.release()
        thread.join(60)
    [mine] = result
    assert (mine.status, mine.delta_version, mine.rows) == ("ingested", carried, ROWS)
    lake.check(expected | lake.expected_ids(1))


# -- 2. processes racing ---------------------------------------------------------------------


def run_worker(lake: Lake, paths: list[str], out: Path, *, point: str | None = None,
               monkeypatch=None, lease: float = LEASE, **kwargs
               ) -> multiprocessing.process.BaseProcess:
    """A spawned worker process running `ingest_on_threads` (armed at `point`, if given)."""
    if point is not None:
        monkeypatch.setenv("INGEST_FAULT_POINT", point)
    proc = SPAWN.Process(
        target=ingest_on_threads,
        args=(lake.table, lake.ledger, paths, {"lease_seconds": lease}, lake.connection, str(out)),
        kwargs=kwargs,
    )
    proc.start()
    if point is not None:
        monkeypatch.delenv("INGEST_FAULT_POINT")
    return proc


@pytest.mark.slow
def test_processes_racing_on_the_same_files_land_each_content_once(lake: Lake, tmp_path: Path):
    expected = seeded(lake) | lake.expected_ids(30)
    paths = lake.files(30)
    go = tmp_path / "go"
    outs = [tmp_path / f"worker-{k}.json" for k in range(3)]
    procs = []
    for k, out in enumerate(outs):
        order = list(paths)
        random.Random(k).shuffle(order)
        # leases long enough that no worker takes over from another: one `ingested` a content
        procs.append(run_worker(lake, order, out, lease=60, threads=4, go=str(go)))
    deadline = time.monotonic() + 90
    while not all(Path(f"{out}.ready").exists() for out in outs):
        assert time.monotonic() < deadline, "the workers did not start"
        assert all(p.is_alive() for p in procs), [p.exitcode for p in procs]
        time.sleep(0.05)
    go.touch()  # all three start together
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]

    results = [r for out in outs for r in json.loads(out.read_text())]
    assert {r["status"] for r in results} <= {"ingested", "skipped", "in_progress"}, results
    ingested = Counter(r["sha256"] for r in results if r["status"] == "ingested")
    assert len(ingested) == 30 and set(ingested.values()) == {1}, ingested
    rows = lake.ledger_rows()
    assert len(rows) == 31 and {r.status for r in rows} == {SUCCEEDED}
    lake.check(expected)
    assert len(lake.txn_commits()) < 31
    lake.maintained_clean(expected)


# -- 3. killed at the group commit's crash points, then redelivered ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_stage", "during_group_commit", "after_group_commit"])
def test_worker_killed_in_the_group_commit_is_recovered_by_redelivery_exactly_once(
    lake: Lake, point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    expected = seeded(lake) | lake.expected_ids(4)
    before = lake.txn_commits()
    paths = lake.files(4)
    shas = {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    # at the commit points, the first committer holds every file of the worker in its group
    hold = 0 if point == "after_stage" else len(paths)
    proc = run_worker(lake, paths, tmp_path / "killed.json", point=point,
                      monkeypatch=monkeypatch, threads=4, hold_until_staged=hold)
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL, f"not killed at {point} (exit {proc.exitcode})"

    new = {v: s for v, s in lake.txn_commits().items() if v not in before}
    processing = {r.sha256 for r in lake.ledger_rows() if r.status == "processing"}
    if point == "after_group_commit":
        assert [sorted(s) for s in new.values()] == [sorted(shas)]  # one commit carried all
        assert processing == shas  # committed, not yet completed
        assert len(lake.staged()) == 4  # a dead process's records: maintenance deletes them
    elif point == "during_group_commit":
        assert new == {}
        assert len(lake.staged()) == 4  # the committer's group: every file of the worker
        assert processing == shas
    else:
        assert new == {}
        assert 1 <= len(lake.staged()) <= 4
        assert processing and processing <= shas
    lake.check(None, settled=False)
    # data files of stages the kill cut short, before their intent was written
    cut = lake.data_files() - lake.referenced() - lake.named_by_staging()

    time.sleep(LEASE + 0.2)  # the dead worker's leases run out
    with Session(lake.config()) as session:
        files = {f.uri: f for f in session.list_sources(paths)}
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda p: session.ingest_one(files[p]), paths * 2))
    # Each path's two redeliveries settle it once: ingested by one, skipped by the other; or
    # skipped by both where it was found in the table: always so when the killed worker had
    # committed it, and where a rival's commit carried the dead worker's staged file first.
    statuses = [(r.path, r.status) for r in results]
    assert {s for _, s in statuses} <= {"ingested", "skipped"}, [
        (r.path, r.status, r.error) for r in results
    ]
    for path in paths:
        assert sorted(s for p, s in statuses if p == path) in (
            ["ingested", "skipped"], ["skipped", "skipped"]
        ), statuses
    if point == "after_group_commit":
        assert {s for _, s in statuses} == {"skipped"}
    rows = lake.ledger_rows()
    assert {r.status for r in rows} == {SUCCEEDED}
    assert all(r.delta_version is not None for r in rows)
    lake.check(expected)
    lake.maintained_clean(expected, cut)


@pytest.mark.slow
def test_a_committed_data_file_compacted_away_is_kept_for_the_versions_that_hold_it(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Intents left staged by a committer killed after its commit are recorded as orphans
    by the next committer (it finds their contents in its base, their files unknown); their
    records, a dead process's, wait for maintenance. Once compaction has replaced those
    files in the latest version, maintenance must still not delete them: the versions
    before the compaction read them (time travel, old snapshots).
    """
    seeded(lake)
    paths = lake.files(4)
    proc = run_worker(lake, paths, tmp_path / "killed.json", point="after_group_commit",
                      monkeypatch=monkeypatch, threads=4, hold_until_staged=4)
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    committed = lake.delta().version()
    rows = lake.delta().to_pyarrow_table().num_rows
    assert len(lake.staged()) == 4
    group = GroupCommit(lake.ref)  # a later invocation's commit finds the leftovers landed
    try:
        group.table_schema()
        group.commit(stage(group, [5000], tmp_path))
    finally:
        group.close()
    assert len(lake.staged()) == 4  # the dead worker's; the later one deleted its own
    assert len(lake.orphan_records()) == 4
    maintain(lake.config(), compact=True, checkpoint=False, staging_after_s=None)
    maintain(lake.config(), compact=False, checkpoint=False, staging_after_s=0)
    assert lake.staged() == []
    before = DeltaTable(lake.table, version=committed, storage_options=lake.ref.storage_options())
    assert before.to_pyarrow_table().num_rows == rows


# -- 4. a worker frozen after staging -------------------------------------------------------


@pytest.mark.slow
def test_worker_stalled_after_staging_is_overtaken_and_its_data_file_is_cleaned_as_an_orphan(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    expected = seeded(lake) | lake.expected_ids(1)
    [path] = lake.files(1)
    out = tmp_path / "stalled.json"
    stalled = run_worker(lake, [path], out, point="after_stage:stop", monkeypatch=monkeypatch,
                         threads=1)
    try:
        wait_stopped(stalled)
        assert len(lake.staged()) == 1
        time.sleep(LEASE + 0.2)  # frozen past its lease
        with Session(lake.config()) as session:
            rival = session.ingest_one(session.list_sources([path])[0])
        assert rival.status == "ingested", rival.error
    finally:
        thaw(stalled)
    assert stalled.exitcode == 0
    [first] = json.loads(out.read_text())
    assert (first["status"], first["delta_version"]) == ("ingested", rival.delta_version), first
    lake.check(expected)
    assert len(lake.data_files()) == len(lake.referenced()) + 1  # the stalled one's data file
    assert lake.maintained_clean(expected)["orphans_deleted"] == 1


# -- 7. the Functions app: concurrent invocations in one worker process ------------------------


@pytest.fixture
def app_landing(lake: Lake, azurite: str, unique_name: str, monkeypatch: pytest.MonkeyPatch):
    """App settings naming the lake's table and ledger; a landing container on Azurite."""
    from azure.storage.blob import BlobServiceClient

    from ingest_core import functions

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    container = BlobServiceClient.from_connection_string(azurite).create_container(
        f"{unique_name}-in"
    )
    settings = {
        "INGEST_TABLE_URI": lake.table,
        "INGEST_LEDGER_URI": lake.ledger,
        "INGEST_STORAGE_CONNECTION": azurite,
        "INGEST_LANDING_PATH": f"{unique_name}-in/{{name}}",
        "INGEST_MAINTENANCE_SCHEDULE": "0 */15 * * * *",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    functions.app_config.cache_clear()
    config = functions.app_config()
    try:
        yield container
    finally:
        session = functions._sessions.pop(config, None)
        if session is not None:
            session.close()
        functions.app_config.cache_clear()
        container.delete_container()


@pytest.mark.slow
@pytest.mark.azurite
def test_concurrent_invocations_share_commits_and_each_returns_once_its_rows_are_in(
    lake: Lake, app_landing, tmp_path: Path
):
    blobs = {}
    for i, path in enumerate(lake.files(30)):
        data = Path(path).read_bytes()
        name = f"in/{Path(path).name}"
        app_landing.upload_blob(name, data)
        blobs[name] = (data, set(range(i * ROWS, (i + 1) * ROWS)))
    calls = [("event", name) for name in blobs] + [("blob", name) for name in list(blobs)[:10]]
    random.Random(7).shuffle(calls)

    def invoke(call: tuple[str, str]) -> bool:
        trigger, name = call
        data, ids = blobs[name]
        if trigger == "event":
            url = f"{BLOB_ENDPOINT}/{app_landing.container_name}/{name}"
            event = build_blob_created(url, content_length=len(data))
            function_app.ingest_replay(grid_event(event))
        else:
            function_app.ingest_on_arrival(app_landing.get_blob_client(name))
        return ids <= set(lake.ids())  # read as soon as the invocation returns

    with ThreadPoolExecutor(12) as pool:
        visible = list(pool.map(invoke, calls))
    assert all(visible), [c for c, v in zip(calls, visible, strict=True) if not v]
    rows = lake.ledger_rows()
    assert len(rows) == 30 and {r.status for r in rows} == {SUCCEEDED}
    lake.check(lake.expected_ids(30))
    assert len(lake.txn_commits()) < 30
