"""Anonymous package data, update checks and version lists, answered before routing.

Package data (`GET /api/packages/{namespace}/{name}`) is the read that package pages make most, and update
checks (`…/latest?current=…`) are what every MCP host sends for every installed bundle, again and again; most
of those callers are anonymous. Once the route has kept the answer for a public package and it is still exact
(nothing committed since it was read: `PackageView.public_page`, `public_update_answer`, `public_version_list`
for the first page of versions), the answer is the same bytes for every anonymous caller but the Date and the
request id. Going through routing, the front door and a web.Response for it cost about as much again as the
rest of the request: the dynamic route's regular expressions, a coroutine per layer, the response's header
multidict and its serialization (measured for package data: 220,600 instructions per request that way,
122,800 this way, where a bare aiohttp hello world takes 151,000).

`HotReads` answers those requests first, with the bytes the route sends, and counts them in the route's
metrics series and access log. Anything else goes through the application as before: another method or path,
percent-escapes, a query the route would refuse (or any query for package data), credentials or cookies, a
conditional request, a client's own request id, a request that closes the connection, an answer not kept or
no longer exact. So the route keeps every rule: it keeps the answers, checks names, parameters and
visibility, and answers 304, 400, 404 and the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion11

from .api_packages import PACKAGE_PATH, package_headers, update_check_args, version_list_args
from .encoded import HEAD_TAIL, JSON_UTF8, WholeResponse, rfc822_formatted_time
from .middlewares import BASE_HEADERS, HSTS_HEADERS, access_log, log_line, new_request_id

Handle = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = PACKAGE_PATH.split("{", 1)[0]  # "/api/packages/"
UPDATE_CHECK_PATH = PACKAGE_PATH + "/latest"
VERSION_LIST_PATH = PACKAGE_PATH + "/versions"
# Headers that make a request something other than "anonymous, unconditional, numbered by us".
DECLINED_HEADERS = ("Authorization", "Cookie", "If-None-Match", "If-Modified-Since", "X-Request-Id", "Expect")
Found = tuple[web.AbstractResource, str, bytes]  # the route's resource, its own header lines, the body


class HotReads:
    def __init__(self, app: web.Application, *, access_log_enabled: bool, behind_tls: bool):
        self.app = app
        self.access_log_enabled = access_log_enabled
        self.answered = 0  # requests answered here (tests read it)
        security = BASE_HEADERS + (HSTS_HEADERS if behind_tls else ())
        # what the front door adds after the request id, and what EncodedResponse writes after the headers
        self._after_request_id = "".join(f"\r\n{name}: {value}" for name, value in security)
        self._view = self._metrics = None
        self._resources: dict[str, web.AbstractResource] = {}

    def install(self) -> bool:
        """Once the application's services exist (in its start-up): put `answer` in front of its request
        handling. Not installed (False) where the answer could differ from the route's: an on_response_prepare
        handler may change any response's headers."""
        services = self.app["services"]
        self._view, self._metrics = services.discovery.packages, services.metrics
        self._resources = {resource.canonical: resource for resource in self.app.router.resources()
                           if resource.canonical in (PACKAGE_PATH, UPDATE_CHECK_PATH, VERSION_LIST_PATH)}
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
        """The bytes the route would answer, or None to let the route answer."""
        started = time.perf_counter()
        raw = request.raw_path
        if not raw.startswith(PREFIX) or "%" in raw:
            return None
        path, _, query = raw.partition("?")
        parts = path.split("/")  # "", "api", "packages", namespace, name[, "latest" or "versions"]
        if (len(parts) not in (5, 6) or request.version != HttpVersion11 or not request.keep_alive
                or any(name in request.headers for name in DECLINED_HEADERS)):
            return None
        try:
            if len(parts) == 5:
                found = None if query else self._package_data(parts[3], parts[4])
            elif parts[5] == "latest":
                found = self._update_check(request, parts[3], parts[4])
            else:
                found = self._version_list(request, parts[3], parts[4]) if parts[5] == "versions" else None
        except Exception:  # noqa: BLE001 - a refused query or a database error: the route answers it as it should
            return None
        if found is None:
            return None
        resource, own_headers, body = found
        request_id = new_request_id()
        head = (f"HTTP/1.1 200 OK\r\n{own_headers}\r\nX-Request-Id: {request_id}{self._after_request_id}"
                f"\r\nContent-Length: {len(body)}\r\n{HEAD_TAIL}{rfc822_formatted_time()}\r\n\r\n")
        elapsed = time.perf_counter() - started
        self._metrics.observe_request(resource, "GET", 200, elapsed)
        if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
            request["principal"] = None  # the access log names the caller: nobody
            log_line(request, request_id, 200, elapsed)
        self.answered += 1
        return WholeResponse(head.encode() + body)

    def _package_data(self, namespace: str, name: str) -> Found | None:
        page = self._view.public_page(namespace, name)
        if page is None:
            return None
        own = "\r\n".join(f"{header}: {value}" for header, value in package_headers(page.etag, True).items())
        return self._resources[PACKAGE_PATH], own, page.body

    # The query is read by the route's own code: what it would refuse raises here, and the route answers 400.

    def _update_check(self, request: web.Request, namespace: str, name: str) -> Found | None:
        current, platform, prerelease = update_check_args(request)
        return self._json(UPDATE_CHECK_PATH,
                          self._view.public_update_answer(namespace, name, current, platform, prerelease))

    def _version_list(self, request: web.Request, namespace: str, name: str) -> Found | None:
        limit, cursor = version_list_args(request)
        if cursor:  # later pages are not kept
            return None
        return self._json(VERSION_LIST_PATH, self._view.public_version_list(namespace, name, limit))

    def _json(self, route: str, text: str | None) -> Found | None:
        """What the route's json_text answer carries (the front door adds the rest)."""
        return None if text is None else (self._resources[route], f"Content-Type: {JSON_UTF8}", text.encode("utf-8"))
