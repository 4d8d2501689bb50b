"""Storefront pages: home, search results, the package page.

The data comes from the discovery services (`services.discovery`): the same search and package data the JSON
API serves, with the same visibility rule, rendered as HTML.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any

from aiohttp import web
from markupsafe import Markup

from ...catalog.search.pages import SearchPage
from ...catalog.search.query import FILTERS, PLATFORMS, SORTS, SearchQuery, parse_search_params
from ...errors import DomainError
from ..access import ANYONE, allow
from ..auth import principal_of
from ..errors import status_for
from .render import render
from ..caching import cacheable, etag_of
from ..keys import SERVICES, SETTINGS

routes = web.RouteTableDef()

HOME_STRIP = 6
PAGE_SIZE = 20
SORT_LABELS = {"relevance": "Best match", "downloads": "Most downloaded", "rating": "Top rated",
               "newest": "Newest", "name": "Name"}
PRICING_LABELS = {"free": "Free", "paid": "Paid", "per_call": "Per call", "subscription": "Subscription"}
PLATFORM_LABELS = {"darwin": "macOS", "linux": "Linux", "win32": "Windows"}
FILTER_LABELS = {"category": "Category", "platform": "Platform", "runtime": "Runtime", "pricing": "Price",
                 "verified": "Verified", "min_rating": "Rating", "tier": "Tier", "max_price": "Max price",
                 "org": "Namespace"}
RATING_STEPS = ("4.5", "4", "3")


def discovery(request: web.Request):
    return request.app[SERVICES].discovery


async def search_packages(request: web.Request, params: dict[str, str]) -> SearchPage:
    """Run a catalog search for this visitor; `params` are query-string style values."""
    return await discovery(request).search.search(principal_of(request), parse_search_params(params))


# ---- home -----------------------------------------------------------------------------------------------

# The anonymous home page (no query) while nothing is committed: (stamp, body, etag). Every anonymous visitor
# gets the same bytes, and rendering it runs three searches and a template.
HOME_KEPT = web.AppKey("home_kept", dict)
HTML = "text/html; charset=utf-8"


@routes.get("/")
@allow(ANYONE)
async def home(request: web.Request) -> web.Response:
    principal = principal_of(request)
    keep = principal is None and not request.query_string
    stamp = request.app[SERVICES].db.stamp()  # before any read: a kept page never claims newer data
    kept = request.app[HOME_KEPT].get("anonymous") if keep else None
    if kept is not None and kept[0] == stamp:
        return cacheable(request, kept[1], etag=kept[2], content_type=HTML)
    search = discovery(request).search
    top, used, newest = await asyncio.gather(*(  # the catalog runs them on its reader threads side by side
        search.search(principal, SearchQuery(sort=sort, limit=HOME_STRIP)) for sort in ("rating", "downloads", "newest")))
    response = await render(request, "catalog/home.html",
                            top_rated=[p for p in top.item_dicts() if p.get("rating") is not None],
                            most_used=used.item_dicts(), newest=newest.item_dicts(),
                            categories=list(used.facets.get("category", {}).items())[:24], total=used.total,
                            **await _private_storefront(request))
    if not keep or response.cookies or response.status != 200:
        return response
    body, etag = response.body, etag_of(response.body)
    request.app[HOME_KEPT]["anonymous"] = (stamp, body, etag)
    return cacheable(request, body, etag=etag, content_type=HTML)


async def _private_storefront(request: web.Request) -> dict[str, Any]:
    """On a private registry the storefront is the catalog of the visitor's organizations."""
    principal = principal_of(request)
    if request.app[SETTINGS].registry.mode != "private" or principal is None:
        return {"private_registry": False}
    orgs = await request.app[SERVICES].accounts.orgs_of(principal)
    return {"private_registry": True, "org_names": ", ".join(org.name for org, _ in orgs) or "none yet"}


# ---- search ---------------------------------------------------------------------------------------------

def _search_params(request: web.Request) -> dict[str, str]:
    """The query string as single values; empty values (from a submitted form) count as absent."""
    return {key: value for key, value in request.query.items() if value != ""}


