"""Cross-cutting HTTP behaviour: structured access logs and security headers."""

from __future__ import annotations

import json
import logging
import time
import uuid

from aiohttp import web

access_log = logging.getLogger("mcpstore.access")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@web.middleware
async def access_log_middleware(request: web.Request, handler):
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    request["request_id"] = request_id
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if access_log.isEnabledFor(logging.INFO):
            principal = request.get("principal")
            access_log.info(json.dumps({
                "request_id": request_id, "method": request.method, "path": request.path,
                "status": status, "ms": round((time.perf_counter() - started) * 1000, 2),
                "ip": request.remote, "user": principal.user.username if principal else None,
            }))


def security_headers_middleware(behind_tls: bool):
    @web.middleware
    async def middleware(request: web.Request, handler):
        response = await handler(request)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if response.content_type == "text/html":
            headers.setdefault("Content-Security-Policy", CSP)
            headers.setdefault("X-Frame-Options", "DENY")
        if behind_tls:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return middleware
