"""SCIM 2.0 over HTTP at /scim/v2/{slug}/ (scim/ has the rules): what an org's identity provider calls, with
the org's SCIM token, answering `application/scim+json` and SCIM error bodies. Org owners and admins create,
list and revoke SCIM tokens at /api/orgs/{slug}/scim-tokens. `install` adds the routes and the service."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..accounts.org_tokens import OrgTokens
from ..accounts.orgs import require_manager
from ..errors import DomainError, Unauthenticated
from ..scim import discovery
from ..scim.errors import ScimError
from ..scim.resources import list_response, project
from ..scim.service import ScimService
from ..text import OneLine, parse_json
from .access import SCIM_TOKEN, allow, signed_in
from .auth import caller
from .errors import status_for
from .keys import SERVICES, SETTINGS
from .openapi import documented
from .util import client_ip, dump, read_json

routes = web.RouteTableDef()
SCIM = web.AppKey("scim", ScimService)
SCIM_TOKENS = web.AppKey("scim_tokens", OrgTokens)
MEDIA_TYPE = "application/scim+json"
PREFIX = "/scim/v2/{slug:[a-z0-9][a-z0-9-]{0,38}}"
KINDS = "{kind:Users|Groups}"
ORG_RESPONSES = {403: "Not an owner or admin of the organization", 404: "No such organization"}


class ScimTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OneLine = Field(min_length=1, max_length=100)


def install(app: web.Application) -> None:
    """The one hook in create_app: the routes, and the service over the database build_services opened."""

    async def scim_service(app: web.Application):
        app[SCIM] = ScimService(app[SERVICES].db)
        app[SCIM_TOKENS] = OrgTokens(app[SERVICES].db, "scim_tokens", "mcpscim_", "scim_token")
        yield

    app.cleanup_ctx.append(scim_service)
    app.router.add_routes(routes)


def scim_json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=MEDIA_TYPE, headers=headers)


def scim_endpoint(handler: Callable[..., Awaitable[web.Response]]):
    """Authenticate the org's SCIM token, then call handler(request, org, base); every failure is a SCIM error."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
            org = await request.app[SCIM_TOKENS].org_for(secret.strip() if scheme.lower() == "bearer" else None,
                                                         request.match_info["slug"])
            base = f"{request.app[SETTINGS].base_url}/scim/v2/{org.slug}"
            return await handler(request, org, base)
        except ScimError as exc:
            return scim_json(exc.body(), exc.status)
        except web.HTTPException as exc:  # a body over the size limit (413), raised while it is read
            return scim_json(ScimError(exc.status, None, exc.reason).body(), exc.status)
        except DomainError as exc:
            status = status_for(exc)
            headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if isinstance(exc, Unauthenticated) else None
            return scim_json(ScimError(status, None, exc.message).body(), status, headers)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def scim_body(request: web.Request):
    if request.content_type not in (MEDIA_TYPE, "application/json"):
        raise ScimError(415, None, f"send the body as {MEDIA_TYPE}")
    try:
        return parse_json(await request.read())
    except (DomainError, ValueError) as exc:
        raise ScimError(400, "invalidSyntax", f"the body is not valid JSON: {exc}") from None