@routes.get("/search")
@allow(ANYONE)
async def search_page(request: web.Request) -> web.Response:
    params = _search_params(request)
    has_filters = any(key in params for key in FILTERS)
    try:
        page = await search_packages(request, {"limit": str(PAGE_SIZE), **params})
    except DomainError as exc:
        # A hand-edited URL (bad filter, stale cursor): show the page with the problem instead of results.
        return await render(request, "catalog/search.html", status=status_for(exc), page=None, params=params,
                            error=exc.message, has_filters=has_filters, **_search_labels())
    return await render(request, "catalog/search.html", page=page, params=params, has_filters=has_filters,
                        **{**_search_labels(), "items": page.item_dicts()})


def _search_labels() -> dict[str, Any]:
    return {"sorts": SORTS, "sort_labels": SORT_LABELS, "pricing_labels": PRICING_LABELS,
            "platform_labels": PLATFORM_LABELS, "platforms": PLATFORMS, "filter_labels": FILTER_LABELS,
            "rating_steps": RATING_STEPS, "items": []}


# ---- the package page -------------------------------------------------------------------------------------

@routes.get("/packages/{namespace}/{name}")
@allow(ANYONE)
async def package_page(request: web.Request) -> web.Response:
    principal = principal_of(request)
    m = request.match_info
    packages = discovery(request).packages
    package = json.loads(packages.package_json(principal, m["namespace"], m["name"]))
    versions = packages.versions(principal, m["namespace"], m["name"], limit=100)
    # Sanitized by the catalog (markdown -> allowlisted HTML with nh3); everything else is escaped.
    description_html = Markup(package.get("long_description_html") or "")
    settings = request.app[SETTINGS]
    health = None
    if package.get("endpoint_url"):  # a pro package: its endpoint's last check
        package_id, _ = packages.package_ref(principal, m["namespace"], m["name"])
        health = await request.app[SERVICES].gateway.endpoints.health_of(package_id)
    return await render(request, "catalog/package.html", pkg=package, versions=versions["versions"],
                        versions_total=versions["total"], description_html=description_html,
                        base_url=settings.base_url, snippets=install_snippets(package),
                        platform_labels=PLATFORM_LABELS, endpoint_health=health)


def install_snippets(package: dict[str, Any]) -> dict[str, str]:
    """Copyable configuration for MCP hosts, where the package says how it runs.

    Only remote (pro tier) packages have a URL a host can connect to directly; a local bundle is installed from
    its .mcpb file, which Claude Desktop opens, so it gets no snippet (a hand-written command line would skip the
    user_config prompts and the bundle's own runtime)."""
    endpoint = package.get("endpoint_url")
    if not endpoint:
        return {}
    name = package["name"]
    vscode = {"servers": {name: {"type": "http", "url": endpoint}}}
    return {
        "claude_code": f"claude mcp add --transport http {shlex.quote(name)} {shlex.quote(endpoint)}",
        "vscode": json.dumps(vscode, indent=2),
    }


@routes.get("/packages/{namespace}/{name}/icon")
@allow(ANYONE)
async def package_icon(request: web.Request) -> web.Response:
    """The latest version's icon (a PNG checked at publish), for anyone who may see the package."""
    m = request.match_info
    package = json.loads(discovery(request).packages.package_json(principal_of(request), m["namespace"], m["name"]))
    icon = package.get("icon_sha256")
    if not icon:
        raise web.HTTPNotFound()
    data = b"".join([chunk async for chunk in request.app[SERVICES].blobs.open_range(icon)])
    scope = "public" if package.get("visibility") == "public" else "private"
    # The URL carries the icon's hash (see icon_url), so a matching URL can be cached for good.
    fresh = request.query.get("v") == icon[:16]
    cache = f"{scope}, max-age=31536000, immutable" if fresh else f"{scope}, max-age=300"
    return web.Response(body=data, content_type="image/png", headers={"Cache-Control": cache})
