"""The official MCP Registry API, v0.1 (frozen), mirrored at /v0 (VS Code falls back to it).

    GET /v0.1/servers?cursor=&limit=&search=&updated_since=&version=&include_deleted=
    GET /v0.1/servers/{serverName}/versions?include_deleted=
    GET /v0.1/servers/{serverName}/versions/{version}?include_deleted=      ("latest" allowed)

    PATCH /v0.1/servers/{serverName}/versions/{version}/status, PATCH /v0.1/servers/{serverName}/status

Status changes map onto the catalog's own operations (deleted = yank, deprecated = deprecate, active = un-yank)
and need an API token with the publish scope. Publishing, editing and deleting through this API answer 501:
bundles are published with POST /api/packages (`mcpstore publish`). Reads need no credentials (MCP hosts never
send any); a token, if given, adds its holder's private packages like everywhere else.

Every response, errors and OPTIONS preflights included, carries the CORS headers GitHub Copilot requires.
Errors use the registry's shape, `{"error": "Server not found"}`.
"""

from __future__ import annotations

import functools
import json
import logging

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..catalog.registry_view import DEFAULT_LIMIT, MAX_LIMIT, OFFICIAL
from ..errors import InvalidInput
from .api_packages import parse_bool, single_params, wants_fresh
from .access import ANYONE, OPEN_PROBE, allow, signed_in
from .auth import caller, principal_of
from .caching import cacheable_json, compact_json
from .errors import REGISTRY_CORS, registry_error
from .openapi import documented
from .org_context import enforcer, filter_entries, org_of
from ..policy.enforce import refusal
from .util import client_ip, read_json
from .keys import SERVICES

log = logging.getLogger("mcpstore.registry")
routes = web.RouteTableDef()

CORS = REGISTRY_CORS
PREFIXES = ("/v0.1", "/v0")
LIST_PARAMS = frozenset({"cursor", "limit", "search", "updated_since", "version", "include_deleted"})
ONE_PARAMS = frozenset({"include_deleted"})
STRING = {"type": "string"}
SERVER_RESPONSE = {"type": "object", "required": ["server"],
                   "properties": {"server": {"type": "object"}, "_meta": {"type": "object"}}}
SERVER_LIST = {"type": "object", "required": ["servers"],
               "properties": {"servers": {"type": "array", "items": SERVER_RESPONSE},
                              "metadata": {"type": "object", "properties": {"nextCursor": STRING,
                                                                            "count": {"type": "integer"}}}}}


