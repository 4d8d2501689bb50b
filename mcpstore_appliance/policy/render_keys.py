"""The managed keys every MDM format carries, as strings: Claude Desktop reads only strings from its managed
sources ("true"/"false", arrays and objects as JSON text), and a .reg or plist with one value type per key
is the simplest thing for IT to read and diff.

Two sets:
- Claude Desktop's own keys (enterprise reference §1), under its domain `com.anthropic.claudefordesktop` /
  `SOFTWARE\\Policies\\Claude`; only the new names (the old isDxt* names are ignored after 2026-10-07).
- This appliance's policy (the allowlist and the rest Claude Desktop has no key for), under our own domain /
  `SOFTWARE\\Policies\\mcpstore\\<org>`: every field of the Policy under its own name, plus where it came from.
  `policy_from_keys` reads them back, so tests (and device agents) can check that a format says what the JSON says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .model import Policy

CLAUDE_DOMAIN = "com.anthropic.claudefordesktop"
CLAUDE_REGISTRY_KEY = r"SOFTWARE\Policies\Claude"
META_KEYS = ("org", "policy_version", "registry", "policy_url")


@dataclass(frozen=True)
class RenderContext:
    org: str
    version: int
    registry: str  # the appliance's public base URL
    name_prefix: str  # MCP Registry server names: "<prefix>.<namespace>/<name>"
    brand: str = "mcpstore"  # the registry's name and its operator ([branding]), shown to IT in the profiles
    operator: str = ""

    @property
    def policy_url(self) -> str:
        return f"{self.registry}/policy/{self.org}.json"

    @property
    def domain(self) -> str:
        """Our preference domain: the registry's reverse-DNS prefix, then mcpstore.policy."""
        return f"{self.name_prefix}.mcpstore.policy"

    @property
    def registry_key(self) -> str:
        return rf"SOFTWARE\Policies\mcpstore\{self.org}"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def claude_desktop_keys(policy: Policy) -> dict[str, str]:
    """Claude Desktop's managed keys for this policy. An allowlist keeps users out of Anthropic's own directory,
    which this appliance cannot filter; the signature rule maps to the app's own signature check."""
    return {
        "isDesktopExtensionEnabled": "true",
        "isDesktopExtensionSignatureRequired": _text(policy.require_signature),
        "isDesktopExtensionDirectoryEnabled": _text(not policy.allow_only_listed),
        "isLocalDevMcpEnabled": _text(policy.allow_local_dev_servers),
    }


def policy_keys(policy: Policy, context: RenderContext) -> dict[str, str]:
    meta = {"org": context.org, "policy_version": context.version, "registry": context.registry,
            "policy_url": context.policy_url}
    return {key: _text(value) for key, value in {**meta, **policy.document()}.items()}


def policy_from_keys(keys: dict[str, str]) -> Policy:
    """The Policy a set of our keys states (the inverse of policy_keys)."""
    fields = Policy.model_fields
    values = {}
    for key, text in keys.items():
        if key in META_KEYS:
            continue
        annotation = fields[key].annotation
        values[key] = {"true": True, "false": False}[text] if annotation is bool else json.loads(text)
    return Policy.model_validate(values)
