"""`ingest poison list|replay`: the blob trigger's poison queue, read and re-driven.

The Functions blob trigger (EventGrid source) queues each event on
`azure-webjobs-blobtrigger-<hostId>` in the host's storage account
(AzureWebJobsStorage); after `poisonBlobThreshold` failed invocations the
message moves to `webjobs-blobtrigger-poison` and nothing runs it again. A
message is a base64-encoded JSON object as the runtime writes it::

    {"Type": "BlobTrigger", "FunctionId": "Host.Functions.ingest_on_arrival",
     "BlobType": "BlockBlob", "ContainerName": "landing", "BlobName": "a/b.csv",
     "ETag": "\\"0x8DC...\\""}

It names no account: the blob is in the trigger's account, which is the
landing storage here (`IngestConfig.storage`). `replay_poison` re-drives each
message's blob through the exactly-once core (a content already in the table
is a skip) and deletes the message once its file is settled.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.errors import ConfigurationError
from ingest_core.events import redact
from ingest_core.ops.common import Progress, no_progress, open_runner
from ingest_core.results import IngestResult, RunStats
from ingest_core.run_ids import new_run_id

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

POISON_QUEUE = IngestConfig.poison_queue
"""Where the Functions host moves a blob trigger message after `poisonBlobThreshold` failures."""
PEEK_LIMIT = 32
"""The most messages the Queue service shows in one peek (`ingest poison list`)."""
DELETED_OUTCOMES = frozenset({"ingested", "skipped", "quarantined"})
"""File outcomes after which a message is deleted: the file is settled (a quarantined one
waits for `ingest quarantine release`, not for the queue)."""
SETTLED_OUTCOMES = frozenset({"ingested", "skipped"})
"""File outcomes that leave nothing for the operator to do."""


@dataclass
class PoisonMessage:
    """One poison-queue message, decoded as far as it goes."""

    id: str
    dequeue_count: int | None
    inserted_on: datetime | None
    container: str | None = None
    blob: str | None = None
    url: str | None = None
    """The blob's URL in the landing account; None when the message could not be decoded."""
    etag: str | None = None
    function_id: str | None = None
    error: str | None = None
    """Why the message could not be decoded (it is then never deleted)."""
    outcome: str | None = None
    """After a replay: the file's outcome, `gone`, `refused` or `undecodable`."""
    deleted: bool = False
    pop_receipt: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one message."""
        return {
            "id": self.id,
            "url": redact(self.url) if self.url else None,
            "container": self.container,
            "blob": self.blob,
            "etag": self.etag,
            "function_id": self.function_id,
            "dequeue_count": self.dequeue_count,
            "inserted_on": self.inserted_on.isoformat() if self.inserted_on else None,
            "error": self.error,
            "outcome": self.outcome,
            "deleted": self.deleted,
        }


@dataclass
class PoisonListReport:
    """The first messages of the poison queue (a peek: nothing is changed)."""

    queue: str
    depth: int
    """The queue's approximate message count (all of them, not just those shown)."""
    messages: list[PoisonMessage] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "queue": self.queue,
            "depth": self.depth,
            "shown": len(self.messages),
            "messages": [m.to_dict() for m in self.messages],
        }


@dataclass
class PoisonReplayReport:
    """What re-driving the poison queue did, message by message."""

    queue: str
    messages: list[PoisonMessage] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)

    @property
    def ok(self) -> bool:
        """True when every message's file was ingested or skipped."""
        return all(m.outcome in SETTLED_OUTCOMES for m in self.messages)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape: per-message outcomes, counts, and the files' results."""
        outcomes: dict[str, int] = {}
        for message in self.messages:
            outcomes[str(message.outcome)] = outcomes.get(str(message.outcome), 0) + 1
        return {
            "queue": self.queue,
            "received": len(self.messages),
            "deleted": sum(m.deleted for m in self.messages),
            "kept": sum(not m.deleted for m in self.messages),
            "outcomes": outcomes,
            "run_id": self.stats.run_id,
            "messages": [m.to_dict() for m in self.messages],
            "stats": self.stats.to_dict(),
        }


