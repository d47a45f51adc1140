"""Group commit: concurrent invocations' files share Delta commits, each file committed once.

Every invocation does its own parallel work (download, hash, claim, read) and
stages its file: it uploads the data file into the table folder, then writes
an intent record under `_ingest_staging/`. It then commits: whoever holds
this process's lock for the table reads the log forward, lists the intents
staged so far by every process and commits all of them not yet in the
table, in one put-if-absent of the next version (`DeltaLog.append`). An
invocation whose file another commit carried finds its transaction id in the
log and is done. A lone event commits at once: nobody waits for company.

    invocation A  stage ─ lock ─ read log ─ list intents {A,B,C} ─ commit v7 ─ unlock
    invocation B  stage ────────── wait ─────────────────────────────────── lock ─ read log: B in v7
    process 2, C  stage ─ lock ─ read log ─ list {A,B,C} ─ commit v7: taken ─ read log: C in v7

Exactly once: a content is committed only in a commit whose writer read the
whole log up to the version it creates and found no transaction id of that
content (`DeltaLog.find`); two writers racing for one version cannot both
create it. Several intents of one content (a takeover re-staged it) become
one add. Once written, an intent is never withdrawn: any committer may carry
it, so a staged data file is only deleted once the content is in the table
by another file (`_ingest_staging/orphans/`, cleaned by `clean`).

An intent's record belongs to the thread that staged it: the thread writes
its next intent over it once its content is in the table, and deletes it
after `SLOT_IDLE_S` without a new file (`close` deletes at once). Records a
dead process left are deleted by `clean` once their content is in the table.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from ingest_core.delta.data_files import delta_schema, file_stats
from ingest_core.delta.log import Committed, DeltaLog
from ingest_core.delta.store import TableStore, store_for
from ingest_core.delta.target import HISTORY_SEARCH_LIMIT, METADATA_KEY, TableRef, app_id
from ingest_core.faults import crash_point

STAGING = "_ingest_staging/"
ORPHANS = STAGING + "orphans/"
LOST = "lost"
"""What an attempt returns when another writer took the version it tried."""
WAIT = "wait"
"""What an attempt returns when it paced itself (others' files are on their way)."""
COMMIT_ATTEMPTS = 20
"""Lost races for the next version before a commit gives up (the platform retries it)."""
LINGER_S = 0.25
"""How long a commit waits for this process's other invocations still preparing their files.

Only while some are (PostgreSQL's commit_delay with commit_siblings): a lone
event commits at once."""
COMMIT_GAP_S = 0.3
"""Under a surge, the least time between two commits of a table.

Applied only when other writers' files are staged too, or the latest commit
carried several files (a surge across processes): the commit then waits
until this long after the latest one, so it carries what arrived meanwhile.
A lone event finds no one else's file staged and commits at once; the last
file of a surge may wait its turn once."""
PACED_WAITS = 3
"""The most times one commit waits for its turn (no commit waits for ever)."""
SLOT_IDLE_S = 5.0
"""How long a thread's intent record outlives its last commit before its owner deletes it.

Each invocation thread re-uses one record under `_ingest_staging/` for its
next file while it keeps busy: a surge deletes no intents (a blob delete
costs a listing's worth on some stores, Azurite's grows with every blob)."""
COMMIT_JITTER_S = 0.1
"""The most a paced commit waits on top of `COMMIT_GAP_S`, at random.

Processes paced by the same commit would otherwise wake together and race
for one version: one wins, the others lose a listing and a write each. With
the jitter the first awake usually commits alone and the others find their
files carried when they read the log."""


class StagedSchemaError(Exception):
    """A staged file's columns no longer fit the table (its schema changed meanwhile)."""


@dataclass(frozen=True)
class Intent:
    """A staged file: its data file is in the table folder, waiting for a commit."""

    name: str
    """Its record's file name under `_ingest_staging/`."""
    sha256: str
    path: str
    """The source file's URI (lineage, the commit's metadata)."""
    rows: int
    add: dict[str, Any]
    """The Delta add action of its data file."""
    schema: str
    """The data file's columns as a Delta schema string."""
    checked_at: int
    """The log version up to which its owner found the content absent."""
    staged_at: float
    run_id: str | None = None
    """The run that staged it (an older writer's record has none)."""

    def to_json(self) -> bytes:
        """The record's bytes."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Intent:
        """A record read back (fields a newer writer added are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(raw).items() if k in known})


