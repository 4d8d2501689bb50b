"""Blobs on local disk, content-addressed: `<root>/ab/cd/abcd…` (the sha256 of the bytes).

Crash safety: every write goes to a fresh file under `<root>/tmp/` (same file system, so the final
rename is atomic), is fsynced, renamed into place, and the directory is fsynced. A reader therefore sees
either no blob or the whole blob; a crash leaves at most a stray temp file, which no reader looks at
and `sweep_temp` removes later. Blocking file work runs in threads; reads and writes stream in chunks,
never a whole file in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from mcpstore_appliance.errors import NotFound
from mcpstore_appliance.private_files import create_private_dirs, private_dir
from mcpstore_appliance.tempfiles import remove_stale

from ._util import CHUNK_SIZE, check_digest, check_expected, check_range, hash_file, is_digest, spool
from .base import StoredBlob

TEMP_DIR = "tmp"


class LocalBlobStore:
    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE):
        self.root = Path(root)
        self.tmp_dir = self.root / TEMP_DIR
        self.chunk_size = chunk_size
        private_dir(self.tmp_dir)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, sha256: str) -> Path:
        sha256 = check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    # -- writing ---------------------------------------------------------------------------------

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredBlob:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="put-")
        tmp = Path(name)
        fh = os.fdopen(fd, "wb")
        try:
            digest, size = await spool(chunks, fh, self.chunk_size)
            await asyncio.to_thread(_close_durably, fh)
            return await asyncio.to_thread(self._commit, tmp, digest, size)
        finally:
            # On success the temp file was renamed away; on any failure (a broken upload stream,
            # cancellation) it is removed so nothing half-written survives.
            fh.close()
            tmp.unlink(missing_ok=True)

    async def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> StoredBlob:
        """Store a local file. The bytes are hashed; a given `sha256` must match.

        On the same file system the file is hard-linked instead of copied, so the caller hands it
        over: it may delete its path afterwards but must not write to the file again. With
        `trusted=True` the caller vouches that it computed `sha256` itself while writing the file
        (the publish upload does), so a hard-linked file is only synced, not read a second time.
        """
        if sha256 is not None:
            check_digest(sha256)
        return await asyncio.to_thread(self._put_file_sync, Path(path), sha256, trusted and sha256 is not None)

    def _put_file_sync(self, source: Path, expected: str | None, trusted: bool = False) -> StoredBlob:
        tmp = self.tmp_dir / f"file-{os.urandom(12).hex()}"
        try:
            if _try_link(source, tmp):
                digest, size = (expected, _sync(tmp)) if trusted else hash_file(tmp, fsync=True)
            else:
                digest, size = _copy_hashing(source, tmp, self.chunk_size)
            check_expected(expected, digest)
            return self._commit(tmp, digest, size)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, sha256: str, size: int) -> StoredBlob:
        """Move a durable temp file into its content address (or drop it if the blob is already there)."""
        final = self.path_for(sha256)
        try:
            if final.stat().st_size == size:
                return StoredBlob(sha256, size)  # same bytes already stored: a no-op
        except FileNotFoundError:
            pass
        _make_dirs_durably(final.parent)
        # Concurrent puts of the same bytes may both get here; each rename installs identical
        # content atomically, so the last one winning is harmless.
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return StoredBlob(sha256, size)

    # -- reading ---------------------------------------------------------------------------------

    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path_for(sha256)
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} not found") from None
        try:
            size = os.fstat(fd).st_size
            position, stop = check_range(start, end, size)
            while position < stop:
                block = await asyncio.to_thread(os.pread, fd, min(self.chunk_size, stop - position), position)
                if not block:
                    raise OSError(f"blob {sha256} is shorter than its recorded size")
                position += len(block)
                yield block
        finally:
            os.close(fd)

    async def size(self, sha256: str) -> int | None:
        path = self.path_for(sha256)
        try:
            return (await asyncio.to_thread(os.stat, path)).st_size
        except FileNotFoundError:
            return None

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    async def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def list_digests(self) -> AsyncIterator[str]:
        for top in await asyncio.to_thread(_subdirs, self.root):
            # One thread hop per top-level fan-out folder keeps the event loop free on big stores.
            for digest in await asyncio.to_thread(_digests_under, self.root / top):
                yield digest

    # -- health and housekeeping -----------------------------------------------------------------

    async def ping(self) -> bool:
        return await asyncio.to_thread(self._ping_sync)

    def _ping_sync(self) -> bool:
        try:
            fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="ping-")
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
                os.unlink(name)
        except OSError:
            return False
        return True

    def sweep_temp(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove temp files left by crashed writes; young ones may belong to a put in flight."""
        return remove_stale(self.tmp_dir, max_age_seconds)

    async def modified_at(self, sha256: str) -> float | None:
        """When the blob was last written (seconds since the epoch), or None when it is absent."""
        try:
            return (await asyncio.to_thread(os.stat, self.path_for(sha256))).st_mtime
        except FileNotFoundError:
            return None

    def local_file(self, sha256: str) -> Path | None:
        return self.path_for(sha256)

    async def presigned_url(self, sha256: str, filename: str) -> str | None:
        check_digest(sha256)
        return None  # local blobs are streamed by the appliance itself

    async def close(self) -> None:
        return None


def _close_durably(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


def _try_link(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:
        return False  # another file system (EXDEV) or links not supported: copy instead
    os.chmod(target, 0o600)
    return True


def _sync(path: Path) -> int:
    """fsync a file another writer wrote; return its size."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
        return os.fstat(fh.fileno()).st_size


def _copy_hashing(source: Path, target: Path, chunk_size: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(target, "xb") as dst:
        os.fchmod(dst.fileno(), 0o600)
        while block := src.read(chunk_size):
            digest.update(block)
            dst.write(block)
            size += len(block)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest(), size


def _make_dirs_durably(folder: Path) -> None:
    """Create the fan-out folders and fsync each parent that gained an entry."""
    for path in create_private_dirs(folder):
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _subdirs(root: Path) -> list[str]:
    return sorted(
        entry.name for entry in os.scandir(root) if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)
    )


def _digests_under(top: Path) -> list[str]:
    found = []
    for sub in _subdirs(top):
        for entry in os.scandir(top / sub):
            name = entry.name
            if is_digest(name) and name.startswith(top.name + sub) and entry.is_file(follow_symlinks=False):
                found.append(name)
    return sorted(found)
