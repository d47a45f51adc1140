"""`ingest cleanup`: archive or delete landed files the table already holds.

A landing zone otherwise grows without bound, and every sweep lists all of
it. A file is touched only when the ledger holds its content as `succeeded`
and its bytes are still the ones ingested: the row written for its path
records the version the listing shows (a blob's ETag; a local file's size,
modification time and inode, `sources.identity.same_version`). A file seen
only as a copy of another path's content is hashed first. Anything else (not
ingested yet, failed, changed since, or ingested too recently for
`older_than`) is kept and reported with the reason.

Archiving keeps the path below SOURCE: `landing/2024/a.csv` archived from
`landing` to `archive` becomes `archive/2024/a.csv`. A blob is copied with its
ETag pinned, then deleted only if that ETag is still current; a local file is
renamed (or copied and removed across file systems) after its identity is
checked once more. Cleanup never writes the ledger: an archived file's
content stays `succeeded`, so ingesting the archive again is a skip, and a
rerun or sweep of the source finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ingest_core.config import IngestConfig, is_local, local_path, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import SUCCEEDED, BaseLedger, FileRecord, open_ledger
from ingest_core.ops.common import list_files
from ingest_core.sources import SourceFile
from ingest_core.sources.identity import (
    bare_etag,
    identity_matches,
    local_identity,
    path_key,
    same_version,
)

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

Action = Literal["archive", "delete"]
CHANGED = "changed since it was ingested: its new bytes are not in the table yet"


@dataclass
class CleanupReport:
    """What `cleanup` did, or with `dry_run` would do, to each listed file."""

    action: Action
    dry_run: bool = False
    files: list[dict[str, str]] = field(default_factory=list)
    """One entry per listed file: `path`, `outcome` (archived, deleted, kept), and
    `to` (where it was archived) or `reason` (why it was kept)."""

    def count(self, outcome: str) -> int:
        """How many files had this outcome."""
        return sum(1 for f in self.files if f["outcome"] == outcome)

    @property
    def ok(self) -> bool:
        """Always True: a kept file is a decision, not a failure (its reason says which)."""
        return True

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: counts `archived`, `deleted`, `kept`, and `files`."""
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "archived": self.count("archived"),
            "deleted": self.count("deleted"),
            "kept": self.count("kept"),
            "files": [{k: redact(v) for k, v in f.items()} for f in self.files],
        }


class _Kept(Exception):
    """A file left where it is, with the reason."""


class _Ledgers:
    """Each file's table and the rows its ledger holds for it, read once per table."""

    def __init__(self, config: IngestConfig) -> None:
        self._config = config
        self._routes = None
        if not config.table_uri:
            if not config.routes:
                raise ConfigurationError(
                    "cleanup needs the table the files went to: pass --table URI or "
                    "--routes FILE (or set INGEST_TABLE_URI or INGEST_ROUTES)"
                )
            from ingest_core.routing import load_routes

            self._routes = load_routes(config.routes)
        self._ledgers: dict[str, BaseLedger] = {}
        self._rows: dict[str, tuple[dict[str, list[FileRecord]], set[str]]] = {}

    def table_of(self, file: SourceFile) -> str:
        """The table URI the file was ingested into."""
        if self._routes is None:
            return self._config.table_uri
        from ingest_core.routing import routing_path

        found = self._routes.route_for(routing_path(file))
        if found is None:
            raise _Kept(f"no route matches {routing_path(file)!r}: it was never ingested")
        return found.table

    def ledger(self, table: str) -> BaseLedger:
        """The ledger of `table`: the shared one, or a local table's own."""
        uri = self._config.replace(table_uri=table).resolved_ledger_uri()
        if uri not in self._ledgers:
            self._ledgers[uri] = open_ledger(uri, self._config.storage)
        return self._ledgers[uri]

    def rows(self, table: str) -> tuple[dict[str, list[FileRecord]], set[str]]:
        """The table's rows by the path they were written for, and the paths only sighted."""
        if table not in self._rows:
            own: dict[str, list[FileRecord]] = {}
            sighted: set[str] = set()
            for row in self.ledger(table).records(table=table_key(table)):
                own.setdefault(path_key(row.path, self._config.storage), []).append(row)
                sighted.update(path_key(p, self._config.storage) for p in row.seen_paths)
            self._rows[table] = (own, sighted)
        return self._rows[table]

    def close(self) -> None:
        for ledger in self._ledgers.values():
            ledger.close()


