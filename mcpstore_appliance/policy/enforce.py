"""The appliance enforcing an org's policy on its own members: downloads, update checks, installs through the
gateway and /v0.1 listings of a caller acting for an org (web/org_context.py says when one does).

Each check reads the release's facts (publisher, signature, verified publisher, kind of server) and asks
`decide`; a refusal is a 403 `policy_refused` naming the org, the release, the rule and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..accounts.models import Org
from ..db import Database
from ..errors import Forbidden
from .decide import Allowed, Decision, PackageFacts, Refused, ServerKind, decide
from .model import Policy
from .service import PolicyService

FACTS_SQL = (
    "SELECT p.namespace, p.name, p.verified, p.tier, p.endpoint_url, v.version, v.signature_status"
    " FROM versions v JOIN packages p ON p.id = v.package_id WHERE v.id = ?")


class PolicyRefused(Forbidden):
    code = "policy_refused"


def refusal(org: Org, package: str, version: str, refused: Refused) -> PolicyRefused:
    return PolicyRefused(f"{refused.reason} (policy of {org.slug})",
                         details={"org": org.slug, "package": package, "version": version, "rule": refused.rule,
                                  "reason": refused.reason})


def server_kind(tier: str | None, endpoint_url: str | None) -> ServerKind:
    """How a release is run when installed: a pro package with an endpoint is a remote server, else local."""
    return "remote" if tier == "pro" and endpoint_url else "local"


class Enforcer:
    def __init__(self, db: Database, policies: PolicyService):
        self.db = db
        self.policies = policies

    async def policy(self, org: Org) -> Policy:
        return (await self.policies.current(org)).policy

    async def check_version(self, org: Org, version_id: int, kind: ServerKind | None = None) -> None:
        """Raise PolicyRefused unless the org's policy allows this version (`kind`: how it is used, e.g.
        "hosted" through the gateway; by default how the package is published)."""
        row = await self.db.fetch_one(FACTS_SQL, (version_id,))
        if row is None:
            return  # the caller found the version a moment ago; nothing to decide about a vanished one
        package = f"{row['namespace']}/{row['name']}"
        facts = PackageFacts(publisher=row["namespace"], signature=row["signature_status"],
                             verified_publisher=bool(row["verified"]),
                             kind=kind or server_kind(row["tier"], row["endpoint_url"]))
        decision = decide(await self.policy(org), package, row["version"], facts)
        if isinstance(decision, Refused):
            raise refusal(org, package, row["version"], decision)

    async def version_filter(self, org: Org, namespace: str, name: str) -> VersionFilter:
        """A synchronous judge of one package's versions (for the update check, which reads them itself)."""
        row = await self.db.fetch_one("SELECT verified, tier, endpoint_url FROM packages WHERE namespace = ?"
                                      " AND name = ?", (namespace, name))
        return VersionFilter(org, await self.policy(org), namespace, name, row)

    async def registry_judge(self, org: Org) -> Callable[[Mapping[str, Any]], Decision]:
        """A judge of /v0.1 entries (server.json plus `_meta`), from what the entry itself says."""
        policy = await self.policy(org)

        def judge(entry: Mapping[str, Any]) -> Decision:
            extras = next((v for k, v in entry["_meta"].items() if k.endswith("/catalog")), {})
            package = extras.get("id", "")
            facts = PackageFacts(publisher=package.partition("/")[0], signature=extras.get("signature", "unsigned"),
                                 verified_publisher=bool(extras.get("verified")),
                                 kind="remote" if extras.get("tier") == "pro" and entry["server"].get("remotes")
                                 else "local")
            return decide(policy, package, entry["server"]["version"], facts)

        return judge


class VersionFilter:
    """Decides versions of one package; remembers the newest refusal, to report when nothing is allowed."""

    def __init__(self, org: Org, policy: Policy, namespace: str, name: str, package: Mapping[str, Any] | None):
        self.org = org
        self.policy = policy
        self.package = f"{namespace}/{name}"
        self.publisher = namespace
        self.verified = bool(package and package["verified"])
        self.kind = server_kind(package["tier"], package["endpoint_url"]) if package else "local"
        self.first_refusal: PolicyRefused | None = None

    def __call__(self, row: Mapping[str, Any]) -> bool:
        facts = PackageFacts(self.publisher, row["signature_status"], self.verified, self.kind)
        decision = decide(self.policy, self.package, row["version"], facts)
        if isinstance(decision, Allowed):
            return True
        if self.first_refusal is None:
            self.first_refusal = refusal(self.org, self.package, row["version"], decision)
        return False
