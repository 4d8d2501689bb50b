"""Errors as JSON: `{"error": {"code", "message", "details"}}` with the right status, never a stack trace."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from .. import errors
from ..blobs.base import StorageError
from .keys import SETTINGS

log = logging.getLogger("mcpstore.web")

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 400,
    errors.UnsupportedMediaType: 415,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Unprocessable: 422,
    errors.RateLimited: 429,
    errors.PaymentRequired: 402,
    errors.UpstreamFailed: 502,
    errors.Unavailable: 503,
}

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "unprocessable",
    429: "rate_limited",
}


# The MCP Registry API (/v0, /v0.1) has its own error shape, `{"error": "message"}`, and every answer there,
# errors included, carries the CORS headers GitHub Copilot requires.
REGISTRY_PREFIXES = ("/v0/", "/v0.1/")
REGISTRY_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


def registry_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={**(headers or {}), **REGISTRY_CORS})


def status_for(error: errors.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def json_error(status: int, code: str, message: str, details: Any = None, headers: dict | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def wants_html(request: web.Request) -> bool:
    """Browsers navigating to pages get HTML error pages; API clients get JSON."""
    path = request.path
    if path.startswith(("/api/", "/v0", "/ledger/", "/bundles/", "/mcp/", "/.well-known/")):
        return False
    return "text/html" in request.headers.get("Accept", "")


# A hook for the HTML surface to render friendly error pages; set by web.pages when it is installed.
html_error_renderer = None


def _render(request: web.Request, status: int, code: str, message: str, details: Any = None,
            headers: dict | None = None) -> web.StreamResponse:
    if request.path.startswith(REGISTRY_PREFIXES):
        return registry_error(status, message, headers)
    if html_error_renderer is not None and wants_html(request):
        return html_error_renderer(request, status, message)
    return json_error(status, code, message, details, headers)


TOKEN_REFUSALS = frozenset({"invalid_token", "token_expired", "token_revoked", "account_disabled"})


def www_authenticate(request: web.Request, code: str = "") -> str:
    """The challenge of a 401 (RFC 9110): Bearer; on the hosted MCP endpoint it points at the RFC 9728
    protected-resource metadata and names the scope, as the MCP authorization spec asks, and a refused token
    says invalid_token (RFC 6750 §3.1)."""
    error = ', error="invalid_token"' if code in TOKEN_REFUSALS else ""
    if code == "insufficient_scope":  # a 403: the MCP client may ask the user for the scope (step-up)
        error = ', error="insufficient_scope"'
    if request.path.startswith("/mcp/"):
        base = request.app[SETTINGS].base_url
        return (f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource{request.path}", '
                f'scope="invoke"{error}')
    return f'Bearer realm="mcpstore"{error}'


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The answer for an exception a handler raised, turning every failure into the JSON error (or HTML
    error page) the client should see; re-raised when it is a redirect or other non-error HTTPException,
    which aiohttp sends as it is. Called by the front door (web/front_door.py)."""
    if isinstance(exc, errors.DomainError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.RateLimited) else None
        step_up = exc.code == "insufficient_scope" and request.path.startswith("/mcp/")  # MCP asks for a challenge
        if isinstance(exc, errors.Unauthenticated) or step_up:
            headers = {"WWW-Authenticate": www_authenticate(request, exc.code)}
        if getattr(exc, "www_authenticate", None):  # a challenge of its own (an L402 payment: tokens/l402.py)
            headers = {"WWW-Authenticate": exc.www_authenticate}
        return _render(request, status_for(exc), exc.code, exc.message, exc.details, headers)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        if exc.status == 413:
            message = "request body is too large"
        elif exc.status == 404:
            message = "no such resource"
        else:
            message = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        return _render(request, exc.status, CODE_BY_STATUS.get(exc.status, "http_error"), message, None, headers)
    if isinstance(exc, StorageError):
        log.error("blob storage failed on %s %s", request.method, request.path, exc_info=exc)
        return _render(request, 503, "storage_unavailable", "bundle storage is unavailable; try again later",
                       headers={"Retry-After": "30"})
    if isinstance(exc, json.JSONDecodeError):
        return _render(request, 400, "malformed_json", f"request body is not valid JSON: {exc.msg}")
    if isinstance(exc, (ConnectionResetError, web.RequestPayloadError)):
        return _render(request, 400, "bad_request", f"request body could not be read: {exc}")
    # the one place that turns a bug into a generic 500
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return _render(request, 500, "internal", "internal server error")


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a request it cannot parse (a URL or header over 8 KB, a broken request line) with a full
    traceback at ERROR, so any client could flood the log. Such a protocol error is the client's: one line at
    INFO, without the traceback. Everything else aiohttp's server logs passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            text = "".join(c if c.isprintable() else "?" for c in str(exc.message or type(exc).__name__))[:200]
            record.msg, record.args = "bad HTTP request from %s: %s (%s)", (remote, text, type(exc).__name__)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            return server_logger.isEnabledFor(logging.INFO)  # the level it was demoted to, as configured
        return True


def log_client_errors_in_one_line() -> None:
    """Install ClientErrorsInOneLine on aiohttp's server logger (once per process)."""
    if not any(isinstance(f, ClientErrorsInOneLine) for f in server_logger.filters):
        server_logger.addFilter(ClientErrorsInOneLine())