def cleanup(
    config: IngestConfig,
    sources: Sequence[str],
    *,
    archive_to: str | None = None,
    older_than: float | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """Archive (to `archive_to`) or delete every file under `sources` the table already holds.

    Args:
        config: names the table (`table_uri`) or routes, the ledger and storage.
        sources: the landing folders, prefixes or files to clean up.
        archive_to: where archived files go (a folder for local sources, a Blob
            URL in the same account for blobs); None deletes them.
        older_than: seconds since the file's content became `succeeded` in the
            ledger; younger files are kept.
        dry_run: decide and report, but move and delete nothing.

    Raises:
        ConfigurationError: no table or routes, an archive of another kind than
            the source, or a source that does not exist.
    """
    action: Action = "archive" if archive_to else "delete"
    report = CleanupReport(action=action, dry_run=dry_run)
    ledgers = _Ledgers(config)
    try:
        for root in sources:
            if archive_to is not None and is_local(root) != is_local(archive_to):
                raise ConfigurationError(
                    f"cleanup of {root} into {archive_to}: archive local files to a folder and "
                    "blobs to a Blob URL of the same account"
                )
            for file in list_files([root], config.storage):
                report.files.append(
                    _clean_one(file, ledgers, config, archive_to, older_than, dry_run)
                )
    finally:
        ledgers.close()
    return report


def _clean_one(
    file: SourceFile, ledgers: _Ledgers, config: IngestConfig, archive_to: str | None,
    older_than: float | None, dry_run: bool,
) -> dict[str, str]:
    entry = {"path": file.uri}
    try:
        table = ledgers.table_of(file)
        row = _ingested_row(file, table, ledgers, config)
        ledger = ledgers.ledger(table)
        if older_than is not None and row.updated_at is not None:
            ingested_ago = ledger.now() - row.updated_at
            if ingested_ago < timedelta(seconds=older_than):
                raise _Kept(f"ingested {_ago(ingested_ago)} ago, within the retention")
        if archive_to is None:
            if not dry_run:
                _delete(file, row, config)
            return {**entry, "outcome": "deleted"}
        to = _archive_uri(archive_to, file.relative)
        if not dry_run:
            _archive(file, row, to, config)
        return {**entry, "outcome": "archived", "to": to}
    except _Kept as kept:
        return {**entry, "outcome": "kept", "reason": str(kept)}
    except OSError as exc:  # permissions, a full disk, a lost connection: this file only
        verb = "archive" if archive_to else "delete"
        reason = f"could not {verb} it: {exc}; fix that and run again"
        return {**entry, "outcome": "kept", "reason": reason}


def _ingested_row(
    file: SourceFile, table: str, ledgers: _Ledgers, config: IngestConfig
) -> FileRecord:
    """The `succeeded` row for the bytes now at `file`; `_Kept` when there is none."""
    own, sighted = ledgers.rows(table)
    key = path_key(file.uri, config.storage)
    rows = own.get(key, [])
    current = [r for r in rows if same_version(r, file)]
    done = [r for r in current if r.status == SUCCEEDED]
    if done:
        return _with_source_version(done[-1], file)
    if current:
        raise _Kept(f"its content is {current[-1].status} in the ledger, not succeeded")
    if rows:
        raise _Kept(CHANGED)
    if key not in sighted:
        raise _Kept("not in the ledger: not ingested yet (run `ingest sweep` for it)")
    return _sighted_row(file, table, ledgers, config)


def _sighted_row(
    file: SourceFile, table: str, ledgers: _Ledgers, config: IngestConfig
) -> FileRecord:
    """A copy of another path's content: hash it to know its bytes are the ones ingested."""
    import tempfile

    from ingest_core.sources import Sources

    source = Sources(config.storage).of(file.uri)
    with tempfile.TemporaryDirectory(prefix="ingest-cleanup-") as spool:
        copy = source.fetch(file, Path(spool))
        copy.discard()
    row = ledgers.ledger(table).get(table_key(table), copy.sha256)
    if row is None or row.status != SUCCEEDED:
        raise _Kept("changed since it was seen as a copy of an ingested file")
    # the version to pin the move on is the one just hashed, not the row's
    return dataclasses.replace(row, source_etag=copy.etag, size=copy.size)


def _with_source_version(row: FileRecord, file: SourceFile) -> FileRecord:
    """`row`, its `source_etag` the one the listing showed (blobs list it unquoted)."""
    if is_local(file.uri) or file.etag is None:
        return row
    return dataclasses.replace(row, source_etag=file.etag)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _archive_uri(archive_to: str, relative: str) -> str:
    """Where a file with path `relative` below its SOURCE goes in the archive."""
    if is_local(archive_to):
        return str(local_path(archive_to) / relative)
    from ingest_core.azure.urls import parse_blob_url

    location = parse_blob_url(archive_to)
    prefix = location.name.strip("/")
    return location.url_of(f"{prefix}/{relative}" if prefix else relative)


# -- local files ------------------------------------------------------------------------


def _check_local(file: SourceFile, row: FileRecord) -> Path:
    path = local_path(file.uri)
    try:
        now = local_identity(path)
    except FileNotFoundError:
        raise _Kept("gone before it could be cleaned up") from None
    if not identity_matches(row.source_etag, now):
        raise _Kept(CHANGED)
    return path


def _delete(file: SourceFile, row: FileRecord, config: IngestConfig) -> None:
    if is_local(file.uri):
        _check_local(file, row).unlink()
        return
    with _azure_errors():
        _delete_blob(file, row, config)


def _archive(file: SourceFile, row: FileRecord, to: str, config: IngestConfig) -> None:
    if not is_local(file.uri):
        with _azure_errors():
            _archive_blob(file, row, to, config)
        return
    path = _check_local(file, row)
    target = Path(to)
    if target.exists():
        if os.path.samefile(path, target):  # an earlier run linked it, then stopped
            path.unlink()
            return
        raise _Kept(f"{to} exists already in the archive; move it away and run again")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)  # fails rather than replace a file that appeared meanwhile
    except OSError:
        shutil.copy2(path, target)  # another file system: copy, then remove the source
    path.unlink()


