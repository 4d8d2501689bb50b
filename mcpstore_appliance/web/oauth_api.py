"""The OAuth endpoints of the authorisation server (oauth/) that programs call: RFC 8414 metadata, RFC 7591
registration, the token endpoint and RFC 7009 revocation. The user's side (sign-in and consent) is
web/pages/oauth.py.

These endpoints answer errors in the OAuth shape, `{"error": "invalid_grant", "error_description": ...}`
(RFC 6749 §5.2, RFC 7591 §3.2.2), because that is what OAuth clients read; they take no cookies or API
tokens (public clients authenticate with PKCE), so they are declared OPEN_PROBE (open on a private
registry too: the user signs in at the authorisation step).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from ..oauth import OAuthError
from ..oauth.requests import RESOURCE_PATH
from .access import OPEN_PROBE, allow
from .keys import OAUTH, SERVICES, SETTINGS
from .util import client_ip

routes = web.RouteTableDef()
MAX_BODY_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def oauth_error(exc: OAuthError) -> web.Response:
    return web.json_response(exc.as_json(), status=exc.status, headers=NO_STORE)


def single_values(params: Mapping[str, str], what: str) -> dict[str, str]:
    """RFC 6749 §3.1: a parameter sent twice is an invalid request (which copy would count?)."""
    values: dict[str, str] = {}
    for key, value in params.items():
        if key in values:
            raise OAuthError("invalid_request", f"{what} parameter {key[:40]!r} is sent more than once")
        if not isinstance(value, str) or len(value) > 4096:
            raise OAuthError("invalid_request", f"{what} parameter {key[:40]!r} is not a short text value")
        values[key] = value
    return values


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise OAuthError("invalid_request", "the request body is too large")
    try:
        return single_values(await request.post(), "form")
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_request", "the form body could not be read") from None


def _metadata(request: web.Request) -> web.Response:
    return web.json_response(request.app[OAUTH].metadata(), headers={"Cache-Control": "public, max-age=3600"})


@routes.get("/.well-known/oauth-authorization-server")
@allow(OPEN_PROBE)
async def authorization_server_metadata(request: web.Request) -> web.StreamResponse:
    """RFC 8414 metadata of the authorisation server (the issuer is the base URL)."""
    return _metadata(request)


@routes.get("/.well-known/oauth-authorization-server/{suffix:.+}")
@allow(OPEN_PROBE)
async def authorization_server_metadata_suffixed(request: web.Request) -> web.StreamResponse:
    """The path-suffixed variant (RFC 8414 §3.1): for an issuer behind a path prefix, and for clients that build
    the URL from an MCP endpoint's path (the MCP 2025-03-26 fallback)."""
    suffix = "/" + request.match_info["suffix"]
    base_path = urlsplit(request.app[SETTINGS].base_url).path.rstrip("/")
    if suffix.rstrip("/") != base_path and not RESOURCE_PATH.fullmatch(suffix.rstrip("/")):
        raise web.HTTPNotFound()
    return _metadata(request)


@routes.post("/oauth/register")
@allow(OPEN_PROBE)
async def register(request: web.Request) -> web.StreamResponse:
    """RFC 7591 dynamic client registration of a public client (rate-limited per address)."""
    try:
        if request.content_type != "application/json":
            raise OAuthError("invalid_client_metadata", "send the client metadata as application/json")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise OAuthError("invalid_client_metadata", f"the metadata is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client_metadata", "the body is not JSON") from None
        answer = await request.app[OAUTH].register(body, client_ip(request))
    except OAuthError as exc:
        return oauth_error(exc)
    return web.json_response(answer, status=201, headers=NO_STORE)


@routes.post("/oauth/token")
@allow(OPEN_PROBE)
async def token(request: web.Request) -> web.StreamResponse:
    """Authorisation code (with the PKCE verifier) or refresh token in; access and refresh tokens out."""
    try:
        answer = await request.app[OAUTH].token(await _form(request))
    except OAuthError as exc:
        return oauth_error(exc)
    return web.json_response(answer, headers=NO_STORE)


@routes.post("/oauth/revoke")
@allow(OPEN_PROBE)
async def revoke(request: web.Request) -> web.StreamResponse:
    """RFC 7009: revokes the token's whole grant; 200 also for unknown tokens."""
    try:
        await request.app[OAUTH].revoke(await _form(request))
    except OAuthError as exc:
        return oauth_error(exc)
    return web.Response(status=200, headers=NO_STORE)


def install_oauth(app: web.Application) -> None:
    """The one hook in create_app: the authorisation server (built from the accounts' users once the services
    are open), its endpoints and its pages."""
    from .pages import grants as pages_grants  # noqa: PLC0415 (as pages_oauth)
    from .pages import oauth as pages_oauth  # noqa: PLC0415 (the page imports this module's helpers)

    async def oauth_lifecycle(app: web.Application):
        app[OAUTH] = app[SERVICES].oauth
        yield

    app.cleanup_ctx.append(oauth_lifecycle)
    app.router.add_routes(routes)
    app.router.add_routes(pages_oauth.routes)
    app.router.add_routes(pages_grants.routes)  # the user's list of applications, with revoke
