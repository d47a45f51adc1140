"""Run ids: one per run (a command, a Functions invocation, a maintenance tick).

A run id lands on the ledger rows the run acts on (`FileRecord.run_id`), in
the Delta commits it makes (`ingest.run_id` in the commit's metadata) and in
its results (`IngestResult.run_id`, `RunStats.run_id`).
"""

from __future__ import annotations

import time
import uuid


def new_run_id() -> str:
    """A run id: UTC start time and a random suffix, sortable and unique per run."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
