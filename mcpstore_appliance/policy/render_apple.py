"""macOS configuration profile (.mobileconfig, an XML plist) for Jamf, Intune, Kandji and friends.

Two domain-typed payloads (enterprise reference §4): `com.anthropic.claudefordesktop` with Claude Desktop's
managed keys, and this appliance's domain with the allowlist and the rest of the policy. All values are
strings, as Claude Desktop reads them. PayloadIdentifier is stable per org; PayloadUUID changes with every
policy version (and only then: the same version renders the same bytes, so the ETag holds).
The profile is not CMS-signed here; MDMs sign or re-sign what they push.
"""

from __future__ import annotations

import plistlib
import uuid

from .model import Policy
from .render_keys import CLAUDE_DOMAIN, RenderContext, claude_desktop_keys, policy_keys

_UUID_NAMESPACE = uuid.UUID("6f1c52d4-2f55-4d1e-9a55-3c0d3b1f0a11")  # ours; any fixed value would do


def _uuid(context: RenderContext, sha256: str, part: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{context.registry}|{context.org}|{context.version}|{sha256}|{part}")).upper()


def _payload(domain: str, identifier: str, payload_uuid: str, keys: dict[str, str]) -> dict:
    return {"PayloadType": domain, "PayloadIdentifier": identifier, "PayloadUUID": payload_uuid,
            "PayloadVersion": 1, "PayloadDisplayName": domain, **keys}


def mobileconfig(policy: Policy, context: RenderContext, sha256: str) -> bytes:
    base = f"{context.domain}.{context.org}"
    profile = {
        "PayloadType": "Configuration",
        "PayloadIdentifier": base,
        "PayloadUUID": _uuid(context, sha256, "profile"),
        "PayloadVersion": 1,
        "PayloadDisplayName": f"{context.brand}: MCP extensions policy for {context.org} (version {context.version})",
        "PayloadOrganization": context.operator or context.org,
        "PayloadDescription": f"Group policy of {context.org} from {context.brand} at {context.registry}",
        "PayloadScope": "System",
        "PayloadRemovalDisallowed": True,
        "PayloadContent": [
            _payload(CLAUDE_DOMAIN, f"{base}.claude", _uuid(context, sha256, "claude"), claude_desktop_keys(policy)),
            _payload(context.domain, f"{base}.policy", _uuid(context, sha256, "policy"), policy_keys(policy, context)),
        ],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
