"""The front door: request id, timing, metrics, access log and security headers around error translation
(web.errors.error_response) around authentication (web.auth.authenticate, skipped for anonymous reads, which
give it nothing to do).

It wraps every route's handler when the route is registered (`FrontDoor.add_routes`, used by create_app and
install_pages) instead of being an aiohttp middleware: aiohttp runs middlewares through two extra coroutines
and a cache lookup per request, about 2 us, a visible share of a cheap endpoint such as /healthz or package
data. A last catch-all route (`FrontDoor.add_unrouted`) answers what no route matched with the same JSON or
HTML 404/405 that aiohttp's own routing would have raised.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from .access import ANYONE, Access, access_of, allow, effective_principal, login_redirect, refusal
from .auth import SAFE_METHODS, authenticate
from .connections import follow_body
from .errors import error_response
from .metrics import Metrics
from .util import check_url_text

access_log = logging.getLogger("mcpstore.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Probes that orchestrators call every few seconds: counted in metrics, kept out of the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_PROCESS_TAG = os.urandom(4).hex()
_sequence = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run and cheap: a random tag of this process plus a counter."""
    return f"{_PROCESS_TAG}-{next(_sequence):x}"


def log_line(request: web.Request, request_id: str, status: int, seconds: float) -> None:
    principal = request.get("principal")
    access_log.info(json.dumps({
        "request_id": request_id, "method": request.method, "path": request.path, "status": status,
        "ms": round(seconds * 1000, 2), "ip": request.remote,
        "user": principal.user.username if principal else None,
    }))


# Set on every response unless the handler chose its own value. `Server` replaces aiohttp's default, which
# names the Python and aiohttp versions (a gift to anyone matching known vulnerabilities).
BASE_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"), ("Server", "mcpstore"))
HTML_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"))
HSTS_HEADERS = (("Strict-Transport-Security", "max-age=31536000"),)


def _set_missing(headers, pairs: tuple[tuple[str, str], ...]) -> None:
    for name, value in pairs:
        headers.setdefault(name, value)  # one lookup instead of `in` and a set (~0.2 µs per request)


def _secure(response: web.StreamResponse, behind_tls: bool) -> None:
    headers = response.headers
    _set_missing(headers, BASE_HEADERS)
    # The raw header, not response.content_type: that property parses the header on every call (~2 us).
    if headers.get("Content-Type", "").startswith("text/html"):
        _set_missing(headers, HTML_HEADERS)
    if behind_tls:
        _set_missing(headers, HSTS_HEADERS)


class FrontDoor:
    def __init__(self, metrics: Metrics, *, access_log_enabled: bool, behind_tls: bool):
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled
        self.behind_tls = behind_tls

    def add_routes(self, router: web.UrlDispatcher, route_defs: Iterable[web.RouteDef]) -> None:
        for route_def in route_defs:
            web.RouteDef(route_def.method, route_def.path, self.wrap(route_def.handler), route_def.kwargs).register(router)

    def add_get(self, router: web.UrlDispatcher, path: str, handler: Handler) -> None:
        router.add_get(path, self.wrap(handler))

    def add_unrouted(self, router: web.UrlDispatcher) -> None:
        """Last: a route for every path and method, which no earlier route took."""
        # [\s\S]: a percent-escaped line break in the path must not slip past the catch-all to aiohttp's text 404
        router.add_route("*", "/{unrouted_path:[\\s\\S]*}", self.wrap(allow(ANYONE)(_unrouted), unrouted=True))

    def wrap(self, handler: Handler, *, unrouted: bool = False) -> Handler:
        metrics, behind_tls, access_log_enabled = self.metrics, self.behind_tls, self.access_log_enabled
        access = access_of(handler)
        if access is None:
            raise RuntimeError(f"{handler.__qualname__} declares no Access: add @allow(...) under its route "
                               "(web/access.py)")
        takes_credentials = access.credentials != "ignored"

        @functools.wraps(handler)  # keeps handler attributes such as __openapi__
        async def front_door(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            request_id = request.headers.get("X-Request-Id", "")[:64] or new_request_id()
            status = 500
            if request.method not in SAFE_METHODS:
                follow_body(request)  # its connection's guard times a stalled body from here (web/connections.py)
            try:
                try:
                    if "%" in request.raw_path:  # escapes are the only way to send control characters in a URL
                        check_url_text(request)
                    # An anonymous read (no credentials, no cookies, nothing to CSRF-check) leaves authenticate()
                    # nothing to do: skipping the call saves a coroutine on the hottest requests.
                    if takes_credentials and (request.method not in SAFE_METHODS or "Authorization" in request.headers
                                              or "Cookie" in request.headers):
                        await authenticate(request, check_csrf=not unrouted)  # a 404/405 speaks for itself
                    else:
                        # set, so that principal_of() finds it: a missing key costs Mapping.get a KeyError
                        request["principal"] = None
                    admit(request, access)
                    response = await handler(request)
                except Exception as exc:  # translated here rather than in a wrapped call: one frame less
                    response = error_response(request, exc)
                status = response.status
                response.headers["X-Request-Id"] = request_id
                _secure(response, behind_tls)
                return response
            except web.HTTPException as exc:  # redirects and other exceptions used as responses
                status = exc.status
                _secure(exc, behind_tls)
                raise
            finally:
                elapsed = time.perf_counter() - started
                resource = None if unrouted else request.match_info.route.resource
                metrics.observe_request(resource, request.method, status, elapsed)
                if access_log_enabled and access_log.isEnabledFor(logging.INFO) and request.path not in QUIET_PATHS:
                    log_line(request, request_id, status, elapsed)

        front_door.__front_door__ = True
        return front_door


def admit(request: web.Request, access: Access) -> None:
    """The one check of a route's declared Access against the authenticated caller (web/access.py)."""
    principal = request["principal"]
    refused = refusal(access, principal, request.match_info)
    if refused is not None:
        if access.page and principal is None:
            raise login_redirect(request)
        raise refused
    request["principal"] = effective_principal(access, principal)


def check_every_route_wrapped(app: web.Application) -> None:
    """At start-up: a route added without the front door would answer without its errors, headers and metrics,
    and one added after the catch-all could be shadowed by it. Either is a wiring bug: fail loudly."""
    routes = list(app.router.routes())
    bare = [f"{route.method} {route.resource.canonical if route.resource else '?'}" for route in routes
            if not getattr(route.handler, "__front_door__", False)]
    if bare:
        raise RuntimeError(f"routes added without the front door (FrontDoor.wrap): {', '.join(bare)}")
    catch_all = [i for i, route in enumerate(routes) if getattr(route.handler, "__wrapped__", None) is _unrouted]
    if not catch_all:
        raise RuntimeError("the front door's catch-all route is missing (FrontDoor.add_unrouted)")
    # aiohttp tries resources whose path starts with a variable ("/{x}") in the order they were added
    shadowed = [route.resource.canonical for route in routes[catch_all[-1] + 1:]
                if route.resource is not None and route.resource.canonical.startswith("/{")]
    if shadowed:
        raise RuntimeError(f"routes added after the front door's catch-all never match: {', '.join(shadowed)}")


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """What aiohttp's router answers when no route matches: 405 with Allow when some route has this path
    under other methods, else 404. Only requests that no route took get here."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
