"""Blob Storage events from Event Grid: screen them, and build BlobCreated ones.

Event Grid delivers at least once, unordered, and may send several events per
blob: an ADLS file gets a CreateFile event (empty) before its FlushWithClose,
an SFTP upload an SftpCreate (empty) before its SftpCommit. Only a completed
write is worth ingesting, and only a blob in the configured storage account
and landing containers: the URL of an event is never fetched before it has
been checked here.

What is ingested:

- `Microsoft.Storage.BlobCreated` with `data.api` PutBlob, PutBlockList,
  FlushWithClose or SftpCommit: the blob at `data.url`.
- BlobCreated with CopyBlob: the blob at `data.url`. On an account with a
  hierarchical namespace this event fires when the copy *starts*; reading the
  blob checks that its copy has finished (`sources.azure_blob`) and fails,
  to be retried, while it is pending.
- `Microsoft.Storage.BlobRenamed` (RenameFile, SftpRename): the blob at
  `data.destinationUrl` (a rename event has no `url`).
- `Microsoft.Storage.DirectoryRenamed`, or a BlobRenamed with RenameDirectory:
  every file below `data.destinationUrl` (`Verdict.directory`).

Every other write (CreateFile, SftpCreate, PutBlock, ...) and a zero-length
blob are ignored, other event types (deletions, directory creation, ...) are
invalid; each verdict says why, for the caller's log line.

Both the Event Grid schema (`eventType`, `topic`, `data`) and CloudEvents 1.0
(`type`, `source`, `data`) are understood.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from ingest_core.azure.urls import HTTP_SCHEMES, BlobLocation, parse_blob_url, quote_name
from ingest_core.config import IngestConfig
from ingest_core.errors import ConfigurationError

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
BLOB_RENAMED = "Microsoft.Storage.BlobRenamed"
DIRECTORY_RENAMED = "Microsoft.Storage.DirectoryRenamed"
INGESTED_EVENT_TYPES = (BLOB_CREATED, BLOB_RENAMED, DIRECTORY_RENAMED)
"""The event types an Event Grid subscription of the app should include."""
COMPLETED_WRITES = frozenset(
    {"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit"}
)
"""BlobCreated `data.api` values that mean the blob's content is complete.

Not CreateFile (ADLS) nor SftpCreate (SFTP): both create the empty blob that a
FlushWithClose or an SftpCommit later fills.
"""
LENGTH_UNRELIABLE = frozenset({"SftpCommit"})
"""Writes whose event may say `contentLength: 0` for a non-empty blob.

Microsoft's own SftpCommit example carries `contentLength: 0` and
`contentOffset: 0`; the blob's real size is known once it is read.
"""
COPY_STARTED = "CopyBlob"
"""The api whose BlobCreated fires when the copy starts on a hierarchical-namespace account."""
RENAMES = frozenset({"RenameFile", "RenameDirectory", "SftpRename"})
"""`data.api` values of BlobRenamed and DirectoryRenamed events."""

_QUERY = re.compile(r"(\w+://[^\s?\"']+)\?[^\s\"']*")
_SECRET = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|sig|password|secret|code)=[^;&\s\"']+"
)

Decision = Literal["accept", "ignore", "refuse", "invalid"]


@dataclass(frozen=True)
class Verdict:
    """What to do with one event or blob notification.

    `accept` carries the blob URL to ingest; `ignore` (not a completed write,
    zero-length), `refuse` (outside the landing account or containers) and
    `invalid` (not a blob event the app ingests at all) carry the reason, and
    are dropped without fetching anything. An accepted verdict may carry a
    reason too, saying why it was taken (a rename, a copy).
    """

    decision: Decision
    url: str | None
    reason: str = ""
    event_id: str | None = None
    directory: bool = False
    """True when `url` names a directory (a renamed one): ingest every file below it."""
    location: BlobLocation | None = field(default=None, compare=False)
    """The accepted blob's container and name, parsed here once for everything downstream."""
    copy_started: bool = False
    """True for a CopyBlob event: on an HNS account the copy may still be running.

    Reading the blob checks its copy status whatever this says (a blob
    trigger sees no api); the flag only tells a log line why a retry came.
    """

    @property
    def accepted(self) -> bool:
        """True when the blob should be ingested."""
        return self.decision == "accept"


