"""Plain values of the accounts part."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("owner", "admin", "publisher", "member", "auditor")
ROLES_THAT_MANAGE_MEMBERS = frozenset({"owner", "admin"})
ROLES_THAT_PUBLISH = frozenset({"owner", "admin", "publisher"})
SCOPES = ("read", "publish", "admin")
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

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin and "admin" in self.scopes

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
