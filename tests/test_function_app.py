"""Calling the Functions app's functions with real azure.functions objects.

The host cannot run here: the decorated functions are called directly (as the
worker would after binding), with configuration from monkeypatched app
settings. Ingestion goes through Azurite (blobs, and for one test the Delta
table and the Azure Table ledger too); status and event screening need only
a local table and a SQLite ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from conftest import AZURITE_ACCOUNT, AZURITE_KEY
from helpers import id_counts, write_parquet

import function_app
from ingest_core import IdempotentIngestor
from ingest_core.config import table_key
from ingest_core.errors import ConfigurationError, IngestError, InProgressError
from ingest_core.events import build_blob_created
from ingest_core.functions import app_config, raise_for_platform
from ingest_core.ledger import open_ledger
from ingest_core.results import IngestResult

BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
CSV = b"id,amount\n1,1.5\n2,3.0\n3,4.5\n"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """App settings for a local table and SQLite ledger, landing container `landing`."""
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    values = {
        "INGEST_TABLE_URI": str(tmp_path / "lake" / "orders"),
        "INGEST_LEDGER_URI": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "INGEST_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
        "INGEST_LANDING_PATH": "landing/{name}",
        "INGEST_MAINTENANCE_SCHEDULE": "0 */15 * * * *",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()
    yield values
    app_config.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change app settings; the app reads them again at its next invocation."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()


def grid_event(raw: dict) -> func.EventGridEvent:
    """The object the worker hands the Event Grid trigger for an Event Grid-schema event."""
    return func.EventGridEvent(
        id=raw["id"],
        data=raw["data"],
        topic=raw["topic"],
        subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"]),
        data_version=raw["dataVersion"],
    )


def get(route: str, **params: str) -> func.HttpRequest:
    route_params = {}
    if route.startswith("files/"):
        route_params["sha256"] = route.removeprefix("files/")
    return func.HttpRequest(
        "GET", f"http://localhost/api/{route}", params=params, route_params=route_params, body=b""
    )


def body(response: func.HttpResponse) -> dict:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def ledger_rows(settings: dict[str, str]) -> list:
    ledger = open_ledger(settings["INGEST_LEDGER_URI"])
    try:
        return ledger.records(table=table_key(settings["INGEST_TABLE_URI"]))
    finally:
        ledger.close()


def file_lines(caplog: pytest.LogCaptureFixture, event: str = "ingest_file") -> list[dict]:
    lines = []
    for record in caplog.records:
        if record.name == "ingest_core.functions":
            line = json.loads(record.getMessage())
            if line["event"] == event:
                lines.append(line)
    return lines


# -- the platform mapping ---------------------------------------------------------------


@pytest.mark.parametrize("status", ["ingested", "skipped", "quarantined"])
def test_settled_outcomes_return_normally(status):
    raise_for_platform(IngestResult(path="x", status=status))


def test_in_progress_raises_so_the_platform_retries():
    with pytest.raises(InProgressError):
        raise_for_platform(IngestResult(path="x", status="in_progress"))


def test_a_failed_attempt_raises_so_the_platform_retries():
    with pytest.raises(IngestError, match="x: attempt failed"):
        raise_for_platform(IngestResult(path="x", status="failed", error="boom"))


# -- events dropped before any fetch (no Azurite needed) ---------------------------------


def test_an_event_for_another_account_is_dropped(settings, caplog):
    raw = build_blob_created(
        "https://otheracct.blob.core.windows.net/landing/a.csv", content_length=10
    )
    caplog.set_level(logging.INFO, "ingest_core.functions")
    assert function_app.ingest_replay(grid_event(raw)) is None
    [line] = file_lines(caplog, "event_dropped")
    assert line["decision"] == "refuse" and "otheracct" in line["reason"]
    assert line["event_id"] == raw["id"]
    assert ledger_rows(settings) == []


def test_a_non_completed_write_is_ignored(settings, caplog):
    raw = build_blob_created(f"{BLOB_ENDPOINT}/landing/a.csv", content_length=10, api="CreateFile")
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.ingest_replay(grid_event(raw))
    [line] = file_lines(caplog, "event_dropped")
    assert line["decision"] == "ignore"
    assert ledger_rows(settings) == []


def test_a_zero_length_blob_event_is_ignored(settings, caplog):
    raw = build_blob_created(f"{BLOB_ENDPOINT}/landing/a.csv", content_length=0)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.ingest_replay(grid_event(raw))
    assert file_lines(caplog, "event_dropped")[0]["reason"].endswith("zero-length blob")


@pytest.mark.azurite
def test_a_zero_length_blob_trigger_is_ignored(azure_landing, settings):
    azure_landing.put("empty.csv", b"")
    function_app.ingest_on_arrival(azure_landing.blob_client("empty.csv"))
    assert ledger_rows(settings) == []


def test_settings_are_read_again_after_a_reset(settings, monkeypatch):
    url = f"{BLOB_ENDPOINT}/replay/a.csv"
    raw = build_blob_created(url, content_length=0)
    assert app_config().allowed_containers() == {"landing"}
    use(monkeypatch, INGEST_LANDING_CONTAINERS="landing,replay")
    assert app_config().allowed_containers() == {"landing", "replay"}
    function_app.ingest_replay(grid_event(raw))


def test_an_error_before_ingestion_is_logged_and_raised(settings, monkeypatch, tmp_path, caplog):
    not_a_table = tmp_path / "orders.csv"
    not_a_table.write_text("x")
    use(monkeypatch, INGEST_TABLE_URI=str(not_a_table))
    raw = build_blob_created(f"{BLOB_ENDPOINT}/landing/a.csv", content_length=10)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    with pytest.raises(ConfigurationError, match="is a file"):
        function_app.ingest_replay(grid_event(raw))
    [line] = file_lines(caplog, "ingest_error")
    assert line["path"] == f"{BLOB_ENDPOINT}/landing/a.csv"
    assert "ConfigurationError" in line["error"]


# -- status over HTTP (local table, SQLite ledger) ------------------------------------------


@pytest.fixture
def ingested(settings, tmp_path) -> IngestResult:
    """One local parquet file ingested into the app's table."""
    path = write_parquet(tmp_path / "landing" / "a.parquet", start=1)
    with IdempotentIngestor(
        settings["INGEST_TABLE_URI"], settings["INGEST_LEDGER_URI"]
    ) as ingestor:
        return ingestor.ingest_file(str(path))


