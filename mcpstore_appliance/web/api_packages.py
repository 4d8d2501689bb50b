"""JSON API of discovery: search, package data, versions, update checks, downloads.

    GET /api/packages?q=&category=&platform=&runtime=&pricing=&max_price=&min_rating=&verified=&tier=&org=
                      &sort=&limit=&cursor=
    GET /api/packages/{namespace}/{name}
    GET /api/packages/{namespace}/{name}/versions?limit=&cursor=
    GET /api/packages/{namespace}/{name}/versions/{version}             ("latest" allowed)
    GET /api/packages/{namespace}/{name}/versions/{version}/download    (Range, ETag, Repr-Digest)
    GET /api/packages/{namespace}/{name}/latest?current=&platform=&prerelease=
    GET /api/packages/{namespace}/{name}/stats?days=
    GET /bundles/{sha256}.mcpb                                          (content-addressed, immutable)

Anonymous callers see public packages; a token or session adds what its holder may see. A package the caller
may not see answers exactly like a missing one.
"""

from __future__ import annotations

import json

from aiohttp import web

from ..catalog.package_view import DEFAULT_VERSIONS_LIMIT, MAX_VERSIONS_LIMIT
from ..catalog.search.query import MAX_LIMIT, PLATFORMS, SORTS, parse_bool, parse_search_params
from ..errors import InvalidInput
from .access import ANYONE, allow
from .auth import principal_of
from .bundle_files import serve_bundle
from .caching import cacheable, cacheable_json
from .openapi import documented
from .org_context import enforce_version, version_filter
from .util import query_int
from .keys import SERVICES

routes = web.RouteTableDef()

PACKAGE_PATH = "/api/packages/{namespace}/{name}"

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
PRICING = {"type": "object", "properties": {"model": STRING, "amount": {"type": "integer"},
                                            "currency": NULLABLE_STRING}}
SEARCH_ITEM = {
    "type": "object",
    "required": ["id", "name", "display_name", "version", "description", "author", "tools", "keywords", "license",
                 "compatibility", "tier", "pricing", "rating", "invocations", "verified", "bundle_url", "bundle_hash"],
    "properties": {
        "id": {**STRING, "description": "namespace/name"}, "namespace": STRING, "name": STRING,
        "display_name": STRING, "version": STRING, "description": STRING, "author": {"type": "object"},
        "tools": {"type": "array", "items": STRING, "description": "tool names"},
        "keywords": {"type": "array", "items": STRING}, "license": NULLABLE_STRING, "category": NULLABLE_STRING,
        "compatibility": {"type": "object", "properties": {"platforms": {"type": "array", "items": STRING},
                                                          "runtimes": {"type": "array", "items": STRING}}},
        "tier": {"type": "string", "enum": ["hobbyist", "pro"]}, "pricing": PRICING,
        "rating": {"type": ["number", "null"]}, "rating_count": {"type": "integer"},
        "downloads": {"type": "integer"}, "invocations": {"type": "integer"}, "verified": {"type": "boolean"},
        "bundle_url": STRING, "bundle_hash": {**STRING, "description": "sha256:<hex>"},
        "download_url": STRING, "url": STRING,
    },
}
FACET = {"type": "object", "additionalProperties": {"type": "integer"}}
SEARCH_RESPONSE = {
    "type": "object",
    "required": ["packages", "total", "facets", "next_cursor"],
    "properties": {
        "packages": {"type": "array", "items": SEARCH_ITEM},
        "total": {"type": "integer", "description": "packages matching the query and filters"},
        "facets": {"type": "object", "properties": {name: FACET for name in ("category", "platform", "pricing",
                                                                               "runtime")}},
        "next_cursor": {**NULLABLE_STRING, "description": "pass as cursor for the next page; null on the last"},
        "query": {"type": "object", "properties": {"q": STRING, "corrected_query": NULLABLE_STRING,
                                                   "sort": STRING, "filters": {"type": "object"}}},
    },
}
SEARCH_QUERY = {
    "q": {**STRING, "maxLength": 256, "description": "words to look for (all must match; the last as a prefix)"},
    "category": STRING,
    "platform": {"type": "string", "enum": list(PLATFORMS)},
    "runtime": {**STRING, "description": "e.g. node, python"},
    "pricing": {"type": "string", "enum": ["free", "paid", "per_call", "subscription"]},
    "max_price": {"type": "integer", "minimum": 0, "description": "in minor units (cents, satoshis)"},
    "min_rating": {"type": "number", "minimum": 0, "maximum": 5},
    "verified": {"type": "boolean"},
    "tier": {"type": "string", "enum": ["hobbyist", "pro"]},
    "org": {**STRING, "description": "namespace (organization or user)"},
    "sort": {"type": "string", "enum": list(SORTS),
             "description": "default: relevance with q, downloads without"},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20},
    "cursor": STRING,
}
VERSION_ITEM = {"type": "object", "properties": {
    "version": STRING, "published_at": STRING, "prerelease": {"type": "boolean"}, "yanked": {"type": "boolean"},
    "yank_reason": NULLABLE_STRING, "deprecated": {"type": "boolean"}, "is_latest": {"type": "boolean"},
    "sha256": STRING, "size": {"type": "integer"}, "ledger_index": {"type": ["integer", "null"]},
    "download_url": STRING}}