def registry_handler(handler):
    """CORS on every answer (errors get theirs, in the registry's `{"error": "..."}` shape, from web/errors.py)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(CORS)
        return response

    return wrapped


def registry(request: web.Request):
    return request.app[SERVICES].discovery.registry


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", code="invalid_parameter")
    return int(raw)


@registry_handler
@allow(ANYONE)
@documented("MCP Registry: list servers (one entry per version), ordered by name and version, keyset pages",
            tags=["mcp-registry"],
            query={"cursor": STRING, "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                               "default": DEFAULT_LIMIT},
                   "search": {**STRING, "description": "substring of the server name or description"},
                   "updated_since": {**STRING, "format": "date-time"},
                   "version": {**STRING, "description": "'latest' or an exact version"},
                   "include_deleted": {"type": "boolean", "default": False}},
            response_schema=SERVER_LIST, responses={200: "A page of servers", 400: "Bad parameter or cursor"})
async def list_servers(request: web.Request) -> web.Response:
    params = single_params(request, LIST_PARAMS)
    text = await registry(request).list_servers_json(
        principal_of(request), fresh=wants_fresh(request), cursor=params.get("cursor") or None, limit=_limit(params.get("limit")),
        search=params.get("search") or None, updated_since=params.get("updated_since") or None,
        version=params.get("version") or None, include_deleted=parse_bool(params.get("include_deleted"),
                                                                          "include_deleted"))
    if await org_of(request) is not None:  # an org's members see what its policy allows (the cursor stays valid)
        text = compact_json(await _allowed_only(request, json.loads(text)))
    return cacheable_json(request, text)


async def _allowed_only(request: web.Request, listing: dict) -> dict:
    servers = await filter_entries(request, listing["servers"])
    return {**listing, "servers": servers, "metadata": {**listing.get("metadata", {}), "count": len(servers)}}


@registry_handler
@allow(ANYONE)
@documented("MCP Registry: all versions of one server, newest publication first", tags=["mcp-registry"], query={"include_deleted": {"type": "boolean", "default": False}},
            response_schema=SERVER_LIST, responses={200: "The versions", 404: "Server not found"})
async def server_versions(request: web.Request) -> web.Response:
    params = single_params(request, ONE_PARAMS)
    answer = registry(request).server_versions(principal_of(request), request.match_info["server_name"],
                                               bool(parse_bool(params.get("include_deleted"), "include_deleted")))
    return cacheable_json(request, compact_json(await _allowed_only(request, answer)))


@registry_handler
@allow(ANYONE)
@documented("MCP Registry: one version of a server ('latest' selects the latest)", tags=["mcp-registry"], query={"include_deleted": {"type": "boolean", "default": False}},
            response_schema=SERVER_RESPONSE, responses={200: "The server version", 404: "Server not found"})
async def server_version(request: web.Request) -> web.Response:
    params = single_params(request, ONE_PARAMS)
    answer = registry(request).server_version(principal_of(request), request.match_info["server_name"],
                                              request.match_info["version"],
                                              bool(parse_bool(params.get("include_deleted"), "include_deleted")))
    org = await org_of(request)
    if org is not None:
        decision = (await enforcer(request).registry_judge(org))(answer)
        if not decision.allowed:
            raise refusal(org, answer["server"]["name"], answer["server"]["version"], decision)
    return cacheable_json(request, compact_json(answer))


def _not_supported(what: str):
    @registry_handler
    @allow(ANYONE)  # answers 501 to anyone
    @documented(f"MCP Registry: {what} (not supported here: 501)", tags=["mcp-registry"],
                responses={501: "Not supported by this registry"})
    async def handler(request: web.Request) -> web.Response:
        return registry_error(501, f"{what} is not supported by this registry; publish bundles with "
                                   "POST /api/packages (mcpstore publish)")

    handler.__name__ = "registry_" + what.lower().replace(" ", "_")
    return handler


class StatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "deprecated", "deleted"]
    statusMessage: str | None = Field(None, max_length=500)


STATUS_DOC = dict(tags=["mcp-registry"], body=StatusBody.model_json_schema(),
                  responses={200: "Updated", 400: "Bad status, or no change to apply", 401: "Not signed in",
                             403: "Not a manager of this package", 404: "Server not found"})


@registry_handler
@allow(signed_in("publish", org="allowed"))  # a bound token manages its org's packages only (can_manage)
@documented("MCP Registry: set the status of one version (deleted = yanked, deprecated, active)", **STATUS_DOC)
async def version_status(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, StatusBody)
    view = registry(request)
    server_name, version = request.match_info["server_name"], request.match_info["version"]
    entry = view.server_version(principal, server_name, version, include_deleted=True)
    if not await _apply_status(request, principal, server_name, entry, body):
        raise InvalidInput(f"No changes to apply: status is already {body.status}", code="no_change")
    return web.json_response(view.server_version(principal, server_name, entry["server"]["version"],
                                                 include_deleted=True), dumps=compact_json)


@registry_handler
@allow(signed_in("publish", org="allowed"))  # a bound token manages its org's packages only (can_manage)
@documented("MCP Registry: set the status of every version of a server", **STATUS_DOC)
async def server_status(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, StatusBody)
    view = registry(request)
    server_name = request.match_info["server_name"]
    entries = view.server_versions(principal, server_name, include_deleted=True)["servers"]
    if body.status == "active" and any(_status(e) == "deprecated" for e in entries):
        raise InvalidInput(UNDEPRECATE, code="cannot_undeprecate")  # checked before anything changes
    updated = 0
    for entry in entries:
        updated += await _apply_status(request, principal, server_name, entry, body)
    if not updated:
        raise InvalidInput(f"No changes to apply: status is already {body.status}", code="no_change")
    servers = view.server_versions(principal, server_name, include_deleted=True)["servers"]
    return web.json_response({"updatedCount": updated, "servers": servers}, dumps=compact_json)


UNDEPRECATE = ("a deprecation cannot be withdrawn through this API; publish a new version instead "
               "(status active only restores deleted versions)")


def _status(entry: dict) -> str:
    return entry["_meta"][OFFICIAL]["status"]


async def _apply_status(request: web.Request, principal, server_name: str, entry: dict, body: StatusBody) -> bool:
    """Map a registry status onto the catalog's own operations (each writes its ledger leaf and audit event):
    deleted = yank, deprecated = deprecate (un-yanking first if needed), active = un-yank."""
    namespace, name = registry(request).parse_server_name(server_name)
    version = entry["server"]["version"]
    current = _status(entry)
    status = request.app[SERVICES].package_status
    ip = client_ip(request)
    if body.status == current and (current != "deprecated" or not body.statusMessage
                                   or body.statusMessage == entry["_meta"][OFFICIAL].get("statusMessage")):
        return False
    if body.status == "deleted":
        await status.yank(principal, namespace, name, version, body.statusMessage or "deleted through the MCP "
                          "Registry API", ip=ip)
    elif body.status == "deprecated":
        if current == "deleted":
            await status.unyank(principal, namespace, name, version, None, ip=ip)
        await status.deprecate(principal, namespace, name, version, body.statusMessage or "deprecated", ip=ip)
    else:
        if current == "deprecated":
            raise InvalidInput(UNDEPRECATE, code="cannot_undeprecate")
        await status.unyank(principal, namespace, name, version, body.statusMessage, ip=ip)
    return True


@allow(OPEN_PROBE)  # CORS preflights carry no credentials
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


def _add(prefix: str) -> None:
    servers = f"{prefix}/servers"
    one = servers + "/{server_name:.+}"
    routes.get(servers)(list_servers)
    routes.get(one + "/versions")(server_versions)
    routes.get(one + "/versions/{version}")(server_version)
    routes.put(one + "/versions/{version}")(_not_supported("Updating a server version"))
    routes.delete(one + "/versions/{version}")(_not_supported("Deleting a server version"))
    routes.patch(one + "/versions/{version}/status")(version_status)
    routes.patch(one + "/status")(server_status)
    routes.post(f"{prefix}/publish")(_not_supported("Publishing"))
    for path in (servers, one + "/versions", one + "/versions/{version}", one + "/versions/{version}/status",
                 one + "/status", f"{prefix}/publish"):
        routes.route("OPTIONS", path)(preflight)


for _prefix in PREFIXES:
    _add(_prefix)
