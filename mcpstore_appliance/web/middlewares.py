"""The one middleware: request id, timing, metrics, access log and security headers around error
translation (web.errors.error_response) around authentication (web.auth.authenticate, skipped for anonymous
reads, which give it nothing to do).

One middleware instead of five: each layer of aiohttp middleware costs several microseconds per
request, a visible share of a cheap endpoint such as /healthz.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time

from aiohttp import web

from .auth import SAFE_METHODS, authenticate
from .errors import error_response
from .metrics import Metrics

access_log = logging.getLogger("mcpstore.access")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Probes that orchestrators call every few seconds: counted in metrics, kept out of the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_PROCESS_TAG = os.urandom(4).hex()
_sequence = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run and cheap: a random tag of this process plus a counter."""
    return f"{_PROCESS_TAG}-{next(_sequence):x}"


def _log_line(request: web.Request, request_id: str, status: int, seconds: float) -> None:
    principal = request.get("principal")
    access_log.info(json.dumps({
        "request_id": request_id, "method": request.method, "path": request.path, "status": status,
        "ms": round(seconds * 1000, 2), "ip": request.remote,
        "user": principal.user.username if principal else None,
    }))


# Set on every response unless the handler chose its own value.
BASE_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
HTML_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"))
HSTS_HEADERS = (("Strict-Transport-Security", "max-age=31536000"),)


def _set_missing(headers, pairs: tuple[tuple[str, str], ...]) -> None:
    for name, value in pairs:
        if name not in headers:
            headers[name] = value


def _secure(response: web.StreamResponse, behind_tls: bool) -> None:
    headers = response.headers
    _set_missing(headers, BASE_HEADERS)
    # The raw header, not response.content_type: that property parses the header on every call (~2 us).
    if headers.get("Content-Type", "").startswith("text/html"):
        _set_missing(headers, HTML_HEADERS)
    if behind_tls:
        _set_missing(headers, HSTS_HEADERS)


def front_door_middleware(metrics: Metrics, *, access_log_enabled: bool, behind_tls: bool):
    @web.middleware
    async def middleware(request: web.Request, handler):
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-Id", "")[:64] or new_request_id()
        status = 500

        try:
            try:
                # An anonymous read (no credentials, no cookies, nothing to CSRF-check) leaves authenticate()
                # nothing to do: skipping the call saves a coroutine on the hottest requests.
                if (request.method not in SAFE_METHODS or "Authorization" in request.headers
                        or "Cookie" in request.headers):
                    await authenticate(request)
                else:
                    # set, so that principal_of() finds it: a missing key costs Mapping.get a KeyError
                    request["principal"] = None
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
            metrics.observe_request(request.match_info.route.resource, request.method, status, elapsed)
            if access_log_enabled and access_log.isEnabledFor(logging.INFO) and request.path not in QUIET_PATHS:
                _log_line(request, request_id, status, elapsed)

    return middleware
