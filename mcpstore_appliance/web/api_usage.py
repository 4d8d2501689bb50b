"""JSON API of usage tokens (tokens/): licence keys, the token exchange, call reports, the JWKS, revocations.

    POST   /api/packages/{namespace}/{name}/licence-keys   a licence key for the caller (shown once)
    GET    /api/account/licence-keys                       the caller's licence keys
    DELETE /api/account/licence-keys/{id}                  revoke one (and the usage tokens issued for it)
    POST   /api/usage/tokens                               licence key in, usage token (EdDSA JWT, 15 min) out;
                                                           or L402: Lightning invoice, paid, usage token out
    POST   /api/usage/reports                              a publisher's server reports a call against a jti
    GET    /.well-known/jwks.json                          the keys usage tokens are signed with
    GET    /.well-known/mcpstore-revocations.json          revoked jtis and subjects, for validators
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..tokens import UsageTokens
from ..tokens.l402 import SCHEMES as L402_SCHEMES
from ..tokens.revocations import MAX_AGE_SECONDS
from .access import OPEN_PROBE, allow, signed_in
from .auth import caller
from .keys import SERVICES, USAGE
from .openapi import documented
from .util import client_ip, read_json

log = logging.getLogger("mcpstore.tokens")
routes = web.RouteTableDef()
HOLDER = signed_in("account", org="refused")  # licence keys are personal
RELEASE_SECONDS = 30.0


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExchangeBody(Body):
    licence_key: str | None = Field(None, max_length=100,
                                    description="the licence key (mcpl_…) from the buyer's user_config")
    package: str | None = Field(None, max_length=200,
                                description="without a licence key: the per-call package (namespace/name) an agent"
                                            " pays with Lightning (L402: a 402 challenge, then "
                                            "'Authorization: L402 <macaroon>:<preimage>')")
    calls: int | None = Field(None, ge=1, le=10_000,
                              description="per-call packages: calls to pre-authorise (default 100; fewer if the "
                                          "buyer's credits cover fewer)")

    @model_validator(mode="after")
    def one_way(self) -> "ExchangeBody":
        if (self.licence_key is None) == (self.package is None):
            raise ValueError("send either licence_key, or package (L402: paid with Lightning)")
        return self


class ReportBody(Body):
    jti: str = Field(min_length=1, max_length=100, description="the usage token's jti")
    call_id: str = Field(min_length=1, max_length=200, description="your id of the call: a repeat bills it once")


def usage(request: web.Request) -> UsageTokens:
    return request.app[USAGE]


@routes.post("/api/packages/{namespace}/{name}/licence-keys")
@allow(HOLDER)
@documented("A licence key for the caller and package (shown once; one active key per package): paste it into "
            "the bundle's user_config, where its server exchanges it for usage tokens", tags=["usage"],
            responses={201: "The key (licence_key) and its record", 402: "A paid package not bought",
                       404: "No such package", 409: "You have an active key for this package: revoke it first"})
async def create_licence(request: web.Request) -> web.Response:
    m = request.match_info
    created = await usage(request).licences.create(caller(request), m["namespace"], m["name"], client_ip(request))
    return web.json_response(created, status=201, headers={"Cache-Control": "no-store"})


@routes.get("/api/account/licence-keys")
@allow(HOLDER)
@documented("The caller's licence keys (never the secrets)", tags=["usage"], responses={200: "Licence keys"})
async def list_licences(request: web.Request) -> web.Response:
    keys = await usage(request).licences.list(caller(request))
    return web.json_response({"licence_keys": keys}, headers={"Cache-Control": "no-store"})


@routes.delete("/api/account/licence-keys/{licence_id:\\d{1,18}}")
@allow(HOLDER)
@documented("Revoke a licence key: it exchanges nothing more, and its unexpired usage tokens are revoked",
            tags=["usage"], responses={204: "Revoked", 404: "No such active key of yours"})
async def revoke_licence(request: web.Request) -> web.Response:
    await usage(request).licences.revoke(caller(request), int(request.match_info["licence_id"]), client_ip(request))
    return web.Response(status=204)


@routes.post("/api/usage/tokens")
@allow(OPEN_PROBE)  # the licence key in the body is the credential
@documented("Exchange a licence key for a usage token: an EdDSA JWT (15 minutes) with sub, mcp, tier, aud, iat, "
            "exp, jti (and calls for per-call packages), verifiable offline with /.well-known/jwks.json. Without a "
            "licence key, an agent names a per-call package priced in sat and pays with L402: a 402 with "
            "'WWW-Authenticate: L402 macaroon=\"…\", invoice=\"…\"', then the same request with "
            "'Authorization: L402 <macaroon>:<hex preimage>' gets a token for the calls paid (each payment once)",
            tags=["usage"], body=ExchangeBody.model_json_schema(),
            responses={200: "The token", 400: "Invalid body",
                       401: "Unknown or revoked licence key; an L402 credential forged, expired, used, unpaid or for "
                            "another package", 402: "No access, credits that cover no call, or the L402 challenge",
                       404: "L402: no such public package", 429: "L402: too many invoices asked for"})
async def exchange(request: web.Request) -> web.Response:
    body = await read_json(request, ExchangeBody)
    if body.licence_key is not None:
        issued = await usage(request).exchange(body.licence_key, body.calls)
    else:
        issued = await usage(request).exchange_l402(body.package, l402_credential(request), body.calls,
                                                    client_ip(request))
    return web.json_response(issued, headers={"Cache-Control": "no-store"})


def l402_credential(request: web.Request) -> str | None:
    """`<macaroon>:<preimage>` of an `Authorization: L402 …` (or LSAT) header; None without one."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() in L402_SCHEMES else None


