"""GatewayService: who may call which hosted package, sessions on a sandbox backend, and metering. The web
layer (web/mcp_api.py) speaks HTTP; everything else is here.

Access follows the package: the one visibility rule (catalog/visibility.py: org-private packages for members
only), then `entitlement_check` (free packages: any signed-in user; paid ones: refused until the marketplace
replaces the hook). Hosted packages are the hobbyist tier's; pro-tier packages run at their publisher's URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import audit
from ..accounts.models import Principal
from ..audit import Actor
from ..bundles.model import BundleLimits
from ..catalog.visibility import can_see
from ..errors import Forbidden, InvalidInput, NotFound, Unavailable, Unprocessable
from .billing import HostedRules
from .endpoint_health import EndpointHealth
from .metering import Invocation, Meter
from .publish_check import PublishCheck
from .runtime import HOSTED_TYPES, is_hosted_type, launch_for
from .sandbox import Backend, SandboxLimits
from .sessions import HostedSession, SessionLimits, SessionManager
from .stdio import RpcError, StdioClient
from .unpack import unpacked_dir
from .user_config import SealedUserConfig
from .warm_pool import WarmPool

log = logging.getLogger("mcpstore.gateway")
CLIENT_INFO = {"name": "mcpstore-invoke", "version": "1"}
PROTOCOL_VERSION = "2025-11-25"

TARGET_SQL = (
    "SELECT p.id AS package_id, p.namespace, p.name, p.org_id, p.owner_user_id, p.visibility, p.pricing_model,"
    " p.tier, v.id AS version_id, v.version, v.sha256, v.manifest_json FROM packages p"
    " JOIN versions v ON v.id = p.latest_version_id"
    " WHERE p.namespace = ? AND p.name = ? AND v.state = 'published' AND v.yanked_at IS NULL")


Admit = Callable[[int], Awaitable[None]]  # raises to refuse a version id (policy/enforce.py through web/)


@dataclass(frozen=True)
class HostedTarget:
    package: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.package['namespace']}/{self.package['name']}"


def _options(target: HostedTarget) -> dict[str, Any]:
    options = target.manifest.get("user_config")
    return options if isinstance(options, dict) else {}


def owner_of(principal: Principal) -> str:
    return f"user:{principal.id}"


async def build_gateway(db, blobs, settings, work_dir: Path, keys_dir: Path, probe: bool = True,
                        rules: HostedRules = HostedRules()) -> GatewayService:
    """The gateway with the configured (or first working) sandbox backend; unavailable, not failing, without.
    `probe=False` (operator commands, which run nothing hosted): no backend is looked for."""
    from .sandbox import choose_backend

    user_config = SealedUserConfig(db, keys_dir / "user_config.key")
    if not probe:
        return GatewayService(db, blobs, settings, None, "not probed by operator commands", work_dir, user_config,
                              rules)
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend, status = await choose_backend(settings.hosted, work_dir)
    if backend is None:
        log.warning("hosted execution unavailable: %s", status)
    else:
        log.info("hosted execution: %s", status)
    return GatewayService(db, blobs, settings, backend, status, work_dir, user_config, rules)


class GatewayService:
    def __init__(self, db, blobs, settings, backend: Backend | None, status: str, work_dir: Path,
                 user_config: SealedUserConfig, rules: HostedRules = HostedRules()):
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.backend = backend
        self.status = status  # the start-up line: which backend, or why none
        self.work_dir = work_dir
        self.limits = SandboxLimits.from_settings(settings.hosted)
        self.bundle_limits = BundleLimits.from_settings(settings.publish)
        self.sessions = SessionManager(SessionLimits.from_settings(settings.hosted))
        hosted = settings.hosted
        self.warm = WarmPool(hosted.warm_pool if backend is not None else 0, hosted.warm_pool_idle_seconds,
                             hosted.warm_pool_memory_mb // max(1, hosted.memory_mb))
        self.meter = Meter(db, on_call=rules.billing.on_call)  # a failed call's charge is given back
        self.endpoints = EndpointHealth(db, settings.hosted)  # pro-tier endpoints: checked, not hosted
        self.user_config = user_config
        self.entitlement_check = rules.entitlement_check  # free packages, or the market's entitlements
        self.billing = rules.billing  # per-call packages: charged before each tools/call

    @property
    def available(self) -> bool:
        return self.backend is not None

    @property
    def publish_check(self) -> PublishCheck | None:
        """The check a hosted bundle gets at publish, where a sandbox works and the operator wants it."""
        if self.backend is None or not self.settings.hosted.publish_check:
            return None
        hosted = self.settings.hosted
        return PublishCheck(self.backend, self.limits, self.bundle_limits, self.work_dir,
                            init_timeout=hosted.init_timeout_seconds, call_timeout=hosted.call_timeout_seconds,
                            budget=hosted.publish_check_seconds, max_message_bytes=hosted.max_message_bytes,
                            pending_budget=hosted.publish_check_pending_seconds)

    @property
    def hosted_types(self) -> frozenset[str]:
        """The server types this gateway runs (what /v0.1 may advertise as a remote): none without a backend."""
        return frozenset(HOSTED_TYPES) if self.available else frozenset()

    def start(self) -> None:
        self.sessions.start()
        self.warm.start()
        self.meter.start()
        self.endpoints.start()

    async def stop(self) -> None:
        await self.sessions.stop()
        await self.warm.stop()
        await self.meter.stop()
        await self.endpoints.stop()
        if self.backend is not None:
            await self.backend.close()

    # -- access -------------------------------------------------------------------------------------------

    async def target(self, principal: Principal, namespace: str, name: str,
                     admit: Admit | None = None) -> HostedTarget:
        """The hosted package the principal may run; `admit` (an org's policy) may refuse its version."""
        grant = principal.usage  # a usage token (tokens/usage.py) calls the one package it names
        if grant is not None and grant.mcp != f"{namespace}/{name}":
            raise Forbidden("this usage token is for another package", code="token_wrong_package")
        if not self.available:
            raise Unavailable("hosted execution is unavailable on this appliance", code="hosted_unavailable",
                              retry_after=300)
        target = await self._hosted(principal, namespace, name)
        if admit is not None:
            await admit(target.package["version_id"])
        return target

    async def _hosted(self, principal: Principal, namespace: str, name: str) -> HostedTarget:
        row = await self.db.fetch_one(TARGET_SQL, (namespace, name))
        if row is None or not can_see(principal, row):
            raise NotFound(f"no hosted package {namespace}/{name}", code="package_not_found")
        if row["tier"] != "hobbyist":
            raise NotFound(f"{namespace}/{name} is served by its publisher, not hosted here", code="not_hosted")
        manifest = json.loads(row["manifest_json"])
        if not is_hosted_type(manifest):
            raise Unprocessable(f"{namespace}/{name} has a server type that is not hosted", code="not_hosted")
        if not await self.entitlement_check(principal, row):
            raise Forbidden(f"{namespace}/{name} is a paid package; buy access first", code="entitlement_required")
        return HostedTarget(row, manifest)

    # -- the caller's settings (user_config) ----------------------------------------------------------------

    async def settings_of(self, principal: Principal, namespace: str, name: str) -> dict[str, Any]:
        target = await self._hosted(principal, namespace, name)
        return await self.user_config.describe(principal.id, target.package["package_id"], _options(target))

    async def keep_settings(self, principal: Principal, namespace: str, name: str, values: Any) -> dict[str, Any]:
        """Replace the caller's kept values for a package; what is kept is described back (no secrets)."""
        target = await self._hosted(principal, namespace, name)
        await self.user_config.replace(principal.id, target.package["package_id"], _options(target), values)
        return await self.user_config.describe(principal.id, target.package["package_id"], _options(target))

    async def forget_settings(self, principal: Principal, namespace: str, name: str) -> None:
        target = await self._hosted(principal, namespace, name)
        await self.user_config.clear(principal.id, target.package["package_id"])

    # -- sessions -----------------------------------------------------------------------------------------

    async def open(self, principal: Principal, target: HostedTarget, init_params: Any,
                   ip: str | None = None) -> tuple[HostedSession, dict]:
        """Start a sandbox and send it the client's initialize; (session, the server's answer)."""
        owner = owner_of(principal)
        self.sessions.reserve(owner)
        try:
            client = await self._start(principal, target)
        except BaseException:
            self.sessions.release(owner)
            raise
        try:
            answer = await client.request("initialize", init_params, self.sessions.limits.init_timeout)
        except BaseException:
            self.sessions.release(owner)
            await client.close()
            raise
        package = target.package
        session = self.sessions.add(owner, package["package_id"], package["version_id"], client)
        session.ref = target.ref
        session.pricing_model = package["pricing_model"]
        if isinstance(answer.get("result"), dict):
            session.protocol_version = str(answer["result"].get("protocolVersion", ""))
        async with self.db.write() as tx:
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), "package.invoke",
                               org_id=package["org_id"], target=f"{target.ref}@{package['version']}",
                               details={"session": session.id[:8]})
        return session, answer

    async def _start(self, principal: Principal, target: HostedTarget) -> StdioClient:
        values = await self.user_config.values(principal.id, target.package["package_id"])
        if not values and self.warm.enabled:  # a warm sandbox runs without settings: only for callers without
            warm = self.warm.take(target.package["version_id"], lambda: self._cold(target, {}))
            if warm is not None:
                return warm
        return await self._cold(target, values)

    async def _cold(self, target: HostedTarget, values: dict[str, Any]) -> StdioClient:
        launch = launch_for(target.manifest, values)
        bundle_dir = await self._unpacked(target.package["sha256"])
        sandbox = await self.backend.start(bundle_dir, launch, self.limits)
        return StdioClient(sandbox, max_message_bytes=self.sessions.limits.max_message_bytes)

    async def _unpacked(self, sha256: str) -> Path:
        cache = self.work_dir / "bundles"
        if (cache / sha256).is_dir():
            return cache / sha256
        local = self.blobs.local_file(sha256)
        if local is not None:
            return await asyncio.to_thread(unpacked_dir, cache, sha256, local, self.bundle_limits)
        with tempfile.NamedTemporaryFile(dir=self.work_dir, suffix=".mcpb") as tmp:
            async for chunk in self.blobs.open_range(sha256):
                tmp.write(chunk)
            tmp.flush()
            return await asyncio.to_thread(unpacked_dir, cache, sha256, Path(tmp.name), self.bundle_limits)

    def session(self, principal: Principal, session_id: str) -> HostedSession | None:
        session = self.sessions.get(session_id, owner_of(principal))
        if session is not None and principal.usage is not None and principal.usage.mcp != session.ref:
            return None  # a usage token reaches only sessions of its own package
        return session

    async def end(self, session: HostedSession) -> None:
        await self.sessions.end(session)

    async def forward(self, principal: Principal, session: HostedSession, message: dict, via: str = "mcp") -> dict | None:
        """Send one client message; the server's answer (with the client's id) for a request, None otherwise."""
        method = message.get("method")
        if not isinstance(method, str):
            return None  # a client's answer to a server request: the gateway refused those already
        params = message.get("params")
        if "id" not in message:
            await session.client.notify(method, params)
            return None
        charge = await self.billing.charge(principal, session) if method == "tools/call" else None
        session.busy += 1
        started = time.perf_counter()
        try:
            answer = await session.client.request(method, params, self.sessions.limits.call_timeout)
            outcome = _outcome(answer)
        except RpcError as error:
            answer, outcome = {"jsonrpc": "2.0", "error": error.as_error()}, "timeout" if error.code == -32001 else "failed"
            if error.fatal:
                await self.sessions.end(session, error)
        finally:
            session.busy -= 1
            session.last_used = self.sessions.clock()
        if method == "tools/call":
            await self._meter(principal, session, params, via, outcome, started, charge)
        return {**answer, "id": message["id"]}

    async def _meter(self, principal, session, params, via, outcome, started, charge=None) -> None:
        tool = params.get("name") if isinstance(params, dict) and isinstance(params.get("name"), str) else "?"
        package = await self.db.fetch_one("SELECT org_id FROM packages WHERE id = ?", (session.package_id,))
        await self.meter.record(Invocation(principal.id, session.package_id, session.version_id,
                                           package["org_id"] if package else None, tool, via, outcome,
                                           (time.perf_counter() - started) * 1000, charge=charge))

    # -- the invoke API -----------------------------------------------------------------------------------

    async def invoke(self, principal: Principal, namespace: str, name: str, tool: Any, arguments: Any,
                     ip: str | None = None, admit: Admit | None = None) -> dict:
        """One tools/call in a fresh sandbox: {"result": ...} or {"error": ...} (a JSON-RPC error object)."""
        if not isinstance(tool, str) or not tool:
            raise InvalidInput("'tool' must be the name of a tool", code="invalid_tool")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidInput("'arguments' must be an object", code="invalid_arguments")
        return await self.one_request(principal, namespace, name, "tools/call",
                                      {"name": tool, "arguments": arguments or {}}, ip, admit)

    async def list_tools(self, principal: Principal, namespace: str, name: str, ip: str | None = None,
                         admit: Admit | None = None) -> dict:
        """tools/list in a fresh sandbox (the "try it" form builds its fields from the tools' input schemas)."""
        return await self.one_request(principal, namespace, name, "tools/list", {}, ip, admit)

    async def one_request(self, principal: Principal, namespace: str, name: str, method: str, params: dict,
                          ip: str | None = None, admit: Admit | None = None) -> dict:
        """One request in a fresh sandbox, ended afterwards: {"result": ...} or {"error": ...}."""
        target = await self.target(principal, namespace, name, admit)
        init = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        try:
            session, answer = await self.open(principal, target, init, ip)
        except RpcError as error:
            return {"error": error.as_error()}
        try:
            if "error" in answer:
                return {"error": answer["error"]}
            await session.client.notify("notifications/initialized")
            call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            result = await self.forward(principal, session, call, via="invoke")
            return {key: result[key] for key in ("result", "error") if key in result}
        finally:
            await self.sessions.end(session)


def _outcome(answer: dict) -> str:
    if "error" in answer:
        return "rpc_error"
    result = answer.get("result")
    return "tool_error" if isinstance(result, dict) and result.get("isError") else "ok"
