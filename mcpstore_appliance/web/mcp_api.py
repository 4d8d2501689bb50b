"""The hosted MCP endpoint (Streamable HTTP, MCP 2025-11-25) and the invoke API; thin over gateway/service.py.

- `POST /mcp/{namespace}/{name}`: one JSON-RPC message per POST; a request is answered with JSON, or with a
  one-event `text/event-stream` when the client accepts it (as MCP SDKs do). The stream carries no event ids:
  it cannot be resumed (GET is 405), so a client that loses it does not try. `initialize` starts a session in a fresh sandbox and returns
  `Mcp-Session-Id`; every later request must carry it (400 without, 404 unknown or ended, after which MCP
  clients re-initialise). Notifications get 202.
- `GET` 405 (no server-initiated stream), `DELETE` ends the session.
- `Origin`, when sent, must be the appliance's own or one of `hosted.allowed_origins` (DNS rebinding); CORS
  for browser-based clients, and no session cookie as a cross-origin credential, are in web/cors.py.
- Unauthenticated calls get 401 with `WWW-Authenticate: Bearer resource_metadata=...` (web/errors.py), and
  the RFC 9728 document is served below /.well-known; it names the appliance itself as the authorisation
  server (oauth/, web/oauth_api.py). OAuth access tokens for this endpoint, usage tokens (tokens/usage.py,
  audience = this endpoint), API tokens with the invoke scope and browser sessions are accepted.
- Per-call packages: each `tools/call` is charged before it runs (gateway/billing.py); without credit the
  answer is a JSON-RPC error -32402 (invoke API: 402) and nothing runs.
- `POST /api/invoke/{namespace}/{name}` `{"tool", "arguments"}`: one call for scripts.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from ..errors import InvalidInput, NotFound, PaymentRequired
from ..gateway.service import GatewayService
from .org_context import enforce_version
from ..gateway.stdio import RpcError
from .pages import try_it
from .access import OPEN_PROBE, allow, signed_in
from .openapi import documented
from .auth import caller
from .cors import check_mcp_origin
from .keys import OAUTH, SERVICES, SETTINGS
from .session_routing import SESSION_GONE, gateway_id, hand_over, public_id

log = logging.getLogger("mcpstore.gateway")
routes = web.RouteTableDef()
GATEWAY = web.AppKey("gateway", GatewayService)
PROTOCOL_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
SESSION_HEADER = "Mcp-Session-Id"
PAYMENT_REQUIRED = -32402  # JSON-RPC error of a tools/call refused for want of credit (data.code says why)
# What the caller reaches is the package's access rule; the endpoint is an OAuth protected resource, so an OAuth
# access token is good here only at the endpoint it was issued for (its audience).
CALLER = signed_in("invoke", org="allowed", resource="/mcp/{namespace}/{name}")
INVOKE_CALLER = signed_in("invoke", org="allowed")  # scripts: API tokens and sessions, not OAuth tokens


def _check_version(request: web.Request) -> None:
    version = request.headers.get("MCP-Protocol-Version")
    if version is not None and version not in PROTOCOL_VERSIONS:
        raise InvalidInput(f"unsupported MCP-Protocol-Version {version[:40]!r}", code="unsupported_protocol_version",
                           details={"supported": sorted(PROTOCOL_VERSIONS)})


async def _message(request: web.Request) -> dict:
    try:
        message = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body must be one JSON-RPC message", code="malformed_json") from None
    if isinstance(message, list):
        raise InvalidInput("JSON-RPC batches are not part of MCP since 2025-06-18; send one message per POST",
                           code="batch_not_supported")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise InvalidInput("the body must be a JSON-RPC 2.0 object", code="invalid_jsonrpc")
    if "method" in message and not isinstance(message["method"], str):
        raise InvalidInput("'method' must be a string", code="invalid_jsonrpc")
    if "id" in message and (isinstance(message["id"], bool) or not isinstance(message["id"], (str, int))):
        raise InvalidInput("'id' must be a string or an integer", code="invalid_jsonrpc")
    return message


async def _answer(request: web.Request, answer: dict, headers: dict | None = None) -> web.StreamResponse:
    """A JSON-RPC answer as JSON, or as one SSE `message` event when the client accepts an event stream."""
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return web.json_response(answer, headers=headers)
    response = web.StreamResponse(headers={**(headers or {}), "Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    await response.write(b"event: message\ndata: " + json.dumps(answer, separators=(",", ":")).encode() + b"\n\n")
    await response.write_eof()
    return response


async def _rpc_error(request: web.Request, message_id, error: RpcError) -> web.StreamResponse:
    return await _answer(request, {"jsonrpc": "2.0", "id": message_id, "error": error.as_error()})


@routes.post("/mcp/{namespace}/{name}")
@allow(CALLER)
async def mcp_post(request: web.Request) -> web.StreamResponse:
    check_mcp_origin(request)
    _check_version(request)
    message = await _message(request)
    if message.get("method") == "initialize":  # a new session here, whatever stale session id it carries
        return await _initialize(request, message)
    if (answer_elsewhere := await _held_elsewhere(request)) is not None:
        return answer_elsewhere
    gateway, principal = request.app[GATEWAY], caller(request)
    session = _session(request)
    try:
        answer = await gateway.forward(principal, session, message)
    except PaymentRequired as refused:  # a per-call package and no credit: the call did not run
        return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "error": {
            "code": PAYMENT_REQUIRED, "message": refused.message, "data": {"code": refused.code,
                                                                           "details": refused.details}}})
    except RpcError as error:  # the server had already stopped
        await gateway.end(session)
        return await _rpc_error(request, message.get("id"), error) if "id" in message else web.Response(status=202)
    if answer is None:
        return web.Response(status=202)
    return await _answer(request, answer)


async def _initialize(request: web.Request, message: dict) -> web.StreamResponse:
    """A session in a fresh sandbox of this worker. An SDK that re-initialises after a 404 may still send the old
    session's id: it is ignored, as with one process, and never passed to the (perhaps dead) worker it names."""
    if "id" not in message:
        raise InvalidInput("initialize is a request: it needs an id", code="invalid_jsonrpc")
    gateway, principal = request.app[GATEWAY], caller(request)
    target = await gateway.target(principal, request.match_info["namespace"], request.match_info["name"],
                                  _policy(request))
    try:
        session, answer = await gateway.open(principal, target, message.get("params"), request.remote)
    except RpcError as error:
        return await _rpc_error(request, message["id"], error)
    return await _answer(request, {**answer, "id": message["id"]}, {SESSION_HEADER: public_id(request, session.id)})


