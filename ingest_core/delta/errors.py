"""delta-rs errors, told apart: what the rest of the project needs to know of them.

Only this module imports `deltalake.exceptions`; callers ask the questions below
instead of matching delta-rs classes or message texts themselves.
"""

from __future__ import annotations

from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError


def is_commit_conflict(exc: BaseException) -> bool:
    """A concurrent commit won (retry from a fresh snapshot; the rows may be in already)."""
    return isinstance(exc, CommitFailedError)


def is_schema_error(exc: BaseException) -> bool:
    """delta-rs refused the rows' schema: retrying the same file cannot help."""
    return isinstance(exc, SchemaMismatchError)


def is_table_created_meanwhile(exc: BaseException) -> bool:
    """Creating the table failed because a rival created it first."""
    return (
        isinstance(exc, DeltaError)
        and not isinstance(exc, CommitFailedError)
        and "already exists" in str(exc)
    )


def commit_conflict(message: str) -> CommitFailedError:
    """The error a lost commit race raises, for a race this code detects itself."""
    return CommitFailedError(message)
