"""JSON API of publishing: upload a bundle, yank / unyank / deprecate a version, the admin quarantine queue.

`POST /api/packages` takes the bundle as the raw request body (`application/octet-stream`), streamed, with
the options as query parameters; or as `multipart/form-data` whose option fields come first and whose last
part (`file`) is the bundle, also streamed (the web form's shape; cookie sessions send `csrf_token` as a
field before the file). Nothing is buffered whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from pydantic import BaseModel, ConfigDict, Field

from ..catalog.publish_options import PublishOptions
from ..catalog.uploads import BLOCK_SIZE, too_large
from .access import allow, signed_in, site_admin
from .auth import caller
from .errors import json_error
from .forms import read_publish_form
from .openapi import documented
from .util import client_ip, query_int, read_json
from .keys import SERVICES

routes = web.RouteTableDef()

NOT_A_BUNDLE_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
PUBLISH_QUERY = {
    "namespace": {**STRING, "description": "your user name (default) or an organization where you may publish"},
    "pricing": {"type": "string", "enum": ["free", "per_call", "subscription"],
                "description": "pricing model (default free); pricing options given replace the package's pricing"},
    "amount": {**STRING, "description": "exact decimal price, e.g. 0.10 (usd/eur: cents; sat: whole satoshis)"},
    "currency": {"type": "string", "enum": ["usd", "eur", "sat"]},
    "tier": {"type": "string", "enum": ["hobbyist", "pro"],
             "description": "hobbyist: hosted by this registry; pro: runs on your own https endpoint"},
    "endpoint": {**STRING, "description": "https URL of your server (tier pro only)"},
    "visibility": {"type": "string", "enum": ["public", "org", "private"],
                   "description": "default: public for a personal namespace, org for an organization"},
    "category": {**STRING, "description": "lowercase slug, e.g. developer-tools"},
    "changelog": {**STRING, "description": "what changed in this version (at most 20,000 characters)"},
}
LEDGER_PROOF = {
    "type": ["object", "null"],
    "description": "null for a quarantined version: it enters the ledger when an admin releases it",
    "properties": {"leaf_index": {"type": "integer"}, "tree_size": {"type": ["integer", "null"]},
                   "leaf_hash": STRING, "leaf": STRING,
                   "inclusion_proof": {"type": ["array", "null"], "items": STRING},
                   "checkpoint": {**NULLABLE_STRING, "description": "signed note (C2SP tlog-checkpoint)"}},
}
FINDING = {"type": "object", "properties": {"check_id": STRING, "severity": STRING, "file": STRING,
                                            "message": STRING}}
PUBLISH_RESPONSE = {
    "type": "object",
    "required": ["id", "namespace", "name", "version", "state", "sha256", "digest", "size", "signature", "findings",
                 "ledger"],
    "properties": {
        "id": {"type": "integer"}, "package_id": {"type": "integer"},
        "namespace": STRING, "name": STRING, "version": STRING,
        "state": {"type": "string", "enum": ["published", "quarantined", "pending"]},
        "sha256": {**STRING, "description": "hex sha256 of the whole file"},
        "digest": {**STRING, "description": "sha256:<hex>"},
        "size": {"type": "integer"},
        "unsigned_sha256": {**STRING, "description": "sha256 of the zip without its signature block"},
        "manifest_version": STRING, "display_name": STRING,
        "signature": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["unsigned", "signed", "self-signed"]},
            "subject": NULLABLE_STRING, "issuer": NULLABLE_STRING, "not_before": NULLABLE_STRING,
            "not_after": NULLABLE_STRING, "fingerprint": {**NULLABLE_STRING, "description": "sha256 of the cert DER"},
            "digest_variant": NULLABLE_STRING, "signing_time": NULLABLE_STRING, "reason": STRING}},
        "findings": {"type": "array", "items": FINDING},
        "scanner_errors": {"type": "array", "items": STRING},
        "pricing": {"type": "object", "properties": {
            "model": STRING, "amount": {"type": "integer", "description": "minor units"},
            "amount_display": STRING, "currency": NULLABLE_STRING, "tier": STRING, "endpoint": NULLABLE_STRING}},
        "visibility": STRING, "category": NULLABLE_STRING,
        "package_created": {"type": "boolean"}, "is_latest": {"type": "boolean"},
        "icon_sha256": NULLABLE_STRING,
        "ledger": LEDGER_PROOF,
    },
}
STATUS_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "namespace": STRING, "name": STRING, "version": STRING, "state": STRING,
        "sha256": STRING, "yanked": {"type": "boolean"}, "yank_reason": NULLABLE_STRING,
        "deprecated": {"type": "boolean"}, "deprecation_reason": NULLABLE_STRING, "is_latest": {"type": "boolean"},
        "ledger_index": {"type": ["integer", "null"]}, "changed": {"type": "boolean"}, "ledger": LEDGER_PROOF,
    },
}


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=1000)


# --- upload ---------------------------------------------------------------------------------------------

async def expect_bundle(request: web.Request):
    """`Expect: 100-continue` (curl sends it for large bodies): refuse an oversized bundle before its bytes
    are sent, otherwise invite the body like aiohttp's default handler does."""
    if request.version != HttpVersion11:
        return None
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect[:50]}")
    cap = request.app[SERVICES].settings.publish.max_bundle_bytes
    if request.content_length is not None and request.content_length > cap:
        error = too_large(cap)
        return json_error(413, error.code, error.message, error.details, headers={"Connection": "close"})
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim response is not part of the final one
    return None


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    # Reads of up to a block take whatever has arrived, joined, instead of iter_any(), which wakes this
    # coroutine for every socket read: fewer, larger wake-ups cost the event loop less CPU per byte.
    async for chunk in request.content.iter_chunked(BLOCK_SIZE):
        yield chunk


