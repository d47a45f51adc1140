"""The blob trigger's poison queue and the timer's scheduled sweep, on Azurite.

Blobs and queues are Azurite's; the ledger is SQLite and the table local Delta.
Poison messages are written as the Functions host writes them: the blob
trigger message's JSON (`Type`, `FunctionId`, `BlobType`, `ContainerName`,
`BlobName`, `ETag`), UTF-8, base64-encoded. Each test has its own container
and its own poison queue (INGEST_POISON_QUEUE), since Azurite is shared.
"""

from __future__ import annotations

import base64
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

from ingest_core import functions
from ingest_core.cli import EXIT_FILES_NOT_DONE, EXIT_OK, EXIT_USAGE, run_cli
from ingest_core.functions import app_config
from ingest_core.ledger import open_ledger
from ingest_core.ops.poison import decode_message

pytestmark = pytest.mark.azurite

BLOB_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"


@dataclass
class Host:
    """A landing container, the host's poison queue, a local table and a SQLite ledger."""

    container: Any
    queue: Any
    name: str
    table: str

    def put(self, name: str, data: bytes) -> str:
        """Upload a blob; its ETag."""
        blob = self.container.upload_blob(name, data, overwrite=True)
        return str(blob.get_blob_properties().etag)

    def url(self, name: str) -> str:
        return f"{BLOB_ENDPOINT}/{self.name}/{name}"

    def poison(self, name: str, etag: str = '"0x8DE0000000000001"') -> None:
        """A message as the host moves it to the poison queue after poisonBlobThreshold fails."""
        body = {
            "Type": "BlobTrigger",
            "FunctionId": "Host.Functions.ingest_on_arrival",
            "BlobType": "BlockBlob",
            "ContainerName": self.name,
            "BlobName": name,
            "ETag": etag,
        }
        self.queue.send_message(base64.b64encode(json.dumps(body).encode()).decode())

    def depth(self) -> int:
        return int(self.queue.get_queue_properties().approximate_message_count)

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = run_cli([*args, "--json"])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None


@pytest.fixture
def host(azurite, unique_name, tmp_path, monkeypatch) -> Iterator[Host]:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    for name in list(os.environ):
        if name.startswith("INGEST_") or name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)
    table = str(tmp_path / "lake" / "orders")
    settings = {
        "INGEST_TABLE_URI": table,
        "INGEST_LEDGER_URI": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        "INGEST_STORAGE_CONNECTION": azurite,
        "INGEST_TRIGGER_STORAGE": azurite,
        "INGEST_LANDING_PATH": f"{unique_name}/{{name}}",
        "INGEST_POISON_QUEUE": f"{unique_name}-poison",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    app_config.cache_clear()
    monkeypatch.setitem(functions._sweep_position, "skip", 0)
    container = BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    queue = QueueServiceClient.from_connection_string(azurite).create_queue(
        f"{unique_name}-poison"
    )
    yield Host(container, queue, unique_name, table)
    container.delete_container()
    queue.delete_queue()
    app_config.cache_clear()


def _log_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "ingest_core.functions"]
    return [line for line in lines if line["event"] == event]


# -- decoding ---------------------------------------------------------------------------


def test_a_message_decodes_from_base64_json_or_plain_json_and_nothing_else():
    body = {"Type": "BlobTrigger", "ContainerName": "landing", "BlobName": "a/b.csv"}
    text = json.dumps(body)
    assert decode_message(base64.b64encode(text.encode()).decode()) == body
    assert decode_message(base64.b64encode(b"\xef\xbb\xbf" + text.encode())) == body  # a BOM
    assert decode_message(text) == body
    for bad in ("not json", base64.b64encode(b"[1, 2]").decode(), '{"ContainerName": "x"}',
                json.dumps({**body, "Type": "QueueTrigger"})):
        with pytest.raises(ValueError):
            decode_message(bad)


# -- ingest poison replay ---------------------------------------------------------------


def test_replay_ingests_a_poisoned_blob_once_and_deletes_its_message(host, capsys):
    etag = host.put("orders/a.csv", b"id,amount\n1,1.5\n2,3.0\n")
    host.poison("orders/a.csv", etag)
    host.poison("orders/a.csv", etag)  # the same blob poisoned twice: one file, two messages
    code, report = host.cli_json(capsys, "poison", "replay")
    assert code == EXIT_OK
    assert (report["received"], report["deleted"], report["kept"]) == (2, 2, 0)
    assert {m["outcome"] for m in report["messages"]} == {"ingested"}
    assert report["messages"][0]["url"] == host.url("orders/a.csv")
    assert id_counts(host.table) == {1: 1, 2: 1}
    assert host.depth() == 0
    [row] = open_ledger(os.environ["INGEST_LEDGER_URI"]).records()
    assert report["run_id"] and row.run_id == report["run_id"] == report["stats"]["run_id"]
    host.poison("orders/a.csv", etag)  # poisoned again after it landed: a skip, deleted
    code, report = host.cli_json(capsys, "poison", "replay")
    assert (code, report["outcomes"], report["deleted"]) == (EXIT_OK, {"skipped": 1}, 1)
    assert id_counts(host.table) == {1: 1, 2: 1}
    assert host.depth() == 0


