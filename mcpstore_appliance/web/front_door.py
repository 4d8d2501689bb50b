"""The front door: aiohttp middlewares that every request goes through, routed or not.

`create_app` installs `MIDDLEWARES` with `web.Application(middlewares=...)`, outermost first:

- `observe`: request id (X-Request-Id), timing, metrics per route and the access log.
- `translate_errors`: any exception becomes the JSON error, registry `/v0` error or HTML error page the client
  should see (web/errors.py), so `observe` logs and counts the final status.
- `admit_caller`: authentication (web/auth.py) and the route's declared access (web/access.py, `admit`).

aiohttp's own 404 and 405 (no route matched) go through the same chain, so they get the same headers,
errors and metrics. `add_headers` (on_response_prepare) puts the request id and the headers every answer carries
(Server, nosniff, Referrer-Policy; CSP on HTML; HSTS behind TLS) on every answer, also on those a handler streams
itself. A route whose handler declares no `@allow(...)` stops the start (`check_routes_declared`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .access import (Access, access_of, effective_principal, login_redirect, private_refusal, refusal,
                     undeclared_routes)
from ..policy.service import device_principal
from .auth import SAFE_METHODS, authenticate
from .caching import vary_on_org
from .connections import follow_body
from .errors import error_response, wants_html
from .keys import DEVICE_ORG, METRICS, ORG_VARIES, PRINCIPAL, REQUEST_ID, SETTINGS
from ..text import check_text
from .util import check_url_text, client_ip
from ..audit import context as audit_context

access_log = logging.getLogger("mcpstore.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Probes that orchestrators call every few seconds: counted in metrics, kept out of the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

# Set on every response unless the handler chose its own value.
BASE_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
# Replaces aiohttp's default, set before on_response_prepare runs, which names the Python and aiohttp versions
# (a gift to anyone matching known vulnerabilities).
SERVER = "mcpstore"
HTML_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"))
HSTS_HEADERS = (("Strict-Transport-Security", "max-age=31536000"),)

_PROCESS_TAG = os.urandom(4).hex()
_sequence = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run and cheap: a random tag of this process plus a counter."""
    return f"{_PROCESS_TAG}-{next(_sequence):x}"


def log_line(request: web.Request, request_id: str, status: int, seconds: float) -> None:
    principal = request.get(PRINCIPAL)
    access_log.info(json.dumps({
        "request_id": request_id, "method": request.method, "path": request.path, "status": status,
        "ms": round(seconds * 1000, 2), "ip": request.remote,
        "user": principal.user.username if principal else None,
    }))


def secure(response: web.StreamResponse, behind_tls: bool) -> None:
    """The headers every answer carries, where the handler did not set its own."""
    headers = response.headers
    headers["Server"] = SERVER
    for name, value in BASE_HEADERS:
        headers.setdefault(name, value)
    if headers.get("Content-Type", "").startswith("text/html"):
        for name, value in HTML_HEADERS:
            headers.setdefault(name, value)
    if behind_tls:
        for name, value in HSTS_HEADERS:
            headers.setdefault(name, value)


def bind_audit_context(request: web.Request, request_id: str) -> None:
    """Where and from whom: what every audit event recorded while serving this request carries (audit/context.py)."""
    audit_context.bind(audit_context.Where(f"{request.method} {request.path[:200]}", client_ip(request), request_id,
                                           request.headers.get("User-Agent", "")[:200] or None))


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in SAFE_METHODS:
        follow_body(request)  # its connection's guard times a stalled body from here (web/connections.py)
    started = time.perf_counter()
    request_id = request[REQUEST_ID] = request.headers.get("X-Request-Id", "")[:64] or new_request_id()
    bind_audit_context(request, request_id)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and other exceptions used as responses (errors are translated)
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        request.app[METRICS].observe_request(request.match_info.route.resource, request.method, status, elapsed)
        if request.app[SETTINGS].server.access_log and access_log.isEnabledFor(logging.INFO) \
                and request.path not in QUIET_PATHS:
            log_line(request, request_id, status, elapsed)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the request id and `secure`'s headers on every answer, also on those a handler
    streams itself (bundles) and on redirects raised as exceptions."""
    response.headers["X-Request-Id"] = request.get(REQUEST_ID) or new_request_id()
    secure(response, request.app[SETTINGS].server.behind_tls)
    if request.get(ORG_VARIES):  # the org context header chose this answer (web/org_context.py)
        vary_on_org(response.headers)


@web.middleware
async def translate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:  # error_response re-raises redirects, which aiohttp sends as they are
        return error_response(request, exc)


@web.middleware
async def admit_caller(request: web.Request, handler: Handler) -> web.StreamResponse:
    routed = request.match_info.route.resource is not None
    if "%" in request.raw_path:  # escapes are the only way to send control characters in a URL
        check_url_text(request)
        if not routed:  # no path parameters to check: the path itself (a 400 rather than aiohttp's 404)
            check_text(request.path, "the path")
    access = access_of(request.match_info.handler) if routed else None
    private = request.app[SETTINGS].registry.mode == "private"
    takes_credentials = access is None or access.credentials != "ignored" or (private and not access.open_when_private)
    # An anonymous read (no credentials, no cookies, nothing to CSRF-check) leaves authenticate() nothing to do.
    if takes_credentials and (request.method not in SAFE_METHODS or "Authorization" in request.headers
                              or "Cookie" in request.headers):
        await authenticate(request, check_csrf=routed)  # a 404/405 speaks for itself
    else:
        request[PRINCIPAL] = None
    if access is not None:
        admit(request, access, private)
    return await handler(request)


MIDDLEWARES = (observe, translate_errors, admit_caller)


def admit(request: web.Request, access: Access, private: bool = False) -> None:
    """The one check of a route's declared Access against the authenticated caller (web/access.py), and on a
    private registry of whether an anonymous caller may call it at all."""
    principal = request[PRINCIPAL]
    refused = refusal(access, principal, request.match_info, request.app[SETTINGS].base_url)
    if refused is None and private:
        refused = private_refusal(access, principal, DEVICE_ORG in request)
        if refused is not None and (access.page or wants_html(request)):
            raise login_redirect(request)
    if refused is not None:
        if access.page and principal is None:
            raise login_redirect(request)
        raise refused
    request[PRINCIPAL] = effective_principal(access, principal)
    if principal is None and access.credentials == "optional" and DEVICE_ORG in request:
        request[PRINCIPAL] = device_principal(request[DEVICE_ORG])  # reads what its org's members may see


async def check_routes_declared(app: web.Application) -> None:
    """At start-up: a route whose handler declares no Access would be admitted unchecked; that is a wiring bug."""
    bare = undeclared_routes(app)
    if bare:
        raise RuntimeError(f"routes without an @allow(...) declaration (web/access.py): {', '.join(bare)}")