UPDATE_RESPONSE = {"type": "object", "required": ["current_version", "latest_version", "download_url", "changelog",
                                                  "breaking_changes", "requires_payment"],
                   "properties": {"current_version": NULLABLE_STRING, "latest_version": NULLABLE_STRING,
                                  "update_available": {"type": "boolean"}, "download_url": NULLABLE_STRING,
                                  "changelog": {"type": "array"}, "breaking_changes": {"type": "boolean"},
                                  "requires_payment": {"type": "boolean"}}}
NOT_FOUND = "No such package (or not visible to you)"
POLICY_REFUSED = ("policy_refused: the caller acts for an organization (X-Mcpstore-Org header, an org-bound or "
                  "device token) whose group policy refuses this release; details name the rule and reason")


def single_params(request: web.Request, allowed: frozenset[str] | None = None) -> dict[str, str]:
    """Query parameters as a plain dict; a repeated parameter (or, with `allowed`, an unknown one) is a 400."""
    params: dict[str, str] = {}
    for key, value in request.query.items():
        if key in params:
            raise InvalidInput(f"parameter {key[:40]!r} is given more than once", code="invalid_parameter",
                               details={"parameter": key[:40]})
        if allowed is not None and key not in allowed:
            raise InvalidInput(f"unknown parameter {key[:40]!r}; known: {', '.join(sorted(allowed))}",
                               code="unknown_parameter", details={"parameter": key[:40]})
        params[key] = value
    return params


def discovery(request: web.Request):
    return request.app[SERVICES].discovery


def wants_fresh(request: web.Request) -> bool:
    """`Cache-Control: no-cache` (or `Pragma: no-cache`): answer from the database, not from recent pages."""
    return ("no-cache" in request.headers.get("Cache-Control", "").lower()
            or "no-cache" in request.headers.get("Pragma", "").lower())


@routes.get(PACKAGE_PATH)
@allow(ANYONE)
@documented("Package data: everything a package page shows (long description as safe HTML, tools, prompts, "
            "config fields, links, signature, ledger index, versions summary, stats)",
            tags=["discovery"], responses={200: "The package", 404: NOT_FOUND})
async def package(request: web.Request) -> web.Response:
    m = request.match_info
    body, etag, public = discovery(request).packages.package_data(principal_of(request), m["namespace"],
                                                                  m["name"])
    return cacheable(request, body, etag=etag, public=public)


# Search is added after package data on purpose: aiohttp tries the resources under /api/packages in the order
# they were added, and package data is the hottest of them; a search fails one regex before it matches.
@routes.get("/api/packages")
@allow(ANYONE)
@documented("Search the catalog: full text with field weights, typo fallback, filters, facets and keyset pages",
            tags=["discovery"], query=SEARCH_QUERY, response_schema=SEARCH_RESPONSE,
            responses={200: "One page of results with facet counts", 400: "Unknown parameter, bad value or cursor"})
async def search(request: web.Request) -> web.Response:
    query = parse_search_params(single_params(request))
    page = await discovery(request).search.search(principal_of(request), query, fresh=wants_fresh(request))
    return web.Response(text=page.to_json(), content_type="application/json")


@routes.get(PACKAGE_PATH + "/versions")
@allow(ANYONE)
@documented("Versions, newest first by semver precedence, yanked ones marked; keyset-paginated",
            tags=["discovery"],
            query={"limit": {"type": "integer", "minimum": 1, "maximum": MAX_VERSIONS_LIMIT,
                             "default": DEFAULT_VERSIONS_LIMIT}, "cursor": STRING},
            response_schema={"type": "object", "properties": {"versions": {"type": "array", "items": VERSION_ITEM},
                                                              "total": {"type": "integer"},
                                                              "next_cursor": NULLABLE_STRING}},
            responses={200: "One page of versions", 400: "Bad limit or cursor", 404: NOT_FOUND})
