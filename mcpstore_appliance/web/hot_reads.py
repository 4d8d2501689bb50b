"""Anonymous package data, answered before routing.

Package data (`GET /api/packages/{namespace}/{name}`) is the read that MCP hosts and package pages make most,
and most of those callers are anonymous. Once a public package's page is kept and still exact
(`PackageView.public_page`), its answer is the same bytes for every such caller but the Date and the request
id. Going through routing, the front door and a web.Response for it cost about as much again as the rest of
the request: the dynamic route's regular expressions, a coroutine per layer, the response's header multidict
and its serialization (measured: 220,600 instructions per request that way, 122,800 this way, where a bare
aiohttp hello world takes 151,000).

`HotReads` answers those requests first, with the bytes the route sends, and counts them in the route's
metrics series and access log. Anything else goes through the application as before: another method or path,
a query, percent-escapes, credentials or cookies, a conditional request, a client's own request id, a request
that closes the connection, a page not kept or no longer exact. So the route keeps every rule: it keeps the
pages, checks names and visibility, and answers 304, 404 and the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11

from .api_packages import PACKAGE_PATH, package_headers
from .encoded import WholeResponse, rfc822_formatted_time
from .middlewares import BASE_HEADERS, HSTS_HEADERS, access_log, log_line, new_request_id

Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = PACKAGE_PATH.split("{", 1)[0]  # "/api/packages/"
# Headers that make a request something other than "anonymous, unconditional, numbered by us".
DECLINED_HEADERS = ("Authorization", "Cookie", "If-None-Match", "If-Modified-Since", "X-Request-Id", "Expect")


class HotReads:
    def __init__(self, app: web.Application, *, access_log_enabled: bool, behind_tls: bool):
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.answered = 0  # requests answered here (tests read it)
        security = BASE_HEADERS + (HSTS_HEADERS if behind_tls else ())
        # what the front door adds after the request id, and what EncodedResponse writes after the headers
        self._after_request_id = "".join(f"\r\n{name}: {value}" for name, value in security)
        self._server_and_date = f"\r\nServer: {SERVER_SOFTWARE}\r\nDate: "
        self._view = self._metrics = self._resource = None

    def install(self) -> bool:
        """Once the application's services exist (in its start-up): put `answer` in front of its request
        handling. Not installed (False) where the answer could differ from the route's: an on_response_prepare
        handler may change any response's headers."""
        services = self.app["services"]
        self._view, self._metrics = services.discovery.packages, services.metrics
        self._resource = next(resource for resource in self.app.router.resources()
                              if resource.canonical == PACKAGE_PATH)
        if self.app.on_response_prepare or not callable(getattr(self.app, "_handle", None)):
            return False
        # aiohttp gives each server the application's _handle when it makes the server, after start-up; it has
        # no public hook before routing, and a middleware runs after it.
        self.app._handle = self.wrap(self.app._handle)
        return True

    def wrap(self, handle: Handle) -> Handle:
        answer = self.answer

        async def hot_first(request: web.Request) -> web.StreamResponse:
            response = answer(request) if request.method == "GET" else None
            return response if response is not None else await handle(request)

        return hot_first

    def answer(self, request: web.Request) -> web.StreamResponse | None:
        """The bytes package data would answer, or None to let the route answer."""
        started = time.perf_counter()
        raw = request.raw_path
        if not raw.startswith(PREFIX) or "%" in raw or "?" in raw:
            return None
        parts = raw.split("/")  # "", "api", "packages", namespace, name
        if len(parts) != 5 or request.version != HttpVersion11 or not request.keep_alive:
            return None
        headers = request.headers
        if any(name in headers for name in DECLINED_HEADERS):
            return None
        try:
            page = self._view.public_page(parts[3], parts[4])
        except Exception:  # noqa: BLE001 - the route meets the same error and reports it as it should
            return None
        if page is None:
            return None
        request_id = new_request_id()
        own = "\r\n".join(f"{name}: {value}" for name, value in package_headers(page.etag, True).items())
        body = page.body
        head = (f"HTTP/1.1 200 OK\r\n{own}\r\nX-Request-Id: {request_id}{self._after_request_id}"
                f"\r\nContent-Length: {len(body)}{self._server_and_date}{rfc822_formatted_time()}\r\n\r\n")
        elapsed = time.perf_counter() - started
        self._metrics.observe_request(self._resource, "GET", 200, elapsed)
        if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
            request["principal"] = None  # the access log names the caller: nobody
            log_line(request, request_id, 200, elapsed)
        self.answered += 1
        return WholeResponse(head.encode() + body)
