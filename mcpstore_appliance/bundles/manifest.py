"""manifest.json: decoding, strict validation for manifest_version 0.1-0.4 (and dxt_version), registry rules,
and the catalog metadata extracted from it.

Validation = the official JSON Schemas of @anthropic-ai/mcpb 2.1.2 (copied unchanged into `schemas/`) with the
differences from the zod schemas that the CLI really runs put back (mcpb-format.md §2):
- the version is resolved like the reference: `manifest_version` if it is a known version string, else
  `dxt_version`; otherwise "Unrecognized or unsupported manifest version" (this also covers the zod refine
  "one of the two must be present");
- `format: email` uses zod's e-mail regex, `format: uri` means "parses as a WHATWG URL" like zod's `.url()`;
- `localization.resources` matches `${locale}` case-insensitively; patterns use ASCII digits and a real end
  anchor (Python's `\\d` is Unicode-aware and `$` matches before a final newline, JavaScript's are not).

Registry rules on top (each is listed in tests/e2e/test_mcpb_cli_differential.py, where `mcpb validate` and we
disagree on purpose):
- `uv` servers may omit `mcp_config` (upstream's own uv example does; 2.1.2 wrongly requires it);
- the file must be UTF-8 without BOM, duplicate object keys or lone surrogates, nested at most 64 deep, and
  without control characters (tab and line breaks only in multi-line fields): manifest_text.py;
- `version` is strict SemVer 2.0.0; `name` is a lowercase slug (a-z, 0-9, `-`, `_`, `.`; at most 64);
- `server.entry_point` is a clean relative path that exists in the bundle (`binary` may add `.exe`);
  a `uv` server also needs `pyproject.toml` at the root;
- a local `icon` exists and is a real PNG, local `icons[].src` and `screenshots` exist;
- `user_config` keys are `[A-Za-z0-9_]+` (the reference puts them into a regex unescaped), a `default` fits
  the option's type, `min <= max`, and every `${user_config.X}` in `mcp_config` names a declared option.
"""

from __future__ import annotations

import copy
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from jsonschema import Draft7Validator, FormatChecker

from ..errors import Unprocessable
from .manifest_text import decode_manifest, json_path, text_errors
from .model import Author, Links, PackageMetadata, Prompt, Tool, UserConfigField

VERSIONS = ("0.1", "0.2", "0.3", "0.4")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_ERRORS = 100

SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
CONFIG_KEY = re.compile(r"^[A-Za-z0-9_]+\Z")
USER_CONFIG_REF = re.compile(r"\$\{user_config\.([^}]*)\}")
# zod 3.25's e-mail regex (what `mcpb validate` runs), with a real end anchor.
ZOD_EMAIL = re.compile(r"^(?!\.)(?!.*\.\.)([A-Z0-9_'+\-\.]*)[A-Z0-9_+-]@([A-Z0-9][A-Z0-9\-]*\.)+[A-Z]{2,}\Z",
                       re.IGNORECASE)
SPECIAL_SCHEMES = {"http", "https", "ws", "wss", "ftp"}
FORBIDDEN_HOST_CHARS = set(" #%/:<>?@[\\]^|\t\n\r\x00")


class FileLookup(Protocol):
    """What validation needs to know about the files of a bundle."""

    def is_file(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def read(self, path: str, limit: int) -> bytes: ...


class DirectoryFiles:
    """FileLookup over a folder on disk (tests, local `validate` before packing)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, path: str) -> Path | None:
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            return None
        return self.root / path

    def is_file(self, path: str) -> bool:
        target = self._path(path)
        return bool(target and target.is_file())

    def is_dir(self, path: str) -> bool:
        target = self._path(path)
        return bool(target and target.is_dir())

    def read(self, path: str, limit: int) -> bytes:
        target = self._path(path)
        assert target is not None
        with open(target, "rb") as fh:
            return fh.read(limit)


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


# ------------------------------------------------------------------------------------------ schema


def is_url(value: str) -> bool:
    """Approximates `new URL(value)` (WHATWG) succeeding, which is all zod's `.url()` checks."""
    match = re.match(r"^[\x00-\x20]*([A-Za-z][A-Za-z0-9+.\-]*):(.*?)[\x00-\x20]*\Z", value, re.DOTALL)
    if not match:
        return False
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in SPECIAL_SCHEMES:
        return True  # "mailto:x", "urn:y", "file:..." all parse
    authority = re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0]
    host_port = authority.rsplit("@", 1)[-1]
    if host_port.startswith("["):
        host, sep, port = host_port.partition("]")
        if not sep or not re.fullmatch(r"\[[0-9A-Fa-f:.]+", host):
            return False
        port = port[1:] if port.startswith(":") else port
    else:
        host, _, port = host_port.partition(":")
        if not host or FORBIDDEN_HOST_CHARS & set(host):
            return False
    return port == "" or (port.isascii() and port.isdigit() and int(port) <= 65535)


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("email")(lambda value: not isinstance(value, str) or bool(ZOD_EMAIL.match(value)))
    checker.checks("uri")(lambda value: not isinstance(value, str) or is_url(value))
    return checker


