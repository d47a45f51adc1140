"""The Functions app with routes (INGEST_ROUTES): each blob into the table its route names.

Two feeds land in one container on Azurite and are routed to two abfs://
tables there, with the Azure Table ledger shared by both; the functions are
called with real azure.functions objects, as in test_function_app.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import azure.functions as func
import pytest
from conftest import AZURITE_ACCOUNT
from helpers import id_counts

import function_app
from ingest_core import functions
from ingest_core.azure.auth import delta_storage_options
from ingest_core.config import StorageConfig, table_key
from ingest_core.errors import ConfigurationError
from ingest_core.events import build_blob_created
from ingest_core.functions import app_config, parsed_routes
from ingest_core.ledger import open_ledger
from ingest_core.routing import UNROUTED_TABLE

BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
ORDERS = b"id,amount\n1,1.5\n2,3.0\n3,4.5\n"
CUSTOMERS = b"id,name\n10,ann\n11,bob\n"


def clear_caches() -> None:
    app_config.cache_clear()
    parsed_routes.cache_clear()


@pytest.fixture
def plain_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No INGEST_* settings at all; the caches are reset before and after."""
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    clear_caches()
    yield
    clear_caches()


def use(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change app settings; the app reads them again at its next invocation."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clear_caches()


def grid_event(url: str, length: int) -> func.EventGridEvent:
    """What the worker hands the Event Grid trigger for a BlobCreated event of `url`."""
    raw = build_blob_created(url, content_length=length)
    return func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
        event_type=raw["eventType"], event_time=datetime.fromisoformat(raw["eventTime"]),
        data_version=raw["dataVersion"],
    )


def get(route: str, **params: str) -> func.HttpRequest:
    route_params = {"sha256": route.removeprefix("files/")} if route.startswith("files/") else {}
    return func.HttpRequest(
        "GET", f"http://localhost/api/{route}", params=params, route_params=route_params, body=b""
    )


def body(response: func.HttpResponse) -> dict:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


def log_lines(caplog: pytest.LogCaptureFixture, event: str = "ingest_file") -> list[dict]:
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "ingest_core.functions"
    ]
    return [line for line in lines if line["event"] == event]


@dataclass
class RoutedApp:
    """A landing container and a lake container on Azurite, and the app routed between them."""

    container: object
    landing: str
    orders: str
    """The orders feed's table (a route without captures)."""
    customers: str
    """The customers feed's table (a route whose table uses a capture)."""
    ledger_uri: str
    storage: StorageConfig
    options: dict[str, str]

    def blob_client(self, name: str):
        """What the host passes the blob trigger through the SDK-type binding."""
        return self.container.get_blob_client(name)  # type: ignore[attr-defined]

    def put(self, name: str, data: bytes) -> str:
        self.container.upload_blob(name, data, overwrite=True)  # type: ignore[attr-defined]
        return f"{BLOB_ENDPOINT}/{self.landing}/{name}"

    def land(self, name: str, data: bytes) -> str:
        """Put the blob and deliver its BlobCreated event to the app."""
        url = self.put(name, data)
        function_app.ingest_replay(grid_event(url, len(data)))
        return url

    def rows(self, table: str | None = None) -> list:
        ledger = open_ledger(self.ledger_uri, self.storage)
        try:
            return ledger.records(table=table)
        finally:
            ledger.close()

    def ids(self, table: str) -> dict[int, int]:
        return dict(id_counts(table, self.options))


@pytest.fixture
def routed(azurite, unique_name, plain_settings, monkeypatch) -> Iterator[RoutedApp]:
    """Feeds `orders/` and `feeds/{dataset}/` of one container, routed to two abfs tables."""
    from azure.storage.blob import BlobServiceClient

    lake = unique_name + "l"
    orders, customers = f"abfs://{lake}/orders", f"abfs://{lake}/customers"
    routes = (
        f'[[route]]\nname = "orders"\nmatch = "{unique_name}/orders/*.csv"\n'
        f'table = "{orders}"\n\n'
        f'[[route]]\nmatch = "{unique_name}/feeds/{{dataset}}/*.csv"\n'
        f'table = "abfs://{lake}/{{dataset}}"\nformat = "csv"\n'
    )
    ledger_uri = f"azure-table://{unique_name}"
    use(
        monkeypatch,
        INGEST_STORAGE_CONNECTION=azurite,
        INGEST_LANDING_PATH=f"{unique_name}/{{name}}",
        INGEST_LEDGER_URI=ledger_uri,
        INGEST_ROUTES=routes,
    )
    service = BlobServiceClient.from_connection_string(azurite)
    landing = service.create_container(unique_name)
    service.create_container(lake)
    storage = StorageConfig(connection_string=azurite)
    options = delta_storage_options(orders, storage)
    try:
        yield RoutedApp(landing, unique_name, orders, customers, ledger_uri, storage, options)
    finally:
        service.delete_container(unique_name)
        service.delete_container(lake)


@pytest.mark.azurite
def test_each_feed_lands_in_the_table_its_route_names(routed, caplog):
    orders_url = routed.put("orders/2026-01.csv", ORDERS)
    customers_url = routed.put("feeds/customers/all.csv", CUSTOMERS)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.ingest_replay(grid_event(orders_url, len(ORDERS)))
    function_app.ingest_on_arrival(routed.blob_client("feeds/customers/all.csv"))
    assert routed.ids(routed.orders) == {1: 1, 2: 1, 3: 1}
    assert routed.ids(routed.customers) == {10: 1, 11: 1}
    [order] = routed.rows(table_key(routed.orders))
    [customer] = routed.rows(table_key(routed.customers))
    assert (order.path, order.status) == (orders_url, "succeeded")
    assert (customer.path, customer.status) == (customers_url, "succeeded")
    assert [(line["status"], line["table"]) for line in log_lines(caplog)] == [
        ("ingested", routed.orders), ("ingested", routed.customers),
    ]


