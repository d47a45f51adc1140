"""Crash points for fault-injection tests.

Set `INGEST_FAULT_POINT` to one of `POINTS` and the worker SIGKILLs itself
when it reaches that point; `POINT:stop` makes it SIGSTOP itself instead (a
worker frozen, every thread, until it gets SIGCONT: a stall past its lease).
The variable is read once, at import; unset (the default), `crash_point` is a
comparison against None.

`during_write` fires once a file's data files are written, before their
commit. For a stream written by `data_files` that is right before the
commit; for one delta-rs writes, at the end of the stream, before the stream
ends (delta-rs commits only after its end). delta-rs writes data
files on its own threads, a batch or two behind the stream, so the kill waits
`WRITE_SETTLE_S` for it to catch up: it then finds data files written that no
commit references, as a crash in the middle of a write leaves them.

The event path's group commit (`delta.group_commit`) adds three points:
`after_stage` fires once a file's data file and intent are under the table
folder, before any commit; `during_group_commit` once a committer has chosen
the staged files of its group (other invocations' included), before it writes
the next log version; `after_group_commit` once that version is written,
before the intents are retired and the ledger rows completed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

POINTS = (
    "after_hash",
    "after_claim",
    "during_write",
    "after_commit",
    "during_complete",
    "after_stage",
    "during_group_commit",
    "after_group_commit",
)
WRITE_SETTLE_S = 0.3

_POINT, _, _ACTION = (os.environ.get("INGEST_FAULT_POINT") or "").partition(":")
_ARMED = _POINT or None
_SIGNAL = signal.SIGSTOP if _ACTION == "stop" else signal.SIGKILL


def crash_point(name: str) -> None:
    """Die (or freeze, once) here, without cleanup, if this is the armed crash point."""
    global _ARMED
    if _ARMED is not None and _ARMED == name:
        if name == "during_write":
            time.sleep(WRITE_SETTLE_S)
        if _SIGNAL == signal.SIGSTOP:
            _ARMED = None  # one stall: once thawed, the worker runs on
        os.kill(os.getpid(), _SIGNAL)


def crash_at_end(data: pa.Table, name: str) -> pa.Table | pa.RecordBatchReader:
    """`data` itself, unless `name` is armed: then a stream of its batches that dies at its end.

    The batches are made small so delta-rs has written most of them (one data
    file per target file size) when the stream reaches its end.
    """
    if _ARMED is None or _ARMED != name:
        return data
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        yield from data.to_batches(max_chunksize=1024)
        crash_point(name)

    return pa.RecordBatchReader.from_batches(data.schema, batches())
