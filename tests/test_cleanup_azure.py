"""`ingest cleanup` and the Functions maintenance timer's clean-up on Azurite blobs.

The landing and archive containers are on Azurite; the ledger is SQLite and
the table local Delta (both real).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from conftest import AZURITE_ACCOUNT
from helpers import id_counts

from ingest_core.cli import EXIT_OK, run_cli
from ingest_core.functions import app_config

pytestmark = pytest.mark.azurite

BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
CSVS = {
    "orders/2026/a.csv": b"id,amount\n1,1.5\n2,3.0\n",
    "orders/2026/b.csv": b"id,amount\n3,4.5\n",
    "orders/c.csv": b"id,amount\n4,6.0\n",
}


@dataclass
class Landing:
    """A landing and an archive container on Azurite, with app settings naming them."""

    container: Any
    archive: Any
    name: str
    table: str

    def url(self, name: str = "", container: str | None = None) -> str:
        return f"{BLOB_ENDPOINT}/{container or self.name}/{name}"

    def names(self, container: Any) -> list[str]:
        return sorted(b.name for b in container.list_blobs())

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = run_cli([*args, "--table", self.table, "--json"])
        return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def landed(azurite, unique_name, tmp_path, monkeypatch) -> Iterator[Landing]:
    """Three CSV blobs ingested; then one overwritten and one new blob landed."""
    from azure.storage.blob import BlobServiceClient

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    table = str(tmp_path / "lake" / "orders")
    settings = {
        "INGEST_TABLE_URI": table,
        "INGEST_LEDGER_URI": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "INGEST_STORAGE_CONNECTION": azurite,
        "INGEST_LANDING_PATH": f"{unique_name}/{{name}}",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()
    service = BlobServiceClient.from_connection_string(azurite)
    container = service.create_container(unique_name)
    archive = service.create_container(unique_name + "arc")
    lake = Landing(container, archive, unique_name, table)
    for name, data in CSVS.items():
        container.upload_blob(name, data)
    assert run_cli(["run", lake.url("orders/"), "--table", table]) == EXIT_OK
    container.upload_blob("orders/c.csv", b"id,amount\n5,7.5\n", overwrite=True)
    container.upload_blob("orders/d.csv", b"id,amount\n6,9.0\n")
    try:
        yield lake
    finally:
        container.delete_container()
        archive.delete_container()
        app_config.cache_clear()


def test_archive_copies_ingested_blobs_keeping_their_path_and_keeps_the_rest(
    landed: Landing, capsys: pytest.CaptureFixture[str]
):
    code, out = landed.cli_json(capsys, "cleanup", landed.url("orders/"),
                                "--archive-to", landed.url("landing/", landed.name + "arc"))
    assert code == EXIT_OK
    assert (out["archived"], out["deleted"], out["kept"]) == (2, 0, 2)
    assert landed.names(landed.archive) == ["landing/2026/a.csv", "landing/2026/b.csv"]
    assert landed.names(landed.container) == ["orders/c.csv", "orders/d.csv"]
    archived = landed.archive.download_blob("landing/2026/a.csv").readall()
    assert archived == CSVS["orders/2026/a.csv"]
    kept = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in out["files"]
            if f["outcome"] == "kept"}
    assert "changed since it was ingested" in kept["c.csv"]
    assert "not in the ledger" in kept["d.csv"]


def test_after_cleanup_a_sweep_ingests_only_what_was_kept_and_nothing_is_lost(
    landed: Landing, capsys: pytest.CaptureFixture[str]
):
    landed.cli_json(capsys, "cleanup", landed.url("orders/"), "--delete")
    code, out = landed.cli_json(capsys, "sweep", landed.url("orders/"))
    assert code == EXIT_OK
    assert out["ingested"] == 2  # the overwritten c and the new d
    code, out = landed.cli_json(capsys, "sweep", landed.url("orders/"))
    assert out["ingested"] == 0
    assert id_counts(landed.table) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}
    code, out = landed.cli_json(capsys, "cleanup", landed.url("orders/"), "--delete")
    assert (out["deleted"], out["kept"]) == (2, 0)
    assert landed.names(landed.container) == []


def test_a_blob_overwritten_after_the_listing_is_neither_archived_nor_deleted(landed: Landing):
    from ingest_core.config import IngestConfig, StorageConfig
    from ingest_core.ops.cleanup import CleanupReport, _archive_blob, _ingested_row, _Kept, _Ledgers
    from ingest_core.sources import Sources

    storage = StorageConfig(connection_string=os.environ["INGEST_STORAGE_CONNECTION"])
    config = IngestConfig(table_uri=landed.table, ledger_uri=os.environ["INGEST_LEDGER_URI"],
                          storage=storage)
    [file] = Sources(storage).list([landed.url("orders/2026/a.csv")])
    ledgers = _Ledgers(config)
    row = _ingested_row(file, landed.table, ledgers, config)  # decided on the listed ETag
    landed.container.upload_blob("orders/2026/a.csv", b"id,amount\n9,9.9\n", overwrite=True)
    with pytest.raises(_Kept, match="changed since it was ingested"):
        _archive_blob(file, row, landed.url("x/a.csv", landed.name + "arc"), config)
    ledgers.close()
    assert landed.names(landed.archive) == []
    assert landed.container.download_blob("orders/2026/a.csv").readall() == b"id,amount\n9,9.9\n"
    assert CleanupReport("archive").to_dict()["files"] == []


def test_the_maintenance_timer_archives_landed_files_once_the_retention_has_passed(
    landed: Landing, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import function_app

    monkeypatch.setenv("INGEST_CLEANUP", "archive:" + landed.url("", landed.name + "arc"))
    monkeypatch.setenv("INGEST_CLEANUP_AFTER", "1d")
    app_config.cache_clear()
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.maintenance(TimerRequest(past_due=False))
    assert landed.names(landed.archive) == []  # ingested moments ago: within the day
    monkeypatch.setenv("INGEST_CLEANUP_AFTER", "0s")
    app_config.cache_clear()
    caplog.clear()
    function_app.maintenance(TimerRequest(past_due=False))
    ours = [r for r in caplog.records if r.name == "ingest_core.functions"]
    lines = [json.loads(r.getMessage()) for r in ours]
    [line] = [x for x in lines if x["event"] == "cleanup"]
    assert (line["archived"], line["kept"]) == (2, 2)
    assert landed.names(landed.archive) == ["orders/2026/a.csv", "orders/2026/b.csv"]
    assert landed.names(landed.container) == ["orders/c.csv", "orders/d.csv"]
