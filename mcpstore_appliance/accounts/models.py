"""Plain values of the accounts part."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ROLES = ("owner", "admin", "publisher", "member", "auditor")
ROLES_THAT_MANAGE_MEMBERS = frozenset({"owner", "admin"})
ROLES_THAT_PUBLISH = frozenset({"owner", "admin", "publisher"})
# read: see what the holder may see (private and org packages); publish: publish, yank, deprecate;
# account: change the holder's account, tokens, organizations, members and invites; invoke: call hosted bundles
# (the /mcp endpoint and the invoke API, which run code and may cost credits); admin: site administration
# (only for site administrators' credentials). A signed-in browser session holds them all.
SCOPES = ("read", "publish", "account", "invoke", "admin")
SCOPE_DESCRIPTIONS = {
    "read": "see your private and organization packages",
    "publish": "publish, yank and deprecate versions",
    "account": "manage your tokens, organizations, members and invitations",
    "invoke": "call hosted bundles (the MCP endpoint and the invoke API)",
    "admin": "administer this registry (site administrators only)",
}
SESSION_SCOPES = frozenset(SCOPES)


@dataclass(frozen=True)
class User:
    id: int
    email: str
    username: str
    display_name: str
    is_admin: bool
    created_at: float


@dataclass(frozen=True)
class Org:
    id: int
    slug: str
    name: str
    created_at: float


@dataclass(frozen=True)
class Member:
    username: str
    display_name: str
    role: str


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    prefix: str
    scopes: list[str]
    org: str | None
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool


@dataclass(frozen=True)
class Principal:
    """Who is asking, and with which powers. Anonymous callers have no Principal (None)."""

    user: User
    scopes: frozenset[str]
    memberships: dict[int, str] = field(default_factory=dict)  # org_id -> role
    org_slugs: dict[int, str] = field(default_factory=dict)  # org_id -> slug
    token_org_id: int | None = None  # a token bound to one org acts only within it
    via: str = "session"
    expires_at: float | None = None  # when the credential (a token) expires; None: it does not, or a session
    usage: Any = None  # a usage token's grant (tokens/usage.py UsageGrant): it calls that one package only

    def with_usage(self, grant: Any) -> "Principal":
        return replace(self, usage=grant)
    # An OAuth access token's resource (RFC 8707): it is good at that hosted MCP endpoint only (web/access.py).
    audience: str | None = None

    @property
    def bound_org_slug(self) -> str | None:
        """The slug of the org a bound token acts in (None for unbound credentials, or when the holder has
        since left that org: the token then reaches nothing)."""
        return None if self.token_org_id is None else self.org_slugs.get(self.token_org_id)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def is_admin(self) -> bool:
        """Site administration: an administrator's credential with the admin scope, never an org-bound token."""
        return self.user.is_admin and "admin" in self.scopes and self.token_org_id is None

    @property
    def acts_as_owner(self) -> bool:
        """Whether the holder's personal namespace is within reach (an org-bound token reaches only its org)."""
        return self.token_org_id is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def role_in(self, org_id: int | None) -> str | None:
        if org_id is None or (self.token_org_id is not None and org_id != self.token_org_id):
            return None
        return self.memberships.get(org_id)

    def member_org_ids(self) -> frozenset[int]:
        """The orgs whose non-public packages this principal may see."""
        if self.token_org_id is not None:
            return frozenset({self.token_org_id}) & frozenset(self.memberships)
        return frozenset(self.memberships)