def test_status_of_a_known_sha_is_its_ledger_row(ingested):
    response = function_app.file_status(get(f"files/{ingested.sha256}"))
    assert response.status_code == 200
    row = body(response)
    assert row["sha256"] == ingested.sha256
    assert row["status"] == "succeeded"
    assert row["path"] == ingested.path
    assert row["rows"] == 3 and row["delta_version"] == ingested.delta_version


def test_status_accepts_an_upper_case_sha(ingested):
    assert function_app.file_status(get(f"files/{ingested.sha256.upper()}")).status_code == 200


def test_status_of_an_unknown_sha_is_404(settings):
    response = function_app.file_status(get(f"files/{'0' * 64}"))
    assert response.status_code == 404
    assert "no file" in body(response)["error"]


@pytest.mark.parametrize("sha", ["abc", "g" * 64, "0" * 65, "", "../" + "0" * 61])
def test_status_of_a_malformed_sha_is_400(settings, sha):
    response = function_app.file_status(get(f"files/{sha}"))
    assert response.status_code == 400
    assert "64 hex digits" in body(response)["error"]


def test_listing_filters_by_path_and_state(ingested):
    by_path = body(function_app.list_files(get("files", path=ingested.path)))
    assert [f["sha256"] for f in by_path["files"]] == [ingested.sha256]
    assert by_path["count"] == 1 and by_path["truncated"] is False
    done = body(function_app.list_files(get("files", state="succeeded")))
    assert done["count"] == 1
    assert body(function_app.list_files(get("files", state="failed")))["files"] == []
    assert body(function_app.list_files(get("files", path="/nowhere")))["files"] == []


