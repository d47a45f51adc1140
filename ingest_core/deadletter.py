"""Reading Event Grid dead-letter blobs: the events a subscription gave up delivering.

Event Grid writes them to a container as
`CONTAINER/SUBSCRIPTION-NAME/YYYY/M/D/H/<guid>.json`, each blob a JSON array
of events. An Event Grid-schema event is stored as delivered plus
`deadLetterReason`, `deliveryAttempts`, `lastDeliveryOutcome`,
`lastHttpStatusCode`, `publishTime` and `lastDeliveryAttemptTime`; a
CloudEvents one as `{"event": {...}, "deadLetterProperties": {...}}` (or with
those properties as lower-case extension attributes). Either way the original
event is recovered here, to be screened (`events.screen_event`) and re-driven.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest_core.azure.urls import is_blob_url
from ingest_core.config import StorageConfig
from ingest_core.errors import ConfigurationError

DEAD_LETTER_FIELDS = (
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "lastHttpStatusCode",
    "publishTime",
    "lastDeliveryAttemptTime",
)
_LOWER = {name.lower(): name for name in DEAD_LETTER_FIELDS}


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event: the original event and why Event Grid gave up on it."""

    blob: str
    """The dead-letter blob it was read from."""
    event: dict[str, Any]
    """The event as it was published (dead-letter properties removed)."""
    details: dict[str, Any] = field(default_factory=dict)
    """deadLetterReason, deliveryAttempts, lastDeliveryOutcome, ... as Event Grid wrote them."""

    @property
    def reason(self) -> str | None:
        """Event Grid's reason (MaxDeliveryAttemptsExceeded, TimeToLiveExceeded, ...)."""
        value = self.details.get("deadLetterReason")
        return None if value is None else str(value)


def dead_letter_root(location: str, storage: StorageConfig) -> str:
    """The URL of `CONTAINER/PREFIX` in the configured account (a full URL is kept)."""
    if is_blob_url(location):
        return location
    from ingest_core.azure.settings import account_settings
    from ingest_core.azure.urls import quote_name

    container, _, prefix = location.strip("/").partition("/")
    if not container:
        raise ConfigurationError(
            f"--from-dead-letter {location!r}: give CONTAINER/PREFIX, e.g. "
            "deadletters/INGEST-REPLAY/2026/11"
        )
    endpoint = account_settings(storage).blob_endpoint
    return f"{endpoint}/{container}/{quote_name(prefix)}"


def parse_dead_letters(text: str | bytes, blob: str) -> list[DeadLetter]:
    """The events in one dead-letter blob's content.

    Raises ConfigurationError naming the blob when it is not a JSON array of events.
    """
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"dead-letter blob {blob} is not JSON ({exc}); is the prefix right?"
        ) from None
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ConfigurationError(
            f"dead-letter blob {blob} is not a JSON array of events; is the prefix right?"
        )
    return [_one(item, blob) for item in items]


def _one(item: Mapping[str, Any], blob: str) -> DeadLetter:
    wrapped = item.get("event")
    if isinstance(wrapped, Mapping):
        props = item.get("deadLetterProperties")
        named = {_LOWER.get(str(k).lower(), str(k)): v for k, v in dict(props or {}).items()}
        return DeadLetter(blob, dict(wrapped), named)
    event: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, value in item.items():
        name = _LOWER.get(key.lower())
        if name is not None:
            details[name] = value
        else:
            event[key] = value
    return DeadLetter(blob, event, details)


def read_dead_letters(location: str, storage: StorageConfig) -> Iterator[DeadLetter]:
    """Every dead-lettered event in the blobs under `location` (CONTAINER/PREFIX or a URL)."""
    from ingest_core.sources.azure_blob import AzureBlobSource

    source = AzureBlobSource(storage)
    root = dead_letter_root(location, storage)
    spool = Path(tempfile.gettempdir())
    for file in source.list(root):
        copy = source.fetch(file, spool)
        try:
            text = copy.path.read_bytes()
        finally:
            copy.discard()
        yield from parse_dead_letters(text, file.uri)
