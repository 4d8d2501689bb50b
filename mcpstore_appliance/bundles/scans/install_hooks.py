"""npm install hooks: hosts never run them, so whatever they would build must already be in the bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

from ..model import Finding
from .node_deps import PACKAGE_ROOT
from .registry import bundle_scanner
from .run import BundleView


HOOKS = ("preinstall", "install", "postinstall")


@bundle_scanner("install_hooks")
def install_hooks(view: BundleView) -> Iterator[Finding]:
    for path in sorted(view.files):
        if PurePosixPath(path).name != "package.json":
            continue
        is_dependency = bool(PACKAGE_ROOT.search(path))
        if "node_modules/" in path and not is_dependency:
            continue  # package.json files nested inside a package are not package roots
        package = view.read_json(path)
        scripts = package.get("scripts") if isinstance(package, dict) else None
        if not isinstance(scripts, dict):
            continue
        for hook in HOOKS:
            if isinstance(scripts.get(hook), str):
                who = "bundled dependency" if is_dependency else "the bundle's package"
                yield Finding("install_hooks.npm", "low" if is_dependency else "medium", path,
                              f"{who} has a {hook} script: {scripts[hook][:120]!r} (hosts never run it; whatever "
                              "it builds must already be in the bundle)")
