"""Reading and judging one .mcpb bundle: safe ZIP reading, manifest validation, CMS signature check, scans.

The publish pipeline calls `inspect_bundle(path, limits, trust)` (synchronous; run it in a thread). It either
raises `errors.Unprocessable` (code `bundle_*`, `manifest_*`, `signature_invalid` or `signature_required`,
details = [{path, message}, ...]) or returns a `BundleReport` whose `outcome` the pipeline obeys.

Policy
------
Rejected outright (Unprocessable, nothing to store): anything structurally unsafe or unreadable in the ZIP
(see archive.py), a limit exceeded (entries, inflated bytes, compression ratio, nesting), a missing, oversized,
non-UTF-8, BOM-prefixed or invalid manifest (see manifest.py), an invalid signature, or no signature when
`require_signature` is on (self-signed bundles are accepted then: the switch asks for integrity; trust is
shown by the `signed` / `self-signed` status).

Otherwise the findings decide (`decide_outcome`):
- any `critical` finding => `rejected`. Critical = a live credential in the publisher's own files (private key,
  AWS secret key, Stripe live key, GitHub/Slack/OpenAI/Anthropic/npm/PyPI tokens). Publishing it would leak it
  to everyone, so we refuse and say where it is.
- any `high` finding, or a scanner that crashed => `quarantined` (an admin releases or rejects it). High = a
  bundle that probably will not run (dependencies not bundled, binaries for the wrong platform in a binary
  server), an .env/credential file, a key-looking secret inside vendored code, a scanner error.
- `medium` / `low` / `info` => `published`, with the findings shown to publisher and users (nested archives,
  install hooks in dependencies, binaries for undeclared platforms, test keys...).
"""

# The inspector pulls in jsonschema, cryptography and asn1crypto, which are large and slow to import. A registry
# that only serves pays for them on its first publish, not at start-up: names load on first access (PEP 562).
_HOMES = {
    "FileInfo": "archive_walk",
    "decide_outcome": "inspector", "inspect_bundle": "inspector",
    "DirectoryFiles": "manifest_rules", "ManifestCheck": "manifest", "check_manifest": "manifest",
    "decode_manifest": "manifest", "extract_metadata": "manifest",
    "Author": "model", "BundleLimits": "model", "BundleReport": "model", "Finding": "model", "Links": "model",
    "PackageMetadata": "model", "Prompt": "model", "SignatureInfo": "model", "SignatureTrust": "model",
    "Tool": "model", "UserConfigField": "model",
    "SCANNERS": "scans", "BundleView": "scans", "ScanRun": "scans", "bundle_scanner": "scans",
    "content_scanner": "scans",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
