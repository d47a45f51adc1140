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


_REFUSALS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("Read-only file system", "os error 30"), "its storage is read-only",
     "make the table folder writable (or remount it read-write), or pass another --table"),
    (("Permission denied", "os error 13", "Access is denied"), "permission denied",
     "give this user write access to the table folder, or pass another --table"),
    (("ContainerNotFound", "The specified container does not exist"),
     "its container does not exist", "create the container, or fix the table URI"),
    (("AuthorizationPermissionMismatch", "AuthorizationFailure", "403 Forbidden",
      "This request is not authorized"), "the storage account refused access (403)",
     "grant this identity 'Storage Blob Data Contributor' on the container, or check the "
     "account key or SAS"),
)


def storage_refusal(exc: BaseException) -> tuple[str, str] | None:
    """(what, fix) when a write failed because the table's storage refuses writes.

    Read-only file system, permission denied, a missing container, 403 from
    Azure: retrying cannot help until someone changes the environment, and the
    file is not at fault. None for any other error.
    """
    if isinstance(exc, PermissionError):
        return _REFUSALS[1][1], _REFUSALS[1][2]
    text = str(exc)
    for needles, what, fix in _REFUSALS:
        if any(needle in text for needle in needles):
            return what, fix
    return None


def commit_conflict(message: str) -> CommitFailedError:
    """The error a lost commit race raises, for a race this code detects itself."""
    return CommitFailedError(message)
