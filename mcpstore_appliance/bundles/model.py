"""Plain values going into and coming out of bundle inspection."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
SignatureStatus = Literal["unsigned", "signed", "self-signed", "invalid"]
Outcome = Literal["published", "quarantined", "rejected"]


@dataclass(frozen=True)
class BundleLimits:
    """Caps applied while reading a bundle. Every count is over the bundle AND the archives nested in it."""

    max_entries: int = 10_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    max_compression_ratio: int = 200
    max_manifest_bytes: int = 1024 * 1024
    max_nesting: int = 2  # archives inside archives; the bundle itself is depth 0
    # The ratio cap only applies to entries that inflate beyond this size: small, very repetitive text files
    # (a 20 KB file of spaces compresses 500:1) are harmless and common, bombs need size to hurt.
    ratio_min_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, publish: Any) -> "BundleLimits":
        """Build from `config.PublishSettings`."""
        return cls(
            max_entries=publish.max_entries,
            max_uncompressed_bytes=publish.max_uncompressed_bytes,
            max_compression_ratio=publish.max_compression_ratio,
            max_manifest_bytes=publish.max_manifest_bytes,
            max_nesting=publish.max_nesting,
        )


@dataclass(frozen=True)
class SignatureTrust:
    """What makes a valid signature count as `signed` rather than `self-signed`."""

    ca_bundle_pem: bytes | None = None
    pinned_fingerprints: frozenset[str] = frozenset()  # SHA-256 of the certificate DER, hex (colons allowed)
    require_signature: bool = False

    @classmethod
    def from_settings(cls, publish: Any) -> "SignatureTrust":
        """Build from `config.PublishSettings`; reads `trusted_ca_file` if one is configured."""
        pem = Path(publish.trusted_ca_file).read_bytes() if publish.trusted_ca_file else None
        return cls(
            ca_bundle_pem=pem,
            pinned_fingerprints=frozenset(publish.pinned_cert_fingerprints),
            require_signature=publish.require_signature,
        )


@dataclass(frozen=True)
class Finding:
    check_id: str  # e.g. "secrets.aws_access_key", "deps.node_missing", "scanner_error.secrets"
    severity: Severity
    file: str  # path inside the bundle ("" for the bundle as a whole)
    message: str


@dataclass(frozen=True)
class Author:
    name: str
    email: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None = None


@dataclass(frozen=True)
class Prompt:
    name: str
    description: str | None = None
    arguments: tuple[str, ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class UserConfigField:
    key: str
    type: str
    title: str
    description: str
    required: bool = False
    sensitive: bool = False
    multiple: bool = False
    default: Any = None  # str | int | float | bool | tuple[str, ...] | None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Links:
    homepage: str | None = None
    documentation: str | None = None
    support: str | None = None
    repository: str | None = None


@dataclass(frozen=True)
class PackageMetadata:
    name: str
    version: str
    display_name: str
    description: str
    long_description: str | None
    author: Author
    manifest_version: str  # the declared version, from manifest_version or the legacy dxt_version
    server_type: str  # node | python | binary | uv
    entry_point: str
    tools: tuple[Tool, ...] = ()
    tools_generated: bool = False
    prompts: tuple[Prompt, ...] = ()
    prompts_generated: bool = False
    keywords: tuple[str, ...] = ()
    license: str | None = None
    platforms: tuple[str, ...] = ()  # compatibility.platforms; empty = not declared
    # The server's runtime plus compatibility.runtimes, e.g. {"node": ">=18"}; "" means any version.
    runtimes: dict[str, str] = field(default_factory=dict)
    claude_desktop: str | None = None  # compatibility.claude_desktop range
    user_config: tuple[UserConfigField, ...] = ()
    links: Links = Links()
    privacy_policies: tuple[str, ...] = ()
    icon: str | None = None
    icons: tuple[dict, ...] = ()
    screenshots: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignatureInfo:
    status: SignatureStatus
    subject: str | None = None  # RFC 4514 string of the signer certificate's subject
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    fingerprint_sha256: str | None = None  # lowercase hex of the signer certificate's DER
    # Which digest the signature covers: "prefix" (mcpb 2.1.2: the ZIP bytes as stored) or "comment-zeroed"
    # (upstream main: the ZIP with its EOCD comment_length set back to 0). None when not verified.
    digest_variant: str | None = None
    signing_time: datetime | None = None
    reason: str = ""  # why the status is what it is, e.g. "pinned certificate", "issuer not trusted"


@dataclass(frozen=True)
class BundleReport:
    manifest: dict
    metadata: PackageMetadata
    signature: SignatureInfo
    findings: tuple[Finding, ...]
    outcome: Outcome
    unsigned_sha256: str
    icon_png: bytes | None = None
    scanner_errors: tuple[str, ...] = ()  # names of scanners that crashed (=> quarantined, never published)
    file_count: int = 0
    uncompressed_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO strings, icon bytes left out)."""
        data = dataclasses.asdict(self)
        data.pop("icon_png")
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
