"""Recognising a file's rows by their lineage columns, once its transaction id has expired.

Every row carries `_ingest_sha256`, the content it came from (unless lineage
is off). Transaction ids expire after the table's
`delta.setTransactionRetentionDuration`; after that the ledger is the record,
and where the ledger cannot be trusted (a claim taken over long after the
first attempt, a ledger rebuilt from nothing) the lineage column still says
which contents are in the table. Both lookups scan the column: they are for
those rare cases, never for every file.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from ingest_core.delta.target import TXN_RETENTION, interval_seconds
from ingest_core.errors import TxnRetentionError

SHA_COLUMN = "_ingest_sha256"
FILE_COLUMN = "_ingest_file"


def txn_retention_s(snapshot: DeltaTable | None) -> float | None:
    """How long the table keeps transaction ids (None: for good)."""
    if snapshot is None:
        return None
    setting = snapshot.metadata().configuration.get(TXN_RETENTION)
    return None if setting is None else interval_seconds(setting)


def refuse_short_txn_retention(
    uri: str, snapshot: DeltaTable | None, configured: str | None
) -> None:
    """Refuse a table that forgets transaction ids sooner than `configured` (None: never).

    Raises:
        TxnRetentionError: the table's `delta.setTransactionRetentionDuration` is shorter.
    """
    kept = txn_retention_s(snapshot)
    if kept is None or snapshot is None:
        return
    wanted = interval_seconds(configured) if configured else float("inf")
    if kept >= wanted:
        return
    setting = snapshot.metadata().configuration.get(TXN_RETENTION)
    raise TxnRetentionError(
        f"table {uri} sets {TXN_RETENTION} = {setting!r}, shorter than the ingester's "
        f"txn_retention {configured or 'forever'!r}: after a checkpoint the table "
        "would forget transaction ids the ledger may still need, and a file whose ledger row "
        "was lost would be appended twice. Nothing was claimed or written. Set the property "
        f"back (ALTER TABLE ... SET TBLPROPERTIES ('{TXN_RETENTION}' = "
        f"'{configured or 'interval 3650 days'}')), or, "
        "if the shorter window is meant, set INGEST_TXN_RETENTION to it"
    )


def may_have_expired(snapshot: DeltaTable | None, since_epoch_s: float) -> bool:
    """Whether a transaction id committed after `since_epoch_s` may have expired by now."""
    retention = txn_retention_s(snapshot)
    return retention is not None and time.time() - since_epoch_s >= retention


def rows_of(snapshot: DeltaTable, sha256: str) -> int | None:
    """How many rows came from content `sha256` (None: the table has no lineage column)."""
    if SHA_COLUMN not in snapshot.schema().to_arrow().names:
        return None
    dataset = snapshot.to_pyarrow_dataset()
    return int(dataset.count_rows(filter=pc.field(SHA_COLUMN) == sha256))


def contents(snapshot: DeltaTable) -> dict[str, tuple[str, int]]:
    """Every content the table holds rows of: sha256 -> (a path it came from, its rows)."""
    names = snapshot.schema().to_arrow().names
    if SHA_COLUMN not in names or FILE_COLUMN not in names:
        return {}
    found: dict[str, tuple[str, int]] = {}
    for batch in snapshot.to_pyarrow_dataset().to_batches(columns=[SHA_COLUMN, FILE_COLUMN]):
        counts = pa.Table.from_batches([batch]).group_by([SHA_COLUMN, FILE_COLUMN]).aggregate(
            [([], "count_all")]
        )
        for sha, path, rows in zip(
            counts.column(SHA_COLUMN).to_pylist(), counts.column(FILE_COLUMN).to_pylist(),
            counts.column("count_all").to_pylist(), strict=True,
        ):
            if sha is None:
                continue
            known = found.get(sha)
            found[sha] = (known[0] if known else path, (known[1] if known else 0) + rows)
    return found
