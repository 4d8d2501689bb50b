"""Pro-tier endpoints: each package's own https MCP endpoint is asked to `initialize`, at publish and every few
minutes; the last answer is kept in `endpoint_checks`. The package page shows it, and `/v0.1` stops listing
an endpoint as a remote while its last check failed.

The URLs come from publishers, so the appliance must not become their way into the operator's network: the
connection goes only to public addresses (outbound.py), no redirects are followed, and at most 64 KiB of an
answer is read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass

import aiohttp

from ..errors import InvalidInput
from ..outbound import failure, guarded_session, refused_address
from ..text import parse_json

log = logging.getLogger("mcpstore.gateway.endpoints")
MAX_ANSWER_BYTES = 64 * 1024
CONCURRENT_CHECKS = 8
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "mcpstore-endpoint-check", "version": "1"}}}
DUE_SQL = ("SELECT p.id, p.endpoint_url FROM packages p LEFT JOIN endpoint_checks c ON c.package_id = p.id"
           " WHERE p.tier = 'pro' AND p.endpoint_url IS NOT NULL"
           " AND (c.package_id IS NULL OR c.endpoint_url != p.endpoint_url OR c.checked_at <= ?)")


@dataclass(frozen=True)
class Check:
    ok: bool
    latency_ms: float
    detail: str  # what answered, or why it failed (shown on the package page)


class EndpointHealth:
    def __init__(self, db, hosted_settings):
        self.db = db
        self.interval = hosted_settings.endpoint_check_interval_seconds
        self.timeout = hosted_settings.endpoint_check_timeout_seconds
        self.public_only = not hosted_settings.endpoint_check_private_addresses
        self.ssl = ssl.create_default_context(cafile=hosted_settings.endpoint_ca_file or None)
        self._task: asyncio.Task | None = None

    async def check(self, url: str) -> Check:
        started = time.monotonic()
        if refused_address(url, self.public_only):
            return Check(False, 0.0, "refused: the endpoint is a non-public address")
        try:
            async with guarded_session(self.ssl, self.public_only, self.timeout) as http, http.post(
                    url, json=INITIALIZE, allow_redirects=False, headers={
                        "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}) \
                    as response:
                body = await response.content.read(MAX_ANSWER_BYTES)
                detail = _judge(response.status, response.content_type, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            detail = f"no answer: {failure(exc)}"
        latency = (time.monotonic() - started) * 1000
        return Check(detail.startswith("answered"), round(latency, 1), detail)

    async def run_due(self) -> int:
        """Check every endpoint not checked within the interval (or changed since); how many were checked."""
        due = await self.db.fetch_all(DUE_SQL, (time.time() - self.interval,))
        gate = asyncio.Semaphore(CONCURRENT_CHECKS)

        async def one(row) -> None:
            async with gate:
                result = await self.check(row["endpoint_url"])
            await self._keep(row["id"], row["endpoint_url"], result)

        await asyncio.gather(*(one(row) for row in due))
        return len(due)

    async def health_of(self, package_id: int) -> dict | None:
        return await self.db.fetch_one("SELECT endpoint_url, checked_at, ok, latency_ms, detail FROM endpoint_checks"
                                       " WHERE package_id = ?", (package_id,))

    async def _keep(self, package_id: int, url: str, result: Check) -> None:
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO endpoint_checks (package_id, endpoint_url, checked_at, ok, latency_ms, detail)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (package_id) DO UPDATE SET"
                " endpoint_url = excluded.endpoint_url, checked_at = excluded.checked_at, ok = excluded.ok,"
                " latency_ms = excluded.latency_ms, detail = excluded.detail", (package_id, url, time.time(), int(result.ok), result.latency_ms,
                                              result.detail))

    def start(self, poll_seconds: float = 5.0) -> None:
        """Check what is due every few seconds: new pro packages within seconds, the rest every interval."""
        async def loop() -> None:
            while True:
                try:
                    await self.run_due()
                except Exception:  # a failed round must not end the timer
                    log.exception("endpoint checks failed")
                await asyncio.sleep(poll_seconds)

        self._task = asyncio.get_running_loop().create_task(loop(), name="endpoint-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _judge(status: int, content_type: str, body: bytes) -> str:
    if status != 200:
        return f"HTTP {status} to initialize"
    if content_type == "text/event-stream":  # the answer is the data of the first event
        lines = body.split(b"\n")
        body = next((line[5:].strip() for line in lines if line.startswith(b"data:")), b"")
    try:
        answer = parse_json(body, what="the answer")  # depth-bounded: the answer comes from anyone
    except InvalidInput:
        return "not a JSON-RPC answer to initialize"
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or "protocolVersion" not in result:
        return "initialize answered without a result"
    server = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
    return f"answered initialize (protocol {str(result['protocolVersion'])[:20]}, {str(server.get('name', '?'))[:60]})"
