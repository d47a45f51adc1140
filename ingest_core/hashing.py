"""Streaming SHA-256: hash a byte stream in chunks, optionally spooling it to disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import BinaryIO

CHUNK_BYTES = 8 * 1024 * 1024
"""8 MiB: large enough for hashlib to run at full speed, small enough to stay out of RSS."""


def hash_chunks(chunks: Iterable[bytes], spool: BinaryIO | None = None) -> tuple[str, int]:
    """SHA-256 hex digest and byte count of `chunks`, writing each chunk to `spool` if given."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if spool is not None:
            spool.write(chunk)
    return digest.hexdigest(), size


def file_sha256(path: str, chunk_bytes: int = CHUNK_BYTES) -> tuple[str, int]:
    """SHA-256 and size of a local file, read in chunks into one reused buffer.

    A new bytes object per chunk held hashing to 0.8-0.9 GB/s here; reading
    into the same buffer runs at 1.2-1.3 GB/s (bench/large_file.py prints it).
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as stream:
        # a small file gets a buffer its size (+1, to see the end in one read): zeroing
        # 8 MiB for a 3 KB file cost more than hashing it
        try:
            length = os.fstat(stream.fileno()).st_size + 1
        except OSError:
            length = chunk_bytes
        buffer = memoryview(bytearray(max(1, min(chunk_bytes, length))))
        while count := stream.readinto(buffer):
            digest.update(buffer[:count])
            size += count
    return digest.hexdigest(), size