@pytest.mark.azurite
def test_an_unrouted_blob_is_recorded_and_the_function_returns(routed, caplog):
    data = b"id\n7\n"
    url = routed.put("misc/stray.csv", data)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    result = functions.on_event(grid_event(url, len(data)))
    assert result is not None and result.status == "unrouted"
    [line] = log_lines(caplog)
    assert line["status"] == "unrouted" and line["path"] == url
    assert "no route matches" in line["error"]
    [row] = routed.rows(UNROUTED_TABLE)
    assert row.status == "quarantined" and row.path == url
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    function_app.ingest_replay(grid_event(url, len(data)))
    assert len(routed.rows()) == 1


@pytest.mark.azurite
def test_the_same_event_three_times_ingests_once(routed, caplog):
    url = routed.put("orders/2026-02.csv", ORDERS)
    event = grid_event(url, len(ORDERS))
    caplog.set_level(logging.INFO, "ingest_core.functions")
    for _ in range(3):
        function_app.ingest_replay(event)
    assert [line["status"] for line in log_lines(caplog)] == ["ingested", "skipped", "skipped"]
    assert routed.ids(routed.orders) == {1: 1, 2: 1, 3: 1}
    assert len(routed.rows()) == 1


@pytest.mark.azurite
def test_status_endpoints_answer_across_the_routed_tables(routed):
    routed.land("orders/a.csv", ORDERS)
    routed.land("feeds/customers/a.csv", ORDERS)
    routed.land("feeds/customers/b.csv", CUSTOMERS)
    routed.land("stray.csv", CUSTOMERS)
    listing = body(function_app.list_files(get("files")))
    tables = sorted(f["table"] for f in listing["files"])
    assert tables == sorted(
        [table_key(routed.orders), table_key(routed.customers), table_key(routed.customers),
         UNROUTED_TABLE]
    )
    done = body(function_app.list_files(get("files", state="succeeded")))
    assert done["count"] == 3 and done["truncated"] is False
    same = body(function_app.file_status(get(f"files/{hashlib.sha256(ORDERS).hexdigest()}")))
    assert same["count"] == 2
    assert sorted(f["table"] for f in same["files"]) == [
        table_key(routed.customers), table_key(routed.orders),
    ]
    assert function_app.file_status(get(f"files/{'0' * 64}")).status_code == 404


@pytest.mark.azurite
def test_maintenance_redrives_and_checkpoints_every_routed_table(routed, caplog):
    routed.land("orders/a.csv", ORDERS)
    url = routed.put("feeds/customers/a.csv", CUSTOMERS)
    ledger = open_ledger(routed.ledger_uri, routed.storage)
    ledger.claim(
        table_key(routed.customers), hashlib.sha256(CUSTOMERS).hexdigest(), path=url,
        owner="dead-worker", lease_seconds=0.05, max_attempts=5, size=len(CUSTOMERS),
    )
    ledger.close()
    time.sleep(0.2)
    caplog.set_level(logging.INFO, "ingest_core.functions")
    reports = functions.run_maintenance()
    assert sorted(r.table for r in reports) == [routed.customers, routed.orders]
    assert all(r.checkpoint_version is not None for r in reports)
    assert routed.ids(routed.customers) == {10: 1, 11: 1}
    lines = {line["table"]: line for line in log_lines(caplog, "maintenance")}
    assert lines[routed.customers]["redriven"]["ingested"] == 1
    assert lines[routed.orders]["redriven"]["ingested"] == 0


def test_routes_as_text_without_a_shared_ledger_fail_naming_the_setting(
    plain_settings, monkeypatch, caplog
):
    use(
        monkeypatch,
        INGEST_STORAGE_CONNECTION="UseDevelopmentStorage=true",
        INGEST_LANDING_PATH="landing/{name}",
        INGEST_ROUTES='[[route]]\nmatch = "landing/*.csv"\ntable = "abfs://lake/t"\n',
    )
    caplog.set_level(logging.INFO, "ingest_core.functions")
    response = function_app.list_files(get("files"))
    assert response.status_code == 503
    assert "INGEST_LEDGER_URI" in body(response)["error"]
    assert function_app.file_status(get(f"files/{'0' * 64}")).status_code == 503
    with pytest.raises(ConfigurationError, match="INGEST_LEDGER_URI"):
        function_app.ingest_replay(grid_event(f"{BLOB_ENDPOINT}/landing/a.csv", 10))
    with pytest.raises(ConfigurationError, match="INGEST_LEDGER_URI"):
        functions.run_maintenance()
    assert all("INGEST_LEDGER_URI" in line["error"] for line in log_lines(caplog, "ingest_error"))
    assert len(log_lines(caplog, "configuration_error")) == 3


def test_a_routes_file_is_parsed_once_per_process(plain_settings, monkeypatch, tmp_path: Path):
    routes = tmp_path / "routes.toml"
    routes.write_text('[[route]]\nmatch = "landing/*.csv"\ntable = "./lake/a"\n')
    use(monkeypatch, INGEST_ROUTES=str(routes), INGEST_LEDGER_URI="sqlite:///x.sqlite")
    first = functions.app_routes(app_config())
    routes.write_text('[[route]]\nmatch = "landing/*.csv"\ntable = "./lake/b"\n')
    app_config.cache_clear()
    assert functions.app_routes(app_config()) is first
    parsed_routes.cache_clear()
    again = functions.app_routes(app_config())
    assert again is not None and again.routes[0].table == "./lake/b"
