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

from .archive import FileInfo
from .inspector import decide_outcome, inspect_bundle
from .manifest import DirectoryFiles, ManifestCheck, check_manifest, decode_manifest, extract_metadata
from .model import (
    Author,
    BundleLimits,
    BundleReport,
    Finding,
    Links,
    PackageMetadata,
    Prompt,
    SignatureInfo,
    SignatureTrust,
    Tool,
    UserConfigField,
)
from .scans import SCANNERS, BundleView, ScanRun, bundle_scanner, content_scanner

__all__ = [
    "Author", "BundleLimits", "BundleReport", "BundleView", "DirectoryFiles", "FileInfo", "Finding", "Links",
    "ManifestCheck", "PackageMetadata", "Prompt", "SCANNERS", "ScanRun", "SignatureInfo", "SignatureTrust",
    "Tool", "UserConfigField", "bundle_scanner", "check_manifest", "content_scanner", "decide_outcome",
    "decode_manifest", "extract_metadata", "inspect_bundle",
]
