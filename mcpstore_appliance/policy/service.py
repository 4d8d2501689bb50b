"""Org policies, versioned in SQLite, and the device tokens that read them.

Every change is a new row (`org_policies`), written with its audit event in one transaction; an org that never
wrote one has DEFAULT_POLICY at version 0. Org owners and admins (and site administrators) read and change
the policy and its device tokens; any member may ask for a decision (`check`). A device token reads its own
org's policy and nothing else.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .. import audit
from ..accounts.models import ROLES_THAT_MANAGE_MEMBERS, Org, Principal, User
from ..accounts.credentials import secret_hash
from ..accounts.service import AccountService
from ..audit import Actor
from ..catalog.visibility import visible_clause
from ..db import Database
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from ..keys import load_or_create_signing_key
from ..canonical import canonical_bytes
from .artifacts import FORMATS, Artifact, Artifacts
from .decide import Decision, PackageFacts, Refused, decide
from .model import DEFAULT_POLICY, Policy

DEVICE_TOKEN_PREFIX = "mcpd_"


@dataclass(frozen=True)
class PolicyVersion:
    org: Org
    version: int  # 0: the default, never written
    policy: Policy
    sha256: str  # of the policy's canonical JSON
    created_by: str | None
    created_at: float | None


@dataclass(frozen=True)
class DeviceTokenInfo:
    id: int
    name: str
    prefix: str
    created_by: str | None
    created_at: float
    last_used_at: float | None
    revoked: bool


def policy_bytes(policy: Policy) -> bytes:
    return canonical_bytes(policy.document())


def _actor(principal: Principal, ip: str | None) -> Actor:
    return Actor(principal.id, principal.user.username, ip)


class PolicyService:
    def __init__(self, db: Database, accounts: AccountService, artifacts: Artifacts):
        self.db = db
        self.accounts = accounts
        self.artifacts = artifacts

    async def artifact(self, org: Org, fmt: str) -> Artifact:
        """The org's current policy in one of FORMATS (the signed JSON, .mobileconfig, .reg, ...)."""
        if fmt not in FORMATS:
            raise NotFound(f"no policy format {fmt!r}; use one of {', '.join(FORMATS)}")
        return self.artifacts.render(await self.current(org), fmt, time.time())

    # ---- reading and changing the policy -----------------------------------------------------------

    async def managed_org(self, principal: Principal, slug: str) -> Org:
        """An org whose policy the principal manages; a foreign org answers like a missing one."""
        org = await self.accounts.visible_org(principal, slug)
        if not principal.is_admin and principal.role_in(org.id) not in ROLES_THAT_MANAGE_MEMBERS:
            raise Forbidden("only owners and admins of this organization manage its policy")
        return org

    async def current(self, org: Org) -> PolicyVersion:
        row = await self.db.fetch_one(
            "SELECT p.*, u.username FROM org_policies p LEFT JOIN users u ON u.id = p.created_by"
            " WHERE p.org_id = ? ORDER BY p.version DESC LIMIT 1", (org.id,))
        if row is None:
            return PolicyVersion(org, 0, DEFAULT_POLICY, hashlib.sha256(policy_bytes(DEFAULT_POLICY)).hexdigest(),
                                 None, None)
        return PolicyVersion(org, row["version"], Policy.model_validate_json(row["document"]), row["sha256"],
                             row["username"], row["created_at"])

    async def history(self, org: Org, limit: int = 50) -> list[dict]:
        rows = await self.db.fetch_all(
            "SELECT p.version, p.sha256, p.created_at, u.username AS created_by FROM org_policies p"
            " LEFT JOIN users u ON u.id = p.created_by WHERE p.org_id = ? ORDER BY p.version DESC LIMIT ?",
            (org.id, limit))
        return rows

    async def update(self, principal: Principal, slug: str, policy: Policy, *, expected_version: int | None = None,
                     ip: str | None = None) -> PolicyVersion:
        """Store `policy` as the org's next version (unchanged content: the current version, nothing written).
        `expected_version` guards against two admins overwriting each other (409 when it moved)."""
        org = await self.managed_org(principal, slug)
        document = policy_bytes(policy)
        digest = hashlib.sha256(document).hexdigest()
        async with self.db.write() as tx:
            last = await tx.fetch_one("SELECT version, sha256 FROM org_policies WHERE org_id = ?"
                                      " ORDER BY version DESC LIMIT 1", (org.id,)) or {"version": 0, "sha256": None}
            if expected_version is not None and expected_version != last["version"]:
                raise Conflict(f"the policy changed meanwhile (now version {last['version']}); reload and retry",
                               code="policy_version_moved", details={"version": last["version"]})
            if last["sha256"] != digest:
                version = last["version"] + 1
                await tx.insert("org_policies", {"org_id": org.id, "version": version,
                                                 "document": document.decode(), "sha256": digest,
                                                 "created_by": principal.id, "created_at": time.time()})
                await audit.record(tx, _actor(principal, ip), "policy.update", org_id=org.id, target=org.slug,
                                   details={"version": version, "sha256": digest})
        return await self.current(org)

    # ---- decisions -----------------------------------------------------------------------------------

    async def check(self, principal: Principal, slug: str, sha256: str) -> tuple[dict | None, Decision]:
        """Whether the bundle with this sha256 is allowed in the org, for any member: the release as the
        registry knows it (None when it does not, or the caller may not see it) and the decision."""
        org = await self.accounts.visible_org(principal, slug)
        if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput("sha256 must be 64 lower-case hex digits", details={"field": "sha256"})
        release = await self._release(principal, sha256)
        if release is None:
            return None, Refused("unknown_bundle", "this bundle is not published in this registry (or not visible "
                                                   "to you), so its publisher and signature cannot be checked")
        policy = (await self.current(org)).policy
        return release, decide(policy, release["package"], release["version"], facts_of(release))

    async def _release(self, principal: Principal, sha256: str) -> dict | None:
        clause, params = visible_clause(principal)
        row = await self.db.fetch_one(
            "SELECT p.namespace, p.name, p.verified, p.tier, p.endpoint_url, v.version, v.signature_status"
            f" FROM versions v JOIN packages p ON p.id = v.package_id WHERE v.sha256 = ? AND v.state = 'published'"
            f" AND {clause} ORDER BY v.id LIMIT 1", (sha256, *params))
        if row is None:
            return None
        return {"package": f"{row['namespace']}/{row['name']}", "version": row["version"],
                "publisher": row["namespace"], "signature": row["signature_status"],
                "verified_publisher": bool(row["verified"]), "kind": "remote" if row["endpoint_url"] else "local"}

    # ---- device tokens ---------------------------------------------------------------------------------

    async def create_device_token(self, principal: Principal, slug: str, name: str,
                                  ip: str | None = None) -> tuple[str, DeviceTokenInfo]:
        org = await self.managed_org(principal, slug)
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInput("a device token needs a name of 1-100 characters", details={"field": "name"})
        secret = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.db.write() as tx:
            token_id = await tx.insert("device_tokens", {
                "org_id": org.id, "name": name, "token_hash": secret_hash(secret), "prefix": secret[:12],
                "created_by": principal.id, "created_at": time.time()})
            await audit.record(tx, _actor(principal, ip), "device_token.create", org_id=org.id,
                               target=str(token_id), details={"name": name})
        return secret, (await self.device_tokens(org, token_id))[0]

    async def device_tokens(self, org: Org, token_id: int | None = None) -> list[DeviceTokenInfo]:
        rows = await self.db.fetch_all(
            "SELECT t.*, u.username FROM device_tokens t LEFT JOIN users u ON u.id = t.created_by"
            " WHERE t.org_id = ? AND (? IS NULL OR t.id = ?) ORDER BY t.id DESC", (org.id, token_id, token_id))
        return [DeviceTokenInfo(r["id"], r["name"], r["prefix"], r["username"], r["created_at"], r["last_used_at"],
                                r["revoked_at"] is not None) for r in rows]

    async def revoke_device_token(self, principal: Principal, slug: str, token_id: int, ip: str | None = None) -> None:
        org = await self.managed_org(principal, slug)
        async with self.db.write() as tx:
            changed = await tx.changes("UPDATE device_tokens SET revoked_at = ? WHERE id = ? AND org_id = ?"
                                       " AND revoked_at IS NULL", (time.time(), token_id, org.id))
            if not changed:
                raise NotFound("no such active device token")
            await audit.record(tx, _actor(principal, ip), "device_token.revoke", org_id=org.id, target=str(token_id))

    async def org_for_device(self, secret: str | None, slug: str) -> Org:
        """The org a device token reads, which must be `slug`: any other answer is a plain 401, so a token
        tells nothing about other orgs."""
        org = await self.device_org(secret)
        if org.slug != slug:
            raise Unauthenticated("unknown device token for this organization", code="invalid_device_token")
        return org

    async def device_org(self, secret: str | None) -> Org:
        """The org whose device token this is (401 for a malformed, unknown or revoked one)."""
        if not secret or not secret.startswith(DEVICE_TOKEN_PREFIX) or len(secret) > 200:
            raise Unauthenticated("send this organization's device token: Authorization: Bearer mcpd_…",
                                  code="invalid_device_token")
        row = await self.db.fetch_one(
            "SELECT t.id, t.revoked_at, t.last_used_at, o.* FROM device_tokens t JOIN orgs o ON o.id = t.org_id"
            " WHERE t.token_hash = ?", (secret_hash(secret),))
        if row is None:
            raise Unauthenticated("unknown device token for this organization", code="invalid_device_token")
        if row["revoked_at"] is not None:
            raise Unauthenticated("this device token was revoked", code="device_token_revoked")
        now = time.time()
        if row["last_used_at"] is None or now - row["last_used_at"] > 60:  # one write a minute, not per request
            async with self.db.write() as tx:
                await tx.execute("UPDATE device_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
        return Org(row["id"], row["slug"], row["name"], row["created_at"])


def device_principal(org: Org) -> Principal:
    """A managed device as a reader of the catalog: what any member of its org may see, no more (no personal
    namespace, no role that publishes or manages); the front door gives it to read-only routes only."""
    user = User(id=0, email="", username=f"device@{org.slug}", display_name=f"{org.name} (managed device)",
                is_admin=False, created_at=0.0)
    return Principal(user, frozenset({"read"}), {org.id: "member"}, {org.id: org.slug}, token_org_id=org.id,
                     via="device")


def open_policy_service(db: Database, accounts: AccountService, keys_dir: Path, registry: str,
                        name_prefix: str, brand: str = "mcpstore", operator: str = "") -> PolicyService:
    """The service with its signing key, `keys_dir/policy.key` (created 0600 on first use, like the others);
    `brand` and `operator` ([branding]) name the registry in the rendered profiles."""
    key = load_or_create_signing_key(Path(keys_dir) / "policy.key")
    return PolicyService(db, accounts, Artifacts(key, registry, name_prefix, brand, operator))


def facts_of(release: dict) -> PackageFacts:
    return PackageFacts(publisher=release["publisher"], signature=release["signature"],
                        verified_publisher=release["verified_publisher"], kind=release["kind"])
