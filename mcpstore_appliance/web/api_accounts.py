"""JSON API of accounts: /api/me, /api/signup, /api/auth/token, /api/tokens, /api/orgs, /api/admin/users."""

from __future__ import annotations

from typing import Literal, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..accounts.models import SCOPES
from ..text import OneLine
from .access import ANYONE, allow, open_when_private, signed_in, site_admin
from .auth import caller
from .openapi import documented
from .util import client_ip, dump, query_int, read_json
from .keys import SERVICES

routes = web.RouteTableDef()


# The JSON schema lists the scopes by name (pydantic needs them spelled out); they must be the accounts' own.
ScopeName = Literal["read", "publish", "account", "invoke", "admin"]
if set(get_args(ScopeName)) != set(SCOPES):
    raise RuntimeError("web/api_accounts.py ScopeName differs from accounts.models.SCOPES")

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupBody(Body):
    email: OneLine = Field(max_length=320)
    username: OneLine = Field(max_length=39)
    password: str = Field(max_length=1024)
    display_name: OneLine = Field("", max_length=100)
    invite_code: OneLine | None = Field(None, max_length=100)


class LoginTokenBody(Body):
    login: OneLine = Field(max_length=320)
    password: str = Field(max_length=1024)
    name: OneLine = Field("cli", max_length=100)
    scopes: list[ScopeName] = ["read", "publish"]
    org: OneLine | None = None
    expires_in_days: int | None = None


class TokenBody(Body):
    name: OneLine = Field(max_length=100)
    scopes: list[ScopeName] = ["read"]
    org: OneLine | None = None
    expires_in_days: int | None = None


class OrgBody(Body):
    slug: OneLine = Field(max_length=39)
    name: OneLine = Field("", max_length=100)


class RoleBody(Body):
    role: Literal["owner", "admin", "publisher", "member", "auditor"]


class InviteBody(Body):
    email: str | None = Field(None, max_length=320)
    role: Literal["owner", "admin", "publisher", "member", "auditor"] = "member"


def user_json(user) -> dict:
    return {"username": user.username, "email": user.email, "display_name": user.display_name,
            "is_admin": user.is_admin, "created_at": user.created_at}


def token_json(info) -> dict:
    return dump(info)


@routes.get("/api/me")
@allow(signed_in(None, org="allowed"))  # any valid credential may ask whose it is
@documented("The calling user, their scopes and organizations", tags=["accounts"],
            responses={200: "The caller", 401: "Not signed in"})
async def me(request: web.Request) -> web.Response:
    principal = caller(request)
    orgs = await request.app[SERVICES].accounts.orgs_of(principal)
    return web.json_response({
        **user_json(principal.user),
        "namespace": principal.user.username,
        "scopes": sorted(principal.scopes),
        "via": principal.via,
        "orgs": [{"slug": org.slug, "name": org.name, "role": role} for org, role in orgs
                 if principal.token_org_id in (None, org.id)],
    })


@routes.post("/api/signup")
@allow(open_when_private(ANYONE))
@documented("Create an account (when sign-up is open, or with an invitation)", tags=["accounts"],
            body=SignupBody.model_json_schema(), responses={201: "Created", 400: "Invalid", 403: "Sign-up closed",
                                                            409: "Email or name taken"})
async def signup(request: web.Request) -> web.Response:
    body = await read_json(request, SignupBody)
    user = await request.app[SERVICES].accounts.signup(
        body.email, body.username, body.password, display_name=body.display_name, invite_code=body.invite_code,
        ip=client_ip(request))
    return web.json_response(user_json(user), status=201)


@routes.post("/api/auth/token")
@allow(open_when_private(ANYONE))  # the login and password are the credential
@documented("Exchange a login and password for a new API token (used by `mcpstore login`)", tags=["accounts"],
            body=LoginTokenBody.model_json_schema(),
            responses={201: "The token, shown once", 401: "Wrong login", 429: "Too many attempts"})
async def login_for_token(request: web.Request) -> web.Response:
    body = await read_json(request, LoginTokenBody)
    accounts = request.app[SERVICES].accounts
    ip = client_ip(request)
    user = await accounts.login(body.login, body.password, ip)
    principal = await accounts.principal_for_user(user.id)
    secret, info = await accounts.create_token(principal, body.name, list(body.scopes), org_slug=body.org,
                                               expires_in_days=body.expires_in_days, ip=ip)
    return web.json_response({"token": secret, **token_json(info), "user": user_json(user)}, status=201)


@routes.get("/api/tokens")
@allow(signed_in("account", org="allowed"))  # a bound token lists its org's tokens only
@documented("List my API tokens (never their secrets)", tags=["tokens"])
async def list_tokens(request: web.Request) -> web.Response:
    principal = caller(request)
    tokens = await request.app[SERVICES].accounts.list_tokens(principal)
    return web.json_response({"tokens": [token_json(t) for t in tokens]})


@routes.post("/api/tokens")
@allow(signed_in("account", org="allowed"))  # a bound token mints tokens bound to its org only
@documented("Create an API token; the secret is in this response only", tags=["tokens"],
            body=TokenBody.model_json_schema(), responses={201: "Created", 400: "Invalid", 403: "Scope not allowed",
                                                           429: "Too many requests"})
