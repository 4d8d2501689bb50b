"""Receive an upload into a private temporary file while hashing it, with the size cap enforced as it streams.

The web layer hands over the request body as an async iterator of chunks. Chunks are gathered into batches
of about a block; each batch is hashed on one worker thread and written on another (hashlib and file writes
release the GIL, so the two run on two cores) while the event loop already gathers the next block. Receiving
then costs about the slower of one sha256 pass and one write pass over the bytes, not their sum.
Reading stops at the first chunk that crosses the cap: an oversized upload is refused after at most
`max_bytes` + one chunk, not after the whole body. The temporary file is removed however the block exits.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .. import tempfiles
from ..errors import InvalidInput, TooLarge
from ..private_files import private_dir

BLOCK_SIZE = 1024 * 1024  # large enough that thread hand-offs are cheap per byte; bounds memory per upload
INLINE_TAIL_BYTES = 64 * 1024
PREFIX, SUFFIX = "upload-", ".mcpb"


@dataclass(frozen=True)
class Upload:
    path: Path
    sha256: str  # lowercase hex of every byte received
    size: int


def too_large(max_bytes: int) -> TooLarge:
    return TooLarge(f"the bundle is larger than this registry's limit of {max_bytes:,} bytes",
                    code="upload_too_large", details={"max_bytes": max_bytes})


def check_declared_size(declared_size: int | None, max_bytes: int) -> None:
    """Refuse before reading anything when the client announced the size (Content-Length)."""
    if declared_size is not None and declared_size > max_bytes:
        raise too_large(max_bytes)
    if declared_size == 0:
        raise empty_body()


def empty_body() -> InvalidInput:
    return InvalidInput("the request body is empty: send the .mcpb file as the body", code="empty_body")


def _hash_blocks(digest, blocks: list[bytes]) -> None:
    for block in blocks:
        digest.update(block)


@asynccontextmanager
async def spooled(chunks: AsyncIterable[bytes], tmp_dir: Path, max_bytes: int, *,
                  declared_size: int | None = None) -> AsyncIterator[Upload]:
    """Receive `chunks` into a temp file under `tmp_dir`; yield the Upload; always delete the file."""
    check_declared_size(declared_size, max_bytes)
    private_dir(tmp_dir)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=PREFIX, suffix=SUFFIX)  # mode 0600
    path = Path(name)
    held = tempfiles.hold(path)  # a sweep leaves the file alone until the block exits, however slow the client
    try:
        with os.fdopen(fd, "wb") as fh:
            digest, size = await _receive(chunks, fh, max_bytes)
        if size == 0:
            raise empty_body()
        yield Upload(path, digest.hexdigest(), size)
    finally:
        path.unlink(missing_ok=True)
        tempfiles.release(held)


async def _receive(chunks: AsyncIterable[bytes], fh, max_bytes: int):
    digest = hashlib.sha256()
    size = 0
    batch: list[bytes] = []  # chunks as received: no copying into one buffer
    batch_bytes = 0
    pending: asyncio.Future | None = None  # the previous batch's hash and write, both in flight
    loop = asyncio.get_running_loop()

    async def hash_and_write(blocks: list[bytes]) -> None:
        # Both always finish before this returns (never close the file under a running write).
        results = await asyncio.gather(loop.run_in_executor(None, _hash_blocks, digest, blocks),
                                       loop.run_in_executor(None, fh.writelines, blocks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            batch.append(chunk)
            batch_bytes += len(chunk)
            if batch_bytes >= BLOCK_SIZE:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(hash_and_write(batch))
                batch, batch_bytes = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch_bytes < INLINE_TAIL_BYTES:  # a small tail costs less here than two thread hand-offs
            _hash_blocks(digest, batch)
            fh.writelines(batch)
        else:
            await hash_and_write(batch)
        return digest, size
    finally:
        if pending is not None:
            # Never close the file under a write still running in its thread.
            with suppress(BaseException):
                await pending


def sweep_stale(tmp_dir: Path, max_age_seconds: float) -> int:
    """Remove upload files a killed process left behind (a normal exit always removes its own): older than
    `max_age_seconds` and held by no upload in flight, in this process or another one sharing the folder."""
    return tempfiles.remove_stale(tmp_dir, max_age_seconds, (PREFIX,))
