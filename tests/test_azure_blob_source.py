"""The Blob/ADLS source against Azurite: listing rules, one pinned read, overwrite detection."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest_core.config import StorageConfig
from ingest_core.errors import SourceChangedError
from ingest_core.sources import SourceFile, source_for
from ingest_core.sources.azure_blob import AzureBlobSource

pytestmark = pytest.mark.azurite


@pytest.fixture
def container(azurite, unique_name):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    client = service.create_container(unique_name)
    yield client
    client.delete_container()


@pytest.fixture
def source(azurite) -> AzureBlobSource:
    return AzureBlobSource(StorageConfig(connection_string=azurite))


@contextmanager
def overwrite_once_reading_starts(spool: Path, overwrite: Callable[[], None]) -> Iterator[None]:
    """Call `overwrite` from a thread as soon as a spool file in `spool` has bytes.

    The body must start a read; on leaving, the overwrite must have happened.
    """
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.stat().st_size > 0 for p in spool.iterdir()):
                overwrite()
                done.set()
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        watcher.join()
    assert done.is_set(), "the read finished before the overwrite: make the blob larger"


def put(container, name: str, data: bytes, **metadata: str) -> None:
    container.upload_blob(name, data, overwrite=True, metadata=metadata or None)


def test_source_for_a_blob_url_is_the_blob_source(azurite):
    assert isinstance(source_for("abfs://landing/raw/", StorageConfig(azurite)), AzureBlobSource)


def test_listing_skips_hidden_names_and_folder_placeholders(container, source):
    for name in ("raw/b.csv", "raw/a.csv", "raw/sub/c.csv", "raw/_SUCCESS", "raw/.crc",
                 "raw/_temporary/x.csv", "raw/sub/.hidden/y.csv", "rawish/d.csv", "e.csv"):
        put(container, name, b"x,y\n1,2\n")
    put(container, "raw/folder", b"", hdi_isfolder="true")
    put(container, "raw/empty/", b"")
    put(container, "raw/empty.csv", b"")
    name = container.container_name
    for root in (f"abfs://{name}/raw/", f"abfs://{name}/raw",
                 f"http://127.0.0.1:10000/devstoreaccount1/{name}/raw/"):
        files = list(source.list(root))
        assert [f.relative for f in files] == ["a.csv", "b.csv", "empty.csv", "sub/c.csv"]
        assert files[0].uri == root.rstrip("/").removesuffix("/raw") + "/raw/a.csv"
        assert files[0].size == 8 and files[0].etag
    assert [f.relative for f in source.list(f"abfs://{name}")] == [
        "e.csv", "raw/a.csv", "raw/b.csv", "raw/empty.csv", "raw/sub/c.csv", "rawish/d.csv"
    ]


def test_a_blob_root_lists_that_blob(container, source):
    put(container, "raw/a.csv", b"1")
    files = list(source.list(f"abfs://{container.container_name}/raw/a.csv"))
    assert [(f.relative, f.uri) for f in files] == [
        ("a.csv", f"abfs://{container.container_name}/raw/a.csv")
    ]


def test_missing_container_is_a_clear_file_not_found(source, unique_name):
    with pytest.raises(FileNotFoundError, match=f"container '{unique_name}' does not exist"):
        list(source.list(f"abfs://{unique_name}/raw/"))


def test_fetch_spools_and_hashes_the_bytes_once(container, source, tmp_path):
    name = "raw/we ird#1?/ünï 100%.csv"
    data = b"a,b\n" + b"1,2\n" * 100_000
    put(container, name, data)
    [file] = source.list(f"abfs://{container.container_name}/raw/")
    assert file.relative == "we ird#1?/ünï 100%.csv"
    copy = source.fetch(file, tmp_path)
    try:
        assert copy.sha256 == hashlib.sha256(data).hexdigest()
        assert copy.size == len(data)
        assert copy.path.read_bytes() == data
        assert copy.path.name.endswith(".csv") and copy.temporary and copy.etag
        source.verify(file, copy)
    finally:
        copy.discard()
    assert not copy.path.exists()


def test_a_blob_overwritten_mid_read_is_refused(container, azurite, tmp_path):
    source = AzureBlobSource(StorageConfig(connection_string=azurite), chunk_bytes=256 * 1024)
    old = b"0123456789abcdef" * (2 * 1024 * 1024)  # 32 MiB: 128 pinned range reads
    new = b"a,b\n1,2\n"
    put(container, "raw/big.csv", old)
    [file] = source.list(f"abfs://{container.container_name}/raw/")
    spool = tmp_path / "spool"
    spool.mkdir()
    with overwrite_once_reading_starts(spool, lambda: put(container, "raw/big.csv", new)):
        with pytest.raises(SourceChangedError, match=r"raw/big\.csv was overwritten"):
            source.fetch(file, spool)
    assert list(spool.iterdir()) == []
    copy = source.fetch(file, spool)
    assert copy.sha256 == hashlib.sha256(new).hexdigest()
    copy.discard()


def test_a_blob_deleted_before_the_read_is_a_source_change(container, source, tmp_path):
    file = SourceFile(uri=f"abfs://{container.container_name}/raw/gone.csv", relative="gone.csv")
    with pytest.raises(SourceChangedError, match=r"gone\.csv disappeared"):
        source.fetch(file, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_verify_notices_a_removed_spool(container, source, tmp_path):
    put(container, "a.csv", b"1\n")
    [file] = source.list(f"abfs://{container.container_name}/")
    copy = source.fetch(file, tmp_path)
    Path(copy.path).unlink()
    with pytest.raises(SourceChangedError, match="spool"):
        source.verify(file, copy)
