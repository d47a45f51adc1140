"""Microsoft's SFTP and rename events, delivered to the Event Grid trigger, end to end.

The printed examples (tests/fixtures/blob_events) are decoded the way the
worker decodes them and handed to `function_app.ingest_replay`; only their
URLs are pointed at a blob in Azurite. Ingestion goes through Azurite into a
local table and a SQLite ledger.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

import function_app
from ingest_core.azure.settings import AZURITE_ACCOUNT
from ingest_core.config import table_key
from ingest_core.functions import app_config
from ingest_core.ledger import open_ledger

pytestmark = pytest.mark.azurite

FIXTURES = Path(__file__).parent / "fixtures" / "blob_events"
ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
CSV = b"id,amount\n1,1.5\n2,3.0\n3,4.5\n"


@pytest.fixture
def landing(azurite, unique_name) -> Iterator[str]:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    yield unique_name
    container.delete_container()


@pytest.fixture
def settings(monkeypatch, tmp_path, landing) -> Iterator[dict[str, str]]:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    values = {
        "INGEST_TABLE_URI": str(tmp_path / "lake" / "orders"),
        "INGEST_LEDGER_URI": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "INGEST_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
        "INGEST_LANDING_PATH": f"{landing}/{{name}}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()
    yield values
    app_config.cache_clear()


def put(azurite: str, container: str, name: str, data: bytes) -> str:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    service.get_blob_client(container, name).upload_blob(data, overwrite=True)
    return f"{ENDPOINT}/{container}/{name}"


def deliver(raw: dict) -> None:
    """Hand one event to the Event Grid trigger as the worker would."""
    datum = meta.Datum(json.dumps(raw), "json")
    function_app.ingest_replay(EventGridEventInConverter.decode(datum, trigger_metadata={}))


def printed(name: str) -> dict:
    (raw,) = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(raw)


def rows(settings: dict[str, str]) -> list:
    ledger = open_ledger(settings["INGEST_LEDGER_URI"])
    try:
        return ledger.records(table=table_key(settings["INGEST_TABLE_URI"]))
    finally:
        ledger.close()


def test_an_sftp_commit_ingests_the_file_although_its_event_says_zero_length(
    azurite, landing, settings
):
    url = put(azurite, landing, "sftp/new-file.csv", CSV)
    raw = printed("sftp-commit.eventgrid.json")
    assert raw["data"]["contentLength"] == 0
    raw["data"]["url"] = url
    deliver(raw)
    [row] = rows(settings)
    assert (row.status, row.path, row.sha256) == (
        "succeeded", url, hashlib.sha256(CSV).hexdigest()
    )


def test_a_renamed_file_is_ingested_at_its_destination(azurite, landing, settings):
    url = put(azurite, landing, "in/my-renamed-file.csv", CSV)
    raw = printed("adls-blob-renamed.eventgrid.json")
    raw["data"]["destinationUrl"] = url
    raw["data"]["sourceUrl"] = f"{ENDPOINT}/{landing}/_tmp/my-original-file.csv"
    deliver(raw)
    [row] = rows(settings)
    assert (row.status, row.path) == ("succeeded", url)


def test_an_sftp_create_fetches_nothing_and_says_why(azurite, landing, settings, caplog):
    url = put(azurite, landing, "sftp/new-file.csv", CSV)
    raw = printed("sftp-commit.eventgrid.json")
    raw["data"].update(url=url, api="SftpCreate")
    with caplog.at_level(logging.INFO, logger="ingest_core.functions"):
        deliver(raw)
    assert rows(settings) == []
    logged = [r.getMessage() for r in caplog.records if r.name == "ingest_core.functions"]
    [line] = map(json.loads, logged)
    assert line["event"] == "event_dropped" and line["decision"] == "ignore"
    assert "SftpCreate" in line["reason"]


def test_a_renamed_directory_ingests_every_file_below_it(azurite, landing, settings):
    first = put(azurite, landing, "in/batch-7/a.csv", CSV)
    second = put(azurite, landing, "in/batch-7/deep/b.csv", b"id,amount\n9,1.0\n")
    put(azurite, landing, "in/batch-70/not-this-one.csv", b"id,amount\n70,1.0\n")
    raw = printed("adls-directory-renamed.eventgrid.json")
    raw["data"]["destinationUrl"] = f"{ENDPOINT}/{landing}/in/batch-7"
    raw["data"]["sourceUrl"] = f"{ENDPOINT}/{landing}/_tmp/batch-7"
    deliver(raw)
    assert sorted((r.status, r.path) for r in rows(settings)) == [
        ("succeeded", first), ("succeeded", second),
    ]
    deliver(raw)  # redelivered: every file a skip
    assert len(rows(settings)) == 2