def test_a_gone_blob_and_an_undecodable_message_are_reported_and_kept(host, capsys):
    host.put("orders/b.csv", b"id,amount\n3,4.5\n")
    host.poison("orders/b.csv")
    host.poison("orders/deleted.csv")
    host.queue.send_message("this is not a blob trigger message")
    code, report = host.cli_json(capsys, "poison", "replay")
    assert code == EXIT_FILES_NOT_DONE
    outcomes = {m["blob"] or "?": (m["outcome"], m["deleted"]) for m in report["messages"]}
    assert outcomes == {
        "orders/b.csv": ("ingested", True),
        "orders/deleted.csv": ("gone", False),
        "?": ("undecodable", False),
    }
    assert id_counts(host.table) == {3: 1}
    # kept messages are visible again at once, not after the visibility timeout
    peeked = list(host.queue.peek_messages(max_messages=32))
    assert len(peeked) == 2
    code, report = host.cli_json(capsys, "poison", "replay", "--drop-gone")
    assert code == EXIT_FILES_NOT_DONE  # the gone file never landed: still not done
    outcomes = {m["blob"] or "?": (m["outcome"], m["deleted"]) for m in report["messages"]}
    assert outcomes == {"orders/deleted.csv": ("gone", True), "?": ("undecodable", False)}
    assert host.depth() == 1


def test_a_quarantined_file_is_reported_and_its_message_deleted(host, capsys, monkeypatch):
    monkeypatch.setenv("INGEST_SCHEMA_MODE", "strict")
    host.put("orders/a.csv", b"id,amount\n1,1.5\n")
    assert run_cli(["run", host.url("orders/a.csv")]) == EXIT_OK
    host.put("orders/odd.csv", b"id,amount,extra\n2,3.0,x\n")  # a column strict mode refuses
    host.poison("orders/odd.csv")
    code, report = host.cli_json(capsys, "poison", "replay")
    [message] = report["messages"]
    assert code == EXIT_FILES_NOT_DONE
    assert (message["outcome"], message["deleted"]) == ("quarantined", True)
    assert "extra" in message["error"]
    assert host.depth() == 0
    assert id_counts(host.table) == {1: 1}


def test_without_a_queue_account_the_commands_say_what_to_set(host, capsys, monkeypatch):
    for name in ("INGEST_TRIGGER_STORAGE", "INGEST_STORAGE_CONNECTION"):
        monkeypatch.delenv(name)
    capsys.readouterr()
    assert run_cli(["poison", "list"]) == EXIT_USAGE
    assert "INGEST_TRIGGER_STORAGE" in capsys.readouterr().err


# -- ingest poison list -----------------------------------------------------------------


def test_list_shows_each_message_without_touching_it(host, capsys, azurite):
    host.poison("orders/a.csv")
    host.poison("orders/sub dir/b.csv")
    host.queue.send_message("garbage")
    for _ in range(2):  # a peek leaves the dequeue count alone
        code, report = host.cli_json(capsys, "poison", "list", "--connection", azurite)
        assert code == EXIT_OK
        assert (report["depth"], report["shown"]) == (3, 3)
        assert [m["dequeue_count"] for m in report["messages"]] == [0, 0, 0]
    urls = [m["url"] for m in report["messages"]]
    assert urls == [host.url("orders/a.csv"), host.url("orders/sub%20dir/b.csv"), None]
    assert all(m["inserted_on"] for m in report["messages"])
    assert "neither base64" in report["messages"][2]["error"]
    assert run_cli(["poison", "list"]) == EXIT_OK
    out = capsys.readouterr().out
    assert host.url("orders/a.csv") in out and "3 messages in" in out


# -- the maintenance timer ----------------------------------------------------------------


