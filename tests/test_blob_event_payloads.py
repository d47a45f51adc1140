"""Microsoft's printed blob events, through the worker's decoder and `screen_event`.

The payloads in tests/fixtures/blob_events are Microsoft's examples as printed
(see the README there). Each array element is decoded the way the Python
worker decodes an Event Grid trigger's input (`EventGridEventInConverter`, one
invocation per element), turned into the dict `functions.event_payload` gives
`screen_event`, and screened against a policy for the examples' account.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from ingest_core.config import IngestConfig, StorageConfig
from ingest_core.events import LandingPolicy, Verdict, screen_event
from ingest_core.functions import event_payload

FIXTURES = Path(__file__).parent / "fixtures" / "blob_events"
BLOB = "https://my-storage-account.blob.core.windows.net"


@pytest.fixture(scope="module")
def policy() -> LandingPolicy:
    config = IngestConfig(
        table_uri="./lake/t",
        storage=StorageConfig(account_name="my-storage-account"),
        landing_path="testcontainer/{name}",
        landing_containers=("testcontainer", "my-file-system"),
    )
    return LandingPolicy.from_config(config)


def printed(name: str) -> list[dict[str, Any]]:
    events = json.loads((FIXTURES / name).read_text())
    return events if isinstance(events, list) else [events]


def delivered(raw: dict[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """One array element as the worker hands it to the function."""
    datum = meta.Datum(json.dumps(raw), "json")
    return EventGridEventInConverter.decode(datum, trigger_metadata={})


def screened(raw: dict[str, Any], policy: LandingPolicy) -> Verdict:
    return screen_event(event_payload(delivered(raw)), policy)


# (fixture, decision, URL ingested, directory)
EXPECTED = [
    ("blob-created.eventgrid.json", "accept", f"{BLOB}/testcontainer/new-file.txt", False),
    ("blob-created.cloudevents.json", "accept", f"{BLOB}/testcontainer/new-file.txt", False),
    ("sftp-commit.eventgrid.json", "accept", f"{BLOB}/testcontainer/new-file.txt", False),
    ("sftp-commit.cloudevents.json", "accept", f"{BLOB}/testcontainer/new-file.txt", False),
    (
        "adls-blob-renamed.eventgrid.json", "accept",
        f"{BLOB}/my-file-system/my-renamed-file.txt", False,
    ),
    (
        "adls-blob-renamed.cloudevents.json", "accept",
        f"{BLOB}/my-file-system/my-renamed-file.txt", False,
    ),
    (
        "sftp-blob-renamed.eventgrid.json", "accept",
        f"{BLOB}/testcontainer/my-renamed-file.txt", False,
    ),
    (
        "adls-directory-renamed.eventgrid.json", "accept",
        f"{BLOB}/my-file-system/my-renamed-directory", True,
    ),
    ("adls-create-file.eventgrid.json", "ignore", None, False),
    ("adls-create-file.cloudevents.json", "ignore", None, False),
    ("blob-deleted.eventgrid.json", "invalid", None, False),
    ("adls-directory-created.eventgrid.json", "invalid", None, False),
]


def test_every_fixture_is_covered():
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(e[0] for e in EXPECTED)


@pytest.mark.parametrize(("name", "decision", "url", "directory"), EXPECTED)
def test_printed_events_are_screened_as_the_issue_says(policy, name, decision, url, directory):
    (raw,) = printed(name)
    verdict = screened(raw, policy)
    assert (verdict.decision, verdict.url, verdict.directory) == (decision, url, directory), (
        verdict.reason
    )
    assert verdict.event_id == raw["id"]
    if decision != "accept":
        assert verdict.reason, "a dropped event is logged with its reason"


@pytest.mark.parametrize("name", ["blob-created.cloudevents.json", "sftp-commit.cloudevents.json"])
def test_the_decoder_gives_cloud_events_for_the_cloud_event_schema(name):
    (raw,) = printed(name)
    event = delivered(raw)
    assert isinstance(event, func.CloudEvent)
    assert event_payload(event)["type"] == "Microsoft.Storage.BlobCreated"


def test_sftp_commit_is_taken_although_its_event_says_zero_length(policy):
    """Microsoft's SftpCommit example carries contentLength 0: the read learns the size."""
    (raw,) = printed("sftp-commit.eventgrid.json")
    assert raw["data"]["contentLength"] == 0
    assert screened(raw, policy).accepted


def test_sftp_create_the_empty_blob_before_the_commit_is_ignored(policy):
    """Derived: the page prints no SftpCreate example, only says its api is SftpCreate."""
    (raw,) = printed("sftp-commit.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"]["api"] = "SftpCreate"
    verdict = screened(raw, policy)
    assert verdict.decision == "ignore"
    assert "SftpCreate" in verdict.reason and "not a completed write" in verdict.reason


def test_create_file_reason_names_the_event_that_completes_it(policy):
    (raw,) = printed("adls-create-file.eventgrid.json")
    verdict = screened(raw, policy)
    assert "'CreateFile' is not a completed write" in verdict.reason
    assert "FlushWithClose" in verdict.reason


def test_flush_with_close_of_the_same_file_is_taken(policy):
    """Derived from the CreateFile example: the flush that completes the file."""
    (raw,) = printed("adls-create-file.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"].update(api="FlushWithClose", contentLength=524288)
    verdict = screened(raw, policy)
    assert verdict.accepted and verdict.url == f"{BLOB}/my-file-system/new-file.txt"


def test_a_zero_length_put_is_still_ignored(policy):
    (raw,) = printed("blob-created.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"]["contentLength"] = 0
    assert screened(raw, policy).decision == "ignore"


def test_a_copy_blob_event_is_taken_and_marked_as_a_started_copy(policy):
    (raw,) = printed("blob-created.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"]["api"] = "CopyBlob"
    verdict = screened(raw, policy)
    assert verdict.accepted and verdict.copy_started
    assert "copy" in verdict.reason
    assert not screened(printed("blob-created.eventgrid.json")[0], policy).copy_started


def test_a_rename_names_its_source_in_the_reason(policy):
    (raw,) = printed("adls-blob-renamed.eventgrid.json")
    verdict = screened(raw, policy)
    assert "my-original-file.txt" in verdict.reason


def test_a_rename_into_another_container_is_refused(policy):
    (raw,) = printed("adls-blob-renamed.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"]["destinationUrl"] = (
        "https://my-storage-account.dfs.core.windows.net/archive/my-renamed-file.txt"
    )
    verdict = screened(raw, policy)
    assert verdict.decision == "refuse" and verdict.url is None
    assert not verdict.directory


@pytest.mark.parametrize("data", [{}, {"api": "RenameFile", "url": f"{BLOB}/testcontainer/a"}])
def test_a_rename_without_destination_url_is_invalid(policy, data):
    (raw,) = printed("adls-blob-renamed.eventgrid.json")
    raw = dict(raw, data=data)
    verdict = screened(raw, policy)
    assert verdict.decision == "invalid"
    assert "destinationUrl" in verdict.reason


def test_a_blob_renamed_event_with_an_unknown_api_is_ignored(policy):
    (raw,) = printed("adls-blob-renamed.eventgrid.json")
    raw = copy.deepcopy(raw)
    raw["data"]["api"] = "SetBlobTier"
    assert screened(raw, policy).decision == "ignore"