@dataclass(frozen=True)
class LandingPolicy:
    """The one storage account and the containers whose blobs may be ingested."""

    endpoint: str
    """The account's Blob endpoint, normalised: `https://acct.blob.core.windows.net`."""
    containers: frozenset[str]

    @classmethod
    def from_config(cls, config: IngestConfig) -> LandingPolicy:
        """The policy of the configured account and landing containers."""
        from ingest_core.azure.settings import account_settings

        containers = config.allowed_containers()
        if not containers:
            raise ConfigurationError(
                "no landing container: set INGEST_LANDING_PATH (container/{name}) "
                "or INGEST_LANDING_CONTAINERS"
            )
        endpoint = account_settings(config.storage).blob_endpoint
        return cls(endpoint=_blob_form(endpoint).rstrip("/"), containers=containers)

    def url_of(self, name: str) -> str:
        """The URL of blob `name` (`container/path`) in the landing account."""
        return f"{self.endpoint}/{quote_name(name.lstrip('/'))}"

    def check(self, url: str) -> Verdict:
        """Accept `url` (in its Blob form) if it names a blob in a landing container."""
        shown = redact(url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in HTTP_SCHEMES or parts.username or parts.password:
            return Verdict("refuse", None, f"{shown}: not an http(s) blob URL")
        blob_url = _blob_form(url)
        try:
            if parts.query or parts.fragment:  # a SAS or `#` is no part of a blob's name
                raise ConfigurationError(url)
            location = parse_blob_url(blob_url)
        except ConfigurationError:
            return Verdict("refuse", None, f"{shown}: not a blob URL")
        if not blob_url.startswith(self.endpoint + "/"):
            return Verdict("refuse", None, f"{shown}: not in the landing account {self.endpoint}")
        if location.container not in self.containers:
            return Verdict(
                "refuse",
                None,
                f"{shown}: container {location.container!r} is not a landing container "
                f"({', '.join(sorted(self.containers))}); add it to INGEST_LANDING_CONTAINERS",
            )
        if any(s in ("", ".", "..") for s in location.name.split("/")):
            return Verdict("refuse", None, f"{shown}: not a plain blob name")
        return Verdict("accept", blob_url, location=location)


def screen_event(event: Mapping[str, Any], policy: LandingPolicy) -> Verdict:
    """Decide whether an Event Grid or CloudEvents blob event is ingested, and what URL.

    BlobCreated events of a completed write are taken at `data.url`, renames
    at `data.destinationUrl` (see the module docstring); other writes and
    renames are ignored, other event types invalid, each with its reason.
    """
    event_id = str(event.get("id")) if event.get("id") is not None else None
    event_type = event.get("eventType", event.get("type"))
    data = event.get("data")
    if event_type in (BLOB_RENAMED, DIRECTORY_RENAMED):
        return _screen_rename(event_type, data, policy, event_id)
    if event_type != BLOB_CREATED:
        return Verdict(
            "invalid",
            None,
            f"event type {event_type!r} is not one of {', '.join(INGESTED_EVENT_TYPES)}",
            event_id,
        )
    if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
        return Verdict("invalid", None, "BlobCreated event without data.url", event_id)
    api = data.get("api")
    if api not in COMPLETED_WRITES:
        return Verdict(
            "ignore",
            None,
            f"{redact(data['url'])}: api {api!r} is not a completed write "
            "(a CreateFile or SftpCreate makes the empty blob a later "
            "FlushWithClose or SftpCommit fills)",
            event_id,
        )
    length = None if api in LENGTH_UNRELIABLE else _length(data.get("contentLength"))
    verdict = screen_blob(data["url"], length, policy)
    copy_started = api == COPY_STARTED and verdict.accepted
    reason = "CopyBlob: ingested once its copy has finished" if copy_started else verdict.reason
    return dataclasses.replace(
        verdict, reason=reason, event_id=event_id, copy_started=copy_started
    )


def _screen_rename(
    event_type: str, data: object, policy: LandingPolicy, event_id: str | None
) -> Verdict:
    """A BlobRenamed or DirectoryRenamed event: the destination is what landed."""
    if not isinstance(data, Mapping) or not isinstance(data.get("destinationUrl"), str):
        return Verdict("invalid", None, f"{event_type} event without data.destinationUrl", event_id)
    destination: str = data["destinationUrl"]
    api = data.get("api")
    if api not in RENAMES:
        return Verdict(
            "ignore",
            None,
            f"{redact(destination)}: api {api!r} of {event_type} is not a rename",
            event_id,
        )
    directory = event_type == DIRECTORY_RENAMED or api == "RenameDirectory"
    verdict = screen_blob(destination, None, policy)
    source = data.get("sourceUrl")
    moved = f" from {redact(source)}" if isinstance(source, str) else ""
    what = "directory renamed" if directory else "renamed"
    reason = f"{what}{moved}" if verdict.accepted else verdict.reason
    return dataclasses.replace(
        verdict, reason=reason, event_id=event_id, directory=directory and verdict.accepted
    )


def screen_blob(url: str | None, length: int | None, policy: LandingPolicy) -> Verdict:
    """Decide whether a blob the trigger saw (URL, length if known) is ingested."""
    if not url:
        return Verdict("invalid", None, "no blob URL")
    if length == 0:
        return Verdict("ignore", None, f"{redact(url)}: zero-length blob")
    return policy.check(url)


def build_blob_created(
    url: str,
    *,
    content_length: int,
    api: str = "PutBlob",
    etag: str | None = None,
    account_resource_id: str = "",
    schema: Literal["eventgrid", "cloudevents"] = "eventgrid",
) -> dict[str, Any]:
    """A synthetic BlobCreated event for `url`, to replay a file through Event Grid.

    Args:
        url: the blob URL: https://acct.blob.core.windows.net/container/path,
            abfss://container@acct.dfs.core.windows.net/path or Azurite's
            http://127.0.0.1:10000/devstoreaccount1/container/path.
        content_length: the blob's size in bytes (0 is ignored by the app).
        api: the storage operation that created the blob.
        etag: the blob's ETag, if known.
        account_resource_id: the storage account's resource id (the event's topic).
        schema: `eventgrid` (Event Grid schema) or `cloudevents` (CloudEvents 1.0).
    """
    location = parse_blob_url(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in HTTP_SCHEMES:
        host = urlsplit(url).hostname
        if not location.account or not host:
            raise ConfigurationError(
                f"{url}: name the account (abfss://container@account.dfs.core.windows.net/path)"
            )
        url = f"https://{host}/{location.container}/{quote_name(location.name)}"
    subject = f"/blobServices/default/containers/{location.container}/blobs/{location.name}"
    data: dict[str, Any] = {
        "api": api,
        "requestId": str(uuid.uuid4()),
        "eTag": etag,
        "contentType": "application/octet-stream",
        "contentLength": content_length,
        "blobType": "BlockBlob",
        "url": _blob_form(url),
        "sequencer": f"{time.time_ns():032d}",
        "storageDiagnostics": {"batchId": str(uuid.uuid4())},
    }
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    if schema == "cloudevents":
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": account_resource_id,
            "type": BLOB_CREATED,
            "subject": subject,
            "time": now,
            "data": data,
        }
    return {
        "id": event_id,
        "topic": account_resource_id,
        "subject": subject,
        "eventType": BLOB_CREATED,
        "eventTime": now,
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def redact(text: str) -> str:
    """`text` fit for a log line: no query strings (SAS tokens) and no keys or passwords."""
    text = _QUERY.sub(r"\1?***", text)
    return _SECRET.sub(r"\1=***", text)


def _blob_form(url: str) -> str:
    """The URL with an ADLS (`.dfs.`) host turned into the Blob one, scheme and host lowercased."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().replace(".dfs.", ".blob.", 1)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path}"


def _length(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