def test_the_maintenance_line_carries_the_poison_depth_or_null(host, caplog, monkeypatch):
    import function_app

    host.put("orders/a.csv", b"id,amount\n1,1.5\n")
    assert run_cli(["run", host.url("orders/a.csv")]) == EXIT_OK
    host.poison("orders/x.csv")
    host.poison("orders/y.csv")
    caplog.set_level(logging.INFO, "ingest_core.functions")
    function_app.maintenance(TimerRequest(past_due=False))
    [line] = _log_lines(caplog, "maintenance")
    assert line["poison"] == 2
    wrong_key = base64.b64encode(b"not the key").decode()
    monkeypatch.setenv(
        "INGEST_TRIGGER_STORAGE",
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={wrong_key};"
        f"QueueEndpoint=http://127.0.0.1:10001/{AZURITE_ACCOUNT};",
    )
    app_config.cache_clear()
    caplog.clear()
    function_app.maintenance(TimerRequest(past_due=False))  # does not raise
    [line] = _log_lines(caplog, "maintenance")
    assert line["poison"] is None
    [warning] = _log_lines(caplog, "poison_unreadable")
    assert wrong_key not in json.dumps(warning)


def test_the_scheduled_sweep_ingests_unannounced_blobs_a_bounded_window_per_tick(
    host, caplog, monkeypatch
):
    import function_app

    for n in range(1, 6):
        host.put(f"orders/{n}.csv", f"id,amount\n{n},1.0\n".encode())
    host.put("elsewhere/9.csv", b"id,amount\n9,1.0\n")  # outside the swept prefix
    monkeypatch.setenv("INGEST_SWEEP_PREFIXES", f"{host.name}/orders/")
    monkeypatch.setenv("INGEST_SWEEP_MAX_FILES", "2")
    app_config.cache_clear()
    caplog.set_level(logging.INFO, "ingest_core.functions")
    ticks = []
    for _ in range(4):
        caplog.clear()
        function_app.maintenance(TimerRequest(past_due=False))
        [line] = _log_lines(caplog, "sweep")
        ticks.append((line["skip"], line["listed"], line["more"], line["unseen"]))
        assert line["listed"] <= 2
        [tick] = _log_lines(caplog, "maintenance")
        assert line["run_id"] == tick["run_id"] and tick["run_id"].startswith("fn-maintenance-")
    assert ticks == [(0, 2, True, 2), (2, 2, True, 2), (4, 1, False, 1), (0, 2, True, 0)]
    assert id_counts(host.table) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_the_sweep_settings_are_read_and_checked():
    from ingest_core.config import ConfigurationError, from_env

    env = {"INGEST_TABLE_URI": "/t", "INGEST_SWEEP_PREFIXES": "landing/a/, https://x/y/ ,",
           "INGEST_SWEEP_MAX_FILES": "7", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    config = from_env(env)
    assert config.sweep_prefixes == ("landing/a/", "https://x/y/")
    assert config.sweep_max_files == 7
    assert config.trigger_storage is not None
    assert config.trigger_storage.connection_string == "UseDevelopmentStorage=true"
    hash(config)
    assert from_env({"INGEST_TABLE_URI": "/t"}).sweep_max_files == 500
    with pytest.raises(ConfigurationError, match="INGEST_SWEEP_MAX_FILES"):
        from_env({**env, "INGEST_SWEEP_MAX_FILES": "0"})


def test_a_failed_file_keeps_its_message_for_the_next_replay(host, capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the table's parent folder should be")
    monkeypatch.setenv("INGEST_TABLE_URI", str(blocker / "orders"))
    host.put("orders/a.csv", b"id,amount\n1,1.5\n")
    host.poison("orders/a.csv")
    code, report = host.cli_json(capsys, "poison", "replay")
    [message] = report["messages"]
    assert code == EXIT_FILES_NOT_DONE
    assert (message["outcome"], message["deleted"]) == ("failed", False)
    assert host.depth() == 1
    monkeypatch.setenv("INGEST_TABLE_URI", host.table)  # the cause fixed: the same message lands
    code, report = host.cli_json(capsys, "poison", "replay")
    assert (code, report["outcomes"], report["deleted"]) == (EXIT_OK, {"ingested": 1}, 1)
    assert id_counts(host.table) == {1: 1}
    assert host.depth() == 0


def test_replay_without_json_names_each_kept_message_and_the_next_step(host, capsys):
    host.poison("orders/deleted.csv")
    capsys.readouterr()
    assert run_cli(["poison", "replay"]) == EXIT_FILES_NOT_DONE
    captured = capsys.readouterr()
    assert f"gone (kept): {host.url('orders/deleted.csv')}: " in captured.err
    assert "--drop-gone" in captured.err
    assert "1 messages: 0 deleted, 1 kept in" in captured.out
