"""Blobs that no version refers to never stay: a refused or failed publish takes its blobs back, and a sweep (at
start and periodically) removes what a crash left (orphan blobs, temp files of uploads and puts).

The one race that matters: a sweep or a failed publish deleting a blob that another publish of the same bytes
has just stored and is about to commit. Both decide and delete inside a write transaction, the same lock the
publish's commit takes (across processes too: BEGIN IMMEDIATE). So a publish commits either before (the
blob is referenced and kept) or after the deletion; in that case it finds the blob gone when it checks right
after its commit, and stores it again from the upload it still holds (StoredForPublish).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..blobs.base import BlobStore
from ..db import Database
from .uploads import sweep_stale

log = logging.getLogger("mcpstore.sweep")

REFERENCED = ("SELECT EXISTS(SELECT 1 FROM versions WHERE sha256 = :d)"
              " OR EXISTS(SELECT 1 FROM versions WHERE icon_sha256 = :d)")
ALL_REFERENCED = ("SELECT sha256 AS d FROM versions UNION SELECT icon_sha256 FROM versions"
                  " WHERE icon_sha256 IS NOT NULL")


async def remove_if_unreferenced(db: Database, blobs: BlobStore, digest: str, *, written_before: float | None = None) -> bool:
    """Delete the blob when no version refers to it (and, with `written_before`, it was last written before that
    time); True when it was deleted. Decided and done while holding the write lock (see the module's doc)."""
    async with db.write() as tx:
        if await tx.fetch_value(REFERENCED, {"d": digest}):
            return False
        if written_before is not None:
            modified = await blobs.modified_at(digest)
            if modified is None or modified >= written_before:
                return False
        return await blobs.delete(digest)


class StoredForPublish:
    """The blobs one publish stores, as an async context around storing them and committing the version: when the
    block fails (a refusal, a 409 found in the transaction, any exception), they are removed again unless a version
    refers to them; when it succeeds, each is checked present and stored again if a sweep took it meanwhile."""

    def __init__(self, db: Database, blobs: BlobStore):
        self.db, self.blobs = db, blobs
        self._again: dict[str, Callable[[], Awaitable[Any]]] = {}  # digest -> how to store it again

    async def put_file(self, path: Path, sha256: str) -> str:
        async def put() -> Any:
            return await self.blobs.put_file(path, sha256, trusted=True)  # the upload hashed it as it streamed

        self._again[sha256] = put
        await put()
        return sha256

    async def put_bytes(self, data: bytes) -> str:
        async def put() -> Any:
            async def one_chunk():
                yield data

            return await self.blobs.put_stream(one_chunk())

        stored = await put()
        self._again[stored.sha256] = put
        return stored.sha256

    async def __aenter__(self) -> "StoredForPublish":
        return self

    async def __aexit__(self, kind, exc, tb) -> None:
        if exc is None:
            for digest, put in self._again.items():
                if not await self.blobs.exists(digest):
                    log.warning("blob %s was swept while its publish committed; storing it again", digest)
                    await put()
            return
        # Shielded: a cancelled request still takes its blobs back.
        await asyncio.shield(self._take_back())

    async def _take_back(self) -> None:
        for digest in self._again:
            try:
                await remove_if_unreferenced(self.db, self.blobs, digest)
            except Exception:  # the publish's own error matters more; the sweep retries later
                log.exception("could not remove blob %s of a failed publish", digest)


class Sweeper:
    """Removes crash leftovers at start and every `interval` seconds: temp files nobody holds and orphan blobs,
    both once older than `grace` seconds."""

    def __init__(self, db: Database, blobs: BlobStore, uploads_dir: Path, *, interval: float, grace: float):
        self.db, self.blobs, self.uploads_dir = db, blobs, uploads_dir
        self.interval, self.grace = interval, grace
        self.sweeps = 0  # completed sweeps (tests wait for them)
        self._task: asyncio.Task | None = None

    async def sweep(self) -> dict[str, int]:
        cutoff = time.time() - self.grace
        temp = await asyncio.to_thread(sweep_stale, self.uploads_dir, self.grace)
        temp += await asyncio.to_thread(self.blobs.sweep_temp, self.grace)
        referenced = {row["d"] for row in await self.db.fetch_all(ALL_REFERENCED)}
        orphans = 0
        async for digest in self.blobs.list_digests():
            if digest not in referenced and await remove_if_unreferenced(self.db, self.blobs, digest,
                                                                         written_before=cutoff):
                orphans += 1
        if temp or orphans:
            log.info("swept %d temp file(s) and %d orphan blob(s) left by interrupted writes", temp, orphans)
        self.sweeps += 1
        return {"temp_files": temp, "orphan_blobs": orphans}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # storage unreachable, say: try again next time
                log.exception("sweeping crash leftovers failed")
            await asyncio.sleep(self.interval)
