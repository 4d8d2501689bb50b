"""Content scans: a registry of small functions. Adding a scan = writing one decorated function.

Two kinds:
- `@content_scanner(name)`: `fn(path, window) -> findings`, called while the bundle is read, on consecutive
  overlapping windows (~1 MiB) of every file (and of every file inside nested archives). No second pass.
- `@bundle_scanner(name)`: `fn(view) -> findings`, called once afterwards with a `BundleView` (manifest, file
  list with sizes, modes and first bytes, and bounded re-reads of small files).

A scanner that raises is recorded by name; the bundle is then quarantined, never published (fail closed), with a
`scanner_error.<name>` finding. "No findings" and "scanner crashed" are therefore always distinguishable.
"""

from __future__ import annotations

import ast
import json
import queue
import re
import sys
import threading
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from .archive_walk import FileInfo
from .manifest_rules import clean_relative
from .model import Finding
from .secret_rules import MAX_SECRET_LENGTH, find_secrets

SMALL_FILE = 1024 * 1024  # package.json, pyproject.toml, entry points: read at most this much
MAX_FINDINGS_PER_SCANNER = 50


@dataclass(frozen=True)
class Scanner:
    name: str
    kind: Literal["content", "bundle"]
    fn: Callable[..., Iterable[Finding]]


SCANNERS: list[Scanner] = []


def content_scanner(name: str):
    def register(fn: Callable[[str, bytes], Iterable[Finding]]):
        SCANNERS.append(Scanner(name, "content", fn))
        return fn
    return register


def bundle_scanner(name: str):
    def register(fn: Callable[["BundleView"], Iterable[Finding]]):
        SCANNERS.append(Scanner(name, "bundle", fn))
        return fn
    return register


class BundleView:
    """What bundle scanners see. `read` re-reads one (small) file from the archive."""

    def __init__(self, manifest: dict, files: list[FileInfo], reader: Callable[[str, int], bytes]):
        self.manifest = manifest
        self.files: dict[str, FileInfo] = {f.path: f for f in files}
        self._reader = reader
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        self.dirs = frozenset(dirs)

    @property
    def server(self) -> dict:
        server = self.manifest.get("server")
        return server if isinstance(server, dict) else {}

    @property
    def entry_point(self) -> str | None:
        entry = self.server.get("entry_point")
        return clean_relative(entry) if isinstance(entry, str) else None

    def is_file(self, path: str) -> bool:
        return path in self.files

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def read(self, path: str, limit: int = SMALL_FILE) -> bytes:
        return self._reader(path, limit)

    def read_json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


