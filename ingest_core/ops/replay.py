"""`ingest replay`: re-drive files under sources, or Event Grid's dead-lettered events.

Files are ingested here (`direct`; a content already in the table is a
skip), or one BlobCreated event per blob is published to the Event Grid
topic for the deployed function (`eventgrid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ingest_core.config import IngestConfig
from ingest_core.events import LandingPolicy, redact, screen_event
from ingest_core.ops.common import Progress, list_files, no_progress, open_runner
from ingest_core.results import RunStats
from ingest_core.run_ids import new_run_id

if TYPE_CHECKING:
    from ingest_core.eventgrid_publish import PublishedEvent

Via = Literal["direct", "eventgrid"]
"""`direct`: ingest here; `eventgrid`: publish events for the deployed function."""


@dataclass
class ReplayReport:
    """What a replay did: files ingested here, or events published for the function."""

    via: Via
    stats: RunStats = field(default_factory=RunStats)
    """Results of files ingested here (`direct`)."""
    published: list[PublishedEvent] = field(default_factory=list)
    """`PublishedEvent`s sent to the topic (`eventgrid`)."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """Events or blobs not re-driven, with the decision (ignore, refuse, invalid) and reason."""
    gone: list[str] = field(default_factory=list)
    """Blobs an event named that no longer exist."""
    error: str | None = None
    """Why publishing stopped early (the events before it were sent)."""

    @property
    def ok(self) -> bool:
        """True when every file was ingested, skipped, published or rightly ignored."""
        refused = any(d["decision"] != "ignore" for d in self.dropped)
        return self.stats.ok and not refused and not self.gone and self.error is None

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape."""
        return {
            "via": self.via,
            **self.stats.to_dict(),
            "published": len(self.published),
            "events": [e.to_dict() for e in self.published],
            "dropped": self.dropped,
            "gone": [redact(g) for g in self.gone],
            "error": self.error,
        }


def replay_sources(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress,
    *, run_id: str | None = None,
) -> ReplayReport:
    """Ingest every file under `sources` here, as `ingest run` does (`config.workers` too).

    Files whose content is in the table already are skipped. `run_id` (default:
    a new one) is on their rows and commits, and in the report.
    """
    runner = open_runner(config)
    try:
        files = list_files(sources, config.storage)
        with progress(len(files)) as advance:
            stats = runner.run(files, advance, run_id=run_id or new_run_id())
            return ReplayReport(via="direct", stats=stats)
    finally:
        runner.close()


def publish_sources(
    config: IngestConfig, sources: Sequence[str], progress: Progress = no_progress,
    *, run_id: str | None = None,
) -> ReplayReport:
    """Publish one BlobCreated event per blob under `sources` to the Event Grid topic."""
    from ingest_core.eventgrid_publish import blob_created_events

    report = ReplayReport(via="eventgrid", stats=RunStats(run_id=run_id or new_run_id()))
    files = []
    for file in list_files(sources, config.storage):
        if file.size == 0:
            report.dropped.append(_drop("ignore", f"{file.uri}: zero-length blob"))
        else:
            files.append(file)
    _publish(config, blob_created_events(files, config.storage), report, progress)
    return report


def replay_dead_letters(
    config: IngestConfig, location: str, via: Via, progress: Progress = no_progress,
    *, run_id: str | None = None,
) -> ReplayReport:
    """Re-drive the events in Event Grid's dead-letter blobs under `location`.

    Each event is screened like a live one (completed write, landing account
    and container); accepted ones are ingested here (`direct`, one file per
    blob however often it was dead-lettered) or published again (`eventgrid`).
    """
    from ingest_core.deadletter import read_dead_letters

    policy = LandingPolicy.from_config(config)
    report = ReplayReport(via=via, stats=RunStats(run_id=run_id or new_run_id()))
    accepted: dict[str, dict[str, Any]] = {}
    for letter in read_dead_letters(location, config.storage):
        verdict = screen_event(letter.event, policy)
        if verdict.accepted:
            assert verdict.url is not None
            accepted.setdefault(verdict.url, letter.event)
        else:
            report.dropped.append(
                _drop(verdict.decision, verdict.reason, verdict.event_id, letter.blob,
                      letter.reason)
            )
    if via == "eventgrid":
        _publish(config, list(accepted.values()), report, progress)
        return report
    runner = open_runner(config)
    try:
        from ingest_core.session import distinct

        found, report.gone = runner.present_all(accepted)
        files = distinct(found.values())
        with progress(len(files)) as advance:
            report.stats = runner.run(files, advance, run_id=report.stats.run_id)
    finally:
        runner.close()
    return report


def _publish(
    config: IngestConfig, events: list[dict[str, Any]], report: ReplayReport, progress: Progress
) -> None:
    from azure.core.exceptions import AzureError

    from ingest_core.eventgrid_publish import publish, publisher_client

    client = publisher_client(config)
    with progress(len(events)) as advance:

        def sent(events: list[PublishedEvent]) -> None:
            report.published.extend(events)
            for event in events:
                advance(event)

        try:
            publish(client, events, sent)
        except AzureError as exc:
            report.error = (
                f"the Event Grid topic {config.eventgrid_topic_endpoint} refused events after "
                f"{len(report.published)} were sent: {redact(str(exc))[:300]}; check the topic "
                "endpoint and INGEST_EVENTGRID_KEY (or the identity's 'EventGrid Data Sender' "
                "role) and replay again (a replay sent twice is harmless)"
            )
        finally:
            client.close()


def _drop(
    decision: str, reason: str, event_id: str | None = None, blob: str | None = None,
    dead_letter_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "decision": decision,
        "reason": redact(reason),
        "event_id": event_id,
        "blob": redact(blob) if blob else None,
        "dead_letter_reason": dead_letter_reason,
    }
