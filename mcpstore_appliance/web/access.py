"""Who may call each route. Every handler declares it next to its route with `@allow(...)`, and the front door
(web/front_door.py) checks it in one place, `admit`, before the handler runs; a route without a declaration
stops the appliance at start-up (`front_door.check_routes_declared`).

The declarations:

- `NO_CREDENTIALS`: the route does not take our credentials (probes, static files, the witness protocol):
  Authorization and cookies are not looked at.
- `ANYONE`: anyone may call; a credential that is sent must be valid, and it widens what the caller sees only
  when it holds the `read` scope (otherwise the caller is treated as anonymous: public data stays public).
- `signed_in(scope, org=...)`: a token with `scope` (None: any valid credential) or a signed-in browser
  session (which holds every scope; its writes carry the CSRF token). `org` says what an org-bound token may
  do here: "allowed" (what it reaches is then limited to its org by the services), "refused", or
  "path:<param>" (only where the path's <param> names its own org).
- `site_admin()`: a site administrator's credential with the admin scope, never an org-bound token.
- `browser_session(scope)`: pages and forms of a signed-in user, for browser sessions only.
- `DEVICE_TOKEN`: managed devices; the handler checks an org device token (policy/) itself, so user
  credentials are not looked at here, as with NO_CREDENTIALS.
- `SCIM_TOKEN`: an org's identity provider; the handler checks the org's SCIM token (web/scim_api.py) itself,
  as with DEVICE_TOKEN.
- `resource=...` on signed_in: the route is an OAuth protected resource (the hosted MCP endpoint, a path
  template such as "/mcp/{namespace}/{name}"); an OAuth access token is good only at its own resource (its
  audience) and refused everywhere else as invalid_token.
- `page=True` on a declaration: for HTML pages, an anonymous visitor is sent to the login page instead of
  getting a 401; `session_only=True`: browser forms, which a token cannot submit.

A private registry (`[registry] mode = "private"`) admits no anonymous caller anywhere, except on routes
declared `open_when_private(...)`: probes, static files, signing in and up (invites), webhooks, the witness
protocol, device policy. `private_refusal` is that rule; the front door applies it with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlencode

from aiohttp import web

from ..accounts.models import SCOPES, Principal
from ..errors import DomainError, Forbidden, Unauthenticated

Credentials = Literal["ignored", "optional", "required"]
OrgBinding = str  # "allowed", "refused" or "path:<param>"

# The codes of refusals made here (and by authentication), so that tests can tell them from a service's own.
ACCESS_CODES = frozenset({"unauthenticated", "invalid_token", "token_revoked", "token_expired", "account_disabled",
                          "insufficient_scope", "org_bound_token", "admin_only", "session_required",
                          "csrf_failed", "usage_token_only", "private_registry"})


@dataclass(frozen=True)
class Access:
    credentials: Credentials
    scope: str | None = None
    org: OrgBinding = "allowed"
    admin: bool = False
    session_only: bool = False
    page: bool = False
    device: bool = False  # an org device token, checked by the handler (DEVICE_TOKEN)
    scim: bool = False  # an org SCIM token, checked by the handler (SCIM_TOKEN)
    resource: str | None = None  # path template of an OAuth protected resource (the hosted MCP endpoint)
    open_when_private: bool = False  # reachable without signing in on a private registry too

    def __post_init__(self) -> None:
        if self.scope is not None and self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}")
        if self.org not in ("allowed", "refused") and not self.org.startswith("path:"):
            raise ValueError(f"org must be 'allowed', 'refused' or 'path:<param>', not {self.org!r}")

    @property
    def org_param(self) -> str | None:
        return self.org[5:] if self.org.startswith("path:") else None

    def openapi_auth(self) -> str | None:
        """What the OpenAPI document says: None (no credentials), "optional" or the scope a call needs."""
        if self.credentials == "ignored":
            return None
        if self.credentials == "optional":
            return "optional"
        return "admin" if self.admin else (self.scope or "any")


NO_CREDENTIALS = Access("ignored")
DEVICE_TOKEN = Access("ignored", device=True, open_when_private=True)
SCIM_TOKEN = Access("ignored", scim=True, open_when_private=True)
ANYONE = Access("optional", scope="read")


def open_when_private(access: Access) -> Access:
    """The same declaration, also open to anonymous callers on a private registry (see the module's doc)."""
    return replace(access, open_when_private=True)


OPEN_PROBE = open_when_private(NO_CREDENTIALS)  # probes, static files, peers' protocols


def signed_in(scope: str | None, *, org: OrgBinding, page: bool = False, session_only: bool = False,
              resource: str | None = None) -> Access:
    return Access("required", scope=scope, org=org, page=page, session_only=session_only, resource=resource)


def browser_session(scope: str) -> Access:
    """HTML pages and forms of a signed-in user: a browser session only; anonymous visitors go to the login page."""
    return Access("required", scope=scope, org="refused", page=True, session_only=True)


def site_admin(*, page: bool = False, session_only: bool = False) -> Access:
    return Access("required", scope="admin", org="refused", admin=True, page=page, session_only=session_only)


def allow(access: Access) -> Callable:
    """Declare who may call the decorated handler (put it under the route decorator)."""

    def mark(handler):
        handler.__access__ = access
        return handler

    return mark


def access_of(handler) -> Access | None:
    return getattr(handler, "__access__", None)


def undeclared_routes(app: web.Application) -> list[str]:
    """Routes whose handler declares no Access (HEAD routes share their GET's handler)."""
    return [f"{route.method} {route.resource.canonical if route.resource else '?'}"
            for route in app.router.routes() if access_of(route.handler) is None]


def refusal(access: Access, principal: Principal | None, match_info: Mapping[str, str],
            base_url: str = "") -> DomainError | None:
    """Why `principal` may not call a route declared `access` (None: it may). Pure, for the front door and tests."""
    if access.credentials == "ignored":
        return None
    if principal is not None and principal.audience is not None \
            and principal.audience != resource_url(access, match_info, base_url):
        return Unauthenticated("this OAuth access token is for another resource", code="invalid_token",
                               details={"audience": principal.audience})
    if access.credentials != "required":
        return None
    if principal is None:
        return Unauthenticated("sign in or send an API token (Authorization: Bearer mcps_…)")
    if access.session_only and principal.via != "session":
        return Forbidden("this form is for signed-in browser sessions; API tokens use the JSON API",
                         code="session_required")
    if principal.usage is not None and access.scope != "invoke":
        return Forbidden("a usage token only calls the hosted package it was issued for", code="usage_token_only")
    if access.scope is not None and not principal.has_scope(access.scope):
        return Forbidden(f"this credential lacks the {access.scope!r} scope", code="insufficient_scope",
                         details={"required_scope": access.scope})
    if principal.token_org_id is not None and not _binding_allows(access, principal, match_info):
        return Forbidden(f"this token is bound to the organization {principal.bound_org_slug!r} and cannot be "
                         "used here", code="org_bound_token", details={"org": principal.bound_org_slug})
    if access.admin and not principal.is_admin:
        return Forbidden("site administrators only", code="admin_only")
    return None


def resource_url(access: Access, match_info: Mapping[str, str], base_url: str) -> str | None:
    """The URL of the protected resource a route is (what an OAuth token's audience must be), or None."""
    if access.resource is None:
        return None
    return base_url + access.resource.format_map({k: match_info.get(k, "") for k in match_info})


def private_refusal(access: Access, principal: Principal | None, device: bool) -> DomainError | None:
    """On a private registry: why an anonymous caller may not call this route (None: it may). A device
    token counts as signed in (for its org)."""
    if access.open_when_private or principal is not None or device:
        return None
    return Unauthenticated("this registry is private: sign in or send an API token (Authorization: Bearer mcps_…)",
                           code="private_registry")


def _binding_allows(access: Access, principal: Principal, match_info: Mapping[str, str]) -> bool:
    if access.org == "allowed":
        return True
    param = access.org_param
    return param is not None and principal.bound_org_slug is not None and \
        match_info.get(param) == principal.bound_org_slug


def effective_principal(access: Access, principal: Principal | None) -> Principal | None:
    """The caller as the handler sees it: on ANYONE routes a credential without `read` adds nothing."""
    if access.credentials == "ignored":
        return None
    if access.credentials == "optional" and principal is not None and not principal.has_scope(access.scope or "read"):
        return None
    return principal


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
