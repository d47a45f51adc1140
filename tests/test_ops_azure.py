"""Operator commands against Azurite: replay, sweep, Event Grid publishing and dead letters.

Blobs, the landing container and the dead-letter container are on Azurite;
the ledger is SQLite and the table local Delta (both real). Event Grid is the
only stand-in: Azurite has none, so a plain HTTP server on 127.0.0.1 plays the
topic endpoint. The real `azure-eventgrid` publisher client signs and
serializes the request (`aeg-sas-key`, the JSON array of events); the server
only captures the body, and each captured event is handed to the Functions
app's Event Grid trigger as the worker would (a `func.EventGridEvent`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from conftest import AZURITE_ACCOUNT, AZURITE_KEY
from helpers import id_counts

import function_app
from ingest_core.cli import EXIT_FILES_NOT_DONE, EXIT_OK, run_cli
from ingest_core.events import build_blob_created
from ingest_core.functions import app_config

pytestmark = pytest.mark.azurite

BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
CSVS = {
    "orders/2026/a.csv": b"id,amount\n1,1.5\n2,3.0\n",
    "orders/2026/b.csv": b"id,amount\n3,4.5\n",
    "orders/2026/11/c.csv": b"id,amount\n4,6.0\n5,7.5\n",
}
ALL_IDS = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


@dataclass
class Lake:
    """A landing container on Azurite, a local table and a SQLite ledger, in app settings."""

    container: Any
    name: str
    table: str
    ledger: str

    def put(self, name: str, data: bytes) -> str:
        self.container.upload_blob(name, data, overwrite=True)
        return self.url(name)

    def url(self, name: str = "") -> str:
        return f"{BLOB_ENDPOINT}/{self.name}/{name}"

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = run_cli([*args, "--table", self.table, "--json"])
        return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def lake(azurite, unique_name, tmp_path, monkeypatch) -> Iterator[Lake]:
    """A fresh landing container; the CLI and the function app read the same settings."""
    from azure.storage.blob import BlobServiceClient

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    table = str(tmp_path / "lake" / "orders")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    settings = {
        "INGEST_TABLE_URI": table,
        "INGEST_LEDGER_URI": ledger,
        "INGEST_STORAGE_CONNECTION": azurite,
        "INGEST_LANDING_PATH": f"{unique_name}/{{name}}",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()
    service = BlobServiceClient.from_connection_string(azurite)
    container = service.create_container(unique_name)
    yield Lake(container, unique_name, table, ledger)
    container.delete_container()
    app_config.cache_clear()


@dataclass
class Topic:
    """The stand-in Event Grid topic endpoint: records each POST's headers and JSON body."""

    endpoint: str
    requests: list[tuple[dict[str, str], Any]]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for _, body in self.requests for event in body]


