"""An org's OIDC configuration: issuer, client, allowed algorithms and the map from the IdP's groups to org roles.
The client secret is sealed with the appliance's SSO key (keys/sso.key) before it is stored and is never
returned: a reader learns only whether one is set."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from ..accounts.models import ROLES
from ..errors import InvalidInput
from .idtoken import DEFAULT_ALGORITHMS, check_algorithms
from .provider import allowed_url

MAX_GROUPS = 100


@dataclass(frozen=True)
class OidcConfig:
    """One provider as the sign-in uses it: an org's (org_id set) or the site's (org_id None)."""

    org_id: int | None
    issuer: str
    client_id: str
    client_secret: str | None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    group_roles: dict[str, str] = field(default_factory=dict)
    default_role: str | None = "member"
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "client_id": self.client_id, "has_client_secret": bool(self.client_secret),
                "algorithms": list(self.algorithms), "group_roles": dict(self.group_roles),
                "default_role": self.default_role, "enabled": self.enabled}


def check_issuer(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 500 or not allowed_url(value) \
            or urlsplit(value).query or urlsplit(value).fragment:
        raise InvalidInput("issuer must be an https URL without query or fragment (http only on loopback)",
                           code="invalid_issuer", details={"field": "issuer"})
    return value


def check_body(body: dict[str, Any], current: OidcConfig | None, org_id: int) -> OidcConfig:
    """A new configuration from an API or form body; a missing client_secret keeps the stored one, "" clears it."""
    known = {"issuer", "client_id", "client_secret", "algorithms", "group_roles", "default_role", "enabled"}
    if unknown := sorted(set(body) - known):
        raise InvalidInput(f"unknown fields: {unknown}", details={"fields": unknown})
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 255 or not client_id.isprintable():
        raise InvalidInput("client_id is required (at most 255 characters)", details={"field": "client_id"})
    secret = body.get("client_secret", current.client_secret if current else None)
    if secret is not None and (not isinstance(secret, str) or len(secret) > 1000):
        raise InvalidInput("client_secret must be a string of at most 1000 characters",
                           details={"field": "client_secret"})
    algorithms = body.get("algorithms", list(DEFAULT_ALGORITHMS))
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise InvalidInput("algorithms must be a list of names", details={"field": "algorithms"})
    default_role = body.get("default_role", "member")
    if default_role is not None and default_role not in ROLES:
        raise InvalidInput(f"default_role must be one of {list(ROLES)} or null (refuse unmapped users)",
                           details={"field": "default_role"})
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false", details={"field": "enabled"})
    return OidcConfig(org_id, check_issuer(body.get("issuer")), client_id, secret or None,
                      check_algorithms(algorithms), check_group_roles(body.get("group_roles", {})), default_role,
                      enabled)


def check_group_roles(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_GROUPS:
        raise InvalidInput(f"group_roles must map at most {MAX_GROUPS} group names to roles",
                           details={"field": "group_roles"})
    for group, role in value.items():
        if not 0 < len(group) <= 200 or not group.isprintable() or role not in ROLES:
            raise InvalidInput(f"group_roles: {group[:50]!r} must map to one of {list(ROLES)}",
                               details={"field": "group_roles"})
    return dict(value)


def role_for_groups(config: OidcConfig, groups: Any) -> str | None:
    """The most privileged role any of the user's groups maps to, else the default (None: refuse)."""
    names = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []
    mapped = {config.group_roles[g] for g in names if g in config.group_roles}
    for role in ROLES:  # ROLES runs from most to least privileged
        if role in mapped:
            return role
    return config.default_role


class SealedSecrets:
    """Client secrets sealed with a 32-byte key (XSalsa20-Poly1305, a fresh nonce each time)."""

    def __init__(self, key: bytes):
        self.box = SecretBox(key)

    def seal(self, secret: str | None) -> bytes | None:
        return None if secret is None else bytes(self.box.encrypt(secret.encode()))

    def open(self, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        try:
            return self.box.decrypt(sealed).decode()
        except CryptoError:
            return None  # a replaced sso.key: the admin enters the secret again


def to_row(config: OidcConfig, secrets: SealedSecrets) -> dict[str, Any]:
    return {"org_id": config.org_id, "issuer": config.issuer, "client_id": config.client_id,
            "sealed_secret": secrets.seal(config.client_secret), "algorithms": " ".join(config.algorithms),
            "group_roles": json.dumps(config.group_roles), "default_role": config.default_role,
            "enabled": int(config.enabled), "updated_at": time.time()}


def from_row(row: dict[str, Any], secrets: SealedSecrets) -> OidcConfig:
    return OidcConfig(row["org_id"], row["issuer"], row["client_id"], secrets.open(row["sealed_secret"]),
                      tuple(row["algorithms"].split()), json.loads(row["group_roles"]), row["default_role"],
                      bool(row["enabled"]))
