"""Every exception the ingestion core raises, in one place.

Retryable errors leave a file `failed` so a later run (or the platform's retry)
takes it again; non-retryable ones put it in `quarantined` at once.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error raised by ingest_core."""

    retryable: bool = True


class ConfigurationError(IngestError):
    """The configuration, a URI or a command-line value is unusable; fix it and run again."""

    retryable = False


class LedgerUnavailableError(IngestError):
    """The ledger cannot be opened or reached."""


class StorageRefusedError(ConfigurationError):
    """The table's storage refuses every write (read-only, permission denied, no container).

    An environment problem, not the file's: no attempt is counted, the claims
    are given back and the run stops (exit 2) with one line naming the fix.
    """


class LedgerNotFoundError(ConfigurationError):
    """A read-only command was pointed at a ledger that does not exist; nothing was created."""


class LedgerConflictError(IngestError):
    """A conditional ledger write lost: the row exists already or its version moved on."""


class LeaseLostError(IngestError):
    """Another worker took over a file whose lease this worker let expire."""


class InProgressError(IngestError):
    """Another worker holds a live lease on this content; retry later."""


class SourceChangedError(IngestError):
    """The source file changed or vanished while it was being read."""


class SourceGoneError(SourceChangedError):
    """The source file is no longer there (deleted after it was listed or announced)."""


class BadNameError(IngestError):
    """A file name that cannot be recorded (not valid UTF-8): reported, never claimed.

    The ledger, the lineage column and the Delta log hold text; a name whose
    bytes are not UTF-8 fits none of them. The file is reported each run (exit
    1) until it is renamed; the other files go on.
    """

    retryable = False


class CorruptFileError(IngestError):
    """The file cannot be parsed in its format; it is quarantined."""

    retryable = False


class SchemaIncompatibleError(IngestError):
    """The file's columns cannot be reconciled with the table's schema; it is quarantined."""

    retryable = False


class TransformError(IngestError):
    """The user transform raised or returned something that is not Arrow data."""

    retryable = False


class AttemptsExhaustedError(IngestError):
    """The file failed on every allowed attempt; it is quarantined."""

    retryable = False


class TableIdentityError(ConfigurationError):
    """The Delta table is not the one the ledger describes: deleted, or replaced by another.

    The ledger's `succeeded` rows say files are in a table that no longer holds
    them; every file would be skipped into an empty table. Run
    `ingest reconcile --apply` to ingest them again (it records the new table),
    or point --ledger at a fresh ledger.
    """


class TxnRetentionError(ConfigurationError):
    """The table would forget transaction ids sooner than the ingester's `txn_retention`."""
