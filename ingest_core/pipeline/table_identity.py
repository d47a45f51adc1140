"""Which Delta table a ledger describes, and whether that table still keeps our ids.

Checked once per ingestor, before any claim (and, for a local table, before
a rerun skips any file as known: `precheck_local`, without deltalake):

- the table's id (`metaData.id`) against the one the ledger recorded for the
  table key: a table deleted (the ledger holds committed rows, the table is
  gone) or replaced (another id) is a `TableIdentityError` naming the fix,
  `ingest reconcile --apply`; a table seen for the first time has its id
  recorded, and a table our first commit creates is recorded right after it;
- the table's `delta.setTransactionRetentionDuration` against the configured
  `txn_retention`: a shorter one would let a checkpoint drop transaction ids
  the ingester still counts on (a file whose ledger row is lost would then be
  appended twice), so it is refused with `TxnRetentionError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import is_local, local_path
from ingest_core.errors import TableIdentityError
from ingest_core.ledger import SUCCEEDED, BaseLedger

if TYPE_CHECKING:
    from deltalake import DeltaTable

SAMPLE_ROWS = 50
"""Succeeded rows read to tell a ledger that committed to a table from one that never did."""


def fix_hint(uri: str) -> str:
    """What to run once the table is not the ledger's any more."""
    return (
        f"run `ingest reconcile --table {uri} --apply` to ingest the lost files again "
        "(it records the new table), or point --ledger at a fresh ledger to start over"
    )


@dataclass(frozen=True)
class Recorded:
    """What the ledger says of a table, read before the table is looked at.

    In that order, a table another worker creates meanwhile is never taken
    for a deleted one: its id is recorded only after it exists.
    """

    table_id: str | None
    """The Delta table id recorded (None: none yet)."""
    committed: int
    """How many of a sample of `succeeded` rows name a Delta version."""
    newest: int
    """The newest Delta version those rows name (-1: none)."""


def read_recorded(ledger: BaseLedger, table: str) -> Recorded:
    """What the ledger records of `table` (one identity read, one sample of rows)."""
    rows = ledger.records(table=table, status=SUCCEEDED, limit=SAMPLE_ROWS)
    versions = [r.delta_version for r in rows if r.delta_version is not None]
    return Recorded(ledger.table_identity(table), len(versions), max(versions, default=-1))


def verify(
    ledger: BaseLedger, table: str, uri: str, snapshot: DeltaTable | None, recorded: Recorded
) -> bool:
    """Check the table is the one the ledger describes; record its id when first seen.

    `recorded` must be read (`read_recorded`) before `snapshot` was loaded.
    Returns True when the table does not exist yet (its id is recorded once
    created: `record_created`).

    Raises:
        TableIdentityError: the table was deleted or replaced while the ledger lived on.
    """
    from ingest_core.delta.target import table_id

    if snapshot is None:
        if recorded.table_id is not None or recorded.committed:
            raise _gone(uri, recorded.table_id)
        return True
    current = table_id(snapshot)
    if recorded.table_id is None:
        if recorded.newest > snapshot.version():  # the ledger's versions are past this tip
            raise TableIdentityError(
                f"table {uri} was replaced: the ledger records a commit at version "
                f"{recorded.newest}, the table is at version {snapshot.version()}; "
                f"{fix_hint(uri)}"
            )
        if ledger.table_identity(table) is None:  # not recorded meanwhile by its creator
            ledger.record_table_identity(table, current)
    elif recorded.table_id != current:
        raise _replaced(uri, current, recorded.table_id)
    return False


def local_table_absent(uri: str) -> bool:
    """Whether `uri` is a local folder without a Delta log (no table yet, or deleted)."""
    return is_local(uri) and not (local_path(uri) / "_delta_log").is_dir()


def precheck_local(ledger: BaseLedger, table: str, uri: str) -> None:
    """`verify` for a local table from its log's first entry, without deltalake.

    Catches a table deleted, or replaced by one whose first commit names
    another id, before a rerun skips files as known. Decides nothing when the
    table is remote or its first log entry is gone (log clean-up): `verify`
    then runs before the first claim, as for every run.

    Raises:
        TableIdentityError: the table was deleted or replaced while the ledger lived on.
    """
    if not is_local(uri):
        return
    recorded = read_recorded(ledger, table)
    if local_table_absent(uri):
        verify(ledger, table, uri, None, recorded)
        return
    current = _first_metadata_id(local_path(uri) / "_delta_log" / f"{0:020d}.json")
    if recorded.table_id is not None and current is not None and current != recorded.table_id:
        raise _replaced(uri, current, recorded.table_id)


def _first_metadata_id(first_entry: Path) -> str | None:
    """The table id in a log entry's `metaData` action (None: no such entry or action)."""
    try:
        with first_entry.open("rb") as lines:
            for line in lines:
                action = json.loads(line) if line.strip() else {}
                if "metaData" in action:
                    found: str | None = action["metaData"].get("id")
                    return found
    except (OSError, ValueError):
        return None
    return None


def _gone(uri: str, recorded: str | None) -> TableIdentityError:
    return TableIdentityError(
        f"table {uri} is gone, but the ledger records files committed to it"
        f"{f' (Delta table id {recorded})' if recorded else ''}: every one would be "
        f"skipped and the new table would stay without them; {fix_hint(uri)}"
    )


def _replaced(uri: str, current: str, recorded: str) -> TableIdentityError:
    return TableIdentityError(
        f"table {uri} was replaced: its Delta table id is {current}, the ledger describes "
        f"{recorded}; the files the ledger records as ingested are not in it; "
        f"{fix_hint(uri)}"
    )


def record_created(ledger: BaseLedger, table: str, snapshot: DeltaTable | None) -> bool:
    """Record the id of a table our first commit created; True once recorded."""
    if snapshot is None:
        return False
    from ingest_core.delta.target import table_id

    if ledger.table_identity(table) is None:
        ledger.record_table_identity(table, table_id(snapshot))
    return True


def verify_txn_retention(uri: str, snapshot: DeltaTable | None, configured: str | None) -> None:
    """Refuse a table that forgets transaction ids sooner than `configured` (None: never).

    Raises:
        TxnRetentionError: the table's `delta.setTransactionRetentionDuration` is shorter.
    """
    from ingest_core.delta.lineage import refuse_short_txn_retention

    refuse_short_txn_retention(uri, snapshot, configured)