async def versions(request: web.Request) -> web.Response:
    m = request.match_info
    return cacheable_json(request, discovery(request).packages.versions_json(
        principal_of(request), m["namespace"], m["name"], *version_list_args(request)))


def version_list_args(request: web.Request) -> tuple[int, str | None]:
    """(limit, cursor) from the query."""
    params = single_params(request, frozenset({"limit", "cursor"}))
    return query_int(request, "limit", DEFAULT_VERSIONS_LIMIT, 1, MAX_VERSIONS_LIMIT), params.get("cursor") or None


@routes.get(PACKAGE_PATH + "/versions/{version}")
@allow(ANYONE)
@documented("One version in full ('latest' selects the latest version)", tags=["discovery"],
            responses={200: "The version", 404: "No such package or version"})
async def version(request: web.Request) -> web.Response:
    m = request.match_info
    return cacheable_json(request, discovery(request).packages.version_json(
        principal_of(request), m["namespace"], m["name"], m["version"]))


@routes.get(PACKAGE_PATH + "/latest")
@allow(ANYONE)
@documented("Update check: the newest installable version for a client on `current` (semver order, yanked "
            "versions skipped, pre-releases only with prerelease=true, platform filter; a major bump is breaking)",
            tags=["discovery"],
            query={"current": {**STRING, "description": "the installed version (semver)"},
                   "platform": {"type": "string", "enum": list(PLATFORMS)},
                   "prerelease": {"type": "boolean", "default": False}},
            response_schema=UPDATE_RESPONSE,
            responses={200: "The newest version", 400: "current is not semver, or a bad platform", 404: NOT_FOUND,
                       403: POLICY_REFUSED})
async def update_check(request: web.Request) -> web.Response:
    m = request.match_info
    args = update_check_args(request)
    policy = await version_filter(request, m["namespace"], m["name"])  # an org's policy leaves out what it refuses
    text = discovery(request).packages.update_check_json(principal_of(request), m["namespace"], m["name"], *args,
                                                        admit=policy)
    if policy is not None and policy.first_refusal is not None and json.loads(text)["latest_version"] is None:
        raise policy.first_refusal  # nothing installable is allowed: say which rule, rather than "no update"
    return cacheable_json(request, text)


def update_check_args(request: web.Request) -> tuple[str | None, str | None, bool]:
    """(current, platform, prerelease) from the query."""
    params = single_params(request, frozenset({"current", "platform", "prerelease"}))
    prerelease = parse_bool(params.get("prerelease"), "prerelease") or False
    return params.get("current") or None, params.get("platform") or None, prerelease


@routes.get(PACKAGE_PATH + "/stats")
@allow(ANYONE)
@documented("Downloads per UTC day (zero-filled, oldest first) for charts", tags=["discovery"],
            query={"days": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}},
            responses={200: "Daily downloads", 404: NOT_FOUND})
async def stats(request: web.Request) -> web.Response:
    single_params(request, frozenset({"days"}))
    days = query_int(request, "days", 30, 1, 366)
    m = request.match_info
    view = discovery(request)
    package_id, total = view.packages.package_ref(principal_of(request), m["namespace"], m["name"])
    series = await view.downloads.daily(package_id, days)
    return web.json_response({"id": f"{m['namespace']}/{m['name']}", "downloads": total, "days": series})


DOWNLOAD_DOC = dict(
    tags=["discovery"],
    responses={200: "The bundle (application/zip); ETag is its sha256, Repr-Digest its sha-256",
               206: "A byte range (Range: bytes=...)", 302: "Redirect to a presigned blob store URL",
               304: "Not modified (If-None-Match)", 403: POLICY_REFUSED, 404: "No such package, version or bundle",
               416: "Range not satisfiable"})


@routes.get(PACKAGE_PATH + "/versions/{version}/download")
@allow(ANYONE)
@documented("Download a version's bundle (yanked versions stay downloadable by exact version)", **DOWNLOAD_DOC)
async def download_version(request: web.Request) -> web.StreamResponse:
    m = request.match_info
    target = discovery(request).packages.download_target(principal_of(request), m["namespace"], m["name"],
                                                         m["version"])
    await enforce_version(request, target.version_id)
    return await serve_bundle(request, target)


@routes.get("/bundles/{sha256}.mcpb")
@allow(ANYONE)
@documented("Download a bundle by its sha256 (content-addressed, cacheable forever)", **DOWNLOAD_DOC)
async def download_bundle(request: web.Request) -> web.StreamResponse:
    target = discovery(request).packages.bundle_target(principal_of(request), request.match_info["sha256"])
    await enforce_version(request, target.version_id)
    return await serve_bundle(request, target)
