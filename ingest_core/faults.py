"""Crash points for fault-injection tests.

Set `INGEST_FAULT_POINT` to one of `POINTS` and the worker SIGKILLs itself
when it reaches that point. The variable is read once, at import; unset (the
default), `crash_point` is a comparison against None.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_hash", "after_claim", "during_write", "after_commit", "during_complete")

_ARMED = os.environ.get("INGEST_FAULT_POINT") or None


def crash_point(name: str) -> None:
    """Die here, without cleanup, if this is the armed crash point."""
    if _ARMED is not None and _ARMED == name:
        os.kill(os.getpid(), signal.SIGKILL)