@routes.post("/api/packages", expect_handler=expect_bundle)
@allow(signed_in("publish", org="allowed"))  # a bound token publishes into its org only (Publisher)
@documented(
    "Publish a bundle: the .mcpb file is the raw body (application/octet-stream) and the options are query "
    "parameters; or multipart/form-data with the options as fields followed by a last 'file' part. The body "
    "streams to disk while it is hashed, capped at publish.max_bundle_bytes. The answer says published (with "
    "its ledger leaf, inclusion proof and checkpoint), quarantined (an admin must release it) or pending (a "
    "hosted bundle's start-up check goes on in the background; the version becomes published or quarantined "
    "when it ends); a rejected bundle is a 422 listing its findings and stores nothing.",
    tags=["publish"], query=PUBLISH_QUERY,
    body={"type": "string", "format": "binary", "description": "the .mcpb file"},
    body_content_type="application/octet-stream", response_schema=PUBLISH_RESPONSE,
    responses={201: "Published, quarantined or pending", 400: "Bad option or empty body", 401: "Not signed in",
               403: "Missing publish scope, or not your namespace", 409: "This version already exists",
               413: "Bundle larger than the limit", 415: "Not a bundle body",
               422: "Bundle rejected (invalid zip or manifest, bad signature, findings)"})
async def publish(request: web.Request) -> web.Response:
    principal = caller(request)
    services = request.app[SERVICES]
    options = dict(request.query)
    declared_size = None
    if request.content_type.startswith("multipart/"):
        chunks = await read_publish_form(request, options)
    elif request.content_type in NOT_A_BUNDLE_TYPES:
        return json_error(415, "unsupported_media_type", "send the .mcpb file as the body (Content-Type: "
                          "application/octet-stream) or as multipart/form-data with a last 'file' part")
    else:
        declared_size = request.content_length
        chunks = _body_chunks(request)
    result = await services.publisher.publish(principal, PublishOptions.parse(options), chunks,
                                              declared_size=declared_size, ip=client_ip(request))
    location = f"/api/packages/{result.namespace}/{result.name}/versions/{result.version}"
    return web.json_response(result.to_dict(), status=201, headers={"Location": location})


