"""Keep the leases of claimed files alive while they are parsed and written."""

from __future__ import annotations

import threading

from ingest_core.errors import LeaseLostError
from ingest_core.ledger.base import BaseLedger, FileRecord


class LeaseKeeper:
    """Renews every held row in a background thread, every third of the lease.

    Rows leave the keeper with `release` before the worker completes or fails
    them, so a renewal never races the final write. A row whose renewal lost
    is remembered; `renew_now` tells the worker before it commits.
    """

    def __init__(self, ledger: BaseLedger, lease_seconds: float) -> None:
        self._ledger = ledger
        self._lease_seconds = lease_seconds
        self._held: dict[str, FileRecord] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, record: FileRecord) -> None:
        """Start renewing `record`."""
        with self._lock:
            self._held[record.sha256] = record
            self._lost.discard(record.sha256)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def release(self, sha256: str) -> FileRecord:
        """Stop renewing and return the row as last written (its version is current)."""
        with self._lock:
            return self._held.pop(sha256)

    def release_all(self) -> list[FileRecord]:
        """Stop renewing every held row; return them as last written (an interrupted run)."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
            return held

    def renew_now(self, sha256s: list[str]) -> set[str]:
        """Renew these rows at once; return those whose lease was lost (dropped)."""
        with self._ledger.batch(), self._lock:
            self._renew(sha256s)
            lost = {s for s in sha256s if s in self._lost}
            for sha in lost:
                self._held.pop(sha, None)
            return lost

    def _renew(self, sha256s: list[str]) -> None:
        """Renew each held row. The caller holds the ledger's `batch` (the writes go as one
        group), then `_lock`: in that order, as a claim group holds its batch when it
        calls `hold`. A renewal that took `_lock` first would wait for the group's
        SQLite write lock while the group waits for `_lock`, both stalled until SQLite's
        busy timeout, and every other process's ledger writes with them."""
        for sha in sha256s:
            record = self._held.get(sha)
            if record is None or sha in self._lost:
                continue
            try:
                self._held[sha] = self._ledger.renew(record, self._lease_seconds)
            except LeaseLostError:
                self._lost.add(sha)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_seconds / 3):
            try:
                with self._ledger.batch(), self._lock:
                    self._renew(list(self._held))
            except Exception:
                continue

    def close(self) -> None:
        """Stop the renewal thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