def _int(value, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ScimError(400, "invalidValue", f"{name} is an integer") from None


def _service(request: web.Request) -> ScimService:
    return request.app[SCIM]


@routes.get(f"{PREFIX}/ServiceProviderConfig")
@allow(SCIM_TOKEN)
@scim_endpoint
async def service_provider_config(request: web.Request, org, base: str) -> web.Response:
    return scim_json(discovery.service_provider_config(base))


@routes.get(f"{PREFIX}/ResourceTypes")
@allow(SCIM_TOKEN)
@scim_endpoint
async def resource_types(request: web.Request, org, base: str) -> web.Response:
    found = discovery.resource_types(base)
    return scim_json(list_response(found, len(found), 1))


@routes.get(f"{PREFIX}/ResourceTypes/{{name}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def resource_type(request: web.Request, org, base: str) -> web.Response:
    return scim_json(_one(discovery.resource_types(base), request.match_info["name"]))


@routes.get(f"{PREFIX}/Schemas")
@allow(SCIM_TOKEN)
@scim_endpoint
async def schemas(request: web.Request, org, base: str) -> web.Response:
    found = discovery.schemas(base)
    return scim_json(list_response(found, len(found), 1))


@routes.get(f"{PREFIX}/Schemas/{{name}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def schema(request: web.Request, org, base: str) -> web.Response:
    return scim_json(_one(discovery.schemas(base), request.match_info["name"]))


def _one(documents: list[dict], name: str) -> dict:
    for document in documents:
        if document["id"] == name:
            return document
    raise ScimError(404, None, f"no {name!r} here")


@routes.get(f"{PREFIX}/{KINDS}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def list_resources(request: web.Request, org, base: str) -> web.Response:
    query = request.query
    return await _search(request, org, base, [request.match_info["kind"]], query.get("filter", ""),
                         _int(query.get("startIndex"), "startIndex", 1), _int(query.get("count"), "count", None),
                         query.get("attributes"), query.get("excludedAttributes"))


@routes.post(f"{PREFIX}/.search")
@allow(SCIM_TOKEN)
@scim_endpoint
async def search_all(request: web.Request, org, base: str) -> web.Response:
    """POST /.search (RFC 7644 3.4.3): Users, then Groups, as one list."""
    return await _search_body(request, org, base, ["Users", "Groups"])


@routes.post(f"{PREFIX}/{KINDS}/.search")
@allow(SCIM_TOKEN)
@scim_endpoint
async def search_resources(request: web.Request, org, base: str) -> web.Response:
    return await _search_body(request, org, base, [request.match_info["kind"]])


async def _search_body(request: web.Request, org, base: str, kinds: list[str]) -> web.Response:
    body = await scim_body(request)
    if not isinstance(body, dict):
        raise ScimError(400, "invalidSyntax", "a SearchRequest is a JSON object")
    names = ("attributes", "excludedAttributes")
    lists = [",".join(body[n]) if isinstance(body.get(n), list) and all(isinstance(a, str) for a in body[n])
             else None for n in names]
    if any(body.get(n) is not None and listed is None for n, listed in zip(names, lists)):
        raise ScimError(400, "invalidValue", "attributes and excludedAttributes are lists of names")
    return await _search(request, org, base, kinds, body.get("filter") or "",
                         _int(body.get("startIndex"), "startIndex", 1), _int(body.get("count"), "count", None), *lists)


async def _search(request: web.Request, org, base: str, kinds: list[str], filter_text, start: int,
                  count: int | None, attributes: str | None, excluded: str | None) -> web.Response:
    found, total = await _service(request).search(org, kinds, filter_text, start, count, base)
    shown = [project(r, attributes, excluded) for r in found]
    return scim_json(list_response(shown, total, max(1, start)))


@routes.post(f"{PREFIX}/{KINDS}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def create_resource(request: web.Request, org, base: str) -> web.Response:
    service, kind = _service(request), request.match_info["kind"]
    create = service.create_user if kind == "Users" else service.create_group
    created = await create(org, await scim_body(request), base)
    return scim_json(created, 201, {"Location": created["meta"]["location"]})


@routes.get(f"{PREFIX}/{KINDS}/{{id}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def get_resource(request: web.Request, org, base: str) -> web.Response:
    service, kind = _service(request), request.match_info["kind"]
    get = service.get_user if kind == "Users" else service.get_group
    found = await get(org, request.match_info["id"], base)
    return scim_json(project(found, request.query.get("attributes"), request.query.get("excludedAttributes")))


@routes.put(f"{PREFIX}/{KINDS}/{{id}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def replace_resource(request: web.Request, org, base: str) -> web.Response:
    service, kind = _service(request), request.match_info["kind"]
    replace = service.replace_user if kind == "Users" else service.replace_group
    return scim_json(await replace(org, request.match_info["id"], await scim_body(request), base))


@routes.patch(f"{PREFIX}/{KINDS}/{{id}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def patch_resource(request: web.Request, org, base: str) -> web.Response:
    service, kind = _service(request), request.match_info["kind"]
    patch = service.patch_user if kind == "Users" else service.patch_group
    return scim_json(await patch(org, request.match_info["id"], await scim_body(request), base))


@routes.delete(f"{PREFIX}/{KINDS}/{{id}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def delete_resource(request: web.Request, org, base: str) -> web.Response:
    service, kind = _service(request), request.match_info["kind"]
    delete = service.delete_user if kind == "Users" else service.delete_group
    await delete(org, request.match_info["id"])
    return web.Response(status=204)


# ---- the org admin's SCIM tokens ----------------------------------------------------------------------

async def _managed_org(request: web.Request):
    principal = caller(request)
    org = await request.app[SERVICES].accounts.visible_org(principal, request.match_info["slug"])
    require_manager(principal, org)
    return principal, org


@routes.get("/api/orgs/{slug}/scim-tokens")
@allow(signed_in("account", org="path:slug"))
@documented("The organization's SCIM tokens (never their secrets)", tags=["scim"],
            responses={200: "OK", **ORG_RESPONSES})
async def list_scim_tokens(request: web.Request) -> web.Response:
    _, org = await _managed_org(request)
    return web.json_response({"scim_tokens": dump(await request.app[SCIM_TOKENS].list(org))})


@routes.post("/api/orgs/{slug}/scim-tokens")
@allow(signed_in("account", org="path:slug"))
@documented("Create a SCIM token for the organization's identity provider; it provisions this organization only. "
            "The secret is in this response only", tags=["scim"], body=ScimTokenBody.model_json_schema(),
            responses={201: "Created", 400: "Invalid", **ORG_RESPONSES})
async def create_scim_token(request: web.Request) -> web.Response:
    body = await read_json(request, ScimTokenBody)
    principal, org = await _managed_org(request)
    secret, info = await request.app[SCIM_TOKENS].create(principal, org, body.name, ip=client_ip(request))
    return web.json_response({"token": secret, "scim_base_url":
                              f"{request.app[SETTINGS].base_url}/scim/v2/{org.slug}", **dump(info)}, status=201)


@routes.delete("/api/orgs/{slug}/scim-tokens/{token_id:\\d{1,18}}")
@allow(signed_in("account", org="path:slug"))
@documented("Revoke a SCIM token", tags=["scim"],
            responses={204: "Revoked", 403: "Not an owner or admin", 404: "No such token or organization"})
async def revoke_scim_token(request: web.Request) -> web.Response:
    principal, org = await _managed_org(request)
    await request.app[SCIM_TOKENS].revoke(principal, org, int(request.match_info["token_id"]), ip=client_ip(request))
    return web.Response(status=204)


# Last: whatever else is asked under an org's SCIM base, answered as SCIM does (after the token is checked):
# 405 for a method a SCIM endpoint lacks, 404 for anything else.
KNOWN = re.compile(r"^(ServiceProviderConfig|ResourceTypes(/[^/]+)?|Schemas(/[^/]+)?|(Users|Groups)(/[^/]+)?)$")


@routes.route("*", f"{PREFIX}/{{tail:.*}}")
@allow(SCIM_TOKEN)
@scim_endpoint
async def not_here(request: web.Request, org, base: str) -> web.Response:
    if KNOWN.match(request.match_info["tail"]):
        raise ScimError(405, None, f"{request.method} is not supported here")
    raise ScimError(404, None, "no such SCIM endpoint")