def _policy(request: web.Request):
    """An org member's installs through the gateway follow the org's policy (web/org_context.py)."""
    return lambda version_id: enforce_version(request, version_id, "hosted")


async def _held_elsewhere(request: web.Request) -> web.StreamResponse | None:
    """The answer of the worker process that holds the request's session, if another one does
    (web/session_routing.py)."""
    session_id = request.headers.get(SESSION_HEADER)
    return None if not session_id else await hand_over(request, session_id)


def _session(request: web.Request):
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        raise InvalidInput(f"send the {SESSION_HEADER} header from the initialize answer", code="mcp_session_required")
    held = gateway_id(request, session_id)
    session = None if held is None else request.app[GATEWAY].session(caller(request), held)
    if session is None or session.ref != f"{request.match_info['namespace']}/{request.match_info['name']}":
        raise NotFound(SESSION_GONE, code="mcp_session_not_found")
    return session


@routes.get("/mcp/{namespace}/{name}")
@allow(OPEN_PROBE)
async def mcp_get(request: web.Request) -> web.StreamResponse:
    """No server-initiated stream: answers are JSON (Streamable HTTP allows a 405 here)."""
    raise web.HTTPMethodNotAllowed("GET", ["POST", "DELETE"])


@routes.delete("/mcp/{namespace}/{name}")
@allow(CALLER)
async def mcp_delete(request: web.Request) -> web.StreamResponse:
    check_mcp_origin(request)
    if (answer_elsewhere := await _held_elsewhere(request)) is not None:
        return answer_elsewhere
    await request.app[GATEWAY].end(_session(request))
    return web.Response(status=204)


INVOKE_BODY = {"type": "object", "required": ["tool"], "additionalProperties": False,
               "properties": {"tool": {"type": "string", "maxLength": 200}, "arguments": {"type": "object"}}}


@routes.post("/api/invoke/{namespace}/{name}")
@allow(INVOKE_CALLER)
@documented("Call one tool of a hosted bundle in a fresh sandbox (for scripts; MCP hosts use /mcp/{namespace}/{name})",
            tags=["hosted"], body=INVOKE_BODY,
            responses={200: "the tool's result", 400: "invalid body", 401: "credentials needed",
                       402: "the package needs a purchase", 403: "not allowed", 404: "no such package",
                       429: "too many sessions for this caller", 503: "hosted execution unavailable or busy"})
async def invoke(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object {\"tool\": ..., \"arguments\": {...}}", code="invalid_body")
    answer = await request.app[GATEWAY].invoke(caller(request), request.match_info["namespace"],
                                               request.match_info["name"], body.get("tool"), body.get("arguments"),
                                               request.remote, _policy(request))
    if "error" in answer:
        rpc = answer["error"] if isinstance(answer["error"], dict) else {}
        timeout = rpc.get("code") == -32001
        return web.json_response({"error": {"code": "server_timeout" if timeout else "server_error",
                                            "message": str(rpc.get("message", "the server failed"))[:500],
                                            "details": {"jsonrpc_code": rpc.get("code")}}},
                                 status=504 if timeout else 502)
    return web.json_response({"result": answer.get("result")})


def _resource_metadata(request: web.Request, resource: str) -> web.Response:
    issuer = request.app[OAUTH].issuer
    return web.json_response({"resource": resource, "authorization_servers": [issuer],
                              "bearer_methods_supported": ["header"], "scopes_supported": ["invoke"],
                              "resource_name": "mcpstore hosted MCP servers"},
                             headers={"Cache-Control": "public, max-age=3600"})


@routes.get("/.well-known/oauth-protected-resource/mcp/{namespace}/{name}")
@allow(OPEN_PROBE)
async def protected_resource(request: web.Request) -> web.StreamResponse:
    """RFC 9728 metadata of one hosted endpoint (the path the 401's WWW-Authenticate names)."""
    base = request.app[SETTINGS].base_url
    return _resource_metadata(request, f"{base}/mcp/{request.match_info['namespace']}/{request.match_info['name']}")


@routes.get("/.well-known/oauth-protected-resource")
@allow(OPEN_PROBE)
async def protected_resource_root(request: web.Request) -> web.StreamResponse:
    return _resource_metadata(request, f"{request.app[SETTINGS].base_url}/mcp/")


def install_gateway(app: web.Application) -> None:
    """The one hook in create_app: the gateway's routes and its background work (reaping, metering)."""

    async def gateway_lifecycle(app: web.Application):
        gateway = app[GATEWAY] = app[SERVICES].gateway
        gateway.start()
        yield
        await gateway.stop()

    app.cleanup_ctx.append(gateway_lifecycle)
    app.router.add_routes(routes)
    app.router.add_routes(try_it.routes)  # "try it" on a hosted package's page
