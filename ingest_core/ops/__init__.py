"""Operator recovery: replay, sweep, retry, quarantine and show, behind `ingest` commands.

One module per command, each with its report; `common` holds the seam they
share (`open_runner`, which gives a `Session`) and the progress callbacks.
Every operation re-drives files through the same exactly-once core: a file
whose content is in the table already is only a skip, so running any of them
twice is harmless.

| operation             | reads                                 | re-drives                        |
| --------------------- | ------------------------------------- | -------------------------------- |
| `replay_sources`      | a listing                             | here, as `ingest run` does       |
| `publish_sources`     | a listing of blobs                    | via Event Grid, one event each   |
| `replay_dead_letters` | Event Grid dead-letter blobs          | here, or via Event Grid          |
| `sweep`               | a listing and the ledger (no hashing) | unseen, changed, stalled files   |
| `retry`               | the ledger                            | failed (+ released) rows         |
| `reconcile`           | the ledger and the table's lineage    | rows the table lost (`--apply`)  |
| `release`, `show`     | the ledger (and the Delta log)        | nothing                          |
| `cleanup`             | a listing and the ledger              | nothing: archives or deletes     |
| `list_poison`         | the blob trigger's poison queue       | nothing (a peek)                 |
| `replay_poison`       | the blob trigger's poison queue       | here; settled messages deleted   |
"""

from ingest_core.ops.cleanup import CleanupReport, cleanup
from ingest_core.ops.common import (
    SHA256,
    Advance,
    Progress,
    list_files,
    no_progress,
    open_runner,
)
from ingest_core.ops.poison import (
    POISON_QUEUE,
    PoisonListReport,
    PoisonReplayReport,
    list_poison,
    poison_depth,
    replay_poison,
)
from ingest_core.ops.quarantine import ReleaseReport, quarantined, release
from ingest_core.ops.reconcile import ReconcileReport, reconcile
from ingest_core.ops.replay import (
    ReplayReport,
    Via,
    publish_sources,
    replay_dead_letters,
    replay_sources,
)
from ingest_core.ops.retry import RetryReport, retry
from ingest_core.ops.show import ShownFile, ShowReport, show
from ingest_core.ops.sweep import SweepReport, sweep

__all__ = [
    "POISON_QUEUE",
    "SHA256",
    "Advance",
    "CleanupReport",
    "PoisonListReport",
    "PoisonReplayReport",
    "Progress",
    "ReconcileReport",
    "ReleaseReport",
    "ReplayReport",
    "RetryReport",
    "ShowReport",
    "ShownFile",
    "SweepReport",
    "Via",
    "cleanup",
    "list_files",
    "list_poison",
    "no_progress",
    "open_runner",
    "poison_depth",
    "publish_sources",
    "quarantined",
    "reconcile",
    "release",
    "replay_dead_letters",
    "replay_poison",
    "replay_sources",
    "retry",
    "show",
    "sweep",
]
