"""A JSON-RPC client over a sandboxed server's stdio: one message per line (MCP stdio transport).

Lines over `max_message_bytes` end the session (the server is killed and every pending request fails): an
unbounded line would otherwise be an unbounded buffer. Lines that are not JSON objects are skipped and
counted. Requests from the server (sampling, elicitation, roots) need a stream back to the client, which the
JSON answers of the gateway do not have: they are refused with "method not found" so the server goes on.
Request ids are the gateway's own, so a client's ids can never collide with or steer another request's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from .sandbox import Sandbox

READ_CHUNK = 65536
TIMEOUT = -32001
SERVER_GONE = -32002
TOO_LARGE = -32003


class RpcError(Exception):
    """A JSON-RPC error for the client; `fatal` ones ended the session."""

    def __init__(self, code: int, message: str, *, fatal: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class StdioClient:
    def __init__(self, sandbox: Sandbox, *, max_message_bytes: int):
        self.sandbox = sandbox
        self.max_message_bytes = max_message_bytes
        self.skipped_lines = 0
        self.closed: RpcError | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read_loop())

    async def request(self, method: str, params: Any, timeout: float) -> dict[str, Any]:
        """The server's answer to one request: its JSON-RPC response object, with our id. Raises RpcError."""
        if self.closed:
            raise self.closed
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            await self._send(message)
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self._pending.pop(request_id, None)
            future.cancel()
            # sandbox.md §7: tell the server, then kill it (untrusted code may ignore cancellation)
            await self._send_quietly({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                      "params": {"requestId": request_id, "reason": "timeout"}})
            error = RpcError(TIMEOUT, f"request timed out after {timeout:g}s; the session was ended", fatal=True)
            await self.close(error)
            raise error from None
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Any = None) -> None:
        if self.closed:
            raise self.closed
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)

    async def _send(self, message: dict) -> None:
        try:
            self.sandbox.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            await self.sandbox.drain()
        except (ConnectionError, OSError):
            await self._gone()
            raise self.closed from None

    async def _send_quietly(self, message: dict) -> None:
        try:
            self.sandbox.write(json.dumps(message).encode() + b"\n")
        except (ConnectionError, OSError):
            pass

    async def close(self, reason: RpcError | None = None) -> None:
        """Kill the sandbox and fail every pending request with `reason`."""
        if self.closed is None:
            self.closed = reason or RpcError(SERVER_GONE, "the session was ended", fatal=True)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self.closed)
        self._reader.cancel()
        await self.sandbox.kill()

    async def _gone(self) -> None:
        why = await self.sandbox.exit_reason()
        await self.close(RpcError(SERVER_GONE, f"the server stopped ({why or 'closed its output'}); the session "
                                  "was ended", fatal=True))

    async def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = await self.sandbox.read(READ_CHUNK)
            if not chunk:
                asyncio.get_running_loop().create_task(self._gone())
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if len(line) > self.max_message_bytes:
                    break
                self._line(line)
            else:
                if len(buffer) <= self.max_message_bytes:
                    continue
            asyncio.get_running_loop().create_task(self.close(RpcError(
                TOO_LARGE, f"the server sent a message over {self.max_message_bytes} bytes; the session was ended",
                fatal=True)))
            return

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            if line.strip():
                self.skipped_lines += 1
            return
        if "method" in message:
            if "id" in message:  # a request from the server: no stream back to the client here
                asyncio.get_running_loop().create_task(self._send_quietly({
                    "jsonrpc": "2.0", "id": message["id"],
                    "error": {"code": -32601, "message": "not supported through this gateway"}}))
            return  # notifications from the server (logging, progress) have nowhere to go over JSON answers
        future = self._pending.get(message.get("id")) if isinstance(message.get("id"), int) else None
        if future is not None and not future.done():
            future.set_result(message)
