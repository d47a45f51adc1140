"""Typed configuration. `from_env` is the only place that reads the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from ingest_core.errors import ConfigurationError

SchemaMode = Literal["merge", "strict"]

LOCAL_SCHEMES = ("", "file")
AZURE_SCHEMES = ("abfs", "abfss", "az", "https", "http")


@dataclass(frozen=True)
class StorageConfig:
    """How to reach Azure Storage: a connection string, or an account name for Entra identity."""

    connection_string: str | None = None
    account_name: str | None = None

    def __repr__(self) -> str:  # never print the key inside a connection string
        secret = "set" if self.connection_string else None
        return f"StorageConfig(connection_string={secret}, account_name={self.account_name!r})"


@dataclass(frozen=True)
class IngestConfig:
    """Everything an `IdempotentIngestor` needs, with production defaults."""

    table_uri: str
    ledger_uri: str | None = None
    """None: a SQLite file beside a local table (`<table>.ledger.sqlite`)."""
    format: str | None = None
    schema_mode: SchemaMode = "merge"
    lineage: bool = True
    transform: str | None = None
    lease_seconds: float = 60.0
    """Short, and renewed every third of it, so a dead worker's files return within a minute."""
    max_attempts: int = 5
    batch_files: int = 500
    """Small files per Delta commit."""
    batch_seconds: float = 10.0
    """A batch is committed once its first file has waited this long."""
    batch_bytes: int = 64 * 1024 * 1024
    """Arrow bytes in memory of small files per Delta commit (bounds a batch's memory)."""
    stream_bytes: int = 16 * 1024 * 1024
    """Files larger than this on disk are streamed into a commit of their own."""
    workers: int = 1
    storage: StorageConfig = field(default_factory=StorageConfig)
    landing_path: str | None = None
    """The Functions blob-trigger path (`container/{name}`); its container is the default."""
    landing_containers: tuple[str, ...] = ()
    """Containers whose blobs events may ingest; empty: the container of `landing_path`."""
    partition_by: tuple[str, ...] = ()
    """Columns a new table is partitioned by (an existing table keeps its partitioning)."""
    routes: str | None = None
    """A routes file's path or its TOML text (see `ingest_core.routing`); None: no routing."""
    eventgrid_topic_endpoint: str | None = None
    """The Event Grid topic `ingest replay --via eventgrid` publishes to."""
    eventgrid_key: str | None = field(default=None, repr=False)
    """That topic's access key; None: Microsoft Entra identity (DefaultAzureCredential)."""
    txn_retention: str | None = "interval 7 days"
    """How long a table this creates keeps its Delta transaction ids (with lineage on).

    The Delta-side guard covers this window after a commit; after it the ledger
    is the record and the lineage column recognises old files (`delta.lineage`).
    None or lineage off: the ids are kept for good."""

    def __post_init__(self) -> None:
        if self.schema_mode not in ("merge", "strict"):
            raise ConfigurationError(f"schema mode {self.schema_mode!r}: use merge or strict")
        if self.lease_seconds <= 0 or self.max_attempts < 1 or self.batch_files < 1:
            raise ConfigurationError("lease seconds, max attempts and batch size must be positive")
        if self.workers < 1:
            raise ConfigurationError(f"--workers {self.workers}: use 1 or more")

    def replace(self, **changes: Any) -> IngestConfig:
        """A copy with `changes` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def allowed_containers(self) -> frozenset[str]:
        """The landing containers events may name (INGEST_LANDING_CONTAINERS, else the path's)."""
        if self.landing_containers:
            return frozenset(self.landing_containers)
        container = (self.landing_path or "").strip("/").split("/", 1)[0]
        return frozenset([container]) if container else frozenset()

    def resolved_ledger_uri(self) -> str:
        """The ledger URI, defaulting to a SQLite file beside a local table."""
        if self.ledger_uri:
            return self.ledger_uri
        if not self.table_uri:
            raise ConfigurationError("pass --ledger URI or --table URI (or set INGEST_LEDGER_URI)")
        if not is_local(self.table_uri):
            raise ConfigurationError(
                f"table {self.table_uri} is not local, so there is no default ledger: "
                "pass --ledger (e.g. azure-table://ingestledger) or set INGEST_LEDGER_URI"
            )
        return "sqlite:///" + str(local_path(self.table_uri)) + ".ledger.sqlite"


def is_local(uri: str) -> bool:
    """True for a plain path or a file:// URI."""
    return urlparse(uri).scheme in LOCAL_SCHEMES or (len(uri) > 1 and uri[1] == ":")


def local_path(uri: str) -> Path:
    """The absolute path of a local URI."""
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    return Path(uri).expanduser().resolve()


def table_key(uri: str) -> str:
    """The ledger's name for a table: absolute path for local tables, else the URI sans slash."""
    return str(local_path(uri)) if is_local(uri) else uri.rstrip("/")


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={value!r}: use true or false")


def _number(value: str, name: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r}: not a number") from None


def from_env(
    environ: Mapping[str, str] | None = None, *, require_table: bool = True, **overrides: Any
) -> IngestConfig:
    """Build the config from `INGEST_*` variables; keyword overrides (not None) win.

    Variables: INGEST_TABLE_URI, INGEST_LEDGER_URI, INGEST_STORAGE_CONNECTION,
    INGEST_STORAGE_ACCOUNT, INGEST_FORMAT, INGEST_SCHEMA_MODE, INGEST_LINEAGE,
    INGEST_TRANSFORM, INGEST_LEASE_SECONDS, INGEST_MAX_ATTEMPTS,
    INGEST_BATCH_FILES, INGEST_BATCH_SECONDS, INGEST_WORKERS, INGEST_LANDING_PATH,
    INGEST_LANDING_CONTAINERS (comma-separated), INGEST_ROUTES (a routes file's
    path or its TOML text; with it no table is required),
    INGEST_EVENTGRID_TOPIC_ENDPOINT, INGEST_EVENTGRID_KEY, INGEST_TXN_RETENTION (a
    Delta interval, `interval 7 days`).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    text = {
        "table_uri": "INGEST_TABLE_URI",
        "ledger_uri": "INGEST_LEDGER_URI",
        "format": "INGEST_FORMAT",
        "schema_mode": "INGEST_SCHEMA_MODE",
        "transform": "INGEST_TRANSFORM",
        "landing_path": "INGEST_LANDING_PATH",
        "routes": "INGEST_ROUTES",
        "eventgrid_topic_endpoint": "INGEST_EVENTGRID_TOPIC_ENDPOINT",
        "eventgrid_key": "INGEST_EVENTGRID_KEY",
        "txn_retention": "INGEST_TXN_RETENTION",
    }
    for key, name in text.items():
        if env.get(name):
            values[key] = env[name]
    numbers: dict[str, tuple[str, type[int] | type[float]]] = {
        "lease_seconds": ("INGEST_LEASE_SECONDS", float),
        "max_attempts": ("INGEST_MAX_ATTEMPTS", int),
        "batch_files": ("INGEST_BATCH_FILES", int),
        "batch_seconds": ("INGEST_BATCH_SECONDS", float),
        "workers": ("INGEST_WORKERS", int),
    }
    for key, (name, kind) in numbers.items():
        if env.get(name):
            values[key] = _number(env[name], name, kind)
    if env.get("INGEST_LINEAGE"):
        values["lineage"] = _flag(env["INGEST_LINEAGE"], "INGEST_LINEAGE")
    if env.get("INGEST_LANDING_CONTAINERS"):
        names = (n.strip() for n in env["INGEST_LANDING_CONTAINERS"].split(","))
        values["landing_containers"] = tuple(n for n in names if n)
    values["storage"] = StorageConfig(
        connection_string=env.get("INGEST_STORAGE_CONNECTION") or None,
        account_name=env.get("INGEST_STORAGE_ACCOUNT") or None,
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("table_uri"):
        if require_table and not values.get("routes"):
            raise ConfigurationError("no table: pass --table URI or set INGEST_TABLE_URI")
        values["table_uri"] = ""
    return IngestConfig(**values)


def log_settings_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The command line's log settings: (INGEST_LOG_FORMAT, INGEST_LOG_LEVEL), None when unset.

    Raises:
        ConfigurationError: a value is not one the command line takes.
    """
    env = os.environ if env is None else env
    fmt = (env.get("INGEST_LOG_FORMAT") or "").strip().lower() or None
    level = (env.get("INGEST_LOG_LEVEL") or "").strip().upper() or None
    if fmt not in (None, "text", "json"):
        raise ConfigurationError(f"INGEST_LOG_FORMAT={fmt!r}: use text or json")
    if level not in (None, "DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigurationError(f"INGEST_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR")
    return fmt, level
