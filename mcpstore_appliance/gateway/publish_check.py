"""At publish, a hosted bundle is started once in the sandbox: its `tools/list` must match the manifest's tools,
and each tool that needs no arguments is called once. What goes wrong becomes a finding, judged by the same
scan policy as every other finding (high: quarantined for review).

A server that needs settings no one has given yet (a required `user_config` without a default) cannot be
started here; that is an info finding, not a failure. A publish waits for the check up to its budget
(`hosted.publish_check_seconds`, so that it answers in time); a check still running then goes on in the
background (`CheckRun`) up to `hosted.publish_check_pending_seconds`, while the version is pending
(catalog/pending_checks.py). A server that uses that up too is quarantined.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..bundles.model import BundleLimits, Finding
from ..errors import DomainError
from .runtime import is_hosted_type, launch_for
from .sandbox import Backend, SandboxLimits
from .stdio import RpcError, StdioClient
from .unpack import unpack_bundle

CHECK = "hosted"
CHECKS_AT_ONCE = 2  # a burst of publishes queues here instead of starting a sandbox each
INIT = {"protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "mcpstore-publish-check", "version": "1"}}


class CheckRun:
    """One check under way: the publish waits for it a while, the pending-check keeper until it ends."""

    def __init__(self, task: asyncio.Task):
        self.task = task

    async def wait(self, seconds: float) -> list[Finding] | None:
        """Its findings, or None when it is still running after `seconds`."""
        done, _ = await asyncio.wait({self.task}, timeout=seconds)
        return self.task.result() if done else None

    async def result(self) -> list[Finding]:
        return await self.task

    def cancel(self) -> None:
        self.task.cancel()


class PublishCheck:
    def __init__(self, backend: Backend, limits: SandboxLimits, bundle_limits: BundleLimits, work_dir: Path, *,
                 init_timeout: float, call_timeout: float, budget: float, max_message_bytes: int,
                 pending_budget: float | None = None):
        self.backend, self.limits, self.bundle_limits, self.work_dir = backend, limits, bundle_limits, work_dir
        self.init_timeout, self.call_timeout, self.budget = init_timeout, call_timeout, budget
        self.pending_budget = max(budget, pending_budget or budget)  # the whole check's limit, publish included
        self.max_message_bytes = max_message_bytes
        self._running = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def start(self, bundle: Path, manifest: dict[str, Any]) -> CheckRun:
        """Begin the check. The bundle is unpacked before this returns, so the caller may delete it at once."""
        if not is_hosted_type(manifest):
            return _done([])
        try:
            launch = launch_for(manifest)
        except DomainError as exc:
            return _done([_finding("info", "not_started", f"not started at publish: {exc.message}")])
        folder = Path(tempfile.mkdtemp(dir=self.work_dir))
        try:
            await asyncio.to_thread(unpack_bundle, bundle, folder / "app", self.bundle_limits)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        task = asyncio.create_task(self._budgeted(folder, manifest, launch))
        # removed however the check ends, also when it is cancelled before it began
        task.add_done_callback(lambda _: shutil.rmtree(folder, ignore_errors=True))
        return CheckRun(task)

    async def _budgeted(self, folder: Path, manifest: dict[str, Any], launch) -> list[Finding]:
        try:
            async with self._running:
                return await asyncio.wait_for(self._run(folder / "app", manifest, launch), self.pending_budget)
        except asyncio.TimeoutError:
            return [_finding("high", "timeout",
                             f"the server's start-up check took over {self.pending_budget:.0f} s")]

    async def _run(self, app_dir: Path, manifest: dict[str, Any], launch) -> list[Finding]:
        try:
            sandbox = await self.backend.start(app_dir, launch, self.limits)
        except Exception as exc:  # noqa: BLE001 - whatever stops the start is the finding
            return [_finding("high", "start_failed", f"the server could not be started: {exc}"[:300])]
        client = StdioClient(sandbox, max_message_bytes=self.max_message_bytes)
        try:
            return await self._exercise(client, manifest)
        finally:
            await client.close()

    async def _exercise(self, client: StdioClient, manifest: dict[str, Any]) -> list[Finding]:
        try:
            await client.request("initialize", INIT, self.init_timeout)
            await client.notify("notifications/initialized", {})
            listed = await client.request("tools/list", {}, self.call_timeout)
        except RpcError as exc:
            return [_finding("high", "start_failed", f"the server did not initialise: {exc.message}"[:300])]
        tools = (listed.get("result") or {}).get("tools")
        if not isinstance(tools, list):
            return [_finding("high", "tools_list", "the server's tools/list answer has no tool list")]
        findings = _compare(manifest, tools)
        for tool in tools:
            if isinstance(tool, dict) and _needs_no_arguments(tool):
                findings += await self._call(client, str(tool.get("name")))
        return findings

    async def _call(self, client: StdioClient, name: str) -> list[Finding]:
        try:
            answer = await client.request("tools/call", {"name": name, "arguments": {}}, self.call_timeout)
        except RpcError as exc:
            return [_finding("medium", "tool_error", f"tool {name!r} failed when called without arguments: "
                                                     f"{exc.message}"[:300])]
        result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
        if "error" in answer or result.get("isError"):
            return [_finding("medium", "tool_error", f"tool {name!r} answered an error when called without "
                                                     "arguments")]
        return []


def _compare(manifest: dict[str, Any], tools: list) -> list[Finding]:
    if manifest.get("tools_generated"):
        return []  # the manifest says its tools are made at run time: nothing to compare
    declared = {t.get("name") for t in manifest.get("tools") or [] if isinstance(t, dict)}
    served = {t.get("name") for t in tools if isinstance(t, dict)}
    if declared == served:
        return []
    missing, extra = sorted(map(str, declared - served)), sorted(map(str, served - declared))
    parts = ([f"declared but not served: {', '.join(missing)}"] if missing else []) + \
        ([f"served but not declared: {', '.join(extra)}"] if extra else [])
    return [_finding("high", "tools_mismatch", "the server's tools differ from the manifest's: " + "; ".join(parts))]


def _needs_no_arguments(tool: dict[str, Any]) -> bool:
    schema = tool.get("inputSchema")
    return isinstance(schema, dict) and not schema.get("required")


def _done(findings: list[Finding]) -> CheckRun:
    future = asyncio.get_running_loop().create_future()
    future.set_result(findings)
    return CheckRun(future)  # type: ignore[arg-type] - a finished future waits and answers as a task does


def _finding(severity: str, kind: str, message: str) -> Finding:
    return Finding(check_id=f"{CHECK}.{kind}", severity=severity, file="", message=message)  # type: ignore[arg-type]
