"""Streaming SHA-256 of local files: the same digest as hashing the bytes whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ingest_core.hashing import file_sha256


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 100_003])
def test_file_sha256_matches_hashlib_across_chunk_edges(tmp_path: Path, size: int):
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(str(path), chunk_bytes=4096) == (hashlib.sha256(data).hexdigest(), size)
