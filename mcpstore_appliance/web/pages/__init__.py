"""The HTML pages: `render.py` (the jinja2 environment, the page context, static files, friendly error pages),
`format.py` and `chart.py` (display helpers), and one module of thin handlers per subject.

`install_pages(app)` is called once by `create_app`; the market's pages come with the market's routes
(`web/api_market.py`).
"""

from __future__ import annotations

from aiohttp import web

from ...resources import resource_dir
from .. import errors as web_errors
from ..access import OPEN_PROBE, allow
from . import accounts, admin, catalog, orgs, policy, publish, sso
from .branding import install_branding
from .render import ENV_KEY, STATIC_KEY, favicon, make_environment, render_error, static_file, static_manifest


def install_pages(app: web.Application) -> None:
    manifest = static_manifest(resource_dir("static"))
    app[STATIC_KEY] = manifest
    app[ENV_KEY] = make_environment(manifest)
    app[catalog.HOME_KEPT] = {}
    app.router.add_get("/static/{name:.+}", allow(OPEN_PROBE)(static_file))
    app.router.add_get("/favicon.ico", allow(OPEN_PROBE)(favicon))
    for module in (catalog, accounts, publish, orgs, admin, policy, sso):
        app.router.add_routes(module.routes)
    install_branding(app)  # the operator's name, logo and colour ([branding]): context, stylesheet, logo
    web_errors.html_error_renderer = render_error


__all__ = ["install_pages"]
