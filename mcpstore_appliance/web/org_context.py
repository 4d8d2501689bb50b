"""When a request acts for an org, so that the org's policy applies to it (policy/enforce.py).

A request is in an org's context when its credential is an org-bound API token, an org's device token
(Authorization: Bearer mcpd_…), or when a member names the org in the `X-Mcpstore-Org` header. Naming an org
the caller does not belong to answers like a missing org (404); naming one without signing in is a 401; an
org-bound token naming another org is a 403. Without any of these, no policy applies (public use).

An answer that asked `org_of` depends on that header: the front door then adds it to `Vary` (with the credential
headers), so that no cache, the browser's or a shared one, hands one org's answer to a request for another.
"""

from __future__ import annotations

from aiohttp import web

from ..accounts.models import Org
from ..errors import Forbidden, Unauthenticated
from ..policy.decide import ServerKind
from ..policy.enforce import Enforcer, VersionFilter
from .caching import ORG_HEADER
from .keys import DEVICE_ORG, ORG_VARIES, PRINCIPAL, SERVICES

ORG_HEADER_DOC = {"name": ORG_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "act for this organization (you must be a member): its group policy applies"}
_CONTEXT = web.RequestKey("org_context", object)


async def org_of(request: web.Request) -> Org | None:
    """The org this request acts for, or None (found once per request)."""
    request[ORG_VARIES] = True  # set before resolving: a refusal depends on the header as much as an answer
    if _CONTEXT not in request:
        request[_CONTEXT] = await _resolve(request)
    return request[_CONTEXT]


async def _resolve(request: web.Request) -> Org | None:
    named = request.headers.get(ORG_HEADER, "").strip().lower() or None
    device = request.get(DEVICE_ORG)
    if device is not None:
        if named is not None and named != device.slug:
            raise Forbidden("this device token acts for its own organization only", code="org_bound_token")
        return device
    principal = request.get(PRINCIPAL)
    accounts = request.app[SERVICES].accounts
    if principal is not None and principal.token_org_id is not None:
        bound = principal.bound_org_slug
        if bound is None or (named is not None and named != bound):
            raise Forbidden(f"this token is bound to the organization {bound!r}", code="org_bound_token",
                            details={"org": bound})
        return await accounts.visible_org(principal, bound)
    if named is None:
        return None
    if principal is None:
        raise Unauthenticated(f"sign in to act for an organization ({ORG_HEADER})")
    return await accounts.visible_org(principal, named[:64])


def enforcer(request: web.Request) -> Enforcer:
    services = request.app[SERVICES]
    return Enforcer(services.db, services.policy)


async def enforce_version(request: web.Request, version_id: int, kind: ServerKind | None = None) -> None:
    """403 policy_refused when the request acts for an org whose policy refuses this version."""
    org = await org_of(request)
    if org is not None:
        await enforcer(request).check_version(org, version_id, kind)


async def version_filter(request: web.Request, namespace: str, name: str) -> VersionFilter | None:
    org = await org_of(request)
    return None if org is None else await enforcer(request).version_filter(org, namespace, name)


async def filter_entries(request: web.Request, entries: list[dict]) -> list[dict]:
    """/v0.1 entries the org's policy allows (all of them outside an org's context)."""
    org = await org_of(request)
    if org is None:
        return entries
    judge = await enforcer(request).registry_judge(org)
    return [entry for entry in entries if judge(entry).allowed]
