"""A Delta table's log appended to directly: one put-if-absent per commit, flat with history.

delta-rs lists the whole `_delta_log` folder for every commit it makes (and
again in its post-commit hook), so its commit cost grows with the table's
age. The Delta protocol needs no listing to append: a writer that knows the
latest version `v` creates `v+1.json` if absent; if it exists, someone else
committed first. `DeltaLog` keeps a delta-rs snapshot as its base (schema,
protocol, transaction ids up to the base version) and follows newer commits
by reading `v+1.json`, `v+2.json`, ... until one is missing: one read per new
commit, whatever the log's length.

Only plain appends are written this way, to tables whose protocol this
writer honours (`data_files.writable`): unpartitioned, writer version 2 or
appendOnly, no invariants. A commit that changes the table's metadata or
protocol makes the base reload.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from deltalake import DeltaTable

from ingest_core.delta.store import TableStore
from ingest_core.delta.target import (
    APP_ID_PREFIX,
    METADATA_KEY,
    TableRef,
    app_id,
    interval_seconds,
    run_metadata,
)

LOG_FOLDER = "_delta_log/"
CHECKPOINT_EVERY = 100
"""Versions between the checkpoints this writer makes (delta-rs's default interval)."""
RELOAD_AFTER = 1_000
"""Versions followed from one base before the base is loaded afresh (bounds `landed`)."""
TRUST_TIP_S = 600.0
"""How long a confirmed latest version is trusted before the base is loaded afresh.

Log cleanup deletes commit files older than the table's log retention once a
checkpoint covers them; a writer that had not looked for that long could
probe a deleted version, find it missing and write it again, behind the
checkpoint where no reader looks. Within this window nothing it has not seen
can be old enough to be cleaned (`MIN_LOG_RETENTION_S` is far longer)."""
MIN_LOG_RETENTION_S = 3_600.0
"""Tables whose `delta.logRetentionDuration` is shorter are not appended to directly."""
ENGINE = "ingest-core"


def log_entry(version: int) -> str:
    """The path of a version's commit file, relative to the table's root."""
    return f"{LOG_FOLDER}{version:020d}.json"


@dataclass(frozen=True)
class Committed:
    """What a commit this writer read or wrote says of one content."""

    version: int
    rows: int | None = None
    data_file: str | None = None
    """The data file that carried its rows, where the commit names it."""


@dataclass
class DeltaLog:
    """The log of one table as this process follows it (not thread-safe: callers hold a lock)."""

    ref: TableRef
    store: TableStore
    base: DeltaTable | None = None
    """The delta-rs snapshot everything before `base_version` is read from."""
    version: int = -1
    """The latest version this log has read (or written)."""
    landed: dict[str, Committed] = field(default_factory=dict)
    """sha256 -> its commit, for contents committed after `base_version`."""
    tip_time: float = 0.0
    """When the latest commit read was made (epoch seconds; 0: none read)."""
    tip_files: int = 0
    """How many contents the latest commit read carried (0: none read)."""
    _stale: bool = True
    _tip_seen_at: float = 0.0

    @property
    def base_version(self) -> int:
        """The version the base snapshot was loaded at (-1: no table)."""
        return -1 if self.base is None else self.base.version()

    def refresh(self) -> None:
        """Read every commit made since the last look (reloading the base when it is due)."""
        if (
            self._stale
            or time.monotonic() - self._tip_seen_at > TRUST_TIP_S
            or self.version - self.base_version > RELOAD_AFTER
        ):
            self._reload()
        while True:
            raw = self.store.read(log_entry(self.version + 1))
            if raw is None:
                self._tip_seen_at = time.monotonic()
                return
            self._read(self.version + 1, raw)
            if self._stale:
                self._reload()

    def appendable(self) -> bool:
        """Whether this writer may append to the table directly (refresh first).

        The table must exist, keep its log longer than `MIN_LOG_RETENTION_S`
        and have a protocol the appends honour (checked by the caller against
        the rows' schema: `data_files.writable`).
        """
        if self.base is None:
            return False
        setting = self.base.metadata().configuration.get("delta.logRetentionDuration")
        return setting is None or interval_seconds(setting) >= MIN_LOG_RETENTION_S

    def find(self, sha256: str, *, since: int = -1) -> Committed | None:
        """The commit that carried `sha256`, if any (refresh first).

        `since`: the version at which its absence was checked before; commits
        up to it need not be searched (the base snapshot's ids are then skipped).
        """
        found = self.landed.get(sha256)
        if found is not None or self.base is None or since >= self.base_version:
            return found
        if self.base.transaction_version(app_id(sha256)) is None:
            return None
        return Committed(version=self.base_version)  # at or before the base: version unknown

    def append(
        self, actions: list[dict[str, Any]], files: list[dict[str, Any]],
        run_id: str | None = None,
    ) -> int | None:
        """Commit `actions` as the next version; None when another writer took that version.

        `files` (sha256, path, rows, file, run_id) go into the commit's metadata, as
        `DeltaTarget.append` records them, with `run_id` (the committing run) as
        `ingest.run_id` and every file's run in `ingest.run_ids`.
        """
        version = self.version + 1
        now = int(time.time() * 1000)
        info = {
            "commitInfo": {
                "timestamp": now,
                "operation": "WRITE",
                "operationParameters": {"mode": "Append"},
                "engineInfo": ENGINE,
                "isBlindAppend": True,
                METADATA_KEY: json.dumps(files),
                **run_metadata(run_id, (f.get("run_id") for f in files)),
                "operationMetrics": {
                    "num_added_files": sum(1 for a in actions if "add" in a),
                    "num_added_rows": sum(f.get("rows") or 0 for f in files),
                },
            }
        }
        body = "\n".join(json.dumps(a) for a in [info, *actions]) + "\n"
        if not self.store.create(log_entry(version), body.encode()):
            return None
        self._read(version, body.encode())
        self._tip_seen_at = time.monotonic()
        if version % CHECKPOINT_EVERY == 0:
            self._checkpoint_later(version)
        return version

    def _read(self, version: int, raw: bytes) -> None:
        files: dict[str, dict[str, Any]] = {}
        shas: list[str] = []
        for line in raw.decode().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "txn" in action and action["txn"]["appId"].startswith(APP_ID_PREFIX):
                shas.append(action["txn"]["appId"][len(APP_ID_PREFIX):])
            elif "commitInfo" in action:
                info = action["commitInfo"]
                for entry in json.loads(info.get(METADATA_KEY) or "[]"):
                    files[entry.get("sha256")] = entry
                if isinstance(info.get("timestamp"), int):
                    self.tip_time = info["timestamp"] / 1000
            elif "metaData" in action or "protocol" in action:
                self._stale = True
        self.tip_files = len(shas)
        for sha in shas:
            entry = files.get(sha, {})
            self.landed[sha] = Committed(version, entry.get("rows"), entry.get("file"))
        self.version = version

    def _reload(self) -> None:
        self.base = self.ref.load()
        self.version = max(self.version, self.base_version)
        self.landed = {k: c for k, c in self.landed.items() if c.version > self.base_version}
        self._stale = False

    def _checkpoint_later(self, version: int) -> None:
        """Write a checkpoint at `version` on a thread: the committer does not wait for it."""

        def checkpoint() -> None:
            try:
                table = self.ref.load(version)
                if table is not None:
                    table.create_checkpoint()
            except Exception:  # a later checkpoint covers this one; the log is whole regardless
                return

        threading.Thread(target=checkpoint, name="delta-checkpoint", daemon=True).start()

