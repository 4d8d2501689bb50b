"""Python servers: declared dependencies and the entry point's module-level imports are vendored in the
bundle (uv servers install theirs at run time)."""

from __future__ import annotations

import ast
import re
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import PurePosixPath

from ..model import Finding
from .node_deps import parent_dir
from .registry import bundle_scanner
from .run import SMALL_FILE, BundleView


VENDOR_DIRS = ("server/lib", "lib", "server/venv", "venv", ".venv", "server/.venv", "server/vendor", "vendor")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _python_paths(view: BundleView) -> list[str]:
    """Folders a python server imports from: vendored dirs, site-packages, PYTHONPATH entries, the entry dir."""
    roots = [d for d in VENDOR_DIRS if view.is_dir(d)]
    roots += sorted({d for d in view.dirs if d.endswith("site-packages")})
    env = (view.server.get("mcp_config") or {}).get("env") or {}
    for entry in str(env.get("PYTHONPATH", "")).replace(";", ":").split(":"):
        entry = entry.replace("${__dirname}", "").strip("/")
        if entry and view.is_dir(entry):
            roots.append(entry)
    entry_dir = parent_dir(view.entry_point or "")
    return roots + [entry_dir, ""]


def _available_modules(view: BundleView, roots: list[str]) -> set[str]:
    names: set[str] = set()
    for root in roots:
        prefix = f"{root}/" if root else ""
        for path in list(view.files) + list(view.dirs):
            if not path.startswith(prefix) or "/" in path[len(prefix):]:
                continue
            child = path[len(prefix):]
            if child.endswith((".dist-info", ".egg-info")):
                names.add(_normalize(child.removesuffix(".dist-info").removesuffix(".egg-info").split("-")[0]))
            stem = child.split(".")[0]
            if stem:
                names.add(_normalize(stem))
    return names


def _declared_python_deps(view: BundleView) -> tuple[dict[str, str], list[Finding]]:
    """dist name -> file declaring it, from requirements.txt and pyproject.toml files outside vendored dirs."""
    declared: dict[str, str] = {}
    problems: list[Finding] = []
    for path in view.files:
        name = PurePosixPath(path).name
        if any(path.startswith(d + "/") for d in VENDOR_DIRS) or "site-packages/" in path:
            continue
        if name == "requirements.txt":
            for line in view.read(path).decode("utf-8", "replace").splitlines():
                line = line.split("#")[0].strip()
                if line and not line.startswith("-") and (m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)):
                    declared[m.group(0)] = path
        elif name == "pyproject.toml":
            try:
                project = tomllib.loads(view.read(path).decode("utf-8")).get("project", {})
            except (UnicodeDecodeError, tomllib.TOMLDecodeError):
                problems.append(Finding("deps.python_unreadable", "medium", path, "pyproject.toml is not valid TOML"))
                continue
            for dep in project.get("dependencies") or []:
                if isinstance(dep, str) and (m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep)):
                    declared[m.group(0)] = path
    return declared, problems


# CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not per thread: a parse that
# overlaps another thread's (ours, or any library's) can fail with "SystemError: AST constructor recursion depth
# mismatch", which made this scanner "crash" and quarantined good bundles under load. Ours run one at a time,
# and the rare clash with another thread's is parsed again.
_AST_PARSE = threading.Lock()


def _parse(source: str) -> ast.Module:
    with _AST_PARSE:
        try:
            return ast.parse(source)
        except SystemError:
            return ast.parse(source)


def _module_level_imports(source: str) -> set[str]:
    """Top-level names imported unconditionally at module level (imports inside try/if/def may be optional)."""
    tree = _parse(source)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


@bundle_scanner("deps.python")
def python_dependencies(view: BundleView) -> Iterator[Finding]:
    kind = view.server.get("type")
    if kind == "uv":
        if any(view.is_dir(d) for d in VENDOR_DIRS[:3]):
            yield Finding("deps.python_vendored_uv", "info", "", "a uv bundle carries vendored packages; "
                          "uv installs dependencies from pyproject.toml at run time")
        return
    if kind != "python":
        return
    roots = _python_paths(view)
    available = _available_modules(view, roots)
    declared, problems = _declared_python_deps(view)
    yield from problems
    for dist, path in sorted(declared.items()):
        if _normalize(dist) not in available:
            yield Finding("deps.python_missing", "high", path,
                          f"dependency {dist} is declared but not vendored (expected in server/lib or a venv)")
    entry = view.entry_point
    info = view.files.get(entry or "")
    if entry is None or info is None or info.size > SMALL_FILE:
        return
    try:
        imports = _module_level_imports(view.read(entry).decode("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        yield Finding("deps.python_unparsed", "low", entry, f"entry point not parsed, imports unchecked: "
                      f"{type(exc).__name__}")
        return
    for name in sorted(imports):
        if _normalize(name) not in available:
            yield Finding("deps.python_missing", "high", entry,
                          f"the entry point imports {name}, which is not bundled")
