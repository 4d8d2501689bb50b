"""Group policy over HTTP: org admins read and change it and manage device tokens (/api/orgs/{slug}/...);
members ask for a decision; managed devices fetch it, signed or rendered for MDM, with a device token
(/policy/{slug}.{format}). `install` adds the routes and finds the service build_services made.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..policy.model import Policy
from ..policy.service import PolicyService, PolicyVersion
from ..policy.signed import key_id
from ..text import OneLine
from .access import DEVICE_TOKEN, allow, signed_in
from .auth import caller
from .openapi import documented
from .util import client_ip, dump, etag_matches, read_json
from .keys import SERVICES

routes = web.RouteTableDef()
POLICY = web.AppKey("policy", PolicyService)
FORMAT_PATTERN = r"json|mobileconfig|reg|admx|adml|vscode\.json"
SLUG_PATTERN = r"[a-z0-9][a-z0-9-]{0,38}"
ORG_RESPONSES = {403: "Not an owner or admin of the organization", 404: "No such organization"}


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: Policy
    expected_version: int | None = Field(None, ge=0, le=2**53, description="refuse (409) if the policy moved on")


class DeviceTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OneLine = Field(min_length=1, max_length=100)


def install(app: web.Application) -> None:
    """The one hook in create_app: the routes, and the service (built by build_services) under POLICY."""

    async def policy_service(app: web.Application):
        app[POLICY] = app[SERVICES].policy
        yield

    app.cleanup_ctx.append(policy_service)
    app.router.add_routes(routes)


def _policies(request: web.Request) -> PolicyService:
    return request.app[POLICY]


def _version_json(current: PolicyVersion, request: web.Request) -> dict:
    public = bytes(_policies(request).artifacts.key.verify_key)
    return {"org": current.org.slug, "version": current.version, "sha256": current.sha256,
            "created_by": current.created_by, "created_at": current.created_at, "policy": current.policy.document(),
            "signing_key": {"alg": "Ed25519", "kid": key_id(public), "public_key": public.hex()}}


@routes.get("/api/orgs/{slug}/policy")
@allow(signed_in("read", org="path:slug"))
@documented("The organization's current group policy and its recent versions (owners and admins)",
            tags=["policy"], responses={200: "OK", **ORG_RESPONSES})
async def get_policy(request: web.Request) -> web.Response:
    policies = _policies(request)
    org = await policies.managed_org(caller(request), request.match_info["slug"])
    body = {**_version_json(await policies.current(org), request), "history": await policies.history(org)}
    return web.json_response(body, headers={"Cache-Control": "private, no-store"})


@routes.put("/api/orgs/{slug}/policy")
@allow(signed_in("account", org="path:slug"))
@documented("Change the organization's group policy: a new version, audited (owners and admins)",
            tags=["policy"], body=PolicyBody.model_json_schema(),
            responses={200: "The current version", 400: "Malformed policy", 409: "The policy moved on",
                       **ORG_RESPONSES})
async def put_policy(request: web.Request) -> web.Response:
    body = await read_json(request, PolicyBody)
    current = await _policies(request).update(caller(request), request.match_info["slug"], body.policy,
                                              expected_version=body.expected_version, ip=client_ip(request))
    return web.json_response(_version_json(current, request))


@routes.get("/api/orgs/{slug}/policy/check")
@allow(signed_in("read", org="path:slug"))
@documented("Whether a bundle (by sha256) is allowed in the organization, and why (any member)",
            tags=["policy"], query={"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "required": True}},
            responses={200: "The decision", 400: "Malformed", 404: "No such organization"})
async def check_bundle(request: web.Request) -> web.Response:
    sha256 = request.query.get("sha256", "")
    release, decision = await _policies(request).check(caller(request), request.match_info["slug"], sha256)
    return web.json_response({"allowed": decision.allowed, "rule": getattr(decision, "rule", None),
                              "reason": getattr(decision, "reason", None),
                              "auto_install": getattr(decision, "auto_install", False), "release": release},
                             headers={"Cache-Control": "private, no-store"})


@routes.get("/api/orgs/{slug}/device-tokens")
@allow(signed_in("account", org="path:slug"))
@documented("The organization's device tokens (never their secrets)", tags=["policy"],
            responses={200: "OK", **ORG_RESPONSES})
async def list_device_tokens(request: web.Request) -> web.Response:
    policies = _policies(request)
    org = await policies.managed_org(caller(request), request.match_info["slug"])
    return web.json_response({"device_tokens": dump(await policies.device_tokens(org))})


@routes.post("/api/orgs/{slug}/device-tokens")
@allow(signed_in("account", org="path:slug"))
@documented("Create a device token for MDM to push; it reads this organization's policy only. The secret is in "
            "this response only", tags=["policy"], body=DeviceTokenBody.model_json_schema(),
            responses={201: "Created", 400: "Invalid", **ORG_RESPONSES})
async def create_device_token(request: web.Request) -> web.Response:
    body = await read_json(request, DeviceTokenBody)
    secret, info = await _policies(request).create_device_token(caller(request), request.match_info["slug"],
                                                                body.name, ip=client_ip(request))
    return web.json_response({"token": secret, **dump(info)}, status=201)


@routes.delete("/api/orgs/{slug}/device-tokens/{token_id:\\d{1,18}}")
@allow(signed_in("account", org="path:slug"))
@documented("Revoke a device token", tags=["policy"],
            responses={204: "Revoked", 403: "Not an owner or admin", 404: "No such token or organization"})
async def revoke_device_token(request: web.Request) -> web.Response:
    await _policies(request).revoke_device_token(caller(request), request.match_info["slug"],
                                                 int(request.match_info["token_id"]), ip=client_ip(request))
    return web.Response(status=204)


@routes.get(f"/policy/{{slug:{SLUG_PATTERN}}}.{{fmt:{FORMAT_PATTERN}}}")
@allow(DEVICE_TOKEN)
@documented("The organization's policy for managed devices: Ed25519-signed JSON, or rendered for MDM "
            "(.mobileconfig, .reg, .admx, .adml, .vscode.json). Authorization: Bearer <device token>",
            tags=["policy"], responses={200: "OK", 304: "Not modified (If-None-Match)",
                                        401: "Missing, unknown or revoked device token"})
async def device_policy(request: web.Request) -> web.Response:
    policies = _policies(request)
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    org = await policies.org_for_device(secret.strip() if scheme.lower() == "bearer" else None,
                                        request.match_info["slug"])
    artifact = await policies.artifact(org, request.match_info["fmt"])
    # a credential unlocked it: private; revalidated on every use, so a new version reaches devices at once
    headers = {"ETag": artifact.etag, "Cache-Control": "private, no-cache", "X-Policy-Version": str(artifact.version)}
    if etag_matches(request.headers.get("If-None-Match"), artifact.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{artifact.filename}"'
    return web.Response(body=artifact.body, headers={**headers, "Content-Type": artifact.content_type})
