"""manifest.json: decoding, strict validation for manifest_version 0.1-0.4 (and dxt_version), and the catalog
metadata extracted from it.

Validation is the official JSON Schema with zod's behaviour put back (manifest_schema.py), then the registry's
rules on top (manifest_rules.py). The version is resolved like the reference: `manifest_version` if it is a
known version string, else `dxt_version`; otherwise "Unrecognized or unsupported manifest version" (this also
covers the zod refine "one of the two must be present").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Unprocessable
from .manifest_rules import FileLookup, registry_errors, warnings_for
from .manifest_schema import MAX_ERRORS, schema_errors
from .manifest_text import decode_manifest, text_errors
from .model import Author, Links, PackageMetadata, Prompt, Tool, UserConfigField

VERSIONS = ("0.1", "0.2", "0.3", "0.4")


@dataclass(frozen=True)
class ManifestCheck:
    version: str | None  # resolved manifest version
    schema_errors: tuple[dict, ...]  # what `mcpb validate` also rejects
    registry_errors: tuple[dict, ...]  # our rules on top
    warnings: tuple[dict, ...] = ()

    @property
    def errors(self) -> tuple[dict, ...]:
        return self.schema_errors + self.registry_errors

    @property
    def ok(self) -> bool:
        return not self.errors


def resolve_version(data: Any) -> str | None:
    """The reference's rule: manifest_version if it is a known string, else dxt_version if it is."""
    if not isinstance(data, dict):
        return None
    for key in ("manifest_version", "dxt_version"):
        value = data.get(key)
        if isinstance(value, str) and value in VERSIONS:
            return value
    return None


def check_manifest(data: Any, files: FileLookup | None) -> ManifestCheck:
    """Validate parsed manifest JSON. `files=None` skips the rules that need the bundle's files."""
    version = resolve_version(data)
    if version is None:
        problem = {"path": "$.manifest_version", "message": "Unrecognized or unsupported manifest version "
                   f"(expected manifest_version one of {', '.join(VERSIONS)})"}
        return ManifestCheck(None, (problem,), ())
    found = schema_errors(data, version)
    registry = text_errors(data) + (registry_errors(data, files) if files is not None else [])
    # One problem per spot: a registry rule about a value the schema already rejected adds only noise.
    bad = {e["path"] for e in found}
    registry = [e for e in registry if not any(e["path"] == p or e["path"].startswith((p + ".", p + "["))
                                               for p in bad)]
    return ManifestCheck(version, tuple(found), tuple(registry[:MAX_ERRORS]), tuple(warnings_for(data)))


def validate_manifest_bytes(raw: bytes, files: FileLookup | None, max_bytes: int) -> tuple[dict, ManifestCheck]:
    """Decode and validate; raises Unprocessable(code="manifest_invalid") listing every problem."""
    data = decode_manifest(raw, max_bytes)
    result = check_manifest(data, files)
    if not result.ok:
        count = len(result.errors)
        raise Unprocessable(f"manifest.json is invalid ({count} problem{'s' if count > 1 else ''})",
                            code="manifest_invalid", details=list(result.errors))
    return data, result


def extract_metadata(data: dict, version: str) -> PackageMetadata:
    """Catalog fields from a manifest that passed `check_manifest`."""
    author = data["author"]
    server = data["server"]
    compat = data.get("compatibility") or {}
    runtimes = {name: str(value) for name, value in (compat.get("runtimes") or {}).items()}
    runtime_of = {"node": "node", "python": "python", "uv": "python", "binary": "binary"}[server["type"]]
    runtimes.setdefault(runtime_of, "")
    if server["type"] == "uv":
        runtimes["uv"] = ""
    repository = data.get("repository") or {}
    return PackageMetadata(
        name=data["name"],
        version=data["version"],
        display_name=data.get("display_name") or data["name"],
        description=data["description"],
        long_description=data.get("long_description"),
        author=Author(author["name"], author.get("email"), author.get("url")),
        manifest_version=version,
        server_type=server["type"],
        entry_point=server["entry_point"],
        tools=tuple(Tool(t["name"], t.get("description")) for t in data.get("tools") or []),
        tools_generated=bool(data.get("tools_generated")),
        prompts=tuple(Prompt(p["name"], p.get("description"), tuple(p.get("arguments") or ()), p.get("text"))
                      for p in data.get("prompts") or []),
        prompts_generated=bool(data.get("prompts_generated")),
        keywords=tuple(data.get("keywords") or ()),
        license=data.get("license"),
        platforms=tuple(compat.get("platforms") or ()),
        runtimes=runtimes,
        claude_desktop=compat.get("claude_desktop"),
        user_config=tuple(_config_field(key, option) for key, option in (data.get("user_config") or {}).items()),
        links=Links(data.get("homepage"), data.get("documentation"), data.get("support"), repository.get("url")),
        privacy_policies=tuple(data.get("privacy_policies") or ()),
        icon=data.get("icon"),
        icons=tuple(dict(item) for item in data.get("icons") or ()),
        screenshots=tuple(data.get("screenshots") or ()),
    )


def _config_field(key: str, option: dict) -> UserConfigField:
    default = option.get("default")
    return UserConfigField(
        key=key,
        type=option["type"],
        title=option["title"],
        description=option["description"],
        required=bool(option.get("required")),
        sensitive=bool(option.get("sensitive")),
        multiple=bool(option.get("multiple")),
        default=tuple(default) if isinstance(default, list) else default,
        min=option.get("min"),
        max=option.get("max"),
    )
