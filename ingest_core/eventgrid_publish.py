"""Publishing BlobCreated events to an Event Grid topic, so the deployed function ingests.

`ingest replay --via eventgrid` does not read a byte of the files: it sends one
`Microsoft.Storage.BlobCreated` event (Event Grid schema) per blob to a
custom topic whose subscription delivers to the Functions app's Event Grid
trigger, which screens and ingests each one like a live event. The topic is
reached with its access key, or with Microsoft Entra identity (the
`EventGrid Data Sender` role) when no key is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingest_core.azure.urls import parse_blob_url, quote_name
from ingest_core.config import IngestConfig, StorageConfig, is_local
from ingest_core.errors import ConfigurationError
from ingest_core.events import BLOB_CREATED, build_blob_created, redact

if TYPE_CHECKING:
    from azure.eventgrid import EventGridEvent, EventGridPublisherClient

    from ingest_core.sources import SourceFile

BATCH_EVENTS = 100
"""Events per request: BlobCreated events are ~1 KB, well inside the 1 MB request limit."""


@dataclass(frozen=True)
class PublishedEvent:
    """One event sent to the topic."""

    id: str
    url: str
    size: int | None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"id": self.id, "url": redact(self.url), "size": self.size}


def publisher_client(config: IngestConfig) -> EventGridPublisherClient:
    """A client for the configured topic: its key, else Microsoft Entra identity."""
    endpoint = config.eventgrid_topic_endpoint
    if not endpoint:
        raise ConfigurationError(
            "no Event Grid topic: pass --topic-endpoint URL or set "
            "INGEST_EVENTGRID_TOPIC_ENDPOINT (https://TOPIC.REGION-1.eventgrid.azure.net/api/events)"
        )
    from azure.eventgrid import EventGridPublisherClient

    credential: Any
    if config.eventgrid_key:
        from azure.core.credentials import AzureKeyCredential

        credential = AzureKeyCredential(config.eventgrid_key)
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return EventGridPublisherClient(endpoint, credential)


def blob_event_url(uri: str, storage: StorageConfig) -> str:
    """The https Blob URL of a listed blob, as live BlobCreated events carry it."""
    from ingest_core.azure.settings import account_settings

    location = parse_blob_url(uri)
    endpoint = account_settings(storage, location.account).blob_endpoint
    return f"{endpoint}/{location.container}/{quote_name(location.name)}"


def grid_event(event: Mapping[str, Any]) -> EventGridEvent:
    """The SDK's EventGridEvent for an event dict (Event Grid schema or CloudEvents).

    The id is kept, so the function's log lines name the event that was replayed.
    """
    from azure.eventgrid import EventGridEvent

    raw_time = event.get("eventTime") or event.get("time")
    event_time = datetime.fromisoformat(str(raw_time).replace("Z", "+00:00")) if raw_time else None
    return EventGridEvent(
        subject=str(event.get("subject") or ""),
        event_type=str(event.get("eventType") or event.get("type") or BLOB_CREATED),
        data=event.get("data"),
        data_version=str(event.get("dataVersion") or ""),
        id=event.get("id"),
        event_time=event_time,
    )


def publish(
    client: EventGridPublisherClient,
    events: Sequence[Mapping[str, Any]],
    on_sent: Callable[[list[PublishedEvent]], None] | None = None,
) -> list[PublishedEvent]:
    """Send `events` in batches of `BATCH_EVENTS`; `on_sent(batch)` after each one.

    Raises the SDK's HttpResponseError when the topic refuses a batch; the
    batches sent before it stay sent (a replay sent twice is harmless).
    """
    sent: list[PublishedEvent] = []
    for start in range(0, len(events), BATCH_EVENTS):
        batch = events[start : start + BATCH_EVENTS]
        client.send([grid_event(e) for e in batch])
        done = [
            PublishedEvent(str(e.get("id")), str((e.get("data") or {}).get("url")),
                           (e.get("data") or {}).get("contentLength"))
            for e in batch
        ]
        sent += done
        if on_sent is not None:
            on_sent(done)
    return sent


def blob_created_events(
    files: Iterable[SourceFile], storage: StorageConfig
) -> list[dict[str, Any]]:
    """One synthetic BlobCreated event per listed blob (local files cannot be published)."""
    events = []
    for file in files:
        if is_local(file.uri):
            raise ConfigurationError(
                f"{file.uri} is a local file: the deployed function cannot read it; "
                "replay local files with --via direct"
            )
        url = blob_event_url(file.uri, storage)
        events.append(build_blob_created(url, content_length=file.size or 0, etag=file.etag))
    return events
