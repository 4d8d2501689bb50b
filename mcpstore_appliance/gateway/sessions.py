"""Hosted sessions: one sandbox each, never shared across users or sessions; caps per user and in total;
idle sessions reaped. A session id is the one credential of a session besides its owner's token, so it is
random (32 bytes) and only ever matched together with its owner.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RateLimited, Unavailable
from .stdio import RpcError, StdioClient

log = logging.getLogger("mcpstore.gateway")


@dataclass(frozen=True)
class SessionLimits:
    init_timeout: float = 15.0
    call_timeout: float = 5.0
    idle_timeout: float = 300.0
    max_message_bytes: int = 1024 * 1024
    per_user: int = 4
    total: int = 32

    @classmethod
    def from_settings(cls, hosted) -> "SessionLimits":
        return cls(init_timeout=hosted.init_timeout_seconds, call_timeout=hosted.call_timeout_seconds,
                   idle_timeout=hosted.idle_timeout_seconds, max_message_bytes=hosted.max_message_bytes,
                   per_user=hosted.max_sessions_per_user, total=hosted.max_sessions)


@dataclass
class HostedSession:
    id: str
    owner: str  # "user:<id>"
    package_id: int
    version_id: int
    client: StdioClient
    protocol_version: str = ""
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # requests in flight: a session answering a long call is not idle
    ref: str = ""  # "namespace/name" of the endpoint that opened it
    pricing_model: str = "free"  # per_call: each tools/call is charged first (gateway/billing.py)


class SessionManager:
    def __init__(self, limits: SessionLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self.sessions: dict[str, HostedSession] = {}
        self._slots: Counter[str] = Counter()  # per owner: sessions open or starting
        self._reaper: asyncio.Task | None = None

    def reserve(self, owner: str) -> None:
        """Take a slot for a session about to start; release() gives it back. Raises 429 or 503."""
        if self._slots[owner] >= self.limits.per_user:
            raise RateLimited(f"you have {self.limits.per_user} hosted sessions open; end one (DELETE) or wait "
                              "for an idle one to be reaped", code="too_many_sessions", retry_after=30)
        if sum(self._slots.values()) >= self.limits.total:
            raise Unavailable("every hosted sandbox of this appliance is in use; try again shortly",
                              code="sandboxes_busy", retry_after=30)
        self._slots[owner] += 1

    def release(self, owner: str) -> None:
        self._slots[owner] -= 1
        if self._slots[owner] <= 0:
            del self._slots[owner]

    def add(self, owner: str, package_id: int, version_id: int, client: StdioClient) -> HostedSession:
        session = HostedSession(secrets.token_urlsafe(32), owner, package_id, version_id, client,
                                last_used=self.clock())
        self.sessions[session.id] = session
        return session

    def get(self, session_id: str, owner: str) -> HostedSession | None:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner or session.client.closed:
            return None
        return session

    async def end(self, session: HostedSession, reason: RpcError | None = None) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.release(session.owner)
        await session.client.close(reason)

    async def reap(self) -> int:
        """End idle sessions and sessions whose server stopped; returns how many."""
        now = self.clock()
        stale = [s for s in self.sessions.values()
                 if s.client.closed or (not s.busy and now - s.last_used > self.limits.idle_timeout)]
        for session in stale:
            await self.end(session, RpcError(-32002, "the session was idle too long and was ended", fatal=True))
        return len(stale)

    def start(self) -> None:
        async def loop():
            interval = max(0.05, min(30.0, self.limits.idle_timeout / 4))
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.reap()
                except Exception:  # the reaper must outlive one bad session
                    log.exception("reaping hosted sessions failed")

        self._reaper = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            await self.end(session)
