"""Typed configuration. `from_env` is the only place that reads the environment."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from ingest_core.errors import ConfigurationError
from ingest_core.read_options import ReadOptions, split_nulls

SchemaMode = Literal["merge", "strict"]
Mode = Literal["append", "merge"]
MODES = ("append", "merge")

LOCAL_SCHEMES = ("", "file")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
"""Environment variables (any case) through which requests would send Azure calls via a proxy."""
AZURE_SCHEMES = ("abfs", "abfss", "az", "https", "http")


@dataclass(frozen=True)
class StorageConfig:
    """How to reach Azure Storage: a connection string, or an account name for Entra identity."""

    connection_string: str | None = None
    account_name: str | None = None
    proxies: bool = True
    """Whether the Azure clients look for proxy settings in the environment.

    requests reads every environment variable for them on each request (about
    2 ms a request in a Functions host's environment, a fifth of an event's
    CPU); `from_env` turns the lookup off when no proxy variable is set."""

    def __repr__(self) -> str:  # never print the key inside a connection string
        secret = "set" if self.connection_string else None
        return (
            f"StorageConfig(connection_string={secret}, account_name={self.account_name!r}, "
            f"proxies={self.proxies})"
        )


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
    mode: Mode = "append"
    """append: every file's rows are added; merge: upserted on `merge_keys`, one commit a file."""
    merge_keys: tuple[str, ...] = ()
    """The columns identifying a record under `mode=merge`."""
    merge_sequence: str | None = None
    """A column ordering versions of a record: a row replaces the stored one when its value
    is greater or equal. None: the file merged last wins."""
    merge_delete_when: str | None = None
    """A SQL predicate over the incoming row (`op = 'D'`): matching rows delete the stored one."""
    cleanup: str | None = None
    """The Functions app's source clean-up on its maintenance timer: `delete` or
    `archive:<URL>`; None: files stay where they landed."""
    cleanup_after: float | None = None
    """Seconds after its ingestion a landed file is cleaned up (`parse_duration`)."""
    read: ReadOptions = field(default_factory=ReadOptions)
    """CSV dialect, encoding, schema hints, bad rows, column names, time zone."""
    trigger_storage: StorageConfig | None = None
    """The Functions host's storage account (AzureWebJobsStorage), where the blob trigger's
    poison queue lives; None: `storage`."""
    poison_queue: str = "webjobs-blobtrigger-poison"
    """The blob trigger's poison queue in `trigger_storage` (the host's fixed name)."""
    sweep_prefixes: tuple[str, ...] = ()
    """Sources the maintenance timer sweeps each tick (blob URLs or `container/prefix`)."""
    sweep_max_files: int = 500
    """At most this many files listed, and so re-driven, per scheduled sweep."""

    def __post_init__(self) -> None:
        if self.schema_mode not in ("merge", "strict"):
            raise ConfigurationError(f"schema mode {self.schema_mode!r}: use merge or strict")
        if self.lease_seconds <= 0 or self.max_attempts < 1 or self.batch_files < 1:
            raise ConfigurationError("lease seconds, max attempts and batch size must be positive")
        if self.workers < 1:
            raise ConfigurationError(f"--workers {self.workers}: use 1 or more")
        if self.sweep_max_files < 1:
            raise ConfigurationError(
                f"INGEST_SWEEP_MAX_FILES={self.sweep_max_files}: use 1 or more"
            )
        if self.mode not in MODES:
            raise ConfigurationError(f"mode {self.mode!r}: use append or merge")
        if self.mode == "merge" and not self.merge_keys:
            raise ConfigurationError(
                "mode merge needs the key columns: pass --merge-keys a,b "
                "(or set INGEST_MERGE_KEYS, or merge_keys in the route)"
            )
        if self.mode == "append" and (
            self.merge_keys or self.merge_sequence or self.merge_delete_when
        ):
            raise ConfigurationError(
                "merge keys, sequence or delete condition given in append mode: "
                "add --mode merge (INGEST_MODE=merge), or drop them"
            )
        if self.cleanup is not None:
            cleanup_action(self.cleanup)
            if self.cleanup_after is None:
                raise ConfigurationError(
                    "INGEST_CLEANUP is set but INGEST_CLEANUP_AFTER is not: say how long after "
                    "ingestion landed files are cleaned up (e.g. 7d)"
                )

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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds in `7d`, `12h`, `30m`, `45s` (or several, as `1d12h`).

    Raises:
        ConfigurationError: `text` is not such a duration.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigurationError(
            f"{name} {text!r}: write a duration as a number and a unit, e.g. 7d, 12h, 30m, 45s"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def cleanup_action(value: str) -> tuple[Literal["archive", "delete"], str | None]:
    """Split INGEST_CLEANUP (`delete` or `archive:<URL>`) into the action and archive URI.

    Raises:
        ConfigurationError: the value is neither.
    """
    if value.strip() == "delete":
        return "delete", None
    kind, sep, where = value.partition(":")
    if kind.strip() == "archive" and sep and where.strip():
        return "archive", where.strip()
    raise ConfigurationError(
        f"INGEST_CLEANUP={value!r}: use delete, or archive:<URL> "
        "(e.g. archive:abfss://archive@account.dfs.core.windows.net/landing)"
    )


def split_names(value: str) -> tuple[str, ...]:
    """`a, b` -> ("a", "b"): a comma-separated list of column names."""
    return tuple(n.strip() for n in value.split(",") if n.strip())


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
    Delta interval, `interval 7 days`), INGEST_MODE (append or merge),
    INGEST_MERGE_KEYS (comma-separated), INGEST_MERGE_SEQUENCE,
    INGEST_MERGE_DELETE_WHEN, INGEST_CLEANUP (delete or archive:<URL>) and
    INGEST_CLEANUP_AFTER (a duration: 7d, 12h, 30m), INGEST_TRIGGER_STORAGE (the
    Functions host's storage connection string, else AzureWebJobsStorage or
    AzureWebJobsStorage__accountName; else the landing storage), INGEST_POISON_QUEUE,
    INGEST_SWEEP_PREFIXES
    (comma-separated) and INGEST_SWEEP_MAX_FILES;
    and for `read`:
    INGEST_CSV_DELIMITER, INGEST_CSV_QUOTE, INGEST_CSV_ESCAPE, INGEST_CSV_NULL
    (comma-separated), INGEST_CSV_NO_HEADER, INGEST_CSV_DECIMAL, INGEST_ENCODING,
    INGEST_SCHEMA_HINTS, INGEST_BAD_ROWS, INGEST_BAD_ROWS_TABLE,
    INGEST_NORMALIZE_NAMES, INGEST_TIMEZONE (a `read` override replaces them all).
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
        "mode": "INGEST_MODE",
        "merge_sequence": "INGEST_MERGE_SEQUENCE",
        "merge_delete_when": "INGEST_MERGE_DELETE_WHEN",
        "cleanup": "INGEST_CLEANUP",
        "poison_queue": "INGEST_POISON_QUEUE",
    }
    values.update(_texts(env, text))
    numbers: dict[str, tuple[str, type[int] | type[float]]] = {
        "lease_seconds": ("INGEST_LEASE_SECONDS", float),
        "max_attempts": ("INGEST_MAX_ATTEMPTS", int),
        "batch_files": ("INGEST_BATCH_FILES", int),
        "batch_seconds": ("INGEST_BATCH_SECONDS", float),
        "workers": ("INGEST_WORKERS", int),
        "sweep_max_files": ("INGEST_SWEEP_MAX_FILES", int),
    }
    for key, (name, kind) in numbers.items():
        if env.get(name):
            values[key] = _number(env[name], name, kind)
    if env.get("INGEST_LINEAGE"):
        values["lineage"] = _flag(env["INGEST_LINEAGE"], "INGEST_LINEAGE")
    if env.get("INGEST_LANDING_CONTAINERS"):
        names = (n.strip() for n in env["INGEST_LANDING_CONTAINERS"].split(","))
        values["landing_containers"] = tuple(n for n in names if n)
    if env.get("INGEST_MERGE_KEYS"):
        values["merge_keys"] = split_names(env["INGEST_MERGE_KEYS"])
    if env.get("INGEST_CLEANUP_AFTER"):
        values["cleanup_after"] = parse_duration(env["INGEST_CLEANUP_AFTER"],
                                                 "INGEST_CLEANUP_AFTER")
    values["storage"] = StorageConfig(
        connection_string=env.get("INGEST_STORAGE_CONNECTION") or None,
        account_name=env.get("INGEST_STORAGE_ACCOUNT") or None,
        proxies=any(name.lower() in PROXY_VARIABLES for name in env),
    )
    values["read"] = read_options_from_env(env)
    values["trigger_storage"] = trigger_storage_from_env(env, values["storage"])
    if env.get("INGEST_SWEEP_PREFIXES"):
        values["sweep_prefixes"] = split_names(env["INGEST_SWEEP_PREFIXES"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("table_uri"):
        if require_table and not values.get("routes"):
            raise ConfigurationError("no table: pass --table URI or set INGEST_TABLE_URI")
        values["table_uri"] = ""
    return IngestConfig(**values)


def trigger_storage_from_env(env: Mapping[str, str], storage: StorageConfig) -> StorageConfig:
    """The Functions host's storage: INGEST_TRIGGER_STORAGE, AzureWebJobsStorage (a connection
    string, or `AzureWebJobsStorage__accountName` for identity), else the landing `storage`."""
    connection = env.get("INGEST_TRIGGER_STORAGE") or env.get("AzureWebJobsStorage")
    if connection:
        return StorageConfig(connection_string=connection, proxies=storage.proxies)
    if env.get("AzureWebJobsStorage__accountName"):
        return StorageConfig(
            account_name=env["AzureWebJobsStorage__accountName"], proxies=storage.proxies
        )
    return storage


def _texts(env: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    """The fields of `names` (field -> variable) whose variable is set and not empty."""
    return {key: env[name] for key, name in names.items() if env.get(name)}


def read_options_from_env(env: Mapping[str, str]) -> ReadOptions:
    """The `ReadOptions` the INGEST_CSV_* and related variables set (see `from_env`)."""
    read: dict[str, Any] = _texts(env, {
        "csv_delimiter": "INGEST_CSV_DELIMITER",
        "csv_quote": "INGEST_CSV_QUOTE",
        "csv_escape": "INGEST_CSV_ESCAPE",
        "csv_decimal": "INGEST_CSV_DECIMAL",
        "encoding": "INGEST_ENCODING",
        "schema_hints": "INGEST_SCHEMA_HINTS",
        "bad_rows": "INGEST_BAD_ROWS",
        "bad_rows_table": "INGEST_BAD_ROWS_TABLE",
        "timezone": "INGEST_TIMEZONE",
    })
    for key in ("csv_delimiter", "csv_quote", "csv_escape"):
        if read.get(key) in ("\\t", "tab"):  # a tab is hard to pass through app settings
            read[key] = "\t"
    if env.get("INGEST_CSV_NULL"):
        read["csv_nulls"] = split_nulls(env["INGEST_CSV_NULL"])
    for key, name in (("csv_no_header", "INGEST_CSV_NO_HEADER"),
                      ("normalize_names", "INGEST_NORMALIZE_NAMES")):
        if env.get(name):
            read[key] = _flag(env[name], name)
    return ReadOptions(**read)


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
