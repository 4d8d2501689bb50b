"""Content scans: a registry of small functions. Adding a scan = writing one decorated function in a module
of this package (a new module is imported below, which registers its scanners).

Two kinds:
- `@content_scanner(name)`: `fn(path, window) -> findings`, called while the bundle is read, on consecutive
  overlapping windows (~1 MiB) of every file (and of every file inside nested archives). No second pass.
- `@bundle_scanner(name)`: `fn(view) -> findings`, called once afterwards with a `BundleView` (manifest, file
  list with sizes, modes and first bytes, and bounded re-reads of small files).

A scanner that raises is recorded by name; the bundle is then quarantined, never published (fail closed), with a
`scanner_error.<name>` finding. "No findings" and "scanner crashed" are therefore always distinguishable.
"""

from __future__ import annotations

from .registry import SCANNERS, Scanner, bundle_scanner, content_scanner
from .run import BundleView, ScanRun

# Imported for their registrations, in the order the scanners run.
from . import secrets, node_deps, python_deps, binaries, install_hooks  # noqa: E402,F401  isort: skip

__all__ = ["SCANNERS", "BundleView", "ScanRun", "Scanner", "bundle_scanner", "content_scanner"]
