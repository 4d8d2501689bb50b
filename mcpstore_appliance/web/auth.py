"""Who is calling: API tokens or usage tokens (Authorization: Bearer) or web session cookies, and CSRF for cookie callers.

A state-changing request authenticated by a session cookie must carry the session's CSRF token in the
`X-CSRF-Token` header or a `csrf_token` form field. Bearer-token calls are not exposed to CSRF (browsers
never attach them by themselves) and need none.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ..accounts.models import Org, Principal
from ..accounts.orgs import require_manager
from ..audit import Actor
from ..errors import Forbidden, Unauthenticated
from ..oauth.service import ACCESS_PREFIX as OAUTH_ACCESS_PREFIX
from ..policy.service import DEVICE_TOKEN_PREFIX
from ..tokens.l402 import SCHEMES as L402_SCHEMES
from .keys import CSRF_PENDING, CSRF_TOKEN, DEVICE_ORG, OAUTH, PRINCIPAL, SERVICES, USAGE
from .util import client_ip

SESSION_COOKIE = "mcpstore_session"
ANON_CSRF_COOKIE = "mcpstore_csrf"  # double-submit token for forms shown before login (login, signup)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def principal_of(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def caller(request: web.Request) -> Principal:
    """The principal of a route declared signed_in/site_admin: the front door admitted it, so it is there."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise RuntimeError(f"{request.method} {request.path}: no principal on a route that requires one "
                           "(is its @allow declaration ANYONE?)")
    return principal


async def _csrf_candidate(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return str(form.get("csrf_token", ""))
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


async def authenticate(request: web.Request, *, check_csrf: bool = True) -> None:
    """Resolve the caller into request[PRINCIPAL] and enforce CSRF for cookie callers (unless `check_csrf` is
    false: for requests no route took, whose 404/405 speaks for itself)."""
    accounts = request.app[SERVICES].accounts
    authorization = request.headers.get("Authorization", "")
    session_csrf = None
    request[PRINCIPAL] = None
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() in L402_SCHEMES:
            return  # an agent's L402 payment, anonymous: the usage-token endpoint reads it (web/api_usage.py)
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated("use 'Authorization: Bearer <token>'", code="invalid_token")
        credential = credential.strip()
        if credential.startswith(DEVICE_TOKEN_PREFIX):
            # A managed device: anonymous as a user, acting for its org (its policy applies: web/org_context.py)
            request[DEVICE_ORG] = await request.app[SERVICES].policy.device_org(credential)
        elif credential.count(".") == 2 and USAGE in request.app:  # a JWT: a usage token (tokens/usage.py)
            request[PRINCIPAL] = await request.app[USAGE].principal_for(credential)
        elif credential.startswith(OAUTH_ACCESS_PREFIX):  # an OAuth access token of a hosted endpoint (oauth/)
            request[PRINCIPAL] = await request.app[OAUTH].principal_for_access_token(credential)
        else:
            request[PRINCIPAL] = await accounts.principal_for_token(credential)
    elif (session_id := request.cookies.get(SESSION_COOKIE)):
        found = await accounts.principal_for_session(session_id)
        if found:
            request[PRINCIPAL], session_csrf = found
            request[CSRF_TOKEN] = session_csrf
    if check_csrf and request.method not in SAFE_METHODS and not authorization:
        await _check_csrf(request, session_csrf)


async def _check_csrf(request: web.Request, session_csrf: str | None) -> None:
    if request.content_type == "multipart/form-data":
        # Streamed uploads: the handler reads the csrf_token part itself (see check_csrf_value).
        request[CSRF_PENDING] = session_csrf or request.cookies.get(ANON_CSRF_COOKIE, "")
        return
    if session_csrf is None and request.content_type != "application/x-www-form-urlencoded":
        # No cookie session means no ambient credential to abuse. Plain HTML forms (login, signup) still
        # carry the double-submit token against login CSRF.
        return
    expected = session_csrf or request.cookies.get(ANON_CSRF_COOKIE, "")
    if not _same(await _csrf_candidate(request), expected):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again", code="csrf_failed")


def check_csrf_value(request: web.Request, value: str) -> None:
    """For multipart forms: compare the form's csrf_token part with the session's token."""
    if CSRF_PENDING in request and not _same(value, request[CSRF_PENDING]):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again", code="csrf_failed")


async def managed_org(request: web.Request) -> tuple[Actor, Org]:
    """The path's org, for its owners and admins (and site admins); the acting principal's audit actor."""
    principal = caller(request)
    org = await request.app[SERVICES].accounts.visible_org(principal, request.match_info["slug"])
    require_manager(principal, org)
    return Actor(principal.id, principal.user.username, client_ip(request)), org
