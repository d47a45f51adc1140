"""Event Grid `Microsoft.Storage.BlobCreated` events: screen them, and build them.

Event Grid delivers at least once, unordered, and may send several events per
blob (an ADLS file gets a CreateFile event before its FlushWithClose). Only a
completed write of a non-empty blob is worth ingesting, and only a blob in the
configured storage account and landing containers: the URL of an event is
never fetched before it has been checked here.

Both the Event Grid schema (`eventType`, `topic`, `data`) and CloudEvents 1.0
(`type`, `source`, `data`) are understood.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from ingest_core.azure.urls import HTTP_SCHEMES, parse_blob_url, quote_name
from ingest_core.config import IngestConfig
from ingest_core.errors import ConfigurationError

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
COMPLETED_WRITES = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"})
"""`data.api` values that mean the blob's content is complete."""

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
    `invalid` (not a BlobCreated event at all) carry the reason, and are
    dropped without fetching anything.
    """

    decision: Decision
    url: str | None
    reason: str = ""
    event_id: str | None = None

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
        try:
            location = parse_blob_url(url)
        except ConfigurationError:
            return Verdict("refuse", None, f"{shown}: not a blob URL")
        blob_url = _blob_form(url)
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
        return Verdict("accept", blob_url)


def screen_event(event: Mapping[str, Any], policy: LandingPolicy) -> Verdict:
    """Decide whether an Event Grid or CloudEvents BlobCreated event is ingested."""
    event_id = str(event.get("id")) if event.get("id") is not None else None
    event_type = event.get("eventType", event.get("type"))
    data = event.get("data")
    if event_type != BLOB_CREATED:
        return Verdict(
            "invalid", None, f"event type {event_type!r} is not {BLOB_CREATED}", event_id
        )
    if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
        return Verdict("invalid", None, "BlobCreated event without data.url", event_id)
    api = data.get("api")
    if api not in COMPLETED_WRITES:
        return Verdict(
            "ignore",
            None,
            f"{redact(data['url'])}: api {api!r} is not a completed write",
            event_id,
        )
    verdict = screen_blob(data["url"], _length(data.get("contentLength")), policy)
    return Verdict(verdict.decision, verdict.url, verdict.reason, event_id)


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