@contextmanager
def topic_endpoint(status: int = 200) -> Iterator[Topic]:
    """The stand-in topic on 127.0.0.1, answering every POST with `status`."""
    requests: list[tuple[dict[str, str], Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            requests.append((dict(self.headers), json.loads(body)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Topic(f"http://127.0.0.1:{server.server_port}/api/events", requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def topic() -> Iterator[Topic]:
    with topic_endpoint() as endpoint:
        yield endpoint


def delivered(raw: dict[str, Any]) -> func.EventGridEvent:
    """What the Functions worker hands the Event Grid trigger for one Event Grid-schema event.

    Event Grid stamps `topic` (the topic's resource id) and `metadataVersion`
    on delivery; the publisher leaves them out.
    """
    return func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw.get("topic") or "/subscriptions/x/resourceGroups/y/providers/"
        "Microsoft.EventGrid/topics/ingest-replay",
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"].replace("Z", "+00:00")),
        data_version=raw["dataVersion"],
    )


def test_replay_of_a_whole_prefix_ingests_only_what_is_missing(lake, capsys):
    urls = {name: lake.put(name, data) for name, data in CSVS.items()}
    assert run_cli(["run", urls["orders/2026/a.csv"], "--table", lake.table]) == EXIT_OK
    code, report = lake.cli_json(capsys, "replay", lake.url("orders/"))
    assert code == EXIT_OK
    assert (report["ingested"], report["skipped"]) == (2, 1)
    assert sorted(f["path"] for f in report["files"] if f["status"] == "ingested") == [
        urls["orders/2026/11/c.csv"], urls["orders/2026/b.csv"],
    ]
    assert id_counts(lake.table) == ALL_IDS


def test_published_events_are_accepted_by_the_event_grid_trigger(lake, topic, capsys, monkeypatch):
    for name, data in CSVS.items():
        lake.put(name, data)
    lake.put("orders/2026/empty.csv", b"")
    monkeypatch.setenv("INGEST_EVENTGRID_KEY", "topic-key")
    code, report = lake.cli_json(capsys, "replay", lake.url("orders/"), "--via", "eventgrid",
                                 "--topic-endpoint", topic.endpoint)
    assert code == EXIT_OK
    assert report["published"] == 3 and report["files"] == []
    assert [d["decision"] for d in report["dropped"]] == ["ignore"]  # the zero-length blob
    [(headers, _)] = topic.requests
    assert headers["aeg-sas-key"] == "topic-key"
    events = topic.events
    assert {e["eventType"] for e in events} == {"Microsoft.Storage.BlobCreated"}
    assert sorted(e["data"]["url"] for e in events) == sorted(lake.url(n) for n in CSVS)
    assert not Path(lake.table).exists(), "publishing reads no file and writes no table"

    for event in events + events:  # Event Grid delivers at least once
        function_app.ingest_replay(delivered(event))
    assert id_counts(lake.table) == ALL_IDS


def dead_letter_blob(subscription: str, items: list[dict[str, Any]]) -> tuple[str, bytes]:
    """A blob as Event Grid dead-letters: SUBSCRIPTION/YYYY/M/D/H/<guid>.json, a JSON array."""
    now = datetime.now(UTC)
    name = (f"{subscription.upper()}/{now.year}/{now.month}/{now.day}/{now.hour}/"
            f"{uuid.uuid4()}.json")
    return name, json.dumps(items).encode()


def eventgrid_dead_letter(url: str, size: int, **event: Any) -> dict[str, Any]:
    """An Event Grid-schema event as dead-lettered: the event plus Event Grid's delivery record."""
    raw = {**build_blob_created(url, content_length=size), **event}
    raw.update(
        deadLetterReason="MaxDeliveryAttemptsExceeded",
        deliveryAttempts=30,
        lastDeliveryOutcome="GenericError",
        lastHttpStatusCode=500,
        publishTime="2026-11-25T01:02:03.4567890Z",
        lastDeliveryAttemptTime="2026-11-26T01:02:03.4567890Z",
    )
    return raw


def cloudevent_dead_letter(url: str, size: int) -> dict[str, Any]:
    """A CloudEvents-schema event as dead-lettered: wrapped, with deadLetterProperties."""
    return {
        "event": build_blob_created(url, content_length=size, schema="cloudevents"),
        "deadLetterProperties": {
            "deadletterreason": "TimeToLiveExceeded", "deliveryattempts": 12,
            "lastdeliveryoutcome": "TimedOut", "lasthttpstatuscode": 408,
        },
    }


@pytest.fixture
def dead_letters(lake, azurite) -> Iterator[Any]:
    from azure.storage.blob import BlobServiceClient

    name = lake.name + "dl"
    container = BlobServiceClient.from_connection_string(azurite).create_container(name)
    yield container
    container.delete_container()


def test_a_dead_letter_blob_in_event_grid_format_is_redriven(lake, dead_letters, capsys):
    urls = {name: lake.put(name, data) for name, data in CSVS.items()}
    a, b, c = (urls[n] for n in CSVS)
    sizes = {u: len(d) for u, d in zip(urls.values(), CSVS.values(), strict=True)}
    name, body = dead_letter_blob("ingest-replay", [
        eventgrid_dead_letter(a, sizes[a]),
        eventgrid_dead_letter(a, sizes[a]),  # dead-lettered twice: one ingestion
        eventgrid_dead_letter(b, sizes[b], data={**build_blob_created(b, content_length=1)["data"],
                                                 "api": "CreateFile"}),
    ])
    dead_letters.upload_blob(name, body)
    name, body = dead_letter_blob("ingest-replay", [cloudevent_dead_letter(c, sizes[c])])
    dead_letters.upload_blob(name, body)

    code, report = lake.cli_json(capsys, "replay", "--from-dead-letter",
                                 f"{dead_letters.container_name}/INGEST-REPLAY/")
    assert code == EXIT_OK
    assert report["via"] == "direct"
    assert sorted(f["path"] for f in report["files"]) == sorted([a, c])
    assert report["ingested"] == 2
    [dropped] = report["dropped"]
    assert dropped["decision"] == "ignore" and "CreateFile" in dropped["reason"]
    assert dropped["dead_letter_reason"] == "MaxDeliveryAttemptsExceeded"
    assert id_counts(lake.table) == {1: 1, 2: 1, 4: 1, 5: 1}


def test_dead_letters_for_other_containers_are_refused_and_reported(lake, dead_letters, capsys):
    elsewhere = f"{BLOB_ENDPOINT}/{dead_letters.container_name}/secret.csv"
    name, body = dead_letter_blob("ingest-replay", [eventgrid_dead_letter(elsewhere, 10)])
    dead_letters.upload_blob(name, body)
    code, report = lake.cli_json(capsys, "replay", "--from-dead-letter",
                                 dead_letters.container_name)
    assert code == EXIT_FILES_NOT_DONE
    [dropped] = report["dropped"]
    assert dropped["decision"] == "refuse" and "not a landing container" in dropped["reason"]
    assert not Path(lake.table).exists()


def test_dead_letters_can_be_republished_to_event_grid(lake, dead_letters, topic, capsys,
                                                        monkeypatch):
    url = lake.put("orders/2026/a.csv", CSVS["orders/2026/a.csv"])
    name, body = dead_letter_blob("ingest-replay", [eventgrid_dead_letter(url, 22)])
    dead_letters.upload_blob(name, body)
    monkeypatch.setenv("INGEST_EVENTGRID_TOPIC_ENDPOINT", topic.endpoint)
    monkeypatch.setenv("INGEST_EVENTGRID_KEY", "topic-key")
    code, report = lake.cli_json(capsys, "replay", "--from-dead-letter",
                                 dead_letters.container_name, "--via", "eventgrid")
    assert code == EXIT_OK and report["published"] == 1
    [event] = topic.events
    assert "deadLetterReason" not in event and event["data"]["url"] == url
    function_app.ingest_replay(delivered(event))
    assert id_counts(lake.table) == {1: 1, 2: 1}


def test_sweep_finds_missed_and_overwritten_blobs_without_reading_the_rest(lake, capsys):
    urls = {name: lake.put(name, data) for name, data in list(CSVS.items())[:2]}
    assert run_cli(["run", lake.url("orders/"), "--table", lake.table]) == EXIT_OK
    missed = lake.put("orders/2026/11/c.csv", CSVS["orders/2026/11/c.csv"])
    overwritten = lake.put("orders/2026/b.csv", b"id,amount\n6,9.0\n")

    code, report = lake.cli_json(capsys, "sweep", lake.url("orders/"))
    assert code == EXIT_OK
    assert report["listed"] == 3
    assert report["found"]["unseen"] == [missed]
    assert report["found"]["changed"] == [overwritten]
    assert report["ingested"] == 2
    assert urls["orders/2026/a.csv"] not in [f["path"] for f in report["files"]]
    assert id_counts(lake.table) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}

    code, again = lake.cli_json(capsys, "sweep", lake.url("orders/"))
    assert code == EXIT_OK and again["files"] == []
    assert again["found"] == {"unseen": [], "changed": [], "stalled": [], "unrouted": []}


def test_a_topic_that_refuses_events_is_reported_with_what_to_check(lake, capsys, monkeypatch):
    lake.put("orders/a.csv", CSVS["orders/2026/a.csv"])
    monkeypatch.setenv("INGEST_EVENTGRID_KEY", "wrong-key")
    with topic_endpoint(status=401) as refusing:
        code, report = lake.cli_json(capsys, "replay", lake.url("orders/"), "--via", "eventgrid",
                                     "--topic-endpoint", refusing.endpoint)
    assert code == EXIT_FILES_NOT_DONE
    assert report["published"] == 0 and len(refusing.requests) == 1
    assert "INGEST_EVENTGRID_KEY" in report["error"] and "wrong-key" not in report["error"]



def test_show_finds_in_an_abfs_tables_log_the_version_a_dead_worker_committed(
    azurite, unique_name, tmp_path, capsys, monkeypatch
):
    """A worker killed between its Delta commit and `succeeded` leaves the row `processing`
    with no version: `show` must read the remote log, with the table's credentials, to say
    where the file's rows are."""
    from azure.storage.blob import BlobServiceClient
    from helpers import run_cli as run_process

    from ingest_core.azure.auth import delta_storage_options
    from ingest_core.config import StorageConfig

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INGEST_STORAGE_CONNECTION", azurite)
    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(unique_name)
    table = f"abfs://{unique_name}/orders"
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    landing = tmp_path / "landing"
    landing.mkdir()
    files = []
    for n, data in enumerate(CSVS.values()):
        files.append(landing / f"{n}.csv")
        files[-1].write_bytes(data)
    target = ("--table", table, "--ledger", ledger)
    try:
        assert run_cli(["run", str(files[0]), *target]) == EXIT_OK
        killed = run_process("run", str(files[1]), *target,
                             env={"INGEST_FAULT_POINT": "after_commit"})
        assert killed.returncode == -9, killed.stderr
        assert run_cli(["run", str(files[2]), *target]) == EXIT_OK

        capsys.readouterr()
        code = run_cli(["show", hashlib.sha256(CSVS["orders/2026/b.csv"]).hexdigest(),
                        *target, "--json"])
        [shown] = json.loads(capsys.readouterr().out)["files"]
        assert (shown["status"], shown["delta_version"]) == ("processing", None)
        assert shown["delta"] == {
            "checked": True, "in_log": True, "agrees": False, "version": 1, "rows": 1,
            "table_version": 2,
        }
        assert code == EXIT_FILES_NOT_DONE  # the ledger has yet to say succeeded
        options = delta_storage_options(table, StorageConfig(connection_string=azurite))
        assert id_counts(table, options) == ALL_IDS
    finally:
        service.delete_container(unique_name)


def test_show_of_an_abfs_table_whose_container_is_gone_says_so_and_keeps_the_ledgers_word(
    azurite, unique_name, tmp_path, capsys, monkeypatch
):
    from ingest_core.ledger import open_ledger

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INGEST_STORAGE_CONNECTION", azurite)
    table = f"abfs://{unique_name}/orders"
    ledger_uri = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    content = "ab" * 32
    ledger = open_ledger(ledger_uri)
    try:
        ledger.claim(table, content, path="landing/a.csv", owner="w", lease_seconds=60,
                     max_attempts=5)
    finally:
        ledger.close()
    capsys.readouterr()
    code = run_cli(["show", content, "--table", table, "--ledger", ledger_uri, "--json"])
    [shown] = json.loads(capsys.readouterr().out)["files"]
    assert code == EXIT_OK  # nothing checked, so nothing disagrees
    assert (shown["delta"]["checked"], shown["delta"]["in_log"]) == (False, None)
    assert f"table {table}: its container does not exist" in shown["delta"]["error"]
    assert AZURITE_KEY not in shown["delta"]["error"]