@routes.post("/api/usage/reports")
@allow(signed_in("publish", org="allowed"))
@documented("A self-hosted publisher's server reports one call against a usage token's jti; the buyer's "
            "reservation pays it. A call_id reported again is billed once", tags=["usage"],
            body=ReportBody.model_json_schema(),
            responses={200: "billed (false for a repeat), used, calls", 402: "Beyond the token's pre-authorised calls",
                       404: "No such token of a package you publish", 409: "The reservation closed (expired)"})
async def report(request: web.Request) -> web.Response:
    body = await read_json(request, ReportBody)
    return web.json_response(await usage(request).report(caller(request), body.jti, body.call_id))


@routes.get("/.well-known/jwks.json")
@allow(OPEN_PROBE)
async def jwks(request: web.Request) -> web.StreamResponse:
    """The public keys of usage tokens (OKP/Ed25519); a rotated key stays until its tokens expired."""
    document, etag = usage(request).jwks()
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300, stale-while-revalidate=60"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.json_response(document, headers=headers)


@routes.get("/.well-known/mcpstore-revocations.json")
@allow(OPEN_PROBE)
async def revocations(request: web.Request) -> web.StreamResponse:
    """Revoked usage tokens: `jti` (single tokens) and `subjects` (every token of `sub` for `mcp` issued at or
    before `revoked_at`). Short-lived in caches, so that a refunded buyer is refused within a minute."""
    current = await usage(request).revocations.current()
    headers = {"ETag": current.etag, "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}"}
    if current.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=current.body, content_type="application/json", headers=headers)


def install_usage(app: web.Application) -> None:
    """The one hook in create_app: the usage-token service, its routes, and the timer that releases the unused
    reservations of expired tokens."""

    async def usage_lifecycle(app: web.Application):
        service = app[USAGE] = app[SERVICES].usage
        service.ring.state()  # creates the first key now, not on the first request
        task = asyncio.get_running_loop().create_task(_release_loop(service))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(usage_lifecycle)
    app.router.add_routes(routes)


async def _release_loop(service: UsageTokens) -> None:
    while True:
        await asyncio.sleep(RELEASE_SECONDS)
        try:
            await service.calls.release_expired()
        except Exception:  # the database busy now: next time
            log.exception("releasing expired reservations failed")
