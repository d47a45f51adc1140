"""Shared fixtures: Azurite (started when not already listening), unique names, sample files."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_CONNECTION = (
    f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{AZURITE_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{AZURITE_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{AZURITE_ACCOUNT};"
)
AZURITE_PORTS = (10000, 10001, 10002)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _azurite_command() -> list[str]:
    local = REPO / "node_modules" / ".bin" / "azurite"
    exe = str(local) if local.exists() else shutil.which("azurite")
    if exe is None:
        pytest.fail("Azurite is not installed: run `npm install` in the repository (see README)")
    return [exe]


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A running Azurite; yields its connection string. Starts one if none listens."""
    if all(_listening(p) for p in AZURITE_PORTS):
        yield AZURITE_CONNECTION
        return
    workdir = tempfile.mkdtemp(prefix="azurite-")
    log = open(os.path.join(workdir, "azurite.log"), "w")
    process = subprocess.Popen(
        [*_azurite_command(), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
         "--location", workdir, "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1",
         "--tableHost", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not all(_listening(p) for p in AZURITE_PORTS):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Azurite did not start; see {log.name}")
        time.sleep(0.1)
    try:
        yield AZURITE_CONNECTION
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def unique_name() -> str:
    """A lowercase name unique to this test (valid for containers and tables)."""
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """An empty landing folder."""
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def table_uri(tmp_path: Path) -> str:
    """A local Delta table path that does not exist yet."""
    return str(tmp_path / "lake" / "orders")
