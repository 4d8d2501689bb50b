"""What a draft policy would do: for each of the org's packages (and every package the draft names), whether
its latest release is allowed and why. The editor page shows it before an admin saves."""

from __future__ import annotations

from dataclasses import dataclass

from ..accounts.models import Org, Principal
from ..catalog.visibility import visible_clause
from ..db import Database
from .decide import PackageFacts, Refused, decide
from .enforce import server_kind
from .model import Policy

MAX_PREVIEW = 500


@dataclass(frozen=True)
class PreviewRow:
    package: str
    version: str
    allowed: bool
    rule: str | None
    reason: str | None
    auto_install: bool


def named_packages(policy: Policy) -> list[str]:
    return sorted({*policy.allowed, *policy.blocked_packages, *policy.auto_install, *policy.minimum_versions})


async def preview(db: Database, principal: Principal, org: Org, policy: Policy) -> list[PreviewRow]:
    clause, params = visible_clause(principal)
    named = named_packages(policy)
    placeholders = ", ".join("?" * len(named)) or "NULL"
    rows = await db.fetch_all(
        "SELECT p.namespace, p.name, p.verified, p.tier, p.endpoint_url, v.version, v.signature_status"
        " FROM packages p JOIN versions v ON v.id = p.latest_version_id"
        f" WHERE v.state = 'published' AND (p.org_id = ? OR p.namespace || '/' || p.name IN ({placeholders}))"
        f" AND {clause} ORDER BY p.namespace, p.name LIMIT ?", (org.id, *named, *params, MAX_PREVIEW))
    result = []
    for row in rows:
        package = f"{row['namespace']}/{row['name']}"
        facts = PackageFacts(row["namespace"], row["signature_status"], bool(row["verified"]),
                             server_kind(row["tier"], row["endpoint_url"]))
        decision = decide(policy, package, row["version"], facts)
        refused = isinstance(decision, Refused)
        result.append(PreviewRow(package, row["version"], not refused, decision.rule if refused else None,
                                 decision.reason if refused else None,
                                 getattr(decision, "auto_install", False)))
    return result
