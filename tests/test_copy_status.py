"""A blob still being copied is not read: the HNS CopyBlob event fires when the copy starts.

Azurite finishes every copy at once (its copy status is always `success`), so
the finished case runs against Azurite, and the pending and failed cases
against a fake Blob endpoint: a local HTTP server answering the download's
first GET the way Blob Storage answers for an unfinished copy destination.
Nothing local can produce a pending copy. The last test sends a CopyBlob
event through the Event Grid trigger against that endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from ingest_core.azure.settings import AZURITE_ACCOUNT, AZURITE_KEY
from ingest_core.config import StorageConfig
from ingest_core.errors import IngestError, SourceChangedError
from ingest_core.events import build_blob_created
from ingest_core.ledger import open_ledger
from ingest_core.sources import SourceFile
from ingest_core.sources.azure_blob import AzureBlobSource, check_copy_finished

BODY = b"a,b\n1,2\n3,4\n"


@pytest.mark.azurite
def test_a_finished_copy_is_read_whole(azurite, unique_name, tmp_path):
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    try:
        container.get_blob_client("src.csv").upload_blob(BODY)
        destination = container.get_blob_client("landed.csv")
        destination.start_copy_from_url(container.get_blob_client("src.csv").url)
        assert destination.get_blob_properties().copy.status == "success"
        source = AzureBlobSource(StorageConfig(connection_string=azurite))
        [file] = source.list(f"abfs://{unique_name}/landed.csv")
        copy = source.fetch(file, tmp_path)
        try:
            assert copy.sha256 == hashlib.sha256(BODY).hexdigest()
        finally:
            copy.discard()
    finally:
        container.delete_container()


class _UnfinishedCopy(BaseHTTPRequestHandler):
    """Answers HEAD and GET like Blob Storage does for a copy destination in `copy_status`."""

    copy_status = "pending"

    def _blob_headers(self) -> None:
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"0x8DCOPY"')
        self.send_header("Last-Modified", "Thu, 03 Dec 2026 07:00:00 GMT")
        self.send_header("x-ms-blob-type", "BlockBlob")
        self.send_header("x-ms-version", "2025-01-05")
        self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
        self.send_header("x-ms-copy-id", "3f1c0e6a-0000-0000-0000-000000000000")
        self.send_header("x-ms-copy-status", self.copy_status)
        self.send_header("x-ms-copy-progress", f"4/{len(BODY)}")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self._blob_headers()
        self.end_headers()

    def do_GET(self) -> None:
        body = BODY[:4]
        self.send_response(206)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(BODY)}")
        self._blob_headers()
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def unfinished_copy(request) -> Iterator[StorageConfig]:
    handler = type("Handler", (_UnfinishedCopy,), {"copy_status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield StorageConfig(
            connection_string=(
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
            )
        )
    finally:
        server.shutdown()
        server.server_close()


def _landed(storage: StorageConfig) -> SourceFile:
    endpoint = storage.connection_string.split("BlobEndpoint=")[1].rstrip(";")  # type: ignore[union-attr]
    return SourceFile(uri=f"{endpoint}/landing/copied.csv", relative="copied.csv")


@pytest.mark.parametrize("unfinished_copy", ["pending"], indirect=True)
def test_a_pending_copy_is_refused_before_any_byte_is_kept(unfinished_copy, tmp_path):
    source = AzureBlobSource(unfinished_copy)
    with pytest.raises(SourceChangedError, match="still being copied") as caught:
        source.fetch(_landed(unfinished_copy), tmp_path)
    assert caught.value.retryable
    assert "4/12" in str(caught.value) and "copied.csv" in str(caught.value)
    assert list(tmp_path.iterdir()) == [], "the spool file is removed"


@pytest.mark.parametrize("unfinished_copy", ["failed", "aborted"], indirect=True)
def test_a_failed_copy_is_refused_and_says_to_copy_again(unfinished_copy, tmp_path):
    source = AzureBlobSource(unfinished_copy)
    with pytest.raises(SourceChangedError, match="copy the file again"):
        source.fetch(_landed(unfinished_copy), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-ms-copy-status": "success"}, {"X-MS-COPY-STATUS": "Success"}],
)
def test_blobs_that_are_not_unfinished_copies_pass(headers):
    check_copy_finished("https://a.blob.core.windows.net/c/x.csv", headers)


def test_header_names_are_matched_whatever_their_case():
    with pytest.raises(SourceChangedError, match="pending"):
        check_copy_finished("https://a.blob.core.windows.net/c/x", {"X-Ms-Copy-Status": "pending"})


@pytest.mark.parametrize("unfinished_copy", ["pending"], indirect=True)
def test_a_copy_blob_event_during_the_copy_makes_the_platform_retry(
    unfinished_copy, monkeypatch, tmp_path
):
    """The Event Grid trigger, end to end, for an HNS CopyBlob event that came at copy start."""
    import function_app
    from ingest_core.functions import app_config

    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INGEST_TABLE_URI", str(tmp_path / "lake" / "orders"))
    monkeypatch.setenv("INGEST_LEDGER_URI", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    monkeypatch.setenv("INGEST_STORAGE_CONNECTION", unfinished_copy.connection_string or "")
    monkeypatch.setenv("INGEST_LANDING_PATH", "landing/{name}")
    app_config.cache_clear()
    url = _landed(unfinished_copy).uri
    raw = build_blob_created(url, content_length=len(BODY), api="CopyBlob")
    datum = meta.Datum(json.dumps(raw), "json")
    event = EventGridEventInConverter.decode(datum, trigger_metadata={})
    try:
        with pytest.raises(IngestError, match="still being copied"):
            function_app.ingest_replay(event)
    finally:
        app_config.cache_clear()
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        [row] = ledger.records()
    finally:
        ledger.close()
    assert row.status == "failed" and row.path == url
    assert "still being copied" in (row.error or "")