def decode_message(content: str | bytes) -> dict[str, Any]:
    """The JSON object of a blob trigger message: base64 of UTF-8 JSON, or plain JSON.

    Raises:
        ValueError: neither decodes to a JSON object naming `ContainerName` and `BlobName`.
    """
    raw = content.encode() if isinstance(content, str) else content
    candidates = [raw.strip()]
    try:
        candidates.insert(0, base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError):
        pass
    for candidate in candidates:
        try:
            body = json.loads(candidate.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(body, dict):
            continue
        kind = body.get("Type", "BlobTrigger")
        if kind != "BlobTrigger":
            raise ValueError(f"a {kind!r} message, not a blob trigger's")
        names = body.get("ContainerName"), body.get("BlobName")
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError("the JSON names no ContainerName and BlobName")
        return body
    raise ValueError("neither base64-encoded JSON nor JSON")


def poison_queue(config: IngestConfig, queue: str | None = None) -> QueueClient:
    """A client for the poison queue in the Functions host's storage account.

    Raises:
        ConfigurationError: no account is configured for it.
    """
    from ingest_core.azure.auth import queue_service
    from ingest_core.azure.settings import account_settings

    storage = config.trigger_storage or config.storage
    if not (storage.connection_string or storage.account_name):
        raise ConfigurationError(
            "no storage account for the blob trigger's poison queue: pass --connection or set "
            "INGEST_TRIGGER_STORAGE to the Functions app's AzureWebJobsStorage connection string"
        )
    return queue_service(account_settings(storage)).get_queue_client(
        queue or config.poison_queue
    )


def poison_depth(config: IngestConfig, queue: str | None = None) -> int:
    """The poison queue's approximate message count (0 when the queue does not exist yet).

    Raises:
        ConfigurationError: no account is configured for it.
        azure.core.exceptions.AzureError: the queue could not be read.
    """
    from azure.core.exceptions import ResourceNotFoundError

    client = poison_queue(config, queue)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0
    finally:
        client.close()


def list_poison(config: IngestConfig, queue: str | None = None) -> PoisonListReport:
    """Peek at the first messages (at most `PEEK_LIMIT`) and count them all; changes nothing."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    client = poison_queue(config, queue)
    queue = client.queue_name
    report = PoisonListReport(queue=queue, depth=0)
    try:
        report.depth = int(client.get_queue_properties().approximate_message_count or 0)
        peeked = client.peek_messages(max_messages=PEEK_LIMIT)
    except ResourceNotFoundError:
        return report
    except AzureError as exc:
        raise _unreadable(config, queue, exc) from None
    finally:
        client.close()
    report.messages = [_decoded(config, m) for m in peeked]
    return report


def replay_poison(
    config: IngestConfig,
    queue: str | None = None,
    *,
    limit: int | None = None,
    visibility_timeout: int = 600,
    drop_gone: bool = False,
    progress: Progress = no_progress,
    run_id: str | None = None,
) -> PoisonReplayReport:
    """Re-drive each poison message's blob, deleting the message once its file is settled.

    Messages are received (hidden for `visibility_timeout` seconds, at most
    `limit` of them), their blobs ingested as `ingest replay` would, then:
    deleted when the file was ingested, skipped (its content is in the table)
    or quarantined (reported: `ingest quarantine` holds it now); kept, and
    visible again at once, when it failed, is in progress elsewhere, could not
    be decoded, names a container outside the landing containers, or names a
    blob that no longer exists (`gone`; deleted with `drop_gone`). `run_id`
    (default: a new one) is on the files' rows and commits, and in the report.
    """
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    client = poison_queue(config, queue)
    queue = client.queue_name
    report = PoisonReplayReport(queue=queue, stats=RunStats(run_id=run_id or new_run_id()))
    try:
        try:
            received = list(client.receive_messages(
                messages_per_page=PEEK_LIMIT, visibility_timeout=visibility_timeout,
                max_messages=limit,
            ))
        except ResourceNotFoundError:
            return report
        except AzureError as exc:
            raise _unreadable(config, queue, exc) from None
        report.messages = [_decoded(config, m) for m in received]
        _redrive(config, report, progress)
        for message in report.messages:
            _settle(client, message, drop_gone)
    finally:
        client.close()
    return report


def _redrive(config: IngestConfig, report: PoisonReplayReport, progress: Progress) -> None:
    allowed = config.allowed_containers()
    urls: dict[str, list[PoisonMessage]] = {}
    for message in report.messages:
        if message.url is None:
            message.outcome = "undecodable"
        elif allowed and message.container not in allowed:
            message.outcome = "refused"
            message.error = (
                f"container {message.container!r} is not a landing container "
                f"({', '.join(sorted(allowed))}); set INGEST_LANDING_CONTAINERS to ingest it"
            )
        else:
            urls.setdefault(message.url, []).append(message)
    if not urls:
        return
    runner = open_runner(config)
    try:
        found, gone = runner.present_all(urls)
        for url in gone:
            for message in urls[url]:
                message.outcome = "gone"
                message.error = (
                    f"{redact(url)}: no such blob any more; land it again to ingest it, or "
                    "replay with --drop-gone to delete the message"
                )
        present = [(file, urls[url]) for url, file in found.items()]
        with progress(len(present)) as advance:
            report.stats = runner.run(
                [f for f, _ in present], advance, run_id=report.stats.run_id
            )
    finally:
        runner.close()
    outcomes = _by_path(report.stats.files)
    for file, messages in present:
        result = outcomes.get(file.uri)
        for message in messages:
            message.outcome = result.status if result else "failed"
            message.error = result.error if result else "no result for this file"


def _by_path(results: Iterable[IngestResult]) -> dict[str, IngestResult]:
    return {r.path: r for r in results}


def _settle(client: QueueClient, message: PoisonMessage, drop_gone: bool) -> None:
    """Delete a settled message; give a kept one back to the queue at once."""
    from azure.core.exceptions import AzureError

    delete = message.outcome in DELETED_OUTCOMES or (drop_gone and message.outcome == "gone")
    try:
        if delete:
            client.delete_message(message.id, message.pop_receipt)
            message.deleted = True
        else:
            client.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    except AzureError as exc:
        action = "delete" if delete else "unhide"
        message.error = (
            f"could not {action} the message ({type(exc).__name__}); it returns to the queue "
            "when its visibility timeout ends: run `ingest poison replay` again"
        )


def _decoded(config: IngestConfig, message: Any) -> PoisonMessage:
    decoded = PoisonMessage(
        id=message.id, dequeue_count=message.dequeue_count, inserted_on=message.inserted_on,
        pop_receipt=getattr(message, "pop_receipt", None),
    )
    try:
        body = decode_message(message.content)
    except ValueError as exc:
        decoded.error = (
            f"message {message.id}: {exc}; not a blob trigger message, so it is left in the "
            "queue: read it with Storage Explorer, then delete it by hand"
        )
        return decoded
    decoded.container, decoded.blob = body["ContainerName"], body["BlobName"]
    decoded.etag = body.get("ETag") if isinstance(body.get("ETag"), str) else None
    decoded.function_id = body.get("FunctionId") if isinstance(body.get("FunctionId"), str) \
        else None
    decoded.url = blob_url(config.storage, body["ContainerName"], body["BlobName"])
    return decoded


def blob_url(storage: StorageConfig, container: str, name: str) -> str:
    """The URL of `container/name` in the landing account (the blob trigger's account)."""
    from ingest_core.azure.settings import account_settings
    from ingest_core.azure.urls import quote_name

    endpoint = account_settings(storage).blob_endpoint
    return f"{endpoint}/{container}/{quote_name(name)}"


def _unreadable(config: IngestConfig, queue: str, exc: Exception) -> ConfigurationError:
    from ingest_core.azure.settings import account_settings

    endpoint = account_settings(config.trigger_storage or config.storage).queue_url
    return ConfigurationError(
        f"could not read the queue {queue} at {endpoint} ({type(exc).__name__}: "
        f"{redact(str(exc))[:200]}); check --connection or INGEST_TRIGGER_STORAGE (the Functions "
        "app's AzureWebJobsStorage) and that the identity may read and delete queue messages"
    )
