"""The BlobStore protocol: content-addressed bundle storage.

Blobs are keyed by the lowercase hex sha256 of their bytes. `put` consumes a stream of chunks,
hashes while storing and returns the digest and size; storing bytes that are already present is a
no-op. Readers ask for a byte range and get an async iterator of chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """The blob store itself failed (unreachable, misconfigured): the client is not at fault (503)."""


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


@runtime_checkable
class BlobStore(Protocol):
    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Store a stream; return its sha256 and size. Same bytes twice store one copy."""

    async def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> StoredBlob:
        """Store a local file. `trusted=True` means the caller computed `sha256` itself while writing
        the file (a publish upload hashed while it streamed), so the store need not read it again."""

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes [start, end) (end exclusive, None = to the end). Raises NotFound.

        An async generator: `async for chunk in store.open_range(d, 0, 10)`; NotFound and a bad
        range surface on the first iteration, so check `size()` before sending response headers."""

    async def size(self, sha256: str) -> int | None:
        """The blob's size, or None when it is absent."""

    async def exists(self, sha256: str) -> bool: ...

    async def delete(self, sha256: str) -> bool:
        """Remove a blob; True when it was there."""

    async def ping(self) -> bool:
        """Reachable and writable (for /readyz)."""

    def list_digests(self) -> AsyncIterator[str]:
        """Every stored sha256 (for backups and garbage collection)."""

    async def modified_at(self, sha256: str) -> float | None:
        """When the blob was last written (epoch seconds), or None when it is absent: the orphan sweep only
        removes blobs older than its grace period."""

    def sweep_temp(self, max_age_seconds: float) -> int:
        """Remove the store's own temp files that crashed writes left, older than `max_age_seconds` (blocking:
        run it in a thread); returns how many."""

    async def presigned_url(self, sha256: str, filename: str) -> str | None:
        """A time-limited direct download URL, or None when the store cannot or is not set to redirect."""

    def local_file(self, sha256: str) -> Path | None:
        """Where the blob's bytes are a file on this machine (the server may then send them with sendfile), or
        None. The file may be absent: the caller opens it and treats a missing file like a missing blob."""

    async def close(self) -> None: ...
