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
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_core.config import is_local, local_path
from ingest_core.errors import TableIdentityError
from ingest_core.ledger import SUCCEEDED, BaseLedger

if TYPE_CHECKING:
    from deltalake import DeltaTable

SAMPLE_ROWS = 50
"""Succeeded rows read to tell a ledger that committed to a table from one that never did."""


def committed_rows(ledger: BaseLedger, table: str) -> int:
    """How many of a sample of `table`'s succeeded rows name a Delta version (0: none)."""
    rows = ledger.records(table=table, status=SUCCEEDED, limit=SAMPLE_ROWS)
    return sum(1 for r in rows if r.delta_version is not None)


def fix_hint(uri: str) -> str:
    """What to run once the table is not the ledger's any more."""
    return (
        f"run `ingest reconcile --table {uri} --apply` to ingest the lost files again "
        "(it records the new table), or point --ledger at a fresh ledger to start over"
    )


def verify(ledger: BaseLedger, table: str, uri: str, snapshot: DeltaTable | None) -> bool:
    """Check the table is the one the ledger describes; record its id when first seen.

    Returns True when the table does not exist yet (its id is recorded once
    created: `record_created`).

    Raises:
        TableIdentityError: the table was deleted or replaced while the ledger lived on.
    """
    from ingest_core.delta.target import table_id

    recorded = ledger.table_identity(table)
    if snapshot is None:
        if recorded is not None or committed_rows(ledger, table):
            raise _gone(uri, recorded)
        return True
    current = table_id(snapshot)
    if recorded is None:
        newest = max(
            (r.delta_version or -1 for r in ledger.records(
                table=table, status=SUCCEEDED, limit=SAMPLE_ROWS)),
            default=-1,
        )
        if newest > snapshot.version():  # the ledger's versions are past this table's tip
            raise TableIdentityError(
                f"table {uri} was replaced: the ledger records a commit at version {newest}, "
                f"the table is at version {snapshot.version()}; {fix_hint(uri)}"
            )
        ledger.record_table_identity(table, current)
    elif recorded != current:
        raise _replaced(uri, current, recorded)
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
    if local_table_absent(uri):
        verify(ledger, table, uri, None)
        return
    recorded = ledger.table_identity(table)
    current = _first_metadata_id(local_path(uri) / "_delta_log" / f"{0:020d}.json")
    if recorded is not None and current is not None and current != recorded:
        raise _replaced(uri, current, recorded)


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