async def create_token(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, TokenBody)
    secret, info = await request.app[SERVICES].accounts.create_token(
        principal, body.name, list(body.scopes), org_slug=body.org, expires_in_days=body.expires_in_days,
        ip=client_ip(request))
    return web.json_response({"token": secret, **token_json(info)}, status=201)


@routes.delete("/api/tokens/{token_id:\\d{1,18}}")  # 19 digits may not fit SQLite's INTEGER
@allow(signed_in("account", org="allowed"))  # a bound token revokes its org's tokens only
@documented("Revoke one of my API tokens", tags=["tokens"], responses={204: "Revoked", 404: "No such token"})
async def revoke_token(request: web.Request) -> web.Response:
    principal = caller(request)
    await request.app[SERVICES].accounts.revoke_token(principal, int(request.match_info["token_id"]),
                                                        ip=client_ip(request))
    return web.Response(status=204)


@routes.get("/api/orgs")
@allow(signed_in("read", org="allowed"))  # a bound token sees its own org only
@documented("Organizations I belong to", tags=["orgs"])
async def list_orgs(request: web.Request) -> web.Response:
    principal = caller(request)
    orgs = await request.app[SERVICES].accounts.orgs_of(principal)
    return web.json_response({"orgs": [{"slug": o.slug, "name": o.name, "role": role} for o, role in orgs]})


@routes.post("/api/orgs")
@allow(signed_in("account", org="refused"))
@documented("Create an organization; the creator becomes its owner", tags=["orgs"],
            body=OrgBody.model_json_schema(), responses={201: "Created", 400: "Invalid slug", 409: "Name taken"})
async def create_org(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, OrgBody)
    org = await request.app[SERVICES].accounts.create_org(principal, body.slug, body.name)
    return web.json_response({"slug": org.slug, "name": org.name, "role": "owner"}, status=201)


@routes.get("/api/orgs/{slug}")
@allow(signed_in("read", org="path:slug"))
@documented("One organization I belong to", tags=["orgs"], responses={200: "OK", 404: "Not found"})
async def get_org(request: web.Request) -> web.Response:
    principal = caller(request)
    accounts = request.app[SERVICES].accounts
    org = await accounts.visible_org(principal, request.match_info["slug"])
    return web.json_response({"slug": org.slug, "name": org.name, "role": principal.role_in(org.id)})


@routes.get("/api/orgs/{slug}/members")
@allow(signed_in("read", org="path:slug"))
@documented("Members of an organization and their roles", tags=["orgs"],
            responses={200: "OK", 404: "Not found"})
async def list_members(request: web.Request) -> web.Response:
    principal = caller(request)
    members = await request.app[SERVICES].accounts.members(principal, request.match_info["slug"])
    return web.json_response({"members": dump(members)})


@routes.put("/api/orgs/{slug}/members/{username}")
@allow(signed_in("account", org="path:slug"))
@documented("Add a member or change a role (owners and admins)", tags=["orgs"],
            body=RoleBody.model_json_schema(), responses={200: "OK", 403: "Not allowed", 404: "Not found",
                                                          409: "Last owner"})
async def set_member(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, RoleBody)
    member = await request.app[SERVICES].accounts.set_member(
        principal, request.match_info["slug"], request.match_info["username"], body.role)
    return web.json_response(dump(member))


@routes.delete("/api/orgs/{slug}/members/{username}")
@allow(signed_in("account", org="path:slug"))
@documented("Remove a member (owners and admins; anyone may leave)", tags=["orgs"],
            responses={204: "Removed", 403: "Not allowed", 404: "Not found", 409: "Last owner"})
async def remove_member(request: web.Request) -> web.Response:
    principal = caller(request)
    await request.app[SERVICES].accounts.remove_member(principal, request.match_info["slug"],
                                                         request.match_info["username"])
    return web.Response(status=204)


@routes.post("/api/orgs/{slug}/invites")
@allow(signed_in("account", org="path:slug"))
@documented("Invite someone into an organization; returns a one-time code", tags=["orgs"],
            body=InviteBody.model_json_schema(), responses={201: "Created", 403: "Not allowed", 404: "Not found"})
async def invite(request: web.Request) -> web.Response:
    principal = caller(request)
    body = await read_json(request, InviteBody)
    code = await request.app[SERVICES].accounts.create_invite(
        principal, email=body.email, org_slug=request.match_info["slug"], role=body.role)
    return web.json_response({"invite_code": code}, status=201)


@routes.get("/api/admin/users")
@allow(site_admin())
@documented("All users (site administrators)", tags=["admin"],
            query={"limit": {"type": "integer", "minimum": 1, "maximum": 500},
                   "after": {"type": "integer", "minimum": 0}})
async def admin_users(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, 500)
    after = query_int(request, "after", 0, 0, 2**62)
    users = await request.app[SERVICES].accounts.list_users(limit, after)
    return web.json_response({"users": [{"id": u.id, **user_json(u)} for u in users],
                              "next_after": users[-1].id if len(users) == limit else None})
