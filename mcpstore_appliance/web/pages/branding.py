"""The operator's brand on the web: its accent colour as a stylesheet and its logo (branding.py).

Both are open on a private registry too (the login page shows them). The logo is sent with a CSP of its own
that runs nothing, so an SVG logo with a script in it stays a picture even when opened directly.
"""

from __future__ import annotations

from aiohttp import web

from ...branding import Brand, logo_file
from ..access import OPEN_PROBE, allow
from ..caching import etag_of
from ..keys import SETTINGS
from ..util import etag_matches

routes = web.RouteTableDef()
BRAND = web.AppKey("brand", Brand)
LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def install_branding(app: web.Application) -> None:
    app[BRAND] = Brand.from_settings(app[SETTINGS].branding)
    app.router.add_routes(routes)


@routes.get("/branding.css")
@allow(OPEN_PROBE)
async def brand_css(request: web.Request) -> web.Response:
    body = request.app[BRAND].css().encode()
    headers = {"ETag": etag_of(body), "Cache-Control": "public, max-age=300"}
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": "text/css; charset=utf-8"})


@routes.get("/branding/logo")
@allow(OPEN_PROBE)
async def brand_logo(request: web.Request) -> web.StreamResponse:
    found = logo_file(request.app[SETTINGS])
    if found is None:
        raise web.HTTPNotFound()
    path, media_type = found
    response = web.FileResponse(path, headers={"Content-Security-Policy": LOGO_CSP,
                                               "Cache-Control": "public, max-age=300"})
    response.content_type = media_type
    return response