@dataclass
class _Slot:
    """One thread's intent record: re-used for its next file once `free` (its content landed)."""

    name: str
    free: bool = False
    free_since: float = 0.0


class GroupCommit:
    """Stages files of one table and commits whatever is staged, many files per commit.

    One per table per process, shared by every invocation's thread.
    """

    def __init__(self, ref: TableRef, store: TableStore | None = None) -> None:
        self.ref = ref
        self.store = store or store_for(ref.uri, ref.storage)
        self.log = DeltaLog(ref, self.store)
        self._lock = threading.Lock()
        self._preparing = 0
        self._prepared = threading.Condition()
        self._cleaner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="staging-cleaner")
        self._orphan_writes: list[Future[None]] = []
        """Orphan records submitted to the cleaner and not yet seen written (`clean` waits)."""
        self._slots: dict[str, _Slot] = {}
        """This process's intent records, by name, until deleted."""
        self._current: dict[int, str] = {}
        """Each thread's latest record, by thread id: the one it re-uses once free."""
        self._slots_lock = threading.Lock()
        self._janitor: threading.Thread | None = None
        self._closing = threading.Event()
        self._orphaned: set[str] = set()
        """The staged data files this process has written an orphan record for."""

    def find(self, sha256: str) -> Committed | None:
        """The commit that carried `sha256`, reading the log up to now first."""
        with self._lock:
            self.log.refresh()
            return self.log.find(sha256)

    def table_schema(self) -> pa.Schema | None:
        """The table's columns as Arrow, as last read (None: no table yet).

        Not refreshed: a commit checks each staged file against the columns of
        the version it creates.
        """
        if self.log.base is None:
            with self._lock:
                self.log.refresh()
        base = self.log.base
        return None if base is None else pa.schema(base.schema().to_arrow())

    @property
    def snapshot_version(self) -> int:
        """The latest version the log has read."""
        return self.log.version

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Say that this thread is preparing a file to stage: a commit meanwhile waits a little."""
        with self._prepared:
            self._preparing += 1
        try:
            yield
        finally:
            with self._prepared:
                self._preparing -= 1
                self._prepared.notify_all()

    def _linger(self) -> None:
        """Wait (at most `LINGER_S`) until no invocation of this process is still preparing."""
        deadline = time.monotonic() + LINGER_S
        with self._prepared:
            while self._preparing and (left := deadline - time.monotonic()) > 0:
                self._prepared.wait(left)

    def stage(
        self, sha256: str, path: str, local_file: Path, checked_at: int,
        run_id: str | None = None,
    ) -> Intent:
        """Upload a data file written locally and record it as staged; returns its intent."""
        data_file = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        metadata = pq.read_metadata(local_file)
        self.store.upload(data_file, local_file)
        intent = Intent(
            name=self._slot_for_stage(),
            sha256=sha256,
            path=path,
            rows=metadata.num_rows,
            add={
                "path": data_file,
                "partitionValues": {},
                "size": local_file.stat().st_size,
                "modificationTime": int(time.time() * 1000),
                "dataChange": True,
                "stats": file_stats(metadata),
            },
            schema=_delta_schema_string(metadata.schema.to_arrow_schema()),
            checked_at=checked_at,
            staged_at=time.time(),
            run_id=run_id,
        )
        self.store.write(STAGING + intent.name, intent.to_json())
        crash_point("after_stage")
        return intent

    def commit(self, intent: Intent) -> Committed:
        """Commit everything staged (this intent included), or find the commit that carried it.

        Raises StagedSchemaError when the table's columns changed so that the
        file no longer fits, and TimeoutError after `COMMIT_ATTEMPTS` lost races.
        Once it returns, the thread's intent record is free for its next file;
        after a raise the record stays as it is (any committer may carry it).
        """
        committed = self._commit(intent)
        if committed.data_file != intent.add["path"]:
            # in the table by another data file (or one this writer cannot name):
            # this one is an orphan, recorded before the record that names it is re-used
            self._record_orphans([intent])
        self._free_slot(intent.name)
        return committed

    def _commit(self, intent: Intent) -> Committed:
        with self._lock:
            carried = self.log.landed.get(intent.sha256)  # by this process's last commit
            if carried is not None:
                return carried
            waits = 0
            for _ in range(COMMIT_ATTEMPTS):
                self.log.refresh()
                found = self.log.find(intent.sha256, since=intent.checked_at)
                if found is not None:
                    return found
                self._linger()
                pace = waits < PACED_WAITS
                committed = (
                    WAIT if pace and self._in_surge()
                    else self._commit_staged(must=intent, pace=pace)
                )
                if isinstance(committed, Committed):
                    return committed
                if committed == WAIT:
                    waits += 1
                    turn = self.log.tip_time + COMMIT_GAP_S - time.time()
                    # capped: a commit stamped by a host whose clock runs ahead is no reason
                    # to wait longer than the gap
                    time.sleep(
                        min(COMMIT_GAP_S, max(0.0, turn)) + random.uniform(0.0, COMMIT_JITTER_S)
                    )
        raise TimeoutError(
            f"{intent.path}: lost {COMMIT_ATTEMPTS} races for the next Delta version; retry"
        )

    def _in_surge(self) -> bool:
        """Whether the latest commit carried several files and is under `COMMIT_GAP_S` old.

        Then others' files are surely on their way: the commit is paced
        without listing the staged files first to find out.
        """
        return self.log.tip_files > 1 and self._tip_is_recent()

    def _tip_is_recent(self) -> bool:
        """Whether the latest commit read is under `COMMIT_GAP_S` old (pacing applies)."""
        return time.time() - self.log.tip_time < COMMIT_GAP_S

    def commit_staged(self, run_id: str | None = None) -> int | None:
        """Commit every file staged by anyone and not yet in the table (maintenance).

        `run_id`: the maintenance run, named as the commit's `ingest.run_id`.
        """
        with self._lock:
            for _ in range(COMMIT_ATTEMPTS):
                self.log.refresh()
                committed = self._commit_staged(must=None, run_id=run_id)
                if committed != LOST:
                    return committed.version if isinstance(committed, Committed) else None
        return None

    def close(self) -> None:
        """Delete this process's free intent records; let the background writes finish."""
        self._closing.set()
        if self._janitor is not None:
            self._janitor.join()
        try:
            self._delete_idle_slots(idle_s=0.0)
        except Exception:  # landed intents: `clean` deletes what is left
            pass
        self._cleaner.shutdown(wait=True)

    def clean(self, older_than_s: float = 3600.0, run_id: str | None = None) -> dict[str, int]:
        """Maintenance of the staging area: commit what was left staged, delete orphaned data files.

        Intents older than `older_than_s` are committed (their owners died after
        staging), and their records deleted once their content is in the table (a
        live thread re-uses or deletes its own within `SLOT_IDLE_S`); an orphan
        record's data file is deleted when the latest version
        does not reference it and no commit in the recent history carried it (a
        committer that found the content in its base snapshot records its own
        committed file as an orphan; compaction may since have replaced it, but
        older versions still read it). Returns counts: `committed`, `orphans_deleted`.
        """
        counts = {"committed": 0, "orphans_deleted": 0}
        staged = self._staged()
        if any(time.time() - i.staged_at > older_than_s for v in staged.values() for i in v):
            before = self.log.version
            version = self.commit_staged(run_id)
            if version is not None:
                counts["committed"] = sum(
                    1 for c in self.log.landed.values() if before < c.version <= version
                )
        with self._lock:
            self.log.refresh()
            left = [
                i for intents in staged.values() for i in intents
                if time.time() - i.staged_at > older_than_s
                and self.log.find(i.sha256, since=i.checked_at) is not None
            ]
        self._record_orphans_later(left)
        self._wait_orphan_writes()  # the orphan records first, then the intents go
        if left:
            self.store.delete_all([STAGING + i.name for i in left])
        orphans = self.store.names(ORPHANS)
        if not orphans:
            return counts
        table = self.ref.load()
        referenced = set(table.file_uris()) if table is not None else set()
        referenced_names = {uri.rsplit("/", 1)[-1] for uri in referenced}
        committed: set[str] | None = None
        for record in orphans:
            raw = self.store.read(record)
            if raw is None:
                continue
            intent = Intent.from_json(raw)
            if time.time() - intent.staged_at < older_than_s:
                continue
            name = intent.add["path"].rsplit("/", 1)[-1]
            if name not in referenced_names:
                if committed is None:
                    committed = _committed_files(table)
                if name not in committed:
                    self.store.delete(intent.add["path"])
                    counts["orphans_deleted"] += 1
            self.store.delete(record)
        return counts

    # -- one attempt -------------------------------------------------------------------

    def _commit_staged(
        self, must: Intent | None, pace: bool = True, run_id: str | None = None
    ) -> Committed | str | None:
        """One attempt at the next version: its commit, `LOST` (another writer won), `WAIT`
        (paced: others' files are on their way, see `COMMIT_GAP_S`), or None (no work).

        The commit names as its run `must`'s (the committing invocation's), else `run_id`.
        """
        staged = self._staged()
        if must is not None:
            # intents already in the table stay listed until their threads re-use them
            others = any(sha != must.sha256 and sha not in self.log.landed for sha in staged)
            if pace and others and self._tip_is_recent():
                return WAIT
            mine = staged.setdefault(must.sha256, [])
            mine[:] = [must, *(i for i in mine if i.name != must.name)]
        chosen: list[Intent] = []
        landed: list[Intent] = []
        spare: list[Intent] = []
        fields = self._table_fields()
        for sha, intents in staged.items():
            if self.log.find(sha, since=min(i.checked_at for i in intents)) is not None:
                landed.extend(intents)
                continue
            fitting = [i for i in intents if _fits(i.schema, fields)]
            if not fitting:
                if must is not None and sha == must.sha256:
                    raise StagedSchemaError(
                        f"{must.path}: the table's columns changed while it was staged; "
                        "it is read again on the next attempt"
                    )
                continue
            chosen.append(fitting[0])
            spare.extend(i for i in intents if i is not fitting[0])
        self._record_orphans_later(landed)
        if not chosen:
            return None
        crash_point("during_group_commit")
        now = int(time.time() * 1000)
        actions: list[dict[str, Any]] = [{"add": i.add} for i in chosen]
        actions += [
            {"txn": {"appId": app_id(i.sha256), "version": 1, "lastUpdated": now}} for i in chosen
        ]
        files = [
            {"sha256": i.sha256, "path": i.path, "rows": i.rows, "file": i.add["path"],
             "run_id": i.run_id}
            for i in chosen
        ]
        version = self.log.append(actions, files, must.run_id if must is not None else run_id)
        if version is None:
            return LOST
        crash_point("after_group_commit")
        self._record_orphans_later(chosen + spare)
        if must is None:
            return Committed(version)
        return self.log.landed.get(must.sha256)

    def _staged(self) -> dict[str, list[Intent]]:
        """Every intent staged now, by content."""
        staged: dict[str, list[Intent]] = {}
        for raw in self.store.records(STAGING).values():
            intent = Intent.from_json(raw)
            staged.setdefault(intent.sha256, []).append(intent)
        return staged

    def _table_fields(self) -> dict[str, str] | None:
        base = self.log.base
        if base is None:
            return None
        fields = json.loads(base.schema().to_json())["fields"]
        return {f["name"]: json.dumps(f["type"]) for f in fields}

    def _record_orphans_later(self, done: list[Intent]) -> None:
        """Record, in the background, each landed intent whose data file the table does not
        hold (another file carried its content) under `orphans/`, so `clean` can delete
        that data file once it is sure no commit references it. The intent records
        themselves stay: their owners re-use or delete them.
        """
        if not done:
            return
        committed_files = {
            c.data_file for c in (self.log.landed.get(i.sha256) for i in done) if c is not None
        }
        orphans = [i for i in done if i.add["path"] not in committed_files]
        if not orphans:
            return
        self._orphan_writes = [f for f in self._orphan_writes if not f.done()]
        self._orphan_writes.append(self._cleaner.submit(self._record_orphans, orphans))

    def _record_orphans(self, intents: list[Intent]) -> None:
        """Write an orphan record for each intent whose data file the table does not hold
        (once per process: an intent record stays listed until its owner re-uses it)."""
        for intent in intents:
            data_file = intent.add["path"]
            if data_file in self._orphaned:
                continue
            stem = data_file.rsplit("/", 1)[-1].removesuffix(".parquet")
            self.store.write(ORPHANS + f"{intent.sha256}-{stem}.json", intent.to_json())
            with self._slots_lock:  # cleaner threads and invocations both record
                if len(self._orphaned) > 10_000:
                    self._orphaned.clear()
                self._orphaned.add(data_file)

    # -- each thread's intent record ---------------------------------------------------

    def _slot_for_stage(self) -> str:
        """The name of this thread's intent record: its own if free, else a new one."""
        with self._slots_lock:
            slot = self._slots.get(self._current.get(threading.get_ident(), ""))
            if slot is None or not slot.free:
                slot = _Slot(f"{uuid.uuid4().hex}.json")
                self._slots[slot.name] = slot
                self._current[threading.get_ident()] = slot.name
            slot.free = False
            if self._janitor is None and not self._closing.is_set():
                self._janitor = threading.Thread(
                    target=self._janitor_loop, name="staging-janitor", daemon=True
                )
                self._janitor.start()
            return slot.name

    def _free_slot(self, name: str) -> None:
        """The intent in record `name` has landed: its thread may write its next one there."""
        with self._slots_lock:
            slot = self._slots.get(name)
            if slot is not None:
                slot.free = True
                slot.free_since = time.monotonic()

    def _janitor_loop(self) -> None:
        while not self._closing.wait(SLOT_IDLE_S):
            try:
                self._delete_idle_slots(idle_s=SLOT_IDLE_S)
            except Exception:  # the next round, `close` or `clean` deletes them
                continue

    def _delete_idle_slots(self, idle_s: float) -> None:
        """Delete the records free for `idle_s` (their threads write a new one next time)."""
        now = time.monotonic()
        with self._slots_lock:
            names = [n for n, s in self._slots.items() if s.free and now - s.free_since >= idle_s]
            for name in names:
                del self._slots[name]
            self._current = {t: n for t, n in self._current.items() if n in self._slots}
        if names:
            self.store.delete_all([STAGING + n for n in names])

    def _wait_orphan_writes(self) -> None:
        """Wait until the orphan records submitted so far are written."""
        with self._lock:
            pending = list(self._orphan_writes)
        for future in pending:
            future.result()


def _committed_files(table: DeltaTable | None) -> set[str]:
    """The names of the data files the ingest commits in the table's recent history carried."""
    if table is None:
        return set()
    names = set()
    for commit in table.history(HISTORY_SEARCH_LIMIT):
        for entry in json.loads(str(commit.get(METADATA_KEY) or "[]")):
            if entry.get("file"):
                names.add(str(entry["file"]).rsplit("/", 1)[-1])
    return names


def _delta_schema_string(schema: pa.Schema) -> str:
    from deltalake import Schema

    return str(Schema.from_arrow(delta_schema(schema)).to_json())


def _fits(schema: str, fields: dict[str, str] | None) -> bool:
    """Whether a data file of Delta schema `schema` can be appended to a table of `fields`."""
    if fields is None:
        return False
    return all(
        fields.get(f["name"]) == json.dumps(f["type"]) for f in json.loads(schema)["fields"]
    )