class ScanRun:
    """Runs the registry: content scanners as a sink for the archive walker, bundle scanners at the end.

    Use it as a context manager around the walk: content scanners then run on a worker thread fed through a
    small bounded queue (at most QUEUE_CHUNKS chunks of 1 MiB in flight), so scanning overlaps with inflating;
    zlib, hashlib and the Aho-Corasick search all release the GIL. Leaving the block drains and joins it.
    """

    WINDOW_OVERLAP = MAX_SECRET_LENGTH
    QUEUE_CHUNKS = 8

    def __init__(self, scanners: list[Scanner] | None = None, *, threaded: bool = True):
        chosen = SCANNERS if scanners is None else scanners
        self.content = [s for s in chosen if s.kind == "content"]
        self.bundle = [s for s in chosen if s.kind == "bundle"]
        self.errors: dict[str, str] = {}
        self._findings: dict[tuple[str, str, str], Finding] = {}
        self._per_scanner: dict[str, int] = {}
        self._carry: dict[str, bytes] = {}
        self._threaded = threaded
        self._queue: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self._inline = threading.Lock()

    def __enter__(self) -> "ScanRun":
        if self._threaded and self.content:
            self._queue = queue.Queue(maxsize=self.QUEUE_CHUNKS)
            self._worker = threading.Thread(target=self._work, name="bundle-content-scan", daemon=True)
            self._worker.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._worker is not None and self._queue is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = self._queue = None

    # ContentSink protocol
    def feed(self, path: str, chunk: bytes) -> None:
        if self._queue is not None:
            self._queue.put((path, chunk))
        else:
            with self._inline:  # several walker threads may feed at once
                self._scan(path, chunk)

    def close(self, path: str) -> None:
        if self._queue is not None:
            self._queue.put((path, None))
        else:
            self._carry.pop(path, None)

    def _work(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not None:
            path, chunk = item
            try:
                if chunk is None:
                    self._carry.pop(path, None)
                else:
                    self._scan(path, chunk)
            except Exception as exc:  # noqa: BLE001 - a bug outside any scanner still fails closed
                self.errors.setdefault("content_scan", f"{type(exc).__name__}: {exc}"[:300])

    def _scan(self, path: str, chunk: bytes) -> None:
        window = self._carry.get(path, b"") + chunk if path in self._carry else chunk
        self._carry[path] = window[-self.WINDOW_OVERLAP:]
        for scanner in self.content:
            self._run(scanner, scanner.fn, path, window)

    def run_bundle_scanners(self, view: BundleView) -> None:
        for scanner in self.bundle:
            self._run(scanner, scanner.fn, view)

    def _run(self, scanner: Scanner, fn: Callable[..., Iterable[Finding]], *args: Any) -> None:
        if scanner.name in self.errors:
            return
        try:
            found = list(fn(*args))
        except Exception as exc:  # noqa: BLE001 - any crash must quarantine, never publish
            self.errors[scanner.name] = f"{type(exc).__name__}: {exc}"[:300]
            return
        for finding in found:
            key = (finding.check_id, finding.file, finding.message)  # windows overlap: same hit twice
            if key not in self._findings and self._per_scanner.get(scanner.name, 0) < MAX_FINDINGS_PER_SCANNER:
                self._findings[key] = finding
                self._per_scanner[scanner.name] = self._per_scanner.get(scanner.name, 0) + 1

    @property
    def findings(self) -> list[Finding]:
        crashed = [Finding(f"scanner_error.{name}", "high", "",
                           f"scanner {name} crashed ({message}); quarantined until an admin reviews the bundle")
                   for name, message in self.errors.items()]
        return list(self._findings.values()) + crashed


# =============================================================================================== secrets


@content_scanner("secrets")
def secrets_in_content(path: str, window: bytes) -> Iterable[Finding]:
    return find_secrets(path, window)


ENV_OK_SUFFIXES = (".example", ".sample", ".template", ".dist", ".defaults", ".schema")
CREDENTIAL_FILES = {".npmrc": "npm config (may hold auth tokens)", ".pypirc": "PyPI credentials",
                    ".netrc": "netrc credentials", ".git-credentials": "git credentials",
                    ".htpasswd": "password file"}
KEY_FILES = re.compile(r"^id_(rsa|dsa|ecdsa|ed25519)$|\.(p12|pfx|jks|keystore)$")


@bundle_scanner("secrets.files")
def secret_files(view: BundleView) -> Iterator[Finding]:
    for path in view.files:
        name = PurePosixPath(path).name
        if (name == ".env" or name.startswith(".env.")) and not name.endswith(ENV_OK_SUFFIXES):
            yield Finding("secrets.env_file", "high", path, "environment file (usually holds secrets)")
        elif name in CREDENTIAL_FILES:
            yield Finding("secrets.credentials_file", "high", path, CREDENTIAL_FILES[name])
        elif KEY_FILES.search(name):
            yield Finding("secrets.key_file", "high", path, "private key or key store file")
        elif path.endswith("/.aws/credentials") or path == ".aws/credentials":
            yield Finding("secrets.credentials_file", "critical", path, "AWS credentials file")
    if any(p == ".git" or p.startswith(".git/") for p in view.dirs):
        yield Finding("secrets.vcs_metadata", "low", ".git/", "git metadata is bundled (history may hold secrets)")


# =============================================================================================== node


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


def _parent(path: str) -> str:
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
        base = _parent(path)
        for name in _deps(view.read_json(path)):
            if not _resolves(view, base, name):
                yield Finding("deps.node_missing", "high", path,
                              f"dependency {name} is declared but not bundled in node_modules")
    for path in sorted(p for p in view.files if PACKAGE_ROOT.search(p)):
        base = _parent(path)
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
    base = _parent(entry)
    specs = [m.group(2) or m.group(4) for m in IMPORT_SPEC.finditer(source)]
    missing = {name for spec in specs if (name := _package_name(spec)) and not _resolves(view, base, name)}
    for name in sorted(missing):
        yield Finding("deps.node_missing", "high", entry, f"the entry point imports {name}, which is not bundled")


# =============================================================================================== python


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
    entry_dir = _parent(view.entry_point or "")
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


def _module_level_imports(source: str) -> set[str]:
    """Top-level names imported unconditionally at module level (imports inside try/if/def may be optional)."""
    tree = ast.parse(source)
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


# =============================================================================================== binaries


ELF_MACHINES = {0x03: "x86", 0x3E: "x86_64", 0x28: "arm", 0xB7: "arm64", 0xF3: "riscv64"}
MACHO_CPUS = {7: "x86", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64"}
PE_MACHINES = {0x14C: "x86", 0x8664: "x86_64", 0xAA64: "arm64", 0x1C4: "arm"}


def native_binary(view: BundleView, info: FileInfo) -> tuple[str, str] | None:
    """(platform, architecture) of an ELF, Mach-O or PE file, from its first bytes."""
    head = info.head
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        order = "little" if head[5] == 1 else "big"
        return "linux", ELF_MACHINES.get(int.from_bytes(head[18:20], order), "unknown")
    if head[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"):
        order = "big" if head[0] == 0xFE else "little"
        return "darwin", MACHO_CPUS.get(int.from_bytes(head[4:8], order), "unknown")
    if head[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf") and int.from_bytes(head[4:8], "big") < 30:
        return "darwin", "universal"  # a fat Mach-O (Java class files share the magic but have larger values)
    if head[:2] == b"MZ" and len(head) >= 64:
        offset = int.from_bytes(head[60:64], "little")
        if offset < 64 * 1024:
            data = head if offset + 6 <= len(head) else view.read(info.path, offset + 6)
            if data[offset:offset + 4] == b"PE\0\0":
                return "win32", PE_MACHINES.get(int.from_bytes(data[offset + 4:offset + 6], "little"), "unknown")
    return None


@bundle_scanner("binaries")
def platform_binaries(view: BundleView) -> Iterator[Finding]:
    found = {path: kind for path, info in view.files.items() if (kind := native_binary(view, info))}
    if not found:
        return
    have = {platform for platform, _ in found.values()}
    compat = view.manifest.get("compatibility") or {}
    declared = set(compat.get("platforms") or [])
    is_binary_server = view.server.get("type") == "binary"
    summary = ", ".join(sorted(f"{p}/{a}" for p, a in set(found.values())))
    if not declared:
        if have != {"darwin", "linux", "win32"}:
            yield Finding("binaries.platforms_undeclared", "high" if is_binary_server else "medium", "",
                          f"native code only for {summary}, but compatibility.platforms is not declared")
        return
    for platform in sorted(declared - have):
        yield Finding("binaries.platform_missing", "high" if is_binary_server else "medium", "",
                      f"declares platform {platform} but its native code is only for {summary}")
    for path, (platform, arch) in sorted(found.items()):
        if platform not in declared:
            yield Finding("binaries.platform_undeclared", "low", path,
                          f"{platform}/{arch} binary, but compatibility.platforms does not include {platform}")


# =============================================================================================== install hooks


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
