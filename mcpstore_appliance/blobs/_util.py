"""Small helpers shared by the blob stores: digest checks, byte ranges, file hashing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from mcpstore_appliance.errors import InvalidInput

_DIGEST = re.compile(r"[0-9a-f]{64}")

# Big enough that thread hand-offs and syscalls are cheap per byte, small enough to bound memory.
CHUNK_SIZE = 1024 * 1024


def check_digest(sha256: object) -> str:
    """A content address is exactly 64 lowercase hex digits; anything else (paths, `..`) is refused."""
    if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
        raise InvalidInput("a blob digest must be 64 lowercase hex characters (sha256)", code="invalid_digest")
    return sha256


def is_digest(name: str) -> bool:
    return bool(_DIGEST.fullmatch(name))


def check_bounds(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise InvalidInput(f"invalid byte range [{start}, {end})", code="invalid_range")


def check_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Clamp [start, end) to a blob of `size` bytes. start == size is an empty read; past it is an error."""
    check_bounds(start, end)
    if start > size:
        raise InvalidInput(f"range start {start} is past the end of a {size}-byte blob", code="range_not_satisfiable")
    return start, size if end is None else min(end, size)


def hash_file(path: Path, *, fsync: bool = False) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks (blocking: run it in a thread). `fsync` also makes
    its bytes durable, for a file another writer may not have synced."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_SIZE):
            digest.update(block)
            size += len(block)
        if fsync:
            os.fsync(fh.fileno())
    return digest.hexdigest(), size


def check_expected(expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise InvalidInput(
            f"content does not match the given sha256 (expected {expected}, got {actual})",
            code="digest_mismatch",
        )


async def spool(chunks: AsyncIterable[bytes], fh: BinaryIO, chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Write a stream to an open file while hashing it; returns (sha256, size).

    Small network chunks are gathered into `chunk_size` blocks so that each thread hop (hashing and
    writing run off the event loop) moves a worthwhile amount of data.
    """
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= chunk_size:
            await asyncio.to_thread(_write_hashing, fh, digest, buffer)
            size += len(buffer)
            buffer.clear()
    await asyncio.to_thread(_write_hashing, fh, digest, buffer)
    size += len(buffer)
    return digest.hexdigest(), size


def _write_hashing(fh: BinaryIO, digest, data: bytearray) -> None:
    digest.update(data)
    fh.write(data)
