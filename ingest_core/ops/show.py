"""`ingest show`: everything known about one content or path, checked against the Delta log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ingest_core.config import IngestConfig, StorageConfig, is_local, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ledger import SUCCEEDED, FileRecord, open_ledger
from ingest_core.ops.common import SHA256
from ingest_core.ops.lookup import path_matcher


@dataclass
class ShownFile:
    """One ledger row, every path its content was seen under, and what the Delta log says."""

    record: FileRecord
    delta: dict[str, Any]
    """`checked` (table reachable), `in_log` (its transaction id is), `table_version`,
    `version` and `rows` (where it landed), `agrees` (ledger and log say the same),
    `error` (why the table could not be read), `rescued_rows` (its rows holding
    `_rescued_data`, when the table has that column) and `bad_rows` (its rows in
    the bad-rows table, when there is one)."""

    @property
    def paths(self) -> list[str]:
        """The recorded path, then every other path the same bytes were seen under."""
        return [self.record.path, *(p for p in self.record.seen_paths if p != self.record.path)]

    def to_dict(self) -> dict[str, object]:
        """The row's fields, `paths` and `delta`."""
        return {**self.record.to_dict(), "paths": self.paths, "delta": self.delta}


@dataclass
class ShowReport:
    """Everything known about one content (by sha256) or one path."""

    query: str
    kind: Literal["sha256", "path"]
    files: list[ShownFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when something was found and the Delta log agrees with every row checked."""
        return bool(self.files) and all(f.delta.get("agrees", True) for f in self.files)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "query": self.query,
            "kind": self.kind,
            "found": len(self.files),
            "files": [f.to_dict() for f in self.files],
        }


def show(config: IngestConfig, target: str) -> ShowReport:
    """The ledger rows of a sha256 (64 hex digits) or a path, checked against the Delta log.

    Without a table, every table in the ledger is searched.
    """
    ledger = open_ledger(config.resolved_ledger_uri(), config.storage, read_only=True)
    table = table_key(config.table_uri) if config.table_uri else None
    try:
        if SHA256.fullmatch(target):
            sha = target.lower()
            report = ShowReport(query=sha, kind="sha256")
            if table is not None:
                found = ledger.get(table, sha)
                rows = [found] if found is not None else []
            else:
                rows = [r for r in ledger.records() if r.sha256 == sha]
        else:
            report = ShowReport(query=target, kind="path")
            matches = path_matcher(target, config.storage)
            rows = [
                r for r in ledger.records(table=table)
                if any(matches(p) for p in (r.path, *r.seen_paths))
            ]
    finally:
        ledger.close()
    report.files = [ShownFile(r, _delta_check(r, config.storage, config.read.bad_rows_table))
                    for r in rows]
    return report


def _delta_check(
    row: FileRecord, storage: StorageConfig, bad_rows_table: str | None = None
) -> dict[str, Any]:
    """What the Delta log says of this row's content: is its transaction id there, and where."""
    from deltalake.exceptions import DeltaError

    from ingest_core.delta import DeltaTarget, TableRef
    from ingest_core.routing import UNROUTED_TABLE

    check: dict[str, Any] = {"checked": False, "in_log": None, "version": row.delta_version,
                             "rows": row.rows}
    if row.table == UNROUTED_TABLE:
        return check
    try:
        # one target, so every snapshot the check loads (locate's too) has the credentials
        _storage_options(row.table, storage)  # a missing sign-in, said plainly
        target = DeltaTarget(TableRef.of(row.table, storage))
        dt = target.snapshot()
        if dt is None:
            in_log = False
        else:
            in_log = DeltaTarget.has_landed(dt, row.sha256, row.generation)
            check["table_version"] = dt.version()
            lost = _lost_rows(dt, row)
            if lost is not None:
                check["lost"] = lost
            if in_log and row.delta_version is None:
                landing = target.locate(dt, row.sha256)
                check.update(version=landing.version, rows=landing.rows)
        check.update(_kept_rows(dt, row, storage, bad_rows_table))
    except (DeltaError, OSError, ConfigurationError) as exc:
        # an unreachable table leaves the ledger's word unchecked, and says why
        check["error"] = redact(f"{type(exc).__name__}: {exc}")[:300]
        return check
    agrees = in_log == (row.status == SUCCEEDED) and "lost" not in check
    check.update(checked=True, in_log=in_log, agrees=agrees)
    return check


def _lost_rows(table: Any, row: FileRecord) -> str | None:
    """Why the ledger's `succeeded` is wrong when the table holds none of the file's rows.

    Its transaction id survives a restore, a delete or an overwrite: only the
    lineage column (one filtered count) tells. None when the rows are there,
    or nothing can tell.
    """
    from ingest_core.delta import lineage

    if row.status != SUCCEEDED or not row.rows:
        return None
    if lineage.rows_of(table, row.sha256) != 0:
        return None
    return (
        f"the table holds none of its {row.rows} rows (restored, deleted or overwritten?): "
        f"run `ingest reconcile --table {row.table}`"
    )


def _kept_rows(
    table: Any, row: FileRecord, storage: StorageConfig, bad_rows_table: str | None
) -> dict[str, int]:
    """How many of the file's rows hold rescued values, and how many went to the bad-rows table.

    Read from the tables themselves (filtered by `_ingest_sha256`): the ledger
    does not keep them. Each is left out when its table or column does not exist.
    """
    from ingest_core.delta import TableRef
    from ingest_core.delta.bad_rows import bad_rows_uri
    from ingest_core.read_options import RESCUED_COLUMN

    kept: dict[str, int] = {}
    rescued = _count(table, row.sha256, RESCUED_COLUMN) if table is not None else None
    if rescued is not None:
        kept["rescued_rows"] = rescued
    try:
        uri = bad_rows_uri(row.table, bad_rows_table)
    except ConfigurationError:
        return kept
    bad = TableRef.of(uri, storage).load()
    counted = _count(bad, row.sha256, None) if bad is not None else None
    if counted is not None:
        kept["bad_rows"] = counted
    return kept


def _count(table: Any, sha256: str, not_null: str | None) -> int | None:
    """Rows of `table` from the content `sha256` (with `not_null` set); None without lineage."""
    import pyarrow.dataset as ds

    names = {f.name for f in table.schema().fields}
    if "_ingest_sha256" not in names or (not_null is not None and not_null not in names):
        return None
    wanted = ds.field("_ingest_sha256") == sha256
    if not_null is not None:
        wanted = wanted & ~ds.field(not_null).is_null()
    return int(table.to_pyarrow_dataset().count_rows(filter=wanted))


def _storage_options(uri: str, storage: StorageConfig) -> dict[str, str] | None:
    """deltalake's storage options for the table at `uri`; None for a local path.

    Raises:
        ConfigurationError: no account settings for the URI, or no credential to sign in with.
    """
    if is_local(uri):
        return None
    from azure.core.exceptions import ClientAuthenticationError

    from ingest_core.azure.auth import delta_storage_options

    try:
        return delta_storage_options(uri, storage)
    except ClientAuthenticationError as exc:
        raise ConfigurationError(
            f"table {uri}: no credential to read it ({type(exc).__name__}); sign in (az login, "
            "a managed identity) or set INGEST_STORAGE_CONNECTION"
        ) from None
