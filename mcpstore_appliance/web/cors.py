"""CORS for what browser-based MCP clients call from their own origin: the OAuth metadata, registration, token
and revocation endpoints, the RFC 9728 protected-resource metadata, the JWKS, and the hosted MCP endpoint.

- The OAuth endpoints and metadata take no cookies (public clients prove themselves with PKCE): any origin may
  read them, `Access-Control-Allow-Origin: *`, which browsers never combine with credentials.
- `/mcp/...` keeps its Origin rule against DNS rebinding (the appliance's own origin and
  `hosted.allowed_origins`): such an origin is echoed (with `Vary: Origin`); any other gets no CORS headers, and
  its request is refused by web/mcp_api.py. Credentials are bearer tokens: `Access-Control-Allow-Credentials`
  is never sent, and a cross-origin call authenticated by a session cookie alone is refused there too.
- Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered 204 by `preflight`, declared open
  like the endpoints themselves; `Mcp-Session-Id`, `MCP-Protocol-Version` and `WWW-Authenticate` are exposed
  so a client can read its session and the 401's pointer to the metadata.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import Forbidden
from .access import OPEN_PROBE, allow
from .keys import SETTINGS

OPEN_PATHS = re.compile(r"/\.well-known/(oauth-authorization-server|oauth-protected-resource)(/.*)?"
                        r"|/\.well-known/jwks\.json|/oauth/(register|token|revoke)")
MCP_PATH = re.compile(r"/mcp/[^/]+/[^/]+")
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID"
EXPOSE_HEADERS = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer

PREFLIGHT_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server/{suffix:.+}",
                   "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/{suffix:.+}",
                   "/.well-known/jwks.json", "/oauth/register", "/oauth/token", "/oauth/revoke",
                   "/mcp/{namespace}/{name}")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def mcp_origins(request: web.Request) -> set[str]:
    """The origins that may call the hosted MCP endpoint."""
    settings = request.app[SETTINGS]
    return {origin_of(settings.base_url), *(origin_of(o) for o in settings.hosted.allowed_origins)}


def check_mcp_origin(request: web.Request) -> None:
    """The hosted endpoint's Origin rule (DNS rebinding), and no session cookie as the credential of a call
    from another origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin.lower() not in mcp_origins(request):
        raise Forbidden("this Origin may not call the hosted MCP endpoint", code="origin_refused")
    own = origin_of(request.app[SETTINGS].base_url)
    if origin.lower() != own and "Authorization" not in request.headers:
        raise Forbidden("a call from another origin must carry a bearer token, not a session cookie",
                        code="origin_refused")


def allowed_origin(request: web.Request) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None for no CORS headers."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if OPEN_PATHS.fullmatch(request.path):
        return "*"
    if MCP_PATH.fullmatch(request.path) and origin.lower() in mcp_origins(request):
        return origin
    return None


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CORS headers on every answer of a covered path, errors (the 401) included."""
    value = allowed_origin(request)
    if value is None:
        return
    response.headers["Access-Control-Allow-Origin"] = value
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if value != "*":
        response.headers.add("Vary", "Origin")


@allow(OPEN_PROBE)  # a preflight carries no credentials; the call that follows is checked as usual
async def preflight(request: web.Request) -> web.StreamResponse:
    if allowed_origin(request) is None or "Access-Control-Request-Method" not in request.headers:
        raise Forbidden("not a CORS preflight from an origin allowed here", code="origin_refused")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": _methods(request.path),
        "Access-Control-Allow-Headers": ALLOW_HEADERS, "Access-Control-Max-Age": MAX_AGE,
        "Cache-Control": "no-store"})


def _methods(path: str) -> str:
    if MCP_PATH.fullmatch(path):
        return "GET, POST, DELETE"
    return "POST" if path.startswith("/oauth/") else "GET"


def install(app: web.Application) -> None:
    """The one hook in create_app: the preflight routes and the response headers."""
    for path in PREFLIGHT_PATHS:
        app.router.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(cors_headers)