# --- version status ---------------------------------------------------------------------------------------

async def _optional_json(request: web.Request, model):
    if not request.body_exists:
        return model()
    return await read_json(request, model)


def _version_route(action: str, summary: str, reason: str):
    @allow(signed_in("publish", org="path:namespace"))
    @documented(summary, tags=["publish"],
                body={**ReasonBody.model_json_schema(), "description": reason}, response_schema=STATUS_RESPONSE,
                responses={200: "The version's status", 400: "Missing reason", 401: "Not signed in",
                           403: "Not a manager of this package", 404: "No such package or version",
                           409: "Not a published version"})
    async def handler(request: web.Request) -> web.Response:
        principal = caller(request)
        body = await _optional_json(request, ReasonBody)
        m = request.match_info
        change = await getattr(request.app[SERVICES].package_status, action)(
            principal, m["namespace"], m["name"], m["version"], body.reason, ip=client_ip(request))
        return web.json_response(change.to_dict())

    handler.__name__ = f"{action}_version"
    return handler


VERSION_PATH = "/api/packages/{namespace}/{name}/versions/{version}"
routes.post(VERSION_PATH + "/yank")(_version_route(
    "yank", "Yank a version: it leaves 'latest' and update checks but stays downloadable by exact version",
    "reason (required), shown to users and written to the ledger"))
routes.post(VERSION_PATH + "/unyank")(_version_route(
    "unyank", "Undo a yank", "reason (optional)"))
routes.post(VERSION_PATH + "/deprecate")(_version_route(
    "deprecate", "Deprecate a version with a reason (it stays installable and may stay latest)",
    "reason (required): what to use instead"))


# --- admin quarantine queue ----------------------------------------------------------------------------------

@routes.get("/api/admin/quarantine")
@allow(site_admin())
@documented("Quarantined versions waiting for an admin, oldest first", tags=["admin"],
            query={"limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                   "after": {"type": "integer", "description": "the next_after of the previous page"}},
            responses={200: "A page of quarantined versions", 403: "Site administrators only"})
async def quarantine_list(request: web.Request) -> web.Response:
    page = await request.app[SERVICES].package_status.quarantined(
        limit=query_int(request, "limit", 50, 1, 200), after_id=query_int(request, "after", 0, 0, 2**62))
    return web.json_response(page)


QUARANTINE_PATH = "/api/admin/quarantine/{namespace}/{name}/{version}"


@routes.post(QUARANTINE_PATH + "/release")
@allow(site_admin())
@documented("Release a quarantined version: it is published, gets its ledger leaves and may become latest",
            tags=["admin"], body=NoteBody.model_json_schema(), response_schema=STATUS_RESPONSE,
            responses={200: "Released", 403: "Site administrators only", 404: "No such version",
                       409: "Not quarantined"})
async def quarantine_release(request: web.Request) -> web.Response:
    admin = caller(request)
    body = await _optional_json(request, NoteBody)
    m = request.match_info
    change = await request.app[SERVICES].package_status.release(
        admin, m["namespace"], m["name"], m["version"], body.note, ip=client_ip(request))
    return web.json_response(change.to_dict())


@routes.post(QUARANTINE_PATH + "/reject")
@allow(site_admin())
@documented("Reject a quarantined version for good (its version number stays taken)", tags=["admin"], body=ReasonBody.model_json_schema(), response_schema=STATUS_RESPONSE,
            responses={200: "Rejected", 400: "Missing reason", 403: "Site administrators only",
                       404: "No such version", 409: "Not quarantined"})
async def quarantine_reject(request: web.Request) -> web.Response:
    admin = caller(request)
    body = await _optional_json(request, ReasonBody)
    m = request.match_info
    change = await request.app[SERVICES].package_status.reject(
        admin, m["namespace"], m["name"], m["version"], body.reason, ip=client_ip(request))
    return web.json_response(change.to_dict())