# -- blobs ------------------------------------------------------------------------------


@contextmanager
def _azure_errors() -> Iterator[None]:
    """Any other Azure failure (authorization, throttling) as an OSError: the file is kept."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:
        raise OSError(f"{type(exc).__name__}: {exc.message}") from exc


def _blob_client(url: str, config: IngestConfig) -> BlobClient:
    from ingest_core.azure.auth import blob_service
    from ingest_core.azure.settings import account_settings
    from ingest_core.azure.urls import parse_blob_url

    location = parse_blob_url(url)
    service = blob_service(account_settings(config.storage, location.account))
    return service.get_blob_client(location.container, location.name)


def _delete_blob(file: SourceFile, row: FileRecord, config: IngestConfig) -> None:
    """Delete the blob only while its ETag is still the ingested one."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    assert row.source_etag is not None
    try:
        _blob_client(file.uri, config).delete_blob(
            etag=_quoted(row.source_etag), match_condition=MatchConditions.IfNotModified
        )
    except ResourceModifiedError:
        raise _Kept(CHANGED) from None
    except ResourceNotFoundError:
        raise _Kept("gone before it could be cleaned up") from None


def _archive_blob(file: SourceFile, row: FileRecord, to: str, config: IngestConfig) -> None:
    """Copy the blob (its ingested ETag pinned) to `to`, wait for the copy, then delete it."""
    import time

    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    assert row.source_etag is not None
    source = _blob_client(file.uri, config)
    target = _blob_client(to, config)
    try:
        target.start_copy_from_url(
            source.url, source_etag=_quoted(row.source_etag),
            source_match_condition=MatchConditions.IfNotModified,
        )
    except ResourceModifiedError:
        raise _Kept(CHANGED) from None
    except ResourceNotFoundError:
        raise _Kept("gone before it could be cleaned up") from None
    deadline = time.monotonic() + 300
    while True:
        copy = target.get_blob_properties().copy
        if copy.status != "pending":
            break
        if time.monotonic() > deadline:
            raise _Kept(f"the copy to {to} is still pending after 5 minutes; run again later")
        time.sleep(0.5)
    if copy.status != "success":
        raise _Kept(f"the copy to {to} ended {copy.status}: {copy.status_description}")
    _delete_blob(file, row, config)


def _quoted(etag: str) -> str:
    return f'"{bare_etag(etag)}"'
