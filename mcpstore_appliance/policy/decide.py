"""The one decision: may an org's member or device install (download, update to, call) this package version?

Rules, first refusal wins, in the order of how hard they are: a blocked publisher, a blocked package, the
allowlist and its range, the minimum version, the signature, the verified publisher, the kind of server. A
refusal names the rule and the value that refused, so a user who hits one knows what to ask IT for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..catalog.semver import parse as parse_version
from .model import Policy
from .ranges import satisfies

ServerKind = Literal["local", "hosted", "remote"]
SignatureStatus = Literal["unsigned", "signed", "self-signed", "invalid"]


@dataclass(frozen=True)
class PackageFacts:
    """What the registry knows about the package's publisher and release."""

    publisher: str  # the namespace that published it
    signature: SignatureStatus = "unsigned"
    verified_publisher: bool = False
    kind: ServerKind = "local"


@dataclass(frozen=True)
class Allowed:
    allowed = True
    auto_install: bool = False


@dataclass(frozen=True)
class Refused:
    rule: str  # a stable name, e.g. "blocked_publisher"
    reason: str  # a sentence for people
    allowed = False


Decision = Allowed | Refused


def decide(policy: Policy, package: str, version: str, facts: PackageFacts) -> Decision:
    for check in (_blocked, _listed, _minimum, _signature, _verified, _kind):
        refused = check(policy, package, version, facts)
        if refused is not None:
            return refused
    return Allowed(auto_install=package in policy.auto_install)


def _blocked(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    if facts.publisher in policy.blocked_publishers:
        return Refused("blocked_publisher", f"the publisher {facts.publisher!r} is blocked by your organization's policy")
    if package in policy.blocked_packages:
        return Refused("blocked_package", f"{package} is blocked by your organization's policy")
    return None


def _listed(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    if package in policy.allowed:
        wanted = policy.allowed[package]
        if not satisfies(version, wanted):
            return Refused("version_not_allowed", f"{package} {version} is outside the allowed versions {wanted!r}")
        return None
    if policy.allow_only_listed:
        return Refused("not_allowlisted", f"{package} is not on your organization's list of allowed packages")
    return None


def _minimum(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    minimum = policy.minimum_versions.get(package)
    if minimum is not None and parse_version(version) < parse_version(minimum):
        return Refused("below_minimum_version", f"{package} {version} is older than the minimum version {minimum}")
    return None


def _signature(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    if policy.require_signature and facts.signature != "signed":
        return Refused("signature_required", f"{package} {version} is {facts.signature}; your organization "
                                             "requires bundles signed by a trusted publisher")
    return None


def _verified(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    if policy.require_verified_publisher and not facts.verified_publisher:
        return Refused("verified_publisher_required",
                       f"the publisher {facts.publisher!r} is not verified; your organization requires verified publishers")
    return None


def _kind(policy: Policy, package: str, version: str, facts: PackageFacts) -> Refused | None:
    if facts.kind == "hosted" and not policy.allow_hosted_servers:
        return Refused("hosted_servers_not_allowed", "your organization does not allow servers hosted by this registry")
    if facts.kind == "remote" and not policy.allow_remote_servers:
        return Refused("remote_servers_not_allowed", "your organization does not allow remote servers")
    return None
