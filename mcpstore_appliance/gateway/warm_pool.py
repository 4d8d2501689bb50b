"""Warm sandboxes: for a hosted version that sessions started recently, up to `hosted.warm_pool` sandboxes are
kept started but not initialised, so that a new session skips the cold start (sandbox.md: the start before
the server's own initialisation).

- A warm sandbox is never shared: a session takes one out of the pool for good, and the pool starts another
  in the background. It runs the server with no user settings, so only callers without kept `user_config`
  values take one (service.py); everyone else gets a cold start as before.
- Only versions used within `hosted.warm_pool_idle_seconds` are kept warm; the reaper closes the rest.
- All warm sandboxes together stay within `hosted.warm_pool_memory_mb` (each counts its memory limit).
- A warm sandbox whose server stopped meanwhile is dropped when it would be taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .stdio import StdioClient

log = logging.getLogger("mcpstore.gateway")
Starter = Callable[[], Awaitable[StdioClient]]  # a cold start of one version's server, without user settings


class WarmPool:
    def __init__(self, per_version: int, idle_seconds: float, max_total: int,
                 clock: Callable[[], float] = time.monotonic):
        self.per_version = per_version
        self.idle_seconds = idle_seconds
        self.max_total = max_total  # the memory cap, as a number of sandboxes
        self.clock = clock
        self._warm: dict[int, list[StdioClient]] = {}
        self._used: dict[int, float] = {}  # version id -> when a session last started
        self._filling: dict[int, asyncio.Task] = {}
        self._reaper: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        return self.per_version > 0 and self.max_total > 0

    def size(self, version_id: int) -> int:
        return len(self._warm.get(version_id, ()))

    def total(self) -> int:
        return sum(len(clients) for clients in self._warm.values())

    def take(self, version_id: int, starter: Starter) -> StdioClient | None:
        """A warm sandbox of the version (None: none ready), and a refill started in the background."""
        self._used[version_id] = self.clock()
        warm = self._warm.get(version_id, [])
        taken = None
        while warm and taken is None:
            client = warm.pop(0)
            if client.closed is None:
                taken = client
            else:
                asyncio.create_task(client.close())
        self._refill(version_id, starter)
        return taken

    def _refill(self, version_id: int, starter: Starter) -> None:
        running = self._filling.get(version_id)
        if running is None or running.done():
            self._filling[version_id] = asyncio.create_task(self._fill(version_id, starter))

    async def _fill(self, version_id: int, starter: Starter) -> None:
        while self.size(version_id) < self.per_version and self.total() < self.max_total:
            if self.clock() - self._used.get(version_id, 0.0) > self.idle_seconds:
                return  # no longer in use: the reaper will close what is there
            try:
                client = await starter()
            except Exception:  # noqa: BLE001 - a version that does not start is simply not kept warm
                log.warning("warm pool: version %s did not start", version_id, exc_info=True)
                return
            self._warm.setdefault(version_id, []).append(client)

    async def reap(self) -> int:
        """Close the warm sandboxes of versions not used within the idle time; how many were closed."""
        now, closed = self.clock(), []
        for version_id in [v for v, used in self._used.items() if now - used > self.idle_seconds]:
            del self._used[version_id]
            closed += self._warm.pop(version_id, [])
        await asyncio.gather(*(client.close() for client in closed), return_exceptions=True)
        return len(closed)

    def start(self) -> None:
        if not self.enabled:
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(max(0.5, min(30.0, self.idle_seconds / 2)))
                try:
                    await self.reap()
                except Exception:  # a failed round must not end the timer
                    log.exception("warm pool reaping failed")

        self._reaper = asyncio.get_running_loop().create_task(loop(), name="warm-pool-reaper")

    async def stop(self) -> None:
        tasks = [t for t in (self._reaper, *self._filling.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        clients = [client for clients in self._warm.values() for client in clients]
        self._warm.clear()
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