def _js_patterns(node: Any) -> Any:
    """Make schema regexes behave like JavaScript's: ASCII \\d, `$` only at the very end, and zod's
    case-insensitive `${locale}` check."""
    if isinstance(node, dict):
        result = {key: _js_patterns(value) for key, value in node.items()}
        pattern = result.get("pattern")
        if isinstance(pattern, str):
            pattern = pattern.replace("\\d", "[0-9]")
            if pattern.endswith("$"):
                pattern = pattern[:-1] + "\\Z"
            if "locale" in pattern:
                pattern = "(?i)" + pattern
            result["pattern"] = pattern
        return result
    if isinstance(node, list):
        return [_js_patterns(item) for item in node]
    return node


@cache
def schema_for(version: str) -> dict:
    text = resources.files(__package__).joinpath(f"schemas/mcpb-manifest-v{version}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(version: str) -> Draft7Validator:
    return Draft7Validator(_js_patterns(copy.deepcopy(schema_for(version))), format_checker=_format_checker())


def _describe(error) -> list[tuple[list[Any], str]]:
    path = list(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        return [(path + [key], "unknown key") for key in error.instance if key not in known]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return [(path + [missing], "required")]
    if kind == "type":
        return [(path, f"expected {error.validator_value}, got {_json_type(error.instance)}")]
    if kind == "const":
        return [(path, f"must be {json.dumps(error.validator_value)}")]
    if kind == "enum":
        return [(path, "must be one of " + ", ".join(json.dumps(v) for v in error.validator_value))]
    if kind == "format":
        return [(path, f"not a valid {'URL' if error.validator_value == 'uri' else error.validator_value}")]
    if kind == "pattern":
        return [(path, f"does not match the pattern {error.validator_value}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "anyOf":
        return [(path, "must be a string, a number, a boolean or an array of strings")]
    return [(path, error.message[:200])]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def schema_errors(data: Any, version: str) -> list[dict]:
    problems = []
    uv_without_config = (isinstance(data, dict) and isinstance(data.get("server"), dict)
                         and data["server"].get("type") == "uv")
    for error in _validator(version).iter_errors(data):
        for path, message in _describe(error):
            if uv_without_config and path == ["server", "mcp_config"] and message == "required":
                continue  # registry rule: uv servers need no mcp_config
            problems.append({"path": json_path(path), "message": message})
    problems.sort(key=lambda p: p["path"])
    return problems[:MAX_ERRORS]


# ------------------------------------------------------------------------------------------ registry rules


def clean_relative(path: str) -> str | None:
    """'./server/index.js' -> 'server/index.js'; None if it is absolute, escapes, or is not a plain path."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def is_remote(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if `data` starts like a real PNG (signature + IHDR), else None."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    if struct.unpack(">I", data[8:12])[0] != 13:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


def registry_errors(data: dict, files: FileLookup) -> list[dict]:
    problems: list[dict] = []

    def add(path: list[Any], message: str) -> None:
        problems.append({"path": json_path(path), "message": message})

    version = data.get("version")
    if isinstance(version, str) and not SEMVER.match(version):
        add(["version"], "must be a semantic version like 1.2.3 (Claude Desktop fails on anything else)")
    name = data.get("name")
    if isinstance(name, str) and not SLUG.match(name):
        add(["name"], "must be a lowercase slug: a-z, 0-9, '-', '_' or '.', at most 64 characters")
    _check_server(data.get("server"), files, add)
    _check_assets(data, files, add)
    _check_user_config(data, add)
    _check_links(data, add)
    return problems


LINK_FIELDS = (("homepage",), ("documentation",), ("support",), ("repository", "url"), ("author", "url"))


def _check_links(data: dict, add) -> None:
    """Links end up as hrefs on package pages: only http(s) (and mailto: for support), never
    javascript:, data: or file: URLs."""
    def check(path: list[Any], value: Any) -> None:
        allowed = ("https://", "http://", "mailto:") if path == ["support"] else ("https://", "http://")
        if isinstance(value, str) and not value.lower().startswith(allowed):
            add(path, "must be an http:// or https:// URL")

    for path in LINK_FIELDS:
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        check(list(path), node)
    for index, url in enumerate(_list(data.get("privacy_policies"))):
        check(["privacy_policies", index], url)


def _check_server(server: Any, files: FileLookup, add) -> None:
    if not isinstance(server, dict) or not isinstance(server.get("entry_point"), str):
        return
    entry = clean_relative(server["entry_point"])
    if entry is None:
        add(["server", "entry_point"], "must be a relative path inside the bundle")
    elif not (files.is_file(entry) or (server.get("type") == "binary" and files.is_file(entry + ".exe"))):
        add(["server", "entry_point"], f"file {entry} is not in the bundle")
    if server.get("type") == "uv" and not files.is_file("pyproject.toml"):
        add(["server", "type"], "a uv server needs pyproject.toml at the bundle root")


def _check_assets(data: dict, files: FileLookup, add) -> None:
    icon = data.get("icon")
    if isinstance(icon, str) and not is_remote(icon):
        local = clean_relative(icon)
        if "${" in icon or local is None:
            add(["icon"], "must be a relative path inside the bundle (no ${__dirname}, no absolute path)")
        elif not files.is_file(local):
            add(["icon"], f"file {local} is not in the bundle")
        elif png_size(files.read(local, 64)) is None:
            add(["icon"], f"{local} is not a PNG image")
    for index, item in enumerate(_list(data.get("icons"))):
        src = item.get("src") if isinstance(item, dict) else None
        if isinstance(src, str) and not is_remote(src):
            local = clean_relative(src)
            if local is None or not files.is_file(local):
                add(["icons", index, "src"], f"file {src} is not in the bundle")
    for index, shot in enumerate(_list(data.get("screenshots"))):
        if isinstance(shot, str) and not is_remote(shot):
            local = clean_relative(shot)
            if local is None or not files.is_file(local):
                add(["screenshots", index], f"file {shot} is not in the bundle")


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _default_fits(option: dict) -> bool:
    default, kind = option["default"], option.get("type")
    if kind == "number":
        return isinstance(default, (int, float)) and not isinstance(default, bool)
    if kind == "boolean":
        return isinstance(default, bool)
    if isinstance(default, list):
        return kind in ("directory", "file", "string") and bool(option.get("multiple"))
    return isinstance(default, str)


def _check_user_config(data: dict, add) -> None:
    options = data.get("user_config")
    options = options if isinstance(options, dict) else {}
    for key, option in options.items():
        if not CONFIG_KEY.match(key):
            add(["user_config", key], "option keys may only use letters, digits and '_'")
        if not isinstance(option, dict):
            continue
        if "default" in option and not _default_fits(option):
            add(["user_config", key, "default"], f"default does not fit type {option.get('type')!r}")
        low, high = option.get("min"), option.get("max")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            add(["user_config", key, "min"], "min is greater than max")
    config = data.get("server", {}).get("mcp_config") if isinstance(data.get("server"), dict) else None
    for path, text in _strings(config, ["server", "mcp_config"]):
        for ref in USER_CONFIG_REF.findall(text):
            if ref not in options:
                add(path, f"references ${{user_config.{ref}}}, which user_config does not declare")


def _strings(node: Any, path: list[Any]) -> Iterable[tuple[list[Any], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, path + [key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, path + [index])


def warnings_for(data: dict) -> list[dict]:
    icon = data.get("icon")
    if isinstance(icon, str) and is_remote(icon):
        return [{"path": "$.icon", "message": "remote icon URL: Claude Desktop only shows icons inside the bundle"}]
    return []


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


# ------------------------------------------------------------------------------------------ metadata


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
