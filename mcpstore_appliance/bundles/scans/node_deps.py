"""Node servers: every declared dependency (of the bundle and of each bundled package) and every package the
entry point imports is bundled in a node_modules folder it resolves from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from ..model import Finding
from .registry import bundle_scanner
from .run import SMALL_FILE, BundleView


NODE_BUILTINS = frozenset("""assert async_hooks buffer child_process cluster console constants crypto dgram
diagnostics_channel dns domain events fs http http2 https inspector module net os path perf_hooks process punycode
querystring readline repl stream string_decoder sys timers tls trace_events tty url util v8 vm wasi worker_threads
zlib test sqlite sea""".split())
PACKAGE_ROOT = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/]+/package\.json$")
# Static imports only, anchored to statement starts, so import-looking text inside strings and comments of
# bundled code does not count: `import x from 'm'`, `export * from 'm'`, `} from 'm'` (end of a multi-line
# import), `import 'm'`, and `require('m')`.
IMPORT_SPEC = re.compile(
    r"""^\s*(?:(?:import|export)\b[^'"\n;]*?\bfrom|\}\s*from|import)\s*(['"])([^'"\n]+)\1"""
    r"""|\brequire\s*\(\s*(['"])([^'"\n]+)\3\s*\)""", re.MULTILINE)


def parent_dir(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _package_name(spec: str) -> str | None:
    if spec.startswith((".", "/", "node:", "data:", "http:", "https:", "#")):
        return None
    parts = spec.split("/")
    name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
    return None if name in NODE_BUILTINS else name


def _resolves(view: BundleView, from_dir: str, name: str) -> bool:
    """Node's lookup: <dir>/node_modules/<name> for from_dir and every ancestor."""
    parts = from_dir.split("/") if from_dir else []
    for i in range(len(parts), -1, -1):
        base = "/".join(parts[:i])
        candidate = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
        if view.is_dir(candidate) or view.is_file(candidate + ".js"):
            return True
    return False


def _deps(package: Any) -> list[str]:
    if not isinstance(package, dict) or not isinstance(package.get("dependencies"), dict):
        return []
    optional = package.get("optionalDependencies")
    optional = set(optional) if isinstance(optional, dict) else set()
    return [name for name in package["dependencies"] if name not in optional]


@bundle_scanner("deps.node")
def node_dependencies(view: BundleView) -> Iterator[Finding]:
    if view.server.get("type") != "node":
        return
    for path in sorted(view.files):
        if PurePosixPath(path).name != "package.json" or "node_modules/" in path:
            continue
        base = parent_dir(path)
        for name in _deps(view.read_json(path)):
            if not _resolves(view, base, name):
                yield Finding("deps.node_missing", "high", path,
                              f"dependency {name} is declared but not bundled in node_modules")
    for path in sorted(p for p in view.files if PACKAGE_ROOT.search(p)):
        base = parent_dir(path)
        for name in _deps(view.read_json(path)):
            if not _resolves(view, base, name):
                owner = base.rsplit("node_modules/", 1)[-1]
                yield Finding("deps.node_missing", "high", path,
                              f"dependency {name} of bundled package {owner} is not bundled")
    yield from _entry_imports(view)


def _entry_imports(view: BundleView) -> Iterator[Finding]:
    entry = view.entry_point
    info = view.files.get(entry or "")
    if entry is None or info is None or info.size > SMALL_FILE:
        return
    source = view.read(entry).decode("utf-8", "replace")
    base = parent_dir(entry)
    specs = [m.group(2) or m.group(4) for m in IMPORT_SPEC.finditer(source)]
    missing = {name for spec in specs if (name := _package_name(spec)) and not _resolves(view, base, name)}
    for name in sorted(missing):
        yield Finding("deps.node_missing", "high", entry, f"the entry point imports {name}, which is not bundled")
