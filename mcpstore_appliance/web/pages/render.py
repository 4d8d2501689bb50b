"""The HTML surface: one jinja2 environment, the page context, static files and friendly error pages.

Page handlers live in the other modules of this package; each is thin: parse the request, call one service
function, `await render(request, "page.html", **values)`.

Every page gets `principal` (or None), `csrf_token` (the session's token, or an anonymous double-submit token
that `render` also sets as a cookie) and the `static()` URL helper. Templates autoescape everything.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from ...resources import resource_dir
from ..auth import ANON_CSRF_COOKIE, principal_of
from .branding import BRAND
from .format import FILTERS, icon_url, with_query
from ..keys import CSRF_TOKEN, NEW_ANON_CSRF, NO_STORE, SETTINGS

log = logging.getLogger("mcpstore.web")

ENV_KEY = web.AppKey("pages_env", jinja2.Environment)
STATIC_KEY = web.AppKey("pages_static", dict)
LONG_CACHE = "public, max-age=31536000, immutable"
SHORT_CACHE = "public, max-age=300"

ERROR_TITLES = {
    400: "That request did not work", 401: "Please sign in", 403: "Not allowed", 404: "Page not found",
    405: "Not allowed here", 409: "That conflicts with something that exists", 413: "That file is too large",
    422: "That could not be processed", 429: "Too many requests",
}


# ---- static files ------------------------------------------------------------------------------------

def static_manifest(root: Path) -> dict[str, str]:
    """name -> short content hash, so URLs change when a file changes and can be cached for a year."""
    manifest = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            manifest[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return manifest


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    manifest = request.app[STATIC_KEY]
    if name not in manifest:  # only files that existed at start: no traversal, no directory listing
        raise web.HTTPNotFound()
    path = resource_dir("static") / name
    response = web.FileResponse(path)
    response.content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    fresh = request.query.get("v") == manifest[name]
    response.headers["Cache-Control"] = LONG_CACHE if fresh else SHORT_CACHE
    return response


# ---- the environment and rendering ---------------------------------------------------------------

def make_environment(static_manifest: dict[str, str]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,  # every template, whatever its suffix: package text is hostile by default
        undefined=jinja2.ChainableUndefined,  # `values.email or ""` for forms shown empty
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # the shipped templates do not change while the process runs: no stat per render
        cache_size=-1,
    )
    env.filters.update(FILTERS)

    def static(name: str) -> str:
        return f"/static/{name}?v={static_manifest[name]}"

    env.globals["static"] = static
    env.globals["with_query"] = with_query
    env.globals["icon_url"] = icon_url
    return env


def csrf_token_for(request: web.Request) -> str:
    """The session's CSRF token, or this browser's anonymous double-submit token (created on first use)."""
    if request.get(CSRF_TOKEN):
        return request[CSRF_TOKEN]
    token = request.cookies.get(ANON_CSRF_COOKIE, "")
    if len(token) < 20 or len(token) > 100:
        token = request.get(NEW_ANON_CSRF) or secrets.token_urlsafe(32)
        request[NEW_ANON_CSRF] = token
    return token


class _LazyToken:
    """The CSRF token, made (and set as a cookie) only when a template prints it: a page without a form then
    sets no cookie, so a shared cache may keep it."""

    def __init__(self, request: web.Request):
        self._request = request

    def __str__(self) -> str:
        return csrf_token_for(self._request)

    def __html__(self) -> str:
        return str(self)


def _context(request: web.Request, values: dict[str, Any]) -> dict[str, Any]:
    query = request.rel_url.query
    return {
        "notice": None, "error": None, "error_details": None,
        "principal": principal_of(request),
        "csrf_token": _LazyToken(request),
        "request_path": request.path,
        "search_q": query.get("q", "") if request.path in ("/", "/search") else "",
        "brand": request.app[BRAND],
        **values,
    }


def _finish(request: web.Request, response: web.Response) -> web.Response:
    if request.get(NEW_ANON_CSRF):
        settings = request.app[SETTINGS]
        response.set_cookie(ANON_CSRF_COOKIE, request[NEW_ANON_CSRF], httponly=True, samesite="Strict",
                            secure=settings.server.behind_tls, path="/")
    if principal_of(request) is not None or request.get(NO_STORE):
        # Personal pages must not be kept by shared caches or the back button after logout.
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def render_sync(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    env = request.app[ENV_KEY]
    body = env.get_template(template).render(_context(request, values))
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    return _finish(request, response)


async def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    return render_sync(request, template, status, **values)


def redirect(location: str, **query: Any) -> web.HTTPSeeOther:
    """A 303 after a successful form post (the Post/Redirect/Get pattern)."""
    clean = {k: v for k, v in query.items() if v is not None}
    return web.HTTPSeeOther(location + ("?" + urlencode(clean) if clean else ""))


def safe_next(value: str | None, default: str = "/") -> str:
    """Only local paths: an open redirect would turn our login page into a phishing tool."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return default
    return value


# ---- friendly error pages --------------------------------------------------------------------------

def render_error(request: web.Request, status: int, message: str) -> web.Response:
    """Installed as `web.errors.html_error_renderer`. Server errors say nothing about their cause."""
    if status >= 500:
        title, message = "Something went wrong", "The server hit an error. It has been logged; please try again."
    else:
        title = ERROR_TITLES.get(status, "That did not work")
    try:
        return render_sync(request, "error.html", status=status, title=title, message=message, status_code=status)
    except Exception:  # a broken template must not turn an error page into a second, uglier error
        log.exception("error page failed to render")
        return web.Response(text=f"{status} {title}", status=status, content_type="text/plain")


async def favicon(request: web.Request) -> web.Response:
    name = "favicon.svg"
    raise web.HTTPMovedPermanently(f"/static/{name}?v={request.app[STATIC_KEY][name]}")