def test_listing_is_bounded_by_limit(settings, tmp_path):
    paths = [write_parquet(tmp_path / "landing" / f"{i}.parquet", start=i * 10) for i in range(3)]
    with IdempotentIngestor(settings["INGEST_TABLE_URI"], settings["INGEST_LEDGER_URI"]) as ing:
        ing.ingest_sources([str(p) for p in paths])
    listing = body(function_app.list_files(get("files", limit="2")))
    assert listing["count"] == 2 and listing["truncated"] is True


@pytest.mark.parametrize("params", [{"state": "done"}, {"limit": "0"}, {"limit": "x"}])
def test_listing_refuses_unknown_states_and_bad_limits(settings, params):
    response = function_app.list_files(get("files", **params))
    assert response.status_code == 400
    assert "use" in body(response)["error"]


def test_status_says_503_when_the_ledger_is_unreachable(settings, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    use(monkeypatch, INGEST_LEDGER_URI=f"sqlite:///{blocker}/ledger.sqlite")
    response = function_app.file_status(get(f"files/{'0' * 64}"))
    assert response.status_code == 503


# -- end to end on Azurite ----------------------------------------------------------------------


@dataclass
class Landing:
    """A landing container on Azurite."""

    name: str
    client: object

    def put(self, name: str, data: bytes) -> str:
        self.client.upload_blob(name, data, overwrite=True)  # type: ignore[attr-defined]
        return f"{BLOB_ENDPOINT}/{self.name}/{name}"

    def blob_client(self, name: str):
        """What the host passes the blob trigger through the SDK-type binding."""
        return self.client.get_blob_client(name)  # type: ignore[attr-defined]


@pytest.fixture
def azure_landing(azurite, unique_name, settings, monkeypatch) -> Iterator[Landing]:
    """A fresh landing container, with the app pointed at Azurite through a connection string."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    container = service.create_container(unique_name)
    use(
        monkeypatch,
        INGEST_STORAGE_CONNECTION=azurite,
        INGEST_LANDING_PATH=f"{unique_name}/{{name}}",
    )
    yield Landing(unique_name, container)
    container.delete_container()


@pytest.mark.azurite
def test_a_blob_created_event_ingests_the_file(azure_landing, settings, caplog):
    url = azure_landing.put("2024/orders.csv", CSV)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(CSV))))
    [row] = ledger_rows(settings)
    assert row.status == "succeeded" and row.rows == 3
    assert row.path == url
    assert row.sha256 == hashlib.sha256(CSV).hexdigest()
    assert id_counts(settings["INGEST_TABLE_URI"]) == {1: 1, 2: 1, 3: 1}
    [line] = file_lines(caplog)
    assert {k: line[k] for k in ("path", "sha256", "status", "rows", "delta_version")} == {
        "path": url, "sha256": row.sha256, "status": "ingested", "rows": 3, "delta_version": 0,
    }
    assert line["duration_s"] >= 0 and line["trigger"] == "event_grid"
    assert AZURITE_KEY not in caplog.text


@pytest.mark.azurite
def test_the_blob_trigger_streams_the_blob_from_its_client(azure_landing, settings):
    url = azure_landing.put("orders.csv", CSV)
    function_app.ingest_on_arrival(azure_landing.blob_client("orders.csv"))
    [row] = ledger_rows(settings)
    assert row.path == url
    assert row.sha256 == hashlib.sha256(CSV).hexdigest()
    assert id_counts(settings["INGEST_TABLE_URI"]) == {1: 1, 2: 1, 3: 1}


@pytest.mark.azurite
def test_the_blob_trigger_names_the_file_by_its_url_in_a_folder(azure_landing, settings):
    url = azure_landing.put("dir/orders.csv", CSV)
    function_app.ingest_on_arrival(azure_landing.blob_client("dir/orders.csv"))
    assert [r.path for r in ledger_rows(settings)] == [url]


@pytest.mark.azurite
def test_a_cloud_event_ingests_the_file(azure_landing, settings):
    url = azure_landing.put("orders.csv", CSV)
    raw = build_blob_created(url, content_length=len(CSV), schema="cloudevents")
    event = func.CloudEvent(
        id=raw["id"], source=raw["source"], type=raw["type"], specversion="1.0",
        subject=raw["subject"], data=raw["data"],
    )
    function_app.ingest_replay(event)
    assert [r.status for r in ledger_rows(settings)] == ["succeeded"]


@pytest.mark.azurite
def test_an_event_delivered_three_times_ingests_once(azure_landing, settings, caplog):
    url = azure_landing.put("orders.csv", CSV)
    raw = build_blob_created(url, content_length=len(CSV))
    caplog.set_level(logging.INFO, "ingest_core.functions")
    for _ in range(3):
        function_app.ingest_replay(grid_event(raw))
    function_app.ingest_on_arrival(azure_landing.blob_client("orders.csv"))
    assert [line["status"] for line in file_lines(caplog)] == [
        "ingested", "skipped", "skipped", "skipped",
    ]
    assert id_counts(settings["INGEST_TABLE_URI"]) == {1: 1, 2: 1, 3: 1}


@pytest.mark.azurite
def test_a_copy_under_another_name_is_a_duplicate(azure_landing, settings):
    first = azure_landing.put("a.csv", CSV)
    second = azure_landing.put("copy/a.csv", CSV)
    for url in (first, second):
        function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(CSV))))
    [row] = ledger_rows(settings)
    assert row.path == first and row.seen_paths == [second]
    assert id_counts(settings["INGEST_TABLE_URI"]) == {1: 1, 2: 1, 3: 1}


@pytest.mark.azurite
def test_an_event_for_another_container_of_the_account_is_dropped(azure_landing, settings):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(os.environ["INGEST_STORAGE_CONNECTION"])
    other = service.create_container(azure_landing.name + "x")
    try:
        other.upload_blob("a.csv", CSV)
        url = f"{BLOB_ENDPOINT}/{azure_landing.name}x/a.csv"
        function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(CSV))))
    finally:
        other.delete_container()
    assert ledger_rows(settings) == []


@pytest.mark.azurite
def test_a_corrupt_file_is_quarantined_and_the_function_returns(azure_landing, settings):
    junk = b"PAR1 this is not parquet at all"
    url = azure_landing.put("broken.parquet", junk)
    raw = build_blob_created(url, content_length=len(junk))
    function_app.ingest_replay(grid_event(raw))
    function_app.ingest_replay(grid_event(raw))
    sha = hashlib.sha256(junk).hexdigest()
    response = function_app.file_status(get(f"files/{sha}"))
    assert response.status_code == 200
    row = body(response)
    assert row["status"] == "quarantined" and row["attempt"] == 1
    assert "broken.parquet" in row["error"]
    listing = body(function_app.list_files(get("files", state="quarantined")))
    assert [f["sha256"] for f in listing["files"]] == [sha]


@pytest.mark.azurite
def test_a_file_in_progress_elsewhere_is_left_to_its_lease_holder_by_event_grid(
    azure_landing, settings, caplog
):
    url = azure_landing.put("orders.csv", CSV)
    sha = hashlib.sha256(CSV).hexdigest()
    ledger = open_ledger(settings["INGEST_LEDGER_URI"])
    ledger.claim(
        table_key(settings["INGEST_TABLE_URI"]), sha, path=url, owner="other-worker",
        lease_seconds=300, max_attempts=5, size=len(CSV),
    )
    ledger.close()
    caplog.set_level(logging.INFO, "ingest_core.functions")
    raw = build_blob_created(url, content_length=len(CSV))
    function_app.ingest_replay(grid_event(raw))  # answered: no storm of failing redeliveries
    [line] = file_lines(caplog)
    assert line["status"] == "in_progress" and "other-worker" in line["error"]
    assert [r.status for r in ledger_rows(settings)] == ["processing"]
    with pytest.raises(InProgressError, match="other-worker"):  # its queue retries
        function_app.ingest_on_arrival(azure_landing.blob_client("orders.csv"))


@pytest.mark.azurite
def test_an_event_for_a_deleted_blob_is_dropped(azure_landing, settings, caplog):
    url = azure_landing.put("gone.csv", CSV)
    azure_landing.client.delete_blob("gone.csv")  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(CSV))))
    assert "no such blob" in file_lines(caplog, "event_dropped")[0]["reason"]
    assert ledger_rows(settings) == []


@pytest.mark.azurite
def test_production_shape_table_and_ledger_on_azure_storage(
    azure_landing, monkeypatch, unique_name, azurite
):
    """abfs Delta table and Azure Table ledger on Azurite: three deliveries, one ingestion."""
    from ingest_core.azure.auth import delta_storage_options
    from ingest_core.config import StorageConfig

    table_uri = f"abfs://{unique_name}/lake/orders"
    use(monkeypatch, INGEST_TABLE_URI=table_uri, INGEST_LEDGER_URI=f"azure-table://{unique_name}")
    url = azure_landing.put("landing/orders.csv", CSV)
    raw = build_blob_created(url, content_length=len(CSV))
    for _ in range(3):
        function_app.ingest_replay(grid_event(raw))
    options = delta_storage_options(table_uri, StorageConfig(connection_string=azurite))
    assert id_counts(table_uri, options) == {1: 1, 2: 1, 3: 1}
    response = function_app.file_status(get(f"files/{hashlib.sha256(CSV).hexdigest()}"))
    assert body(response)["status"] == "succeeded"
    assert datetime.fromisoformat(body(response)["updated_at"]) <= datetime.now(UTC)


@pytest.mark.azurite
def test_the_sample_settings_work_on_azurite(azurite, unique_name, monkeypatch):
    """local.settings.sample.json as `func start` would load it, with fresh container names."""
    from azure.storage.blob import BlobServiceClient

    from ingest_core.azure.auth import delta_storage_options
    from ingest_core.config import StorageConfig

    sample = json.loads((Path(__file__).parent.parent / "local.settings.sample.json").read_text())
    values = {k: v for k, v in sample["Values"].items() if k.startswith("INGEST_")}
    values["INGEST_LANDING_PATH"] = f"{unique_name}/{{name}}"
    values["INGEST_LANDING_CONTAINERS"] = unique_name
    values["INGEST_TABLE_URI"] = f"abfs://{unique_name}l/orders"
    values["INGEST_LEDGER_URI"] = f"azure-table://{unique_name}"
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    use(monkeypatch, **values)
    emulator = "UseDevelopmentStorage=true"
    service = BlobServiceClient.from_connection_string(emulator)
    landing = service.create_container(unique_name)
    lake = service.create_container(unique_name + "l")
    try:
        landing.upload_blob("orders.csv", CSV)
        url = f"{BLOB_ENDPOINT}/{unique_name}/orders.csv"
        function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(CSV))))
        options = delta_storage_options(
            values["INGEST_TABLE_URI"], StorageConfig(connection_string=emulator)
        )
        assert id_counts(values["INGEST_TABLE_URI"], options) == {1: 1, 2: 1, 3: 1}
    finally:
        landing.delete_container()
        lake.delete_container()
        app_config.cache_clear()


@pytest.mark.azurite
def test_each_invocation_has_a_run_id_on_its_row_its_commit_and_its_log_line(
    azure_landing, settings, caplog
):
    from deltalake import DeltaTable

    from ingest_core.delta.target import RUN_ID_KEY

    caplog.set_level(logging.INFO, "ingest_core.functions")
    for name, body in (("a.csv", CSV), ("b.csv", CSV + b"4,6.0\n")):
        url = azure_landing.put(name, body)
        function_app.ingest_replay(grid_event(build_blob_created(url, content_length=len(body))))
    rows = {r.path.rsplit("/", 1)[-1]: r.run_id for r in ledger_rows(settings)}
    assert all(r and r.startswith("fn-event-") for r in rows.values())
    assert rows["a.csv"] != rows["b.csv"]
    assert [line["run_id"] for line in file_lines(caplog)] == [rows["a.csv"], rows["b.csv"]]
    history = DeltaTable(settings["INGEST_TABLE_URI"]).history()
    assert {c.get(RUN_ID_KEY) for c in history} >= set(rows.values())
